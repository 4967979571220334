"""The scoring core against oracles: sklearn's ShuffleSplit semantics derived by hand, scipy lstsq,
scipy.stats.pearsonr, a planted signal, a tiny hand-checked case, and every bad input."""
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import brainalign as ba


# --- splits -------------------------------------------------------------------

def test_shuffle_splits_match_sklearn_semantics_by_hand():
    # n=10, train_size=0.9: n_train=9, n_test=1; RandomState(1) draws one permutation per split
    rng = np.random.RandomState(1)
    perms = [rng.permutation(10) for _ in range(3)]
    splits = ba.shuffle_splits(20, n_splits=3)   # n_test=2
    rng = np.random.RandomState(1)
    for train, test in splits:
        perm = rng.permutation(20)
        assert test.tolist() == perm[:2].tolist()
        assert train.tolist() == perm[2:20].tolist()
    # pinned values: the first permutation of 10 under seed 1, and the first two splits of n=20
    # (n_train = floor(0.9 * 20) = 18: test = the permutation's head, train = the other 18)
    assert perms[0].tolist() == [2, 9, 6, 4, 0, 3, 1, 7, 8, 5]
    (train0, test0), (train1, test1) = ba.shuffle_splits(20, n_splits=2)
    assert test0.tolist() == [3, 16] and test1.tolist() == [15, 8]
    assert train0.tolist() == [6, 10, 2, 14, 4, 17, 7, 1, 13, 0, 19, 18, 9, 15, 8, 12, 11, 5]
    first_train, first_test = ba.shuffle_splits(30, n_splits=1)[0]
    assert len(first_test) == 3 and len(first_train) == 27     # floor(0.9*30)=27


def test_shuffle_splits_equal_sklearn_when_available():
    sk = pytest.importorskip("sklearn.model_selection")
    for n in (25, 243, 384):
        ours = ba.shuffle_splits(n)
        theirs = list(sk.ShuffleSplit(n_splits=10, train_size=0.9, random_state=1).split(np.zeros(n)))
        for (a, b), (c, d) in zip(ours, theirs):
            assert a.tolist() == c.tolist() and b.tolist() == d.tolist()


def test_kfold_contiguous_with_gap_follows_toneva_wehbe():
    splits = ba.kfold_splits(24, n_folds=4, gap=2)       # blocks of 6
    (tr0, te0), (tr1, te1), (tr2, te2), (tr3, te3) = splits
    assert te0.tolist() == [0, 1, 2, 3, 4, 5] and tr0.tolist() == list(range(8, 24))
    assert te1.tolist() == [8, 9] and tr1.tolist() == list(range(0, 6)) + list(range(12, 24))
    assert te2.tolist() == [14, 15] and tr2.tolist() == list(range(0, 12)) + list(range(18, 24))
    assert te3.tolist() == list(range(18, 24)) and tr3.tolist() == list(range(0, 16))
    # last fold takes the rest
    assert ba.kfold_splits(11, n_folds=2)[1][1].tolist() == list(range(5, 11))


def test_kfold_by_group():
    groups = np.array(["a", "a", "a", "b", "b", "b", "c", "c", "c"])
    splits = ba.kfold_splits(9, groups=groups)
    assert [te.tolist() for _, te in splits] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert splits[1][0].tolist() == [0, 1, 2, 6, 7, 8]
    gapped = ba.kfold_splits(12, groups=np.repeat(["a", "b", "c"], 4), gap=1)
    assert gapped[0][0].tolist() == list(range(5, 12))
    assert gapped[1][1].tolist() == [5, 6] and gapped[2][0].tolist() == list(range(0, 7))
    interleaved = np.array(["a", "b"] * 4)
    assert [te.tolist() for _, te in ba.kfold_splits(8, groups=interleaved)] == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_split_errors():
    with pytest.raises(ValueError, match="too few stimuli"):
        ba.shuffle_splits(5)
    with pytest.raises(ValueError, match="too few samples"):
        ba.kfold_splits(3, n_folds=4)
    with pytest.raises(ValueError, match="use fewer folds or a smaller gap"):
        ba.kfold_splits(12, n_folds=4, gap=1)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        ba.kfold_splits(4, groups=["a"] * 4)
    with pytest.raises(ValueError, match="not one contiguous block"):
        ba.kfold_splits(8, groups=["a", "b"] * 4, gap=1)
    with pytest.raises(ValueError, match="groups has shape"):
        ba.kfold_splits(8, groups=["a", "b"])


