"""Brain-Score's aggregation pinned on skewed hand data: the median r over targets (pooled, and per
subject), the mean over splits, the median absolute deviation over subjects, and the mean over voxels
that the time-series datasets use instead. Every row is chosen so that median and mean differ, so a
mean in place of a median (or the reverse) changes every pinned value."""
import sys
import types

import numpy as np
import pytest

import brainalign as ba
from data import Dataset

# 3 splits x 9 targets, 3 subjects of 3 targets each. Per split and subject (median | mean):
#   split 0: a .2 | .400   b .30 | .233   c .5 | .383    all 9: median .30, mean .339
#   split 1: a .4 | .500   b .20 | .300   c .6 | .433    all 9: median .40, mean .411
#   split 2: a .1 | .200   b .25 | .450   c .4 | .317    all 9: median .25, mean .322
R = np.array([[0.1, 0.2, 0.9, 0.0, 0.3, 0.4, 0.5, 0.6, 0.05],
              [0.3, 0.4, 0.8, 0.1, 0.2, 0.6, 0.7, 0.0, 0.6],
              [0.0, 0.1, 0.5, 0.2, 0.25, 0.9, 0.4, 0.45, 0.1]])
SUBJECTS = np.repeat(["a", "b", "c"], 3)


def test_score_is_the_mean_over_splits_of_the_median_over_targets():
    s = ba.summarize(R, SUBJECTS)
    np.testing.assert_allclose(s.per_split, [0.3, 0.4, 0.25], atol=1e-15)
    assert s.score == pytest.approx(0.95 / 3, abs=1e-15)          # not the median over splits, .3
    np.testing.assert_allclose(s.per_target, R.mean(axis=0), atol=1e-15)


def test_per_subject_is_the_mean_over_splits_of_the_subjects_median():
    s = ba.summarize(R, SUBJECTS)
    assert list(s.per_subject) == ["a", "b", "c"]
    np.testing.assert_allclose([s.per_subject[k] for k in "abc"],
                               [0.7 / 3, 0.75 / 3, 1.5 / 3], atol=1e-15)   # means: .367, .328, .378


def test_mad_is_the_median_absolute_deviation_from_the_median():
    # per subject .2333, .25, .5: median .25, |deviations| .0167, 0, .25 -> median .0167
    # (a mean anywhere gives .089 or .094 or .111)
    assert ba.summarize(R, SUBJECTS).mad == pytest.approx(0.05 / 3, abs=1e-15)


def test_score_aggregates_cross_validated_r_with_the_median():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = x @ rng.normal(size=(4, 9)) * np.linspace(0.2, 3, 9) + rng.normal(size=(60, 9)) ** 3
    splits = ba.shuffle_splits(60)
    r = ba.cross_validate(x, y, splits)
    assert not np.allclose(np.median(r, axis=1), r.mean(axis=1))      # the choice matters here
    s = ba.summarize(r, SUBJECTS)
    assert s.score == pytest.approx(np.median(r, axis=1).mean(), abs=1e-12)
    assert s.per_subject["c"] == pytest.approx(np.median(r[:, 6:], axis=1).mean(), abs=1e-12)


def series(n_samples=40):
    """A time-series Dataset of n_samples TRs, one word per TR, 2 subjects x 2 voxels."""
    return Dataset("tiny", [f"w{i}" for i in range(n_samples)], ["g"] * n_samples,
                   np.zeros((n_samples, 4), np.float32), np.array(["s1", "s1", "s2", "s2"]),
                   word_tr=np.arange(n_samples), sample_tr=np.arange(n_samples), n_tr=n_samples,
                   n_folds=4, window=3)


def fake_models(monkeypatch, n_layers=3):
    """A stand-in for models.py: every layer of stimulus i holds (layer index, number of texts)."""
    names = ["embeddings"] + [f"block.{j}" for j in range(n_layers - 1)]
    calls = []

    def acts(texts, *args, **kwargs):
        calls.append(kwargs)
        out = np.zeros((len(texts), n_layers, 2))
        out[:, :, 0] = np.arange(n_layers)
        out[:, :, 1] = len(texts)
        return out
    fake = types.SimpleNamespace(
        MODELS={}, layer_names=lambda source, brainscore=False: names,
        extract=lambda source, texts, groups, **kw: acts(texts, **kw),
        extract_words=lambda source, words, **kw: acts(words, **kw))
    monkeypatch.setitem(sys.modules, "models", fake)
    return calls


