"""brainalign: how well a language model's layers linearly predict human brain responses to the same
text (brain alignment), and the instruction-tuning comparison of Aw et al. (COLM 2024).

Sections 1-4 are the whole method, numpy and scipy only (threadpoolctl for the cores), to copy alone:
Brain-Score's splits -> least-squares fit -> Pearson r per target -> median over targets, mean over splits
-> every layer -> the best layer. Then the paper's Wehbe2014 (Toneva & Wehbe's ridge) and Futrell2018
(surprisal) pipelines, one (model, dataset) scored and cached, tables, the figure, the command line.
data.py loads the datasets, models.py the activations. The defaults are what the authors' code computed;
--brainscore gives Brain-Score 2.3.0's semantics. Left out: xarray, sklearn, ROI masks.

    python brainalign.py --all       # the paper's 25 models; rerunning it over a full cache = the report
    python tests/demo.py             # offline: tiny random models, planted responses
"""
import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import scipy.stats
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

import data      # numpy and h5py only; models.py (torch) is imported where a model runs

# -----------------------------------------------------------------------------
# 1. cross-validation splits: lists of (train, test) index arrays
def shuffle_splits(n, n_splits=10, train_size=0.9, seed=1):
    """Brain-Score's splits: sklearn ShuffleSplit(n_splits, train_size, random_state=seed), index for
    index. One RandomState draws a fresh permutation per split; the test set is its head."""
    n_test, rng = n - int(np.floor(train_size * n)), np.random.RandomState(seed)
    return check_splits([(p[n_test:], p[:n_test]) for p in [rng.permutation(n) for _ in range(n_splits)]], n)

