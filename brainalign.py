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


def pearson(a, b):
    """Pearson r between matching columns of a and b, both (n, n_targets) -> (n_targets,).
    A column with zero variance on either side has no defined r: it scores 0 (and warns), so it can
    neither poison a median with NaN nor inflate it."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
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
    return best_of([score(layers[:, i], responses, splits, subjects, cond)
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


def score_part(acts, ds, cv="dataset", cond=1e-6, progress=True):
    """Every layer of acts (n_stimuli, n_layers, n_features) scored on one dataset part -> LayerScores."""
    splits = splits_for(ds, cv)
    if ds.word_tr is None:
        return score_layers(acts, ds.responses, splits, ds.subjects, cond, progress)
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
    path = Path(args.cache_dir, "scores", safe, f"{dataset}.cv-{args.cv}.cutoff-{args.cutoff:g}.json")
    if path.exists():
        return json.loads(path.read_text()) | {"cached": True}
    import models
    rec = {"model": model, "dataset": dataset, "cv": args.cv, "cutoff": args.cutoff, "parts": {},
           "base": getattr(info, "base", None), "params": getattr(info, "params", None),
           "layer_names": models.layer_names(source or model, args.model_dir)}   # what the indices are
    for ds in parts:
        acts = models.extract(source or model, ds.texts, ds.groups, context_window=ds.context_window,
                              device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                              cache_dir=args.cache_dir, dataset_key=ds.name, model_dir=args.model_dir)
        ls = score_part(acts, ds, args.cv, args.cutoff)
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
                "layer_names": rec.get("layer_names") or []}
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
            [p["mad"] / (p["ceiling"] if normalized else 1.0) for p in rec["parts"].values()]))
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
                      help="offline, a few minutes on a CPU: tiny random models, synthetic responses")
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
    p.add_argument("--cutoff", type=float, default=1e-6,
                   help="relative singular-value cutoff of the least-squares fit (sklearn >= 1.9: "
                        "1e-6; 2.2e-16, machine epsilon, is what older sklearn used)")
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
            banner = DEMO_BANNER
            write_atomic(Path(args.cache_dir, "SYNTHETIC"), banner)   # --report over this cache says so too
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
                # the demo's responses are planted: a real dataset's noise ceiling says nothing about them
                ceiling = "" if args.demo else f", ceiling {rec['ceiling']:.3f}"
                print(f"{model} | {dataset}: {rec['score']:.4f} (MAD over subjects {rec['mad']:.4f}, "
                      f"best layer {rec['best_layer']}{ceiling})"
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
        marker = Path(args.cache_dir, "SYNTHETIC")
        banner = marker.read_text() if marker.exists() else ""
        pattern = f"*/*.cv-{args.cv}.cutoff-{args.cutoff:g}.json"
        records = [json.loads(f.read_text()) for f in sorted(Path(args.cache_dir, "scores").glob(pattern))]
        if not records:
            print(f"no scores under {args.cache_dir}/scores for --cv {args.cv} --cutoff {args.cutoff:g}: "
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
    figures(args.out, records, scores, info, list(all_tables.values())[2], args.normalize)
    return all_tables


def _bar(it, progress, desc):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, leave=False)


if __name__ == "__main__":
    main()