INFO = types.SimpleNamespace(name="m", hub_id="m", base=None)


def test_time_series_parts_average_voxels_per_subject_then_subjects(monkeypatch):
    # layer i's fake r: R[0, :4] shifted by i / 10; subject means, then their mean, are what is kept
    def fake(word_features, ds, jobs=0, progress=False):           # every layer at once: (r, per fold)
        n = word_features.shape[1]
        return R[0, :4] + word_features[0, :, 0, None] / 10, np.broadcast_to(R[:, :4], (n, *R[:, :4].shape))
    monkeypatch.setattr(ba, "cross_validate_time_series", fake)
    calls = fake_models(monkeypatch)
    rec = ba.run_one(INFO, [series()], ba.Settings(device="cpu"))
    subject_means = np.array([R[0, :2].mean(), R[0, 2:4].mean()])
    np.testing.assert_allclose(rec["parts"]["tiny"]["layers"], subject_means.mean() + np.array([0, 0.1, 0.2]),
                               atol=1e-15)
    assert rec["parts"]["tiny"]["per_subject"][1]["s1"] == pytest.approx(R[0, :2].mean() + 0.1, abs=1e-15)
    assert rec["kind"] == "time series" and calls[0]["window"] == 3     # the dataset's word window


def test_stimulus_parts_take_the_median_and_the_datasets_subjects(monkeypatch):
    seen = []

    def fake(acts, responses, subjects=None, ids=None, numerics="brainscore-2023", splits=None,
             progress=False, jobs=0):
        seen.append((list(subjects), list(ids), numerics, jobs))
        return [ba.Score(0.1 * i, np.zeros(1), np.zeros(4), {"s1": 0.0}, 0.0) for i in range(acts.shape[1])]
    monkeypatch.setattr(ba, "score_layers", fake)
    fake_models(monkeypatch)
    ids = [f"t.{i}" for i in range(30)]                     # Brain-Score's stimulus_id: the fit sorts by it
    ds = Dataset("tiny", ["t"] * 30, ["g"] * 30, np.zeros((30, 4), np.float32),
                 np.array(["s1", "s1", "s2", "s2"]), stimulus_ids=np.array(ids))
    ba.run_one(INFO, [ds], ba.Settings(device="cpu"))
    ba.run_one(INFO, [ds], ba.Settings(device="cpu", brainscore=True, jobs=3))
    subjects = ["s1", "s1", "s2", "s2"]
    assert seen == [(subjects, ids, "brainscore-2023", 0), (subjects, ids, "float64", 3)]


def test_a_datasets_parts_are_averaged_layer_by_layer_then_one_layer_kept(monkeypatch):
    # Pereira2018's two experiments: their scores are averaged layer by layer, then the best block is
    # kept (the authors registered one layer per model); score and MAD at that layer
    fake_models(monkeypatch)
    results = {3: ([0.1, 0.2, 0.6], 0.02), 4: ([0.9, 0.3, 0.1], 0.04)}      # by number of texts

    def fake_score_layers(acts, responses, subjects=None, ids=None, numerics="brainscore-2023", splits=None,
                          progress=False, jobs=0):
        scores, mad = results[int(acts[0, 0, 1])]
        return [ba.Score(v, np.array([v]), np.zeros(2), {"a": v}, mad) for v in scores]
    monkeypatch.setattr(ba, "score_layers", fake_score_layers)
    parts = [Dataset(f"P.{n}", ["t"] * n, ["g"] * n, np.zeros((n, 2), np.float32), np.array(["a", "a"]))
             for n in (3, 4)]
    rec = ba.run_one(INFO, parts, ba.Settings(device="cpu"))
    assert rec["best_layer"] == 2 and rec["layer_names"][2] == "block.1"   # mean [.5, .25, .35]: no embeddings
    assert rec["score"] == pytest.approx((0.6 + 0.1) / 2, abs=1e-15)
    assert rec["mad"] == pytest.approx(0.03, abs=1e-15)
    assert rec["parts"]["P.4"]["layers"] == [0.9, 0.3, 0.1]
    assert ba.run_one(INFO, parts, ba.Settings(device="cpu", brainscore=True))["best_layer"] == 0
