"""Figures of analysis and SUPERB results, in the one style of :mod:`analysis.style`.

Metric code never plots: these functions only draw what a results table holds. Each ``fig_*``
builds a matplotlib Figure (for tests and notebooks); each ``plot_*`` saves it as ``<stem>.png``
and ``<stem>.pdf`` and returns both paths.

Analysis figures (long-format CSVs of ``harness abx|cca|probe``: columns model, stream, layer,
metric, value, chance, plus the spread columns ``std`` or ``ci_lo``/``ci_hi`` where present):

* :func:`fig_layers` -- score vs layer, one panel per metric, one line per model x stream;
  baselines (fbank, MFCC: one layer) as grey horizontal lines; chance dotted; bands = the spread
  (CCA: std over trials; ABX: speaker-bootstrap interval; probes: ``std`` if present, else a 95 %
  Wilson interval over the held-out samples); hollow markers = a small-sample warning.
* :func:`fig_model` -- the disentanglement figure of one model: one panel per measure (ABX
  within/across, PWCCA phone/word/speaker, speaker and phone probes), both streams, its random-init
  twin if present, and the fbank/MFCC baselines.

SUPERB figures (what ``harness report`` has: the cell table, the task x stream matrix, the learned
layer weights): :func:`fig_superb_bars`, :func:`fig_superb_matrix`, :func:`fig_superb_layer_weights`.

Example::

    df = read_results(sorted(Path("results/analysis").glob("cca-*.csv")))
    plot_layers(df, "results/analysis/cca")                    # cca.png + cca.pdf
    plot_model(df_all, "jooci", "results/analysis/model-jooci")
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

from analysis import style

KINDS = ("abx", "cca", "probe")
TITLES = {
    "abx_within": "ABX error, within speaker (%) ↓", "abx_across": "ABX error, across speaker (%) ↓",
    "cca_phone": "PWCCA with phone labels", "cca_word": "PWCCA with word labels",
    "cca_speaker": "PWCCA with speaker labels", "cca_fbank": "PWCCA with fbank",
    "probe_speaker": "speaker-ID probe accuracy", "probe_phone": "phone probe accuracy",
}
MODEL_PANELS = ("abx_within", "abx_across", "cca_phone", "cca_word", "cca_speaker", "probe_speaker", "probe_phone")
STREAM_ORDER = ("content", "other", "utterance", "hidden_states")
_ORDER = list(style.MODEL_COLORS)
REQUIRED = ("model", "stream", "layer", "metric", "value")
SPREAD_NOTES = {
    "cca": "bands: ± std of PWCCA over the random 80/10/10 splits (trials)",
    "abx": "bands: 95 % speaker-bootstrap interval",
    "probe": "bands: ± std over folds where given, else 95 % Wilson interval over held-out samples "
             "(phone frames are not independent: a lower bound on the spread)",
}


# ----------------------------------------------------------------------------------------------
# reading

def read_results(csvs):
    """A pandas DataFrame of the rows of one or more results CSVs (or a DataFrame, copied), checked."""
    import pandas as pd

    if isinstance(csvs, pd.DataFrame):
        df = csvs.copy()
    else:
        csvs = [Path(c) for c in ([csvs] if isinstance(csvs, (str, Path)) else csvs)]
        if not csvs:
            raise ValueError("no results CSV given")
        missing = [str(c) for c in csvs if not c.is_file()]
        if missing:
            raise FileNotFoundError(f"results file(s) not found: {', '.join(missing)}")
        df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    lack = [c for c in REQUIRED if c not in df.columns]
    if lack:
        raise ValueError(f"results need columns {list(REQUIRED)}; missing {lack} (is this a harness abx|cca|probe CSV?)")
    return df


def _layered(df):
    d = df[df["layer"].astype(str).str.fullmatch(r"\d+")].copy()
    d["layer"] = d["layer"].astype(int)
    d["value"] = d["value"].astype(float)
    return d


def _series_order(key) -> tuple:
    model, stream = key
    k = style.model_key(model)
    return (style.is_baseline(model), _ORDER.index(k) if k in _ORDER else len(_ORDER), k,
            STREAM_ORDER.index(stream) if stream in STREAM_ORDER else 9, str(stream))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def wilson(p: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion p observed on n samples."""
    if not (n and n > 0) or math.isnan(p):
        return float("nan"), float("nan")
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def spread(row: Mapping) -> tuple[float, float]:
    """(low, high) of a results row's spread: ci_lo/ci_hi, else value ± std, else (probes) the
    Wilson interval over n_test; (nan, nan) when the row has none."""
    v = _num(row.get("value"))
    lo, hi = _num(row.get("ci_lo")), _num(row.get("ci_hi"))
    if not (math.isnan(lo) or math.isnan(hi)):
        return lo, hi
    sd = _num(row.get("std"))
    if not math.isnan(sd):
        return v - sd, v + sd
    if str(row.get("metric", "")).startswith("probe"):
        return wilson(v, _num(row.get("n_test")))
    return float("nan"), float("nan")


