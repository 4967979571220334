"""
brainalign: how well a language model's layers linearly predict human brain responses to the same
text, and the instruction-tuning comparison of Aw et al. (COLM 2024), in one readable file.

This file holds the scoring core (pure NumPy: cross-validation splits, a least-squares encoder that
matches Brain-Score's sklearn LinearRegression, Pearson scoring, best layer) and the command line
that ties data.py (fMRI datasets) and models.py (layer activations) together into the paper's tables.
It leaves out everything else: no xarray, no sklearn, no plotting unless matplotlib is installed.

    python brainalign.py --demo     # the whole pipeline offline, tiny models, synthetic responses
    python brainalign.py --all      # the paper's 25 models on Pereira2018, Blank2014, Wehbe2014
"""
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg

# -----------------------------------------------------------------------------
# cross-validation splits: lists of (train, test) index arrays


def shuffle_splits(n, n_splits=10, train_size=0.9, seed=1):
    """Brain-Score's splits: sklearn ShuffleSplit(n_splits, train_size, random_state=seed), index for
    index. One RandomState draws a fresh permutation per split; the test set is its head."""
    n_train = int(np.floor(train_size * n))
    n_test = n - n_train
    if n_train < 2 or n_test < 3:
        raise ValueError(f"too few stimuli for {train_size:.0%} shuffle splits: n={n} gives "
                         f"{n_train} train / {n_test} test; need at least 2 train and 3 test "
                         "(with 2, every Pearson r is +-1)")
    rng = np.random.RandomState(seed)
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        splits.append((perm[n_test:n_test + n_train], perm[:n_test]))
    return check_splits(splits, n)


