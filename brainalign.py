"""
brainalign: how well a language model's layers linearly predict human brain responses to the same
text, and the instruction-tuning comparison of Aw et al. (COLM 2024), in one readable file.

This file holds, in reading order: cross-validation splits; the encoder (pure NumPy least squares
that matches Brain-Score's sklearn LinearRegression, one Gram matrix per layer; the section stands
alone and can be copied); Toneva & Wehbe's per-voxel ridge; Pearson scoring and Brain-Score's
aggregation; the Wehbe2014 time series; the Futrell2018 behavioural metric; one (model, dataset)
scored and cached under a key of everything that produced it; the paper's tables and figures; the
command line that ties data.py (datasets) and models.py (activations) together. By default it
computes what the authors' own code computed (see the README's table of choices). It leaves out
xarray and sklearn; matplotlib is used only for the figures, and only when installed.

    python brainalign.py --demo     # the whole pipeline offline, tiny models, synthetic responses
    python brainalign.py --all      # the paper's 25 models on Pereira2018, Blank2014, Wehbe2014, Futrell2018
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
# ridge with a per-target penalty chosen by inner cross-validation (Wehbe2014's regression)
# mtoneva/brain_language_nlp 0f519a0 utils/ridge_tools.py: cross_val_ridge(method='plain')

RIDGE_PENALTIES = 10.0 ** np.arange(-6, 10)      # cross_val_ridge's lambdas, 1e-6 .. 1e9


def inner_folds(n, n_splits=10):
    """sklearn KFold(n_splits) unshuffled: contiguous validation blocks, the first n % n_splits one
    sample longer -> list of (train, validation) index arrays."""
    if n < 2 * n_splits:
        raise ValueError(f"too few training samples for {n_splits} inner folds: n={n}")
    sizes = np.full(n_splits, n // n_splits) + (np.arange(n_splits) < n % n_splits)
    edges = np.r_[0, np.cumsum(sizes)]
    return [(np.r_[0:lo, hi:n], np.arange(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def r2_cost(pred, real, var):
    """1 - R^2 per column, R^2 exactly as ridge_tools.R2: 1 - mean squared error / variance (var:
    real.var(axis=0), computed once for all penalties), passed through nan_to_num. A constant
    validation column thus costs 1 if predicted exactly (0/0) and ~1.8e308 otherwise (-inf -> the
    most negative float), for every penalty alike."""
    resid = real - pred
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - (resid * resid).mean(axis=0) / var
    return 1.0 - np.nan_to_num(r2)


def ridge_cv(x, y, penalties=RIDGE_PENALTIES, n_splits=10):
    """Ridge without intercept, one penalty per target chosen by inner cross-validation ->
    (weights (p, n_targets), chosen penalty (n_targets,)). x (n, p) and y (n, n_targets) are the
    z-scored training fold. Equals Toneva & Wehbe's cross_val_ridge(x, y, n_splits, penalties,
    method='plain'): unshuffled KFold(n_splits); per target, the penalty with the least summed
    (1 - R^2) over the validation blocks (the first on ties); then the ridge weights refitted on all
    of x with that penalty.

    Why it is cheap: the ridge solution for penalty a is V diag(s / (s^2 + a)) U^T y with x = U S V^T,
    so one thin SVD per inner fold serves every penalty and every target. With A = x_val V and
    B = U^T y (computed once), the validation predictions of penalty a are (A * d_a) @ B: one
    (n_val, p) x (p, n_targets) product per penalty, where Toneva's code inverts a Gram matrix and
    forms x^T y anew for each penalty. The refit needs one more SVD and no product per penalty."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    penalties = np.asarray(penalties, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be (n, p) and y (n, n_targets) with the same n; got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x or y contain NaN or inf; z-score the training fold and drop such targets first")
    if penalties.ndim != 1 or penalties.size == 0 or not (penalties > 0).all():
        raise ValueError(f"penalties must be a non-empty 1-D array of positive values, got {penalties!r}")
    cost = np.zeros((penalties.size, y.shape[1]))                    # (n_penalties, n_targets)
    with np.errstate(over="ignore"):                                 # ~1.8e308 + ~1.8e308 = inf, as in r_cv
        for train, val in inner_folds(x.shape[0], n_splits):
            u, s, vt = np.linalg.svd(x[train], full_matrices=False)
            a, b = x[val] @ vt.T, u.T @ y[train]                     # (n_val, p), (p, n_targets)
            real = y[val]
            var = real.var(axis=0)
            for i, pen in enumerate(penalties):
                cost[i] += r2_cost((a * (s / (s ** 2 + pen))) @ b, real, var)
    best = np.argmin(cost, axis=0)                                   # (n_targets,)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    shrink = s[:, None] / (s[:, None] ** 2 + penalties[best])        # (p, n_targets)
    return vt.T @ (shrink * (u.T @ y)), penalties[best]


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


def cross_validate_time_series(word_features, ds, splits, regression="ridge", cond=1e-6, chunk=20000):
    """Pearson r of every target on the test folds concatenated -> (r (n_targets,), per_fold
    (n_splits, n_targets) r within each fold). Per fold, as mtoneva/brain_language_nlp 0f519a0
    utils/utils.py run_class_time_CV_fmri_crossval_ridge: TR features from tr_features; train and
    test features, and train and test responses, z-scored separately; regression "ridge" is their
    per-voxel cross-validated ridge (ridge_cv), "ols" the least-squares encoder used everywhere else.
    The z-scored test folds and their predictions are stacked and correlated, as
    awwkl/brain_language_summarization f341823 all_scripts/plot_pearson.py does with the saved
    preds_t and test_t. Targets go `chunk` at a time (Wehbe2014: ~240,000 voxels of 1,211 TRs)."""
    if regression not in ("ridge", "ols"):
        raise ValueError(f"regression must be 'ridge' or 'ols', got {regression!r}")
    y = ds.responses                                                 # (n_samples, n_targets) float32
    feats = [tr_features(word_features, ds, train) for train, _ in splits]   # (n_samples, 40) each
    r, per_fold = np.empty(y.shape[1]), np.empty((len(splits), y.shape[1]))
    for lo in range(0, y.shape[1], chunk):
        cols = slice(lo, lo + chunk)
        preds, reals = [], []
        for i, (x, (train, test)) in enumerate(zip(feats, splits)):
            x_train, x_test, y_train = zscore(x[train]), zscore(x[test]), zscore(y[train, cols])
            if regression == "ridge":
                preds.append(x_test @ ridge_cv(x_train, y_train)[0])
            else:
                preds.append(predict(x_train, y_train, x_test, cond))
            reals.append(zscore(y[test, cols]))
            per_fold[i, cols] = pearson(preds[-1], reals[-1])
        r[cols] = pearson(np.concatenate(preds), np.concatenate(reals))
    return r, per_fold


def summarize_time_series(r, per_fold, subjects):
    """Aw & Toneva's aggregation of r (n_targets,) on the concatenated test folds: the mean over each
    subject's voxels, then the mean over subjects (all_scripts/plot_pearson.py). per_split holds the
    fold-wise mean r over all targets, for inspection only."""
    subjects = np.asarray(subjects)
    if subjects.shape != r.shape:
        raise ValueError(f"subjects has shape {subjects.shape}, expected {r.shape}")
    per_subject = {str(s): float(r[subjects == s].mean()) for s in dict.fromkeys(subjects.tolist())}
    subj = np.array(list(per_subject.values()))
    return Score(score=float(subj.mean()), per_split=per_fold.mean(axis=1), per_target=r,
                 per_subject=per_subject, mad=float(np.median(np.abs(subj - np.median(subj)))))


# -----------------------------------------------------------------------------
# behaviour (Futrell2018): model surprisal against self-paced reading times, no fitting, no layers
# (Brain-Score's Futrell2018-pearsonr: brain-score/language 1041be4 benchmarks/futrell2018/benchmark.py)

BEHAVIOUR_DATASETS = ("Futrell2018",)


