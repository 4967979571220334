"""Wehbe2014 as Toneva & Wehbe's pipeline runs it: the per-voxel cross-validated ridge against a
direct transcription of their code, the aggregation, the preprocessed release, word features."""
import dataclasses
import warnings

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


def ridge_problem(n=307, p=40, t=120, seed=0):
    """Features with a decaying spectrum; voxels from strong signal to pure noise, so the chosen
    penalties spread over the grid; z-scored as the pipeline gives them to the ridge. n is not a multiple
    of the 10 inner folds (307: 7 blocks of 31, 3 of 30), so a cost weighted by block size differs from
    the summed one (with n = 300 they choose alike)."""
    rng = np.random.default_rng(seed)
    x = ba.zscore(rng.normal(size=(n, p)) @ np.diag(np.linspace(2, 0.05, p)))
    strength = np.geomspace(3, 1e-3, t)
    y = x @ rng.normal(size=(p, t)) * strength / np.sqrt(p) + rng.normal(size=(n, t))
    return x, ba.zscore(y)


def size_weighted_choice(x, y, n_splits=10, lambdas=10.0 ** np.arange(-6, 10)):
    """The penalties a plausible wrong rule picks: Toneva's 1 - R2 per block, weighted by the block's size
    (a cost pooled over samples) instead of summed. Only to show that a fixture tells the two apart."""
    from sklearn.model_selection import KFold
    cost = np.zeros((len(lambdas), y.shape[1]))
    for trn, val in KFold(n_splits=n_splits).split(y):
        for idx, lmbda in enumerate(lambdas):
            weights = np.linalg.solve(x[trn].T @ x[trn] + lmbda * np.eye(x.shape[1]), x[trn].T @ y[trn])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                cost[idx] += len(val) * (1 - np.nan_to_num(1 - np.mean((y[val] - x[val] @ weights) ** 2, 0)
                                                           / np.var(y[val], 0)))
    return lambdas[np.argmin(cost, axis=0)]


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
    y[31:62, 1] = 0.0                           # constant in one validation block: R2 -> -inf -> min float
    y[:62, 2] = 5.0                              # constant in two blocks: the summed cost overflows to inf
    # nearly constant in one block: its variance (~1e-20) is below the rounding of |y|^2 / n - mean^2, so
    # only a direct np.var, Toneva's, ranks the penalties (a shortcut there picks 1e-6, not 1e9)
    y[62:93, 3] = 5.0 + 1e-10 * np.random.default_rng(5).normal(size=31)
    w, lam = ba.ridge_cv(x, y)
    w_ref, lam_ref = toneva_cross_val_ridge(x, y)
    np.testing.assert_array_equal(lam, lam_ref)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-8)
    assert len(np.unique(lam)) >= 5             # the case exercises much of the grid (measured 7 values)
    assert lam[0] == lam[1] == lam[2] == 1e-6 and lam[3] == 1e9   # all-equal costs: the first penalty
    # unequal inner blocks: a size-weighted cost would choose otherwise (measured: on 3 voxels)
    assert (size_weighted_choice(x, y) != lam_ref).any()


def test_ridge_cv_equals_transcription_with_more_features_than_samples():
    pytest.importorskip("sklearn")
    x, y = ridge_problem(n=64, p=80, t=30, seed=4)          # inner blocks of 7 and 6
    w, lam = ba.ridge_cv(x, y)
    w_ref, lam_ref = toneva_cross_val_ridge(x, y)
    np.testing.assert_array_equal(lam, lam_ref)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-8)
    assert (size_weighted_choice(x, y) != lam_ref).any()    # measured: on 2 voxels


def test_ridge_cv_planted_signal():
    rng = np.random.default_rng(1)
    x = ba.zscore(rng.normal(size=(900, 40)))
    signal = x @ rng.normal(size=(40, 50))
    y = ba.zscore(np.c_[signal + 0.5 * rng.normal(size=(900, 50)), rng.normal(size=(900, 50))])
    train, test = np.arange(700), np.arange(700, 900)
    w, lam = ba.ridge_cv(ba.zscore(x[train]), ba.zscore(y[train]))
    r = ba.pearson(ba.zscore(x[test]) @ w, y[test])
    assert r[:50].min() > 0.98 and abs(r[50:].mean()) < 0.05            # measured 0.991, 0.014
    assert np.median(lam[:50]) <= 1 and np.median(lam[50:]) >= 1e4      # noise: heavy shrinkage (.1, 1e5)


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


def test_ridge_factors_serve_every_block_of_targets():
    # the pipeline factors x once and solves block after block: the same weights and penalties as one call
    x, y = ridge_problem(t=50)
    w, lam = ba.ridge_cv(x, y)
    factors = ba.ridge_factors(x)
    parts = [ba.ridge_solve(factors, y[:, cols], width=7) for cols in (slice(0, 13), slice(13, 50))]
    np.testing.assert_allclose(np.hstack([w_part for w_part, _ in parts]), w, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate([lam_part for _, lam_part in parts]), lam)
    with pytest.raises(ValueError, match="same n"):
        ba.ridge_solve(factors, y[:-1])