# --- encoder against scipy lstsq ---------------------------------------------

def lstsq_predictions(x_train, y_train, x_test, cond):
    """The straightforward reference: centre, scipy lstsq (min-norm), add the means back."""
    mx, my = x_train.mean(0), y_train.mean(0)
    w = scipy.linalg.lstsq(x_train - mx, y_train - my, cond=cond)[0]
    return (x_test - mx) @ w + my


@pytest.mark.parametrize("n,p", [(120, 20), (40, 200), (60, 60), (300, 10)])   # the last: weights path
@pytest.mark.parametrize("cond", [1e-6, 1e-12])
def test_predictions_equal_scipy_lstsq(n, p, cond):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, p)) + 3.0        # an offset, so the intercept matters
    y = rng.normal(size=(n, 7))
    for train, test in ba.shuffle_splits(n, n_splits=3):
        ours = ba.predict(x[train], y[train], x[test], cond)
        ref = lstsq_predictions(x[train], y[train], x[test], cond)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


def test_rank_deficient_features_use_the_cutoff():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 5))
    x = np.hstack([base, base @ rng.normal(size=(5, 30))])   # rank 5 in 35 columns
    y = rng.normal(size=(50, 3))
    train, test = np.arange(40), np.arange(40, 50)
    np.testing.assert_allclose(ba.predict(x[train], y[train], x[test]),
                               lstsq_predictions(x[train], y[train], x[test], 1e-6), atol=1e-8)


def test_pearson_equals_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    ref = [scipy.stats.pearsonr(a[:, j], b[:, j])[0] for j in range(6)]
    np.testing.assert_allclose(ba.pearson(a, b), ref, atol=1e-12)


def test_constant_column_scores_zero_with_warning():
    a = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    b = np.array([[1.0, 5.0], [2.0, 1.0], [4.0, 3.0]])
    with pytest.warns(UserWarning, match="constant column"):
        r = ba.pearson(a, b)
    assert r[1] == 0.0 and np.isfinite(r).all()


# --- scores ------------------------------------------------------------------

def test_planted_signal_is_recovered_and_noise_is_not():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 10))
    y = x @ rng.normal(size=(10, 50)) + 0.3 * rng.normal(size=(200, 50))
    splits = ba.shuffle_splits(200)
    assert ba.score(x, y, splits).score > 0.9
    noise = ba.score(x, rng.normal(size=(200, 50)), splits)
    assert abs(noise.score) < 0.15


def test_score_aggregation_by_hand():
    # 2 splits x 3 targets: median over targets per split, then the mean over splits
    r = np.array([[0.1, 0.5, 0.3], [0.2, 0.0, 0.4]])
    s = ba.summarize(r, subjects=np.array(["s1", "s1", "s2"]))
    assert s.per_split.tolist() == [0.3, 0.2]
    assert s.score == pytest.approx(0.25)
    assert s.per_subject == {"s1": pytest.approx((0.3 + 0.1) / 2), "s2": pytest.approx(0.35)}
    np.testing.assert_allclose(s.per_target, [0.15, 0.25, 0.35])
    assert s.mad == pytest.approx(0.075)      # |0.2 - 0.275|, |0.35 - 0.275|


def test_tiny_exact_fit_by_hand():
    # y = 2x + 1 exactly, x = 0..5; each test split is predicted perfectly: r = 1
    x = np.arange(6.0)[:, None]
    y = 2 * x + 1
    p = ba.predict(x[:4], y[:4], x[4:])
    np.testing.assert_allclose(p, [[9.0], [11.0]], atol=1e-12)
    assert ba.score(x, y, ba.kfold_splits(6, n_folds=2)).score == pytest.approx(1.0)


def test_score_layers_keeps_the_best_layer():
    rng = np.random.default_rng(4)
    signal = rng.normal(size=(100, 8))
    y = signal @ rng.normal(size=(8, 20)) + 0.5 * rng.normal(size=(100, 20))
    layers = np.stack([rng.normal(size=(100, 8)), signal, rng.normal(size=(100, 8))], axis=1)
    out = ba.score_layers(layers, y, ba.shuffle_splits(100))
    assert out.best_layer == 1 and out.scores.shape == (3,)
    assert out.best.score == out.scores[1] > 0.5