def _has_warning(row) -> bool:
    w = row.get("warnings")
    return isinstance(w, str) and w.strip() != ""


# ----------------------------------------------------------------------------------------------
# one panel of score vs layer

def _legend(fig, handles: dict) -> None:
    """``handles``: {label: (rank, artist)}; the legend lists them by rank (series, baselines, chance)."""
    labels = sorted(handles, key=lambda lab: handles[lab][0])
    style.legend_outside(fig, [handles[lab][1] for lab in labels], labels)


class _Notes:
    """What a figure's caption says: the bands drawn, series without data, small-sample rings, etc."""

    def __init__(self):
        self.bands: set[str] = set()      # kinds whose bands were drawn
        self.kinds: set[str] = set()      # kinds plotted
        self.na: dict[str, list[str]] = {}
        self.misc: list[str] = []

    def lines(self, models) -> list[str]:
        out = [SPREAD_NOTES[k] for k in KINDS if k in self.bands]
        out += [f"{k}: no spread in these CSVs (no interval drawn)" for k in KINDS if k in self.kinds - self.bands]
        if self.na:
            out.append("n/a (no finite value, e.g. no item spans a frame at the stream's rate): " +
                       "; ".join(f"{lab} ({', '.join(ms)})" for lab, ms in self.na.items()))
        out += self.misc
        out += [c for c in (style.model_caption(m) for m in sorted(set(models), key=lambda m: _series_order((m, "")))) if c]
        return list(dict.fromkeys(out))


