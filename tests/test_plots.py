"""Figures rendered from fixed CSVs (tests/data/plots/) and checked without eyes: a model's colour is
the same in every figure, no legend entry lacks data, every layer is ticked, PDF beside PNG, n/a
cells hatched."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from analysis import plots, style

DATA = Path(__file__).parent / "data" / "plots"
KINDS = ("abx", "cca", "probe")


def _frames() -> dict[str, pd.DataFrame]:
    return {k: pd.read_csv(DATA / f"{k}.csv") for k in KINDS}


def _superb():
    df = pd.read_csv(DATA / "superb.csv")
    m = df.pivot_table(index="task", columns=["upstream", "feature"], values="value", aggfunc="first")
    m = m.reindex(list(dict.fromkeys(df["task"])))
    hib = {t: str(v) == "True" for t, v in zip(df["task"], df["higher_is_better"])}
    w = [{"task": r.task, "upstream": r.upstream, "stream": r.feature, "weights": json.loads(r.layer_weights)}
         for r in df.itertuples() if isinstance(r.layer_weights, str)]
    return df, m, hib, w


def _all_figures():
    fr = _frames()
    df_all = pd.concat(fr.values(), ignore_index=True)
    sdf, m, hib, w = _superb()
    figs = {f"layers-{k}": plots.fig_layers(fr[k], k) for k in KINDS}
    figs["model-jooci"] = plots.fig_model(df_all, "jooci")
    figs["superb-bars"] = plots.fig_superb_bars(sdf, chance={"sid": 0.01, "pr": 1.0})
    figs["superb-matrix"] = plots.fig_superb_matrix(m, hib)
    figs["superb-weights"] = plots.fig_superb_layer_weights(w)
    return figs


@pytest.fixture(scope="module")
def figures():
    figs = _all_figures()
    yield figs
    import matplotlib.pyplot as plt

    for f in figs.values():
        plt.close(f)


def _labelled(fig):
    """(label, colour, has finite data) of every labelled artist in the figure's axes."""
    out = []
    for ax in fig.axes:
        for a in list(ax.get_lines()) + list(ax.patches) + list(ax.collections):
            lab = a.get_label()
            if not lab or lab.startswith("_"):
                continue
            if isinstance(a, Line2D):
                y = np.asarray(a.get_ydata(), dtype=float)
                out.append((lab, mcolors.to_hex(a.get_color()), bool(np.isfinite(y).any())))
            elif isinstance(a, Rectangle):
                out.append((lab, mcolors.to_hex(a.get_facecolor()), bool(np.isfinite(a.get_height()))))
            elif isinstance(a, LineCollection):
                out.append((lab, mcolors.to_hex(a.get_colors()[0]), len(a.get_segments()) > 0))
    return out


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_model_colour_identical_across_figures(figures):
    fr = _frames()
    series = pd.concat(fr.values())[["model", "stream"]].drop_duplicates()
    expect = {style.series_label(m, s): style.model_color(m) for m, s in series.itertuples(index=False)}
    seen: dict[str, set] = {}
    for name, fig in figures.items():
        for lab, col, _ in _labelled(fig):
            if lab in expect:
                seen.setdefault(lab, set()).add((name, col))
    for lab, where in seen.items():
        cols = {c for _, c in where}
        assert cols == {expect[lab].lower()}, f"{lab}: colours {where}"
    # each DUET model appears in several figures (so the check above compares across figures)
    assert len({n for n, _ in seen["jooci · content"]}) >= 4
    # the SUPERB figures use the same model colours as the analysis figures
    bars = {lab: col for lab, col, _ in _labelled(figures["superb-bars"])}
    weights = {lab: col for lab, col, _ in _labelled(figures["superb-weights"])}
    assert bars["jooci · content"] == weights["jooci · content"] == style.model_color("jooci").lower()
    assert bars["learn2diss · content"] == style.model_color("learn2diss[x@1]").lower()


def test_unknown_model_colour_stable_and_never_a_fixed_one():
    fixed = {c.lower() for c in style.MODEL_COLORS.values()}
    assert not fixed & {c.lower() for c in style.EXTRA_COLORS}
    names = [f"model_{i}" for i in range(40)] + ["wavlm_tiny", "wavlm_tiny[ck@12]"]
    for n in names:
        c = style.model_color(n)
        assert c.lower() not in fixed and c == style.model_color(n)
    # hash of the name, not Python's salted hash(): a known value
    assert style.model_color("wavlm_tiny") == style.model_color("wavlm_tiny[other-ckpt@ab]")
    assert style.model_key("jooci{random-compact}") == "jooci:random"
    assert style.model_color("jooci{random-compact}") != style.model_color("jooci[jooci-compact@33b0fa53]")


def test_no_legend_entry_without_data(figures):
    for name, fig in figures.items():
        legend = _legend_labels(fig)
        data = {lab for lab, _, ok in _labelled(fig) if ok}
        missing = [lab for lab in legend if lab not in data and not lab.startswith("n/a")]
        assert not missing, f"{name}: legend entries without data {missing}"
        assert len(legend) == len(set(legend)), f"{name}: duplicate legend entries"
    # jooci's other stream has no finite ABX in the fixture: not in the ABX legend, but in the CCA one
    assert "jooci · other" not in _legend_labels(figures["layers-abx"])
    assert "jooci · other" in _legend_labels(figures["layers-cca"])
    # the legend sits outside every axes (right of the figure's axes area)
    for name, fig in figures.items():
        for leg in fig.legends:
            assert leg.get_bbox_to_anchor().x0 >= fig.bbox.x1 - 1, name