def test_normalize():
    assert ba.normalize(0.18, 0.36) == pytest.approx(0.5)
    assert ba.normalize(0.5, 0.36) == 1.0 and ba.normalize(-0.1, 0.36) == 0.0
    with pytest.raises(ValueError, match="ceiling must be positive"):
        ba.normalize(0.1, 0.0)


def test_bad_inputs():
    x, y = np.zeros((20, 3)), np.zeros((20, 2))
    splits = ba.shuffle_splits(20)
    with pytest.raises(ValueError, match="features have 19 stimuli but responses have 20"):
        ba.score(x[:19], y, splits)
    with pytest.raises(ValueError, match=r"must be \(n_stimuli, n_features\)"):
        ba.score(x[:, 0], y, splits)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="features contain NaN or inf"):
        ba.score(bad, y, splits)
    y_inf = y.copy()
    y_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="responses contain NaN or inf"):
        ba.score(x, y_inf, splits)
    with pytest.raises(ValueError, match="at least one layer"):
        ba.score_layers(np.zeros((20, 0, 3)), y, splits)
    with pytest.raises(ValueError, match="subjects has shape"):
        ba.summarize(np.zeros((2, 3)), subjects=["a"])


def test_predictions_equal_sklearn_linear_regression():
    # what Brain-Score fits: sklearn LinearRegression (its cutoff differs by sklearn version; the
    # data here are well conditioned, so every cutoff gives the same fit)
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(5)
    for n, p in ((80, 30), (30, 90)):
        x, y = rng.normal(size=(n, p)) + 1.0, rng.normal(size=(n, 4))
        ref = linear_model.LinearRegression().fit(x[:-8], y[:-8]).predict(x[-8:])
        np.testing.assert_allclose(ba.predict(x[:-8], y[:-8], x[-8:]), ref, atol=1e-8)


# --- one Gram matrix per layer against the per-split path ----------------------

def designed(n, p, singular_values, seed):
    """X (n, p) = U diag(s) V^T + an offset, with orthonormal U (orthogonal to the constant vector, so
    the centred X has these singular values) and V: the relative sizes are under the test's control."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(np.c_[np.ones(n), rng.normal(size=(n, len(singular_values)))])[0][:, 1:]
    v = np.linalg.qr(rng.normal(size=(p, len(singular_values))))[0]
    return (u * singular_values) @ v.T + rng.normal(size=p)


def per_split_r(x, y, splits, cond, fit):
    return np.stack([ba.pearson(fit(x[tr], y[tr], x[te], cond), y[te]) for tr, te in splits])


@pytest.mark.parametrize("kind", ["rank-deficient", "nearly collinear"])
def test_one_gram_per_layer_equals_the_per_split_path(kind):
    rng = np.random.default_rng(6)
    n, p = 60, 100                                     # every n_train <= p: the Gram path
    base = rng.normal(size=(n, 8))
    x = base @ rng.normal(size=(8, p)) + 2.0           # rank 8 (centred: 8) in 100 columns
    if kind == "nearly collinear":
        x += 1e-3 * rng.normal(size=(n, p))            # full rank, 52 singular values ~1e-4 s_max
    y = x[:, :3] @ rng.normal(size=(3, 5)) + rng.normal(size=(n, 5)) + 10.0
    splits = ba.shuffle_splits(n)
    ours = ba.cross_validate(x, y, splits)
    # a Gram matrix squares the condition number, so both Gram paths round at ~(s_max/s_min)^2 * eps
    # = 1e-8 here (measured: r 4e-8 between the paths, 6e-8 from lstsq; predictions 5e-7)
    np.testing.assert_allclose(ours, per_split_r(x, y, splits, 1e-6, ba.predict), atol=1e-6)
    np.testing.assert_allclose(ours, per_split_r(x, y, splits, 1e-6, lstsq_predictions), atol=1e-6)
    per_split = np.concatenate([ba.predict(x[tr], y[tr], x[te]) for tr, te in splits])
    np.testing.assert_allclose(ba.predict_splits(x, y, splits), per_split, atol=5e-6)   # 5e-7