def _draw_metric(ax, d, metric: str, handles: dict, notes: _Notes) -> bool:
    """Draw every model x stream of ``d`` (one metric) on ax; returns whether anything was drawn."""
    import numpy as np

    layers = sorted(d.loc[~d["model"].map(style.is_baseline), "layer"].unique()) or [0]
    drew = False
    for key in sorted(d.groupby(["model", "stream"], sort=False).groups, key=_series_order):
        model, stream = key
        g = d[(d["model"] == model) & (d["stream"] == stream)].sort_values("layer")
        g = g[np.isfinite(g["value"].to_numpy(dtype=float))]
        label = style.series_label(model, stream)
        kind = str(metric).split("_")[0]
        notes.kinds.add(kind)
        if g.empty:
            notes.na.setdefault(label, []).append(metric)
            continue
        color = style.model_color(model)
        recs = g.to_dict("records")
        sp = np.array([spread(r) for r in recs], dtype=float)
        if style.is_baseline(model) and g["layer"].nunique() == 1:
            v = float(g["value"].iloc[0])
            h = ax.axhline(v, color=color, **style.baseline_style(model), label=label)
            if np.isfinite(sp[0]).all():
                ax.axhspan(sp[0, 0], sp[0, 1], color=color, alpha=0.10, lw=0)
                notes.bands.add(kind)
        else:
            st = style.stream_style(stream)
            if style.is_random(model):          # the random-init twin: thinner, hollow markers
                st.update(mfc="white", lw=1.0)
            st.setdefault("lw", 1.4)
            (h,) = ax.plot(g["layer"], g["value"], color=color, ms=3.5, label=label, **st)
            ok = np.isfinite(sp).all(1)
            if ok.sum() == 1 and len(g) == 1:      # one layer: an error bar (a band would be invisible)
                v = float(g["value"].iloc[0])
                ax.errorbar(g["layer"], g["value"], yerr=[[v - sp[0, 0]], [sp[0, 1] - v]], color=color,
                            ls="none", capsize=3, lw=1.0, label="_spread")
                notes.bands.add(kind)
            elif ok.any():
                ax.fill_between(g["layer"].to_numpy()[ok], sp[ok, 0], sp[ok, 1], color=color, alpha=0.15, lw=0)
                notes.bands.add(kind)
            warn = np.array([_has_warning(r) for r in recs], dtype=bool)
            if warn.any():
                ax.plot(g["layer"].to_numpy()[warn], g["value"].to_numpy()[warn], ls="none", marker="o", ms=8,
                        mfc="none", mec="red", mew=1.0)
                notes.misc.append("red rings: small-sample warning (see the CSV's warnings column)")
        handles.setdefault(label, (_series_order(key), h))
        drew = True
    if "chance" in d.columns:
        ch = d["chance"].astype(float).dropna()
        if len(ch):
            c = float(ch.median())
            h = ax.axhline(c, **style.CHANCE_STYLE, label="chance")
            handles.setdefault("chance", ((2,), h))
            if ch.max() - ch.min() > 1e-9:
                notes.misc.append(f"{metric} chance: median {c:.3g} of the per-row chance ({ch.min():.3g}–{ch.max():.3g})")
    ax.set_xticks(layers)
    ax.set_xlim(min(layers) - 0.4, max(layers) + 0.4)
    ax.set_xlabel("layer")
    ax.grid(alpha=0.25, lw=0.5)
    ax.set_title(TITLES.get(metric, metric))
    return drew


def _no_data(ax, text: str = "no data") -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor="none", edgecolor="#999999",
                           hatch=style.NA_HATCH, lw=0, label="_n/a"))
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "none"})
    ax.set_xticks([])
    ax.set_yticks([])


def _ylim_from_zero(ax, metric: str) -> None:
    lo, hi = ax.get_ylim()
    if metric.startswith(("abx", "probe", "cca")):
        ax.set_ylim(min(0.0, lo), hi)


def fig_layers(df, kind: str | None = None, title: str | None = None, notes: Iterable[str] = ()):
    """Score vs layer: one panel per metric of ``kind`` (abx|cca|probe; None: every metric); ``notes``:
    caption lines added to the figure's own."""
    plt = style.pyplot()
    df = read_results(df)
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        df = df[df["metric"].astype(str).str.startswith(kind)]
        if df.empty:
            raise ValueError(f"no '{kind}' metrics in these results")
    d = _layered(df)
    metrics = [m for m in dict.fromkeys(d["metric"]) if not str(m).startswith("mi_")]
    if not metrics:
        raise ValueError("no per-layer metrics to plot")
    ncol = min(len(metrics), 4)
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    handles, notes, extra = {}, _Notes(), notes
    for ax, metric in zip(axes.flat, metrics):
        _draw_metric(ax, d[d["metric"] == metric], metric, handles, notes)
        _ylim_from_zero(ax, metric)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    _legend(fig, handles)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    style.caption(fig, notes.lines(d["model"]) + list(extra))
    return fig


def plot_layers(df, out: str | Path, kind: str | None = None, title: str | None = None,
                notes: Iterable[str] = ()) -> tuple[Path, Path]:
    """:func:`fig_layers` saved as ``<out>.png`` and ``<out>.pdf``."""
    return style.save(fig_layers(df, kind, title, notes), out)


