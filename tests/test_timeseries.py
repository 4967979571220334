"""Wehbe2014-style scoring: PCA against sklearn, the word -> TR -> delay -> z-score steps on a tiny
hand-checked case, and a planted signal through the whole per-fold pipeline."""
import numpy as np
import pytest

import brainalign as ba
from data import Dataset


@pytest.mark.parametrize("shape", [(60, 20), (700, 600)])     # full SVD, and ARPACK for large inputs
def test_top_components_match_sklearn_pca(shape):
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1])) + 2.0
    mean, comps = ba.top_components(x, 10)
    pca = decomposition.PCA(n_components=10, svd_solver="full").fit(x)
    np.testing.assert_allclose(mean, pca.mean_, atol=1e-10)
    # components are defined up to sign
    np.testing.assert_allclose(np.abs(np.sum(comps * pca.components_, axis=1)), 1.0, atol=1e-8)


def tiny_series(word_tr, sample_tr, n_tr, responses=None, first_word=0):
    n = len(sample_tr)
    return Dataset("tiny", [f"w{i}" for i in range(len(word_tr))], ["g"] * len(word_tr),
                   np.zeros((n, 2), np.float32) if responses is None else responses,
                   np.array(["s1", "s1"]), n_folds=2, gap=0, word_tr=np.asarray(word_tr),
                   sample_tr=np.asarray(sample_tr), n_tr=n_tr, first_word=first_word)


def standardized(v):
    """(v - mean) / std by hand (population std), independent of the code under test."""
    return (v - sum(v) / len(v)) / np.sqrt(sum((v - sum(v) / len(v)) ** 2) / len(v))


def test_tr_features_by_hand(monkeypatch):
    # 12 TRs; words shown in TRs 0,0,1,2,2,4,4,5...; with 1 component and delays (1,),
    # feature of TR t = mean PC score of the words of TR t-1; then z-scored within each run. This layout
    # is not the release's, so the PCA words are set by hand (which words fit it is
    # tests/test_toneva_pca.py's): words 0..7, whose mean (3.5, 7) is not the mean of all 13 words.
    # TR 3 holds no word: Toneva & Wehbe's np.mean of no words is NaN (0f519a0 utils/utils.py
    # prepare_fmri_features), so its run's column z-scores to NaN and their nan_to_num makes it 0. The
    # rows that delays shift in from before TR 0 are 0, the PCA mean: a projection without that mean,
    # or centred on another, would not drop out in the z-scoring.
    word_tr = np.array([0, 0, 1, 2, 2, 4, 4, 5, 6, 7, 8, 9, 10])
    feats = np.arange(13.0)[:, None] * np.array([[1.0, 2.0]])       # rank 1: PC1 is along (1, 2)
    ds = tiny_series(word_tr, sample_tr=np.r_[1:6, 7:12], n_tr=12)
    monkeypatch.setattr(ba, "pca_training_words", lambda ds, train: np.arange(8))
    score = (np.arange(13.0) - 3.5) * np.sqrt(5)                     # projection on the unit PC
    per_tr = np.array([score[word_tr == t].mean() if (word_tr == t).any() else np.nan for t in range(12)])

    def expected(d):                  # row t holds TR t - d (0 before TR 0); each run z-scored, NaN -> 0
        delayed = np.r_[np.zeros(d), per_tr[:-d]]
        return np.concatenate([standardized(delayed[run]) if np.isfinite(delayed[run]).all() else np.zeros(5)
                               for run in (slice(1, 6), slice(7, 12))])
    x = ba.tr_features(feats, ds, np.arange(10), n_components=1, delays=(1,))
    assert (x[:5, 0] == 0).all() and (x[5:, 0] != 0).all()         # run 1 holds TR 3 in a window: zeroed
    sign = 1.0 if np.allclose(x[:, 0], expected(1), atol=1e-10) else -1.0   # a component's sign is free
    np.testing.assert_allclose(x[:, 0], sign * expected(1), atol=1e-10)
    # the default delays: TRs t-1, t-2, t-3, t-4, one block of components each
    x = ba.tr_features(feats, ds, np.arange(10), n_components=1)
    assert x.shape == (10, 4)
    zeroed = [[(x[run, j] == 0).all() for run in (slice(0, 5), slice(5, 10))] for j in range(4)]
    assert zeroed == [[True, False], [True, False], [False, False], [False, True]]   # TR 3 at t = 3 + d
    for j, d in enumerate((1, 2, 3, 4)):
        np.testing.assert_allclose(x[:, j], sign * expected(d), atol=1e-10, err_msg=f"delay {d}")


