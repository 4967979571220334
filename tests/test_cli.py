"""The command line: the offline demo end to end in a subprocess (tables, files, figures, the planted
signal, the SYNTHETIC marks), and every bad option or input refused with one line that says what to
do, before any data or model is loaded."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import brainalign as ba
import data

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
pytest.importorskip("transformers")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run(*args, script="brainalign.py"):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    proc = run("--cache-dir", str(tmp / "cache"), "--out", str(tmp / "out"), script="tests/demo.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc.stdout


def test_demo_prints_and_writes_every_table_marked_synthetic(demo):
    tmp, out = demo
    assert out.splitlines()[0].startswith("# SYNTHETIC")           # stdout: the tables, marked
    for i, title in enumerate(("Brain alignment per model", "Instruction tuning", "Correlation"), 1):
        assert f"## {i}. {title}" in out
    assert len([ln for ln in out.splitlines() if re.match(r"\| demo-\d+(-tuned)? \|", ln)]) == 6 + 3  # models, pairs
    files = {p.name for p in (tmp / "out").iterdir()}
    assert {"tables.md", "config.json", "table1.csv", "table1.json", "table3.csv", "table3.json"} <= files
    assert "table4.json" not in files
    if importlib.util.find_spec("matplotlib"):
        assert "tuned_vs_vanilla.png" in files
    config = json.loads((tmp / "out" / "config.json").read_text())
    assert config["synthetic"] is True and config["split_seed"] == 1 and config["versions"]["numpy"]


def test_demo_recovers_the_planted_signal(demo):
    tmp, _ = demo
    rows = {r["model"]: r for r in json.loads((tmp / "out" / "table1.json").read_text())["rows"]}
    assert len(rows) == 6
    for width in (16, 32, 64):             # every tuned model beats its vanilla twin on average
        # measured gains .060, .065, .113 (tuned Averages .37-.39)
        assert rows[f"demo-{width}-tuned"]["Average"] > rows[f"demo-{width}"]["Average"] + 0.04
    comparison = json.loads((tmp / "out" / "table2.json").read_text())["rows"]
    assert comparison[-1]["tuned"] == "mean of 3 pairs (ours)" and "3/3 improved" in comparison[-1]["note"]
    correlations = json.loads((tmp / "out" / "table3.json").read_text())["rows"]
    assert [r["against"] for r in correlations] == ["log10(params), tuned", "log10(params), all"]


def test_demo_rerun_finds_every_record(demo):
    tmp, first = demo
    proc = run("--cache-dir", str(tmp / "cache"), "--out", str(tmp / "out"), script="tests/demo.py")
    assert proc.returncode == 0 and proc.stdout == first


def fails(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ba.main(argv)
    message = str(exit_info.value.code) + capsys.readouterr().err
    assert exit_info.value.code != 0 and re.search(match, message), message
    assert "Traceback" not in message


@pytest.mark.parametrize("argv, match", [
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--batch-size", "two"], "invalid int value"),
    (["--datasets", "Nope2020"], "invalid choice: 'Nope2020'.*Pereira2018.*Wehbe2014"),
    (["--layer-choice", "best"], "invalid choice"),
    (["--data-file", "Fedorenko2016=x.nc"], r"--data-file 'Fedorenko2016=x.nc': .*dataset run here \(Pereira2018"),
    (["--data-file", "Blank2014"], "give DATASET=PATH"),
    (["--all", "--models", "gpt2"], "not allowed with argument"),
    (["--models", ""], "empty|registry"),
    (["--models", "not-a-model"], "unknown model 'not-a-model'.*flan-t5-small"),
    (["--models", "./no/such/folder"], "no such folder"),
    (["--models", "gpt2", "gpt2"], "names a model twice"),
    (["--device", "gpu"], "unknown device 'gpu'"),
])
def test_bad_options_are_refused_before_any_work(argv, match, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data were loaded"))
    fails(argv + ["--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")], match, capsys)
    assert not (tmp_path / "o").exists()


def test_folders_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data were loaded"))
    (tmp_path / "file").write_text("x")
    fails(["--models", "gpt2", "--out", str(tmp_path / "file"), "--cache-dir", str(tmp_path / "c")],
          "--out .*file is a file", capsys)
    fails(["--models", "gpt2", "--cache-dir", str(tmp_path / "file"), "--out", str(tmp_path / "o")],
          "File exists|cache-dir", capsys)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    if not os.access(tmp_path / "ro", os.W_OK):            # root can write anywhere
        fails(["--models", "gpt2", "--cache-dir", str(tmp_path / "ro"), "--out", str(tmp_path / "o")],
              "cannot be written", capsys)


def test_missing_data_names_every_dataset_and_out_of_memory_says_what_to_do(tmp_path, capsys, monkeypatch):
    models = pytest.importorskip("models")
    monkeypatch.setattr(models, "identity", lambda info, **kw: {"weights": info.name})
    args = ["--models", "gpt2", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
            "--data-dir", str(tmp_path / "empty")]
    monkeypatch.setattr(data, "_download", lambda url, path: (_ for _ in ()).throw(OSError("offline")))
    fails(args, "Pereira2018:(.|\n)*Blank2014:(.|\n)*Wehbe2014:", capsys)
    monkeypatch.setattr(data, "load", lambda *a, **k: [])
    monkeypatch.setattr(data, "fingerprint", lambda *a, **k: {"checksum": "verified"})
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(ba, "_activations", lambda *a, **k: (_ for _ in ()).throw(oom))
    fails(args, "--dtype bfloat16, a smaller --batch-size", capsys)


def test_defaults_are_the_papers():
    names, datasets, settings, out = ba.parse_args([])
    assert names == ["t5-small", "flan-t5-small"] and datasets == list(ba.PAPER_DATASETS) and out == "results"
    assert (settings.brainscore, settings.layer_choice, settings.dtype, settings.numerics) == \
        (False, "dataset", "float32", "brainscore-2023")
    names, datasets, settings, _ = ba.parse_args(["--all", "--brainscore", "--layer-choice", "pereira"])
    assert len(names) == 25 and datasets[-1] == "Futrell2018"
    assert (settings.brainscore, settings.layer_choice, settings.numerics) == (True, "pereira", "float64")


def test_at_most_twelve_flags():
    flags = re.findall(r'add_argument\("(--[a-z-]+)"', (ROOT / "brainalign.py").read_text())
    assert len(flags) == len(set(flags)) <= 12, flags