def kfold_splits(n, n_folds=4, gap=0, groups=None):
    """Contiguous folds (floor(n / n_folds) samples each, the last takes the rest), or one fold per
    group label (e.g. story, fMRI run) when `groups` (n,) is given. `gap` samples are dropped at each
    train/test boundary, as Toneva & Wehbe (2019) do for fMRI time series: a test block at the start
    drops the first `gap` training samples after it, one at the end the last `gap` before it, and a
    block in the middle gives up `gap` samples at each of its own ends."""
    if groups is None:
        if n // n_folds < 1:
            raise ValueError(f"too few samples for {n_folds} folds: n={n}")
        edges = [k * (n // n_folds) for k in range(n_folds)] + [n]
        blocks = [np.arange(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
        blocks = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
        if len(blocks) < 2:
            raise ValueError("group k-fold needs at least 2 distinct group labels")
    splits = []
    for test in blocks:
        train = np.setdiff1d(np.arange(n), test)
        if gap and test[-1] - test[0] + 1 != len(test):
            raise ValueError(f"a group is not one contiguous block (it starts at sample {test[0]}); "
                             "gap > 0 needs contiguous groups")
        if gap and test[0] == 0:
            train = train[gap:]
        elif gap and test[-1] == n - 1:
            train = train[:-gap]
        elif gap:
            test = test[gap:-gap]
        splits.append((train, test))
    return check_splits(splits, n)


def check_splits(splits, n):
    """Raise ValueError unless every (train, test) pair indexes n samples sensibly: integer indices in
    [0, n), no index twice, train and test disjoint (an overlap predicts stimuli the fit has seen),
    at least 2 train samples and 3 test samples (with 2, every Pearson r is +-1)."""
    if len(splits) == 0:
        raise ValueError("no splits given")
    for i, (train, test) in enumerate(splits):
        for name, idx in (("train", np.asarray(train)), ("test", np.asarray(test))):
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"split {i}: {name} must be a 1-D array of integer indices (got "
                                 f"dtype {idx.dtype}, shape {idx.shape}); use np.flatnonzero on a mask")
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"split {i}: {name} indices must lie in [0, {n}) for {n} stimuli; "
                                 f"got {idx.min()}..{idx.max()}")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"split {i}: {name} lists a stimulus more than once")
        if np.intersect1d(train, test).size:
            raise ValueError(f"split {i}: train and test share {np.intersect1d(train, test).size} "
                             "stimuli; a test stimulus must not be in the fit")
        if len(train) < 2 or len(test) < 3:
            raise ValueError(f"split {i} has {len(train)} train / {len(test)} test samples (n={n}); "
                             "need at least 2 train and 3 test (with 2, every Pearson r is +-1): "
                             "use fewer folds or a smaller gap")
    return splits


# -----------------------------------------------------------------------------
# the encoder: ordinary least squares with intercept, minimum norm, as sklearn LinearRegression

# A Gram matrix squares the singular values, so its eigenvalues resolve them only down to ~1e-7 s_max
# (float64 rounding is ~1e-16 of the largest eigenvalue): a smaller cutoff needs the SVD of X itself.
GRAM_CUTOFF = 1e-7
NUMERICS = ("float64", "brainscore-2023")         # see cross_validate


def zscore(x, axis=0):
    """(x - mean) / std along `axis`; a constant slice becomes 0 instead of NaN."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=axis, keepdims=True)
    return (x - x.mean(axis=axis, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def hat_matrix(x_train, x_test, cond=1e-6):
    """H (n_test, n_train) such that the least-squares predictions for every target at once are
        y_test_hat = H @ (y_train - y_mean) + y_mean
    for OLS with intercept: X is centred on its training mean, then the minimum-norm solution of
    scipy.linalg.lstsq(Xc, Yc, cond) is used (singular values <= cond * s_max are dropped).
    x_train: (n_train, p), x_test: (n_test, p), float64.

    Why this form is cheap: H never touches the targets, so one factorisation per split serves all
    12,000 voxels, and H @ Y costs n_test * n_train per voxel instead of building the p-dimensional
    weights. The factorisation uses the smaller Gram matrix: with p > n (4096 features, 345 stimuli)
    the dual K = Xc Xc^T (n x n, cost n^2 p) instead of Xc^T Xc (p^2 n); with n > p the primal one.
    Below GRAM_CUTOFF we take the SVD of Xc itself."""
    mean = x_train.mean(axis=0)
    a, b = x_train - mean, x_test - mean                 # (n_train, p), (n_test, p)
    if cond < GRAM_CUTOFF:
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        k = s > cond * s[0]
        return ((b @ vt[k].T) / s[k]) @ u[:, k].T
    if a.shape[0] <= a.shape[1]:
        return dual_hat(a @ a.T, b @ a.T, cond)
    g = a.T @ a                                          # primal: pinv(a) = pinv(a^T a) a^T
    w = np.linalg.eigvalsh(g)
    if w[0] > cond ** 2 * w[-1]:
        # full rank at this cutoff, so the minimum-norm solution is the only one: a Cholesky solve
        # gives it for a third of the cost of the eigenvectors (what makes many-stimuli data fast)
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(g), b.T).T @ a.T
    w, v = np.linalg.eigh(g)
    k = w > cond ** 2 * w[-1]
    return ((b @ v[:, k]) / w[k]) @ (a @ v[:, k]).T


def dual_hat(k, kx, cond=1e-6):
    """H (n_test, n_train) of hat_matrix from the training Gram matrix k = A A^T (n_train, n_train) and
    the cross Gram matrix kx = B A^T (n_test, n_train), where A, B are the training and test rows
    centred on the training mean: A = U S V^T gives pinv(A) = A^T U S^-2 U^T, so H = kx pinv(k).
    Centring leaves k singular along the constant vector 1; every other eigenvalue w = s^2 is kept
    when s > cond * s_max."""
    n = len(k)
    top = np.abs(k).sum(axis=0).max()                   # ||k||_1 >= w_max
    # kx 1 = 0 (A^T 1 = 0), so adding top/n to every entry of k (the centring direction's eigenvalue
    # 0 becomes top) changes nothing in H, and makes k positive definite when the data have full rank
    m_inv = _spd_inverse(k + top / n)
    # spectral radius <= induced norm: 1 / ||m_inv||_1 <= w_min, so passing this test proves that
    # every eigenvalue is kept, with no eigendecomposition (a fifth of the cost, all matrix products)
    if m_inv is not None and np.abs(m_inv).sum(axis=0).max() * top * cond ** 2 < 1:
        return kx @ m_inv
    w, u = np.linalg.eigh(k)                            # ascending; w[0] ~ 0 is the centring direction
    keep = w > cond ** 2 * w[-1]
    keep[0] = False
    return (kx @ u[:, keep] / w[keep]) @ u[:, keep].T


def _spd_inverse(m):
    """Inverse of a symmetric positive-definite matrix by its Cholesky factor; None if not definite."""
    c, info = scipy.linalg.lapack.dpotrf(m)
    if info:
        return None
    inv, info = scipy.linalg.lapack.dpotri(c)
    return np.triu(inv) + np.triu(inv, 1).T


def predict(x_train, y_train, x_test, cond=1e-6):
    """Least-squares predictions (n_test, n_targets) for x_test after fitting on (x_train, y_train)."""
    y_mean = y_train.mean(axis=0)
    if x_train.shape[1] < x_test.shape[0]:
        # few features (Wehbe2014: 40, for 240,000 voxels): the weights cost p per voxel and target,
        # H costs n_test; the SVD of the thin centred design gives lstsq's minimum-norm weights
        mean = x_train.mean(axis=0)
        u, s, vt = np.linalg.svd(x_train - mean, full_matrices=False)
        k = s > cond * s[0]
        uy = u[:, k].T @ y_train - np.outer(u[:, k].sum(axis=0), y_mean)     # U^T (Y - 1 ybar)
        return (x_test - mean) @ (vt[k].T @ (uy / s[k][:, None])) + y_mean
    h = hat_matrix(x_train, x_test, cond)
    # H @ (Y - 1 ybar) + 1 ybar  ==  H @ Y + (1 - H 1) ybar: no centred copy of Y needed
    return h @ y_train + np.outer(1.0 - h.sum(axis=1), y_mean)


def predict_splits(x, y, splits, cond=1e-6):
    """The test predictions of every split, stacked in split order: (sum of n_test, n_targets), equal
    to predict() split by split. x (n, p) with p >= every n_train, y (n, n_targets), cond >= GRAM_CUTOFF.

    The only O(n^2 p) work is one Gram matrix G = Xc Xc^T of the rows centred once. Centring a
    split's rows on their training mean m is a double centring of G's blocks, exactly:
    (X_T - 1m^T)(X_T - 1m^T)^T = G_TT - c 1^T - 1 c^T + mean(c), with c = G_TT's column means,
    and likewise for the test-train block. Each split's operator [H + (1 - H1) 1^T / n_train] goes
    into the columns of its training rows, so one product with Y predicts every split at once."""
    xc = x - x.mean(axis=0)
    g = xc @ xc.T                                        # (n, n)
    op = np.zeros((sum(len(test) for _, test in splits), len(x)))
    row = 0
    for train, test in splits:
        gt = g[np.ix_(train, train)]                     # (n_train, n_train)
        gx = g[np.ix_(test, train)]                      # (n_test, n_train)
        c = gt.mean(axis=0)
        h = dual_hat(gt - c - c[:, None] + c.mean(), gx - gx.mean(axis=1, keepdims=True) - c + c.mean(),
                     cond)
        op[row:row + len(test), train] = h + (1.0 - h.sum(axis=1, keepdims=True)) / len(train)
        row += len(test)
    return op @ y


def predict_brainscore_2023(x_train, y_train, x_test):
    """The predictions (n_test, n_targets), float32, that Brain-Score's regression made in 2023:
    sklearn LinearRegression().fit(x_train, y_train).predict(x_test) with sklearn <= 1.5 on float32
    activations, step for step (it is the regression of brain-score/language 1041be4,
    brainscore_language/metrics/linear_predictivity/metric.py: linear_regression). What it leaves
    behind is float32 rounding: singular values down to 1.2e-7 s_max are kept and resolved in
    float32, which moves r by up to ~1e-3 per target and the score by up to ~6e-4 from the exact fit.
    Only the same LAPACK call reproduces that noise, so this costs what Brain-Score's fit cost
    (a float32 lstsq per split with every target as a right-hand side)."""
    # the float32 activations Brain-Score passed, rows in stored order (Brain-Score sorts them by
    # stimulus_id before fitting; the order changes only the float32 rounding of the means)
    x = np.asarray(x_train, dtype=np.float32)
    # sklearn 1.5 linear_model/_base.py _preprocess_data: y = check_array(y, dtype=X.dtype), then
    # X_offset = np.average(X, axis=0), X -= X_offset, y -= np.average(y, axis=0), all in float32
    y = np.asarray(y_train).astype(np.float32)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    # LinearRegression.fit: scipy.linalg.lstsq(X, y) with cond=None, i.e. gelsd with a relative
    # cutoff of float32 eps (sklearn 1.6 passes max(n, p) * eps, 1.9 passes 1e-6)
    coef = scipy.linalg.lstsq(x - x_mean, y - y_mean)[0]          # (p, n_targets) float32
    # _set_intercept and _decision_function: X @ coef + (y_offset - X_offset @ coef)
    return np.asarray(x_test, dtype=np.float32) @ coef + (y_mean - x_mean @ coef)


def pearson(a, b):
    """Pearson r between matching columns of a and b, both (n, n_targets) -> (n_targets,).
    A column that is constant on either side, exactly or up to rounding (see _spread), has no
    defined r: it scores 0 (and warns), so it can neither poison a median with NaN nor inflate it."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    norm_a, norm_b = _spread(a, ac), _spread(b, bc)
    ok = (norm_a > 0) & (norm_b > 0)
    if not ok.all():
        warnings.warn(f"{(~ok).sum()} constant column(s) have no Pearson r; scored as 0")
    return np.where(ok, (ac * bc).sum(axis=0) / np.where(ok, norm_a * norm_b, 1.0), 0.0)


def _spread(x, xc):
    """Norm of each centred column of x (n, k), or 0 where the column is constant up to rounding.
    A constant column's centred values are the rounding error of its computed mean, at most
    n * eps * max|x| (the worst-case bound of a sum of n terms), so their norm is at most sqrt(n)
    times that: e.g. 0.1 or 1000/3 repeated centre to ~1e-17 and ~1e-14, not 0, and would correlate
    at |r| ~ 0.9 with the prediction's rounding noise. A real signal that small (a relative spread of
    ~1e-13 for 40 samples) is far below what any measurement, float32 included, resolves."""
    n = len(x)
    norm = np.sqrt((xc * xc).sum(axis=0))
    bound = np.sqrt(n) * n * np.finfo(np.float64).eps * np.abs(x).max(axis=0, initial=0.0)
    return np.where(norm > bound, norm, 0.0)


# -----------------------------------------------------------------------------
# scoring: cross-validated r per target, then Brain-Score's aggregation


@dataclass
class Score:
    score: float              # mean over splits of the median r over all targets pooled
    per_split: np.ndarray     # (n_splits,) median r over targets in each split
    per_target: np.ndarray    # (n_targets,) r of each target, averaged over splits
    per_subject: dict         # subject -> mean over splits of the median r over its targets
    mad: float                # median absolute deviation of per_subject (the paper's error bar)


def _check(features, responses):
    x = np.asarray(features)
    y = np.asarray(responses)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"features must be (n_stimuli, n_features) and responses (n_stimuli, "
                         f"n_targets); got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"features have {x.shape[0]} stimuli but responses have {y.shape[0]}; "
                         "rows must be matched stimulus by stimulus")
    for name, arr in (("features", x), ("responses", y)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contain NaN or inf; drop or impute those entries first")
    return x.astype(np.float64), y.astype(np.float64)


def cross_validate(features, responses, splits, cond=1e-6, numerics="float64"):
    """Pearson r of every target on every test split -> (n_splits, n_targets).
    features (n_stimuli, n_features), responses (n_stimuli, n_targets). Every split is checked
    (check_splits); a test set under 10 samples warns, as its r is too noisy to rank layers by.
    numerics: "float64", the exact least-squares fit with relative cutoff `cond`; or
    "brainscore-2023", what Brain-Score computed for the paper (predict_brainscore_2023; `cond` unused)."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {', '.join(NUMERICS)}; got {numerics!r}")
    x, y = _check(features, responses)
    check_splits(splits, len(x))
    small = [i for i, (_, test) in enumerate(splits) if len(test) < 10]
    if small:
        warnings.warn(f"{len(small)} split(s) (first: split {small[0]}) test fewer than 10 stimuli: "
                      "their Pearson r are very noisy; use fewer folds if you can")
    if numerics == "brainscore-2023":
        # Brain-Score 1041be4 linear_predictivity/metric.py: scipy.stats.pearsonr per neuroid, in
        # float64 on the float32 predictions, as pearson() computes it. (A constant target gave NaN
        # there, which the median skipped; here it scores 0, as in the float64 mode.)
        return np.stack([pearson(predict_brainscore_2023(x[np.sort(train)], y[np.sort(train)],
                                                         x[np.sort(test)]), y[np.sort(test)])
                         for train, test in splits])
    if cond < GRAM_CUTOFF or max(len(train) for train, _ in splits) > x.shape[1]:
        return np.stack([pearson(predict(x[train], y[train], x[test], cond), y[test])
                         for train, test in splits])
    pred = predict_splits(x, y, splits, cond)           # (sum of n_test, n_targets)
    ends = np.cumsum([len(test) for _, test in splits])
    return np.stack([pearson(pred[end - len(test):end], y[test])
                     for end, (_, test) in zip(ends, splits)])


def summarize(r, subjects=None, center=np.median):
    """Brain-Score's aggregation of r (n_splits, n_targets): median over targets (or another
    `center`), mean over splits."""
    subjects = np.zeros(r.shape[1], dtype=int) if subjects is None else np.asarray(subjects)
    if subjects.shape != (r.shape[1],):
        raise ValueError(f"subjects has shape {subjects.shape}, expected ({r.shape[1]},)")
    per_split = center(r, axis=1)
    per_subject = {str(s): float(center(r[:, subjects == s], axis=1).mean())
                   for s in dict.fromkeys(subjects.tolist())}
    subj = np.array(list(per_subject.values()))
    return Score(score=float(per_split.mean()), per_split=per_split, per_target=r.mean(axis=0),
                 per_subject=per_subject, mad=float(np.median(np.abs(subj - np.median(subj)))))


def score(features, responses, splits, subjects=None, cond=1e-6, numerics="float64"):
    """Cross-validated linear predictivity of responses (n_stimuli, n_targets) from features
    (n_stimuli, n_features) -> Score. numerics: see cross_validate."""
    return summarize(cross_validate(features, responses, splits, cond, numerics), subjects)


@dataclass
class LayerScores:
    scores: np.ndarray        # (n_layers,) score of every layer
    best_layer: int           # index of the best layer (the paper keeps it per dataset)
    best: Score               # the full Score of that layer


def score_layers(layers, responses, splits, subjects=None, cond=1e-6, progress=None, numerics="float64"):
    """Score every layer of layers (n_stimuli, n_layers, n_features) -> LayerScores."""
    layers = np.asarray(layers)
    if layers.ndim != 3 or layers.shape[1] == 0:
        raise ValueError(f"layers must be (n_stimuli, n_layers, n_features) with at least one layer; "
                         f"got shape {layers.shape}")
    return best_of([score(layers[:, i], responses, splits, subjects, cond, numerics)
                    for i in _bar(range(layers.shape[1]), progress, "layers")])


def best_of(results):
    """LayerScores from one Score per layer."""
    scores = np.array([s.score for s in results])
    best = int(np.argmax(scores))
    return LayerScores(scores=scores, best_layer=best, best=results[best])


def normalize(value, ceiling):
    """Ceiling-normalised score: value / ceiling, clipped to [0, 1]."""
    if np.isnan(ceiling):
        return float("nan")                  # no published ceiling (Fedorenko2016): no normalised score
    if not ceiling > 0:
        raise ValueError(f"ceiling must be positive, got {ceiling}")
    return float(np.clip(value / ceiling, 0.0, 1.0))


# -----------------------------------------------------------------------------
# time series (Wehbe2014): word features -> TR features, refitted in every fold
# (Toneva & Wehbe 2019, github mtoneva/brain_language_nlp utils/utils.py, as the paper uses it)


def top_components(x, k):
    """PCA as sklearn PCA(k).fit(x): returns (mean (p,), components (k, p)). Large inputs use ARPACK
    on the k leading singular vectors instead of a full SVD: a 3,700 x 4,096 matrix costs a few
    dozen matrix-vector products instead of a full factorisation."""
    mean = x.mean(axis=0)
    xc = x - mean
    if min(xc.shape) <= 500:
        return mean, np.linalg.svd(xc, full_matrices=False)[2][:k]
    from scipy.sparse.linalg import svds
    _, s, vt = svds(xc, k=k, v0=np.ones(min(xc.shape)), random_state=0)
    return mean, vt[np.argsort(s)[::-1]]


def tr_features(word_features, ds, train, n_components=10, delays=(1, 2, 3, 4)):
    """Features (n_samples, n_components * len(delays)) of the kept TRs for one fold: PCA fitted on
    the words shown during training TRs, the words of each TR averaged (a TR without words gets 0),
    the TRs of the previous 1-4 TRs concatenated (the haemodynamic delay), z-scored within each run.
    word_features: (n_stimuli, n_features); ds: a time-series Dataset; train: sample indices."""
    words = np.arange(ds.first_word, len(ds.texts))
    tr_of = ds.word_tr[words]
    fit = np.isin(tr_of, ds.sample_tr[train])
    mean, comps = top_components(word_features[words[fit]].astype(np.float64), n_components)
    z = (word_features[words] - mean) @ comps.T                      # (n_words, k)
    per_tr = np.zeros((ds.n_tr, z.shape[1]))
    np.add.at(per_tr, tr_of, z)
    per_tr /= np.maximum(np.bincount(tr_of, minlength=ds.n_tr), 1)[:, None]
    delayed = np.zeros((ds.n_tr, z.shape[1] * len(delays)))         # row t holds TRs t-1 .. t-4
    for j, d in enumerate(delays):
        delayed[d:, j * z.shape[1]:(j + 1) * z.shape[1]] = per_tr[:-d]
    kept = delayed[ds.sample_tr]
    # runs are the blocks of consecutive TRs that survive trimming at each run's edges
    run = np.cumsum(np.diff(ds.sample_tr, prepend=ds.sample_tr[0]) != 1)
    for r in np.unique(run):
        kept[run == r] = zscore(kept[run == r])
    return kept


def cross_validate_time_series(word_features, ds, splits, cond=1e-6):
    """Pearson r (n_splits, n_targets) of a time-series dataset: per fold, TR features from
    tr_features, train and test features z-scored separately (as the pipeline does), the same
    least-squares encoder as everywhere else. The paper fitted kernel ridge with an inner-CV penalty;
    with 40 features and ~900 training TRs the unpenalised fit is the natural reference."""
    y = ds.responses                        # float32: 1,211 TRs x ~240,000 voxels for Wehbe2014
    r = np.empty((len(splits), y.shape[1]))
    for i, (train, test) in enumerate(splits):
        x = tr_features(word_features, ds, train)
        r[i] = pearson(predict(zscore(x[train]), y[train], zscore(x[test]), cond), y[test])
    return r


# -----------------------------------------------------------------------------
# one (model, dataset): activations (cached by models.py) -> every layer scored -> best layer;
# the record is cached as JSON, so an interrupted run resumes and --report needs no model


def splits_for(ds, cv="dataset"):
    """The dataset's own cross-validation ("dataset"), Brain-Score's "shuffle", or 10 "kfold"."""
    kind = ds.cv if cv == "dataset" else cv
    n = ds.responses.shape[0]
    if kind == "shuffle":
        return shuffle_splits(n)
    return kfold_splits(n, ds.n_folds, ds.gap) if ds.cv == "kfold" else kfold_splits(n, 10)


def score_part(acts, ds, cv="dataset", cond=1e-6, progress=True, numerics="float64"):
    """Every layer of acts (n_stimuli, n_layers, n_features) scored on one dataset part -> LayerScores.
    numerics (see cross_validate) applies to Brain-Score's datasets; time series use the float64 fit."""
    splits = splits_for(ds, cv)
    if ds.word_tr is None:
        return score_layers(acts, ds.responses, splits, ds.subjects, cond, progress, numerics)
    # time series: the mean r over voxels, as Toneva & Wehbe's and Aw & Toneva's scripts report it
    # (the paper does not say; Brain-Score's median is the other choice)
    return best_of([summarize(cross_validate_time_series(acts[:, i], ds, splits, cond), ds.subjects,
                              np.mean) for i in _bar(range(acts.shape[1]), progress, "layers")])