# --------------------------------------------------------------------------- aggregation


# Toneva & Wehbe's per-fold pipeline, line by line (mtoneva/brain_language_nlp 0f519a0 utils/utils.py:
# delay_one, delay_mat, get_nlp_features_fixed_length, prepare_fmri_features,
# run_class_time_CV_fmri_crossval_ridge; utils/ridge_tools.py corr), and Aw & Toneva's score
# (awwkl/brain_language_summarization f341823 all_scripts/plot_pearson.py pearson_corr). Their np.load calls
# become arguments; their 4 runs trimmed [20:-15] are kept as written.

def toneva_delay_one(mat, d):
    new_mat = np.zeros_like(mat)
    if d > 0:
        new_mat[d:] = mat[:-d]
    elif d < 0:
        new_mat[:d] = mat[-d:]
    else:
        new_mat = mat
    return new_mat


def toneva_delay_mat(mat, delays):
    return np.concatenate([toneva_delay_one(mat, d) for d in delays], axis=-1)


def toneva_get_nlp_features_fixed_length(loaded, train_indicator, SKIP_WORDS, END_WORDS):
    from sklearn.decomposition import PCA
    train = loaded[SKIP_WORDS:END_WORDS, :][train_indicator]
    test = loaded[SKIP_WORDS:END_WORDS, :][~train_indicator]
    pca = PCA(n_components=10, svd_solver="full")
    pca.fit(train)
    return pca.transform(train), pca.transform(test)


def toneva_prepare_fmri_features(train_features, test_features, word_train_indicator, TR_train_indicator,
                                 time, runs, time_words, SKIP_WORDS, END_WORDS):
    from scipy.stats import zscore
    time_words = time_words[SKIP_WORDS:END_WORDS]
    words_id = np.zeros([len(time_words)])
    for i in range(len(time_words)):
        words_id[i] = np.where(time_words[i] > time)[0][-1]
    all_features = np.zeros([time_words.shape[0], train_features.shape[1]])
    all_features[word_train_indicator] = train_features
    all_features[~word_train_indicator] = test_features
    p = all_features.shape[1]
    tmp = np.zeros([time.shape[0], p])
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):        # their empty TRs warn
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(time.shape[0]):
            tmp[i] = np.mean(all_features[(words_id <= i) * (words_id > i - 1)], 0)    # no word: NaN
        tmp = toneva_delay_mat(tmp, np.arange(1, 5))
        tmp = np.vstack([zscore(tmp[runs == i][20:-15]) for i in range(1, 5)])
    tmp = np.nan_to_num(tmp)
    return tmp[TR_train_indicator], tmp[~TR_train_indicator]


def toneva_run_class_time_cv(data, loaded, time, runs, time_words, SKIP_WORDS, n_folds=4, skip=5):
    """-> corrs (n_folds, n_voxels), the stacked test predictions and test data."""
    from scipy.stats import zscore
    from test_toneva_pca import toneva_CV_ind, toneva_TR_to_word_CV_ind
    END_WORDS = len(time_words)
    ind = toneva_CV_ind(data.shape[0], n_folds=n_folds)
    corrs, all_test_data, all_preds = np.zeros((n_folds, data.shape[1])), [], []
    for ind_num in range(n_folds):
        train_ind = ind != ind_num
        test_ind = ind == ind_num
        word_CV_ind = toneva_TR_to_word_CV_ind(train_ind, time, runs, time_words, SKIP_WORDS, END_WORDS)
        tmp_train_features, tmp_test_features = toneva_get_nlp_features_fixed_length(
            loaded, word_CV_ind, SKIP_WORDS, END_WORDS)
        train_features, test_features = toneva_prepare_fmri_features(
            tmp_train_features, tmp_test_features, word_CV_ind, train_ind, time, runs, time_words, SKIP_WORDS,
            END_WORDS)
        train_data = data[train_ind]
        test_data = data[test_ind]
        if ind_num == 0:
            train_data = train_data[skip:, :]
            train_features = train_features[skip:, :]
        elif ind_num == n_folds - 1:
            train_data = train_data[:-skip, :]
            train_features = train_features[:-skip, :]
        else:
            test_data = test_data[skip:-skip, :]
            test_features = test_features[skip:-skip, :]
        train_data = np.nan_to_num(zscore(np.nan_to_num(train_data)))
        test_data = np.nan_to_num(zscore(np.nan_to_num(test_data)))
        all_test_data.append(test_data)
        train_features = np.nan_to_num(zscore(train_features))
        test_features = np.nan_to_num(zscore(test_features))
        weights, chosen_lambdas = toneva_cross_val_ridge(train_features, train_data, n_splits=10)
        preds = np.dot(test_features, weights)
        corrs[ind_num, :] = np.mean(zscore(preds) * zscore(test_data), 0)          # ridge_tools.corr
        all_preds.append(preds)
    return corrs, np.vstack(all_preds), np.vstack(all_test_data)


