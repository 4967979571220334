"""One run, as brainalign.run does it, on a stand-in for models.py (so no network and no torch):
records keyed by everything that produced them and by nothing else, hand-edited or corrupt records
named and recomputed, a rerun over a complete cache that loads no data and no model, and the report
folder written whole or not at all."""
import json
from pathlib import Path
import sys
import types

import numpy as np
import pytest

import brainalign as ba
import data
from data import Dataset

NAMES = ["embeddings", "block.0", "block.1"]


@pytest.fixture
def fake_models(monkeypatch):
    """models.py replaced: layer 1 of stimulus i holds its planted signal, the others noise. Counts
    the extractions, and keys a model by its name and the (dtype, brainscore) asked for."""
    calls = []

    def extract(source, texts, groups, **kw):
        calls.append(source)
        rng = np.random.default_rng(len(texts))
        acts = rng.normal(size=(len(texts), 3, 4))
        acts[:, 1] = SIGNAL[: len(texts)]
        return acts

    fake = types.SimpleNamespace(
        MODELS={}, calls=calls, extract=extract, layer_names=lambda source, brainscore=False: NAMES,
        identity=lambda info, dtype="float32", brainscore=False: {"weights": info.hub_id, "dtype": dtype,
                                                                  "brainscore": brainscore})
    monkeypatch.setitem(sys.modules, "models", fake)
    return fake


SIGNAL = np.random.default_rng(0).normal(size=(100, 4))


def info(name, base=None):
    return types.SimpleNamespace(name=name, hub_id=f"hub/{name}", base=base, params=1e8, paper=None, futrell=None,
                                 family="gpt2", mmlu=None, bbh=None, nwp_loss=None)


def dataset(n=100, noise=0.5, seed=1):
    rng = np.random.default_rng(seed)
    y = SIGNAL[:n] @ rng.normal(size=(4, 6)) + noise * rng.normal(size=(n, 6))
    return [Dataset("Blank2014", [f"s{i}" for i in range(n)], [f"g{i // 5}" for i in range(n)], y.astype(np.float32),
                    np.repeat(["a", "b"], 3), stimulus_ids=np.array([f"id{i}" for i in range(n)]))]


def go(tmp_path, infos=None, settings=None, out="out", loaded=None):
    settings = settings or ba.Settings(cache_dir=str(tmp_path / "cache"), device="cpu")
    return ba.run(infos or [info("m")], ["Blank2014"], settings, tmp_path / out,
                  loaded={"Blank2014": dataset()} if loaded is None else loaded)


def record_files(tmp_path):
    return sorted((tmp_path / "cache" / "scores").rglob("*.json"))


def test_a_run_scores_records_and_a_rerun_is_the_report(tmp_path, fake_models, capsys):
    tables = go(tmp_path)
    row = list(tables.values())[0][0]
    assert row["model"] == "m" and row["Blank2014"] > 0.5 and row["layers"] == "B:block.0"   # the planted layer
    (path,) = record_files(tmp_path)
    rec = json.loads(path.read_text())
    assert rec["produced"]["data"]["checksum"] == "synthetic" and rec["best_layer"] == 1
    assert fake_models.calls == ["hub/m"]
    again = go(tmp_path)                              # the same command: no extraction, the same tables
    assert again == tables and fake_models.calls == ["hub/m"]
    out = capsys.readouterr().out
    assert out.count("m | Blank2014: ") == 2 and "# SYNTHETIC" in out
    assert json.loads((tmp_path / "out" / "config.json").read_text())["synthetic"] is True


def test_records_are_keyed_by_everything_that_produced_them_and_nothing_else(tmp_path, fake_models, monkeypatch):
    base = ba.Settings(cache_dir=str(tmp_path / "cache"))
    key = ba.record_place(info("m"), "Blank2014", base, dataset())[1]
    changed = {"dtype": ba.record_place(info("m"), "Blank2014", ba.Settings(**{**vars(base), "dtype": "bfloat16"}),
                                        dataset())[1],
               "brainscore": ba.record_place(info("m"), "Blank2014", ba.Settings(**{**vars(base), "brainscore": True}),
                                             dataset())[1],
               "weights": ba.record_place(info("other"), "Blank2014", base, dataset())[1],
               "responses": ba.record_place(info("m"), "Blank2014", base, dataset(seed=2))[1]}
    with monkeypatch.context() as patch:
        patch.setattr(ba, "PIPELINE_VERSION", ba.PIPELINE_VERSION + 1)
        changed["pipeline version"] = ba.record_place(info("m"), "Blank2014", base, dataset())[1]
    assert len(set(changed.values()) | {key}) == len(changed) + 1, changed
    same = [ba.Settings(**{**vars(base), k: v}) for k, v in (("device", "cuda"), ("batch_size", 2),
                                                             ("layer_choice", "pereira"))]
    assert {ba.record_place(info("m"), "Blank2014", s, dataset())[1] for s in same} == {key}


def test_records_of_registered_data_are_keyed_by_its_sha1_without_loading_it(tmp_path, fake_models, monkeypatch):
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded"))
    settings = ba.Settings(cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "absent"))
    path, key, produced = ba.record_place(info("m"), "Blank2014", settings)
    assert produced["data"]["files"] == {"assy_Blank2014_fROI.nc": "af1e868821b897cb1684e4c8dcd33977121ef552"}
    assert produced["data"]["checksum"] == "verified"
    given = tmp_path / "other.nc"
    given.write_bytes(b"another packaging")
    by_hand = ba.Settings(**{**vars(settings), "data_files": (("Blank2014", (str(given),)),)})
    other = ba.record_place(info("m"), "Blank2014", by_hand)
    assert other[1] != key and other[2]["data"]["checksum"] == "skipped"