def run_one(model, dataset, parts, args, info=None, source=None):
    """Score a model on the parts of one dataset -> a JSON-able record, cached. Pereira2018's two
    experiments are separate Brain-Score benchmarks: each keeps its own best layer, then they are
    averaged. info: the model's ModelInfo (base and size go into the record, so --report can pair
    models outside the registry); source: what models.extract loads, when not the model's name."""
    safe = model.strip("/").replace("/", "--")
    path = Path(args.cache_dir, "scores", safe, f"{dataset}.cv-{args.cv}.{fit_key(args)}.json")
    if path.exists():
        return json.loads(path.read_text()) | {"cached": True}
    import models
    rec = {"model": model, "dataset": dataset, "cv": args.cv, "cutoff": args.cutoff,
           "numerics": args.numerics, "parts": {},
           "base": getattr(info, "base", None), "params": getattr(info, "params", None),
           "layer_names": models.layer_names(source or model, args.model_dir)}   # what the indices are
    for ds in parts:
        acts = models.extract(source or model, ds.texts, ds.groups, context_window=ds.context_window,
                              device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                              cache_dir=args.cache_dir, dataset_key=ds.name, model_dir=args.model_dir)
        ls = score_part(acts, ds, args.cv, args.cutoff, numerics=args.numerics)
        rec["parts"][ds.name] = {"score": ls.best.score, "best_layer": ls.best_layer,
                                 "layers": ls.scores.tolist(), "per_subject": ls.best.per_subject,
                                 "mad": ls.best.mad, "ceiling": ds.ceiling,
                                 "n_targets": int(ds.responses.shape[1])}
    done = rec["parts"].values()
    for key in ("score", "ceiling", "mad"):
        rec[key] = float(np.mean([p[key] for p in done]))
    rec["best_layer"] = "/".join(str(p["best_layer"]) for p in done)
    write_atomic(path, json.dumps(rec, indent=1))
    return rec


