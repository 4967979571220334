"""Wehbe2014 as Toneva & Wehbe's pipeline runs it: the per-voxel cross-validated ridge against a
direct transcription of their code, the aggregation, the preprocessed release, word features."""
from pathlib import Path

import numpy as np
import pytest

import brainalign as ba


# --------------------------------------------------------------------------- ridge


def toneva_cross_val_ridge(x, y, n_splits=10, lambdas=10.0 ** np.arange(-6, 10)):
    """mtoneva/brain_language_nlp utils/ridge_tools.py cross_val_ridge(method='plain'), line by line:
    for every inner fold and penalty, inv(X^T X + l I) X^T Y, cost 1 - R2 with R2's nan_to_num, summed;
    argmin per voxel; refit per penalty on the voxels that chose it. Slow on purpose."""
    from sklearn.model_selection import KFold
    r_cv = np.zeros((len(lambdas), y.shape[1]))
    for trn, val in KFold(n_splits=n_splits).split(y):
        for idx, lmbda in enumerate(lambdas):
            xt = x[trn]
            weights = np.linalg.inv(xt.T @ xt + lmbda * np.eye(x.shape[1])) @ (xt.T @ y[trn])
            pred, real = x[val] @ weights, y[val]
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.nan_to_num(1 - np.mean((real - pred) ** 2, 0) / np.var(real, 0))
            with np.errstate(over="ignore"):
                r_cv[idx] += 1 - r2
    argmin = np.argmin(r_cv, axis=0)
    weights = np.zeros((x.shape[1], y.shape[1]))
    for idx, lmbda in enumerate(lambdas):
        vox = argmin == idx
        weights[:, vox] = np.linalg.inv(x.T @ x + lmbda * np.eye(x.shape[1])) @ (x.T @ y[:, vox])
    return weights, lambdas[argmin]


def ridge_problem(n=300, p=40, t=120, seed=0):
    """Features with a decaying spectrum; voxels from strong signal to pure noise, so the chosen
    penalties spread over the grid; z-scored as the pipeline gives them to the ridge."""
    rng = np.random.default_rng(seed)
    x = ba.zscore(rng.normal(size=(n, p)) @ np.diag(np.linspace(2, 0.05, p)))
    strength = np.geomspace(3, 1e-3, t)
    y = x @ rng.normal(size=(p, t)) * strength / np.sqrt(p) + rng.normal(size=(n, t))
    return x, ba.zscore(y)


def test_inner_folds_are_sklearn_kfold():
    model_selection = pytest.importorskip("sklearn.model_selection")
    for n in (20, 95, 301):
        ours = ba.inner_folds(n, 10)
        theirs = list(model_selection.KFold(n_splits=10).split(np.zeros(n)))
        assert len(ours) == 10
        for (a, b), (c, d) in zip(ours, theirs):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


def test_ridge_cv_equals_toneva_transcription():
    pytest.importorskip("sklearn")
    x, y = ridge_problem()
    y[:, 0] = 0.0                               # constant voxel (z-scored to 0): R2 is 0/0 -> 0
    y[30:60, 1] = 0.0                           # constant in one validation block: R2 -> -inf -> min float
    y[:60, 2] = 5.0                              # constant in two blocks: the summed cost overflows to inf
    w, lam = ba.ridge_cv(x, y)
    w_ref, lam_ref = toneva_cross_val_ridge(x, y)
    np.testing.assert_array_equal(lam, lam_ref)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-8)
    assert len(np.unique(lam)) >= 5             # the case exercises much of the grid
    assert lam[0] == lam[1] == lam[2] == 1e-6   # all-equal costs: the first penalty, as np.argmin


def test_ridge_cv_equals_transcription_with_more_features_than_samples():
    pytest.importorskip("sklearn")
    x, y = ridge_problem(n=60, p=80, t=30, seed=3)
    w, lam = ba.ridge_cv(x, y)
    w_ref, lam_ref = toneva_cross_val_ridge(x, y)
    np.testing.assert_array_equal(lam, lam_ref)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-8)


def test_ridge_cv_planted_signal():
    rng = np.random.default_rng(1)
    x = ba.zscore(rng.normal(size=(900, 40)))
    signal = x @ rng.normal(size=(40, 50))
    y = ba.zscore(np.c_[signal + 0.5 * rng.normal(size=(900, 50)), rng.normal(size=(900, 50))])
    train, test = np.arange(700), np.arange(700, 900)
    w, lam = ba.ridge_cv(ba.zscore(x[train]), ba.zscore(y[train]))
    r = ba.pearson(ba.zscore(x[test]) @ w, y[test])
    assert r[:50].min() > 0.98 and abs(r[50:].mean()) < 0.05
    assert np.median(lam[:50]) <= 10 and np.median(lam[50:]) >= 1e3     # noise voxels: heavy shrinkage