def mean_reader(times):
    """Mean reading time over subjects of times (n_words, n_subjects) -> (n_words,), skipping NaN (a
    subject who did not read the story) as xarray's mean does. A word nobody read is an error."""
    times = np.asarray(times, dtype=np.float64)
    read = ~np.isnan(times)
    if not read.any(axis=1).all():
        word = int(np.argmin(read.any(axis=1)))
        raise ValueError(f"{int((~read.any(axis=1)).sum())} words (the first is word {word}) have no reading "
                         "time from any subject here, so their mean is undefined; drop those words first")
    return np.where(read, times, 0.0).sum(axis=1) / read.sum(axis=1)


def reading_time_r(surprisal, times, word_in_sentence):
    """Signed Pearson r between surprisal (n_words,) and the mean reader's reading times (times:
    (n_words, n_subjects)), over the words that are not first in their sentence (word_in_sentence
    != 1), as the benchmark scores them. Brain-Score's score is |r| (metrics/pearson_correlation)."""
    surprisal = np.asarray(surprisal, dtype=np.float64)
    word_in_sentence = np.asarray(word_in_sentence)
    if surprisal.shape != (len(times),) or word_in_sentence.shape != surprisal.shape:
        raise ValueError(f"surprisal {surprisal.shape} and word_in_sentence {word_in_sentence.shape} must both "
                         f"be ({len(times)},), one value per word of times {np.shape(times)}")
    times = np.asarray(times, dtype=np.float64)
    keep = word_in_sentence != 1
    for missing, what in ((keep & ~np.isfinite(surprisal), "no surprisal (NaN or inf)"),
                          (keep & np.isnan(times).all(axis=1), "no reading time from any subject")):
        if missing.any():
            raise ValueError(f"{int(missing.sum())} scored words (the first is word {int(np.argmax(missing))}) "
                             f"have {what}; only first words of sentences are left out, so drop those words")
    return float(pearson(surprisal[keep, None], mean_reader(times[keep])[:, None])[0])