def fit_key(args):
    """The part of a score file's name that says how the fit was computed."""
    return f"cutoff-{args.cutoff:g}" if args.numerics == "float64" else args.numerics


def write_atomic(path, text):
    """Write text to path through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# -----------------------------------------------------------------------------
# the paper's tables: alignment per model, tuned vs vanilla, correlations
# scores: {model: {dataset: best-layer score}}, the datasets of PAPER_DATASETS and "Average"

PAPER_DATASETS = ("Pereira2018", "Blank2014", "Wehbe2014")
PAPER_CEILINGS = {"Pereira2018": 0.359, "Blank2014": 0.210, "Wehbe2014": 0.104}   # Table 6


def relative_change(tuned, vanilla):
    """Per cent change of the tuned model's score over its vanilla base."""
    return 100.0 * (tuned - vanilla) / vanilla


def bh_fdr(p):
    """Benjamini-Hochberg adjusted p-values, (n,) -> (n,)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bootstrap_ci(values, n_boot=10000, seed=0, level=0.95):
    """Percentile bootstrap confidence interval of the mean of values -> (low, high)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]).tolist())


def compare_pairs(scores, pairs, datasets=PAPER_DATASETS + ("Average",)):
    """Instruction tuning comparison over pairs [(tuned, vanilla), ...] -> dict with one row per
    pair (per-dataset % change, or a note when a side was not run), the mean change per dataset,
    the headline (mean of the per-dataset means), how many pairs improved, a Wilcoxon signed-rank
    test of tuned vs vanilla Average scores and a bootstrap 95% CI of the mean Average change."""
    rows, done = [], []
    for tuned, vanilla in pairs:
        missing = [m for m in (tuned, vanilla) if m not in scores]
        if missing:
            rows.append({"tuned": tuned, "vanilla": vanilla, "note": f"not run: {', '.join(missing)}"})
            continue
        change = {d: relative_change(scores[tuned][d], scores[vanilla][d]) for d in datasets
                  if d in scores[tuned] and d in scores[vanilla]}
        rows.append({"tuned": tuned, "vanilla": vanilla, **change})
        done.append((tuned, vanilla, change))
    mean = {d: float(np.mean([c[d] for *_, c in done if d in c]))
            for d in datasets if any(d in c for *_, c in done)}
    per_dataset = [mean[d] for d in datasets if d != "Average" and d in mean]
    out = {"rows": rows, "mean": mean, "n_pairs": len(done),
           "headline": float(np.mean(per_dataset)) if per_dataset else float("nan"),
           "improved": sum(c.get("Average", 0) > 0 for *_, c in done)}
    avg = [(scores[t]["Average"], scores[v]["Average"]) for t, v, c in done if "Average" in c]
    if len(avg) >= 2:
        import scipy.stats
        t, v = np.array(avg).T
        out["wilcoxon_p"] = float(scipy.stats.wilcoxon(t, v).pvalue) if np.any(t != v) else 1.0
        out["ci95"] = bootstrap_ci(relative_change(t, v))
    return out