def test_ridge_cv_bad_input():
    x, y = ridge_problem(n=40, t=3)
    with pytest.raises(ValueError, match="same n"):
        ba.ridge_cv(x, y[:-1])
    with pytest.raises(ValueError, match="x must hold real numbers and be 2-D"):
        ba.ridge_cv(x[:, 0], y)
    bad = y.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        ba.ridge_cv(x, bad)
    with pytest.raises(ValueError, match="positive values"):
        ba.ridge_cv(x, y, penalties=[0.0, 1.0])
    with pytest.raises(ValueError, match="too few training samples for 10 inner folds: n=15"):
        ba.ridge_cv(x[:15], y[:15])


# --------------------------------------------------------------------------- aggregation


def small_series(seed=0, n_voxels=12):
    """A Wehbe-shaped time series: 2 runs, 3 words per TR, 2 subjects with unequal voxel counts."""
    from data import Dataset
    rng = np.random.default_rng(seed)
    word_tr = np.arange(600) // 3 + 4
    sample_tr = np.r_[8:95, 110:200]
    feats = rng.normal(size=(600, 16)) @ np.diag(np.linspace(3, 0.2, 16))
    per_tr = np.zeros((210, 16))
    np.add.at(per_tr, word_tr, feats)
    drive = np.roll(per_tr, 2, axis=0)[sample_tr]                    # a 2-TR delay
    y = drive @ rng.normal(size=(16, n_voxels)) * np.linspace(0.5, 0, n_voxels)
    y = (y + rng.normal(size=y.shape)).astype(np.float32)
    ds = Dataset("tiny", [f"w{i}" for i in range(600)], ["g"] * 600, y,
                 np.array(["a"] * 3 + ["b"] * (n_voxels - 3)), n_folds=4, gap=5,
                 word_tr=word_tr, sample_tr=sample_tr, n_tr=210, first_word=5)
    return feats, ds


def test_time_series_r_equals_toneva_folds_and_aw_concatenation():
    """Per fold as Toneva's run_class_time_CV_fmri_crossval_ridge (scipy zscore of train and test
    separately, their cross_val_ridge), then Aw & Toneva's pearson_corr on the stacked test folds."""
    pytest.importorskip("sklearn")
    from scipy.stats import zscore
    feats, ds = small_series()
    splits = ba.kfold_splits(len(ds.sample_tr), 4, gap=5)
    preds, tests = [], []
    y = ds.responses.astype(np.float64)              # scipy's zscore would stay in float32
    for train, test in splits:
        x = ba.tr_features(feats, ds, train)
        w, _ = toneva_cross_val_ridge(np.nan_to_num(zscore(x[train])), np.nan_to_num(zscore(y[train])))
        preds.append(np.nan_to_num(zscore(x[test])) @ w)
        tests.append(np.nan_to_num(zscore(y[test])))
    preds, tests = np.vstack(preds), np.vstack(tests)
    expect = np.mean(zscore(preds) * zscore(tests), 0)
    r, per_fold = ba.cross_validate_time_series(feats, ds, chunk=5)    # chunks: 5, 5, 2 voxels
    np.testing.assert_allclose(r, expect, rtol=0, atol=1e-8)
    assert per_fold.shape == (4, 12) and not np.allclose(per_fold.mean(axis=0), r)
    score = ba.summarize_time_series(r, per_fold, ds.subjects)
    assert score.per_subject == pytest.approx({"a": expect[:3].mean(), "b": expect[3:].mean()}, abs=1e-8)
    assert score.score == pytest.approx((expect[:3].mean() + expect[3:].mean()) / 2, abs=1e-8)


def test_summarize_time_series_by_hand():
    # mean per subject (a: .3, its median .2; b: .6, c: .9), then over subjects; pooled voxels: .48
    r = np.array([0.1, 0.2, 0.6, 0.6, 0.9])
    s = ba.summarize_time_series(r, np.tile(r, (4, 1)), ["a", "a", "a", "b", "c"])
    assert s.per_subject == pytest.approx({"a": 0.3, "b": 0.6, "c": 0.9})
    assert s.score == pytest.approx(1.8 / 3)
    assert s.mad == pytest.approx(0.3)                 # median(|.3-.6|, 0, |.9-.6|)
    np.testing.assert_allclose(s.per_split, [0.48] * 4)
    with pytest.raises(ValueError, match=r"subjects has shape \(2,\), expected \(5,\)"):
        ba.summarize_time_series(r, np.tile(r, (4, 1)), ["a", "b"])