def test_labels_are_short(figures):
    for name, fig in figures.items():
        for lab in _legend_labels(fig):
            assert "@" not in lab and "[" not in lab, f"{name}: checkpoint tag in legend label {lab!r}"
    assert "jooci · content" in _legend_labels(figures["layers-cca"])
    captions = " ".join(t.get_text() for t in figures["layers-cca"].texts)
    assert "jooci-compact@33b0fa53" in captions            # the tag goes in the caption


def test_every_layer_ticked(figures):
    for name in ("layers-abx", "layers-cca", "layers-probe", "model-jooci"):
        for ax in figures[name].axes:
            if ax.get_visible() and ax.get_xlabel() == "layer":
                assert [int(t) for t in ax.get_xticks()] == [0, 1, 2], (name, ax.get_title())
    for ax in figures["superb-weights"].axes:
        if ax.get_visible() and ax.get_xlabel():
            n = max(len(line.get_xdata()) for line in ax.get_lines() if not line.get_label().startswith("_"))
            assert [int(t) for t in ax.get_xticks()] == list(range(n)), ax.get_title()


def test_bands_chance_and_baselines(figures):
    fig = figures["layers-cca"]
    ax = fig.axes[0]
    assert any(c.__class__.__name__ in ("PolyCollection", "FillBetweenPolyCollection") for c in ax.collections)
    labs = {a.get_label() for a in ax.get_lines()}
    assert {"chance", "fbank", "mfcc"} <= labs
    # the fbank baseline is a horizontal line across the panel, grey
    fb = [a for a in ax.get_lines() if a.get_label() == "fbank"][0]
    assert len(set(np.asarray(fb.get_ydata(), float))) == 1
    r, g, b = mcolors.to_rgb(fb.get_color())
    assert abs(r - g) < 1e-6 and abs(g - b) < 1e-6
    # streams: content solid, other dashed
    lines = {a.get_label(): a for a in ax.get_lines()}
    assert lines["jooci · content"].get_linestyle() == "-" and lines["jooci · other"].get_linestyle() == "--"
    # ABX: only learn2diss has ci_lo/ci_hi in the fixture -> bands on the ABX panels, caption says so
    abx_text = " ".join(t.get_text() for t in figures["layers-abx"].texts)
    assert "speaker-bootstrap" in abx_text and "n/a" in abx_text


def test_na_cells_hatched(figures):
    sdf, m, _, _ = _superb()
    n_na = int(np.isnan(m.values.astype(float)).sum())
    assert n_na == 2                                           # asr has no jooci/learn2diss other cell
    ax = figures["superb-matrix"].axes[0]
    hatched = [p for p in ax.patches if p.get_hatch() == style.NA_HATCH]
    assert len(hatched) == n_na
    xl = [t.get_text() for t in ax.get_xticklabels()]
    yl = [t.get_text() for t in ax.get_yticklabels()]
    cells = {(xl[round(p.get_x() + 0.5)], yl[round(p.get_y() + 0.5)]) for p in hatched}
    want = {(style.series_label(*m.columns[j]), m.index[i]) for i, j in zip(*np.where(np.isnan(m.values.astype(float))))}
    assert cells == want == {("jooci · other", "asr"), ("learn2diss · other", "asr")}
    bars_na = [p for ax in figures["superb-bars"].axes for p in ax.patches if p.get_hatch() == style.NA_HATCH]
    assert len(bars_na) == 2
    chance = [a for ax in figures["superb-bars"].axes for a in ax.get_lines() if a.get_label() == "chance"]
    assert len(chance) == 2                                    # sid and pr were given a chance level


def test_pdf_written_beside_png(tmp_path):
    fr = _frames()
    sdf, m, hib, w = _superb()
    outs = [plots.plot_layers(fr["cca"], tmp_path / "cca", "cca"),
            plots.plot_model(pd.concat(fr.values()), "learn2diss", tmp_path / "model-learn2diss.png"),
            plots.plot_superb_bars(sdf, tmp_path / "bars"),
            plots.plot_superb_matrix(m, hib, tmp_path / "matrix"),
            plots.plot_superb_layer_weights(w, tmp_path / "w")]
    for png, pdf in outs:
        assert png.suffix == ".png" and pdf == png.with_suffix(".pdf")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    # harness plot's entry point keeps its signature and writes the PDF too
    png = plots.plot_results([DATA / "abx.csv"], "abx", tmp_path / "abx.png")
    assert png == tmp_path / "abx.png" and (tmp_path / "abx.pdf").is_file()
    # same data -> byte-identical PDF (no timestamps)
    a = plots.plot_superb_matrix(m, hib, tmp_path / "m2")[1].read_bytes()
    assert a == (tmp_path / "matrix.pdf").read_bytes()


def test_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        plots.read_results([tmp_path / "nope.csv"])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing"):
        plots.read_results(bad)
    with pytest.raises(ValueError, match="no rows of model 'hubert'"):
        plots.fig_model(_frames()["cca"], "hubert")
    with pytest.raises(ValueError, match="no 'abx' metrics"):
        plots.fig_layers(_frames()["cca"], "abx")


def test_spread_rules():
    assert plots.spread({"value": 0.5, "std": 0.1}) == pytest.approx((0.4, 0.6))
    assert plots.spread({"value": 20.0, "ci_lo": 18.0, "ci_hi": 23.0}) == (18.0, 23.0)
    lo, hi = plots.spread({"metric": "probe_speaker", "value": 0.5, "n_test": 60})
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.243, abs=0.01)    # Wilson, n = 60
    assert all(np.isnan(plots.spread({"metric": "abx_within", "value": 3.0})))
