"""Benchmark of the encoder, every number from one run on one machine, so the ratios are fair:

- per Pereira-shaped problem (384 and 243 stimuli x 4,096 features, 10 Brain-Score splits): the
  straightforward way (per split numpy.linalg.lstsq with the same cutoff, then Pearson column by
  column, which is about what Brain-Score's metric costs), the per-split path (predict() on each
  split, one Gram matrix per split), and cross_validate's path (one Gram matrix per layer, every
  split's predictions in one product), with the scores checked to agree;
- the floating-point operations of cross_validate's path, its achieved GFLOP/s, and a large float64
  matrix product's GFLOP/s (the practical limit of this machine's BLAS), measured in turn;
- the cost of numerics="brainscore-2023" (Brain-Score's own float32 fit) on one split;
- a whole model: 48 layers of 4,096 features (T5-XXL-sized) on Pereira2018 (both parts) + Blank2014.

Not collected by pytest.

    python tests/bench_encoder.py            # add --quick for fewer voxels and layers
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import brainalign as ba  # noqa: E402


def straightforward(x, y, splits, cond=1e-6):
    """Fit per split with lstsq on the training means, predict, Pearson per column in a loop."""
    per_split = []
    for train, test in splits:
        mx, my = x[train].mean(0), y[train].mean(0)
        w = np.linalg.lstsq(x[train] - mx, y[train] - my, rcond=cond)[0]
        pred = (x[test] - mx) @ w + my
        r = [np.corrcoef(pred[:, j], y[test][:, j])[0, 1] for j in range(y.shape[1])]
        per_split.append(np.median(r))
    return float(np.mean(per_split))


def per_split(x, y, splits, cond=1e-6):
    """brainalign's per-split path: predict() (a Gram matrix and its factorisation) on each split."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    r = np.stack([ba.pearson(ba.predict(x[tr], y[tr], x[te], cond), y[te]) for tr, te in splits])
    return ba.summarize(r).score


def problem(n, p, t, seed=0):
    """Features with a few strong directions (like transformer activations) and responses that
    carry a weak linear signal plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) @ np.diag(rng.uniform(0.1, 3, p)) + rng.normal(size=p) * 5
    y = x[:, :20] @ rng.normal(size=(20, t)) * 0.05 + rng.normal(size=(n, t))
    return x.astype(np.float32), y.astype(np.float32)


def flops(n, p, t, splits):
    """Floating-point operations of cross_validate's Gram path when every split is full rank (the
    usual case): the Gram matrix (a symmetric product, n^2 p), per split the inverse of the
    training Gram matrix by its Cholesky factor (1/3 + 2/3 n_train^3) and its product with the cross
    Gram matrix (2 n_train^2 n_test), one product of the stacked operators with Y (2 n_test n t over
    all splits), and Pearson (about 8 operations per predicted value)."""
    total = n * n * p
    for train, test in splits:
        total += len(train) ** 3 + 2 * len(train) ** 2 * len(test)
        total += 2 * len(test) * n * t + 8 * len(test) * t
    return total


def timed(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t0


def gemm_gflops(size=3000, repeats=3):
    """The best of a few float64 size x size matrix products: what the BLAS reaches here."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(size, size)), rng.normal(size=(size, size))
    best = min(timed(np.matmul, a, b)[1] for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def model_time(n_layers, p, parts):
    """Seconds to score n_layers layers of p features on each (n_stimuli, n_targets) part."""
    seconds = []
    for n, t in parts:
        rng = np.random.default_rng(n)
        layers = rng.normal(size=(n, n_layers, p)).astype(np.float32)
        y = layers[:, n_layers // 2, :20] @ rng.normal(size=(20, t)) * 0.05 + rng.normal(size=(n, t))
        seconds.append(timed(ba.score_layers, layers, y, ba.shuffle_splits(n))[1])
    return seconds


def best_rates(x, y, splits, repeats=3):
    """(seconds of cross_validate's path, matrix product GFLOP/s), each the best of `repeats` runs
    taken in turn, so that other jobs on a shared machine slow both alike."""
    t_best, limit = float("inf"), 0.0
    for _ in range(repeats):
        limit = max(limit, gemm_gflops(repeats=1))
        t_best = min(t_best, timed(ba.cross_validate, x, y, splits)[1])
    return t_best, limit


def main(quick=False):
    voxels = 2000 if quick else 12000
    for name, (n, p, t) in {"Pereira 384": (384, 4096, voxels),
                            "Pereira 243": (243, 4096, voxels * 2 // 3)}.items():
        x, y = problem(n, p, t)
        splits = ba.shuffle_splits(n)
        result, t_ours = timed(ba.score, x, y, splits)
        ours = result.score
        t_best, limit = best_rates(x, y, splits)
        gflop = flops(n, p, t, splits) / 1e9
        print(f"{name} {n}x{p}x{t}: cross_validate {t_ours:.3f} s (best of 3: {t_best:.3f} s), "
              f"{gflop:.2f} GFLOP, {gflop / t_best:.1f} GFLOP/s = {gflop / t_best / limit:.0%} of a "
              f"float64 3000^3 matrix product's {limit:.1f} GFLOP/s", flush=True)
        split_score, t_split = timed(per_split, x, y, splits)
        print(f"  per-split path {t_split:.3f} s ({t_split / t_ours:.1f}x cross_validate's)", flush=True)
        ref, t_ref = timed(straightforward, x.astype(np.float64), y.astype(np.float64), splits)
        print(f"  per-split lstsq {t_ref:.1f} s ({t_ref / t_ours:.0f}x); |score diff| "
              f"{abs(ours - ref):.1e} (lstsq), {abs(ours - split_score):.1e} (per-split)", flush=True)
        assert abs(ours - ref) < 1e-8 and abs(ours - split_score) < 1e-10, (name, ours, ref)
        _, t_2023 = timed(ba.cross_validate, x, y, splits[:1], 1e-6, "brainscore-2023")
        print(f"  numerics='brainscore-2023': {t_2023:.1f} s for one split (float32 lstsq, every "
              f"voxel a right-hand side), about {10 * t_2023 / t_ours:.0f}x cross_validate's 10", flush=True)

    n_layers = 8 if quick else 48
    parts = [(384, 12155), (243, 8031), (1317, 60)]       # Pereira2018 384 and 243, Blank2014
    seconds = model_time(n_layers, 4096, parts)
    print(f"{n_layers} layers x 4096 features: " + ", ".join(
        f"{n}x{t} {s:.1f} s" for (n, t), s in zip(parts, seconds)) + f"; {sum(seconds):.1f} s in all")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
