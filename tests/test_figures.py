"""The figures, drawn from paper-like records (the paper's Table 5 plus noise, every layer scored):
each has the panels the run has data for, puts each model where the tables put it (ours on x, the
paper's on y; vanilla light and tuned dark; the paper's value as a diamond), skips NaN scores, and
carries a SYNTHETIC mark exactly when the records are synthetic."""
import numpy as np
import pytest

import brainalign as ba

models = pytest.importorskip("models")
pytest.importorskip("matplotlib")
SOME = ("t5-small", "flan-t5-small", "flan-alpaca-base", "t5-base", "llama-7b", "alpaca-7b", "vicuna-7b")


def paper_like(names=SOME, seed=0):
    """Records of `names` on the three datasets: scores = Table 5 + noise, a peaked layer profile."""
    rng = np.random.default_rng(seed)
    records = []
    for m in names:
        n_layers = 5
        for d in ba.PAPER_DATASETS:
            target = ba.paper_value(models.MODELS[m], d)
            parts = {}
            for part in ((f"{d}.243sentences", f"{d}.384sentences") if d == "Pereira2018" else (d,)):
                layers = target + rng.normal(0, 0.01) - 0.05 * (np.linspace(0, 1, n_layers) - 0.6) ** 2
                parts[part] = {"layers": layers.tolist()}
            best, mean = ba.best_layer([p["layers"] for p in parts.values()],
                                       ["embeddings"] + [f"block.{j}" for j in range(n_layers - 1)])
            records.append({"model": m, "dataset": d, "kind": "time series" if d == "Wehbe2014" else "brain",
                            "parts": parts, "best_layer": best, "score": float(mean[best]),
                            "layer_names": ["embeddings"] + [f"block.{j}" for j in range(n_layers - 1)]})
    return records


@pytest.fixture(scope="module")
def drawn():
    records = paper_like()
    scores, _ = ba.collect(records, ba.Settings())
    info = {m: models.MODELS[m] for m in SOME}
    return records, scores, info, ba.figures(scores, info)


def panel_titles(fig):
    return [ax.get_title() or ax.get_title(loc="left") for ax in fig.axes]


def test_reproduction_puts_ours_on_x_and_the_papers_on_y(drawn):
    records, scores, info, figs = drawn
    fig = figs["reproduction.png"]
    assert [t.split(" (")[0] for t in panel_titles(fig)] == ["Pereira2018", "Blank2014", "Wehbe2014", "Average"]
    ax = fig.axes[1]                                                        # Blank2014
    tuned = [m for m in SOME if info[m].base]
    vanilla = [m for m in SOME if not info[m].base]
    points = {c.get_label(): c.get_offsets() for c in ax.collections}
    np.testing.assert_allclose(points["tuned"][:, 0], [scores[m]["Blank2014"] for m in tuned], atol=1e-12)
    np.testing.assert_allclose(points["vanilla"][:, 1], [info[m].paper[1] for m in vanilla], atol=1e-12)
    mean_gap = np.mean([abs(scores[m]["Blank2014"] - info[m].paper[1]) for m in SOME])
    assert f"mean |ours - paper| = {mean_gap:.3f}" in ax.get_title()


def test_tuned_vs_vanilla_bars_light_vanilla_dark_tuned_and_paper_diamonds(drawn):
    records, scores, info, figs = drawn
    ax = figs["tuned_vs_vanilla.png"].axes[0]                                  # Pereira2018
    labels = [t.get_text() for t in figs["tuned_vs_vanilla.png"].axes[-1].get_xticklabels()]
    assert labels == ["t5-small", "flan-t5-small", "t5-base", "flan-alpaca-base", "llama-7b", "alpaca-7b",
                      "vicuna-7b"]                                           # each vanilla model, then its tunes
    heights = [p.get_height() for p in ax.patches]
    alphas = [p.get_alpha() for p in ax.patches]
    np.testing.assert_allclose(heights, [scores[m]["Pereira2018"] for m in labels], atol=1e-12)
    assert alphas == [0.4 if info[m].base is None else 1.0 for m in labels]
    diamonds = [line.get_ydata()[0] for line in ax.get_lines() if line.get_marker() == "D"]
    np.testing.assert_allclose(diamonds, [info[m].paper[0] for m in labels], atol=1e-12)


def test_nan_scores_are_skipped_and_nothing_to_draw_gives_no_figure(drawn):
    records, scores, info, _ = drawn
    broken = {m: dict(s) for m, s in scores.items()}
    broken["t5-small"]["Blank2014"] = float("nan")
    fig = ba.fig_reproduction(broken, info)
    assert "(n = 6)" in fig.axes[1].get_title() and "(n = 7)" in fig.axes[0].get_title()
    bars = ba.fig_tuned_vs_vanilla(broken, info)
    assert len(bars.axes[1].patches) == 6
    assert ba.fig_reproduction({}, info) is None and ba.fig_tuned_vs_vanilla({"gpt2": {}}, {}) is None


def test_synthetic_runs_say_so_on_every_figure(drawn):
    records, scores, info, figs = drawn
    assert not any("SYNTHETIC" in t.get_text() for fig in figs.values() for t in fig.texts)
    marked = ba.figures(scores, info, synthetic=True)
    assert set(marked) == set(figs)
    for fig in marked.values():
        assert any(t.get_text() == "SYNTHETIC" for t in fig.texts)
        assert fig._suptitle.get_text() == ba.SYNTHETIC


def test_missing_matplotlib_gives_one_line_and_no_figures(drawn, monkeypatch, capsys):
    import sys
    records, scores, info, _ = drawn
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert ba.figures(scores, info) == {}
    assert capsys.readouterr().err == "matplotlib is not installed: no figures (pip install matplotlib)\n"