def correlations(scores, info, tuned):
    """Pearson r (and Benjamini-Hochberg p) of the Average score with log10(parameters) over the
    tuned models and over all models, and with MMLU, BBH and next-word-prediction loss over the
    tuned models. info: {model: ModelInfo}. A row with fewer than 3 models is skipped."""
    import scipy.stats
    have = [m for m in scores if "Average" in scores[m] and m in info]
    wanted = {"log10(params), tuned": ([m for m in have if m in tuned], lambda i: np.log10(i.params)),
              "log10(params), all": (have, lambda i: np.log10(i.params)),
              "MMLU, tuned": ([m for m in have if m in tuned], lambda i: i.mmlu),
              "BBH, tuned": ([m for m in have if m in tuned], lambda i: i.bbh),
              "NWP loss, tuned": ([m for m in have if m in tuned], lambda i: i.nwp_loss)}
    rows = []
    for name, (members, value) in wanted.items():
        pts = [(value(info[m]), scores[m]["Average"]) for m in members
               if value(info[m]) is not None and np.isfinite(value(info[m]))]
        if len(pts) >= 3:
            x, y = np.array(pts).T
            r, p = scipy.stats.pearsonr(x, y)
            rows.append({"against": name, "n": len(pts), "r": float(r), "p": float(p)})
    for row, q in zip(rows, bh_fdr([r["p"] for r in rows]) if rows else []):
        row["p_fdr"] = float(q)
    return rows


