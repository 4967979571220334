"""Benchmark: Wehbe2014's per-voxel cross-validated ridge (brainalign.ridge_cv) at the real shape, one
thread: 1,211 TRs x 40 features x 30,000 voxels, 4 contiguous outer folds with 5-TR gaps, 10 inner
folds, 16 penalties. Three implementations in one run, as ratios:
  new       brainalign.ridge_cv = ridge_solve(ridge_factors(x), y) (issue 18: every penalty's validation
            error from (p, n_targets) products, partial fractions; no (n_val, n_targets) predictions);
  old       brainalign's previous ridge_cv (one SVD per inner fold, predictions for every penalty),
            kept below as previous_ridge_cv;
  Toneva    the transcription of cross_val_ridge(method='plain') in tests/test_wehbe.py, timed on a
            subset of the voxels and scaled (its cost is linear in the voxel count).
and the new one against its limit: its FLOPs at the peak rate of a square float64 GEMM and the
bytes it must read (y twice: x_val^T y_val and the squares) at the bandwidth of a read pass; and its
FLOPs at the rate BLAS reaches on each of its product shapes (x_val^T y_val: (41, 91) x (91, 512); the
(40, 40) x (40, 512) rotations; the (16, 80) x (80, 512) cost product), all measured in the same run.
Penalties and weights are compared on the subset. Not collected by pytest.

Measured (December 2026, 2 vCPUs of a Xeon with AVX-512 shared with other jobs, OpenBLAS 0.3.31; CPU
seconds of one thread summed over the 4 outer folds; ratios within one run):
  new 1.18 s (24.7 GFLOP, reads 1.74 GB), old 13.9 s (233 GFLOP; 11.8x new), Toneva 61 s scaled (52x);
  limit 0.35 s (71 GFLOP/s square GEMM, 14.3 GB/s) -> new = 3.4x that limit. Its products at their own
  shapes: x_val^T y_val (36% of the FLOPs) 40 GFLOP/s, the (40, 40) rotations (50%) 50 GFLOP/s, the
  cost product (12%) 58 GFLOP/s: at those rates the limit is 0.53 s and new = 2.2x. Two later runs, the
  machine less loaded: new 1.01 and 0.95 s, 3.2x and 3.0x the square-GEMM limit, 1.8x and 1.9x the
  limit at its shapes' rates. Same penalty as Toneva on 4000/4000 voxel-folds, max |weight diff| 2.7e-15.
  In the pipeline ridge_factors runs once per layer and fold, not per block of voxels: ridge_solve alone
  on 908 x 8,192 is 1.38x faster than ridge_cv at commit f5ca721, which factored x again for every block
  (82 ms against 114 ms).

    python tests/bench_ridge.py            # --quick: 3,000 voxels; --candidate FILE.py: its ridge_cv as new
"""
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import brainalign as ba  # noqa: E402
from test_wehbe import toneva_cross_val_ridge  # noqa: E402


