"""Leaderboards, the task x stream disentanglement matrix and plots, from a results table.

Pure functions of a pandas DataFrame of cell rows (see harness/superb/results.py); the CLI is harness/cli/report.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

# Tasks whose label is *who/how* (expected to favour the other stream) vs *what is said* (content).
SPEAKER_TASKS = ("sid", "asv", "er")
CONTENT_TASKS = ("pr", "asr")
STREAM_ORDER = ("content", "other", "utterance", "hidden_states")


def _hib(df, task) -> bool:
    sub = df[df["task"] == task]
    v = sub["higher_is_better"].iloc[0] if len(sub) else True
    return str(v).lower() in ("true", "1", "1.0")


def _isnan(v) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}"


def _metric_header(df, task) -> str:
    sub = df[df["task"] == task]
    metric = sub["metric"].iloc[0] if len(sub) else "?"
    return f"{task} {metric} {'↑' if _hib(df, task) else '↓'}"


def tasks_of(df) -> list[str]:
    order = ["sid", "asv", "er", "pr", "asr"]
    ts = list(dict.fromkeys(df["task"]))
    return sorted(ts, key=lambda t: (order.index(t) if t in order else 99, t))


def best(df, task, **where):
    """(value, row) of the best cell for `task` among rows matching `where`, or (None, None)."""
    sub = df[df["task"] == task]
    for k, v in where.items():
        sub = sub[sub[k] == v]
    if not len(sub):
        return None, None
    i = sub["value"].idxmax() if _hib(df, task) else sub["value"].idxmin()
    return float(sub.loc[i, "value"]), sub.loc[i]


def stream_label(row) -> str:
    return row["feature"] if str(row["layers"]) == "all" else f"{row['feature']}[{row['layers']}]"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def leaderboard_best(df) -> str:
    tasks = tasks_of(df)
    rows = []
    for u in dict.fromkeys(df["upstream"]):
        r = [u]
        for t in tasks:
            v, row = best(df, t, upstream=u)
            r.append("–" if row is None else f"{_fmt(v)} ({stream_label(row)})")
        rows.append(r)
    return md_table(["upstream"] + [_metric_header(df, t) for t in tasks], rows)


def leaderboard_streams(df) -> str:
    tasks = tasks_of(df)
    rows = []
    keys = df[["upstream", "feature", "layers"]].drop_duplicates().values.tolist()
    for u, f, layers in keys:
        r = [u, f, str(layers)]
        for t in tasks:
            v, _ = best(df, t, upstream=u, feature=f, layers=layers)
            r.append(_fmt(v))
        rows.append(r)
    return md_table(["upstream", "feature", "layers"] + [_metric_header(df, t) for t in tasks], rows)


def disentanglement_matrix(df):
    """DataFrame: index task, columns (upstream, stream) -> best value over layer subsets."""
    import pandas as pd

    cols = []
    for u in dict.fromkeys(df["upstream"]):
        feats = [f for f in STREAM_ORDER if ((df["upstream"] == u) & (df["feature"] == f)).any()]
        cols += [(u, f) for f in feats]
    data = {c: [best(df, t, upstream=c[0], feature=c[1])[0] for t in tasks_of(df)] for c in cols}
    m = pd.DataFrame(data, index=tasks_of(df))
    m.columns = pd.MultiIndex.from_tuples(cols, names=["upstream", "stream"]) if cols else m.columns
    return m


def matrix_markdown(df) -> str:
    m = disentanglement_matrix(df)
    header = ["task"] + [f"{u}:{s}" for u, s in m.columns]
    rows = [[_metric_header(df, t)] + [_fmt(m.loc[t, c]) for c in m.columns] for t in m.index]
    return md_table(header, rows)


def disentanglement_summary(df) -> str:
    """Per dual-stream upstream: does the other stream win speaker/emotion tasks and the content
    stream win phone/word tasks? A signed gap per task, positive = the expected stream is better."""
    lines = []
    for u in dict.fromkeys(df["upstream"]):
        has = {f for f in ("content", "other") if ((df["upstream"] == u) & (df["feature"] == f)).any()}
        if has != {"content", "other"}:
            continue
        parts = []
        for t in tasks_of(df):
            vc, _ = best(df, t, upstream=u, feature="content")
            vo, _ = best(df, t, upstream=u, feature="other")
            if vc is None or vo is None:
                continue
            sign = 1 if _hib(df, t) else -1
            if t in SPEAKER_TASKS:
                gap, want = sign * (vo - vc), "other"
            elif t in CONTENT_TASKS:
                gap, want = sign * (vc - vo), "content"
            else:
                continue
            parts.append(f"{t}: {want} better by {gap:+.4f}" + ("" if gap > 0 else " (NOT as expected)"))
        if parts:
            lines.append(f"- **{u}**: " + "; ".join(parts))
    return "\n".join(lines) or "(needs content and other cells of one upstream)"


def layer_weights_of(row) -> list[float] | None:
    """The learned weighted-sum weights of a cell: from the row, else from its s3prl checkpoint."""
    w = row.get("layer_weights") if hasattr(row, "get") else None
    if isinstance(w, str) and w.strip().startswith("["):
        return json.loads(w)
    if isinstance(w, list):
        return w
    ck = row.get("eval_ckpt") if hasattr(row, "get") else None
    if isinstance(ck, str) and Path(ck).is_file():
        from harness.superb.runner import featurizer_weights
        return featurizer_weights(Path(ck))
    return None


def layer_weights_markdown(df) -> str:
    rows = []
    for _, r in df.iterrows():
        w = layer_weights_of(r)
        if not w or len(w) < 2:
            continue
        top = sorted(range(len(w)), key=lambda i: -w[i])[:3]
        rows.append([r["task"], r["upstream"], stream_label(r), str(len(w)),
                     ", ".join(f"{i}:{w[i]:.2f}" for i in top)])
    if not rows:
        return "(no weighted-sum cells)"
    return md_table(["task", "upstream", "stream", "layers", "top layers (index: weight)"], rows)


# ----------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_bars(df, path: Path) -> Path:
    plt = _plt()
    tasks = tasks_of(df)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        sub = df[df["task"] == t]
        labels = [f"{r['upstream']}\n{stream_label(r)}" for _, r in sub.iterrows()]
        colors = ["#888888" if r["upstream"] == "fbank" else
                  {"content": "#1f77b4", "other": "#d62728"}.get(r["feature"], "#2ca02c") for _, r in sub.iterrows()]
        ax.bar(range(len(sub)), sub["value"].values, color=colors)
        ax.set_xticks(range(len(sub)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(_metric_header(df, t))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_matrix(df, path: Path) -> Path:
    """Heatmap of the disentanglement matrix; colour = per-task score normalised to [0, 1]
    (1 = best cell of that task), text = the raw metric."""
    import numpy as np

    plt = _plt()
    m = disentanglement_matrix(df)
    vals = m.values.astype(float)
    norm = np.full_like(vals, np.nan)
    for i, t in enumerate(m.index):
        row = vals[i]
        ok = ~np.isnan(row)
        if ok.sum():
            lo, hi = row[ok].min(), row[ok].max()
            s = (row - lo) / (hi - lo) if hi > lo else np.ones_like(row)
            norm[i] = s if _hib(df, t) else 1 - s
    fig, ax = plt.subplots(figsize=(1.3 * max(3, vals.shape[1]) + 1.5, 0.7 * len(m.index) + 1.8))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(vals.shape[1]))
    ax.set_xticklabels([f"{u}\n{s}" for u, s in m.columns], fontsize=8)
    ax.set_yticks(range(len(m.index)))
    ax.set_yticklabels([_metric_header(df, t) for t in m.index])
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if not np.isnan(vals[i, j]):
                ax.text(j, i, f"{vals[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, label="relative score within task (1 = best)")
    ax.set_title("task × stream")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_layer_weights(df, path: Path) -> Path | None:
    plt = _plt()
    tasks = [t for t in tasks_of(df)
             if any((w := layer_weights_of(r)) and len(w) > 1 for _, r in df[df["task"] == t].iterrows())]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.5), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for _, r in df[df["task"] == t].iterrows():
            w = layer_weights_of(r)
            if not w or len(w) < 2:
                continue
            ax.plot(range(len(w)), w, marker="o", ms=3, label=f"{r['upstream']}:{stream_label(r)}")
            ax.set_xticks(range(len(w)))
        ax.set_title(f"{t}: learned weighted-sum weights")
        ax.set_xlabel("layer (index within the chosen subset)")
        ax.set_ylabel("softmax weight")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def provenance_markdown(df) -> str:
    lines = []
    for col, label in (("harness_command", "command"), ("git_commit", "git commit"), ("machine", "machine"),
                       ("device", "device"), ("corpus", "corpus"), ("steps", "steps")):
        if col in df.columns:
            vals = list(dict.fromkeys("config default" if col == "steps" and _isnan(v) else
                                      str(int(v)) if col == "steps" else str(v) for v in df[col].tolist()))
            lines.append(f"- {label}: " + "; ".join(f"`{v}`" for v in vals))
    if "ckpt_hash" in df.columns:
        seen = []
        for _, r in df.iterrows():
            if str(r["ckpt_hash"]) in ("-", "nan"):
                continue
            where = Path(str(r.get("ckpt", ""))).name if str(r.get("ckpt", "nan")) != "nan" else "?"
            item = f"`{r['upstream']}`: `{where}` (sha {r['ckpt_hash']})"
            if item not in seen:
                seen.append(item)
        if seen:
            lines.append("- checkpoints: " + "; ".join(seen))
    if "wall_s" in df.columns:
        lines.append(f"- total cell wall time: {df['wall_s'].sum():.0f} s over {len(df)} cells")
    return "\n".join(lines)


def render(df, title: str, plots_dir: Path | None, md_dir: Path | None = None,
           notes: list[str] | None = None) -> str:
    """The whole Markdown report; writes PNGs into plots_dir (linked relative to md_dir)."""
    import os

    parts = [f"# {title}", "", provenance_markdown(df), ""]
    for n in notes or []:
        parts += [n, ""]
    parts += [
             "## Leaderboard (best stream per upstream)", "", leaderboard_best(df), "",
             "## Per stream", "", leaderboard_streams(df), "",
             "## Disentanglement: task × stream", "",
             "Speaker/emotion tasks (sid, asv, er) should favour the *other* stream, phone/word tasks (pr, asr) "
             "the *content* stream.", "", matrix_markdown(df), "", disentanglement_summary(df), "",
             "## Learned layer weights", "", layer_weights_markdown(df), ""]
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        plots_dir.mkdir(parents=True, exist_ok=True)
        pngs = [plot_bars(df, plots_dir / "bars.png"), plot_matrix(df, plots_dir / "matrix.png"),
                plot_layer_weights(df, plots_dir / "layer_weights.png")]
        parts += ["## Plots", ""]
        for p in pngs:
            if p is not None:
                rel = os.path.relpath(p, md_dir) if md_dir else str(p)
                parts.append(f"![{p.stem}]({rel})")
        parts.append("")
    return "\n".join(parts)
