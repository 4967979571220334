"""Benchmark: what scoring `python brainalign.py --all` costs, from one layer of each dataset timed at its
real shape on one core, extrapolated to the paper's 25 models (their layer counts, embeddings included);
and which way of using every core is faster for whole layers, as ratios in one run. Not collected by pytest.

    python tests/bench_cost.py           # ~3 minutes; --before: also the paths before the speed work (~10)

Shapes: 4,096 features (LLaMA-7B's width); Pereira2018 384 x 12,155 and 243 x 8,031 voxels, 10 splits;
Blank2014 1,317 x 60 fROIs; Fedorenko2016 416 x 97 electrodes; Wehbe2014 1,211 TRs x 8 subjects x
30,000 voxels, 4 folds (Toneva's TR features, PCA and ridge), 4 layers at once. The models' forward passes are counted apart,
as tokens x 2 x parameters FLOPs, at an assumed 30% of an H100's 989 bf16 TFLOP/s.
brainalign.LAYER_SECONDS holds this script's per-layer seconds; a run projects its duration from them.

Measured (December 2026, a shared 2-core Xeon with AVX-512, OpenBLAS, one run of --before, load < 1):
  one layer, one core, before -> after the speed work: Pereira 384 44.4 -> 1.56 s (28.5x), Pereira 243
  17.6 -> 0.72 s (24.4x), Blank2014 7.9 -> 7.43 s and Fedorenko2016 1.0 -> 0.93 s (fewer targets than
  stimuli: the exact call either way), Wehbe2014 183.6 -> 21.2 s (8.7x; per layer, 4 layers scored
  together: PCA ~4.7 s, then per 40,000 voxels ridge ~1.8 s, Pearson ~0.55 s, z-scores ~0.3 s shared by
  the 4 layers). --all, 25 models, 1,041 layers each dataset: Pereira2018 0.66, Blank2014 2.15,
  Wehbe2014 6.13 CPU-hours, 8.94 in all (~73 before); forward passes ~192,000 tokens per model, 6.9e16
  FLOP, ~4 GPU-minutes at 30% of an H100. 4 layers of Pereira 243 on the 2 vCPUs (wall, against one
  thread): forked one-thread workers 1.98x faster, BLAS threads 0.40x.
"""
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import brainalign as ba  # noqa: E402
import data  # noqa: E402
import models  # noqa: E402


def brain(n, targets, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 4096)).astype(np.float32)
    y = (x[:, 0, :20] @ rng.normal(size=(20, targets)) + 3 * rng.normal(size=(n, targets))).astype(np.float32)
    return x, y, np.array([f"s{i}" for i in range(n)])