def previous_ridge_cv(x, y, penalties=ba.RIDGE_PENALTIES, n_splits=10):
    """brainalign's ridge_cv before issue 18: thin SVD per inner fold, predictions (a * d) @ b for
    every penalty, 1 - R^2 as Toneva's R2 (nan_to_num)."""
    cost = np.zeros((len(penalties), y.shape[1]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for train, val in ba.inner_folds(len(x), n_splits):
            u, s, vt = np.linalg.svd(x[train], full_matrices=False)
            a, b, real = x[val] @ vt.T, u.T @ y[train], y[val]
            var = real.var(axis=0)
            for i, pen in enumerate(penalties):
                resid = real - (a * (s / (s ** 2 + pen))) @ b
                cost[i] += 1 - np.nan_to_num(1 - (resid * resid).mean(axis=0) / var)
    best = np.argmin(cost, axis=0)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return vt.T @ (s[:, None] / (s[:, None] ** 2 + penalties[best]) * (u.T @ y)), penalties[best]


def counts(n, p, t, k=10, n_pen=16):
    """FLOPs for one (n, p) x (n, t) call: {kind of product: FLOPs of the new ridge_cv}, the old one's total,
    and the bytes the new one reads."""
    n_val = n / k
    new = {"x_val^T y_val": 2 * n * (p + 1) * t,          # every block, with its column sums
           "(p, p) x (p, t)": k * 6 * p * p * t + 4 * p * p * t,   # per fold c, V^T x^T y, H b; the refit
           "(n_pen, 2p) x (2p, t)": k * 4 * n_pen * p * t,         # [g^2 G_kk, 2g] x [b^2, b (Hb - c)]
           "elementwise": k * (4 * p * t + 3 * n_pen * t) + 2 * n * t}   # rhs, cost; sums of squares
    old = (k * (2 * (n - n_val) * p * t + n_pen * (2 * n_val * p * t + 4 * n_val * t))   # U^T y; predictions
           + 2 * n * p * t + 2 * p * p * t)                                               # refit
    return new, old, 2 * n * t * 8


def best_of(f, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        out = f()
        times.append(time.process_time() - t0)
    return min(times), out


def main(quick=False, candidate=None):
    new_cv = ba.ridge_cv
    if candidate:
        spec = importlib.util.spec_from_file_location("candidate", candidate)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        new_cv = module.ridge_cv
    n, p, t, subset = 1211, 40, 3000 if quick else 30000, 1000
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, p)) @ np.diag(np.linspace(2, 0.1, p))
    y = x @ rng.normal(size=(p, t)) * np.geomspace(0.3, 1e-3, t) + rng.normal(size=(n, t))
    y = y.astype(np.float32)                                   # (1211, 30000), as data.py stores it
    square = rng.normal(size=(2000, 2000))
    new = old = theirs = flops_old = nbytes = 0.0
    agree, worst, flops = 0, 0.0, {}
    with threadpool_limits(1):
        peak = 2 * 2000 ** 3 / best_of(lambda: square @ square)[0]
        width, n_val = 512, 908 // 10           # ridge_solve's block of targets; an inner validation block
        rate = {"elementwise": peak}            # each product's own shape, 100 times: FLOP/s
        for kind, (a, b) in {"x_val^T y_val": ((p + 1, n_val), (n_val, width)), "(p, p) x (p, t)": ((p, p), (p, width)),
                             "(n_pen, 2p) x (2p, t)": ((16, 2 * p), (2 * p, width))}.items():
            a, b = rng.normal(size=a), rng.normal(size=b)
            rate[kind] = 2 * a.size * b.shape[1] * 100 / best_of(lambda: [a @ b for _ in range(100)])[0]
        ys = ba.zscore(y)
        bandwidth = ys.nbytes / best_of(lambda: np.add.reduce(ys, axis=0))[0]
        for train, _ in ba.kfold_splits(n, 4, gap=5):
            xtr, ytr = ba.zscore(x[train]), ba.zscore(y[train])
            dt, (w, lam) = best_of(lambda: new_cv(xtr, ytr))
            new += dt
            old += best_of(lambda: previous_ridge_cv(xtr, ytr), repeat=1)[0]
            dt, (w_ref, lam_ref) = best_of(lambda: toneva_cross_val_ridge(xtr, ytr[:, :subset]), repeat=1)
            theirs += dt * t / subset
            agree += int((lam[:subset] == lam_ref).sum())
            worst = max(worst, float(np.abs(w[:, :subset] - w_ref).max()))
            f_new, f_old, b_new = counts(len(train), p, t)
            flops = {kind: flops.get(kind, 0) + f for kind, f in f_new.items()}
            flops_old, nbytes = flops_old + f_old, nbytes + b_new
    flops_new = sum(flops.values())
    limit = max(flops_new / peak, nbytes / bandwidth)
    shaped = sum(f / rate[kind] for kind, f in flops.items())       # each product at its own shape's rate
    print(f"one layer: {n} TRs x {p} features x {t} voxels, 4 outer x 10 inner folds, 16 penalties, "
          f"1 thread, CPU s summed over the outer folds")
    print(f"  new ridge_cv          {new:8.2f} s   {flops_new / 1e9:6.1f} GFLOP, reads {nbytes / 1e9:.2f} GB")
    print(f"  old ridge_cv          {old:8.2f} s   {flops_old / 1e9:6.1f} GFLOP   ({old / new:.1f}x new)")
    print(f"  Toneva (scaled)       {theirs:8.2f} s   ({subset} voxels timed, x {t / subset:g}; "
          f"{theirs / new:.1f}x new)")
    print(f"  limit of new          {limit:8.2f} s   (peak {peak / 1e9:.0f} GFLOP/s square GEMM, "
          f"{bandwidth / 1e9:.1f} GB/s read) -> new = {new / limit:.1f}x the limit")
    print("  its products, at their own shapes: " + "; ".join(
        f"{kind} {flops[kind] / flops_new:.0%} of the FLOPs at {rate[kind] / 1e9:.0f} GFLOP/s" for kind in flops
        if kind != "elementwise") + f" (elementwise {flops['elementwise'] / flops_new:.0%}, counted at the peak)")
    print(f"  limit at those rates  {shaped:8.2f} s   -> new = {new / shaped:.1f}x that limit")
    print(f"  same penalty as Toneva on {agree}/{4 * subset} voxel-folds; max |weight diff| {worst:.1e}")


if __name__ == "__main__":
    arg = sys.argv[sys.argv.index("--candidate") + 1] if "--candidate" in sys.argv else None
    main(quick="--quick" in sys.argv, candidate=arg)