def kfold_splits(n, n_folds, gap=0):
    """Contiguous folds (n // n_folds samples each, the last takes the rest), `gap` samples dropped at
    each train/test boundary as Toneva & Wehbe (2019) do: the first fold drops the first `gap` training
    samples after it, the last the last `gap` before it, a middle fold `gap` at each end of its test."""
    for name, value, least in (("n", n, 1), ("n_folds", n_folds, 1), ("gap", gap, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"kfold_splits: {name} must be a whole number >= {least}, got {value!r}")
    edges, splits = [k * (n // n_folds) for k in range(n_folds)] + [n], []
    if n // n_folds < 1:
        raise ValueError(f"too few samples for {n_folds} folds: n={n}")
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        train, test, mid = np.r_[0:lo, hi:n], np.arange(lo, hi), gap * (0 < k < n_folds - 1)
        splits.append((train[gap * (k == 0):len(train) - gap * (k == n_folds - 1)],   # end folds: the gap
                       test[mid:len(test) - mid]))                # beside them in train; middle: in test
    return check_splits(splits, n)

def check_splits(splits, n):
    """The splits, if each (train, test) holds distinct integer indices in [0, n), disjoint (a test
    stimulus must not be fit), at least 2 train and 3 test; else a ValueError that says which."""
    if len(splits) == 0:
        raise ValueError("no splits given")
    for i, (train, test) in enumerate(splits):
        for name, idx in (("train", np.asarray(train)), ("test", np.asarray(test))):
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):     # a mask: np.flatnonzero
                raise ValueError(f"split {i}: {name} must be 1-D integer indices, not {idx.dtype}{idx.shape}")
            if idx.size and (idx.min() < 0 or idx.max() >= n) or np.unique(idx).size != idx.size:
                raise ValueError(f"split {i}: {name} indices must be distinct and in [0, {n}), got "
                                 f"{idx.min()}..{idx.max()} ({idx.size - np.unique(idx).size} repeated)")
        if shared := np.intersect1d(train, test).size:
            raise ValueError(f"split {i}: train and test share {shared} stimuli; test stimuli can't be fit")
        if len(train) < 2 or len(test) < 3:
            raise ValueError(f"split {i} has {len(train)} train / {len(test)} test samples (n={n}); need at "
                             "least 2 train and 3 test (with 2, every r is +-1): use fewer folds, a smaller "
                             "gap or more stimuli")
    return splits

# -----------------------------------------------------------------------------
# 2. the fit: ordinary least squares with intercept, minimum norm (sklearn LinearRegression)
NUMERICS = {  # -> (dtype of the fit, relative singular-value cutoff of scipy.linalg.lstsq)
    # the paper: Brain-Score 2023 passed float32 activations to sklearn <= 1.5 LinearRegression, which cast
    # y to X's dtype, centred in float32 and called lstsq(cond=None): cutoff float32 eps (brain-score/language
    # 1041be4 metrics/linear_predictivity/metric.py; sklearn 1.5 linear_model/_base.py)
    "brainscore-2023": (np.float32, None),
    "float64": (np.float64, 1e-6),          # Brain-Score 2.3.0 with today's sklearn (>= 1.9: cond=1e-6)
}

def fit_predict(x_train, y_train, x_test, numerics="brainscore-2023"):
    """The definition: predictions (n_test, n_targets) for x_test (n_test, p) of the least-squares fit
    of y_train (n_train, n_targets) on x_train (n_train, p) with an intercept, step for step as sklearn's
    LinearRegression().fit(x_train, y_train).predict(x_test) (_preprocess_data, lstsq, _set_intercept):
    centre on the training means, lstsq's minimum-norm weights, in NUMERICS[numerics]."""
    dtype, cond = NUMERICS[numerics]
    x, y = np.asarray(x_train, dtype), np.asarray(y_train, dtype)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    w = scipy.linalg.lstsq(x - x_mean, y - y_mean, cond=cond)[0]          # (p, n_targets)
    return np.asarray(x_test, dtype) @ w + (y_mean - x_mean @ w)

def fit_predict_fast(x_train, y_train, x_test, numerics="brainscore-2023"):
    """fit_predict's predictions up to rounding, with one lstsq on the centred identity C = I - mean(I)
    (n_train x n_train) instead of one on every target: 20-40x faster where targets outnumber training
    stimuli (tests/bench_fit.py). lstsq (gelsd) factorises only A = x_train - mean (singular values, rank
    s > cond * s_max); the right-hand side passes through the factors: lstsq(A, C) = A+ C, C Yc = Yc, so
    (x_test - mean) A+ C Yc is the direct call's prediction. C, not I, cancels the centring direction (a
    float32 rounding-level singular value gelsd keeps) as the direct call does (README)."""
    dtype, cond = NUMERICS[numerics]
    x, y = np.asarray(x_train, dtype), np.asarray(y_train, dtype)
    if y.shape[1] <= len(x):
        return fit_predict(x, y, x_test, numerics)
    x_mean, y_mean, eye = x.mean(axis=0), y.mean(axis=0), np.eye(len(x), dtype=dtype)
    pinv = scipy.linalg.lstsq(x - x_mean, eye - eye.mean(axis=0), cond=cond)[0]      # (p, n_train)
    return ((np.asarray(x_test, dtype) - x_mean) @ pinv) @ (y - y_mean) + y_mean

# -----------------------------------------------------------------------------
# 3. Pearson r per target and Brain-Score's aggregation
def pearson(a, b):
    """Pearson r between matching columns of a and b, both (n, n_targets) -> (n_targets,), in float64.
    A column constant on either side, up to rounding (its centred norm <= sqrt(n) * n * eps * max|x|:
    0.1 repeated centres to ~1e-17, not 0, and would correlate at |r| ~ 0.9 with noise), has no r: it
    scores 0 with a warning, so it neither poisons a median with NaN nor inflates it."""
    return fold_pearson([a], [b])[0][0]

def fold_pearson(a, b):
    """pearson of each fold's (a, b), lists of (n_fold, n_targets), and of the folds stacked -> (per fold
    (n_folds, n_targets), stacked (n_targets,)). Why not pearson on the stack: each fold's centred sums,
    combined by Chan, Golub & LeVeque's (1979) update, give both in one pass over the data, not two."""
    n, sums = np.array([[len(x)] for x in a], dtype=np.float64), []                 # (n_folds, 1)
    for x, y in zip(*[[np.asarray(v, dtype=np.float64) for v in side] for side in (a, b)]):
        xc, yc = x - (mx := x.mean(axis=0)), y - (my := y.mean(axis=0))
        sums.append([mx, my] + [np.einsum("ij,ij->j", u, v) for u, v in ((xc, yc), (xc, xc), (yc, yc))]
                    + [abs(x).max(axis=0, initial=0), abs(y).max(axis=0, initial=0)])
    mx, my, xy, xx, yy, x_max, y_max = np.array(sums).transpose(1, 0, 2)          # each (n_folds, n_t)
    dx, dy = (m - np.average(m, axis=0, weights=n[:, 0]) for m in (mx, my))      # fold mean - all's
    xy, xx, yy = (np.r_[s, (s + n * u * v).sum(axis=0, keepdims=True)]            # the stack: a last row
                  for s, u, v in ((xy, dx, dy), (xx, dx, dx), (yy, dy, dy)))
    n, x_max, y_max = np.r_[n, [[n.sum()]]], np.r_[x_max, [x_max.max(0)]], np.r_[y_max, [y_max.max(0)]]
    norm_x, norm_y, bound = np.sqrt(xx), np.sqrt(yy), n ** 1.5 * np.finfo(np.float64).eps   # sqrt(n) n eps
    ok = (norm_x > bound * x_max) & (norm_y > bound * y_max)
    if not ok.all():
        warnings.warn(f"{(~ok).any(axis=0).sum()} constant column(s) have no Pearson r; scored as 0")
    r = np.where(ok, xy / np.where(ok, norm_x * norm_y, 1.0), 0.0)
    return r[:-1], r[-1]

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

def cross_validate(features, responses, splits, numerics="brainscore-2023", ids=None):
    """Pearson r of every target on every test split -> (n_splits, n_targets) of features (n_stimuli,
    n_features) fit (fit_predict_fast) to responses (n_stimuli, n_targets). ids (n_stimuli,): Brain-Score's
    stimulus_id: its fit sees each split's rows after sortby('stimulus_id') (1041be4 metrics/
    linear_predictivity/metric.py), so they go in that order; in float32 the order moves the rounding."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {', '.join(NUMERICS)}; got {numerics!r}")
    x, y = _as_matrix("features", features), _as_matrix("responses", responses)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"features have {x.shape[0]} stimuli but responses have {y.shape[0]}; rows must be "
                         "matched stimulus by stimulus")
    check_splits(splits, len(x))
    if min(len(test) for _, test in splits) < 10:
        warnings.warn("a split tests fewer than 10 stimuli: its Pearson r are very noisy")
    order = np.argsort(np.asarray(ids), kind="stable") if ids is not None else np.arange(len(x))
    rank = np.argsort(order)                                         # position of each row in that order
    r = []
    for train, test in splits:
        train, test = order[np.sort(rank[train])], order[np.sort(rank[test])]
        r.append(pearson(fit_predict_fast(x[train], y[train], x[test], numerics), y[test]))
    return np.stack(r)

def _mad(values):
    return float(np.median(np.abs(np.subtract(values, np.median(values)))))

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
def score_layers(acts, responses, subjects=None, ids=None, numerics="brainscore-2023", splits=None,
                 progress=False, jobs=0):
    """Score every layer of acts (n_stimuli, n_layers, n_features) -> [Score], one per layer, on
    Brain-Score's 10 shuffle splits unless given. ids: stimulus ids, see cross_validate. jobs: see _map."""
    acts = np.asarray(acts)
    if acts.ndim != 3 or acts.shape[1] == 0:
        raise ValueError(f"acts must be (n_stimuli, n_layers >= 1, n_features), got shape {acts.shape}")
    splits = shuffle_splits(len(acts)) if splits is None else splits
    return _map(lambda i: summarize(cross_validate(acts[:, i], responses, splits, numerics, ids), subjects),
                acts.shape[1], jobs, progress, "layers")

def best_layer(scores, layer_names, embeddings=False):
    """The one layer kept per model and dataset -> (its index, every layer's score (n_layers,)). scores:
    (n_parts, n_layers), Pereira2018's experiments averaged layer by layer first (each part's own best
    would be biased upward). Embeddings are candidates only if `embeddings`: the paper counts blocks."""
    mean = np.atleast_2d(np.asarray(scores, dtype=np.float64)).mean(axis=0)         # (n_layers,)
    if len(layer_names) != len(mean):
        raise ValueError(f"{len(mean)} layer scores but {len(layer_names)} layer names")
    candidate = np.isfinite(mean) & [embeddings or not name.endswith("embeddings") for name in layer_names]
    if not candidate.any():
        raise ValueError(f"no candidate layer with a finite score among {list(layer_names)}")
    return int(np.argmax(np.where(candidate, mean, -np.inf))), mean

_TASK, STOP = None, threading.Event()   # what _map's forked workers run (inherited, not pickled); Ctrl-C

def _one(i):
    if STOP.is_set() and threading.current_thread() is not threading.main_thread():   # run()'s scorer
        raise KeyboardInterrupt
    with threadpool_limits(1):          # one BLAS thread, in a worker or here: the same arithmetic
        return _TASK(i)

def cores(jobs=0):
    """jobs, or (0) the cores this process may use (Slurm's and taskset's limits included)."""
    return jobs or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

def _map(task, n, jobs=0, progress=False, desc=""):
    """[task(i) for i in range(n)], each on one BLAS thread, in `jobs` forked processes (0: cores()) that
    share the data, not copy it: the same results whatever `jobs`. Off Linux (no safe fork): here, in turn."""
    global _TASK
    _TASK, jobs = task, min(cores(jobs), n)
    if jobs <= 1 or not sys.platform.startswith("linux"):
        return [_one(i) for i in tqdm(range(n), desc, disable=not progress, leave=False)]
    with warnings.catch_warnings():     # Python >= 3.12 warns of fork beside threads; workers run numpy
        warnings.simplefilter("ignore", DeprecationWarning)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(tqdm(pool.map(_one, range(n)), desc, n, disable=not progress, leave=False))

# -----------------------------------------------------------------------------
# 5. the paper's Wehbe2014 pipeline: word features -> TR features -> per-voxel ridge, Toneva & Wehbe's code
# (mtoneva/brain_language_nlp 0f519a0 utils/utils.py, ridge_tools.py) as Aw & Toneva reuse it (f341823)
RIDGE_PENALTIES = 10.0 ** np.arange(-6, 10)      # cross_val_ridge's lambdas, 1e-6 .. 1e9

def zscore(x):
    """(x - mean) / std of every column (axis 0), in float64; a constant column becomes 0, not NaN."""
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0, dtype=np.float64)   # x.std's own steps, once
    sd = np.sqrt((xc * xc).mean(axis=0))
    xc /= np.where(sd > 0, sd, 1.0)
    return xc

def top_components(x, k):
    """PCA as Toneva's PCA(k, svd_solver='full').fit(x) (0f519a0 utils/utils.py) -> (mean (p,), components
    (k, p)): the same exact components, large inputs by ARPACK (dozens of products, not a full SVD)."""
    xc = x - (mean := x.mean(axis=0))
    if min(xc.shape) <= 500:
        return mean, np.linalg.svd(xc, full_matrices=False)[2][:k]
    _, s, vt = scipy.sparse.linalg.svds(xc, k=k, v0=np.ones(min(xc.shape)), random_state=0)
    return mean, vt[np.argsort(s)[::-1]]

def pca_training_words(ds, train):
    """The words whose features fit the fold's PCA, as Toneva & Wehbe's TR_to_word_CV_ind (0f519a0
    utils/utils.py; get_nlp_features_fixed_length fits PCA(10) on them), quirks kept; their layout trims
    each run by 20 TRs at its start, 15 at its end. ds: a time-series data.Dataset; train: the fold's
    training samples (kfold_splits) -> word indices."""
    n = len(ds.sample_tr)
    fold = np.minimum(np.arange(n) // (n // ds.n_folds), ds.n_folds - 1)   # CV_ind(n, n_folds)
    tr_train = np.isin(fold, fold[train])       # their `ind != ind_num`: the gap TRs (dropped after) train
    words = np.arange(ds.first_word, len(ds.texts))                         # time_words[20:5176]
    tr = ds.word_tr[words]                      # words_id: the last TR starting before the word
    start = np.flatnonzero(np.diff(ds.sample_tr, prepend=-2) != 1)          # each run's first kept sample
    run = np.maximum(np.searchsorted(ds.sample_tr[start] - 20, tr, side="right"), 1)   # runs[words_id]
    kept = tr <= ds.n_tr - 15                   # `if words_id[i] <= len(runs) - 15`: later words never fit
    # offset = 20 * run + 15 * (run - 1), then `- 1`: a word takes the status of the sample before its
    # TR's; trimmed TRs land on a neighbouring run's samples; run 1's early TRs give negative indices,
    # which wrap to the last samples (numpy indexing, as in their code)
    fit = np.zeros(len(words), dtype=bool)
    fit[kept] = tr_train[tr[kept] - (20 * run[kept] + 15 * (run[kept] - 1)) - 1]
    return words[fit]

def tr_features(word_features, ds, train, n_components=10, delays=(1, 2, 3, 4)):
    """Features (n_samples, n_components * len(delays)) of the kept TRs for one fold, from word_features
    (n_words, n_features): PCA fitted on pca_training_words, each TR's words averaged, the previous 1-4
    TRs concatenated (the haemodynamic delay), z-scored within each run (0f519a0 prepare_fmri_features)."""
    tr_of = ds.word_tr[words := np.arange(ds.first_word, len(ds.texts))]
    mean, comps = top_components(np.float64(word_features[pca_training_words(ds, train)]), n_components)
    z = (word_features[words] - mean) @ comps.T                      # (n_words, k)
    per_tr = np.zeros((ds.n_tr, z.shape[1]))
    np.add.at(per_tr, tr_of, z)
    with np.errstate(invalid="ignore"):         # a TR without words: 0 / 0 = NaN, as their np.mean of none
        per_tr /= np.bincount(tr_of, minlength=ds.n_tr)[:, None]
    delayed = np.zeros((ds.n_tr, z.shape[1] * len(delays)))         # row t holds TRs t-1 .. t-4
    for j, d in enumerate(delays):
        delayed[d:, j * z.shape[1]:(j + 1) * z.shape[1]] = per_tr[:-d]
    kept = delayed[ds.sample_tr]
    run = np.cumsum(np.diff(ds.sample_tr, prepend=ds.sample_tr[0]) != 1)   # runs: blocks of consecutive TRs
    for r in np.unique(run):
        kept[run == r] = zscore(kept[run == r])
    return np.nan_to_num(kept)      # their quirk: a column whose run has an empty TR in a window is NaN -> 0

def inner_folds(n, n_splits=10):
    """sklearn KFold(n_splits), unshuffled: contiguous blocks, the first n % n_splits one longer."""
    if n < 2 * n_splits:
        raise ValueError(f"too few training samples for {n_splits} inner folds: n={n}")
    sizes = np.full(n_splits, n // n_splits) + (np.arange(n_splits) < n % n_splits)
    edges = np.r_[0, np.cumsum(sizes)]
    return [(np.r_[0:lo, hi:n], np.arange(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]

def ridge_cv(x, y, penalties=RIDGE_PENALTIES, n_splits=10):
    """Ridge without intercept, one penalty per target chosen by inner cross-validation -> (weights
    (p, n_targets), chosen penalty (n_targets,)). x (n, p), y (n, n_targets): the z-scored training
    fold. Equals cross_val_ridge(x, y, n_splits, penalties, method='plain') (0f519a0 utils/ridge_tools.py):
    unshuffled KFold(n_splits); per target the penalty with the least summed 1 - R^2 = MSE / var over
    the validation blocks (the first on ties); the ridge refitted on all of x with that penalty.
    Why it is cheap: Toneva's code solves a (p, p) system and predicts every (n_val, n_targets) block for
    each penalty. Here, per inner fold with x_train = U S V^T, lam = s^2, A = x_val V, G = A^T A,
    b = V^T x_train^T y_train, c = V^T x_val^T y_val, penalty a predicts A (g * b), g = 1 / (lam + a), so
    SSE(a) = |y_val|^2 - 2 g.(b c) + sum_kl g_k g_l G_kl b_k b_l; partial fractions, g_k g_l =
    (g_k - g_l) / (lam_l - lam_k), turn the last sum into sum_k g_k^2 G_kk b_k^2 + 2 g_k b_k (H b)_k with
    H_kl = G_kl / (lam_l - lam_k): every penalty's SSE is one (n_pen, 2p) x (2p, n_targets) product.
    Explicit predictions instead where that could lose digits: (nearly) constant validation blocks
    (Toneva's R2 through nan_to_num: 0/0 costs 1, x/0 ~1.8e308) and folds with close singular values."""
    return ridge_solve(ridge_factors(x, penalties, n_splits), y)

def ridge_factors(x, penalties=RIDGE_PENALTIES, n_splits=10):
    """ridge_cv's work on x alone (the inner folds' SVDs, the small matrices above) -> ridge_solve's input."""
    x, pen = _as_matrix("x", x).astype(np.float64), np.asarray(penalties, dtype=np.float64)
    if pen.ndim != 1 or pen.size == 0 or not (pen > 0).all():
        raise ValueError(f"penalties must be a non-empty 1-D array of positive values, got {penalties!r}")
    folds = []
    for lo, hi in ((val[0], val[-1] + 1) for _, val in inner_folds(len(x), n_splits)):   # slices, not copies
        _, s, vt = np.linalg.svd(np.r_[x[:lo], x[hi:]], full_matrices=False)
        a, lam, eye = x[lo:hi] @ vt.T, s ** 2, np.eye(len(s))                 # (n_val, r), (r,)
        g, gram = 1 / (lam + pen[:, None]), a.T @ a                           # (n_pen, r), (r, r)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = gram / (lam - lam[:, None] + eye) * (1 - eye)                 # H, 0 on the diagonal
        apart = (lam[1:] < (1 - 1e-4) * lam[:-1]).all()                       # partial fractions hold
        folds.append((lo, hi, vt, a, g, h, np.c_[g * g * np.diag(gram), 2 * g], apart))
    return np.c_[x, np.ones(len(x))], pen, folds, np.linalg.svd(x, full_matrices=False)[1:]

def ridge_solve(factors, y, width=512):
    """ridge_cv's (weights, penalties) for y (n, n_t) from ridge_factors(x); `width` targets per pass."""
    (xa, pen, folds, (s, vt)), y = factors, _as_matrix("y", y).astype(np.float64, copy=False)
    if len(xa) != len(y):
        raise ValueError(f"x must be (n, p) and y (n, n_targets) with the same n; got {len(xa)}, {y.shape}")
    weights, best = np.empty((vt.shape[1], y.shape[1])), np.empty(y.shape[1], dtype=int)
    yy = np.stack([np.einsum("ij,ij->j", y[lo:hi], y[lo:hi]) for lo, hi, *_ in folds])   # |y_val|^2 (K, n_t)
    for cols in (slice(i, i + width) for i in range(0, y.shape[1], width)):
        xvy = np.empty((len(folds), xa.shape[1], y[:, cols].shape[1]))            # x_val^T y_val, y_val sums
        for (lo, hi, *_), out in zip(folds, xvy):                                 # (K, p + 1, w), in place
            np.matmul(xa[lo:hi].T, y[lo:hi, cols], out=out)
        xy, cost = xvy[:, :-1].sum(axis=0), np.zeros((pen.size, xvy.shape[2]))  # x^T y: the blocks' sum
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            for (lo, hi, vt_k, a, g, h, coef, apart), xvy_k, yy_k in zip(folds, xvy, yy[:, cols]):
                c = vt_k @ xvy_k[:-1]                                         # (r, w)
                b = vt_k @ xy - c
                var = yy_k / (hi - lo) - (xvy_k[-1] / (hi - lo)) ** 2
                slow = ~(var > 1e-3 * yy_k / (hi - lo)) | ~apart
                rhs = np.empty((2 * len(b), b.shape[1]))                      # [b^2, b (H b - c)]
                np.multiply(b, b, out=rhs[:len(b)])
                np.multiply(b, h @ b - c, out=rhs[len(b):])
                cost += np.where(slow, 0, (coef @ rhs + yy_k) / ((hi - lo) * var))
                if slow.any():                                                # Toneva's arithmetic
                    real = y[lo:hi, cols][:, slow]
                    mse = (((a * g[:, None]) @ b[:, slow] - real) ** 2).mean(axis=1)  # (n_pen, n_slow)
                    cost[:, slow] += 1.0 - np.nan_to_num(1.0 - mse / real.var(axis=0))
        best[cols] = np.argmin(cost, axis=0)                                  # the first on ties
        weights[:, cols] = vt.T @ ((vt @ xy) / (s[:, None] ** 2 + pen[best[cols]]))
    return weights, pen[best]

def cross_validate_time_series(word_features, ds, jobs=0, progress=False, chunk=1024):
    """r of every layer's targets on the test folds stacked (f341823 all_scripts/plot_pearson.py) -> (r
    (n_layers, n_targets), per fold (n_layers, n_folds, n_targets)); word_features (n_words, n_layers, n_f).
    Per fold as 0f519a0 utils/utils.py run_class_time_CV_fmri_crossval_ridge: TR features; train and test
    z-scored apart; ridge_cv. In two parallel passes (_map): each layer's TR features and ridge factors, then
    blocks of `chunk` targets through every layer: a block's z-scores serve all layers, and stay in cache."""
    if np.ndim(word_features) != 3:
        raise ValueError(f"word_features must be (n_words, n_layers, n_feat), not {np.shape(word_features)}")
    splits, y = kfold_splits(ds.responses.shape[0], ds.n_folds, ds.gap), ds.responses   # y (n_samples, n_t)
    def layer(i):                               # -> per fold: (z-scored test features, ridge factors)
        xs = [tr_features(word_features[:, i], ds, train) for train, _ in splits]        # (n_samples, 40)
        return [(zscore(x[test]), ridge_factors(zscore(x[train]))) for x, (train, test) in zip(xs, splits)]
    def block(k):                               # -> every layer's (per fold, stacked) r on block k of targets
        cols = slice(k * chunk, (k + 1) * chunk)
        trains, tests = [[zscore(y[rows, cols]) for rows in fold] for fold in zip(*splits)]
        return [fold_pearson([x @ ridge_solve(f, y_train)[0] for (x, f), y_train in zip(fits, trains)], tests)
                for fits in fitted]
    fitted = _map(layer, word_features.shape[1], jobs, progress, "layers: TR features")
    blocks = _map(block, -(-y.shape[1] // chunk), jobs, progress, "blocks of voxels")    # [block][layer]
    r = np.concatenate([[stacked for _, stacked in b] for b in blocks], axis=1)        # (n_layers, n_t)
    return r, np.concatenate([[per_fold for per_fold, _ in b] for b in blocks], axis=2)

def summarize_time_series(r, per_fold, subjects):
    """Aw & Toneva's aggregation of r (n_targets,) -> Score: the mean over each subject's voxels, then
    over subjects (plot_pearson.py); per_split: each fold's mean r, for inspection only."""
    if (subjects := np.asarray(subjects)).shape != r.shape:
        raise ValueError(f"subjects has shape {subjects.shape}, expected {r.shape}")
    per_subject = {str(s): float(r[subjects == s].mean()) for s in dict.fromkeys(subjects.tolist())}
    return Score(score=float(np.mean(list(per_subject.values()))), per_split=per_fold.mean(axis=1),
                 per_target=r, per_subject=per_subject, mad=_mad(list(per_subject.values())))

# -----------------------------------------------------------------------------
# 6. the paper's Futrell2018 (behaviour): surprisal against self-paced reading times, no fit
# (Brain-Score's Futrell2018-pearsonr: brain-score/language 1041be4 benchmarks/futrell2018/benchmark.py)
def mean_reader(times):
    """Mean over subjects of times (n_words, n_subjects) -> (n_words,), skipping NaN (not read) as
    xarray's mean does; a word nobody read is an error."""
    read = ~np.isnan(np.asarray(times, dtype=np.float64))
    if not read.any(axis=1).all():
        raise ValueError(f"{int((~read.any(axis=1)).sum())} words (the first is word "
                         f"{int(np.argmin(read.any(axis=1)))}) have no reading time from any subject")
    return np.where(read, times, 0.0).sum(axis=1) / read.sum(axis=1)

def reading_time_r(surprisal, times, word_in_sentence):
    """Signed Pearson r between surprisal (n_words,) and the mean reader's times (n_words, n_subjects)
    over the words not first in their sentence (word_in_sentence != 1), as the benchmark scores them.
    Brain-Score's score is |r| (1041be4 metrics/pearson_correlation)."""
    surprisal, word_in_sentence = np.asarray(surprisal, dtype=np.float64), np.asarray(word_in_sentence)
    if surprisal.shape != (len(times),) or word_in_sentence.shape != surprisal.shape:
        raise ValueError(f"surprisal {surprisal.shape} and word_in_sentence {word_in_sentence.shape} must "
                         f"both be ({len(times)},), one value per word of times {np.shape(times)}")
    keep, times = word_in_sentence != 1, np.asarray(times, dtype=np.float64)
    for missing, what in ((keep & ~np.isfinite(surprisal), "no surprisal (NaN or inf)"),
                          (keep & np.isnan(times).all(axis=1), "no reading time from any subject")):
        if missing.any():
            raise ValueError(f"{int(missing.sum())} scored words (the first is word "
                             f"{int(np.argmax(missing))}) have {what}; drop them")
    return float(pearson(surprisal[keep, None], mean_reader(times[keep])[:, None])[0])

def split_half_ceiling(times, n_splits=10, seed=0):
    """Brain-Score's SplitHalvesConsistency(num_splits=10, split_coordinate='subject_id'): per split,
    |r| between the mean readers of two random halves of the subjects, Spearman-Brown corrected
    (2c / (1 + c)), the median -> (ceiling, corrected (n_splits,), uncorrected (n_splits,))."""
    times = np.asarray(times, dtype=np.float64)
    n, rng = times.shape[1], np.random.RandomState(seed)
    if n < 2:
        raise ValueError(f"a split-half ceiling needs at least 2 subjects, got {n}")
    uncorrected = np.empty(n_splits)
    for k in range(n_splits):          # choice(subject_ids, n // 2, replace=False), as Brain-Score
        half = np.isin(np.arange(n), rng.choice(n, n // 2, replace=False))
        a, b = mean_reader(times[:, half]), mean_reader(times[:, ~half])       # nobody read a word: error
        uncorrected[k] = abs(pearson(a[:, None], b[:, None])[0])
    corrected = 2 * uncorrected / (1 + uncorrected)
    return float(np.median(corrected)), corrected, uncorrected

def behaviour_score(surprisal, rt):
    """Futrell2018-pearsonr of one model's surprisal (n_words,) on a data.ReadingTimes -> dict: the
    score |r|, the signed r, and the split-half ceiling computed from the data with its splits."""
    r = reading_time_r(surprisal, rt.times, rt.word_in_sentence)
    ceiling, corrected, uncorrected = split_half_ceiling(rt.times)
    return {"score": abs(r), "r": r, "ceiling": ceiling, "ceiling_splits": corrected.tolist(),
            "ceiling_uncorrected": uncorrected.tolist(), "n_words": int(np.sum(rt.word_in_sentence != 1))}

# -----------------------------------------------------------------------------
# 7. one (model, dataset): activations (cached by models.py) -> every layer scored -> one JSON record under
# a key of all that produced it, which needs no data and no model: a full cache renders the report alone.
PIPELINE_VERSION = 4      # bump when the scoring semantics change: older records are then recomputed
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
    jobs: int = 0                   # processes that score layers; 0: every core this process may use
    numerics = property(lambda self: "float64" if self.brainscore else "brainscore-2023")   # NUMERICS' key

# CPU seconds per layer on one core at the real shapes (tests/bench_cost.py): what a run projects from
LAYER_SECONDS = {"Pereira2018": 2.3, "Blank2014": 7.4, "Wehbe2014": 21.2, "Fedorenko2016": 0.9}

def projection(todo, info, jobs):
    """Print the projected scoring time of the (model, dataset) jobs (registry layer counts; unknown: 0) ->
    ({job: wall seconds on the cores used}, a progress bar over them whose ETA follows the real pace)."""
    n, layers = cores(jobs), {m: getattr(i, "n_layers", 0) and i.n_layers + 1 for m, i in info.items()}
    cost = {j: LAYER_SECONDS.get(j[1], 0.0) * layers[j[0]] / n for j in todo}
    total = sum(cost.values()) * n
    if cost:
        print(f"to compute: {len(cost)} (model, dataset) pairs; scoring projected at {total / 3600:.2g} "
              f"CPU-hours, ~{total / 3600 / n:.2g} h on {n} cores, plus the models' passes", file=sys.stderr)
    return cost, tqdm(total=total / n or None, desc="projected", unit="s", disable=not cost, leave=False)

def _hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

def record_place(info, dataset, settings, parts=None):
    """-> (path, key, what produced it) of info's record on dataset: the key hashes data.fingerprint (parts
    in memory: a hash of them), models.identity, --brainscore and the pipeline."""
    import models
    src = data.fingerprint(dataset, settings.data_dir, files=dict(settings.data_files).get(dataset)) if \
        parts is None else {"checksum": parts[0].checksum, "contents": _hash(repr([vars(p) for p in parts]))}
    made = {"pipeline": PIPELINE_VERSION, "dataset": dataset, "data": src, "brainscore": settings.brainscore,
            "model": models.identity(info, dtype=settings.dtype, brainscore=settings.brainscore)}
    key, folder = _hash(made), "".join(c if c.isalnum() or c in "._-" else "-" for c in info.name)
    return Path(settings.cache_dir, "scores", folder, f"{dataset}.{key}.json"), key, made

def read_record(path, key, model, dataset):
    """The record at path if whole, of (key, model, dataset), scores in range; else None and a warning
    naming the file and why, the file moved aside to be recomputed."""
    if not Path(path).exists():
        return None
    try:
        rec = json.loads(Path(path).read_text())
        found = (rec["key"], rec["pipeline"], rec["model"], rec["dataset"])
        if found != (key, PIPELINE_VERSION, model, dataset):
            raise ValueError(f"it is the record of {found[2]} on {found[3]}, pipeline {found[1]}")
        if not all(type(v) in (int, float) and -1 <= v <= 1
                   for v in [rec["score"]] + [v for p in rec["parts"].values() for v in p["layers"]]):
            raise ValueError("a score is not a number in [-1, 1]")
        if rec["parts"] and not 0 <= rec["best_layer"] < len(rec["layer_names"]) == len(rec["layers"]):
            raise ValueError(f"its best layer {rec['best_layer']} is not one of its {len(rec['layers'])}")
        return rec
    except (OSError, ValueError, KeyError, TypeError) as err:
        aside = data.unique(Path(f"{path}.corrupt"))
        os.replace(path, aside)
        warnings.warn(f"score record {path} skipped ({err}); moved aside to {aside.name}, recomputing")

def run_one(info, parts, settings):
    """One model on one dataset's parts (data.Dataset, or a data.ReadingTimes) -> the record's results."""
    return _scored(info, parts, _activations(info, parts, settings), settings)

def _activations(info, parts, settings):
    """The model's side of run_one, on the GPU: {part: activations}, or the surprisal of the words."""
    import models
    source = info.name if info.name in models.MODELS else info.hub_id     # registry key, path or hub id
    options = {"device": settings.device, "dtype": settings.dtype, "batch_size": settings.batch_size,
               "cache_dir": settings.cache_dir}
    if isinstance(parts[0], data.ReadingTimes):
        return models.surprisal(source, parts[0].words, **options)
    options["brainscore"] = settings.brainscore
    return {ds.name: models.extract(source, ds.texts, ds.groups, **options) if ds.word_tr is None
            else models.extract_words(source, ds.texts, window=ds.window, **options) for ds in parts}

def _scored(info, parts, acts, settings):
    """The scoring side of run_one, on the CPU cores (settings.jobs)."""
    import models
    if isinstance(parts[0], data.ReadingTimes):                            # behaviour: no layers, no fit
        return {"kind": "behaviour", "parts": {}, **behaviour_score(acts, parts[0])}
    source = info.name if info.name in models.MODELS else info.hub_id
    names, results = models.layer_names(source, brainscore=settings.brainscore), {}
    for ds in parts:
        a = acts[ds.name]
        if ds.word_tr is not None:              # a time series (Wehbe2014): Toneva & Wehbe's pipeline
            r, per_fold = cross_validate_time_series(a, ds, settings.jobs, progress=True)
            per_layer = [summarize_time_series(*pair, ds.subjects) for pair in zip(r, per_fold)]
        else:
            per_layer = score_layers(a, ds.responses, ds.subjects, ds.stimulus_ids, settings.numerics,
                                     progress=True, jobs=settings.jobs)
        names = names[:a.shape[1]]               # T5's word features: its encoder's layers only
        results[ds.name] = {"layers": [s.score for s in per_layer], "mad": [s.mad for s in per_layer],
                            "per_subject": [s.per_subject for s in per_layer]}
    best, mean = best_layer([p["layers"] for p in results.values()], names, embeddings=settings.brainscore)
    return {"kind": "brain" if parts[0].word_tr is None else "time series", "layer_names": names,
            "parts": results, "layers": mean.tolist(), "best_layer": best, "score": float(mean[best]),
            "mad": float(np.mean([p["mad"][best] for p in results.values()]))}

def run(infos, datasets, settings, out, loaded=None):
    """Every model (infos: [models.ModelInfo]) on every dataset, from its record or scored -> the tables,
    written with the figures to `out`. The data needed (or `loaded`, in memory) load before any model."""
    loaded, places, errors = dict(loaded or {}), {}, {}
    run_id = {"models": [i.name for i in infos], "datasets": list(datasets), "settings": {   # those that
        k: getattr(settings, k) for k in ("brainscore", "layer_choice", "dtype", "data_files")}}  # set scores
    check_out(out, run_id)
    for d in datasets:
        try:
            places |= {(i.name, d): record_place(i, d, settings, loaded.get(d)) for i in infos}
        except (data.DownloadError, ValueError) as err:
            errors[d] = err
    records = {job: read_record(path, key, *job) for job, (path, key, _) in places.items()}
    if None in records.values():                     # something to compute: the cache must take it
        Path(settings.cache_dir).mkdir(parents=True, exist_ok=True)
        if not os.access(settings.cache_dir, os.W_OK):
            raise ValueError(f"--cache-dir {settings.cache_dir} cannot be written; give another folder")
    for d in dict.fromkeys(d for (_, d), rec in records.items() if rec is None and d not in loaded):
        try:
            loaded[d] = data.load(d, settings.data_dir, files=dict(settings.data_files).get(d))
        except (data.DownloadError, ValueError) as err:
            errors[d] = err
    if errors:
        raise data.DownloadError("\n\n".join(f"{d}: {errors[d]}" for d in datasets if d in errors))
    info, todo = {i.name: i for i in infos}, [j for j, rec in records.items() if rec is None]
    cost, eta = projection(todo, info, settings.jobs)
    STOP.clear()
    with ThreadPoolExecutor(1) as scorer, eta:
        try:
            pending = None
            for job in todo + [None]:          # job k is scored on the CPU cores while the GPU runs job k + 1
                started = job and (job, scorer.submit(_scored, info[job[0]], loaded[job[1]], _activations(
                    info[job[0]], loaded[job[1]], settings), settings))
                if pending:                    # the previous job: its scores -> its record, written
                    (path, key, produced), done = places[pending[0]], pending[1].result()
                    records[pending[0]] = {"model": pending[0][0], "dataset": pending[0][1], "key": key,
                                           "pipeline": PIPELINE_VERSION, "produced": produced, **done}
                    data.write_atomic(path, json.dumps(records[pending[0]], indent=1))
                    eta.update(cost[pending[0]])
                pending = started
        except BaseException:
            STOP.set()                         # the scorer stops at its next layer
            raise
    records = list(records.values())
    synthetic = any(rec["produced"]["data"]["checksum"] == "synthetic" for rec in records)
    scores, layers = collect(records, settings)
    all_tables = tables(scores, layers, info, settings)
    versions = {m: getattr(sys.modules.get(m), "__version__", None) for m in ("numpy", "scipy", "torch")}
    config = {**run_id, "all settings": vars(settings), "pipeline": PIPELINE_VERSION, "synthetic": synthetic,
              "split_seed": 1, "versions": versions, "keys": [r["key"] for r in records]}
    write_report(out, all_tables, config, figures(scores, info, synthetic), synthetic)
    return all_tables

# -----------------------------------------------------------------------------
# 8. the paper's tables: alignment per model, tuned vs vanilla, correlations, ceilings
def collect(records, settings):
    """Records -> ({model: {dataset: score, "Average": mean over the PAPER_DATASETS run}}, {model: {dataset:
    layer}}). layer_choice "pereira": Brain-Score's datasets at Pereira2018's layer ("maximally scoring layer
    on Pereira2018-encoding", brain-score/language f9a403e models/t5/__init__.py, 91c88b1 models/llama/
    __init__.py). --brainscore: each part / its ceiling, clipped to [0, 1], averaged; behaviour / its own."""
    scores, layers, pereira = {}, {}, {r["model"]: r for r in records if r["dataset"] == "Pereira2018"}
    for rec in records:
        m, d, ref = rec["model"], rec["dataset"], pereira.get(rec["model"])
        if rec["kind"] == "behaviour":
            ceiling = rec["ceiling"] if settings.brainscore else 1.0
            scores.setdefault(m, {})[d] = float(np.clip(rec["score"] / ceiling, 0, 1))
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

def compare_pairs(scores, pairs, columns, headline=PAPER_DATASETS):
    """Instruction tuning over pairs [(tuned, vanilla)] -> dict: a row per pair (% change and difference
    per column; none where the vanilla score is <= 0, which a note says), each column's "mean", the
    "headline" (the mean of the `headline` columns' means), how many pairs "improved" on the Average,
    and a Wilcoxon signed-rank p of the tuned against the vanilla Average scores."""
    rows, left_out = [], 0
    for tuned, vanilla in pairs:
        if missing := [m for m in (tuned, vanilla) if m not in scores]:
            rows.append({"tuned": tuned, "vanilla": vanilla, "note": f"not run: {', '.join(missing)}"})
            continue
        both = [c for c in columns if c in scores[tuned] and c in scores[vanilla]]
        change = {c: float(relative_change(scores[tuned][c], scores[vanilla][c])) for c in both}
        rows.append(dict(tuned=tuned, vanilla=vanilla) | {c: v for c, v in change.items() if np.isfinite(v)}
                    | {f"{c} diff": scores[tuned][c] - scores[vanilla][c] for c in both})
        if bad := [c for c in both if not np.isfinite(change[c])]:
            left_out += 1
            rows[-1]["note"] = f"vanilla score <= 0 on {', '.join(bad)}: no relative change there"
    mean = {c: float(np.mean([r[c] for r in rows if c in r])) for c in columns if any(c in r for r in rows)}
    means, avg = [mean[d] for d in headline if d in mean], [r for r in rows if "Average" in r]
    out = {"rows": rows, "mean": mean, "n_pairs": len(avg), "left_out": left_out, "improved":
           sum(r["Average"] > 0 for r in avg), "headline": float(np.mean(means)) if means else float("nan")}
    if len(avg) >= 2:
        t, v = np.array([(scores[r["tuned"]]["Average"], scores[r["vanilla"]]["Average"]) for r in avg]).T
        out["wilcoxon_p"] = float(scipy.stats.wilcoxon(t, v).pvalue) if np.any(t != v) else 1.0
    return out

def correlations(scores, info):
    """Pearson r, p and Benjamini-Hochberg p_fdr of the Average with log10(parameters) (tuned; all) and
    MMLU, BBH, next-word-prediction loss (Table 7; tuned); info: {model: ModelInfo}; a row needs 3 models
    and a defined r."""
    rows = []
    for against, attr in (("log10(params), tuned", "params"), ("log10(params), all", "params"),
                          ("MMLU, tuned", "mmlu"), ("BBH, tuned", "bbh"), ("NWP loss, tuned", "nwp_loss")):
        pts = [(getattr(info.get(m), attr, None), s.get("Average")) for m, s in scores.items()
               if info.get(m) and (info[m].base or "all" in against)]
        pts = [(np.log10(x) if attr == "params" else x, y) for x, y in pts
               if x is not None and y is not None and np.isfinite(x)]
        if len(pts) >= 3 and np.isfinite((fit := scipy.stats.pearsonr(*np.array(pts).T)).pvalue):
            rows.append({"against": against, "n": len(pts), "r": float(fit.statistic), "p": fit.pvalue})
    for row, q in zip(rows, scipy.stats.false_discovery_control([r["p"] for r in rows]) if rows else ()):
        row["p_fdr"] = float(q)                                       # Benjamini-Hochberg
    return rows

def paper_value(model_info, dataset, scores=None):
    """The paper's score of a model on a dataset (Table 5; Table 9 for Futrell2018), or None; for the
    Average, None unless `scores` (ours for the model) hold all three datasets the paper averaged."""
    if model_info is None or (dataset == "Average" and not set(PAPER_DATASETS) <= set(scores or ())):
        return None
    value = model_info.futrell if dataset == "Futrell2018" else \
        dict(zip(PAPER_DATASETS + ("Average",), model_info.paper or ())).get(dataset)
    return value if value is not None and np.isfinite(value) else None

def tables(scores, layers, info, settings):
    """The report's tables -> {title: rows (list of dicts)}. info: {model: models.ModelInfo}."""
    run = {d for s in scores.values() for d in s} - {"Average"}
    columns = [d for d in PAPER_DATASETS if d in run] + sorted(run - set(PAPER_DATASETS))
    columns += ["Average"] if any("Average" in s for s in scores.values()) else []
    alignment = []
    for m in sorted(scores, key=lambda m: (np.nan_to_num(getattr(info.get(m), "params", 0.0)), m)):
        alignment.append({"model": m})
        for d in columns:
            alignment[-1][d], paper = scores[m].get(d), paper_value(info.get(m), d, scores[m])
            if paper is not None and d in scores[m] and not settings.brainscore:
                alignment[-1] |= {f"{d} paper": paper, f"{d} diff": scores[m][d] - paper}
        alignment[-1]["layers"] = " ".join(f"{d[0]}:{name}" for d, name in layers.get(m, {}).items())
    pairs, comparison = [(m, i.base) for m, i in info.items() if i.base], []
    published = {m: {d: paper_value(i, d, PAPER_DATASETS) for d in columns} for m, i in info.items()}
    for label, source in (("ours", scores), ("the paper", published)):      # the paper's on the same pairs
        cmp = compare_pairs({m: {d: v for d, v in s.items() if v is not None} for m, s in source.items()},
                            pairs, columns)
        comparison += [{k: _cell(v, "%") if k in columns else v for k, v in r.items()}
                       for r in cmp["rows"] if label == "ours"]
        if cmp["n_pairs"]:
            note = (f"headline {cmp['headline']:+.2f}%; {cmp['improved']}/{cmp['n_pairs']} improved; "
                    f"Wilcoxon p = {cmp.get('wilcoxon_p', np.nan):.3g}; {cmp['left_out']} with vanilla <= 0")
            comparison.append({"tuned": f"mean of {cmp['n_pairs']} pairs ({label})", "vanilla": "", **{
                c: _cell(v, "%") for c, v in cmp["mean"].items()}, "note": note})
    return {"Brain alignment per model" + (" (ceiling-normalised)" if settings.brainscore else ""): alignment,
            "Instruction tuning: tuned vs vanilla (relative change)": comparison,
            "Correlation of the Average score with model properties": correlations(scores, info)}

def _cell(value, unit=""):
    """A table cell: "-" for None, a per cent change as "+6.2%", else 0.123, +1.2 or 1e-08."""
    if not isinstance(value, float):
        return "-" if value is None else value
    if unit or abs(value) >= 1:
        return f"{value:+.1f}{unit}"
    return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2g}"

def markdown(rows):
    """A Markdown table from a list of dicts (the keys of all rows, in order, are the columns)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(str(_cell(r.get(c))) for c in cols) + " |" for r in rows])

# -----------------------------------------------------------------------------
# 9. the figure (matplotlib is optional, imported only here): the paper's tuned-vs-vanilla bars, ours
SYNTHETIC = "SYNTHETIC: tiny random-weight models and planted responses, not real results"

def figures(scores, info, synthetic=False):
    """{file name: Figure}: tuned_vs_vanilla.png, the paper's bars, a panel per dataset: each vanilla model
    (light), its tunes (dark), the paper's values (diamonds); a score that is not a number is left out and
    named. {} without pairs, or without matplotlib (said)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure       # drawn without pyplot: nothing global changes
    except ImportError:
        print("matplotlib is not installed: no figures (pip install matplotlib)", file=sys.stderr)
        return {}
    groups = {}
    for m in sorted(scores):
        if getattr(info.get(m), "base", None) in scores:
            groups.setdefault(info[m].base, [info[m].base]).append(m)
    size = {v: np.nan_to_num(getattr(info.get(v), "params", 0.0)) for v in groups}
    bars = [m for v in sorted(groups, key=lambda v: (size[v], v)) for m in groups[v]]
    columns = [d for d in PAPER_DATASETS + ("Futrell2018", "Average") if any(d in scores[m] for m in bars)]
    if not columns:
        return {}
    fig = Figure(figsize=(max(5.0, 0.35 * len(bars) + 2), 2.2 * len(columns) + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, d in zip(fig.subplots(len(columns), 1, squeeze=False)[:, 0], columns):
        for x, m in enumerate(bars):
            if np.isfinite(scores[m].get(d, np.nan)):
                ax.bar(x, scores[m][d], 0.8, color="C0", alpha=0.4 if m in groups else 1.0)
            if (paper := paper_value(info.get(m), d, scores[m])) is not None:
                ax.plot(x, paper, "D", color="k", ms=3.5)
        nan = [m for m in bars if d in scores[m] and not np.isfinite(scores[m][d])]
        ax.set_title(f"{d} (light: vanilla, dark: tuned, diamond: the paper)" + (
            f"; not a number, left out: {', '.join(nan)}" if nan else ""), loc="left", fontsize=9)
        ax.set_xticks(range(len(bars)), bars if d == columns[-1] else [""] * len(bars), rotation=90, size=8)
    if synthetic:
        fig.text(0.5, 0.5, "SYNTHETIC", ha="center", va="center", rotation=30, size=60, color="r", alpha=0.25)
        fig.suptitle(SYNTHETIC, color="r", fontsize=9)
    return {"tuned_vs_vanilla.png": fig}

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
                             f"{', '.join(earlier.get('models', []))}, ...): use another --out or delete it")
    if not os.access(out.resolve().parent if out.resolve().parent.exists() else Path.cwd(), os.W_OK):
        raise ValueError(f"--out {out}: {out.resolve().parent} cannot be written; give another folder")

def write_report(out, all_tables, config, figs, synthetic=False):
    """The tables (on stdout; Markdown, CSV, JSON), config.json and the figures, written into a new folder
    that then replaces `out` whole: a crash, Ctrl-C or a full disk leaves the earlier report as it was."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
    text = [f"# {SYNTHETIC}\n"] if synthetic else []
    try:
        for i, (title, rows) in enumerate(all_tables.items(), 1):
            text += [f"## {i}. {title}", markdown(rows) if rows else "(too few results for this table)", ""]
            (tmp / f"table{i}.json").write_text(json.dumps({"title": title, "rows": rows}, indent=1))
            with open(tmp / f"table{i}.csv", "w", newline="") as f:
                (writer := csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r)))).writeheader()
                writer.writerows(rows)
        (tmp / "tables.md").write_text("\n".join(text))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        for name, fig in figs.items():
            fig.savefig(tmp / name, format="png", dpi=120)
        check_out(out, {k: config[k] for k in ("models", "datasets", "settings")})   # again: a run at once?
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old"))
        if out.exists():
            os.replace(out, old / "report")      # this run's own earlier report: it goes once we are done
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(text))

def parse_args(argv=None):
    """The command line -> (model names, dataset names, Settings, out), every option checked."""
    p = argparse.ArgumentParser(description="Brain alignment of language models, as Aw et al. (COLM 2024) "
                                "computed it. A rerun over the cache renders the report again.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="the paper's 25 models, and Futrell2018 too")
    what.add_argument("--models", nargs="+", metavar="NAME", default=["t5-small", "flan-t5-small"],
                      help="registry names, hub ids or model folders")
    p.add_argument("--datasets", nargs="+", choices=list(data.DATASETS), help="default: the paper's three")
    p.add_argument("--brainscore", action="store_true", help="Brain-Score 2.3.0's semantics (README)")
    p.add_argument("--layer-choice", default="dataset", choices=["dataset", "pereira"],
                   help="each dataset's best layer, or Blank2014 at Pereira2018's (the registrations)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps, map (device_map='auto')")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache-dir", default=os.environ.get("BRAINALIGN_CACHE", "~/.cache/brainalign"))
    p.add_argument("--data-dir", help="where the dataset files are or go (env BRAINALIGN_DATA)")
    p.add_argument("--data-file", action="append", default=[], metavar="DATASET=PATH",
                   help="read DATASET from PATH without its checksum")
    p.add_argument("--out", default="results", help="folder for the tables and figures")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    import models
    names = [m for m, i in models.MODELS.items() if i.in_paper] if args.all else args.models
    datasets, files = args.datasets or list(PAPER_DATASETS) + (["Futrell2018"] if args.all else []), {}
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
    import models
    try:
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
