"""Leaderboards, the task x stream disentanglement matrix and plots, from a results table.

Pure functions of a pandas DataFrame of cell rows (see harness/superb/results.py); the CLI is harness/cli/report.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.superb.stale import has_checkpoint

# The first line of every report this module writes; `harness report` overwrites only files that have it.
REPORT_MARKER = "<!-- written by `harness report` (harness/superb/report.py); regenerate it, do not edit by hand -->"


def written_by_report(path: Path) -> bool:
    """Is ``path`` a report this module wrote (its marker line present)? A missing file counts as yes."""
    p = Path(path)
    if not p.exists():
        return True
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            head = [f.readline() for _ in range(3)]
    except OSError:
        return False
    return any(line.strip() == REPORT_MARKER for line in head)


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
    """A metric in percent, one decimal ('–' for none)."""
    if _isnan(v):
        return "–"
    return f"{float(v):.1f}"


def _metric_header(df, task) -> str:
    sub = df[df["task"] == task]
    metric = sub["metric"].iloc[0] if len(sub) else "?"
    return f"{task} {metric} % {'↑' if _hib(df, task) else '↓'}"


def _truth(v) -> bool | None:
    if v is None or _isnan(v) if not isinstance(v, str) else v.strip() in ("", "nan", "None"):
        return None
    return str(v).strip().lower() in ("true", "1", "1.0")


# footnote marks for rows that cannot stand beside SUPERB's numbers (see results.comparability)
NOT_COMPARABLE = (("steps capped", "¹", "`--steps` capped the training steps below the config's, so the "
                                         "downstream may be under-trained; SUPERB trains to its configs' steps."),
                  ("folds", "²", "`--folds` ran only some of ER's 5 folds; SUPERB reports the mean over all 5 "
                                 "(sessions differ, one fold is not the mean)."),
                  ("generated corpus", "³", "a mini config on a generated corpus: fewer steps, smaller models "
                                            "and synthetic speech; compare rows with each other and with chance, "
                                            "never with SUPERB's published numbers."))


def comparability_marks(row) -> str:
    why = str(row.get("not_comparable", "") or "") if hasattr(row, "get") else ""
    if why in ("nan", "None"):
        why = ""
    steps = row.get("steps") if hasattr(row, "get") else None
    if not why and not _isnan(steps) and steps not in (None, "", 0):
        why = f"steps capped at {steps}"          # rows written before the column existed
    return "".join(mark for key, mark, _ in NOT_COMPARABLE if key in why)


def cells_markdown(df) -> str:
    """Every cell with its control: value and 95 % interval, chance (and how it was computed), the
    test size, whether it learned (interval beyond chance), CER for ASR, and footnote marks."""
    rows, used = [], set()
    for t in tasks_of(df):
        sub = df[df["task"] == t]
        for _, r in sub.iterrows():
            lo, hi = r.get("ci_low"), r.get("ci_high")
            ci = "" if _isnan(lo) or _isnan(hi) else f" [{_fmt(lo)}, {_fmt(hi)}]"
            learned = _truth(r.get("learned"))
            cer = ""
            if not _isnan(r.get("cer")):
                cer = f"{_fmt(r.get('cer'))} (chance {_fmt(r.get('cer_chance'))})"
            marks = comparability_marks(r)
            used.update(marks)
            n = r.get("n_test")
            rows.append([f"{_metric_header(df, t)}", r["upstream"], stream_label(r), f"{_fmt(r['value'])}{ci}",
                         _fmt(r.get("chance")), str(r.get("chance_kind", "–")).replace("nan", "–"),
                         "–" if _isnan(n) else str(int(float(n))),
                         {True: "yes", False: "**no**", None: "?"}[learned], cer or "–", marks or "–"])
    table = md_table(["task", "upstream", "stream", "value [95 % CI]", "chance", "chance is", "n_test", "learned",
                      "CER %", "not SUPERB-comparable"], rows)
    notes = [f"{mark} {text}" for _, mark, text in NOT_COMPARABLE if mark in used]
    explain = ("All metrics in percent. *learned*: the 95 % interval (Wilson over the test utterances; trials "
               "for EER; see harness/superb/chance.py) lies wholly on the good side of chance; **no** means the "
               "cell cannot be told apart from a model that learned nothing.")
    return "\n".join([table, "", explain, ""] + [n + "  " for n in notes])


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
            parts.append(f"{t}: {want} better by {gap:+.1f} points" + ("" if gap > 0 else " (NOT as expected)"))
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

def chance_by_task(df) -> dict[str, float]:
    """{task: chance} read from the rows (the median over a task's rows; folds may differ slightly)."""
    out = {}
    if "chance" not in df.columns:
        return out
    for t in tasks_of(df):
        v = df.loc[df["task"] == t, "chance"].astype(float).dropna()
        if len(v):
            out[t] = float(v.median())
    return out


def write_plots(df, plots_dir: Path) -> list[Path]:
    """bars (with chance from the rows), the task x stream matrix and the learned layer weights, via
    analysis.plots (PNG + PDF each); returns the PNGs."""
    from analysis.plots import plot_superb_bars, plot_superb_layer_weights, plot_superb_matrix

    plots_dir = Path(plots_dir)
    tasks = tasks_of(df)
    pngs = [plot_superb_bars(df, plots_dir / "bars", chance=chance_by_task(df), tasks=tasks)[0]]
    m = disentanglement_matrix(df)
    if m.shape[1]:
        pngs.append(plot_superb_matrix(m, {t: _hib(df, t) for t in tasks}, plots_dir / "matrix",
                                       headers={t: _metric_header(df, t) for t in tasks})[0])
    weights = [{"task": r["task"], "upstream": r["upstream"], "stream": stream_label(r), "weights": w}
               for _, r in df.iterrows() if (w := layer_weights_of(r)) and len(w) > 1]
    if weights:
        pngs.append(plot_superb_layer_weights(weights, plots_dir / "layer_weights", tasks=tasks)[0])
    return pngs


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
            if not has_checkpoint(r["ckpt_hash"]):
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


def checkpoint_notes(states, dropped) -> list[str]:
    """The report's paragraph on checkpoints that changed since their cells ran
    (:mod:`harness.superb.stale`): what was left out (``--current-checkpoints``), or what is still
    in the tables under ``upstream@hash`` names and how to leave it out. Empty when all are current."""
    changed = [s for s in states if s.status == "changed"]
    unsure = [s for s in states if s.status in ("missing", "unreadable")]
    out = []
    if dropped:
        out.append("Left out (`--current-checkpoints`), because the checkpoint at their recorded path has changed "
                   "since they ran: " + "; ".join(s.describe() for s in dropped) + ".")
    elif changed:
        out.append("**Stale cells in these tables**: " + "; ".join(s.describe() for s in changed) + ". They are "
                   "named `upstream@hash`; `harness report --current-checkpoints` leaves them out.")
    if unsure:
        out.append("Checkpoints not checked against their recorded hash (kept): "
                   + "; ".join(s.describe() for s in unsure) + ".")
    return out


def label_checkpoints(df):
    """A copy of ``df`` where an upstream with cells from more than one checkpoint (a model re-bundled
    while its results CSV lived on) is named ``upstream@hash`` per checkpoint, so that no table puts
    two models' cells under one name. Upstreams with one checkpoint (or none) keep their name."""
    if "ckpt_hash" not in df.columns:
        return df
    df = df.copy()
    h = df["ckpt_hash"].astype(str)
    real = df["ckpt_hash"].map(has_checkpoint)
    n = df[real].groupby("upstream")["ckpt_hash"].nunique()
    sel = real & df["upstream"].isin(set(n[n > 1].index))
    df.loc[sel, "upstream"] = df.loc[sel, "upstream"] + "@" + h[sel].str[:8]
    return df


def render(df, title: str, plots_dir: Path | None, md_dir: Path | None = None,
           notes: list[str] | None = None) -> str:
    """The whole Markdown report; writes PNGs into plots_dir (linked relative to md_dir)."""
    import os

    df = label_checkpoints(df)
    parts = [REPORT_MARKER, "", f"# {title}", "", provenance_markdown(df), ""]
    for n in notes or []:
        parts += [n, ""]
    parts += [
             "## Every cell, with chance and whether it learned", "", cells_markdown(df), "",
             "## Leaderboard (best stream per upstream)", "", leaderboard_best(df), "",
             "## Per stream", "", leaderboard_streams(df), "",
             "## Disentanglement: task × stream", "",
             "Speaker/emotion tasks (sid, asv, er) should favour the *other* stream, phone/word tasks (pr, asr) "
             "the *content* stream.", "", matrix_markdown(df), "", disentanglement_summary(df), "",
             "## Learned layer weights", "", layer_weights_markdown(df), ""]
    if plots_dir is not None:
        pngs = write_plots(df, plots_dir)
        parts += ["## Plots", ""]
        for p in pngs:
            if p is not None:
                rel = os.path.relpath(p, md_dir) if md_dir else str(p)
                parts.append(f"![{p.stem}]({rel})")
        parts.append("")
    return "\n".join(parts)
