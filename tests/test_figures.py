"""The figures, drawn from paper-like score records (the paper's Table 5 for the 25 models and the
GPT-2 appendix pairs, plus noise, every layer scored): each figure has the expected panels, its
titles give the numbers the tables give, text is readable (>= 8 pt, no two names overlapping), a
figure the run has no data for is not written and an earlier run's copy is removed, and a missing
matplotlib skips the figures with one line of notice."""
import dataclasses
import json
import re
import sys

import numpy as np
import pytest

import brainalign as ba

models = pytest.importorskip("models")
pytest.importorskip("matplotlib")

PARTS = {"Pereira2018": ("Pereira2018.243sentences", "Pereira2018.384sentences"),
         "Blank2014": ("Blank2014",), "Wehbe2014": ("Wehbe2014",), "Futrell2018": ("Futrell2018",)}


@dataclasses.dataclass(frozen=True)
class Info(models.ModelInfo):
    paper_futrell: float | None = None          # Table 9, the field the registry holds it in


def paper_like(seed=0):
    """-> (records, info): every registry model on the three brain datasets and Futrell2018, scores
    = the paper's (Table 5; the appendix models' average where the paper gives only that) + noise."""
    rng = np.random.default_rng(seed)
    info = {m: Info(**{**dataclasses.asdict(i),
                       "paper_futrell": None if i.appendix else float(rng.uniform(0.05, 0.33))})
            for m, i in models.MODELS.items() if np.isfinite(i.paper[3])}   # the 33 the paper scores
    records = []
    for m, i in info.items():
        names = [f"{s}.{x}" for s in ("encoder", "decoder") for x in
                 ["embeddings"] + [f"block.{j}" for j in range(i.n_layers // 2)]] if i.family == "t5" \
            else ["embeddings"] + [f"block.{j}" for j in range(i.n_layers)]
        for d in PARTS:
            target = ba.paper_value(i, d) or i.paper[3]
            parts = {}
            for part in PARTS[d]:
                depth = np.linspace(0, 1, len(names))
                layers = target + rng.normal(0, 0.01) - 0.2 * (depth - rng.uniform(0.3, 0.8)) ** 2
                parts[part] = {"layers": layers.tolist(), "mad": rng.uniform(0.005, 0.03, len(names)).tolist(),
                               "per_subject": [{}] * len(names), "ceiling": 0.3}
            best, mean = ba.choose_layer(parts, names)
            scoring = {k: v for k, v in ba.SCORING.items() if d == "Wehbe2014" or not k.startswith("wehbe_")}
            records.append({"model": m, "dataset": d, "parts": parts, "base": i.base, "params": i.params,
                            "layer_names": names, "layers": mean.tolist(), "best_layer": best,
                            "best_layer_name": names[best], "score": float(mean[best]), "ceiling": 0.3,
                            "mad": float(np.mean([p["mad"][best] for p in parts.values()])),
                            "key": f"{m}-{d}", "scoring": scoring, "data": {"files": {}, "checksum": "verified"},
                            "provenance": {"dtype": "float32", "readout": "paper", "token_type_ids": "drop"}})
    return records, info


SOME = ("t5-small", "flan-t5-small", "gpt2", "gpt2-alpaca", "llama-7b", "alpaca-7b", "vicuna-7b")


@pytest.fixture(scope="module")
def run():
    records, info = paper_like()
    scores, layers, ceilings = ba.collect(records)
    corr = list(ba.tables(scores, layers, ceilings, info).values())[2]
    return records, info, scores, corr


def texts(fig):
    import matplotlib.text
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def assert_readable(fig, names):
    """Every text >= 8 pt; the texts in `names` (model names, tick labels) overlap no other."""
    fig.draw_without_rendering()
    small = [(t.get_text(), t.get_fontsize()) for t in texts(fig) if t.get_fontsize() < 8]
    assert not small
    boxes = [t.get_window_extent(fig.canvas.get_renderer()) for t in names]
    for a in range(len(boxes)):
        for b in range(a):
            assert not boxes[a].overlaps(boxes[b]), (names[a].get_text(), names[b].get_text())


def model_names(fig):
    return [t for t in texts(fig) if t.get_gid() == "model name"]


def test_reproduction_has_a_panel_per_dataset_and_the_numbers_in_its_titles(run):
    records, info, scores, corr = run
    fig = ba.fig_reproduction(scores, info)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(" (")[0] for t in titles] == ["Pereira2018", "Blank2014", "Wehbe2014", "Futrell2018",
                                                 "Average"]
    for ax, title in zip(fig.axes, titles):
        d = title.split(" (")[0]
        pts = [(s[d], ba.paper_value(info[m], d)) for m, s in scores.items() if ba.paper_value(info[m], d)]
        ours, paper = np.array(pts).T
        assert title == f"{d} (n = {len(pts)}, r = {np.corrcoef(ours, paper)[0, 1]:.2f})\n" \
                        f"mean |ours - paper| = {np.abs(ours - paper).mean():.3f}"
        assert len(pts) == (33 if d == "Average" else 25)     # the appendix: only the average is known
        assert ax.get_ylabel() == f"paper (Table {9 if d == 'Futrell2018' else 5})"
    names = model_names(fig)
    assert len(names) >= 30                                  # most points are named, where there is room
    assert_readable(fig, names)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["T5", "LLaMA", "GPT-2", "vanilla", "instruction-tuned"]


def test_reproduction_compares_the_average_only_over_all_three_datasets(run):
    records, info, _, _ = run
    blank_only = ba.collect([r for r in records if r["dataset"] == "Blank2014"])[0]
    fig = ba.fig_reproduction(blank_only, info)
    assert [ax.get_title().split(" (")[0] for ax in fig.axes] == ["Blank2014"]
    assert ba.fig_reproduction({"demo": {"Blank2014": 0.2, "Average": 0.2}}, {}) is None


def test_tuned_vs_vanilla_bars_error_bars_and_paper_markers(run):
    records, info, scores, _ = run
    fig = ba.fig_tuned_vs_vanilla(scores, ba._mads(records), info)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["Pereira2018", "Blank2014", "Wehbe2014",
                                                            "Futrell2018", "Average"]
    ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert ticks[:4] == ["t5-small", "flan-t5-small", "gpt2", "gpt2-alpaca"]   # vanilla, then its tunes
    assert len(ticks) == 33
    for ax in fig.axes:
        d = ax.get_title(loc="left")
        bars = [c for c in ax.containers if hasattr(c, "errorbar")]
        assert len(bars) == 33
        with_error = [c for c in bars if c.errorbar is not None]
        assert len(with_error) == (0 if d == "Average" else 33)         # the Average has no MAD
        if with_error:                                                  # the bar's error = its MAD
            segment = with_error[0].errorbar.lines[2][0].get_segments()[0]
            assert segment[1][1] - segment[0][1] == pytest.approx(2 * ba._mads(records)["t5-small"][d])
        diamonds = [ln for ln in ax.get_lines() if ln.get_marker() == "D"]
        assert len(diamonds) == (33 if d == "Average" else 25)
    assert_readable(fig, fig.axes[-1].get_xticklabels())


def test_properties_panels_titles_and_the_panels_left_out(run):
    records, info, scores, corr = run
    fig = ba.fig_properties(scores, info, corr)
    rows = {r["against"]: r for r in corr}
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles] == ["size (parameters)", "MMLU (Table 7)", "BBH (Table 7)"]
    assert f"all: r = {rows['log10(params), all']['r']:.2f}, FDR p = " \
           f"{rows['log10(params), all']['p_fdr']:.2g}" in titles[0]
    assert f"tuned: r = {rows['MMLU, tuned']['r']:.2f}" in titles[1]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends[0] == ["fit, all models (n = 33)", "fit, tuned models (n = 21)"]
    assert legends[2] == ["fit, tuned models (n = 17)"]
    slope = np.polyfit(*np.array([(m.mmlu, scores[n]["Average"]) for n, m in info.items()
                                  if m.mmlu is not None]).T, 1)[0]
    line = fig.axes[1].get_lines()[0].get_xydata()
    assert (line[-1, 1] - line[0, 1]) / (line[-1, 0] - line[0, 0]) == pytest.approx(slope)
    assert_readable(fig, model_names(fig))
    few = {m: scores[m] for m in ("t5-small", "flan-t5-small", "t5-base", "flan-t5-base")}
    few_corr = ba.correlations(few, info, {"flan-t5-small", "flan-t5-base"})
    fig = ba.fig_properties(few, info, few_corr)      # 2 tuned models: no MMLU or BBH panel
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["size (parameters)"]
    assert ba.fig_properties(few, info, []) is None


def test_layers_one_row_per_vanilla_model_one_column_per_part(run):
    records, info, _, _ = run
    fig = ba.fig_layers([r for r in records if r["model"] in SOME], info)
    parts = [p for d in PARTS for p in PARTS[d]]
    assert len(fig.axes) == 3 * len(parts)                   # t5-small, gpt2, llama-7b rows
    assert [ax.get_title() for ax in fig.axes[:len(parts)]] == parts
    first = fig.axes[0]                                      # t5-small and flan-t5-small on 243
    assert [t.get_text() for t in fig.axes[len(parts) - 1].get_legend().get_texts()] == \
        ["t5-small", "flan-t5-small"]
    rec = next(r for r in records if r["model"] == "t5-small" and r["dataset"] == "Pereira2018")
    profile, star = first.get_lines()[:2]
    part = rec["parts"]["Pereira2018.243sentences"]
    np.testing.assert_allclose(profile.get_ydata(), part["layers"])
    assert profile.get_xdata()[[0, -1]].tolist() == [0.0, 1.0]                   # relative depth
    assert star.get_marker() == "*" and star.get_ydata()[0] == part["layers"][rec["best_layer"]]
    dotted = [ln for ln in first.get_lines() if ln.get_linestyle() == ":"]        # T5: decoder starts
    assert dotted and dotted[0].get_xdata()[0] == pytest.approx(9 / 17)
    assert_readable(fig, [])


def test_figures_writes_pngs_and_removes_an_earlier_runs(run, tmp_path):
    import matplotlib.image
    records, info, _, _ = run
    records = [r for r in records if r["model"] in SOME]
    scores, layers, ceilings = ba.collect(records)
    corr = list(ba.tables(scores, layers, ceilings, info).values())[2]
    assert ba.figures(tmp_path, records, scores, info, corr) == list(ba.FIGURES)
    sizes = {n: matplotlib.image.imread(tmp_path / n).shape[:2] for n in ba.FIGURES}
    assert sizes["reproduction.png"][1] == round(3 * 3.3 * 150)                   # 3 panels wide at 150 dpi
    assert all(h > 500 and w > 500 for h, w in sizes.values())
    assert not list(tmp_path.glob("*.tmp*"))
    # ceiling-normalised scores have no paper values to compare with; models without pairs no bars
    alone = [r for r in records if r["model"] in ("t5-small", "gpt2", "llama-7b")]
    scores, layers, ceilings = ba.collect(alone, normalize_scores=True)
    corr = list(ba.tables(scores, layers, ceilings, info, normalized=True).values())[2]
    written = ba.figures(tmp_path, alone, scores, info, corr, normalized=True)
    assert written == ["alignment_vs_size_mmlu_bbh.png", "layers.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)


def test_missing_matplotlib_skips_the_figures_with_one_line(run, tmp_path, monkeypatch, capsys):
    records, info, scores, corr = run
    (tmp_path / "layers.png").write_bytes(b"an earlier run's figure")
    monkeypatch.setitem(sys.modules, "matplotlib", None)           # import matplotlib -> ImportError
    assert ba.figures(tmp_path, records, scores, info, corr) == []
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "matplotlib is not installed" in err
    assert not list(tmp_path.iterdir())


def test_report_over_a_demo_cache_keeps_the_banner_and_writes_figures(run, tmp_path, capsys):
    records, *_ = run
    cache = tmp_path / "cache"
    def write(checksum):
        for rec in records:
            if rec["model"] in ("t5-small", "flan-t5-small", "t5-base", "flan-t5-base"):
                path = cache / "scores" / rec["model"] / f"{rec['dataset']}.{rec['key']}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec | {"data": {"files": {}, "checksum": checksum}}))
    write("verified")
    ba.main(["--report", "--cache-dir", str(cache), "--out", str(tmp_path / "out")])
    assert "SYNTHETIC" not in capsys.readouterr().out
    write("synthetic")                                                  # what --demo's records say
    ba.main(["--report", "--cache-dir", str(cache), "--out", str(tmp_path / "out"), "--force"])
    out = capsys.readouterr().out
    assert out.startswith(ba.DEMO_BANNER)
    assert re.search(r"\| flan-t5-base \| t5-base \|", out)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"reproduction.png", "tuned_vs_vanilla.png", "layers.png"} <= written