@pytest.mark.parametrize("edit, why", [
    (lambda rec: "", "Expecting value"),
    (lambda rec: json.dumps(rec)[:50], "Unterminated|Expecting"),
    (lambda rec: json.dumps({**rec, "pipeline": 2}), "pipeline 2"),
    (lambda rec: json.dumps({**rec, "best_layer": 7}), "best layer 7 is not one of its 3"),
    (lambda rec: json.dumps({**rec, "score": 5.0}), r"not a number in \[-1, 1\]"),
    (lambda rec: json.dumps({**rec, "model": "other"}), "the record of other on Blank2014"),
    (lambda rec: json.dumps({**rec, "parts": {"Blank2014": {"layers": [0.1, "x", 0.2]}}}), "not a number"),
])
def test_a_bad_record_is_named_moved_aside_and_recomputed(tmp_path, fake_models, edit, why):
    good = go(tmp_path)
    (path,) = record_files(tmp_path)
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.warns(UserWarning, match=f"score record {path} skipped .*({why})"):
        assert go(tmp_path) == good
    assert len(fake_models.calls) == 2 and path.with_name(path.name + ".corrupt").exists()
    path.write_text("")                                       # a second bad copy keeps the first
    with pytest.warns(UserWarning, match="moved aside to .*corrupt.1"):
        go(tmp_path)


def test_the_report_folder_is_written_whole_or_not_at_all(tmp_path, fake_models, monkeypatch):
    go(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    calls = []

    def interrupted(rows):                              # Ctrl-C after table 1 is in the new folder
        calls.append(rows)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return "table"
    with monkeypatch.context() as patch:
        patch.setattr(ba, "markdown", interrupted)
        with pytest.raises(KeyboardInterrupt):
            go(tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before    # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]              # no temporary folder
    import csv
    with monkeypatch.context() as patch:                   # a full disk while the tables are written
        patch.setattr(csv.DictWriter, "writerows", lambda *a: (_ for _ in ()).throw(OSError(28, "No space")))
        with pytest.raises(OSError, match="No space"):
            go(tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]
    go(tmp_path)                                               # and the next run is not refused


def test_out_is_refused_when_it_holds_something_else(tmp_path, fake_models):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file or a link"):
        go(tmp_path, out="file")
    target = tmp_path / "precious.csv"
    target.write_text("keep me")
    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "table1.csv").symlink_to(target)
    with pytest.raises(ValueError, match="not a brainalign report"):
        go(tmp_path, out="planted")
    (tmp_path / "link").symlink_to(tmp_path / "planted")
    with pytest.raises(ValueError, match="is a file or a link"):
        go(tmp_path, out="link")
    assert target.read_text() == "keep me"
    go(tmp_path)
    with pytest.raises(ValueError, match=r"holds the report of another run \(models m, ...\)"):
        go(tmp_path, infos=[info("m"), info("n")])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["models"] == ["m"]


def test_a_run_started_at_once_into_the_same_out_does_not_replace_it(tmp_path, fake_models, monkeypatch):
    real = ba.write_report

    def other_run_first(out, *args, **kwargs):       # another command finishes into out meanwhile
        (out / "config.json").parent.mkdir()
        (out / "config.json").write_text(json.dumps({"models": ["n"], "datasets": [], "settings": {}}))
        return real(out, *args, **kwargs)
    monkeypatch.setattr(ba, "write_report", other_run_first)
    with pytest.raises(ValueError, match="holds the report of another run"):
        go(tmp_path)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["models"] == ["n"]


def test_every_dataset_that_cannot_be_had_is_named_before_any_model_runs(tmp_path, fake_models):
    settings = ba.Settings(cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "empty"))
    with pytest.raises(data.DownloadError) as err:
        ba.run([info("m")], ["Pereira2018", "Blank2014", "Wehbe2014"], settings, tmp_path / "out")
    for name in ("Pereira2018", "Blank2014", "Wehbe2014"):
        assert f"{name}:" in str(err.value)
    assert fake_models.calls == [] and not (tmp_path / "out").exists()


def test_a_killed_run_resumes_without_recomputing(tmp_path, fake_models, monkeypatch):
    # job k is scored while job k + 1 is extracted: a kill during the third extraction has written the
    # first record and loses the second, whose scoring was under way
    real, done = ba._activations, []

    def killed_at_the_third(*args):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(1)
        return real(*args)
    infos = [info("m"), info("m-tuned", base="m"), info("n")]
    with monkeypatch.context() as patch:
        patch.setattr(ba, "_activations", killed_at_the_third)
        with pytest.raises(KeyboardInterrupt):
            go(tmp_path, infos=infos)
    assert len(record_files(tmp_path)) == 1 and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert fake_models.calls == ["hub/m", "hub/m-tuned"]
    tables = go(tmp_path, infos=infos)
    assert fake_models.calls == ["hub/m", "hub/m-tuned", "hub/m-tuned", "hub/n"]   # m was not recomputed
    assert list(tables.values())[1][0]["tuned"] == "m-tuned"


def test_a_read_only_cache_serves_a_complete_report_and_refuses_new_work(tmp_path, fake_models, monkeypatch):
    tables = go(tmp_path)
    real = ba.os.access                                                    # the cache cannot be written
    monkeypatch.setattr(ba.os, "access", lambda path, mode: Path(path) != tmp_path / "cache" and real(path, mode))
    assert go(tmp_path, out="out2") == tables                                         # every record is there
    with pytest.raises(ValueError, match="--cache-dir .* cannot be written"):
        go(tmp_path, infos=[info("m"), info("n")], out="out3")                     # n must be computed
    assert fake_models.calls == ["hub/m"]