def toneva_layout_series(seed=0, n_voxels=12):
    """Word features (n_words, 24) and a Wehbe-shaped Dataset in Toneva & Wehbe's layout, far smaller: 4 runs
    of 75, 80, 72, 78 TRs kept as [20:-15] (165 samples: 4 folds of 41, 41, 41, 42), 20 skipped words in TR 0,
    then 1 to 4 words in every TR except 6 empty TRs early in each run and 4 late (inside the trimmed TRs,
    outside every kept TR's delay window) and one kept TR of run 2 (inside 4 delay windows), 2 subjects with
    3 and 9 voxels, responses planted through a 2-TR delay. -> (word features, Dataset, TR onsets, runs,
    word onsets)."""
    from test_toneva_pca import series
    rng = np.random.default_rng(seed)
    run_lengths = [75, 80, 72, 78]
    count = rng.integers(1, 5, size=sum(run_lengths))
    count[0] = 0
    for start, length in zip(np.r_[0, np.cumsum(run_lengths)[:-1]], run_lengths):
        count[start + 3:start + 9] = 0
        count[start + length - 6:start + length - 2] = 0
    count[run_lengths[0] + 40] = 0                                    # run 2's 41st TR, a kept one
    onsets = [2.0 * t + np.sort(rng.uniform(0.05, 1.95, c)) for t, c in enumerate(count)]
    time_words = np.concatenate([np.linspace(0.01, 1.9, 20)] + onsets)
    ds, time, runs = series(run_lengths, time_words, first_word=20, n_folds=4, gap=5)
    feats = rng.normal(size=(len(time_words), 24)) @ np.diag(np.linspace(3, 0.2, 24)) + 1.0
    per_tr = np.zeros((ds.n_tr, 24))
    np.add.at(per_tr, ds.word_tr, feats)
    drive = np.roll(per_tr, 2, axis=0)[ds.sample_tr]                 # a 2-TR delay
    y = drive @ rng.normal(size=(24, n_voxels)) * np.linspace(0.5, 0, n_voxels)
    y = (y + rng.normal(size=y.shape)).astype(np.float32)
    ds = dataclasses.replace(ds, responses=y, subjects=np.array(["a"] * 3 + ["b"] * (n_voxels - 3)))
    return feats, ds, time, runs, time_words


def test_time_series_r_equals_toneva_folds_and_aw_concatenation():
    """Every step against the authors' code transcribed above, nothing of brainalign's in the reference:
    Toneva's folds, PCA words, PCA(10) fit on them, TR means, delays 1-4, per-run z-scores, the gap,
    z-scores of train and test apart, their cross_val_ridge, per-fold corr; Aw & Toneva's pearson_corr on
    the stacked test folds, the mean over each subject's voxels, then over subjects."""
    pytest.importorskip("sklearn")
    from scipy.stats import zscore
    feats, ds, time, runs, time_words = toneva_layout_series()
    # Toneva's mean over a TR without words is NaN, which zeroes its delay column in that run (zscore, then
    # nan_to_num): run 2's empty kept TR zeroes its 4 delay blocks there (brainalign once gave such a TR 0,
    # the PCA mean: r up to 0.44 apart). Also: 165 samples in 4 folds (not a multiple), 1 to 4 words per TR,
    # features off-centre
    counts = np.bincount(ds.word_tr[ds.first_word:], minlength=ds.n_tr)
    assert len(ds.sample_tr) % 4 and (counts == 0).sum() == 1 + 40 + 1 and len(set(counts[ds.sample_tr])) == 5
    assert sum(not (counts[t - 4:t] > 0).all() for t in ds.sample_tr) == 4      # windows holding that TR
    y = ds.responses.astype(np.float64)              # scipy's zscore would stay in float32
    corrs, preds, tests = toneva_run_class_time_cv(y, feats, time, runs, time_words, ds.first_word)
    expect = np.mean(zscore(preds) * zscore(tests), 0)                          # plot_pearson.pearson_corr
    (r, *_), (per_fold, *_) = ba.cross_validate_time_series(feats[:, None], ds, chunk=5)  # chunks: 5, 5, 2
    np.testing.assert_allclose(r, expect, rtol=0, atol=1e-8)             # measured 3e-16
    # the fold inside run 2 has only zeroed features, so constant predictions: their corr is NaN, pearson's 0
    assert np.isnan(corrs[1]).all() and not np.isnan(corrs[[0, 2, 3]]).any()
    np.testing.assert_allclose(per_fold, np.nan_to_num(corrs), rtol=0, atol=1e-8)
    assert np.abs(per_fold.mean(axis=0) - r).max() > 0.05   # stacking is not the mean of folds (measured 0.21)
    score = ba.summarize_time_series(r, per_fold, ds.subjects)
    assert score.per_subject == pytest.approx({"a": expect[:3].mean(), "b": expect[3:].mean()}, abs=1e-8)
    assert score.score == pytest.approx((expect[:3].mean() + expect[3:].mean()) / 2, abs=1e-8)
    assert 0.25 < score.per_subject["a"] < 0.35 and 0.25 < score.per_subject["b"] < 0.35  # measured .29, .31


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
