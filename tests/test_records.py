"""Score records: one layer per model and dataset as the authors chose it, cache keys that change with
everything that produced a score, corrupt records, relative change with a vanilla score <= 0, and
the command line's early checks. Offline, seconds (no model is run except one tiny GPT-2).
Run: python -m pytest -q tests/test_records.py"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import brainalign as ba  # noqa: E402


# --------------------------------------------------------------------------- the layer choice
NAMES = ["embeddings", "block.0", "block.1", "block.2"]


def test_pereira_layer_is_chosen_on_the_mean_of_its_experiments():
    # 243 alone would pick block.0, 384 alone block.2; their mean picks block.1 (the authors registered
    # one layer per model); each experiment's own best, averaged, would claim (0.40 + 0.40) / 2 = 0.40
    parts = {"243": {"layers": [0.9, 0.40, 0.35, 0.10]}, "384": {"layers": [0.9, 0.10, 0.33, 0.40]}}
    best, mean = ba.choose_layer(parts, NAMES)
    assert best == 2 and NAMES[best] == "block.1"
    np.testing.assert_allclose(mean, [0.9, 0.25, 0.34, 0.25])
    assert ba.choose_layer(parts, NAMES, embeddings=True)[0] == 0      # embeddings only when asked
    t5 = ["encoder.embeddings", "encoder.block.0", "decoder.embeddings", "decoder.block.0"]
    assert ba.choose_layer({"x": {"layers": [0.9, 0.1, 0.8, 0.2]}}, t5)[0] == 3
    with pytest.raises(ValueError, match="no candidate layer"):
        ba.choose_layer({"x": {"layers": [0.5]}}, ["embeddings"])


def test_layer_choice_pereira_reads_blank_at_the_pereira_layer():
    names = ["embeddings", "block.0", "block.1"]
    recs = [{"model": "m", "dataset": "Pereira2018", "best_layer": 2, "layer_names": names, "ceiling": 0.36,
             "parts": {"243": {"layers": [0, 0.2, 0.3], "ceiling": 0.35}, "384": {"layers": [0, 0.2, 0.3], "ceiling": 0.36}}},
            {"model": "m", "dataset": "Blank2014", "best_layer": 1, "layer_names": names, "ceiling": 0.21,
             "parts": {"Blank2014": {"layers": [0, 0.15, 0.05], "ceiling": 0.21}}}]
    scores, layers, _ = ba.collect(recs)
    assert scores["m"]["Blank2014"] == 0.15 and layers["m"]["Blank2014"] == "block.0"
    scores, layers, _ = ba.collect(recs, layer_choice="pereira")
    assert scores["m"]["Blank2014"] == 0.05 and layers["m"]["Blank2014"] == "block.1"
    assert scores["m"]["Pereira2018"] == 0.3


# --------------------------------------------------------------------------- relative change
def test_a_vanilla_score_at_or_below_zero_gets_no_percentage():
    scores = {"t1": {"Pereira2018": 0.30, "Average": 0.30}, "v1": {"Pereira2018": 0.20, "Average": 0.20},
              "t2": {"Pereira2018": 0.10, "Average": 0.10}, "v2": {"Pereira2018": 0.0, "Average": 0.0},
              "t3": {"Pereira2018": 0.05, "Average": 0.05}, "v3": {"Pereira2018": -0.01, "Average": -0.01},
              "t4": {"Pereira2018": 0.22, "Average": 0.22}, "v4": {"Pereira2018": 0.20, "Average": 0.20}}
    out = ba.compare_pairs(scores, [("t1", "v1"), ("t2", "v2"), ("t3", "v3"), ("t4", "v4")],
                           ("Pereira2018", "Average"))
    assert out["left_out"] == 2 and out["n_pairs"] == 2 and out["improved"] == 2
    assert out["mean"]["Average"] == pytest.approx((50.0 + 10.0) / 2)
    rows = {r["tuned"]: r for r in out["rows"]}
    assert "Average" not in rows["t2"] and "vanilla score <= 0" in rows["t3"]["note"]
    assert rows["t3"]["Average diff"] == pytest.approx(0.06)                  # the absolute change stays
    assert np.isnan(ba.relative_change(0.1, 0.0)) and np.isnan(ba.relative_change(0.1, np.nan))


# --------------------------------------------------------------------------- corrupt records
@pytest.mark.parametrize("text", ["", '{"model": "m"', '{"model": "m"}', "[1, 2]"])
def test_a_corrupt_score_record_is_named_and_moved_aside(tmp_path, text):
    path = tmp_path / "Blank2014.abc.json"
    path.write_text(text)
    with pytest.warns(UserWarning, match=f"unreadable score record {path}.*skipped"):
        assert ba.read_record(path) is None
    assert path.exists()                                                       # --report leaves it
    with pytest.warns(UserWarning, match="moved aside.*recomputing"):
        assert ba.read_record(path, key="abc") is None
    assert not path.exists() and path.with_name(path.name + ".corrupt").exists()


# --------------------------------------------------------------------------- early checks
def fails(argv, match, capsys=None):
    with pytest.raises(SystemExit) as exit_info:
        ba.main(argv)
    message = str(exit_info.value.code) + (capsys.readouterr().err if capsys else "")
    assert exit_info.value.code != 0 and __import__("re").search(match, message), message


@pytest.mark.parametrize("argv, match", [
    (["--cutoff", "nan"], "--cutoff must be a number between 0 and 1"),
    (["--cutoff", "1.5"], "--cutoff must be a number between 0 and 1"),
    (["--batch-size", "0"], "must be >= 1"),
    (["--batch-size", "two"], "must be a whole number"),
])
def test_bad_options_are_refused_before_any_work(argv, match, capsys):
    fails(argv, match, capsys)


def test_folders_are_checked_before_any_work(tmp_path, monkeypatch):
    import data
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data were loaded"))
    (tmp_path / "file").write_text("x")
    fails(["--out", str(tmp_path / "file"), "--cache-dir", str(tmp_path / "c")], "--out .*file is a file")
    fails(["--cache-dir", str(tmp_path / "file"), "--out", str(tmp_path / "o")], "--cache-dir .*is a file")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    fails(["--out", str(tmp_path / "old"), "--cache-dir", str(tmp_path / "c")], "earlier run; pass --force")
    fails(["--models", "gpt2", "flan-t5-small", "--model-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"),
           "--out", str(tmp_path / "o2")], "--model-dir DIR serves one model")
    fails(["--device", "gpu", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o3")], "unknown device")
    fails(["--data-file", "Nope=x.nc", "--datasets", "Blank2014", "--cache-dir", str(tmp_path / "c"),
           "--out", str(tmp_path / "o4"), "--models", "gpt2"], "unknown dataset Nope")


def test_report_with_no_records_writes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "table1.csv").write_text("a good earlier table")
    fails(["--report", "--cache-dir", str(tmp_path / "empty"), "--out", str(out)], "no score records.*Nothing was written")
    assert [p.name for p in out.iterdir()] == ["table1.csv"] and (out / "table1.csv").read_text() == "a good earlier table"


# --------------------------------------------------------------------------- keys and provenance
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny GPT-2 and a small Blank-like dataset with a planted signal."""
    import data
    import models
    root = tmp_path_factory.mktemp("toy")
    texts = data.demo_sentences()[:60]
    path = models.make_tiny_model("gpt2", root / "m", texts)
    acts = models.extract(str(path), texts, ["s"] * 60, progress=False)[:, 1]
    y = acts @ np.random.default_rng(0).normal(size=(acts.shape[1], 12)) + np.random.default_rng(1).normal(size=(60, 12))
    ds = data.Dataset("Toy", texts, [f"s{i // 10}" for i in range(60)], y.astype(np.float32),
                      np.repeat(["a", "b", "c"], 4), 0.2, "shuffle", files={"toy.nc": "abc"}, checksum="verified")
    import models as m
    return m.resolve(str(path)), ds