# --------------------------------------------------------------------------- a bad release stops the run


def test_bad_release_stops_the_run_before_anything_is_cached(tmp_path):
    from test_data import write_wehbe
    write_wehbe(tmp_path / "data", edit={"fMRI/data_subject_M.npy": np.full((1211, 2), np.nan, np.float32)})
    with pytest.raises(SystemExit, match=r"data_subject_M.npy: voxels: 2 target\(s\) hold missing \(NaN\)"):
        ba.main(["--models", "gpt2", "--datasets", "Wehbe2014", "--data-dir", str(tmp_path / "data"),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert not list((tmp_path / "cache").rglob("*.*")) and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- word features

WORDS = ["Harry", "had", "never,", '"Typical,"', "@Quidditch", "first-year", "met"]


def reference(path, family, tokens, positions):
    """A direct forward pass over hand-written tokens with output_hidden_states, final norm removed
    (extract reads block outputs before it): the mean over `positions` of every layer."""
    import torch
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(path)
    net = transformers.AutoModel.from_pretrained(path).eval()
    if family == "gpt2":
        net.ln_f = torch.nn.Identity()
    if family == "t5":
        net.encoder.final_layer_norm = torch.nn.Identity()
        net = net.get_encoder()
    ids = torch.tensor([tok.convert_tokens_to_ids(tokens)])
    with torch.no_grad():
        hidden = net(input_ids=ids, output_hidden_states=True).hidden_states
    return np.stack([h[0, positions].mean(0).numpy() for h in hidden])      # (n_layers, hidden)


# word i, the tokens of its 3-word window tokenized word by word with , " @ tokens dropped, and the
# positions of word i's own tokens (byte-level GPT-2 splits punctuation off; word-level T5 does not)
CASES = {
    "gpt2": [(3, ["had", "never", "Typical", ',"'], [2, 3]),
             (5, ["Typical", ',"', "Quidditch", "first", "-", "year"], [3, 4, 5]),
             (6, ["Quidditch", "first", "-", "year", "met"], [4]),
             (0, ["Harry"], [0])],
    "t5": [(4, ["▁never,", '▁"Typical,"', "▁@Quidditch"], [2]),          # no </s> appended
           (1, ["▁Harry", "▁had"], [1])],
    "bert": [(2, ["[CLS]", "harry", "had", "never", "[SEP]"], [3]),
             (3, ["[CLS]", "had", "never", "typical", "[SEP]"], [3])],
}


@pytest.mark.parametrize("family", CASES)
def test_word_features_are_tonevas_scheme(tmp_path, family):
    models = pytest.importorskip("models")
    path = pytest.importorskip("tiny").make_tiny_model(family, tmp_path / family, WORDS, seed=2)
    got = models.extract_words(str(path), WORDS, window=3, device="cpu", progress=False, batch_size=3)
    assert got.shape == (len(WORDS), 3, 32) and got.dtype == np.float32      # embeddings + 2 blocks
    for i, tokens, positions in CASES[family]:
        np.testing.assert_allclose(got[i], reference(path, family, tokens, positions), rtol=1e-4, atol=1e-5)


def test_word_features_cache_window_and_bad_words(tmp_path, monkeypatch):
    models = pytest.importorskip("models")
    path = pytest.importorskip("tiny").make_tiny_model("gpt2", tmp_path / "m", WORDS)
    kw = dict(device="cpu", progress=False, cache_dir=tmp_path / "cache")
    a = models.extract_words(str(path), WORDS, window=3, **kw)
    wide = models.extract_words(str(path), WORDS, window=5, **kw)
    assert not np.allclose(a[5], wide[5]) and np.allclose(a[1], wide[1])   # the window matters from word 3 on
    models._KEPT.clear()
    monkeypatch.setattr(models, "_load", lambda *a, **k: pytest.fail("model loaded again"))
    np.testing.assert_array_equal(models.extract_words(str(path), WORDS, window=3, **kw), a)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"word 1 \(','\) has no tokens left once"):
        models.extract_words(str(path), ["Harry", ",", "had"], device="cpu", progress=False)
    with pytest.raises(ValueError, match="window must be a whole number >= 1, got 0"):
        models.extract_words(str(path), WORDS, window=0, device="cpu", progress=False)