def fig_model(df, model: str, metrics: Iterable[str] = MODEL_PANELS, twins: bool = True, baselines: bool = True):
    """The per-model disentanglement figure: one panel per measure, both streams of ``model`` (a
    registry key such as ``jooci`` or a full results name), its random-init twin when ``twins``, and
    the fbank/MFCC baselines as grey lines."""
    plt = style.pyplot()
    d = _layered(read_results(df))
    key = style.model_key(model)
    sel = d["model"].map(style.model_key)
    keep = (sel == key) | ((sel == f"{key}:random") if twins else False) | (d["model"].map(style.is_baseline) if baselines else False)
    if not (sel == key).any():
        raise ValueError(f"no rows of model {model!r}; models in these results: {sorted(set(d['model']))}")
    d = d[keep]
    metrics = list(metrics)
    ncol = 4
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.9 * nrow), squeeze=False)
    handles, notes = {}, _Notes()
    for ax, metric in zip(axes.flat, metrics):
        dm = d[d["metric"] == metric]
        if dm.empty or not _draw_metric(ax, dm, metric, handles, notes):
            ax.set_title(TITLES.get(metric, metric))
            _no_data(ax)
        else:
            _ylim_from_zero(ax, metric)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    _legend(fig, handles)
    fig.suptitle(f"{style.model_label(model)}: content vs other stream, per layer")
    fig.tight_layout()
    style.caption(fig, notes.lines(d["model"]))
    return fig


def plot_model(df, model: str, out: str | Path, **kw) -> tuple[Path, Path]:
    """:func:`fig_model` saved as ``<out>.png`` and ``<out>.pdf``."""
    return style.save(fig_model(df, model, **kw), out)


