"""The command line end to end: --demo in a subprocess (tables, files, the planted signal), a run
killed after its first (model, dataset) resuming without recomputing it, and --report rendering a
cache written by another process without loading any model."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
pytest.importorskip("transformers")


def cli(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "brainalign.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    proc = cli("--demo", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc.stdout


def test_demo_prints_and_writes_every_table(demo_run):
    tmp, out = demo_run
    assert "SYNTHETIC DEMO" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("demo-") and " | " in ln]
    assert len(lines) == 18 and not any("ceiling" in ln for ln in lines)   # planted: no real ceiling
    for title in ("Brain alignment per model", "Instruction tuning", "Correlation", "Noise ceilings"):
        assert title in out
    files = {p.name for p in (tmp / "out").iterdir()}
    assert {"tables.md", "config.json", "table1.csv", "table1.json", "table2.csv"} <= files
    if importlib.util.find_spec("matplotlib"):
        assert {"tuned_vs_vanilla.png", "alignment_vs_size_mmlu_bbh.png", "layers.png"} <= files
    config = json.loads((tmp / "out" / "config.json").read_text())
    assert config["split_seed"] == 1 and config["versions"]["numpy"]


def test_demo_recovers_the_planted_signal(demo_run):
    tmp, _ = demo_run
    rows = {r["model"]: r for r in json.loads((tmp / "out" / "table1.json").read_text())["rows"]}
    assert len(rows) == 6
    for width in (16, 32, 64):             # every tuned analog beats its vanilla twin on average
        # (measured by 0.073, 0.044 and 0.076)
        assert rows[f"demo-{width}-tuned"]["Average"] > rows[f"demo-{width}"]["Average"] + 0.04
    comparison = json.loads((tmp / "out" / "table2.json").read_text())["rows"]
    assert comparison[-1]["tuned"] == "mean of 3 pairs" and "3/3 improved" in comparison[-1]["note"]
    correlations = json.loads((tmp / "out" / "table3.json").read_text())["rows"]
    assert [r["against"] for r in correlations] == ["log10(params), tuned", "log10(params), all"]


def test_report_renders_a_cache_written_by_another_process(demo_run, tmp_path, monkeypatch, capsys):
    import brainalign as ba
    import models

    def no_model(*args, **kwargs):
        raise AssertionError("--report loaded a model")
    monkeypatch.setattr(models, "_load", no_model)
    monkeypatch.setattr(models, "extract", no_model)
    tmp, _ = demo_run
    tables = ba.main(["--report", "--cache-dir", str(tmp / "cache" / "demo"), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| demo-64-tuned | demo-64 |" in out                          # the pair, from the records
    assert out.startswith("# SYNTHETIC DEMO")                            # the records say what they hold
    written = json.loads((tmp / "out" / "table1.json").read_text())["rows"]
    assert list(tables.values())[0] == written                         # the demo's own numbers
    assert (tmp_path / "table2.csv").exists()


def test_a_killed_run_resumes_without_recomputing(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, str(ROOT / "brainalign.py"), "--demo", "--cache-dir", str(tmp_path),
            "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline()                 # the first finished (model, dataset)
    proc.kill()
    proc.wait()
    assert first.startswith("demo-16 | Pereira2018")
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers
    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lines = [ln for ln in rerun.stdout.splitlines() if " | " in ln and "[cached]" in ln]
    assert lines[0] == first.strip() + " [cached]" and len(lines) < 6   # the rest recomputed


def test_unknown_dataset_lists_the_choices():
    proc = cli("--datasets", "Nope2020")
    assert proc.returncode == 2 and "Pereira2018" in proc.stderr and "Wehbe2014" in proc.stderr


def test_unknown_model_lists_the_registry():
    proc = cli("--models", "not-a-model", "--datasets", "Blank2014")
    assert proc.returncode == 1
    assert "unknown model 'not-a-model'" in proc.stderr and "flan-t5-small" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_and_out_of_memory_are_actionable(monkeypatch, tmp_path):
    import brainalign as ba
    import data
    args = ["--models", "gpt2", "--datasets", "Blank2014", "--cache-dir", str(tmp_path)]
    offline = data.DownloadError("could not download assy_Blank2014_fROI.nc; put it in FOLDER")
    monkeypatch.setattr(data, "load", lambda *a, **k: (_ for _ in ()).throw(offline))
    with pytest.raises(SystemExit, match="put it in FOLDER"):
        ba.main(args)
    monkeypatch.setattr(data, "load", lambda *a, **k: [])
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(ba, "run_one", lambda *a, **k: (_ for _ in ()).throw(oom))
    with pytest.raises(SystemExit, match="--dtype float16 or bfloat16, a smaller --batch-size"):
        ba.main(args)