def split_half_ceiling(times, n_splits=10, seed=0):
    """Brain-Score's SplitHalvesConsistency(num_splits=10, split_coordinate='subject_id') on all words:
    per split, |r| between the mean readers of two random halves of the subjects, Spearman-Brown
    corrected (2c / (1 + c)); the ceiling is the median over splits.
    times (n_words, n_subjects) -> (ceiling, corrected (n_splits,), uncorrected (n_splits,))."""
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[1]
    if n < 2:
        raise ValueError(f"a split-half ceiling needs at least 2 subjects, got {n}")
    rng = np.random.RandomState(seed)
    uncorrected = np.empty(n_splits)
    for k in range(n_splits):
        # RandomState.choice(subject_ids, n // 2, replace=False) draws permutation(n)[:n // 2]: these
        # subjects (Brain-Score then keeps them by id; the ids are unique)
        half = np.zeros(n, dtype=bool)
        half[rng.choice(n, n // 2, replace=False)] = True
        try:
            a, b = mean_reader(times[:, half]), mean_reader(times[:, ~half])
        except ValueError as err:
            raise ValueError(f"split {k} of the subjects for the ceiling: {err}; in one half nobody read "
                             "them (too few subjects, or a story read by too few)") from None
        uncorrected[k] = abs(pearson(a[:, None], b[:, None])[0])
    corrected = 2 * uncorrected / (1 + uncorrected)
    return float(np.median(corrected)), corrected, uncorrected


def behaviour_score(surprisal, rt):
    """Futrell2018-pearsonr of one model's surprisal (n_words,) on a data.ReadingTimes -> dict: the
    raw score |r| ("score"), the signed r, the ceiling computed from the data (with its splits) and
    the ceiling-normalised score (clipped to [0, 1], as Brain-Score's ceiling_normalize)."""
    r = reading_time_r(surprisal, rt.times, rt.word_in_sentence)
    ceiling, corrected, uncorrected = split_half_ceiling(rt.times)
    return {"score": abs(r), "r": r, "ceiling": ceiling, "normalized": normalize(abs(r), ceiling),
            "published_ceiling": rt.ceiling, "ceiling_splits": corrected.tolist(),
            "ceiling_uncorrected": uncorrected.tolist(), "n_words": int(np.sum(rt.word_in_sentence != 1))}


def run_behaviour(model, rt, extraction):
    """The behavioural part of a score record for one model on reading times: no layers, no splits,
    no per-subject scores (the benchmark compares with the mean reader: mad NaN). model: what
    models.surprisal loads; rt: a data.ReadingTimes; extraction: as run_one's (device, dtype,
    batch_size and model_dir apply)."""
    import models
    options = {k: extraction[k] for k in ("device", "dtype", "batch_size", "model_dir") if k in extraction}
    bits = models.surprisal(model, rt.words, **options)
    return {"layer_names": [], "layers": [], "best_layer": None, "best_layer_name": "-", "mad": float("nan"),
            **behaviour_score(bits, rt)}


# -----------------------------------------------------------------------------
# one (model, dataset): activations (cached by models.py) -> every layer scored -> best layer;
# the record is cached as JSON under a key of everything that produced it, so an interrupted run
# resumes, a changed setting never reuses a stale result, and --report needs no model

PIPELINE_VERSION = 2     # bump when the scoring semantics change: older records are then not reused
SCORING = {"cv": "dataset", "numerics": "brainscore-2023", "cutoff": None, "embeddings": False,
           "wehbe_regression": "ridge", "wehbe_features": "words", "wehbe_window": 20}


def scoring_for(scoring, ds):
    """The scoring settings that apply to a dataset: the wehbe_* ones to time series only, none to
    reading times (no regression, no splits)."""
    if not hasattr(ds, "responses"):
        return {}
    return {k: v for k, v in scoring.items() if not k.startswith("wehbe_") or ds.word_tr is not None}


def splits_for(ds, cv="dataset"):
    """The dataset's own cross-validation ("dataset"), Brain-Score's 10 "shuffle" splits, or 10
    contiguous "kfold" folds (a time series keeps its gap between train and test)."""
    n = ds.responses.shape[0]
    if cv == "kfold":
        return kfold_splits(n, 10, ds.gap)
    if cv == "shuffle" or ds.cv == "shuffle":
        return shuffle_splits(n)
    return kfold_splits(n, ds.n_folds, ds.gap)


def score_part(acts, ds, cv="dataset", cond=1e-6, progress=True, numerics="float64", regression="ridge"):
    """Every layer of acts (n_stimuli, n_layers, n_features) scored on one dataset part -> [Score].
    numerics (see cross_validate) applies to Brain-Score's datasets; regression ("ridge" or "ols") to
    time series (Wehbe2014), which use the float64 fit."""
    splits = splits_for(ds, cv)
    layers = _bar(range(acts.shape[1]), progress, "layers")
    if ds.word_tr is None:
        return [score(acts[:, i], ds.responses, splits, ds.subjects, cond, numerics) for i in layers]
    return [summarize_time_series(*cross_validate_time_series(acts[:, i], ds, splits, regression, cond),
                                  ds.subjects) for i in layers]


def choose_layer(parts, layer_names, embeddings=False):
    """The one layer per model and dataset that the authors registered: the parts' scores averaged
    layer by layer (Pereira2018's two experiments), then the best candidate. Embedding outputs are
    candidates only when asked: the paper counts blocks only. parts: {part: {"layers": [score]}}
    -> (best layer index, the parts' mean score of every layer (n_layers,))."""
    mean = np.mean([p["layers"] for p in parts.values()], axis=0)            # (n_layers,)
    candidate = np.array([embeddings or not n.endswith("embeddings") for n in layer_names])
    if not candidate.any():
        raise ValueError(f"no candidate layer among {layer_names}: pass embeddings=True (--embeddings)")
    return int(np.flatnonzero(candidate)[np.argmax(mean[candidate])]), mean


def record_key(provenance, data_files, scoring):
    """What a score depends on: the activations' provenance, the data files and the scoring settings."""
    import models
    return models.key_of({"pipeline": PIPELINE_VERSION, "provenance": provenance, "data": data_files,
                          "scoring": scoring})


def score_path(cache_dir, model, dataset, key):
    import models
    return Path(cache_dir, "scores", models.safe_name(model), f"{dataset}.{key}.json")


REQUIRED = ("model", "dataset", "key", "provenance", "data", "scoring", "parts", "layers", "layer_names",
            "best_layer", "score", "mad", "ceiling")


def read_record(path, key=None):
    """A score record, or None when the file is unreadable, incomplete or for another key (a warning
    names the file; with `key`, a run about to recompute moves the bad file aside first)."""
    try:
        rec = json.loads(Path(path).read_text())
        missing = [k for k in REQUIRED if k not in rec] if isinstance(rec, dict) else ["everything"]
        if missing:
            raise ValueError(f"incomplete record, no {', '.join(missing)}")
        if key is not None and rec["key"] != key:
            raise ValueError(f"its key {rec['key']} is not {key}")
        return rec
    except (OSError, ValueError) as err:
        where = f"{path}.corrupt" if key is not None else None
        if where:
            os.replace(path, where)
        warnings.warn(f"unreadable score record {path} ({err}): "
                      f"{'moved aside to ' + where + ', recomputing' if where else 'skipped'}")
        return None


def run_one(info, dataset, parts, cache_dir, extraction, scoring=SCORING):
    """Score a model on the parts of one dataset -> a JSON-able record, cached.
    info: the model's models.ModelInfo; parts: the dataset's data.Dataset parts; extraction: keyword
    arguments of models.extract (device, dtype, readout, token_type_ids, batch_size, model_dir);
    scoring: SCORING's keys (cv, numerics, cutoff, embeddings, and Wehbe2014's regression, word
    features and window)."""
    import models
    source = info.name if models.MODELS.get(info.name) is info else info.hub_id   # a registry key, or else
    select = {k: extraction[k] for k in ("dtype", "readout", "token_type_ids", "model_dir") if k in extraction}
    provenance = models.provenance(source, **select)
    data_files = {"files": parts[0].files, "checksum": parts[0].checksum}
    scoring = scoring_for(scoring, parts[0])
    key = record_key(provenance, data_files, scoring)
    path = score_path(cache_dir, info.name, dataset, key)
    if path.exists() and (rec := read_record(path, key)) is not None:
        return rec | {"cached": True}
    names = provenance["layers"]
    rec = {"model": info.name, "dataset": dataset, "key": key, "pipeline": PIPELINE_VERSION,
           "provenance": provenance, "data": data_files, "scoring": scoring, "base": info.base,
           "family": info.family, "params": info.params, "parts": {}}
    if dataset in BEHAVIOUR_DATASETS:                  # surprisal against reading times
        rec |= run_behaviour(source, parts[0], extraction)
        write_atomic(path, json.dumps(rec, indent=1))
        return rec
    for ds in parts:
        if scoring.get("wehbe_features") == "words":          # Toneva & Wehbe's word features
            acts = models.extract_words(source, ds.texts, window=scoring["wehbe_window"], cache_dir=cache_dir,
                                        dataset_key=ds.name, **extraction)
            names = names[:acts.shape[1]]                         # T5: its encoder's layers
        else:
            window = scoring.get("wehbe_window", ds.context_window)
            acts = models.extract(source, ds.texts, ds.groups, context_window=window, cache_dir=cache_dir,
                                  dataset_key=ds.name, **extraction)
        if acts.shape[1] != len(names):
            raise RuntimeError(f"{info.name}: {acts.shape[1]} layers extracted but {len(names)} named")
        per_layer = score_part(acts, ds, scoring["cv"], scoring["cutoff"] or 1e-6, numerics=scoring["numerics"],
                               regression=scoring.get("wehbe_regression", "ols"))
        rec["parts"][ds.name] = {"layers": [s.score for s in per_layer],
                                 "per_subject": [s.per_subject for s in per_layer],
                                 "mad": [s.mad for s in per_layer], "ceiling": ds.ceiling,
                                 "n_targets": int(ds.responses.shape[1])}
    rec["layer_names"] = names
    best, mean = choose_layer(rec["parts"], names, scoring["embeddings"])
    done = rec["parts"].values()
    rec |= {"layers": mean.tolist(), "best_layer": best, "best_layer_name": names[best],
            "score": float(mean[best]), "mad": float(np.mean([p["mad"][best] for p in done])),
            "ceiling": float(np.mean([p["ceiling"] for p in done])),
            "per_subject": {f"{part}:{s}" if len(parts) > 1 else s: v
                            for part, p in rec["parts"].items() for s, v in p["per_subject"][best].items()}}
    write_atomic(path, json.dumps(rec, indent=1))
    return rec


def write_atomic(path, text):
    """Write text to path through a temporary file (flushed to disk) and a rename: never a
    half-written file, even after a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -----------------------------------------------------------------------------
# the paper's tables: alignment per model, tuned vs vanilla, correlations
# scores: {model: {dataset: best-layer score}}, the datasets of PAPER_DATASETS and "Average"

PAPER_DATASETS = ("Pereira2018", "Blank2014", "Wehbe2014")
PAPER_CEILINGS = {"Pereira2018": 0.359, "Blank2014": 0.210, "Wehbe2014": 0.104}   # Table 6


def relative_change(tuned, vanilla):
    """Per cent change of the tuned model's score over its vanilla base; NaN where the base is not a
    positive number (a ratio to 0 is undefined, and to a negative base it flips the sign)."""
    tuned, vanilla = np.asarray(tuned, dtype=float), np.asarray(vanilla, dtype=float)
    ok = np.isfinite(vanilla) & (vanilla > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, 100.0 * (tuned - vanilla) / np.where(ok, vanilla, 1.0), np.nan)


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
    pair (per-dataset % change and absolute difference, or a note when a side was not run or the
    vanilla score is not positive), the mean change per dataset over the pairs that have one, the
    headline (mean of the per-dataset means), how many pairs improved, a Wilcoxon signed-rank test
    of tuned vs vanilla Average scores and a bootstrap 95% CI of the mean Average change.
    A pair whose vanilla score is <= 0 or not finite has no percentage on that dataset: it is left
    out of the means and the tests, and "left_out" counts such pairs."""
    rows, done, left_out = [], [], 0
    for tuned, vanilla in pairs:
        missing = [m for m in (tuned, vanilla) if m not in scores]
        if missing:
            rows.append({"tuned": tuned, "vanilla": vanilla, "note": f"not run: {', '.join(missing)}"})
            continue
        both = [d for d in datasets if d in scores[tuned] and d in scores[vanilla]]
        change = {d: float(relative_change(scores[tuned][d], scores[vanilla][d])) for d in both}
        bad = [d for d in both if not np.isfinite(change[d])]
        change = {d: v for d, v in change.items() if d not in bad}
        row = {"tuned": tuned, "vanilla": vanilla, **change,
               **{f"{d} diff": scores[tuned][d] - scores[vanilla][d] for d in both}}
        if bad:
            left_out += 1
            row["note"] = f"vanilla score <= 0 on {', '.join(bad)}: no relative change there"
        rows.append(row)
        done.append((tuned, vanilla, change))
    mean = {d: float(np.mean([c[d] for *_, c in done if d in c]))
            for d in datasets if any(d in c for *_, c in done)}
    per_dataset = [mean[d] for d in datasets if d != "Average" and d in mean]
    avg = [(t, v, c["Average"]) for t, v, c in done if "Average" in c]
    out = {"rows": rows, "mean": mean, "n_pairs": len(avg), "left_out": left_out,
           "headline": float(np.mean(per_dataset)) if per_dataset else float("nan"),
           "improved": sum(change > 0 for *_, change in avg)}
    if len(avg) >= 2:
        import scipy.stats
        t, v = np.array([(scores[t]["Average"], scores[v]["Average"]) for t, v, _ in avg]).T
        out["wilcoxon_p"] = float(scipy.stats.wilcoxon(t, v).pvalue) if np.any(t != v) else 1.0
        out["ci95"] = bootstrap_ci(relative_change(t, v))
    return out


def compare_behaviour(values, pairs):
    """Instruction tuning and behavioural alignment, kept apart from the brain Average as the paper
    keeps Table 9 apart: values {model: score}, pairs [(tuned, vanilla), ...] -> compare_pairs' dict
    on that one score (a vanilla score <= 0 guarded the same way), with "mean" the mean % change,
    "worse" the number of pairs that got worse, and per pair the two scores and the "change"."""
    scores = {m: {"Average": v} for m, v in values.items() if v is not None}
    out = compare_pairs(scores, pairs, ("Average",))
    for row in out["rows"]:
        if "Average" in row:
            row |= {"tuned score": scores[row["tuned"]]["Average"],
                    "vanilla score": scores[row["vanilla"]]["Average"], "change": row.pop("Average")}
        row.pop("Average diff", None)
    out["worse"] = sum(row.get("change", 0) < 0 for row in out["rows"])
    out["mean"] = out["mean"].get("Average", float("nan"))
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


def collect(records, normalize_scores=False, layer_choice="dataset"):
    """Score records -> ({model: {dataset: score, "Average": mean over the paper's datasets run}},
    {model: {dataset: best layer name}}, {dataset: ceiling}). layer_choice "pereira": every
    Brain-Score dataset is read at the layer chosen on Pereira2018, as the authors' registrations
    were ("layer assignment based on choosing the maximally scoring layer on Pereira2018-encoding",
    brain-score/language f9a403e models/t5/__init__.py and 91c88b1 models/llama/__init__.py)."""
    scores, layers, ceilings = {}, {}, {}
    pereira = {r["model"]: r for r in records if r["dataset"] == "Pereira2018"}
    for rec in records:
        best = rec["best_layer"]
        ref = pereira.get(rec["model"])
        if (layer_choice == "pereira" and ref and rec["dataset"] not in ("Pereira2018", "Wehbe2014")
                and ref["layer_names"] == rec["layer_names"]):
            best = ref["best_layer"]
        parts = rec["parts"].values()
        value = float(np.mean([normalize(p["layers"][best], p["ceiling"]) for p in parts])) \
            if normalize_scores else float(np.mean([p["layers"][best] for p in parts]))  # Brain-Score: per part
        scores.setdefault(rec["model"], {})[rec["dataset"]] = value
        layers.setdefault(rec["model"], {})[rec["dataset"]] = rec["layer_names"][best]
        ceilings[rec["dataset"]] = rec["ceiling"]
    averaged = [d for d in PAPER_DATASETS if d in ceilings] or sorted(ceilings)
    for m in scores:
        if all(d in scores[m] for d in averaged):
            scores[m]["Average"] = float(np.mean([scores[m][d] for d in averaged]))
    return scores, layers, ceilings


def tables(scores, layers, ceilings, info, normalized=False, behaviour=None):
    """The four brain tables -> {title: rows (list of dicts)}. info: {model: ModelInfo}. behaviour:
    {model: run_behaviour record} adds Futrell2018 columns to the first and a fifth table."""
    columns = [d for d in PAPER_DATASETS if d in ceilings] + sorted(set(ceilings) - set(PAPER_DATASETS))
    size = lambda m: info[m].params if m in info and np.isfinite(info[m].params) else 0.0
    alignment = []
    for m in sorted(scores, key=lambda m: (size(m), m)):
        paper = dict(zip(PAPER_DATASETS + ("Average",), info[m].paper or ())) if m in info else {}
        row = {"model": m}
        for d in columns + ["Average"]:
            row[d] = scores[m].get(d)
            comparable = d != "Average" or all(x in scores[m] for x in PAPER_DATASETS)  # the paper's mean of 3
            if not normalized and np.isfinite(paper.get(d) or np.nan) and d in scores[m] and comparable:
                row[f"{d} paper"], row[f"{d} diff"] = paper[d], scores[m][d] - paper[d]
        row["layers"] = " ".join(f"{d[0]}:{layers[m][d]}" for d in columns if d in layers[m])
        alignment.append(row)
    pairs = [(m, i.base) for m, i in info.items() if i.base and (m in scores or i.base in scores)]
    cmp = compare_pairs(scores, pairs, tuple(columns) + ("Average",))
    comparison = [{k: percent(v) if k in cmp["mean"] else v for k, v in r.items()} for r in cmp["rows"]]
    if cmp["n_pairs"]:
        note = (f"headline {cmp['headline']:+.2f}% (mean of the per-dataset means); "
                f"{cmp['improved']}/{cmp['n_pairs']} improved")
        if "wilcoxon_p" in cmp:
            note += f"; Wilcoxon p = {cmp['wilcoxon_p']:.3g}; 95% CI of the mean " \
                    f"[{cmp['ci95'][0]:+.1f}%, {cmp['ci95'][1]:+.1f}%]"
        if cmp["left_out"]:
            note += f"; {cmp['left_out']} pair(s) left out where the vanilla score is <= 0"
        comparison.append({"tuned": f"mean of {cmp['n_pairs']} pairs", "vanilla": "",
                           **{d: percent(v) for d, v in cmp["mean"].items()}, "note": note})
    return {"Brain alignment per model" + (" (ceiling-normalised)" if normalized else ""): alignment,
            "Instruction tuning: tuned vs vanilla (relative change)": comparison,
            "Correlation of the Average score with model properties":
                correlations(scores, info, {m for m, _ in pairs}),
            "Noise ceilings": [{"dataset": d, "ceiling": ceilings[d],
                                "paper (Table 6)": PAPER_CEILINGS.get(d)} for d in columns],
            **behaviour_tables(alignment, behaviour or {}, info)}


def behaviour_tables(alignment, behaviour, info):
    """Futrell2018 columns added to the rows of the per-model table (our |r|, the paper's Table 9
    value and the difference, the ceiling-normalised score; a new row for a model scored on behaviour
    only) and the tuned-vs-vanilla table for behaviour, ours beside the paper's -> {title: rows}."""
    if not behaviour:
        return {}
    rows = {row["model"]: row for row in alignment}
    for m, rec in behaviour.items():
        if m not in rows:
            rows[m] = {"model": m}
            alignment.append(rows[m])
        paper = getattr(info.get(m), "paper_futrell", None)
        rows[m] |= {"Futrell2018": rec["score"], "Futrell2018 paper": paper,
                    "Futrell2018 diff": None if paper is None else rec["score"] - paper,
                    "Futrell2018 normalised": rec["normalized"]}
    pairs = [(m, i.base) for m, i in info.items() if i.base and (m in behaviour or i.base in behaviour)]
    ours = compare_behaviour({m: rec["score"] for m, rec in behaviour.items()}, pairs)
    paper = compare_behaviour({m: i.paper_futrell for m, i in info.items()}, pairs)
    paper_change = {r["tuned"]: r["change"] for r in paper["rows"] if "change" in r}
    table = [r | {"change": percent(r.get("change")), "paper change": percent(paper_change.get(r["tuned"]))}
             for r in ours["rows"]]
    for label, cmp in (("ours", ours), ("paper, Table 9", paper)):
        if cmp["n_pairs"]:
            note = f"{cmp['improved']}/{cmp['n_pairs']} improved, {cmp['worse']} worse"
            note += f"; Wilcoxon p = {cmp['wilcoxon_p']:.3g}" if "wilcoxon_p" in cmp else ""
            table.append({"tuned": f"mean of {cmp['n_pairs']} pairs ({label})", "vanilla": "",
                          "change": percent(cmp["mean"]), "note": note})
    ceiling = np.median([rec["ceiling"] for rec in behaviour.values()])
    table.append({"tuned": "ceiling", "vanilla": "", "note": f"split-half ceiling from the data {ceiling:.3f} "
                  f"(Brain-Score's .858); Futrell2018 never enters the brain Average"})
    return {"Behavioural alignment (Futrell2018): tuned vs vanilla (relative change)": table}


def percent(value):
    """A per cent change as the tables print it ("+6.2%"); anything else (None, a note) as it is."""
    return f"{value:+.1f}%" if isinstance(value, float) else value


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


# -----------------------------------------------------------------------------
# figures (matplotlib is optional and imported only here): ours against the paper, tuned vs vanilla,
# alignment against model properties, every layer's score. Each fig_* function returns a matplotlib
# Figure, or None when the run has nothing to draw in it.

FIGURES = ("reproduction.png", "tuned_vs_vanilla.png", "alignment_vs_size_mmlu_bbh.png", "layers.png")
FAMILIES = {"t5": ("T5", "C0"), "llama": ("LLaMA", "C1"), "gpt2": ("GPT-2", "C2")}   # label, colour


def figures(out_dir, records, scores, info, corr, normalized=False):
    """Write the figures this run has data for into out_dir and delete the others, so that no figure
    of an earlier run is left beside this run's tables -> the names written. records: the score
    records; scores: collect()'s; info: {model: ModelInfo}; corr: the rows of correlations()."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        made = {}
        print("matplotlib is not installed: no figures written (pip install matplotlib)", file=sys.stderr)
    else:
        made = {"reproduction.png": None if normalized else fig_reproduction(scores, info),
                "tuned_vs_vanilla.png": fig_tuned_vs_vanilla(scores, _mads(records, normalized), info,
                                                             normalized),
                "alignment_vs_size_mmlu_bbh.png": fig_properties(scores, info, corr, normalized),
                "layers.png": fig_layers(records, info)}
    for name in FIGURES:
        path = Path(out_dir, name)
        if made.get(name) is None:
            path.unlink(missing_ok=True)
            continue
        tmp = path.with_name(f"{name}.tmp{os.getpid()}")
        made[name].savefig(tmp, format="png", dpi=150)
        os.replace(tmp, path)
    return [name for name in FIGURES if made.get(name) is not None]


def paper_value(model_info, dataset):
    """The paper's score of a model on a dataset (Table 5; Table 9 for Futrell2018), None if none."""
    if dataset == "Futrell2018":
        value = getattr(model_info, "paper_futrell", None)
    else:
        paper = getattr(model_info, "paper", None) or ()
        value = dict(zip(PAPER_DATASETS + ("Average",), paper)).get(dataset)
    return value if value is not None and np.isfinite(value) else None


def fig_reproduction(scores, info):
    """Our score (x) against the paper's (y), one panel per dataset and the Average, the identity line,
    Pearson r and the mean absolute difference in each title. An Average is compared only when all
    three of the paper's datasets were run (the paper's Average is their mean)."""
    panels = {}
    for d in _columns(scores):
        points = [(m, s[d], paper_value(info.get(m), d)) for m, s in scores.items() if d in s
                  and (d != "Average" or all(p in s for p in PAPER_DATASETS))]
        if points := [p for p in points if p[2] is not None]:
            panels[d] = points
    if not panels:
        return None
    fig, axes = _grid(len(panels), min(len(panels), 3), 3.3, 3.5)
    for ax, (d, points) in zip(axes, panels.items()):
        ours, paper = np.array([p[1:] for p in points]).T
        lo, hi = min(ours.min(), paper.min()), max(ours.max(), paper.max())
        lim = (lo - 0.08 * (hi - lo) - 0.005, hi + 0.08 * (hi - lo) + 0.005)
        ax.plot(lim, lim, color="0.6", lw=0.8, zorder=0)          # on the line: the paper's value
        _scatter(ax, info, points)
        r = f", r = {np.corrcoef(ours, paper)[0, 1]:.2f}" if len(points) >= 3 and ours.std() > 0 \
            and paper.std() > 0 else ""
        ax.set(xlim=lim, ylim=lim, aspect="equal", xlabel="ours",
               ylabel=f"paper (Table {9 if d == 'Futrell2018' else 5})")
        ax.set_title(f"{d} (n = {len(points)}{r})\nmean |ours - paper| = {np.abs(ours - paper).mean():.3f}",
                     fontsize=10)
    _legend(fig, [info.get(m) for pts in panels.values() for m, *_ in pts])
    # the points furthest from the paper get their names first
    _name_points(fig, [(ax, sorted(pts, key=lambda p: -abs(p[1] - p[2])))
                       for ax, pts in zip(axes, panels.values())])
    return fig


def fig_tuned_vs_vanilla(scores, mads, info, normalized=False):
    """The paper's bar chart: each vanilla model, then the models tuned from it, one panel per
    dataset and the Average; error bars = the MAD over subjects (mads: {model: {dataset: MAD}}; the
    Average has none, its subjects differ between datasets); a black diamond marks the paper's value."""
    groups = {}                                       # vanilla -> [vanilla, its tuned models run]
    for m in sorted(scores):
        base = getattr(info.get(m), "base", None)
        if base in scores:
            groups.setdefault(base, [base]).append(m)
    if not groups:
        return None
    bars = [m for v in sorted(groups, key=lambda v: (_params(info.get(v)), v)) for m in groups[v]]
    x = np.cumsum([0.0] + [1.0 + 0.6 * (m in groups) for m in bars[1:]])     # a gap before each group
    columns = _columns({m: scores[m] for m in bars})
    with_paper = False
    fig = _figure(max(5.0, 0.32 * len(bars) + 2.5), 1.9 * len(columns) + 1.6)
    axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)[:, 0]
    for ax, d in zip(axes, columns):
        for xi, m in zip(x, bars):
            if d not in scores[m]:
                continue
            _, colour = _family(info.get(m))
            tuned = m not in groups
            ax.bar(xi, scores[m][d], 0.8, color=colour, alpha=1.0 if tuned else 0.45, edgecolor=colour,
                   yerr=mads.get(m, {}).get(d), ecolor="0.15", capsize=2, error_kw={"lw": 0.8})
            paper = None if normalized else paper_value(info.get(m), d)
            if paper is not None:
                ax.plot(xi, paper, "D", color="k", ms=3.5)
                with_paper = True
        ax.set_title(d, loc="left", fontsize=10)
        ax.set_ylabel("score (ceiling-normalised)" if normalized else "score (r)", fontsize=9)
    axes[-1].set_xticks(x, bars, rotation=90, fontsize=8)
    _legend(fig, [info.get(m) for m in bars], bars=True, paper=with_paper)
    return fig


def fig_properties(scores, info, corr, normalized=False):
    """The Average score against size (all models; and tuned only), MMLU and BBH (tuned models, the
    only ones the paper gives them for): least-squares line, r and FDR p (from corr, the rows of
    correlations()) in the title, n in the legend; a property with fewer than 3 models is left out."""
    rows = {r["against"]: r for r in corr}
    panels = [(attr, label, [rows[k] for k in keys if k in rows]) for attr, label, keys in (
        ("params", "size (parameters)", ("log10(params), all", "log10(params), tuned")),
        ("mmlu", "MMLU (Table 7)", ("MMLU, tuned",)), ("bbh", "BBH (Table 7)", ("BBH, tuned",)))]
    if not (panels := [p for p in panels if p[2]]):
        return None
    fig, axes = _grid(len(panels), len(panels), 3.6, 3.7)
    named = []
    for ax, (attr, label, fits) in zip(axes, panels):
        points = [(m, getattr(info[m], attr), s["Average"]) for m, s in scores.items()
                  if "Average" in s and m in info and np.isfinite(getattr(info[m], attr) or np.nan)]
        _scatter(ax, info, points)
        title = [label]
        for row, style in zip(fits, ("-", "--")):
            which = row["against"].split(", ")[1]                      # "all" or "tuned"
            x, y = np.array([p[1:] for p in points if which == "all" or info[p[0]].base]).T
            if attr == "params":
                x = np.log10(x)                                          # the paper fits log10(size)
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(10 ** grid if attr == "params" else grid, slope * grid + intercept, style, color="k",
                    lw=1, label=f"fit, {which} models (n = {row['n']})")
            title.append(f"{which}: r = {row['r']:.2f}, FDR p = {row['p_fdr']:.2g}")
        if attr == "params":
            ax.set_xscale("log")
        ax.set_title("\n".join(title), fontsize=10)
        ax.set(xlabel=label, ylabel="Average score" + (" (ceiling-normalised)" if normalized else " (r)"))
        ax.legend(fontsize=8, loc="best")
        named.append((ax, points))
    _legend(fig, [info.get(m) for _, pts in named for m, *_ in pts])
    _name_points(fig, named)
    return fig


def fig_layers(records, info):
    """Every layer's score against its relative depth (0 = embeddings, 1 = last layer), one row per
    vanilla model and the models tuned from it, one column per dataset part (rows share the column's
    y range); a star marks the best layer, a dotted line where a T5 decoder starts."""
    rows, parts = {}, {}                      # rows: vanilla -> {model: {part: part record}}
    for rec in records:
        group = getattr(info.get(rec["model"]), "base", None) or rec["model"]
        for part, p in rec["parts"].items():
            rows.setdefault(group, {}).setdefault(rec["model"], {})[part] = p | {
                "layer_names": rec.get("layer_names") or [], "best_layer": rec["best_layer"]}
            parts[part] = rec["dataset"]
    if not rows:
        return None
    order = list(PAPER_DATASETS) + sorted(set(parts.values()) - set(PAPER_DATASETS))
    parts = sorted(parts, key=lambda part: (order.index(parts[part]), part))
    groups = sorted(rows, key=lambda g: (_params(info.get(g)), g))
    # a fixed layout: constrained layout would cost most of the drawing time with 60 panels
    width, height = 2.7 * len(parts) + 2.4, 1.8 * len(groups) + 1.1
    fig = _figure(width, height, layout=None)
    fig.subplots_adjust(left=0.75 / width, right=1 - 2.1 / width, bottom=0.55 / height,
                        top=1 - 0.75 / height, wspace=0.3, hspace=0.12)
    axes = fig.subplots(len(groups), len(parts), squeeze=False)
    t5 = False
    for j, part in enumerate(parts):
        values = [v for r in rows.values() for m in r.values() if part in m for v in m[part]["layers"]]
        pad = 0.05 * (max(values) - min(values)) + 1e-3
        for i, g in enumerate(groups):
            ax = axes[i, j]
            members = sorted(rows[g], key=lambda m: (m != g, m))           # the vanilla model first
            for k, m in enumerate(members):
                if part not in rows[g][m]:
                    continue
                p = rows[g][m][part]
                depth = np.linspace(0, 1, len(p["layers"])) if len(p["layers"]) > 1 else np.zeros(1)
                colour = "k" if m == g else f"C{k - (g in members)}"
                ax.plot(depth, p["layers"], color=colour, lw=1.2, label=m)
                ax.plot(depth[p["best_layer"]], p["layers"][p["best_layer"]], "*", color=colour, ms=9)
                if "decoder.embeddings" in p["layer_names"]:
                    t5 = True
                    ax.axvline(depth[p["layer_names"].index("decoder.embeddings")], color="0.6", ls=":",
                               lw=0.8)
            ax.set(xlim=(-0.04, 1.04), ylim=(min(values) - pad, max(values) + pad))
            ax.tick_params(labelsize=8, labelbottom=i == len(groups) - 1)
            if i == 0:
                ax.set_title(part, fontsize=10)
            if j == 0:
                ax.set_ylabel("score", fontsize=9)
            if i == len(groups) - 1:
                ax.set_xlabel("relative depth", fontsize=9)
    for i in range(len(groups)):
        axes[i, -1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.suptitle("Score of every layer (star: best layer" + ("; dotted: T5 decoder starts)" if t5 else ")"),
                 y=1 - 0.15 / height, va="top", fontsize=10)
    return fig


def _mads(records, normalized=False):
    """{model: {dataset: MAD over subjects}}: the paper's error bars (mean over a dataset's parts,
    each divided by its ceiling when the scores are)."""
    mads = {}
    for rec in records:
        mads.setdefault(rec["model"], {})[rec["dataset"]] = float(np.mean(
            [p["mad"][rec["best_layer"]] / (p["ceiling"] if normalized else 1.0) for p in rec["parts"].values()]))
    return mads


def _columns(scores):
    """The datasets in scores, in the tables' order, then the Average."""
    run = {d for s in scores.values() for d in s} - {"Average"}
    return [d for d in PAPER_DATASETS if d in run] + sorted(run - set(PAPER_DATASETS)) + \
        ["Average"] * any("Average" in s for s in scores.values())


def _params(model_info):
    params = getattr(model_info, "params", None)
    return params if params is not None and np.isfinite(params) else 0.0


def _family(model_info):
    """(label, colour) of a model's family."""
    return FAMILIES.get(getattr(model_info, "family", ""), ("other", "C7"))


def _figure(width, height, layout="constrained"):
    """A Figure that draws without pyplot, so nothing global changes (and lays itself out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _grid(n, n_cols, width, height):
    """n panels on a grid n_cols wide -> (figure, the n axes)."""
    n_rows = -(-n // n_cols)
    fig = _figure(width * n_cols, height * n_rows + 0.6)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, list(axes[:n])


def _scatter(ax, info, points):
    """points [(model, x, y)]: colour = family, open circle = vanilla, filled triangle = tuned."""
    for m, x, y in points:
        _, colour = _family(info.get(m))
        tuned = getattr(info.get(m), "base", None) is not None
        ax.scatter(x, y, s=30, marker="^" if tuned else "o", facecolors=colour if tuned else "none",
                   edgecolors=colour, linewidths=1.2)


def _legend(fig, model_infos, bars=False, paper=False):
    """One legend for the figure, below it: the families present, vanilla and tuned."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Patch(color=c, label=f) for f, c in dict.fromkeys(map(_family, model_infos))]
    tuned = {getattr(i, "base", None) is not None for i in model_infos}
    if bars:
        handles += [Patch(color="0.3", alpha=0.45, label="vanilla"), Patch(color="0.3", label="tuned"),
                    Line2D([], [], color="0.15", marker="|", ls="", ms=8, label="MAD over subjects")]
        handles += [Line2D([], [], color="k", marker="D", ls="", ms=4, label="paper")] * paper
    else:
        handles += [Line2D([], [], color="k", marker="o", mfc="none", ls="", label="vanilla")] * \
            (False in tuned) + [Line2D([], [], color="k", marker="^", ls="", label="instruction-tuned")] * \
            (True in tuned)
    fig.legend(handles=handles, loc="outside lower center", fontsize=9, frameon=False,
               ncols=min(len(handles), max(1, int(fig.get_figwidth() / 1.8))))


def _name_points(fig, panels):
    """Write each point's model name beside it where there is room: at the first of eight places
    (right, left, above, below, then diagonally) that stays inside the panel, covers no point, line,
    legend or name already written, and is nearer to its own point than to any other (so that no
    name is ambiguous); a point with no such place stays unnamed (the tables name every model).
    panels: [(ax, [(model, x, y), ...] in order of priority)]."""
    fig.draw_without_rendering()                     # the layout is final from here on
    renderer = fig.canvas.get_renderer()
    pt = fig.dpi / 72                                # pixels per point
    for ax, points in panels:
        frame = ax.get_window_extent(renderer)
        xy = ax.transData.transform([p[1:] for p in points])                        # (n_points, 2)
        taken = [np.hstack([xy - 3.5 * pt, xy + 3.5 * pt])]                 # boxes (x0, y0, x1, y1)
        for line in ax.get_lines():                  # fits and identity lines, as dots 2 pixels apart
            ends = line.get_transform().transform(line.get_xydata())
            steps = np.linspace(0, 1, int(np.abs(np.diff(ends, axis=0)).sum() / 2) + 2)
            along = np.linspace(0, 1, len(ends))
            dots = np.column_stack([np.interp(steps, along, ends[:, k]) for k in (0, 1)])  # (n_dots, 2)
            taken.append(np.hstack([dots - pt, dots + pt]))
        if ax.get_legend():
            taken.append(np.array([ax.get_legend().get_window_extent(renderer).extents]))
        taken = np.vstack(taken)
        for i, (m, x, y) in enumerate(points):
            for dx, dy, ha, va in ((5, 0, "left", "center"), (-5, 0, "right", "center"),
                                   (0, 5, "center", "bottom"), (0, -5, "center", "top"),
                                   (4, 4, "left", "bottom"), (4, -4, "left", "top"),
                                   (-4, 4, "right", "bottom"), (-4, -4, "right", "top")):
                text = ax.annotate(m, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                   fontsize=8, in_layout=False, gid="model name")
                box = text.get_window_extent(renderer).extents                 # (x0, y0, x1, y1)
                gap = np.hypot(*(np.clip(xy, box[:2], box[2:]) - xy).T)        # (n_points,) to the box
                inside = (frame.extents[:2] <= box[:2]).all() and (box[2:] <= frame.extents[2:]).all()
                covers = ((box[0] < taken[:, 2]) & (taken[:, 0] < box[2]) & (box[1] < taken[:, 3])
                          & (taken[:, 1] < box[3])).any()
                if inside and not covers and (np.delete(gap, i) > gap[i] + 2 * pt).all():
                    taken = np.vstack([taken, box])
                    break
                text.remove()


# -----------------------------------------------------------------------------
# --demo: the whole pipeline offline: tiny random-weight models (models.make_tiny_model) and
# responses planted from the tuned one (data.synthetic)


DEMO_BANNER = "# SYNTHETIC DEMO: tiny random-weight models, planted responses. Not real results.\n"


def demo(cache_dir):
    """Three pairs of tiny random-weight GPT-2s (width 16, 32, 64), "demo-<width>" and
    "demo-<width>-tuned"; the responses are planted from layer 1 of the three tuned ones together, so
    each tuned model must align better than its vanilla twin -> (datasets, info). The models are
    written once and reused, so a second run finds its cached scores."""
    import data
    import models
    sentences = data.demo_sentences()
    info = {}
    for width in (16, 32, 64):
        params = 2 * 12 * width ** 2 + (150 + 128) * width        # blocks, token and position tables
        for name, base in ((f"demo-{width}", None), (f"demo-{width}-tuned", f"demo-{width}")):
            path = Path(cache_dir, name)
            if not (path / "model.safetensors").exists():        # (written last by save_pretrained)
                models.make_tiny_model("gpt2", path, sentences, seed=len(info), width=width)
            info[name] = models.ModelInfo(name, str(path), "gpt2", float(params), 2, base)
    tuned = [i.hub_id for i in info.values() if i.base]

    def layer1(texts, groups, window):                 # (n_stimuli, 3 * width) of the tuned models
        return np.concatenate([models.extract(m, texts, groups, context_window=window, progress=False)[:, 1]
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
                    "best layer per dataset, and the instruction-tuning comparison tables. The "
                    "defaults compute what the authors' code computed; each flag below that departs "
                    "from it says so.",
        epilog="With no arguments: T5 v1.1 small vs Flan-T5 small on the three datasets.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="all 25 models of the paper")
    what.add_argument("--models", nargs="+", metavar="NAME",
                      help="registry names (models.py; the GPT-2 appendix pairs too), hub ids or "
                           "local model directories")
    what.add_argument("--demo", action="store_true",
                      help="offline, 20 s to a few minutes on a CPU: tiny random models, synthetic responses")
    what.add_argument("--report", action="store_true",
                      help="re-render every table from the score cache, loading no model (only the "
                           "records made with the scoring and extraction options given here)")
    p.add_argument("--datasets", nargs="+", choices=list(data.DATASETS),
                   help="default: the paper's three brain datasets; with --all also Futrell2018 (behaviour)")
    p.add_argument("--device", default="auto",
                   help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps, or map (device_map='auto')")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="weights and activations; the authors loaded models without a torch_dtype, "
                        "i.e. float32 (default)")
    p.add_argument("--readout", default="paper", choices=["paper", "block"],
                   help="paper: LLaMA-family blocks read at post_attention_layernorm, as the authors' "
                        "code (Brain-Score PR #194); block: every block's output")
    p.add_argument("--token-type-ids", default="drop", choices=["drop", "pass"],
                   help="drop: as the authors' code (PR #194); pass: as Brain-Score, every input the "
                        "tokenizer declares")
    p.add_argument("--embeddings", action="store_true",
                   help="let the embedding outputs compete for the best layer (the paper counts "
                        "blocks only; they are always scored and recorded)")
    p.add_argument("--layer-choice", default="dataset", choices=["dataset", "pereira"],
                   help="dataset: each dataset's own best layer (the paper's text); pereira: Blank2014 "
                        "(and the other Brain-Score datasets) read at the layer chosen on Pereira2018, "
                        "as the authors registered one layer per model in Brain-Score")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--cache-dir", default=os.environ.get("BRAINALIGN_CACHE", "~/.cache/brainalign"),
                   help="activations and scores (env BRAINALIGN_CACHE)")
    p.add_argument("--data-dir", help="where the dataset files are or go (env BRAINALIGN_DATA)")
    p.add_argument("--data-file", action="append", default=[], metavar="DATASET=PATH",
                   help="read DATASET from this file without its checksum (e.g. another packaging of "
                        "the same data); the record says so and keeps the file's sha1. Repeat for "
                        "datasets of several files (Wehbe2014: subject_1.mat .. subject_8.mat, in order)")
    p.add_argument("--model-dir", nargs="+", default=[], metavar="DIR | NAME=DIR",
                   help="local copies of the weights: DIR for a single model, NAME=DIR for several")
    p.add_argument("--out", default="results", help="folder for the tables (md, csv, json) and figures")
    p.add_argument("--force", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("--normalize", action="store_true", help="divide scores by the noise ceiling")
    p.add_argument("--cv", default="dataset", choices=["dataset", "shuffle", "kfold"],
                   help="dataset: Brain-Score's 10 shuffle splits (Pereira, Blank) and 4 contiguous "
                        "folds with 5-TR gaps (Wehbe); shuffle: Brain-Score's splits everywhere; "
                        "kfold: 10 contiguous folds everywhere (time series keep their gap)")
    p.add_argument("--numerics", default="brainscore-2023", choices=NUMERICS,
                   help="brainscore-2023 (default): the paper's fit, sklearn <= 1.5 LinearRegression "
                        "on float32 activations (float32 lstsq, cutoff float32 eps), as slow as "
                        "Brain-Score's; float64: the exact float64 fit with --cutoff, one Gram matrix "
                        "per layer, about 250x faster on Pereira2018")
    p.add_argument("--cutoff", type=float, default=1e-6,
                   help="with --numerics float64: relative singular-value cutoff of the least-squares "
                        "fit (sklearn >= 1.9 uses 1e-6, 1.6-1.8 max(n, p) x 2.2e-16; sklearn <= 1.5 on "
                        "float32 input is --numerics brainscore-2023, not a cutoff)")
    p.add_argument("--wehbe-regression", default="ridge", choices=["ridge", "ols"],
                   help="Wehbe2014's regression: ridge, a penalty per voxel chosen by inner 10-fold "
                        "cross-validation (Toneva & Wehbe's pipeline, the paper's), or ols, the "
                        "least-squares encoder of the other datasets")
    p.add_argument("--wehbe-features", default="words", choices=["words", "context"],
                   help="Wehbe2014's word features: words, Toneva & Wehbe's (each word tokenized alone, "
                        "the mean over the last word's tokens; T5: encoder only), or context, the last "
                        "token of the window joined into one text, as for the other datasets")
    p.add_argument("--wehbe-window", type=_positive_int, default=20, metavar="N",
                   help="words the model sees for each Wehbe2014 word (the paper does not say; 20)")
    args = p.parse_args(argv)
    if not (np.isfinite(args.cutoff) and 0 < args.cutoff < 1):
        p.error(f"--cutoff must be a number between 0 and 1 (exclusive), got {args.cutoff}")
    args.datasets = args.datasets or list(PAPER_DATASETS) + list(BEHAVIOUR_DATASETS) * args.all
    args.cache_dir = str(Path(args.cache_dir).expanduser())
    return args


def _positive_int(text):
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _pairs(items, what, example):
    """["NAME=VALUE", ...] -> {NAME: [VALUE, ...]} in order."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} takes {example}, got {item!r}")
        out.setdefault(name, []).append(value)
    return out


def _writable(folder, what, force=False):
    """Create folder and prove it can be written, before any work that would be lost otherwise."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{what} {folder} cannot be written ({err.strerror}); give another folder") from None
    return folder


def check_out(out, force):
    """--out must be a writable folder that holds no other run's results, unless --force."""
    folder = _writable(out, "--out")
    if (folder / "config.json").exists() and not force:
        raise ValueError(f"{folder} holds the results of an earlier run; pass --force to replace them, "
                         f"or --out another folder")
    return folder


def scoring_of(args):
    return {"cv": args.cv, "numerics": args.numerics,
            "cutoff": args.cutoff if args.numerics == "float64" else None, "embeddings": args.embeddings,
            "wehbe_regression": args.wehbe_regression, "wehbe_features": args.wehbe_features,
            "wehbe_window": args.wehbe_window}


def extraction_of(args, model_dir=None):
    return {"device": args.device, "dtype": args.dtype, "readout": args.readout,
            "token_type_ids": args.token_type_ids, "batch_size": args.batch_size, "model_dir": model_dir}


def model_dirs(args, names):
    """--model-dir -> {model name: folder}: one DIR for one model, or NAME=DIR pairs."""
    if not args.model_dir:
        return {}
    if len(args.model_dir) == 1 and "=" not in args.model_dir[0]:
        if len(names) != 1:
            raise ValueError(f"--model-dir DIR serves one model, but {len(names)} were asked for "
                             f"({', '.join(names)}); use --model-dir NAME=DIR for each")
        return {names[0]: args.model_dir[0]}
    dirs = {name: values[-1] for name, values in _pairs(args.model_dir, "--model-dir", "NAME=DIR").items()}
    unknown = sorted(set(dirs) - set(names))
    if unknown:
        raise ValueError(f"--model-dir names {', '.join(unknown)}, not among the models run ({', '.join(names)})")
    for name, folder in dirs.items():
        if not Path(folder).expanduser().is_dir():
            raise ValueError(f"--model-dir {name}={folder}: no such folder")
    return dirs


def load_datasets(args):
    """Every dataset the run needs, loaded (and downloaded) before any model: {name: [Dataset]}."""
    import data
    files = _pairs(args.data_file, "--data-file", "DATASET=PATH")
    unknown = sorted(set(files) - set(data.DATASETS))
    if unknown:
        raise ValueError(f"--data-file: unknown dataset {', '.join(unknown)}; choose from {', '.join(data.DATASETS)}")
    return {name: data.load_files(name, files[name]) if name in files else data.load(name, args.data_dir)
            for name in args.datasets}


def report_records(args):
    """The score records under --cache-dir made with this run's scoring and extraction options: the
    newest per (model, dataset); the others are counted and named in a warning."""
    scoring = scoring_of(args)
    wanted = {k: v for k, v in extraction_of(args).items() if k in ("dtype", "readout", "token_type_ids")}
    found, other = {}, 0
    for path in sorted(Path(args.cache_dir, "scores").glob("*/*.json"), key=lambda f: f.stat().st_mtime):
        rec = read_record(path)
        if rec is None:
            continue
        series = "wehbe_regression" in rec["scoring"]          # a time series: its own settings count too
        expected = {} if rec["dataset"] in BEHAVIOUR_DATASETS else \
            {k: v for k, v in scoring.items() if series or not k.startswith("wehbe_")}
        if series and rec["data"].get("checksum") == "synthetic":
            expected["wehbe_features"] = "context"             # as --demo always scores its word stream
        if rec["scoring"] != expected or any(rec["provenance"].get(k) != v for k, v in wanted.items()):
            other += 1
            continue
        found[(rec["model"], rec["dataset"])] = rec
    if other:
        print(f"{other} record(s) made with other options (--cv, --numerics, --cutoff, --embeddings, "
              f"--dtype, --readout, --token-type-ids) are not shown", file=sys.stderr)
    return list(found.values())


def main(argv=None):
    args = parse_args(argv)
    import data
    import models
    banner, info, loaded, names = "", dict(models.MODELS), {}, []
    try:
        out = check_out(args.out, args.force)
        _writable(args.cache_dir, "--cache-dir")
        dirs = {}
        if args.demo:
            args.cache_dir = str(Path(args.cache_dir, "demo"))
            loaded, info = demo(args.cache_dir)
            names, args.datasets = list(info), list(loaded)
            args.wehbe_features = "context"     # data.synthetic plants its signal from extract()
            banner = DEMO_BANNER
        elif not args.report:
            models.check_device(args.device)
            wanted = [m for m, i in info.items() if not i.appendix] if args.all else \
                args.models or ["t5-small", "flan-t5-small"]
            resolved = [models.resolve(m) for m in wanted]
            info |= {i.name: i for i in resolved if i.name not in info}
            names = [i.name for i in resolved]
            dirs = model_dirs(args, names)
            loaded = load_datasets(args)
        records = []
        for model in names:
            for dataset in args.datasets:
                rec = run_one(info[model], dataset, loaded[dataset], args.cache_dir,
                              extraction_of(args, dirs.get(model)), scoring_of(args))
                # the demo's responses are planted: a real dataset's noise ceiling says nothing about them
                ceiling = "" if args.demo else f", ceiling {rec['ceiling']:.3f}"
                print(f"{model} | {dataset}: {rec['score']:.4f} (MAD over subjects {rec['mad']:.4f}, "
                      f"layer {rec['best_layer_name']}{ceiling})"
                      f"{' [cached]' * bool(rec.get('cached'))}", flush=True)
                records.append(rec)
        if args.report:
            records = report_records(args)
            if not records:
                raise ValueError(f"no score records under {Path(args.cache_dir, 'scores')} for these options "
                                 f"(--cv {args.cv}, --numerics {args.numerics}, --dtype {args.dtype}, "
                                 f"--readout {args.readout}, ...): run some models first, pass the options "
                                 f"they were run with, or point --cache-dir at their cache. Nothing was written.")
            for rec in records:      # models outside the registry: what their records say
                info.setdefault(rec["model"], models.ModelInfo(
                    rec["model"], rec["model"], rec.get("family", ""), rec.get("params") or float("nan"), 0,
                    rec.get("base")))
                if rec["data"].get("checksum") == "synthetic":      # the demo's planted responses
                    banner = DEMO_BANNER
    except (ValueError, OSError, data.DownloadError) as err:
        raise SystemExit(f"brainalign: {err}") from err
    except RuntimeError as err:
        if "out of memory" not in str(err).lower():
            raise
        raise SystemExit("brainalign: out of memory. Try --dtype float16 or bfloat16, a smaller "
                         "--batch-size, or --device map (needs accelerate) to spread a large model "
                         "over several GPUs.") from err
    behaviour = {r["model"]: r for r in records if r["dataset"] in BEHAVIOUR_DATASETS}  # never in the Average
    scores, layers, ceilings = collect([r for r in records if r["dataset"] not in BEHAVIOUR_DATASETS],
                                       args.normalize, args.layer_choice)
    all_tables = tables(scores, layers, ceilings, info, args.normalize, behaviour)
    config = {"args": vars(args), "models": names, "split_seed": 1, "bootstrap_seed": 0,
              "pipeline": PIPELINE_VERSION, "scoring": scoring_of(args),
              "records": {f"{r['model']} | {r['dataset']}": r["key"] for r in records},
              "versions": {m: getattr(sys.modules.get(m), "__version__", None)
                           for m in ("numpy", "scipy", "torch", "transformers", "h5py")}
              | {"python": sys.version.split()[0]}}
    write_report(out, all_tables, config, banner)
    brain = [r for r in records if r["dataset"] not in BEHAVIOUR_DATASETS]
    figures(out, brain, scores, info, list(all_tables.values())[2], args.normalize)
    return all_tables


def _bar(it, progress, desc):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, leave=False)


if __name__ == "__main__":
    main()