def plot_scorecard(rows, out: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """The scorecard figure (``harness scorecard``): phone probe, ABX within/across and speaker probe vs
    layer, every model x stream, random-init twins (thin, hollow), baselines as horizontal lines at
    100 Hz and at the models' rate (thick, light); ``rows`` a DataFrame or the result rows. An ABX row
    on too few of the items (``samples.abx_coverage_too_low``: a 5 Hz stream) is not drawn, as the
    tables print it n/a; the caption names the streams left out."""
    import pandas as pd

    from analysis.samples import MIN_ABX_KEPT_FRACTION, abx_coverage_too_low
    from analysis.scorecard import METRICS

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    df = df[df["metric"].isin(METRICS)].copy()
    thin = df.apply(lambda r: abx_coverage_too_low(r.to_dict()), axis=1).astype(bool) if len(df) else df["metric"].isna()
    left_out = sorted({f"{style.model_label(m)} {s}" for m, s in zip(df.loc[thin, "model"], df.loc[thin, "stream"])})
    df = df[~thin]
    df["_order"] = df["metric"].map(METRICS.index)
    df = df.sort_values("_order", kind="stable").drop(columns="_order")
    notes = [f"ABX not drawn for {', '.join(left_out)}: under {MIN_ABX_KEPT_FRACTION:.0%} of the items span one of "
             f"its frames (n/a in the tables)"] if left_out else []
    return plot_layers(df, out, title=title, notes=notes)


def plot_results(csvs, kind: str | None = None, out: str | Path | None = None) -> Path:
    """``harness plot``'s entry point: plot results CSVs (one kind) to ``out`` (default: next to the
    first CSV); writes PNG and PDF, returns the PNG path."""
    df = read_results(csvs)
    if out is None:
        first = Path(csvs) if isinstance(csvs, (str, Path)) else Path(list(csvs)[0])
        out = first.with_suffix("")
    png, _ = plot_layers(df, style.stem_of(out), kind)
    return png


# ----------------------------------------------------------------------------------------------
# SUPERB report figures

def _hib(v) -> bool:
    return str(v).lower() in ("true", "1", "1.0")


def _stream_label(feature, layers) -> str:
    return str(feature) if str(layers) == "all" else f"{feature}[{layers}]"


def _bar_columns(df) -> list[tuple[str, str, str]]:
    keys = list(dict.fromkeys(zip(df["upstream"], df["feature"], df["layers"].astype(str))))
    return sorted(keys, key=lambda k: (*_series_order((k[0], k[1])), k[2]))


def fig_superb_bars(df, chance: Mapping[str, float] | None = None, tasks: Iterable[str] | None = None,
                    chance_label: str = "chance"):
    """Best score of every upstream x stream per task (the cell table of ``harness report``: columns
    task, upstream, feature, layers, metric, value, higher_is_better). Every panel has the same bars
    in the same places; a cell that was not run is a hatched n/a box; a dotted line marks chance
    (``chance`` {task: value}, else a ``chance`` column; legend text ``chance_label``)."""
    import numpy as np
    from matplotlib.patches import Patch, Rectangle

    plt = style.pyplot()
    tasks = list(tasks) if tasks is not None else list(dict.fromkeys(df["task"]))
    cols = _bar_columns(df)
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(3.2, 0.42 * len(cols) + 1.2) * len(tasks), 3.6), squeeze=False)
    handles = {}
    for ax, t in zip(axes[0], tasks):
        sub = df[df["task"] == t]
        hib = _hib(sub["higher_is_better"].iloc[0]) if len(sub) else True
        metric = sub["metric"].iloc[0] if len(sub) else "?"
        vals = []
        for up, feat, lay in cols:
            c = sub[(sub["upstream"] == up) & (sub["feature"] == feat) & (sub["layers"].astype(str) == lay)]
            v = c["value"].astype(float)
            vals.append(float(v.max() if hib else v.min()) if len(v) else float("nan"))
        vals = np.array(vals)
        top = np.nanmax(vals) if np.isfinite(vals).any() else 1.0
        for i, ((up, feat, lay), v) in enumerate(zip(cols, vals)):
            label = style.series_label(up, _stream_label(feat, lay))
            if np.isnan(v):
                ax.add_patch(Rectangle((i - 0.4, 0), 0.8, top, facecolor="white", edgecolor="#999999",
                                       hatch=style.NA_HATCH, lw=0.5, label="_n/a"))
                handles.setdefault("n/a (not run / not applicable)",
                                   ((3,), Patch(facecolor="white", edgecolor="#999999", hatch=style.NA_HATCH)))
                continue
            color = style.model_color(up)
            other = feat == "other"
            b = ax.bar(i, v, 0.8, color=color, alpha=0.45 if other else 1.0, edgecolor=color, lw=1.2,
                       linestyle="--" if other else "-")
            b.patches[0].set_label(label)
            handles.setdefault(label, (_series_order((up, feat)), b.patches[0]))
        ch = (chance or {}).get(t)
        if ch is None and "chance" in sub.columns and sub["chance"].notna().any():
            ch = float(sub["chance"].astype(float).median())
        if ch is not None:
            handles.setdefault(chance_label, ((2,), ax.axhline(ch, **style.CHANCE_STYLE, label=chance_label)))
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([style.series_label(u, _stream_label(f, l)) for u, f, l in cols],
                           rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(cols) - 0.4)
        ax.set_title(f"{t} {metric} {'↑' if hib else '↓'}")
        ax.grid(axis="y", alpha=0.25, lw=0.5)
    _legend(fig, handles)
    fig.tight_layout()
    return fig