def run(toy, cache, scoring=None, **extraction):
    info, ds = toy
    extraction = {"device": "cpu", "batch_size": 8} | extraction
    return ba.run_one(info, "Toy", [ds], cache, extraction, {**ba.SCORING, **(scoring or {})})


def test_records_are_keyed_by_everything_that_produced_them(toy, tmp_path):
    first = run(toy, tmp_path)
    assert not first.get("cached") and run(toy, tmp_path).get("cached")
    assert first["provenance"]["dtype"] == "float32" and first["provenance"]["weights"]["path"] == toy[0].hub_id
    assert first["data"] == {"files": {"toy.nc": "abc"}, "checksum": "verified"}
    assert first["best_layer_name"] != "embeddings" and first["layer_names"][0] == "embeddings"
    for change in ({"dtype": "bfloat16"}, {"readout": "block"}, {"token_type_ids": "pass"}):
        assert not run(toy, tmp_path, **change).get("cached")
    for scoring in ({"embeddings": True}, {"cv": "kfold"}):
        assert not run(toy, tmp_path, scoring).get("cached")
    files = sorted((tmp_path / "scores").rglob("*.json"))
    assert len(files) == 6 and len({json.loads(f.read_text())["key"] for f in files}) == 6
    assert run(toy, tmp_path)["score"] == first["score"]                    # the first one is intact


def test_cv_kfold_means_ten_contiguous_folds_on_every_dataset():
    from data import Dataset
    stimuli = Dataset("S", ["t"] * 50, ["g"] * 50, np.zeros((50, 2), np.float32), np.array(["a", "a"]), 0.2, "shuffle")
    series = Dataset("T", ["w"] * 200, ["c"] * 200, np.zeros((200, 2), np.float32), np.array(["a", "a"]), 0.1,
                     "kfold", n_folds=4, gap=5, word_tr=np.arange(200), sample_tr=np.arange(200), n_tr=200)
    for ds in (stimuli, series):
        splits = ba.splits_for(ds, "kfold")
        assert len(splits) == 10 and all(np.all(np.diff(test) == 1) for _, test in splits)
    assert len(ba.splits_for(series)) == 4 and len(ba.splits_for(stimuli)) == 10
    train, test = ba.splits_for(series, "kfold")[0]
    assert test[0] == 0 and train[0] == test[-1] + 1 + 5                      # the time series keeps its gap