def collect(records, normalize_scores=False):
    """Score records -> ({model: {dataset: score, "Average": mean over the paper's datasets run}},
    {model: {dataset: best layer}}, {dataset: ceiling})."""
    scores, layers, ceilings = {}, {}, {}
    for rec in records:
        value = rec["score"] if not normalize_scores else float(np.mean(   # Brain-Score: per part
            [normalize(p["score"], p["ceiling"]) for p in rec["parts"].values()]))
        scores.setdefault(rec["model"], {})[rec["dataset"]] = value
        layers.setdefault(rec["model"], {})[rec["dataset"]] = rec["best_layer"]
        ceilings[rec["dataset"]] = rec["ceiling"]
    averaged = [d for d in PAPER_DATASETS if d in ceilings] or sorted(ceilings)
    for m in scores:
        if all(d in scores[m] for d in averaged):
            scores[m]["Average"] = float(np.mean([scores[m][d] for d in averaged]))
    return scores, layers, ceilings


def tables(scores, layers, ceilings, info, normalized=False):
    """The four tables -> {title: rows (list of dicts)}. info: {model: ModelInfo}."""
    columns = [d for d in PAPER_DATASETS if d in ceilings] + sorted(set(ceilings) - set(PAPER_DATASETS))
    size = lambda m: info[m].params if m in info and np.isfinite(info[m].params) else 0.0
    alignment = []
    for m in sorted(scores, key=lambda m: (size(m), m)):
        paper = dict(zip(PAPER_DATASETS + ("Average",), info[m].paper or ())) if m in info else {}
        row = {"model": m}
        for d in columns + ["Average"]:
            row[d] = scores[m].get(d)
            if not normalized and np.isfinite(paper.get(d) or np.nan) and d in scores[m]:
                row[f"{d} paper"], row[f"{d} diff"] = paper[d], scores[m][d] - paper[d]
        row["best layers"] = " ".join(f"{d[0]}{layers[m][d]}" for d in columns if d in layers[m])
        alignment.append(row)
    pairs = [(m, i.base) for m, i in info.items() if i.base and (m in scores or i.base in scores)]
    cmp = compare_pairs(scores, pairs, tuple(columns) + ("Average",))
    pct = lambda v: f"{v:+.1f}%" if isinstance(v, float) else v
    comparison = [{k: pct(v) for k, v in r.items()} for r in cmp["rows"]]
    if cmp["n_pairs"]:
        note = (f"headline {cmp['headline']:+.2f}% (mean of the per-dataset means); "
                f"{cmp['improved']}/{cmp['n_pairs']} improved")
        if "wilcoxon_p" in cmp:
            note += f"; Wilcoxon p = {cmp['wilcoxon_p']:.3g}; 95% CI of the mean " \
                    f"[{cmp['ci95'][0]:+.1f}%, {cmp['ci95'][1]:+.1f}%]"
        comparison.append({"tuned": f"mean of {cmp['n_pairs']} pairs", "vanilla": "",
                           **{d: pct(v) for d, v in cmp["mean"].items()}, "note": note})
    return {"Brain alignment per model" + (" (ceiling-normalised)" if normalized else ""): alignment,
            "Instruction tuning: tuned vs vanilla (relative change)": comparison,
            "Correlation of the Average score with model properties":
                correlations(scores, info, {m for m, _ in pairs}),
            "Noise ceilings": [{"dataset": d, "ceiling": ceilings[d],
                                "paper (Table 6)": PAPER_CEILINGS.get(d)} for d in columns]}



