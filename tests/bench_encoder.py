"""Benchmark: brainalign's encoder against the straightforward way (per split numpy.linalg.lstsq with
the same cutoff, then Pearson column by column, which is about what Brain-Score's metric costs), on
problems shaped like the paper's. Prints ratios measured in one run, and checks the scores agree.
Not collected by pytest.

    python tests/bench_encoder.py            # add --quick for a smaller voxel count
"""
import sys
import time
import tracemalloc
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


def problem(n, p, t, seed=0):
    """Features with a few strong directions (like transformer activations) and responses that
    carry a weak linear signal plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) @ np.diag(rng.uniform(0.1, 3, p)) + rng.normal(size=p) * 5
    y = x[:, :20] @ rng.normal(size=(20, t)) * 0.05 + rng.normal(size=(n, t))
    return x.astype(np.float32), y.astype(np.float32)


def timed(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t0


def main(quick=False):
    voxels = 2000 if quick else 12000
    rows = []
    for name, (n, p, t) in {"Pereira-shaped": (384, 4096, voxels),
                            "Blank-shaped": (1317, 1024, 60)}.items():
        x, y = problem(n, p, t)
        splits = ba.shuffle_splits(n)
        ours, t_ours = timed(lambda: ba.score(x, y, splits).score)
        ref, t_ref = timed(straightforward, x.astype(np.float64), y.astype(np.float64), splits)
        assert abs(ours - ref) < 1e-8, (name, ours, ref)
        rows.append((name, f"{n}x{p}x{t}", t_ref / t_ours, abs(ours - ref)))
        if name == "Pereira-shaped":
            per_layer_ref = t_ref
            tracemalloc.start()
            ba.score(x, y, splits)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()

    # all 33 layers of a 7B-sized model (hidden 4096) on the Pereira shape; the straightforward way
    # is timed on one layer above and multiplied by 33 (running it 33 times takes a quarter of an hour)
    rng = np.random.default_rng(1)
    n, p = 384, 4096
    layers = np.stack([problem(n, p, 1, seed=i)[0] for i in range(33)], axis=1)
    y = layers[:, 16, :20] @ rng.normal(size=(20, voxels)) * 0.05 + rng.normal(size=(n, voxels))
    _, t_layers = timed(ba.score_layers, layers, y, ba.shuffle_splits(n))
    rows.append(("33 layers, Pereira-shaped", f"33x{n}x{p}x{voxels}", 33 * per_layer_ref / t_layers,
                 float("nan")))

    print(f"{'problem':28s} {'shape':22s} {'speed-up':>9s} {'|score diff|':>13s}")
    for name, shape, ratio, diff in rows:
        print(f"{name:28s} {shape:22s} {ratio:8.1f}x {diff:13.1e}")
    print(f"peak memory of one Pereira-shaped layer (numpy allocations): {peak:.0f} MiB")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
