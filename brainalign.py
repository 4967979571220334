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
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

# -----------------------------------------------------------------------------
# cross-validation splits: lists of (train, test) index arrays


def shuffle_splits(n, n_splits=10, train_size=0.9, seed=1):
    """Brain-Score's splits: sklearn ShuffleSplit(n_splits, train_size, random_state=seed), index for
    index. One RandomState draws a fresh permutation per split; the test set is its head."""
    n_train = int(np.floor(train_size * n))
    n_test = n - n_train
    if n_train < 2 or n_test < 2:
        raise ValueError(f"too few stimuli for {train_size:.0%} shuffle splits: n={n} gives "
                         f"{n_train} train / {n_test} test; need at least 2 of each")
    rng = np.random.RandomState(seed)
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        splits.append((perm[n_test:n_test + n_train], perm[:n_test]))
    return _checked(splits, n)


def kfold_splits(n, n_folds=4, gap=0, groups=None):
    """Contiguous folds (floor(n / n_folds) samples each, the last takes the rest), or one fold per
    group label (e.g. story, fMRI run) when `groups` (n,) is given. `gap` samples are dropped at each
    train/test boundary, as Toneva & Wehbe (2019) do for fMRI time series: a test block at the start
    drops the first `gap` training samples after it, one at the end the last `gap` before it, and a
    block in the middle gives up `gap` samples at each of its own ends."""
    if groups is None:
        size = n // n_folds
        if size < 1:
            raise ValueError(f"too few samples for {n_folds} folds: n={n}")
        bounds = [(k * size, (k + 1) * size if k < n_folds - 1 else n) for k in range(n_folds)]
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
        labels = list(dict.fromkeys(groups.tolist()))    # in order of first appearance
        if len(labels) < 2:
            raise ValueError("group k-fold needs at least 2 distinct group labels")
        bounds = []
        for label in labels:
            idx = np.flatnonzero(groups == label)
            if gap and idx[-1] - idx[0] + 1 != len(idx):
                raise ValueError(f"group {label!r} is not one contiguous block; gap>0 needs blocks")
            bounds.append((idx[0], idx[-1] + 1) if gap else idx)
    splits = []
    everything = np.arange(n)
    for b in bounds:
        if isinstance(b, np.ndarray):                    # non-contiguous group, no gap
            test = b
            train = np.setdiff1d(everything, test)
        else:
            lo, hi = b
            if lo == 0:
                test, train = everything[lo:hi], everything[hi + gap:]
            elif hi == n:
                test, train = everything[lo:hi], everything[:max(lo - gap, 0)]
            else:
                test = everything[lo + gap:hi - gap]
                train = np.concatenate([everything[:lo], everything[hi:]])
        splits.append((train, test))
    return _checked(splits, n)


def _checked(splits, n):
    for i, (train, test) in enumerate(splits):
        if len(train) < 2 or len(test) < 2:
            raise ValueError(f"split {i} has {len(train)} train / {len(test)} test samples (n={n}); "
                             "use fewer folds or a smaller gap")
        assert np.intersect1d(train, test).size == 0, "train and test overlap"
    return splits