def test_wehbe_folds_are_four_contiguous_with_five_tr_gaps():
    # 1,211 TRs, 4 folds of 302 (the last 305), 5 TRs dropped at each train/test boundary
    got = ba.kfold_splits(1211, 4, 5)
    expect = [(np.arange(307, 1211), np.arange(0, 302)),
              (np.r_[0:302, 604:1211], np.arange(307, 599)),
              (np.r_[0:604, 906:1211], np.arange(609, 901)),
              (np.arange(0, 901), np.arange(906, 1211))]
    assert len(got) == 4
    for (train, test), (e_train, e_test) in zip(got, expect):
        np.testing.assert_array_equal(train, e_train)
        np.testing.assert_array_equal(test, e_test)
    np.testing.assert_array_equal(ba.kfold_splits(1211, 3, 2)[0][0], np.arange(405, 1211))


def test_first_words_and_trimmed_trs_fit_no_pca():
    word_tr = np.repeat(np.arange(30), 2)
    feats = np.random.default_rng(0).normal(size=(60, 4))
    ds = tiny_series(word_tr, np.arange(2, 28), 30, first_word=6)
    big = feats.copy()
    big[:6] = 1e6                                    # words before first_word must not matter
    big[-4:] = 1e6                                   # words of TRs 28, 29 (trimmed) neither for PCA
    train = np.arange(13)
    a = ba.tr_features(feats, ds, train, n_components=2, delays=(1,))
    b = ba.tr_features(big, ds, train, n_components=2, delays=(1,))
    np.testing.assert_allclose(np.abs(a[:, :]), np.abs(b[:, :]), atol=1e-8)


def test_planted_signal_through_the_time_series_pipeline():
    rng = np.random.default_rng(1)
    n_words, n_tr = 1200, 320
    word_tr = np.arange(n_words) // 4 + 10
    feats = rng.normal(size=(n_words, 40)) @ np.diag(np.linspace(4, 0.2, 40))
    sample_tr = np.r_[20:150, 170:300]
    per_tr = np.zeros((n_tr, 40))
    np.add.at(per_tr, word_tr, feats / 4)
    drive = np.roll(per_tr[:, :3], 2, axis=0)[sample_tr]            # 2-TR delay, leading PCs
    y = drive @ rng.normal(size=(3, 30)) + 0.5 * rng.normal(size=(len(sample_tr), 30))
    ds = tiny_series(word_tr, sample_tr, n_tr, responses=y.astype(np.float32))
    ds = Dataset(**{**ds.__dict__, "subjects": np.repeat(["s1", "s2"], 15), "n_folds": 4, "gap": 5})
    good = ba.summarize_time_series(*[v[0] for v in ba.cross_validate_time_series(feats[:, None], ds)], ds.subjects)
    noise = rng.normal(size=feats.shape)
    bad = ba.summarize_time_series(*[v[0] for v in ba.cross_validate_time_series(noise[:, None], ds)], ds.subjects)
    assert good.score > 0.93 and abs(bad.score) < 0.06          # measured: 0.955, -0.02
    assert set(good.per_subject) == {"s1", "s2"} and good.per_split.shape == (4,)


def test_layers_scored_together_equal_each_alone_whatever_the_blocks():
    # every layer per block of voxels (the responses' z-scores shared): the same r as one layer at a time
    rng = np.random.default_rng(3)
    word_tr, sample_tr = np.arange(900) // 3 + 10, np.r_[20:140, 160:290]
    feats = rng.normal(size=(900, 3, 12))                              # (n_words, layers, features)
    per_tr = np.zeros((310, 12))
    np.add.at(per_tr, word_tr, feats[:, 1])
    y = np.roll(per_tr, 2, axis=0)[sample_tr] @ rng.normal(size=(12, 9)) + rng.normal(size=(250, 9))
    ds = tiny_series(word_tr, sample_tr, 310, responses=y.astype(np.float32))
    ds = Dataset(**{**ds.__dict__, "subjects": np.repeat(["s1", "s2", "s3"], 3), "n_folds": 4, "gap": 5})
    r, per_fold = ba.cross_validate_time_series(feats, ds, jobs=1, chunk=4)      # blocks of 4, 4, 1 voxels
    assert r.shape == (3, 9) and per_fold.shape == (3, 4, 9)
    for i in range(3):
        alone, alone_per_fold = ba.cross_validate_time_series(feats[:, i:i + 1], ds, jobs=1, chunk=100)
        np.testing.assert_allclose(r[i], alone[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(per_fold[i], alone_per_fold[0], rtol=0, atol=1e-12)
    assert r[1].mean() > 0.7 and abs(r[[0, 2]]).mean() < 0.15        # the planted layer wins (measured .87, .07)
    with pytest.raises(ValueError, match=r"word_features must be \(n_words, n_layers, n_feat\), not \(900, 12\)"):
        ba.cross_validate_time_series(feats[:, 0], ds)