def fig_superb_matrix(matrix, higher_is_better: Mapping[str, bool], headers: Mapping[str, str] | None = None):
    """The task x (upstream, stream) matrix of ``harness report`` (a DataFrame: index task, columns
    (upstream, stream), NaN = not run/not applicable). Colour = score normalised within the task
    (1 = best cell); text = the raw score; a NaN cell is hatched and says n/a. Column labels carry the
    model's colour."""
    import numpy as np
    from matplotlib.patches import Rectangle

    plt = style.pyplot()
    matrix = matrix[sorted(matrix.columns, key=lambda c: _series_order((c[0], c[1])))]
    vals = matrix.values.astype(float)
    norm = np.full_like(vals, np.nan)
    for i, t in enumerate(matrix.index):
        row = vals[i]
        ok = ~np.isnan(row)
        if ok.sum():
            lo, hi = row[ok].min(), row[ok].max()
            s = (row - lo) / (hi - lo) if hi > lo else np.ones_like(row)
            norm[i] = s if higher_is_better.get(t, True) else 1 - s
    fig, ax = plt.subplots(figsize=(1.1 * max(3, vals.shape[1]) + 2.0, 0.6 * len(matrix.index) + 1.9))
    im = ax.imshow(np.ma.masked_invalid(norm), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    cols = list(matrix.columns)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([style.series_label(u, s) for u, s in cols], rotation=45, ha="right", fontsize=8)
    for tick, (u, _) in zip(ax.get_xticklabels(), cols):
        tick.set_color(style.model_color(u))
    ax.set_yticks(range(len(matrix.index)))
    ax.set_yticklabels([(headers or {}).get(t, t) for t in matrix.index])
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isnan(vals[i, j]):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor="#999999",
                                       hatch=style.NA_HATCH, lw=0.0, label="_n/a"))
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#555555",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            else:
                ax.text(j, i, f"{vals[i, j]:.3g}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, label="score within task (1 = best)", fraction=0.05, pad=0.02)
    ax.set_title("task × stream (hatched: not run / not applicable)")
    fig.tight_layout()
    return fig


def fig_superb_layer_weights(weights, tasks: Iterable[str] | None = None):
    """Learned weighted-sum layer weights: one panel per task, a line per (upstream, stream) in the
    model's colour and the stream's line style; every layer ticked; the uniform weight 1/L dotted.
    ``weights``: rows (dicts or a DataFrame) with task, upstream, stream, weights (list of floats)."""
    import pandas as pd

    plt = style.pyplot()
    w = pd.DataFrame(list(weights) if not isinstance(weights, pd.DataFrame) else weights)
    if w.empty:
        raise ValueError("no layer weights to plot")
    w = w[w["weights"].map(lambda x: x is not None and len(x) > 1)]
    tasks = [t for t in (tasks if tasks is not None else dict.fromkeys(w["task"])) if (w["task"] == t).any()]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False, sharey=True)
    handles = {}
    for ax, t in zip(axes[0], tasks):
        sub = w[w["task"] == t]
        n_max = 0
        for r in sorted(sub.to_dict("records"), key=lambda r: _series_order((r["upstream"], r["stream"]))):
            y = list(map(float, r["weights"]))
            n_max = max(n_max, len(y))
            label = style.series_label(r["upstream"], r["stream"])
            (h,) = ax.plot(range(len(y)), y, color=style.model_color(r["upstream"]), ms=3.5, lw=1.4, label=label,
                           **style.stream_style(r["stream"].split("[")[0]))
            handles.setdefault(label, (_series_order((r["upstream"], r["stream"].split("[")[0])), h))
        for n in sorted({len(x) for x in sub["weights"]}):
            h = ax.hlines(1.0 / n, -0.3, n - 0.7, **{k: v for k, v in style.CHANCE_STYLE.items() if k != "linestyle"},
                          linestyles="dotted", label="uniform 1/L")
            handles.setdefault("uniform 1/L", ((2,), h))
        ax.set_xticks(range(n_max))
        ax.set_xlim(-0.4, n_max - 0.6)
        ax.set_title(f"{t}: learned layer weights")
        ax.set_xlabel("layer (index within the chosen subset)")
        ax.grid(alpha=0.25, lw=0.5)
    axes[0][0].set_ylabel("softmax weight")
    _legend(fig, handles)
    fig.tight_layout()
    return fig


def plot_superb_bars(df, out, chance=None, tasks=None, chance_label: str = "chance") -> tuple[Path, Path]:
    return style.save(fig_superb_bars(df, chance, tasks, chance_label), out)


def plot_superb_matrix(matrix, higher_is_better, out, headers=None) -> tuple[Path, Path]:
    return style.save(fig_superb_matrix(matrix, higher_is_better, headers), out)


def plot_superb_layer_weights(weights, out, tasks=None) -> tuple[Path, Path]:
    return style.save(fig_superb_layer_weights(weights, tasks), out)
