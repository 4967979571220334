"""Benchmark: Wehbe2014's per-voxel cross-validated ridge (brainalign.ridge_cv) against a direct
transcription of Toneva & Wehbe's cross_val_ridge(method='plain') (the one in tests/test_wehbe.py),
on one layer shaped like Wehbe2014: 1,211 TRs x 40 features x 30,000 voxels, 4 contiguous folds
with 5-TR gaps, ridge refitted in each. The transcription runs on a subset of the voxels and its
time is scaled to all of them (its cost is linear in the voxel count); the two agree on that
subset (chosen penalties, predictions). Not collected by pytest.

    python tests/bench_ridge.py            # --quick: 3,000 voxels
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import brainalign as ba  # noqa: E402
from test_wehbe import toneva_cross_val_ridge  # noqa: E402


def main(quick=False):
    n, p, t, subset = 1211, 40, 3000 if quick else 30000, 1000
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, p)) @ np.diag(np.linspace(2, 0.1, p))
    y = x @ rng.normal(size=(p, t)) * np.geomspace(0.3, 1e-3, t) + rng.normal(size=(n, t))
    y = y.astype(np.float32)                                  # (1211, 30000), as data.py stores it
    splits = ba.kfold_splits(n, 4, gap=5)
    ours = theirs = ours_cpu = theirs_cpu = 0.0
    agree, worst = 0, 0.0
    for train, test in splits:
        xtr, xte, ytr = ba.zscore(x[train]), ba.zscore(x[test]), ba.zscore(y[train])
        t0, c0 = time.perf_counter(), time.process_time()
        w, lam = ba.ridge_cv(xtr, ytr)
        pred = xte @ w
        ours += time.perf_counter() - t0
        ours_cpu += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        w_ref, lam_ref = toneva_cross_val_ridge(xtr, ytr[:, :subset])
        pred_ref = xte @ w_ref
        theirs += (time.perf_counter() - t0) * t / subset
        theirs_cpu += (time.process_time() - c0) * t / subset
        agree += int((lam[:subset] == lam_ref).sum())
        worst = max(worst, float(np.abs(pred[:, :subset] - pred_ref).max()))
    print(f"one layer, {n} TRs x {p} features x {t} voxels, 4 folds:")
    print(f"  brainalign.ridge_cv       {ours:8.2f} s wall, {ours_cpu:8.2f} s CPU (all threads)")
    print(f"  transcription (scaled)    {theirs:8.2f} s wall, {theirs_cpu:8.2f} s CPU "
          f"({subset} voxels timed, x {t / subset:g})")
    print(f"  speed-up                  {theirs / ours:8.1f}x wall, {theirs_cpu / ours_cpu:5.1f}x CPU")
    print(f"  same penalty on {agree}/{4 * subset} voxel-folds; max |prediction diff| {worst:.1e}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
