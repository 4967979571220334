"""
brainalign: how well a language model's layers linearly predict human brain responses to the same
text (brain alignment), and the instruction-tuning comparison of Aw et al. (COLM 2024).

Sections 1-4 are the whole method, numpy and scipy only, and can be copied alone: Brain-Score's
splits -> least-squares fit -> Pearson r per target -> median over targets, mean over splits ->
every layer -> the best layer. Then the paper's pipelines for Wehbe2014 (Toneva & Wehbe's ridge)
and Futrell2018 (surprisal against reading times), one (model, dataset) scored and cached, the
tables, the figures and the command line. data.py loads the datasets, models.py the activations.
The defaults are what the authors' code computed; --brainscore gives Brain-Score 2.3.0's instead.
Left out: xarray, sklearn, Brain-Score's run-time ceiling estimation, ROI masks.

    python brainalign.py --all       # the paper's 25 models; rerunning it over a full cache = the report
    python tests/demo.py             # offline: tiny random models, planted responses
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
# 1. cross-validation splits: lists of (train, test) index arrays


def shuffle_splits(n, n_splits=10, train_size=0.9, seed=1):
    """Brain-Score's splits: sklearn ShuffleSplit(n_splits, train_size, random_state=seed), index for
    index. One RandomState draws a fresh permutation per split; the test set is its head."""
    n_train = int(np.floor(train_size * n))
    rng = np.random.RandomState(seed)
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        splits.append((perm[n - n_train:], perm[:n - n_train]))
    return check_splits(splits, n)


def kfold_splits(n, n_folds, gap=0):
    """Contiguous folds (floor(n / n_folds) samples each, the last takes the rest), with `gap` samples
    dropped at each train/test boundary as Toneva & Wehbe (2019) do for fMRI time series: the first
    fold drops the first `gap` training samples after it, the last fold the last `gap` before it, a
    middle fold gives up `gap` samples at each end of its own test block."""
    for name, value, least in (("n", n, 1), ("n_folds", n_folds, 1), ("gap", gap, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"kfold_splits: {name} must be a whole number >= {least}, got {value!r}")
    if n // n_folds < 1:
        raise ValueError(f"too few samples for {n_folds} folds: n={n}")
    edges = [k * (n // n_folds) for k in range(n_folds)] + [n]
    splits = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        train, test = np.r_[0:lo, hi:n], np.arange(lo, hi)
        if gap and k == 0:
            train = train[gap:]
        elif gap and k == n_folds - 1:
            train = train[:-gap]
        elif gap:
            test = test[gap:-gap]
        splits.append((train, test))
    return check_splits(splits, n)


def check_splits(splits, n):
    """The splits, if every (train, test) pair indexes n samples sensibly: integer indices in [0, n),
    none twice, train and test disjoint (an overlap predicts stimuli the fit has seen), at least 2
    train and 3 test samples (with 2, every Pearson r is +-1); else a ValueError that says which."""
    if len(splits) == 0:
        raise ValueError("no splits given")
    for i, (train, test) in enumerate(splits):
        for name, idx in (("train", np.asarray(train)), ("test", np.asarray(test))):
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"split {i}: {name} must be a 1-D array of integer indices (got dtype "
                                 f"{idx.dtype}, shape {idx.shape}); use np.flatnonzero on a mask")
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"split {i}: {name} indices must lie in [0, {n}); got {idx.min()}..{idx.max()}")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"split {i}: {name} lists a stimulus more than once")
        if shared := np.intersect1d(train, test).size:
            raise ValueError(f"split {i}: train and test share {shared} stimuli; a test stimulus must not be fit")
        if len(train) < 2 or len(test) < 3:
            raise ValueError(f"split {i} has {len(train)} train / {len(test)} test samples (n={n}); need at "
                             "least 2 train and 3 test (with 2, every r is +-1): use fewer folds, a smaller "
                             "gap or more stimuli")
    return splits


# -----------------------------------------------------------------------------
# 2. the fit: ordinary least squares with intercept, minimum norm (sklearn LinearRegression)

# numerics -> (dtype of the fit, relative singular-value cutoff of scipy.linalg.lstsq)
NUMERICS = {
    # the paper: Brain-Score 2023 passed float32 activations to sklearn <= 1.5 LinearRegression, which
    # cast y to X's dtype, centred in float32 and called lstsq(cond=None): cutoff = float32 eps
    # (brain-score/language 1041be4 metrics/linear_predictivity/metric.py; sklearn 1.5 linear_model/_base.py)
    "brainscore-2023": (np.float32, None),
    # Brain-Score 2.3.0 with today's sklearn (>= 1.9 passes cond=1e-6), in float64
    "float64": (np.float64, 1e-6),
}


def fit_predict(x_train, y_train, x_test, numerics="brainscore-2023"):
    """Least-squares predictions (n_test, n_targets) for x_test (n_test, p) after fitting
    y_train (n_train, n_targets) on x_train (n_train, p) with an intercept: centre both on the
    training means, take lstsq's minimum-norm weights, predict. Step for step what sklearn's
    LinearRegression().fit(x_train, y_train).predict(x_test) computes (_preprocess_data, lstsq,
    _set_intercept), in the dtype and cutoff of NUMERICS[numerics]."""
    dtype, cond = NUMERICS[numerics]
    x, y = np.asarray(x_train, dtype), np.asarray(y_train, dtype)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    w = scipy.linalg.lstsq(x - x_mean, y - y_mean, cond=cond)[0]          # (p, n_targets)
    return np.asarray(x_test, dtype) @ w + (y_mean - x_mean @ w)


# -----------------------------------------------------------------------------
# 3. Pearson r per target and Brain-Score's aggregation


def pearson(a, b):
    """Pearson r between matching columns of a and b, both (n, n_targets) -> (n_targets,), in float64.
    A column constant on either side, exactly or up to rounding, has no r: it scores 0 (with a
    warning), so it neither poisons a median with NaN nor inflates it. Constant up to rounding: the
    centred values of a constant column are the rounding error of its mean, at most n * eps * max|x|
    each (a sum of n terms), so their norm is at most sqrt(n) times that; 0.1 or 1000/3 repeated
    centre to ~1e-17 and ~1e-14, not 0, and would correlate at |r| ~ 0.9 with the prediction's noise."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    norm_a, norm_b = np.sqrt((ac * ac).sum(axis=0)), np.sqrt((bc * bc).sum(axis=0))
    bound = len(a) ** 1.5 * np.finfo(np.float64).eps                 # sqrt(n) * n * eps, times max|x|
    ok = (norm_a > bound * np.abs(a).max(axis=0, initial=0.0)) & (norm_b > bound * np.abs(b).max(axis=0, initial=0.0))
    if not ok.all():
        warnings.warn(f"{(~ok).sum()} constant column(s) have no Pearson r; scored as 0")
    return np.where(ok, (ac * bc).sum(axis=0) / np.where(ok, norm_a * norm_b, 1.0), 0.0)