# -----------------------------------------------------------------------------
# the encoder: ordinary least squares with intercept, minimum norm, as sklearn LinearRegression


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
    A Gram matrix squares the singular values, so it resolves them only down to ~1e-7 s_max; for a
    smaller cutoff (old sklearn used machine epsilon) we take the SVD of Xc itself."""
    mean = x_train.mean(axis=0)
    a, b = x_train - mean, x_test - mean                 # (n_train, p), (n_test, p)
    if cond < 1e-7:
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        k = s > cond * s[0]
        return ((b @ vt[k].T) / s[k]) @ u[:, k].T
    if a.shape[0] <= a.shape[1]:                         # dual: a = U S V^T, pinv(a) = a^T U S^-2 U^T
        w, u = np.linalg.eigh(a @ a.T)                   # w = s^2, ascending; centring makes w[0] ~ 0
        k = w > cond ** 2 * w[-1]
        return ((b @ a.T) @ u[:, k] / w[k]) @ u[:, k].T
    g = a.T @ a                                          # primal: pinv(a) = pinv(a^T a) a^T
    w = np.linalg.eigvalsh(g)
    if w[0] > cond ** 2 * w[-1]:
        # full rank at this cutoff, so the minimum-norm solution is the only one: a Cholesky solve
        # gives it for a third of the cost of the eigenvectors (what makes many-stimuli data fast)
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(g), b.T).T @ a.T
    w, v = np.linalg.eigh(g)
    k = w > cond ** 2 * w[-1]
    return ((b @ v[:, k]) / w[k]) @ (a @ v[:, k]).T


def predict(x_train, y_train, x_test, cond=1e-6):
    """Least-squares predictions (n_test, n_targets) for x_test after fitting on (x_train, y_train)."""
    h = hat_matrix(x_train, x_test, cond)
    y_mean = y_train.mean(axis=0)
    # H @ (Y - 1 ybar) + 1 ybar  ==  H @ Y + (1 - H 1) ybar: no centred copy of Y needed
    return h @ y_train + np.outer(1.0 - h.sum(axis=1), y_mean)


def pearson(a, b):
    """Pearson r between matching columns of a and b, both (n, n_targets) -> (n_targets,).
    A column with zero variance on either side has no defined r: it scores 0 (and warns), so it can
    neither poison a median with NaN nor inflate it."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    ok = den > 0
    if not ok.all():
        warnings.warn(f"{(~ok).sum()} constant column(s) have no Pearson r; scored as 0")
    return np.where(ok, (a * b).sum(axis=0) / np.where(ok, den, 1.0), 0.0)


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


def cross_validate(features, responses, splits, cond=1e-6):
    """Pearson r of every target on every test split -> (n_splits, n_targets).
    features (n_stimuli, n_features), responses (n_stimuli, n_targets)."""
    x, y = _check(features, responses)
    r = np.empty((len(splits), y.shape[1]))
    for i, (train, test) in enumerate(splits):
        r[i] = pearson(predict(x[train], y[train], x[test], cond), y[test])
    return r


def summarize(r, subjects=None):
    """Brain-Score's aggregation of r (n_splits, n_targets): median over targets, mean over splits."""
    subjects = np.zeros(r.shape[1], dtype=int) if subjects is None else np.asarray(subjects)
    if subjects.shape != (r.shape[1],):
        raise ValueError(f"subjects has shape {subjects.shape}, expected ({r.shape[1]},)")
    per_split = np.median(r, axis=1)
    per_subject = {str(s): float(np.median(r[:, subjects == s], axis=1).mean())
                   for s in dict.fromkeys(subjects.tolist())}
    subj = np.array(list(per_subject.values()))
    return Score(score=float(per_split.mean()), per_split=per_split, per_target=r.mean(axis=0),
                 per_subject=per_subject, mad=float(np.median(np.abs(subj - np.median(subj)))))


def score(features, responses, splits, subjects=None, cond=1e-6):
    """Cross-validated linear predictivity of responses (n_stimuli, n_targets) from features
    (n_stimuli, n_features) -> Score."""
    return summarize(cross_validate(features, responses, splits, cond), subjects)


@dataclass
class LayerScores:
    scores: np.ndarray        # (n_layers,) score of every layer
    best_layer: int           # index of the best layer (the paper keeps it per dataset)
    best: Score               # the full Score of that layer


def score_layers(layers, responses, splits, subjects=None, cond=1e-6, progress=None):
    """Score every layer of layers (n_stimuli, n_layers, n_features) -> LayerScores."""
    layers = np.asarray(layers)
    if layers.ndim != 3 or layers.shape[1] == 0:
        raise ValueError(f"layers must be (n_stimuli, n_layers, n_features) with at least one layer; "
                         f"got shape {layers.shape}")
    results = [score(layers[:, i], responses, splits, subjects, cond)
               for i in _bar(range(layers.shape[1]), progress, "layers")]
    scores = np.array([s.score for s in results])
    best = int(np.argmax(scores))
    return LayerScores(scores=scores, best_layer=best, best=results[best])


def normalize(value, ceiling):
    """Ceiling-normalised score: value / ceiling, clipped to [0, 1]."""
    if not ceiling > 0:
        raise ValueError(f"ceiling must be positive, got {ceiling}")
    return float(np.clip(value / ceiling, 0.0, 1.0))


def _bar(it, progress, desc):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, leave=False)
