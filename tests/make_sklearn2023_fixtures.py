"""Make tests/fixtures/sklearn15_linear_predictivity.npz: what Brain-Score's 2023 metric computed on a
few small fixed problems, with the scikit-learn of that time, for test_encoder.py to compare
brainalign's numerics="brainscore-2023" against.

The metric is brain-score/language 1041be4 (the paper's fork, Aug 2023),
brainscore_language/metrics/linear_predictivity/metric.py `linear_pearsonr`: sklearn
ShuffleSplit(10, train_size=0.9, random_state=1) over stimuli; per split, the rows sorted by
stimulus_id (XarrayRegression.fit), LinearRegression().fit on float32 activations and float64 targets,
.predict on the test rows, scipy.stats.pearsonr per target (XarrayCorrelation); the median over
targets, the mean over splits. Here stimulus_id is the zero-padded row index, so sorting by it keeps
the stored order, and only the first 3 splits are kept, so the test stays fast.

Needs scikit-learn <= 1.5 (its LinearRegression casts y to X's dtype and calls scipy.linalg.lstsq
with cond=None); it was run with scikit-learn 1.5.2, numpy 1.26.4, scipy 1.17.1 (OpenBLAS 0.3.30,
Haswell kernels, limited to 1 thread), Python 3.11:

    python3 -m venv /tmp/sk15 && /tmp/sk15/bin/pip install scikit-learn==1.5.2 "numpy<2" scipy
    /tmp/sk15/bin/python tests/make_sklearn2023_fixtures.py

The file stores the seeds and shapes (the test regenerates X and Y from them with problem()), a
checksum of each problem's data, the per-split per-target r, the scores, the versions used and the
BLAS kernel: float32 rounding, and so these r, depend on the kernel and the thread count (measured:
up to 8e-3 in r and 5e-4 in the score for the first two problems, 0.2 and 2e-2 for the third).
"""
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sklearn15_linear_predictivity.npz"
N_SPLITS = 3
# name: (seed, n_stimuli, n_features, n_targets, kind)
PROBLEMS = {"pereira243": (243, 243, 4096, 100, "plain"),
            "pereira384_outliers": (384, 384, 4096, 100, "outliers"),
            "pereira243_lowrank": (2430, 243, 4096, 60, "lowrank")}


def problem(seed, n, p, t, kind):
    """Features (n, p) float32, like a layer's activations, and targets (n, t) float64 carrying a weak
    linear signal. kind "outliers": 4 feature directions with 100x the variance (transformer
    activations have such dimensions); "lowrank": rank 150 plus a 1e-6 perturbation, so singular
    values fall around float32's cutoff."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.1, 3, p) + rng.normal(size=p) * 5
    if kind == "outliers":
        x[:, :4] *= 100
    if kind == "lowrank":
        x = x[:, :150] @ rng.normal(size=(150, p)) / 10 + 1e-6 * rng.normal(size=(n, p)) + 3
    y = x[:, 10:30] @ rng.normal(size=(20, t)) * 0.02 + rng.normal(size=(n, t))
    return x.astype(np.float32), y


def checksum(x, y):
    """Two sums that change if the regenerated data differ (numpy's generator is stable, but check)."""
    return np.array([x.astype(np.float64).sum(), y.sum()])


def blas_kernel(info):
    """The kernel of the BLAS that scipy.linalg (so lstsq) calls, e.g. "openblas 0.3.30 Haswell", from
    threadpoolctl's threadpool_info(): the library that pip's scipy wheels ship in scipy.libs."""
    return " ".join(sorted(f"{i['internal_api']} {i['version']} {i.get('architecture')}" for i in info
                           if Path(i["filepath"]).parent.name.startswith("scipy")))


def main():
    import scipy
    import scipy.stats
    import sklearn
    from threadpoolctl import threadpool_info, threadpool_limits
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import ShuffleSplit
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) > (1, 5):
        sys.exit(f"needs scikit-learn <= 1.5 (2023's LinearRegression); this is {sklearn.__version__}")
    threadpool_limits(1)
    out = {"blas": blas_kernel(threadpool_info()),
           "versions": np.array([f"scikit-learn {sklearn.__version__}", f"numpy {np.__version__}",
                                 f"scipy {scipy.__version__}", f"python {sys.version.split()[0]}"])}
    for name, spec in PROBLEMS.items():
        x, y = problem(*spec)
        splitter = ShuffleSplit(n_splits=10, train_size=0.9, test_size=None, random_state=1)
        r = []
        for train, test in list(splitter.split(x))[:N_SPLITS]:
            train, test = np.sort(train), np.sort(test)          # sortby('stimulus_id')
            pred = LinearRegression().fit(x[train], y[train]).predict(x[test])
            r.append([scipy.stats.pearsonr(y[test][:, j], pred[:, j])[0] for j in range(y.shape[1])])
        r = np.array(r)                                          # (N_SPLITS, n_targets)
        out[f"{name}.spec"] = np.array(spec[:4])
        out[f"{name}.checksum"] = checksum(x, y)
        out[f"{name}.r"] = r
        out[f"{name}.score"] = np.median(r, axis=1).mean()
        print(f"{name}: score {out[f'{name}.score']:.6f}")
    FIXTURE.parent.mkdir(exist_ok=True)
    tmp = FIXTURE.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(FIXTURE)


if __name__ == "__main__":
    main()