@dataclass
class Score:
    score: float              # the dataset's aggregate (Brain-Score: mean over splits of the median r)
    per_split: np.ndarray     # (n_splits,) median r over all targets in each split
    per_target: np.ndarray    # (n_targets,) r of each target, averaged over splits
    per_subject: dict         # subject -> its aggregate over its own targets
    mad: float                # median absolute deviation of per_subject (the paper's error bars)


def _as_matrix(name, x):
    """x as a finite real (n, k) array, or a ValueError that says what is wrong with it."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub" or x.ndim != 2:
        raise ValueError(f"{name} must hold real numbers and be 2-D (n_stimuli, n_columns), got dtype "
                         f"{x.dtype}, shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf; drop or impute those entries first")
    return x


def cross_validate(features, responses, splits, numerics="brainscore-2023"):
    """Pearson r of every target on every test split -> (n_splits, n_targets): per split, the fit of
    fit_predict on the training rows, r between its test predictions and the test responses.
    features (n_stimuli, n_features), responses (n_stimuli, n_targets), splits as shuffle_splits.
    The rows of each split go in sorted order (Brain-Score's fit and correlation see the split's
    stimuli after a sort; the order changes only float32 rounding)."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {', '.join(NUMERICS)}; got {numerics!r}")
    x, y = _as_matrix("features", features), _as_matrix("responses", responses)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"features have {x.shape[0]} stimuli but responses have {y.shape[0]}; rows "
                         "must be matched stimulus by stimulus")
    check_splits(splits, len(x))
    if min(len(test) for _, test in splits) < 10:
        warnings.warn("a split tests fewer than 10 stimuli: its Pearson r are very noisy")
    r = []
    for train, test in splits:
        train, test = np.sort(train), np.sort(test)
        r.append(pearson(fit_predict(x[train], y[train], x[test], numerics), y[test]))
    return np.stack(r)


def _mad(values):
    values = np.asarray(values, dtype=np.float64)
    return float(np.median(np.abs(values - np.median(values))))


def summarize(r, subjects=None):
    """Brain-Score's aggregation of r (n_splits, n_targets) -> Score: the median over all targets
    pooled across subjects, then the mean over splits; per subject the same over its own targets."""
    subjects = np.zeros(r.shape[1], dtype=int) if subjects is None else np.asarray(subjects)
    if subjects.shape != (r.shape[1],):
        raise ValueError(f"subjects has shape {subjects.shape}, expected ({r.shape[1]},)")
    per_split = np.median(r, axis=1)
    per_subject = {str(s): float(np.median(r[:, subjects == s], axis=1).mean())
                   for s in dict.fromkeys(subjects.tolist())}
    return Score(score=float(per_split.mean()), per_split=per_split, per_target=r.mean(axis=0),
                 per_subject=per_subject, mad=_mad(list(per_subject.values())))


# -----------------------------------------------------------------------------
# 4. every layer, and the one layer kept


def score_layers(acts, responses, subjects=None, splits=None, numerics="brainscore-2023", progress=False):
    """Score every layer of acts (n_stimuli, n_layers, n_features) -> [Score], one per layer.
    splits: Brain-Score's 10 shuffle splits unless given."""
    acts = np.asarray(acts)
    if acts.ndim != 3 or acts.shape[1] == 0:
        raise ValueError(f"acts must be (n_stimuli, n_layers, n_features) with at least one layer; "
                         f"got shape {acts.shape}")
    splits = shuffle_splits(len(acts)) if splits is None else splits
    return [summarize(cross_validate(acts[:, i], responses, splits, numerics), subjects)
            for i in _bar(range(acts.shape[1]), progress, "layers")]


def best_layer(scores, layer_names, embeddings=False):
    """The one layer kept per model and dataset -> (its index, the score of every layer (n_layers,)).
    scores: (n_parts, n_layers) floats, one row per part of the dataset (Pereira2018: its two
    experiments), averaged layer by layer first (taking each part's own best layer would be biased
    upward). The embedding outputs are candidates only if `embeddings`: the paper counts blocks."""
    mean = np.atleast_2d(np.asarray(scores, dtype=np.float64)).mean(axis=0)         # (n_layers,)
    if len(layer_names) != len(mean):
        raise ValueError(f"{len(mean)} layer scores but {len(layer_names)} layer names")
    candidate = np.array([embeddings or not name.endswith("embeddings") for name in layer_names])
    if not (candidate & np.isfinite(mean)).any():
        raise ValueError(f"no candidate layer with a finite score among {list(layer_names)}")
    values = np.where(candidate & np.isfinite(mean), mean, -np.inf)
    return int(np.argmax(values)), mean


def _bar(items, progress, desc):
    if not progress:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, leave=False)


# -----------------------------------------------------------------------------
# 5. the paper's Wehbe2014 pipeline: Toneva & Wehbe's word features -> TR features -> per-voxel ridge
# (github mtoneva/brain_language_nlp 0f519a0 utils/utils.py, utils/ridge_tools.py, as Aw & Toneva
# reuse it in awwkl/brain_language_summarization f341823)

RIDGE_PENALTIES = 10.0 ** np.arange(-6, 10)      # cross_val_ridge's lambdas, 1e-6 .. 1e9


