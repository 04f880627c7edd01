"""Plots of analysis results (score vs layer); reads the long-format CSVs of harness abx|cca|probe.

Metric code never plots: this module only draws what a results CSV holds. One panel per metric
(e.g. ABX within / across speaker, CCA phone / word / speaker / fbank), one line per model x
stream, the chance level dashed where the CSV gives one.
"""
from __future__ import annotations

from pathlib import Path

TITLES = {
    "abx_within": "ABX error, within speaker (%)", "abx_across": "ABX error, across speaker (%)",
    "cca_phone": "PWCCA with phone labels", "cca_word": "PWCCA with word labels",
    "cca_speaker": "PWCCA with speaker labels", "cca_fbank": "PWCCA with fbank",
    "probe_speaker": "linear speaker-ID probe accuracy", "probe_phone": "linear phone probe accuracy",
}


def plot_frame(df, title: str | None = None):
    """A matplotlib Figure for a long-format results DataFrame (columns model, stream, layer, metric, value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    need = {"model", "stream", "layer", "metric", "value"}
    if not need <= set(df.columns):
        raise ValueError(f"results need columns {sorted(need)}, found {sorted(df.columns)}")
    df = df[df["layer"].astype(str).str.fullmatch(r"\d+")].copy()
    df["layer"] = df["layer"].astype(int)
    metrics = list(dict.fromkeys(df["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        d = df[df["metric"] == metric]
        for (model, stream), g in d.groupby(["model", "stream"], sort=False):
            g = g.sort_values("layer")
            ax.plot(g["layer"], g["value"], marker="o", ms=3, label=f"{model} / {stream}")
        if "chance" in d and d["chance"].notna().any():
            ch = d["chance"].dropna().unique()
            if len(ch) == 1:
                ax.axhline(float(ch[0]), ls="--", c="grey", lw=1, label="chance")
        if metric.startswith(("abx", "probe", "cca")):          # from 0 (lower if a score is negative)
            ax.set_ylim(bottom=min(0.0, float(d["value"].min()) * 1.1))
        ax.set_title(TITLES.get(metric, metric), fontsize=10)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
        if d["layer"].nunique() <= 25:
            ax.set_xticks(sorted(d["layer"].unique()))
    axes[0][0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_results(csvs, kind: str | None = None, out: str | Path | None = None) -> Path:
    """Plot one or more results CSVs (same kind) into a PNG (default: next to the first CSV)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    csvs = [Path(c) for c in ([csvs] if isinstance(csvs, (str, Path)) else csvs)]
    missing = [str(c) for c in csvs if not c.is_file()]
    if missing:
        raise FileNotFoundError(f"results file(s) not found: {', '.join(missing)}")
    df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    if kind is not None:
        df = df[df["metric"].astype(str).str.startswith(kind)]
        if df.empty:
            raise ValueError(f"no '{kind}' metrics in {', '.join(map(str, csvs))}")
    fig = plot_frame(df, title=None)
    out = Path(out) if out else csvs[0].with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
