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
import scipy.stats

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


def info(name, base=None, paper=None):
    return types.SimpleNamespace(name=name, hub_id=f"hub/{name}", base=base, params=1e8, paper=paper, futrell=None,
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
    assert row["model"] == "m" and row["Blank2014"] > 0.9 and row["layers"] == "B:block.0"   # planted: .931
    (path,) = record_files(tmp_path)
    rec = json.loads(path.read_text())
    assert rec["produced"]["data"]["checksum"] == "synthetic" and rec["best_layer"] == 1
    assert fake_models.calls == ["hub/m"]
    again = go(tmp_path)                              # the same command: no extraction, the same tables
    assert again == tables and fake_models.calls == ["hub/m"]
    out = capsys.readouterr().out
    assert out.count("## 1. Brain alignment per model") == 2 and "# SYNTHETIC" in out   # printed each time
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
    # data read from files: the registered file's sha1, or a file given by hand (--data-file) by its own
    # sha1, so another file's contents give another key and the same file elsewhere the same key
    for folder, contents in (("a", b"one packaging"), ("b", b"another packaging"), ("c", b"one packaging")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "blank.nc").write_bytes(contents)

    def from_files(folder=None, **settings):
        given = (("Blank2014", (str(tmp_path / folder / "blank.nc"),)),) if folder else ()
        return ba.record_place(info("m"), "Blank2014", ba.Settings(**{**vars(base), "data_files": given,
                                                                     **settings}))[1]
    changed |= {"registered data": from_files(data_dir=str(tmp_path / "absent")), "data file": from_files("a"),
                "another data file": from_files("b")}
    assert from_files("c") == changed["data file"] == from_files("a", data_dir=str(tmp_path / "elsewhere"))
    assert len(set(changed.values()) | {key}) == len(changed) + 1, changed
    same = [ba.Settings(**{**vars(base), k: v}) for k, v in (("device", "cuda"), ("batch_size", 2),
                                                             ("layer_choice", "pereira"),
                                                             ("data_dir", str(tmp_path / "elsewhere")),
                                                             ("cache_dir", str(tmp_path / "other-cache")))]
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

    def interrupted(rows):                              # Ctrl-C while the new folder is written
        calls.append(rows)
        if len(calls) == 1:
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


# --------------------------------------------------------------------------- every setting, from its entry
# point (the command line, brainalign.run) to the place it acts: the models' calls, the data read, the
# record key, the fit's numerics, the layers that compete, the ceilings, the layer read on each dataset

P_FEATURES = 120


def _layer_acts():
    """Three layers' activations of 400 stimuli, float32 (n, 120): 4 strong latent directions, 116 weak
    ones, an offset; more features than a split's 90 training stimuli, so the float32 fit of 2023 and the
    float64 fit of --brainscore differ visibly (measured: by 3.7e-3 to 9.8e-3 in a layer's score)."""
    rng = np.random.default_rng(0)
    latent = [rng.normal(size=(400, P_FEATURES)) for _ in range(3)]
    scale = np.r_[np.full(4, 3.0), np.full(P_FEATURES - 4, 0.3)]
    return latent, [(g * scale + 5 * rng.normal(size=P_FEATURES)).astype(np.float32) for g in latent]


LATENT, LAYER_ACTS = _layer_acts()
PAPER = (0.30, 0.15, 0.07, 0.17)          # a model's published scores (Table 5's columns)
READOUT = {False: ["embeddings", "block.0.post_attention_layernorm", "block.1.post_attention_layernorm"],
           True: ["embeddings", "block.0", "block.1"]}                  # a LLaMA's, as models.layer_names


def stimuli(name, n, planted, seed, noise):
    """A Brain-Score-like part: texts "<name> <i>" (the fake models read row i), stimulus ids in string order
    unlike the stored one (b.10 < b.2), responses planted from the latent of the layers given as
    {layer: weight}."""
    rng = np.random.default_rng(seed)
    y = sum(w * LATENT[layer][:n, :4] @ rng.normal(size=(4, 6)) for layer, w in planted.items())
    y = (y + noise * rng.normal(size=(n, 6))).astype(np.float32)
    return Dataset(name, [f"{name} {i}" for i in range(n)], [f"g{i // 5}" for i in range(n)], y,
                   np.repeat(["a", "b"], 3), stimulus_ids=np.array([f"b.{i}" for i in range(n)]))


def time_series(n_samples=56):
    """A Wehbe-like series: 2 words per TR, 4 folds, 3-word windows."""
    rng = np.random.default_rng(3)
    return Dataset("Wehbe2014", [f"w{i}" for i in range(2 * (n_samples + 4))], ["c"] * 2 * (n_samples + 4),
                   rng.normal(size=(n_samples, 4)).astype(np.float32), np.array(["F", "F", "H", "H"]),
                   word_tr=np.arange(2 * (n_samples + 4)) // 2, sample_tr=np.arange(4, n_samples + 4),
                   n_tr=n_samples + 4, n_folds=4, window=3)


def reading_times(n_words=60):
    rng = np.random.default_rng(4)
    times = 300 + 40 * rng.normal(size=(n_words, 4))
    return data.ReadingTimes("Futrell2018", [f"w{i}" for i in range(n_words)], np.ones(n_words),
                             np.arange(n_words) // 10, np.tile(np.arange(1, 11), n_words // 10), times,
                             np.array(["A", "B", "C", "D"]))


PARTS = {   # Blank2014: embeddings > block.0 > block.1 (measured .198, .118, -.004 in float32); Pereira2018
            # planted from block.1 and Fedorenko2016 from block.0, so each dataset's own best layer differs
    "Blank2014": lambda: [stimuli("Blank2014", 100, {0: 0.8, 1: 0.4}, 10, 1.5)],
    "Pereira2018": lambda: [stimuli(f"Pereira2018.{e}", 100, {2: 1.0}, s, 0.5)
                            for e, s in (("243sentences", 11), ("384sentences", 12))],
    "Fedorenko2016": lambda: [stimuli("Fedorenko2016", 100, {1: 1.0}, 13, 0.5)],
    "Wehbe2014": lambda: [time_series()], "Futrell2018": lambda: [reading_times()]}


@pytest.fixture
def world(monkeypatch):
    """models.py and data.load / data.fingerprint replaced by recorders; every call kept with its arguments."""
    calls = []

    def recorded(name, result):
        def call(*args, **kw):
            calls.append((name, args, kw))
            return result(*args, **kw)
        return call

    def acts(source, texts, groups, **kw):
        rows = [int(t.split()[-1]) for t in texts]
        return np.stack([layer[rows] for layer in LAYER_ACTS], axis=1)                 # (n, 3, 120)
    fake = types.SimpleNamespace(
        MODELS={}, calls=calls,
        check_device=recorded("check_device", lambda device: device),
        resolve=recorded("resolve", lambda name: info(name, paper=PAPER)),
        identity=recorded("identity", lambda i, dtype="float32", brainscore=False: {
            "weights": i.hub_id, "dtype": dtype, "readout": "block" if brainscore else "paper"}),
        layer_names=recorded("layer_names", lambda source, brainscore=False: READOUT[brainscore]),
        extract=recorded("extract", acts),
        extract_words=recorded("extract_words", lambda source, words, **kw: np.random.default_rng(
            len(words)).normal(size=(len(words), 3, 6)).astype(np.float32)),
        surprisal=recorded("surprisal", lambda source, words, **kw: np.random.default_rng(5).normal(
            size=len(words))))
    monkeypatch.setitem(sys.modules, "models", fake)
    monkeypatch.setattr(data, "load", recorded("load", lambda name, *a, **k: PARTS[name]()))
    monkeypatch.setattr(data, "fingerprint", recorded("fingerprint", lambda name, *a, **k: {
        "files": {name: "0" * 40}, "checksum": "verified"}))
    return calls


def records(cache):
    return {json.loads(p.read_text())["dataset"]: json.loads(p.read_text())
            for p in Path(cache, "scores").rglob("*.json")}


@pytest.mark.parametrize("entry", ["command line", "library"])
def test_every_setting_reaches_the_models_the_data_and_the_record_key(tmp_path, world, entry):
    cache, folder, given = tmp_path / "cache", tmp_path / "data", tmp_path / "futrell.nc"
    given.write_bytes(b"reading times")
    datasets = ["Blank2014", "Wehbe2014", "Futrell2018"]
    if entry == "command line":
        ba.main(["--models", "m", "--datasets", *datasets, "--dtype", "bfloat16", "--device", "cpu",
                 "--batch-size", "3", "--cache-dir", str(cache), "--data-dir", str(folder),
                 "--data-file", f"Futrell2018={given}", "--out", str(tmp_path / "out")])
        assert ("check_device", ("cpu",), {}) in world
    else:
        ba.run([info("m")], datasets, ba.Settings(dtype="bfloat16", device="cpu", batch_size=3,
                                                  cache_dir=str(cache), data_dir=str(folder),
                                                  data_files=(("Futrell2018", (str(given),)),)), tmp_path / "out")
    options = {"device": "cpu", "dtype": "bfloat16", "batch_size": 3, "cache_dir": str(cache)}
    seen = {name: kw for name, _, kw in world if name in ("extract", "extract_words", "surprisal")}
    assert set(seen) == {"extract", "extract_words", "surprisal"}
    for name, kw in seen.items():
        assert {k: kw.get(k) for k in options} == options, name
    assert seen["extract"]["brainscore"] is False and seen["extract_words"]["brainscore"] is False
    assert seen["extract_words"]["window"] == 3                              # the dataset's word window
    assert {kw["dtype"] for name, _, kw in world if name == "identity"} == {"bfloat16"}
    read = {(name, args[0]): (args[1:], kw.get("files")) for name, args, kw in world if name in ("load", "fingerprint")}
    for name in ("load", "fingerprint"):
        assert read[name, "Blank2014"] == ((str(folder),), None)
        assert read[name, "Futrell2018"][0] == (str(folder),)
        assert list(read[name, "Futrell2018"][1]) == [str(given.resolve())]
    assert {d: r["produced"]["model"]["dtype"] for d, r in records(cache).items()} == dict.fromkeys(
        datasets, "bfloat16")


def transcribed_score(x, y, ids, dtype, cond):
    """Brain-Score 2023's layer score (brain-score/language 1041be4 metrics/linear_predictivity/metric.py):
    sklearn ShuffleSplit(10, train_size=0.9, random_state=1), its _iter_indices written out (one
    RandomState draws a permutation per split, the test set its head); each split's rows sorted by
    stimulus_id; sklearn 1.5's LinearRegression steps in `dtype` with lstsq's `cond`; scipy's pearsonr per
    target (in float64); the median over targets, the mean over splits."""
    from test_encoder import sklearn15_steps
    n, rng, per_split = len(x), np.random.RandomState(1), []
    n_train = int(np.floor(0.9 * n))
    for _ in range(10):
        perm = rng.permutation(n)
        test, train = perm[:n - n_train], perm[n - n_train:]
        train, test = sorted(train, key=ids.__getitem__), sorted(test, key=ids.__getitem__)
        pred = sklearn15_steps(x[train], y[train], x[test], dtype, cond)
        per_split.append(np.median([scipy.stats.pearsonr(np.float64(pred[:, j]), np.float64(y[test, j]))[0]
                                    for j in range(y.shape[1])]))          # r in float64, as pearson()
    return float(np.mean(per_split))


@pytest.mark.parametrize("entry", ["command line", "library"])
def test_brainscore_reaches_the_fit_the_readout_the_layers_and_the_ceilings(tmp_path, world, entry):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    [ds] = PARTS["Blank2014"]()
    x = [layer[:100] for layer in LAYER_ACTS]
    with threadpoolctl.threadpool_limits(1):                # one thread: float32 rounds as in the reference
        ref = {bs: [transcribed_score(xl, ds.responses, ds.stimulus_ids, *numerics) for xl in x]
               for bs, numerics in ((False, (np.float32, None)), (True, (np.float64, 1e-6)))}
        # measured: .1975 .1184 -.0043 (2023) and .1877 .1147 .0043 (float64): 3.7e-3 apart at least
        assert min(abs(a - b) for a, b in zip(ref[False], ref[True])) > 2e-3
        out = {}
        for brainscore in (False, True):
            cache, where = tmp_path / f"cache{brainscore}", tmp_path / f"out{brainscore}"
            if entry == "command line":
                tables = ba.main(["--models", "m", "--datasets", "Blank2014", "--cache-dir", str(cache), "--out",
                                  str(where)] + ["--brainscore"] * brainscore)
            else:
                tables = ba.run([info("m", paper=PAPER)], ["Blank2014"],
                                ba.Settings(brainscore=brainscore, cache_dir=str(cache)), where)
            out[brainscore] = tables, records(cache)["Blank2014"]
    for brainscore, (tables, rec) in out.items():
        np.testing.assert_allclose(rec["parts"]["Blank2014"]["layers"], ref[brainscore], rtol=0, atol=1e-9)
        assert rec["layer_names"] == READOUT[brainscore]                           # the readout asked for
    calls = [(name, kw["brainscore"]) for name, _, kw in world if name in ("extract", "layer_names", "identity")]
    assert sorted(set(calls)) == [(name, bs) for name in ("extract", "identity", "layer_names") for bs in (False, True)]
    # the paper's semantics: blocks only compete, raw r; --brainscore: the embeddings too, r / the ceiling
    # (Blank2014 .21026591, unclipped here), and no column against the paper's raw r
    (title, rows), *_ = out[False][0].items()
    assert out[False][1]["best_layer"] == 1 and rows[0]["Blank2014"] == pytest.approx(ref[False][1], abs=1e-9)
    assert rows[0]["layers"] == "B:block.0.post_attention_layernorm" and "Blank2014 paper" in rows[0]
    (title, rows), *_ = out[True][0].items()
    assert out[True][1]["best_layer"] == 0 and title.endswith("(ceiling-normalised)")
    assert rows[0]["Blank2014"] == pytest.approx(ref[True][0] / 0.21026591, abs=1e-9)
    assert rows[0]["Blank2014"] < 0.95                                           # unclipped: measured .89
    assert rows[0]["layers"] == "B:embeddings" and "Blank2014 paper" not in rows[0]


def test_layer_choice_pereira_from_the_command_line_reaches_every_brainscore_dataset(tmp_path, world):
    # Brain-Score's datasets other than Pereira2018 (Blank2014, Fedorenko2016) are read at the layer chosen
    # on Pereira2018 (block.1 here); each dataset's own best layer is block.0
    tables = {}
    for choice in ("dataset", "pereira"):
        tables[choice] = ba.main(["--models", "m", "--datasets", "Pereira2018", "Blank2014", "Fedorenko2016",
                                  "--layer-choice", choice, "--cache-dir", str(tmp_path / "cache"),
                                  "--out", str(tmp_path / choice)])
    recs = records(tmp_path / "cache")
    assert [recs[d]["best_layer"] for d in ("Pereira2018", "Blank2014", "Fedorenko2016")] == [2, 1, 1]
    for choice, layer in (("dataset", {"P": 2, "B": 1, "F": 1}), ("pereira", {"P": 2, "B": 2, "F": 2})):
        row = next(iter(tables[choice].values()))[0]
        assert row["layers"] == " ".join(f"{d}:{READOUT[False][k]}" for d, k in layer.items())
        for d in ("Blank2014", "Fedorenko2016"):
            assert row[d] == recs[d]["parts"][d]["layers"][layer[d[0]]]