def wehbe(voxels, seed=0):
    """A Wehbe2014-shaped dataset: 5,176 words over 1,351 TRs, Toneva's trimmed runs, 8 subjects."""
    rng = np.random.default_rng(seed)
    runs = [(20, 331), (356, 671), (696, 1005), (1030, 1336)]              # 4 runs, 20/15-TR trims
    sample_tr = np.concatenate([np.arange(a, b) for a, b in runs])[:1211]
    word_tr = np.linspace(0, 1350, 5176).astype(int)                      # 3-4 words in every TR
    y = rng.normal(size=(len(sample_tr), voxels)).astype(np.float32)
    ds = data.Dataset("Wehbe2014", [f"w{i}" for i in range(5176)], ["c9"] * 5176, y,
                      np.repeat(list(data.WEHBE_SUBJECTS), voxels // 8), n_folds=4, gap=5, word_tr=word_tr,
                      sample_tr=sample_tr, n_tr=1351, first_word=20, window=20)
    # features with a language model's steep spectrum (a few dominant directions): PCA's ARPACK converges in
    # ~1 s per fold; on white noise it takes 10-20x longer
    feats = (rng.normal(size=(5176, 200)) * np.arange(1, 201) ** -0.5) @ rng.normal(size=(200, 4096))
    return (feats + 0.05 * rng.normal(size=feats.shape)).astype(np.float32)[:, None], ds


def seconds(f, clock=time.process_time):
    """CPU seconds of this process (one thread: robust to other jobs on the machine), or wall seconds."""
    t0 = clock()
    f()
    return clock() - t0


def one_layer_each(before=False, wehbe_layers=4):
    """{dataset: CPU seconds of one layer on one core} at the real shapes. Wehbe2014 scores a model's layers
    together (they share the responses' z-scores): `wehbe_layers` layers are timed, and divided. before: as
    brainalign scored before the speed work (the exact fit_predict on every split; previous_time_series)."""
    per_layer, fast = {}, ba.fit_predict_fast
    ba.fit_predict_fast = ba.fit_predict if before else fast
    try:
        with threadpool_limits(1):
            for name, n, t in (("Pereira2018", 384, 12155), ("Pereira2018 243", 243, 8031),
                               ("Blank2014", 1317, 60), ("Fedorenko2016", 416, 97)):
                x, y, ids = brain(n, t)
                per_layer[name] = seconds(lambda: ba.score_layers(x, y, ids=ids, jobs=1))
            acts, ds = wehbe(240000)
            if before:
                per_layer["Wehbe2014"] = seconds(lambda: previous_time_series(acts[:, 0], ds))
            else:
                layers = np.repeat(acts, wehbe_layers, axis=1)
                per_layer["Wehbe2014"] = seconds(lambda: ba.cross_validate_time_series(layers, ds, 1)) / wehbe_layers
    finally:
        ba.fit_predict_fast = fast
    return per_layer


def previous_time_series(word_features, ds, chunk=20000):
    """brainalign's Wehbe2014 scoring before the speed work, one layer: per block of 20,000 voxels and fold,
    x.std's z-scores, the ridge that predicts every penalty (bench_ridge.previous_ridge_cv), Pearson r per
    fold and on the stacked folds."""
    from bench_ridge import previous_ridge_cv

    def zscore(x):
        x = np.asarray(x, dtype=np.float64)
        sd = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    splits, y = ba.kfold_splits(ds.responses.shape[0], ds.n_folds, ds.gap), ds.responses
    feats = [ba.tr_features(word_features, ds, train) for train, _ in splits]
    for lo in range(0, y.shape[1], chunk):
        preds, reals = [], []
        for x, (train, test) in zip(feats, splits):
            preds.append(zscore(x[test]) @ previous_ridge_cv(zscore(x[train]), zscore(y[train, lo:lo + chunk]))[0])
            reals.append(zscore(y[test, lo:lo + chunk]))
            ba.pearson(preds[-1], reals[-1])
        ba.pearson(np.concatenate(preds), np.concatenate(reals))


def main(before=False):
    per_layer = one_layer_each()
    if before:
        old = one_layer_each(before=True)
        print("one layer, one core, before -> after (s):", {d: f"{old[d]:.1f} -> {s:.2f} ({old[d] / s:.1f}x)"
                                                           for d, s in per_layer.items()})
    per_layer["Pereira2018"] += per_layer.pop("Pereira2018 243")
    print("one layer, one core (s):", {d: round(s, 2) for d, s in per_layer.items()})
    paper = [i for i in models.MODELS.values() if i.in_paper]
    cpu = {d: sum(s * (i.n_layers + 1) for i in paper) for d, s in per_layer.items() if d != "Fedorenko2016"}
    print(f"scoring --all ({len(paper)} models, {sum(i.n_layers + 1 for i in paper)} layers each dataset): "
          + ", ".join(f"{d} {s / 3600:.2f}" for d, s in cpu.items()) + f"; total {sum(cpu.values()) / 3600:.2f} CPU-hours")
    tokens = {"Pereira2018": 627 * 25, "Blank2014": 1317 * 20, "Wehbe2014": 5176 * 25, "Futrell2018": 10256 * 2}
    flops = sum(2 * i.params * sum(tokens.values()) for i in paper)
    print(f"forward passes: ~{sum(tokens.values()):,} tokens per model, {flops:.2g} FLOP in all -> "
          f"~{flops / (0.3 * 989e12) / 60:.1f} GPU-minutes at 30% of an H100's bf16 peak (plus loading)")
    x, y, ids = brain(243, 8031)                  # whole layers on every core: which way is faster (wall)
    xs, wall = np.repeat(x, 4, axis=1), time.perf_counter

    def serial():
        return [ba.summarize(ba.cross_validate(xs[:, i], y, ba.shuffle_splits(243), ids=ids)) for i in range(4)]
    with threadpool_limits(1):
        one = seconds(serial, wall)
    blas, pool = seconds(serial, wall), seconds(lambda: ba.score_layers(xs, y, ids=ids), wall)
    print(f"4 layers of Pereira 243 on {ba.cores()} cores, wall: one thread {one:.1f} s; BLAS threads "
          f"{one / blas:.2f}x faster; forked workers, one thread each (brainalign) {one / pool:.2f}x faster")


if __name__ == "__main__":
    main(before="--before" in sys.argv)
