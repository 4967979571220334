"""Benchmark of the encoder, every number from one run on one machine, so the ratios are fair:

- one layer of a Pereira-shaped problem (384 and 243 stimuli x 4,096 features, 10 Brain-Score splits):
  cross_validate as --all runs it (the 2023 float32 fit through fit_predict_fast) and with --brainscore's
  float64 fit, against the exact call each stands for (fit_predict: one lstsq per split with every voxel
  a right-hand side, what Brain-Score's metric costs), timed on one split and scaled to 10, with the
  distance of that split's median r;
- a whole model: n_layers layers of 4,096 features on Pereira2018 (both parts) and Blank2014.
Not collected by pytest. Set OPENBLAS_NUM_THREADS=1 for one-thread numbers.

    python tests/bench_encoder.py            # ~13 minutes; --quick: 2,000 voxels and 4 layers (~1 minute)

Measured after the redesign (one BLAS thread, OpenBLAS SkylakeX, a shared 2-core machine, one run):

| one layer, 10 splits | cross_validate | the exact call | ratio | split 0's median r, fast - exact |
|---|---|---|---|---|
| Pereira 384 x 4,096 x 12,000, 2023 fit | 1.57 s | 45.3 s (4.53 s per split) | 29x | 3.1e-06 |
| Pereira 384, float64 (--brainscore) | 2.75 s | 74.5 s | 27x | 2.2e-16 |
| Pereira 243 x 4,096 x 8,000, 2023 fit | 0.73 s | 16.6 s | 23x | 2.5e-05 |
| Pereira 243, float64 | 1.17 s | 25.2 s | 22x | 1.2e-15 |

A 48-layer model with the 2023 fit: 70.5 s on Pereira 384 (12,155 voxels), 33.0 s on Pereira 243
(8,031), 339 s on Blank2014 (1,317 x 60: fewer targets than training stimuli, so the exact call
itself, 7 s per layer), 442 s in all.

Measured before the redesign (the Gram-matrix encoder it replaced, old `--numerics float64`, one BLAS
thread, best of several on a shared 2-core machine): one layer of Pereira 384 (12,000 voxels, 4.7
GFLOP) took 0.27 s (17.4 GFLOP/s, 47% of a float64 3000^3 matrix product's 36.8), Pereira 243 (8,000
voxels) 0.08 s; per-split numpy lstsq was 335x slower. The 2023 float32 fit, then the exact call,
took 7.4 s per split on Pereira 384 and 2.1 s on 243 (250x the float64 path). A 48-layer model with
the float64 fit: 15 s on Pereira 384 (12,155 voxels), 6 s on Pereira 243 (8,031), 98 s on Blank2014.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import brainalign as ba  # noqa: E402
from bench_fit import transformer_like  # noqa: E402   (features with a decaying spectrum and outliers)


def timed(f, *args, **kwargs):
    t0 = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - t0


def exact_split(x, y, split, numerics):
    """The definition on one split: fit_predict, then Pearson r per voxel."""
    train, test = np.sort(split[0]), np.sort(split[1])
    return ba.pearson(ba.fit_predict(x[train], y[train], x[test], numerics), y[test])


def main(quick=False):
    voxels = 2000 if quick else 12000
    for name, (n, p, t) in {"Pereira 384": (384, 4096, voxels),
                            "Pereira 243": (243, 4096, voxels * 2 // 3)}.items():
        x, y = transformer_like(n, p, t, seed=n)
        splits = ba.shuffle_splits(n)
        for numerics in ("brainscore-2023", "float64"):
            r, t_fast = timed(ba.cross_validate, x, y, splits, numerics)
            exact, t_exact = timed(exact_split, x, y, splits[0], numerics)
            gap = abs(np.median(r[0]) - np.median(exact))
            print(f"{name} {n}x{p}x{t}, {numerics}: cross_validate {t_fast:.2f} s per layer; the exact "
                  f"call {t_exact:.2f} s per split, {10 * t_exact:.1f} s per layer "
                  f"({10 * t_exact / t_fast:.0f}x); split 0's median r differs by {gap:.1e}", flush=True)
    n_layers = 4 if quick else 48
    parts = [(384, 12155 if not quick else 2000), (243, 8031 if not quick else 1300), (1317, 60)]
    seconds = []
    for n, t in parts:                     # Pereira2018 384 and 243, Blank2014
        x, y = transformer_like(n, 4096, t, seed=n)
        layers = np.broadcast_to(x[:, None], (n, n_layers, 4096))   # costs what n_layers distinct ones do
        seconds.append(timed(ba.score_layers, layers, y)[1])
    print(f"{n_layers} layers x 4096 features, the 2023 fit: " + ", ".join(
        f"{n}x{t} {s:.1f} s" for (n, t), s in zip(parts, seconds)) + f"; {sum(seconds):.1f} s in all")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
