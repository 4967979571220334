"""The figure, drawn from paper-like records (the paper's Table 5 plus noise, every layer scored): a
panel per dataset run, each model where the tables put it (vanilla light and tuned dark; the paper's
value as a diamond), NaN scores skipped and named, and a SYNTHETIC mark exactly when the records are."""
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


def test_one_figure_with_a_panel_per_dataset_run(drawn):
    records, scores, info, figs = drawn
    assert list(figs) == ["tuned_vs_vanilla.png"]
    titles = [ax.get_title(loc="left") for ax in figs["tuned_vs_vanilla.png"].axes]
    assert [t.split(" (")[0] for t in titles] == ["Pereira2018", "Blank2014", "Wehbe2014", "Average"]
    assert all("(light: vanilla, dark: tuned, diamond: the paper)" in t for t in titles)


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


def test_nan_scores_are_skipped_named_and_nothing_to_draw_gives_no_figure(drawn):
    records, scores, info, _ = drawn
    broken = {m: dict(s) for m, s in scores.items()}
    broken["t5-small"]["Blank2014"] = float("nan")
    fig = ba.figures(broken, info)["tuned_vs_vanilla.png"]
    assert len(fig.axes[1].patches) == 6 and len(fig.axes[0].patches) == 7          # Blank2014: one left out
    assert fig.axes[1].get_title(loc="left").endswith("; not a number, left out: t5-small")
    assert "left out" not in fig.axes[0].get_title(loc="left")
    assert ba.figures({}, info) == {} and ba.figures({"gpt2": {}}, {}) == {}


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
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)                 # as if it were not installed
    assert ba.figures(scores, info) == {}
    assert capsys.readouterr().err == "matplotlib is not installed: no figures (pip install matplotlib)\n"