def markdown(rows):
    """A Markdown table from a list of dicts (the keys of all rows, in order, are the columns)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: "-" if v is None else str(v) if not isinstance(v, float) else f"{v:+.1f}" \
        if abs(v) >= 1 else f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2g}"   # p = 1e-08
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows])


def write_report(out_dir, all_tables, config, banner=""):
    """Markdown on stdout; Markdown, CSV and JSON of every table and the run's config in out_dir."""
    import csv
    out = Path(out_dir)
    text = [banner] if banner else []
    for i, (title, rows) in enumerate(all_tables.items(), 1):
        text += [f"## {i}. {title}", markdown(rows) if rows else "(too few results for this table)", ""]
        write_atomic(out / f"table{i}.json", json.dumps({"title": title, "rows": rows}, indent=1))
        with open(out / f"table{i}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    write_atomic(out / "tables.md", "\n".join(text))
    write_atomic(out / "config.json", json.dumps(config, indent=1, default=str))
    print("\n".join(text))


def plot(out_dir, scores, info, corr):
    """PNG figures, when matplotlib is installed: tuned vs vanilla on every dataset, and the Average
    score against size (all models) and MMLU (tuned models), with r and FDR p in the titles."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return

    def dots(ax, points):                                      # [(name, x, y, colour)]
        for name, x, y, colour in points:
            ax.scatter(x, y, s=14, c=colour)
            ax.annotate(name, (x, y), fontsize=5)

    pairs = [(t, i.base) for t, i in info.items() if i.base and t in scores and i.base in scores]
    columns = [d for d in PAPER_DATASETS + ("Average",) if any(d in scores[t] for t, _ in pairs)]
    if columns:
        fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.2), squeeze=False)
        for ax, d in zip(axes[0], columns):
            points = [(t, scores[v][d], scores[t][d], "C1") for t, v in pairs if d in scores[t]]
            dots(ax, points)
            lim = (min(min(p[1:3]) for p in points) * 0.95, max(max(p[1:3]) for p in points) * 1.05)
            ax.plot(lim, lim, "k:", lw=0.8)                    # above the line: tuning helped
            ax.set(title=d, xlabel="vanilla", ylabel="instruction-tuned", xlim=lim, ylim=lim)
        fig.tight_layout()
        fig.savefig(Path(out_dir) / "tuned_vs_vanilla.png", dpi=150)
    rows = {r["against"]: r for r in corr}
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, key, x in ((axes[0], "log10(params), all", lambda i: np.log10(i.params)),
                       (axes[1], "MMLU, tuned", lambda i: i.mmlu)):
        dots(ax, [(m, x(info[m]), s["Average"], "C1" if info[m].base else "C0")
                  for m, s in scores.items()
                  if m in info and "Average" in s and np.isfinite(x(info[m]) or np.nan)])
        r = rows.get(key)
        ax.set(xlabel=key.split(",")[0], ylabel="brain alignment (Average)",
               title=f"r = {r['r']:.2f}, FDR p = {r['p_fdr']:.2g} (n = {r['n']})" if r else "too few models")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "alignment_vs_size_mmlu.png", dpi=150)
    plt.close("all")


# -----------------------------------------------------------------------------
# --demo: the whole pipeline offline: tiny random-weight models (models.make_tiny_model) and
# responses planted from the tuned one (data.synthetic)


def demo(cache_dir):
    """Three pairs of tiny random-weight GPT-2s (width 16, 32, 64), "demo-<width>" and
    "demo-<width>-tuned"; the responses are planted from layer 1 of the three tuned ones together, so
    each tuned model must align better than its vanilla twin -> (datasets, info)."""
    import data
    import models
    sentences = data.demo_sentences()
    info = {}
    for width in (16, 32, 64):
        params = 2 * 12 * width ** 2 + (150 + 128) * width        # blocks, token and position tables
        for name, base in ((f"demo-{width}", None), (f"demo-{width}-tuned", f"demo-{width}")):
            path = models.make_tiny_model("gpt2", Path(cache_dir, name), sentences, seed=len(info),
                                          width=width)
            info[name] = models.ModelInfo(name, str(path), "gpt2", float(params), 2, base)
    tuned = [i.hub_id for i in info.values() if i.base]
    layer1 = lambda t, g, w: np.concatenate([models.extract(m, t, g, context_window=w, progress=False)[:, 1]
                                             for m in tuned], axis=1)
    return data.synthetic(layer1, sentences), info


# -----------------------------------------------------------------------------
# command line


def parse_args(argv=None):
    import argparse
    import data
    p = argparse.ArgumentParser(
        description="Brain alignment of language models (Aw et al., COLM 2024): every layer's "
                    "activations linearly mapped to fMRI responses, cross-validated Pearson r, the "
                    "best layer per dataset, and the instruction-tuning comparison tables.",
        epilog="With no arguments: T5 v1.1 small vs Flan-T5 small on the three datasets.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="all 25 models of the paper")
    what.add_argument("--models", nargs="+", metavar="NAME",
                      help="registry names (models.py; the GPT-2 appendix pairs too), hub ids or "
                           "local model directories")
    what.add_argument("--demo", action="store_true",
                      help="offline, under a minute: tiny random models, synthetic responses")
    what.add_argument("--report", action="store_true",
                      help="re-render every table from the score cache, loading no model")
    p.add_argument("--datasets", nargs="+", choices=list(data.DATASETS), default=list(PAPER_DATASETS))
    p.add_argument("--device", default="auto",
                   help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps, or map (device_map='auto')")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache-dir", default=os.environ.get("BRAINALIGN_CACHE", "~/.cache/brainalign"),
                   help="activations and scores (env BRAINALIGN_CACHE)")
    p.add_argument("--data-dir", help="where the dataset files are or go (env BRAINALIGN_DATA)")
    p.add_argument("--model-dir", help="a local copy of the model weights to load from")
    p.add_argument("--out", default="results", help="folder for the tables (md, csv, json) and figures")
    p.add_argument("--normalize", action="store_true", help="divide scores by the noise ceiling")
    p.add_argument("--cv", default="dataset", choices=["dataset", "shuffle", "kfold"],
                   help="dataset: Brain-Score's 10 shuffle splits (Pereira, Blank) and 4 contiguous "
                        "folds with gaps (Wehbe); kfold: 10 contiguous folds")
    p.add_argument("--numerics", default="brainscore-2023", choices=NUMERICS,
                   help="brainscore-2023 (default): the paper's fit, sklearn <= 1.5 LinearRegression "
                        "on float32 activations (float32 lstsq, cutoff float32 eps), as slow as "
                        "Brain-Score's; float64: the exact float64 fit with --cutoff, one Gram matrix "
                        "per layer, about 250x faster on Pereira2018")
    p.add_argument("--cutoff", type=float, default=1e-6,
                   help="with --numerics float64: relative singular-value cutoff of the least-squares "
                        "fit (sklearn >= 1.9 uses 1e-6, 1.6-1.8 max(n, p) x 2.2e-16; sklearn <= 1.5 on "
                        "float32 input is --numerics brainscore-2023, not a cutoff)")
    args = p.parse_args(argv)
    args.cache_dir = str(Path(args.cache_dir).expanduser())
    return args


def main(argv=None):
    args = parse_args(argv)
    import data
    import models
    banner, info, loaded, names = "", dict(models.MODELS), {}, []
    try:
        if args.demo:
            args.cache_dir = str(Path(args.cache_dir, "demo"))
            loaded, info = demo(args.cache_dir)
            names, args.datasets = list(info), list(loaded)
            banner = "# SYNTHETIC DEMO: tiny random-weight models, planted responses. Not real results.\n"
        elif not args.report:
            wanted = [m for m, i in info.items() if not i.appendix] if args.all else \
                args.models or ["t5-small", "flan-t5-small"]
            resolved = [models.resolve(m) for m in wanted]
            info |= {i.name: i for i in resolved if i.name not in info}
            names = [i.name for i in resolved]
        records = []
        for model in names:
            for dataset in args.datasets:
                if dataset not in loaded:
                    loaded[dataset] = data.load(dataset, args.data_dir)
                rec = run_one(model, dataset, loaded[dataset], args, info[model],
                              info[model].hub_id if args.demo else None)
                print(f"{model} | {dataset}: {rec['score']:.4f} (MAD over subjects {rec['mad']:.4f}, "
                      f"best layer {rec['best_layer']}, ceiling {rec['ceiling']:.3f})"
                      f"{' [cached]' * bool(rec.get('cached'))}", flush=True)
                records.append(rec)
    except (ValueError, OSError, data.DownloadError) as err:
        raise SystemExit(f"brainalign: {err}") from err
    except RuntimeError as err:
        if "out of memory" not in str(err).lower():
            raise
        raise SystemExit("brainalign: out of memory. Try --dtype float16 or bfloat16, a smaller "
                         "--batch-size, or --device map (needs accelerate) to spread a large model "
                         "over several GPUs.") from err
    if args.report:
        pattern = f"*/*.cv-{args.cv}.{fit_key(args)}.json"
        records = [json.loads(f.read_text()) for f in sorted(Path(args.cache_dir, "scores").glob(pattern))]
        if not records:
            print(f"no scores under {args.cache_dir}/scores for --cv {args.cv} ({fit_key(args)}): "
                  "run some models first, or point --cache-dir at the cache they wrote", file=sys.stderr)
        for rec in records:      # models outside the registry: what their records say
            info.setdefault(rec["model"], models.ModelInfo(
                rec["model"], rec["model"], "", rec.get("params") or float("nan"), 0, rec.get("base")))
    scores, layers, ceilings = collect(records, args.normalize)
    all_tables = tables(scores, layers, ceilings, info, args.normalize)
    config = {"args": vars(args), "models": names, "split_seed": 1, "bootstrap_seed": 0,
              "versions": {m: getattr(sys.modules.get(m), "__version__", None)
                           for m in ("numpy", "scipy", "torch", "transformers", "h5py")}
              | {"python": sys.version.split()[0]}}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_report(args.out, all_tables, config, banner)
    plot(args.out, scores, info, list(all_tables.values())[2])
    return all_tables


def _bar(it, progress, desc):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, leave=False)


if __name__ == "__main__":
    main()