def zscore(x):
    """(x - mean) / std of every column (axis 0), in float64; a constant column becomes 0, not NaN."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def top_components(x, k):
    """PCA as sklearn PCA(k).fit(x) -> (mean (p,), components (k, p)); large inputs by ARPACK (a few
    dozen matrix-vector products instead of the full SVD of a 3,700 x 4,096 matrix)."""
    mean = x.mean(axis=0)
    xc = x - mean
    if min(xc.shape) <= 500:
        return mean, np.linalg.svd(xc, full_matrices=False)[2][:k]
    from scipy.sparse.linalg import svds
    _, s, vt = svds(xc, k=k, v0=np.ones(min(xc.shape)), random_state=0)
    return mean, vt[np.argsort(s)[::-1]]


def tr_features(word_features, ds, train, n_components=10, delays=(1, 2, 3, 4)):
    """Features (n_samples, n_components * len(delays)) of the kept TRs for one fold: PCA fitted on
    the words shown during the training TRs, the words of each TR averaged (a TR without words gets
    0), the previous 1-4 TRs concatenated (the haemodynamic delay), z-scored within each run.
    word_features (n_words, n_features); ds: a time-series data.Dataset; train: sample indices."""
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


def inner_folds(n, n_splits=10):
    """sklearn KFold(n_splits), unshuffled: contiguous blocks, the first n % n_splits one longer."""
    if n < 2 * n_splits:
        raise ValueError(f"too few training samples for {n_splits} inner folds: n={n}")
    sizes = np.full(n_splits, n // n_splits) + (np.arange(n_splits) < n % n_splits)
    edges = np.r_[0, np.cumsum(sizes)]
    return [(np.r_[0:lo, hi:n], np.arange(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def r2_cost(pred, real, var):
    """1 - R^2 per column, R^2 as ridge_tools.R2: 1 - MSE / var (var = real.var(axis=0)), through
    nan_to_num: a constant column costs 1 if predicted exactly (0/0), else ~1.8e308, for any penalty."""
    resid = real - pred
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - (resid * resid).mean(axis=0) / var
    return 1.0 - np.nan_to_num(r2)


def ridge_cv(x, y, penalties=RIDGE_PENALTIES, n_splits=10):
    """Ridge without intercept, one penalty per target chosen by inner cross-validation ->
    (weights (p, n_targets), chosen penalty (n_targets,)). x (n, p) and y (n, n_targets): the
    z-scored training fold. Equals cross_val_ridge(x, y, n_splits, penalties, method='plain')
    (mtoneva/brain_language_nlp 0f519a0 utils/ridge_tools.py): unshuffled KFold(n_splits); per target
    the penalty with the least summed (1 - R^2) over the validation blocks (the first on ties); then
    the ridge weights refitted on all of x with that penalty.

    Why it is cheap: the ridge solution for penalty a is V diag(s / (s^2 + a)) U^T y with x = U S V^T,
    so one thin SVD per inner fold serves every penalty and every target. With A = x_val V and
    B = U^T y (once), penalty a predicts (A * d_a) @ B: one (n_val, p) x (p, n_targets) product, where
    Toneva's code inverts a Gram matrix and forms x^T y anew for each penalty."""
    x, y = _as_matrix("x", x).astype(np.float64), _as_matrix("y", y).astype(np.float64)
    penalties = np.asarray(penalties, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be (n, p) and y (n, n_targets) with the same n; got {x.shape}, {y.shape}")
    if penalties.ndim != 1 or penalties.size == 0 or not (penalties > 0).all():
        raise ValueError(f"penalties must be a non-empty 1-D array of positive values, got {penalties!r}")
    cost = np.zeros((penalties.size, y.shape[1]))                    # (n_penalties, n_targets)
    with np.errstate(over="ignore"):                                 # ~1.8e308 + ~1.8e308 = inf, as r_cv
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


def cross_validate_time_series(word_features, ds, chunk=20000):
    """Pearson r of every target on the test folds concatenated -> (r (n_targets,), per-fold r
    (n_folds, n_targets)). Per fold as run_class_time_CV_fmri_crossval_ridge (0f519a0 utils/utils.py):
    TR features; train and test features and responses z-scored separately (the test fold on its own
    statistics: Toneva's choice); ridge_cv. The z-scored test folds and predictions are stacked and
    correlated, as f341823 all_scripts/plot_pearson.py does. Targets go `chunk` at a time."""
    splits = kfold_splits(ds.responses.shape[0], ds.n_folds, ds.gap)
    y = ds.responses                                                  # (n_samples, n_targets) float32
    feats = [tr_features(word_features, ds, train) for train, _ in splits]   # (n_samples, 40) each
    r, per_fold = np.empty(y.shape[1]), np.empty((len(splits), y.shape[1]))
    for lo in range(0, y.shape[1], chunk):
        cols = slice(lo, lo + chunk)
        preds, reals = [], []
        for i, (x, (train, test)) in enumerate(zip(feats, splits)):
            weights = ridge_cv(zscore(x[train]), zscore(y[train, cols]))[0]
            preds.append(zscore(x[test]) @ weights)
            reals.append(zscore(y[test, cols]))
            per_fold[i, cols] = pearson(preds[-1], reals[-1])
        r[cols] = pearson(np.concatenate(preds), np.concatenate(reals))
    return r, per_fold


def summarize_time_series(r, per_fold, subjects):
    """Aw & Toneva's aggregation of r (n_targets,) -> Score: the mean over each subject's voxels, then
    over subjects (plot_pearson.py); per_split: each fold's mean r, for inspection only."""
    subjects = np.asarray(subjects)
    if subjects.shape != r.shape:
        raise ValueError(f"subjects has shape {subjects.shape}, expected {r.shape}")
    per_subject = {str(s): float(r[subjects == s].mean()) for s in dict.fromkeys(subjects.tolist())}
    return Score(score=float(np.mean(list(per_subject.values()))), per_split=per_fold.mean(axis=1),
                 per_target=r, per_subject=per_subject, mad=_mad(list(per_subject.values())))


# -----------------------------------------------------------------------------
# 6. the paper's Futrell2018 (behaviour): surprisal against self-paced reading times, no fit
# (Brain-Score's Futrell2018-pearsonr: brain-score/language 1041be4 benchmarks/futrell2018/benchmark.py)


def mean_reader(times):
    """Mean over subjects of times (n_words, n_subjects) -> (n_words,), skipping NaN (not read) as
    xarray's mean does. A word nobody read is an error."""
    read = ~np.isnan(np.asarray(times, dtype=np.float64))
    if not read.any(axis=1).all():
        raise ValueError(f"{int((~read.any(axis=1)).sum())} words (the first is word "
                         f"{int(np.argmin(read.any(axis=1)))}) have no reading time from any subject")
    return np.where(read, times, 0.0).sum(axis=1) / read.sum(axis=1)


def reading_time_r(surprisal, times, word_in_sentence):
    """Signed Pearson r between surprisal (n_words,) and the mean reader's reading times (times:
    (n_words, n_subjects)) over the words not first in their sentence (word_in_sentence != 1), as
    the benchmark scores them. Brain-Score's score is |r| (1041be4 metrics/pearson_correlation)."""
    surprisal = np.asarray(surprisal, dtype=np.float64)
    word_in_sentence = np.asarray(word_in_sentence)
    if surprisal.shape != (len(times),) or word_in_sentence.shape != surprisal.shape:
        raise ValueError(f"surprisal {surprisal.shape} and word_in_sentence {word_in_sentence.shape} must "
                         f"both be ({len(times)},), one value per word of times {np.shape(times)}")
    keep, times = word_in_sentence != 1, np.asarray(times, dtype=np.float64)
    for missing, what in ((keep & ~np.isfinite(surprisal), "no surprisal (NaN or inf)"),
                          (keep & np.isnan(times).all(axis=1), "no reading time from any subject")):
        if missing.any():
            raise ValueError(f"{int(missing.sum())} scored words (the first is word {int(np.argmax(missing))}) "
                             f"have {what}; only first words of sentences are left out")
    return float(pearson(surprisal[keep, None], mean_reader(times[keep])[:, None])[0])


def split_half_ceiling(times, n_splits=10, seed=0):
    """Brain-Score's SplitHalvesConsistency(num_splits=10, split_coordinate='subject_id'): per split,
    |r| between the mean readers of two random halves of the subjects, Spearman-Brown corrected
    (2c / (1 + c)), the median -> (ceiling, corrected (n_splits,), uncorrected (n_splits,))."""
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[1]
    if n < 2:
        raise ValueError(f"a split-half ceiling needs at least 2 subjects, got {n}")
    rng = np.random.RandomState(seed)
    uncorrected = np.empty(n_splits)
    for k in range(n_splits):          # choice(subject_ids, n // 2, replace=False), as Brain-Score
        half = np.isin(np.arange(n), rng.choice(n, n // 2, replace=False))
        try:
            a, b = mean_reader(times[:, half]), mean_reader(times[:, ~half])
        except ValueError as err:
            raise ValueError(f"split {k} of the subjects for the ceiling: {err} in one half") from None
        uncorrected[k] = abs(pearson(a[:, None], b[:, None])[0])
    corrected = 2 * uncorrected / (1 + uncorrected)
    return float(np.median(corrected)), corrected, uncorrected


def behaviour_score(surprisal, rt):
    """Futrell2018-pearsonr of one model's surprisal (n_words,) on a data.ReadingTimes -> dict: the
    score |r|, the signed r, and the split-half ceiling computed from the data with its splits."""
    r = reading_time_r(surprisal, rt.times, rt.word_in_sentence)
    ceiling, corrected, uncorrected = split_half_ceiling(rt.times)
    if not ceiling > 0:
        raise ValueError(f"the reading times give a split-half ceiling of {ceiling}: the subjects do not "
                         "agree at all, so the file is not usable reading-time data")
    return {"score": abs(r), "r": r, "ceiling": ceiling, "ceiling_splits": corrected.tolist(),
            "ceiling_uncorrected": uncorrected.tolist(), "n_words": int(np.sum(rt.word_in_sentence != 1))}


# -----------------------------------------------------------------------------
# 7. one (model, dataset): activations (cached by models.py) -> every layer scored -> one record, kept
# as JSON under a key of everything that produced it. The key needs no data and no model, so a
# rerun over a complete cache renders the report without loading either.

PIPELINE_VERSION = 3      # bump when the scoring semantics change: older records are then recomputed
PAPER_DATASETS = ("Pereira2018", "Blank2014", "Wehbe2014")      # the paper's Average is their mean


@dataclass(frozen=True)
class Settings:
    brainscore: bool = False        # Brain-Score 2.3.0's own semantics instead of the authors' code
    layer_choice: str = "dataset"   # "dataset": each dataset's best layer; "pereira": Pereira2018's
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 8
    cache_dir: str = str(Path("~/.cache/brainalign").expanduser())
    data_dir: str | None = None
    data_files: tuple = ()          # ((dataset, (path, ...)), ...) read by hand, without the checksum

    @property
    def numerics(self):
        return "float64" if self.brainscore else "brainscore-2023"


def _hash(obj):
    import hashlib
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_place(info, dataset, settings, parts=None):
    """Where the record of info (a models.ModelInfo) on `dataset` lives -> (path, key, what produced
    it). The data are known by their registered sha1s (or those of files given by hand), parts given
    in memory by a hash of their contents; the model by models.identity."""
    import data
    import models
    if parts is None:
        data_id = data.fingerprint(dataset, settings.data_dir, files=dict(settings.data_files).get(dataset))
    else:
        contents = [(vars(p).get("texts") or p.words, getattr(p, "responses", None), getattr(p, "times", None))
                    for p in parts]
        data_id = {"checksum": parts[0].checksum, "contents": _hash(repr(contents))}
    produced = {"pipeline": PIPELINE_VERSION, "dataset": dataset, "data": data_id, "brainscore": settings.brainscore,
                "model": models.identity(info, dtype=settings.dtype, brainscore=settings.brainscore)}
    folder = "".join(c if c.isalnum() or c in "._-" else "-" for c in info.name)
    return Path(settings.cache_dir, "scores", folder, f"{dataset}.{_hash(produced)}.json"), _hash(produced), produced


def read_record(path, key, model, dataset):
    """The record at path if it is whole, of (key, model, dataset) and its scores in range; else None,
    with a warning that names the file and why, the file moved aside to be recomputed."""
    if not Path(path).exists():
        return None
    try:
        rec = json.loads(Path(path).read_text())
        if (rec["key"], rec["pipeline"], rec["model"], rec["dataset"]) != (key, PIPELINE_VERSION, model, dataset):
            raise ValueError(f"it is the record of {rec['model']} on {rec['dataset']}, pipeline {rec['pipeline']}")
        if not all(type(v) in (int, float) and -1 <= v <= 1
                   for v in [rec["score"]] + [v for p in rec["parts"].values() for v in p["layers"]]):
            raise ValueError("a score is not a number in [-1, 1]")
        if rec["parts"] and not 0 <= rec["best_layer"] < len(rec["layer_names"]) == len(rec["layers"]):
            raise ValueError(f"its best layer {rec['best_layer']} is not one of its {len(rec['layers'])}")
        return rec
    except (OSError, ValueError, KeyError, TypeError) as err:
        aside = _unique(Path(f"{path}.corrupt"))
        os.replace(path, aside)
        warnings.warn(f"score record {path} skipped ({err}); moved aside to {aside.name}, recomputing")


def run_one(info, parts, settings):
    """Score one model on one dataset's parts (data.Dataset, or one data.ReadingTimes) -> the
    record's results: every layer's score per part, the layer kept and its score."""
    import data
    import models
    source = info.name if info.name in models.MODELS else info.hub_id     # registry key, path or hub id
    options = {"device": settings.device, "dtype": settings.dtype, "batch_size": settings.batch_size,
               "cache_dir": settings.cache_dir}
    if isinstance(parts[0], data.ReadingTimes):                            # behaviour: no layers, no fit
        return {"kind": "behaviour", "parts": {},
                **behaviour_score(models.surprisal(source, parts[0].words, **options), parts[0])}
    names, results = models.layer_names(source, brainscore=settings.brainscore), {}
    for ds in parts:
        if ds.word_tr is not None:              # a time series (Wehbe2014): Toneva & Wehbe's pipeline
            acts = models.extract_words(source, ds.texts, window=ds.window, brainscore=settings.brainscore,
                                        **options)
            per_layer = [summarize_time_series(*cross_validate_time_series(acts[:, i], ds), ds.subjects)
                         for i in _bar(range(acts.shape[1]), True, "layers")]
        else:
            acts = models.extract(source, ds.texts, ds.groups, brainscore=settings.brainscore, **options)
            per_layer = score_layers(acts, ds.responses, ds.subjects, numerics=settings.numerics, progress=True)
        names = names[:acts.shape[1]]            # T5's word features: its encoder's layers only
        results[ds.name] = {"layers": [s.score for s in per_layer], "mad": [s.mad for s in per_layer],
                            "per_subject": [s.per_subject for s in per_layer]}
    best, mean = best_layer([p["layers"] for p in results.values()], names, embeddings=settings.brainscore)
    return {"kind": "brain" if parts[0].word_tr is None else "time series", "layer_names": names,
            "parts": results, "layers": mean.tolist(), "best_layer": best, "score": float(mean[best]),
            "mad": float(np.mean([p["mad"][best] for p in results.values()]))}


def write_atomic(path, text):
    """Write text to path through a temporary file, flushed to disk, and a rename: never a
    half-written file, even after a crash; a link at path is replaced, never followed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _unique(path):
    """path, else path.1, path.2, ...: the first name not taken (nothing moved aside is overwritten)."""
    k, candidate = 0, Path(path)
    while candidate.exists():
        k, candidate = k + 1, Path(f"{path}.{k + 1}")
    return candidate


def run(infos, datasets, settings, out, loaded=None):
    """Every model on every dataset, each (model, dataset) read from its record or scored and then
    recorded; then the tables and figures, written to `out` as a whole -> the tables.
    infos: [models.ModelInfo]; datasets: names; loaded: {dataset: parts} given in memory (the demo).
    Every record's place is known before anything loads; the datasets still needed are all loaded
    before the first model, and one error names every dataset that cannot be had."""
    import data
    loaded, places, errors = dict(loaded or {}), {}, {}
    run_id = {"models": [i.name for i in infos], "datasets": list(datasets), "settings": {
        k: getattr(settings, k) for k in ("brainscore", "layer_choice", "dtype", "data_files")}}  # what sets the numbers
    check_out(out, run_id)
    for d in datasets:
        try:
            places.update({(i.name, d): record_place(i, d, settings, loaded.get(d)) for i in infos})
        except (data.DownloadError, ValueError) as err:
            errors[d] = err
    records = {job: read_record(path, key, *job) for job, (path, key, _) in places.items()}
    for d in dict.fromkeys(d for (_, d), rec in records.items() if rec is None and d not in loaded):
        try:
            loaded[d] = data.load(d, settings.data_dir, files=dict(settings.data_files).get(d))
        except (data.DownloadError, ValueError) as err:
            errors[d] = err
    if errors:
        raise data.DownloadError("\n\n".join(f"{d}: {errors[d]}" for d in datasets if d in errors))
    for info in infos:
        for d in datasets:
            (path, key, produced), rec = places[info.name, d], records[info.name, d]
            if rec is None:
                rec = records[info.name, d] = {"model": info.name, "dataset": d, "key": key, "produced": produced,
                                               "pipeline": PIPELINE_VERSION, **run_one(info, loaded[d], settings)}
                write_atomic(path, json.dumps(rec, indent=1))
            layer = f", layer {rec['layer_names'][rec['best_layer']]}" if rec["parts"] else ""
            print(f"{info.name} | {d}: {rec['score']:.4f}{layer}", flush=True)
    records = list(records.values())
    synthetic = any(rec["produced"]["data"]["checksum"] == "synthetic" for rec in records)
    info = {i.name: i for i in infos}
    scores, layers = collect(records, settings)
    all_tables = tables(scores, layers, info, records, settings)
    config = {**run_id, "all settings": vars(settings), "pipeline": PIPELINE_VERSION, "synthetic": synthetic,
              "split_seed": 1, "bootstrap_seed": 0, "records": {f"{r['model']} | {r['dataset']}": r["key"]
                                                               for r in records},
              "versions": {m: getattr(sys.modules.get(m), "__version__", None)
                           for m in ("numpy", "scipy", "torch", "transformers")}}
    write_report(out, all_tables, config, figures(records, scores, info, synthetic), synthetic)
    return all_tables


# -----------------------------------------------------------------------------
# 8. the paper's tables: alignment per model, tuned vs vanilla, correlations, ceilings


def collect(records, settings):
    """Records -> ({model: {dataset: score, "Average": mean over the PAPER_DATASETS run}}, {model:
    {dataset: layer read}}). layer_choice "pereira": the Brain-Score datasets read at the layer
    chosen on Pereira2018, as the authors registered one layer per model ("layer assignment based
    on choosing the maximally scoring layer on Pereira2018-encoding", brain-score/language f9a403e
    models/t5/__init__.py, 91c88b1 models/llama/__init__.py). --brainscore: each part divided by its
    ceiling and clipped to [0, 1], then averaged (Brain-Score's ceiling_normalize); behaviour by the
    ceiling computed from the data."""
    import data
    scores, layers = {}, {}
    pereira = {r["model"]: r for r in records if r["dataset"] == "Pereira2018"}
    for rec in records:
        m, d, ref = rec["model"], rec["dataset"], pereira.get(rec["model"])
        if rec["kind"] == "behaviour":
            scores.setdefault(m, {})[d] = float(np.clip(rec["score"] / (rec["ceiling"] if settings.brainscore
                                                                        else 1.0), 0, 1))
            continue
        best = rec["best_layer"]
        if settings.layer_choice == "pereira" and ref and rec["kind"] == "brain" \
                and ref["layer_names"] == rec["layer_names"]:
            best = ref["best_layer"]
        values = [p["layers"][best] for p in rec["parts"].values()]
        if settings.brainscore:
            values = [np.clip(v / data.ceiling(part), 0, 1) for part, v in zip(rec["parts"], values)]
        scores.setdefault(m, {})[d] = float(np.mean(values))
        layers.setdefault(m, {})[d] = rec["layer_names"][best]
    run = {r["dataset"] for r in records if r["kind"] != "behaviour"}     # behaviour is never averaged
    run = run & set(PAPER_DATASETS) or run           # the paper's datasets run (else all); a model needs each
    for s in scores.values():
        if run and run <= set(s):
            s["Average"] = float(np.mean([s[d] for d in sorted(run)]))
    return scores, layers


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
    out = np.empty_like(p)
    out[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return out


def bootstrap_ci(values, n_boot=10000, seed=0, level=0.95):
    """Percentile bootstrap confidence interval of the mean of values -> (low, high)."""
    values = np.asarray(values, dtype=float)
    means = values[np.random.default_rng(seed).integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]).tolist())


def compare_pairs(scores, pairs, columns, headline=PAPER_DATASETS):
    """Instruction tuning over pairs [(tuned, vanilla)] -> dict: a row per pair (per-column % change
    and difference, or a note when a side was not run or the vanilla score is <= 0: no percentage
    there, left out of that mean), the "mean" of each column, the "headline" (the mean of the
    `headline` columns' means), how many pairs "improved" on the Average, a Wilcoxon signed-rank p
    and a bootstrap 95% CI of the mean Average change."""
    rows, left_out = [], 0
    for tuned, vanilla in pairs:
        if tuned not in scores or vanilla not in scores:
            missing = ", ".join(m for m in (tuned, vanilla) if m not in scores)
            rows.append({"tuned": tuned, "vanilla": vanilla, "note": f"not run: {missing}"})
            continue
        both = [c for c in columns if c in scores[tuned] and c in scores[vanilla]]
        change = {c: float(relative_change(scores[tuned][c], scores[vanilla][c])) for c in both}
        rows.append({"tuned": tuned, "vanilla": vanilla, **{c: v for c, v in change.items() if np.isfinite(v)},
                     **{f"{c} diff": scores[tuned][c] - scores[vanilla][c] for c in both}})
        if bad := [c for c in both if not np.isfinite(change[c])]:
            left_out += 1
            rows[-1]["note"] = f"vanilla score <= 0 on {', '.join(bad)}: no relative change there"
    mean = {c: float(np.mean([r[c] for r in rows if c in r])) for c in columns if any(c in r for r in rows)}
    means, avg = [mean[d] for d in headline if d in mean], [r for r in rows if "Average" in r]
    out = {"rows": rows, "mean": mean, "n_pairs": len(avg), "left_out": left_out,
           "headline": float(np.mean(means)) if means else float("nan"),
           "improved": sum(r["Average"] > 0 for r in avg)}
    if len(avg) >= 2:
        import scipy.stats
        t, v = np.array([(scores[r["tuned"]]["Average"], scores[r["vanilla"]]["Average"]) for r in avg]).T
        out["wilcoxon_p"] = float(scipy.stats.wilcoxon(t, v).pvalue) if np.any(t != v) else 1.0
        out["ci95"] = bootstrap_ci(relative_change(t, v))
    return out


def correlations(scores, info):
    """Pearson r (and Benjamini-Hochberg p) of the Average score with log10(parameters) over the tuned
    models and over all, and with MMLU, BBH and next-word-prediction loss (Table 7) over the tuned
    models. info: {model: models.ModelInfo}. A row with fewer than 3 models is skipped."""
    import scipy.stats
    rows = []
    for against, attr in (("log10(params), tuned", "params"), ("log10(params), all", "params"),
                          ("MMLU, tuned", "mmlu"), ("BBH, tuned", "bbh"), ("NWP loss, tuned", "nwp_loss")):
        pts = [(getattr(info.get(m), attr, None), s.get("Average")) for m, s in scores.items()
               if info.get(m) and (info[m].base or "all" in against)]
        pts = [(np.log10(x) if attr == "params" else x, y) for x, y in pts
               if x is not None and y is not None and np.isfinite(x)]
        if len(pts) >= 3:
            r, p = scipy.stats.pearsonr(*np.array(pts).T)
            rows.append({"against": against, "n": len(pts), "r": float(r), "p": float(p)})
    for row, q in zip(rows, bh_fdr([r["p"] for r in rows])):
        row["p_fdr"] = float(q)
    return rows


def paper_value(model_info, dataset, scores=None):
    """The paper's score of a model on a dataset (Table 5; Table 9 for Futrell2018), or None; for the
    Average, None unless `scores` (ours for the model) hold all three datasets the paper averaged."""
    if model_info is None or (dataset == "Average" and not set(PAPER_DATASETS) <= set(scores or ())):
        return None
    values = dict(zip(PAPER_DATASETS + ("Average",), model_info.paper or ()))
    value = model_info.futrell if dataset == "Futrell2018" else values.get(dataset)
    return value if value is not None and np.isfinite(value) else None


def tables(scores, layers, info, records, settings):
    """The report's tables -> {title: rows (list of dicts)}. info: {model: models.ModelInfo}."""
    import data
    run = {d for s in scores.values() for d in s} - {"Average"}
    columns = [d for d in PAPER_DATASETS if d in run] + sorted(run - set(PAPER_DATASETS))
    columns += ["Average"] if any("Average" in s for s in scores.values()) else []
    alignment = []
    for m in sorted(scores, key=lambda m: (_params(info.get(m)), m)):
        alignment.append({"model": m})
        for d in columns:
            alignment[-1][d], paper = scores[m].get(d), paper_value(info.get(m), d, scores[m])
            if paper is not None and d in scores[m] and not settings.brainscore:
                alignment[-1] |= {f"{d} paper": paper, f"{d} diff": scores[m][d] - paper}
        alignment[-1]["layers"] = " ".join(f"{d[0]}:{name}" for d, name in layers.get(m, {}).items())
    pairs = [(m, i.base) for m, i in info.items() if i.base]
    published = {m: {d: paper_value(i, d, PAPER_DATASETS) for d in columns} for m, i in info.items()}
    comparison = []
    for label, source in (("ours", scores), ("the paper", published)):
        cmp = compare_pairs({m: {d: v for d, v in s.items() if v is not None} for m, s in source.items()},
                            pairs, columns)
        if label == "ours":
            comparison += [{k: _percent(v) if k in columns else v for k, v in r.items()} for r in cmp["rows"]]
        if cmp["n_pairs"]:
            note = f"headline {cmp['headline']:+.2f}%; {cmp['improved']}/{cmp['n_pairs']} improved"
            if "wilcoxon_p" in cmp:
                note += f"; Wilcoxon p = {cmp['wilcoxon_p']:.3g}; 95% CI [{cmp['ci95'][0]:+.1f}%, " \
                        f"{cmp['ci95'][1]:+.1f}%]"
            comparison.append({"tuned": f"mean of {cmp['n_pairs']} pairs ({label})", "vanilla": "",
                               **{c: _percent(v) for c, v in cmp["mean"].items()},
                               "note": note + f"; {cmp['left_out']} pair(s) with a vanilla score <= 0"})
    ceilings = [{"dataset": d, "published ceiling": data.ceiling(d), "split-half ceiling of the data": None}
                for d in columns if d in data.DATASETS]
    for row in ceilings:
        computed = [r["ceiling"] for r in records if r["dataset"] == row["dataset"] and r["kind"] == "behaviour"]
        row["split-half ceiling of the data"] = float(np.median(computed)) if computed else None
    return {"Brain alignment per model" + (" (ceiling-normalised)" if settings.brainscore else ""): alignment,
            "Instruction tuning: tuned vs vanilla (relative change)": comparison,
            "Correlation of the Average score with model properties": correlations(scores, info),
            "Noise ceilings": ceilings}


def _params(model_info):
    params = getattr(model_info, "params", None)
    return params if params is not None and np.isfinite(params) else 0.0


def _percent(value):
    """A per cent change as the tables print it ("+6.2%"); anything else (None, a note) as it is."""
    return f"{value:+.1f}%" if isinstance(value, float) else value


def _cell(value):
    if not isinstance(value, float):
        return "-" if value is None else str(value)
    if abs(value) >= 1:
        return f"{value:+.1f}"
    return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2g}"


def markdown(rows):
    """A Markdown table from a list of dicts (the keys of all rows, in order, are the columns)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows])


# -----------------------------------------------------------------------------
# 9. figures (matplotlib is optional and imported only here): ours against the paper, the paper's
# tuned-vs-vanilla bars, every layer's score. Each returns a matplotlib Figure, or None.

SYNTHETIC = "SYNTHETIC: tiny random-weight models and planted responses, not real results"


def figures(records, scores, info, synthetic=False):
    """{file name: Figure} of the figures this run has data for; {} without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no figures (pip install matplotlib)", file=sys.stderr)
        return {}
    made = {"reproduction.png": fig_reproduction(scores, info),
            "tuned_vs_vanilla.png": fig_tuned_vs_vanilla(scores, info), "layers.png": fig_layers(records)}
    made = {name: fig for name, fig in made.items() if fig is not None}
    for fig in made.values() if synthetic else ():
        fig.text(0.5, 0.5, "SYNTHETIC", ha="center", va="center", rotation=30, fontsize=60, color="red", alpha=0.25)
        fig.suptitle(SYNTHETIC, color="red", fontsize=9)
    return made


def _figure(n_panels, width, height, n_cols):
    """A Figure drawn without pyplot (nothing global changes) and its n_panels axes on a grid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    n_rows = -(-n_panels // n_cols)
    fig = Figure(figsize=(width * n_cols, height * n_rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.remove()
    return fig, list(axes[:n_panels])


def fig_reproduction(scores, info):
    """Our score (x) against the paper's (y), a panel per dataset and the Average, the identity line;
    open circles vanilla, filled triangles tuned. Points without a finite score are left out."""
    panels = {}
    for d in PAPER_DATASETS + ("Futrell2018", "Average"):
        pts = [(s[d], paper_value(info.get(m), d, s), bool(info[m].base)) for m, s in scores.items()
               if np.isfinite(s.get(d, np.nan)) and paper_value(info.get(m), d, s) is not None]
        if pts:
            panels[d] = np.array(pts, dtype=float)                  # (n_models, 3): ours, paper, tuned
    if not panels:
        return None
    fig, axes = _figure(len(panels), 3.2, 3.4, min(len(panels), 3))
    for ax, (d, pts) in zip(axes, panels.items()):
        lo, hi = pts[:, :2].min() - 0.01, pts[:, :2].max() + 0.01
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
        for tuned, marker, face in ((0, "o", "none"), (1, "^", "C0")):
            ax.scatter(*pts[pts[:, 2] == tuned, :2].T, marker=marker, facecolors=face, edgecolors="C0",
                       label="tuned" if tuned else "vanilla")
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel="ours",
               ylabel=f"paper (Table {9 if d == 'Futrell2018' else 5})")
        ax.set_title(f"{d} (n = {len(pts)})\nmean |ours - paper| = {np.abs(pts[:, 0] - pts[:, 1]).mean():.3f}",
                     fontsize=9)
    axes[0].legend(fontsize=8)
    return fig


def fig_tuned_vs_vanilla(scores, info):
    """The paper's bars: each vanilla model (light) and the models tuned from it (dark), a panel per
    dataset and the Average; a black diamond marks the paper's value. NaN scores get no bar."""
    groups = {}
    for m in sorted(scores):
        if getattr(info.get(m), "base", None) in scores:
            groups.setdefault(info[m].base, [info[m].base]).append(m)
    bars = [m for v in sorted(groups, key=lambda v: (_params(info.get(v)), v)) for m in groups[v]]
    columns = [d for d in PAPER_DATASETS + ("Futrell2018", "Average") if any(d in scores[m] for m in bars)]
    if not columns:
        return None
    fig, axes = _figure(len(columns), max(5.0, 0.35 * len(bars) + 2), 2.2, 1)
    for ax, d in zip(axes, columns):
        for x, m in enumerate(bars):
            if np.isfinite(scores[m].get(d, np.nan)):
                ax.bar(x, scores[m][d], 0.8, color="C0", alpha=0.4 if m in groups else 1.0)
            if (paper := paper_value(info.get(m), d, scores[m])) is not None:
                ax.plot(x, paper, "D", color="k", ms=3.5)
        ax.set_title(f"{d} (light: vanilla, dark: tuned, diamond: the paper)", loc="left", fontsize=9)
        ax.set_xticks(range(len(bars)), bars if ax is axes[-1] else [""] * len(bars), rotation=90, fontsize=8)
    return fig


def fig_layers(records):
    """Every layer's score against its index, a panel per dataset part, a line per model, a star on
    the layer kept. Embedding outputs are scored but never candidates (the paper counts blocks), so
    a star can sit below its curve's highest point."""
    curves = [(rec["model"], part, np.asarray(p["layers"], dtype=float), rec["best_layer"])
              for rec in records for part, p in rec["parts"].items()]
    parts = list(dict.fromkeys(c[1] for c in curves))
    if not parts:
        return None
    fig, axes = _figure(len(parts), 3.6, 3.0, min(len(parts), 3))
    for ax, part in zip(axes, parts):
        for k, (model, _, layers, best) in enumerate(c for c in curves if c[1] == part):
            ax.plot(np.arange(len(layers)), layers, color=f"C{k % 10}", lw=1, label=model)
            ax.plot(best, layers[best], "*", color=f"C{k % 10}", ms=9)
        ax.set(title=part, xlabel="layer (0 = embeddings)", ylabel="score")
    axes[0].legend(fontsize=7, title="star: the layer kept; embeddings\nare never candidates", title_fontsize=7)
    return fig


# -----------------------------------------------------------------------------
# 10. the report folder and the command line


def check_out(out, run_id):
    """--out must be a folder that can be written, holding nothing or this same run's report."""
    out = Path(out).expanduser()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"--out {out} is a file or a link; give a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            earlier = json.loads((out / "config.json").read_text())
        except (OSError, ValueError):
            raise ValueError(f"--out {out} holds files that are not a brainalign report; give another folder")
        if {k: earlier.get(k) for k in run_id} != json.loads(json.dumps(run_id)):
            raise ValueError(f"--out {out} holds the report of another run (models "
                             f"{', '.join(earlier.get('models', []))}; ...); give another --out, or delete it")
    if not os.access(out.resolve().parent if out.resolve().parent.exists() else Path.cwd(), os.W_OK):
        raise ValueError(f"--out {out}: {out.resolve().parent} cannot be written; give another folder")


def write_report(out, all_tables, config, figs, synthetic=False):
    """The tables (Markdown on stdout; Markdown, CSV and JSON files), config.json and the figures,
    written into a new temporary folder that then replaces `out` whole: a crash, Ctrl-C or a full
    disk leaves the earlier report as it was and nothing half-written."""
    import csv
    import shutil
    import tempfile
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
    text = [f"# {SYNTHETIC}\n"] if synthetic else []
    try:
        for i, (title, rows) in enumerate(all_tables.items(), 1):
            text += [f"## {i}. {title}", markdown(rows) if rows else "(too few results for this table)", ""]
            (tmp / f"table{i}.json").write_text(json.dumps({"title": title, "rows": rows}, indent=1))
            with open(tmp / f"table{i}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)
        (tmp / "tables.md").write_text("\n".join(text))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        for name, fig in figs.items():
            fig.savefig(tmp / name, format="png", dpi=120)
        check_out(out, {k: config[k] for k in ("models", "datasets", "settings")})   # again: a run at once?
        old = _unique(out.with_name(f".{out.name}.old"))
        if out.exists():
            os.replace(out, old)                 # this run's own earlier report: it goes only once we are done
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(text))


def parse_args(argv=None):
    """The command line -> (model names, dataset names, Settings, out), every option checked."""
    import argparse
    import data
    p = argparse.ArgumentParser(description="Brain alignment of language models, as Aw et al. (COLM 2024) "
                                "computed it. A rerun over the cache renders the report again.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="the paper's 25 models, and Futrell2018 too")
    what.add_argument("--models", nargs="+", metavar="NAME", default=["t5-small", "flan-t5-small"],
                      help="registry names, hub ids or model folders (default: T5 v1.1 small vs Flan-T5 small)")
    p.add_argument("--datasets", nargs="+", choices=list(data.DATASETS), help="default: the paper's three")
    p.add_argument("--brainscore", action="store_true", help="Brain-Score 2.3.0's semantics instead of the "
                   "authors' code: token_type_ids passed, every block's output, a float64 fit, embeddings "
                   "among the candidates, ceiling-normalised scores")
    p.add_argument("--layer-choice", default="dataset", choices=["dataset", "pereira"], help="each dataset's "
                   "best layer (the paper's text), or Blank2014 read at Pereira2018's (its registrations)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps, or map (device_map='auto')")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache-dir", default=os.environ.get("BRAINALIGN_CACHE", "~/.cache/brainalign"))
    p.add_argument("--data-dir", help="where the dataset files are or go (env BRAINALIGN_DATA)")
    p.add_argument("--data-file", action="append", default=[], metavar="DATASET=PATH",
                   help="read DATASET from PATH without its checksum (another packaging of the same data)")
    p.add_argument("--out", default="results", help="folder for the tables and figures")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    names = args.models
    if args.all:
        import models
        names = [m for m, i in models.MODELS.items() if i.in_paper]
    datasets = args.datasets or list(PAPER_DATASETS) + ["Futrell2018"] * args.all
    files = {}
    for item in args.data_file:
        name, _, path = item.partition("=")
        if name not in datasets or not path:
            p.error(f"--data-file {item!r}: give DATASET=PATH for a dataset run here ({', '.join(datasets)})")
        files.setdefault(name, []).append(str(Path(path).expanduser().resolve()))
    settings = Settings(args.brainscore, args.layer_choice, args.device, args.dtype, args.batch_size,
                        str(Path(args.cache_dir).expanduser().resolve()), args.data_dir,
                        tuple((d, tuple(f)) for d, f in files.items()))
    return names, datasets, settings, args.out


def main(argv=None):
    names, datasets, settings, out = parse_args(argv)
    import data
    import models
    try:
        Path(settings.cache_dir).mkdir(parents=True, exist_ok=True)
        if not os.access(settings.cache_dir, os.W_OK):
            raise ValueError(f"--cache-dir {settings.cache_dir} cannot be written; give another folder")
        models.check_device(settings.device)
        infos = [models.resolve(m) for m in names]
        if len({i.name for i in infos}) < len(infos):
            raise ValueError(f"--models names a model twice: {', '.join(i.name for i in infos)}")
        return run(infos, datasets, settings, out)
    except (ValueError, OSError, data.DownloadError) as err:
        raise SystemExit(f"brainalign: {err}") from err
    except RuntimeError as err:
        if "out of memory" not in str(err).lower():
            raise
        raise SystemExit("brainalign: out of memory: try --dtype bfloat16, a smaller --batch-size, or "
                         "--device map (needs accelerate) to spread a large model over several GPUs") from err


if __name__ == "__main__":
    main()
