"""Every core busy, the same numbers: layers scored in forked workers equal the serial path bit for bit,
a job is scored while the next is extracted, and a run says what it will cost before it starts."""
import os
import threading
import types

import numpy as np
import pytest

import brainalign as ba
import data
import models
from test_run import fake_models, go, info  # noqa: F401  (fake_models: a fixture)

fork = pytest.mark.skipif(not ba.sys.platform.startswith("linux"), reason="forked workers on Linux only")


@fork
def test_map_keeps_the_order_and_uses_other_processes():
    out = ba._map(lambda i: (i * i, os.getpid()), 7, jobs=2)
    assert [v for v, _ in out] == [i * i for i in range(7)]
    assert os.getpid() not in {pid for _, pid in out}                  # the work ran in the workers
    assert {pid for _, pid in ba._map(lambda i: (i, os.getpid()), 3, jobs=1)} == {os.getpid()}


@fork
def test_parallel_layers_equal_the_serial_path_bit_for_bit():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(100, 4, 30)).astype(np.float32)            # more targets than stimuli: the
    y = (acts[:, 2, :5] @ rng.normal(size=(5, 120)) + rng.normal(size=(100, 120))).astype(np.float32)  # fast fit
    ids = np.array([f"s{i}" for i in rng.permutation(100)])
    serial, parallel = (ba.score_layers(acts, y, ids=ids, jobs=j) for j in (1, 2))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.per_target, b.per_target)
    assert np.argmax([s.score for s in serial]) == 2                   # the planted layer wins


@fork
def test_parallel_time_series_equal_the_serial_path():
    from test_timeseries import tiny_series
    rng = np.random.default_rng(2)
    word_tr, sample_tr = np.arange(900) // 3 + 10, np.r_[20:140, 160:290]
    feats = rng.normal(size=(900, 2, 12))                               # (n_words, layers, features)
    ds = tiny_series(word_tr, sample_tr, 310, responses=rng.normal(size=(250, 9)).astype(np.float32))
    ds = data.Dataset(**{**ds.__dict__, "subjects": np.repeat(["s1", "s2", "s3"], 3), "n_folds": 4, "gap": 5})
    one, two = (ba.cross_validate_time_series(feats, ds, jobs=j, chunk=4) for j in (1, 2))   # 3 blocks
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_a_job_is_scored_while_the_next_is_extracted(tmp_path, fake_models, monkeypatch):  # noqa: F811
    scoring_began, real_scored, real_acts = threading.Event(), ba._scored, ba._activations

    def scored(*args):
        scoring_began.set()
        return real_scored(*args)

    def activations(info, *args):
        if info.name == "n":          # the second extraction waits for the first job's scoring to begin
            assert scoring_began.wait(timeout=30), "the first job was not scored during the next extraction"
        return real_acts(info, *args)
    monkeypatch.setattr(ba, "_scored", scored)
    monkeypatch.setattr(ba, "_activations", activations)
    tables = go(tmp_path, infos=[info("m"), info("n")])
    assert {r["model"] for r in list(tables.values())[0]} == {"m", "n"}


def test_jobs_does_not_change_a_record(tmp_path, fake_models):  # noqa: F811
    one = go(tmp_path / "a", settings=ba.Settings(cache_dir=str(tmp_path / "a" / "cache"), device="cpu", jobs=1))
    two = go(tmp_path / "b", settings=ba.Settings(cache_dir=str(tmp_path / "b" / "cache"), device="cpu", jobs=2))
    assert one == two


def test_a_run_prints_its_projected_cost_first(tmp_path, fake_models, capsys):  # noqa: F811
    info = {"llama-7b": models.MODELS["llama-7b"], "local": types.SimpleNamespace(n_layers=0)}
    todo = [("llama-7b", "Wehbe2014"), ("llama-7b", "Pereira2018"), ("local", "Pereira2018")]
    cost, bar = ba.projection(todo, info, jobs=2)
    bar.close()
    layers, per_layer = models.MODELS["llama-7b"].n_layers + 1, ba.LAYER_SECONDS   # 32 blocks, embeddings
    assert layers == 33 and per_layer["Wehbe2014"] > 0 and per_layer["Pereira2018"] > 0
    w, p = per_layer["Wehbe2014"] * layers, per_layer["Pereira2018"] * layers
    assert cost == {todo[0]: w / 2, todo[1]: p / 2, todo[2]: 0.0}                  # unknown: 0
    hours = (w + p) / 3600
    assert f"3 (model, dataset) pairs; scoring projected at {hours:.2g} CPU-hours, ~{hours / 2:.2g} h on 2 cores" \
        in capsys.readouterr().err
    go(tmp_path)
    assert "to compute: 1 (model, dataset) pairs" in capsys.readouterr().err
    go(tmp_path)                                                        # all cached: nothing projected
    assert "to compute" not in capsys.readouterr().err


def test_a_failed_run_does_not_stop_later_library_calls(tmp_path, fake_models, monkeypatch):  # noqa: F811
    monkeypatch.setattr(ba, "_activations", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path, infos=[info("m")])
    x = np.random.default_rng(0).normal(size=(40, 2, 3))
    try:
        assert len(ba.score_layers(x, x[:, 0], jobs=1)) == 2          # here, after the Ctrl-C
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C of an earlier run stopped a later library call")
