"""The paper's tables: % change, mean gain, Wilcoxon, bootstrap CI, BH-FDR and correlations against
scipy or hand-computed values, and the paper's own Table 5 / Table 7 numbers reproducing its
headline figures through our code."""
import numpy as np
import pytest
import scipy.stats

import brainalign as ba

models = pytest.importorskip("models")       # the registry holds the paper's published numbers


def paper_scores():
    """Table 5 of the paper, read from the model registry, as {model: {dataset: score}}."""
    keys = ba.PAPER_DATASETS + ("Average",)
    return {m: dict(zip(keys, i.paper)) for m, i in models.MODELS.items() if not i.appendix}


PAIRS = [(m, i.base) for m, i in models.MODELS.items() if i.base and not i.appendix]


def test_registry_has_the_papers_17_pairs_and_25_models():
    assert len(PAIRS) == 17 and len(paper_scores()) == 25


def test_paper_table5_reproduces_the_headline_gains():
    out = ba.compare_pairs(paper_scores(), PAIRS)
    # per dataset 6.9 / 8.0 / 3.8 in the paper's text; recomputed from Table 5: 6.99 / 7.99 / 3.97
    assert out["mean"]["Pereira2018"] == pytest.approx(6.99, abs=0.01)
    assert out["mean"]["Blank2014"] == pytest.approx(7.99, abs=0.01)
    assert out["mean"]["Wehbe2014"] == pytest.approx(3.97, abs=0.01)
    assert out["mean"]["Average"] == pytest.approx(5.98, abs=0.01)
    assert out["headline"] == pytest.approx(6.32, abs=0.01)         # the paper's "6.2%"
    assert out["n_pairs"] == 17 and out["improved"] == 13          # fell in 4 of 17 pairs
    fell = [r["tuned"] for r in out["rows"] if r["Average"] < 0]
    assert sorted(fell) == sorted(["flan-alpaca-base", "flan-t5-xxl", "flan-alpaca-xxl", "vicuna-7b"])


def test_paper_tables_reproduce_the_correlations():
    tuned = {m for m, _ in PAIRS}
    rows = {r["against"]: r for r in ba.correlations(paper_scores(), models.MODELS, tuned)}
    assert rows["log10(params), tuned"]["r"] == pytest.approx(0.946, abs=0.001)
    assert rows["log10(params), tuned"]["n"] == 17
    assert rows["log10(params), all"]["r"] == pytest.approx(0.920, abs=0.001)
    assert rows["MMLU, tuned"]["r"] == pytest.approx(0.809, abs=0.005)
    assert rows["BBH, tuned"]["r"] == pytest.approx(0.384, abs=0.03)


def test_relative_change_and_means_by_hand():
    scores = {"a": {"X": 0.2, "Average": 0.2}, "a-tuned": {"X": 0.25, "Average": 0.25},
              "b": {"X": 0.4, "Average": 0.4}, "b-tuned": {"X": 0.38, "Average": 0.38}}
    out = ba.compare_pairs(scores, [("a-tuned", "a"), ("b-tuned", "b"), ("c-tuned", "c")], ("X", "Average"))
    assert out["rows"][0]["X"] == pytest.approx(25.0) and out["rows"][1]["X"] == pytest.approx(-5.0)
    assert out["rows"][2]["note"] == "not run: c-tuned, c"
    assert out["mean"]["X"] == pytest.approx(10.0) and out["headline"] == pytest.approx(10.0)
    assert out["improved"] == 1 and out["n_pairs"] == 2
    t, v = np.array([0.25, 0.38]), np.array([0.2, 0.4])
    assert out["wilcoxon_p"] == pytest.approx(scipy.stats.wilcoxon(t, v).pvalue)


def test_bh_fdr_against_scipy_and_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(ba.bh_fdr(p), [0.04, 0.0533333, 0.0533333, 0.2], atol=1e-6)
    if hasattr(scipy.stats, "false_discovery_control"):
        rng = np.random.default_rng(0)
        q = rng.uniform(size=30) ** 3
        np.testing.assert_allclose(ba.bh_fdr(q), scipy.stats.false_discovery_control(q), atol=1e-12)


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    values = np.array([1.0, 4.0, -2.0, 6.0, 3.0, 0.5])
    lo, hi = ba.bootstrap_ci(values)
    assert (lo, hi) == ba.bootstrap_ci(values) and lo < values.mean() < hi
    assert ba.bootstrap_ci(np.full(5, 2.0)) == (2.0, 2.0)


def test_correlations_skip_rows_with_fewer_than_3_models():
    scores = {"flan-t5-small": {"Average": 0.15}, "flan-t5-base": {"Average": 0.16}}
    assert ba.correlations(scores, models.MODELS, set(scores)) == []


def test_markdown_table():
    md = ba.markdown([{"model": "m", "score": 0.12345}, {"model": "n", "change": 6.2, "p": 1.01e-8}])
    assert md.splitlines() == ["| model | score | change | p |", "|---|---|---|---|",
                               "| m | 0.123 | - | - |", "| n | - | +6.2 | 1e-08 |"]


def test_normalisation_is_per_part_then_averaged():
    # Pereira2018 as Brain-Score scores it: each experiment divided by its own ceiling, then averaged
    rec = {"model": "m", "dataset": "Pereira2018", "score": 0.2, "ceiling": 0.3, "best_layer": 1,
           "layer_names": ["block.0", "block.1"],
           "parts": {"243": {"layers": [0.0, 0.1], "ceiling": 0.2}, "384": {"layers": [0.5, 0.3], "ceiling": 0.4}}}
    scores, layers, ceilings = ba.collect([rec], normalize_scores=True)
    assert scores["m"]["Pereira2018"] == pytest.approx((0.1 / 0.2 + 0.3 / 0.4) / 2)
    assert ba.collect([rec])[0]["m"]["Pereira2018"] == 0.2 and layers["m"]["Pereira2018"] == "block.1"
    assert np.isnan(ba.normalize(0.1, float("nan")))        # no published ceiling: no normalised score
