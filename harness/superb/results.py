"""Results store: one JSON file per finished cell (written atomically), a CSV rebuilt from them.

Layout under `--results DIR` for run name NAME:

    DIR/NAME/cells/<cell-id>.json     one row per finished cell (only ever complete files)
    DIR/NAME/locks/<cell-id>.lock     per-cell locks (two runs into one dir never clobber)
    DIR/NAME/runs/<cell-id>/          s3prl experiment dir + train/test logs (git-ignored)
    DIR/NAME.csv                      every row, rebuilt from the cell files after each cell
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from upstream.facts import atomic_write_text  # noqa: F401  (re-exported for the report)

if TYPE_CHECKING:
    from harness.superb.cells import Cell
    from harness.superb.runner import CellOutcome

COLUMNS = ["task", "upstream", "feature", "layers", "metric", "unit", "value", "ci_low", "ci_high", "chance",
           "chance_kind", "n_test", "learned", "cer", "cer_ci_low", "cer_ci_high", "cer_chance", "cer_learned",
           "higher_is_better", "superb_comparable", "not_comparable", "ckpt_hash", "corpus", "corpus_id", "config",
           "steps", "folds_run", "folds_total", "cache", "cache_hit_rate", "wall_s", "git_commit", "machine",
           "device", "cell_id", "eval_ckpt", "command", "finished_utc"]
UNIT = "%"                       # every metric of every row, in percent


@dataclass(frozen=True)
class RunContext:
    """What every row of one `harness run` shares: where the data came from and where it ran."""
    corpus: str                 # short label ("small", "real:datasets")
    corpus_path: str
    device: str
    machine: str
    git_commit: str
    command: str                # the harness command line
    layout: object = field(default=None, compare=False)   # CorpusLayout (or real data's) for chance levels


def to_percent(value: float, unit: str) -> float:
    """A metric as s3prl prints it (TaskSpec.unit 'fraction' or 'percent') -> percent."""
    if unit == "fraction":
        return 100.0 * float(value)
    if unit == "percent":
        return float(value)
    raise ValueError(f"unknown metric unit {unit!r} (expected 'fraction' or 'percent')")


def comparability(task: str, steps: int | None, runs: list[str], corpus_kind: str) -> tuple[list[str], int]:
    """Why a row's number cannot stand beside SUPERB's (empty list: it can), and the folds it ran."""
    from harness.superb.tasks import TASKS
    total = len(TASKS[task].folds) if task in TASKS else 0
    reasons = []
    if steps:
        reasons.append(f"steps capped at {steps}")
    if total and len(runs) < total:
        reasons.append(f"{len(runs)} of {total} folds")
    if corpus_kind != "real":
        reasons.append("mini config on a generated corpus")
    return reasons, total


def build_row(cell: "Cell", config: Path, metric: str, higher_is_better: bool, outcome: "CellOutcome",
              ctx: RunContext, cache: bool) -> dict:
    """The one place a result row is made: what the cell is, how it was run, what it measured, and
    against what: every metric in percent, its chance level (harness.superb.chance), the test size,
    a 95 % interval and whether it lies beyond chance (``learned``), and whether the number is
    comparable with SUPERB's (``not_comparable`` says why not)."""
    from harness.superb import chance as ch
    from harness.superb.tasks import TASKS

    unit = TASKS[cell.task].unit if cell.task in TASKS else "fraction"
    out = asdict(outcome)
    extra = out.pop("extra", None) or {}
    value = to_percent(outcome.value, unit)
    out["value"] = value
    out["run_values"] = [to_percent(v, unit) for v in outcome.run_values]
    layout = ctx.layout
    if layout is None and Path(ctx.corpus_path).is_dir():
        from harness.corpus.layout import CorpusLayout
        layout = CorpusLayout(ctx.corpus_path)
    chances = ch.chance_for(cell.task, layout, outcome.runs) if layout is not None else \
        {"value": ch.Chance(None, "unknown (no data layout)", None)}
    c = chances["value"]
    lo, hi = ch.wilson(value, c.n_test)
    reasons, folds_total = comparability(cell.task, cell.steps, outcome.runs, "real" if ctx.corpus.startswith("real:")
                                         else "generated")
    row = {**cell.key(), "corpus": ctx.corpus, "corpus_path": ctx.corpus_path, "ckpt": cell.ckpt,
           "cell_id": cell.id, "metric": metric, "unit": UNIT, "higher_is_better": higher_is_better,
           "config": str(config), "cache": cache, "git_commit": ctx.git_commit, "machine": ctx.machine,
           "device": ctx.device, "harness_command": ctx.command, **out,
           "chance": c.value, "chance_kind": c.kind, "n_test": c.n_test, "ci_low": lo, "ci_high": hi,
           "learned": ch.learned(value, c.value, c.n_test, higher_is_better),
           "folds_run": len(outcome.runs) if folds_total else None, "folds_total": folds_total or None,
           "superb_comparable": not reasons, "not_comparable": "; ".join(reasons),
           "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    for name, v in extra.items():            # second metrics (asr: cer), already in percent
        cc = chances.get(name, ch.Chance(None, "unknown", c.n_test))
        row[name] = float(v)
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = ch.wilson(float(v), cc.n_test)
        row[f"{name}_chance"] = cc.value
        row[f"{name}_learned"] = ch.learned(float(v), cc.value, cc.n_test, higher_is_better)
    if not cache:
        row.pop("cache_hit_rate")
    return row


class ResultStore:
    def __init__(self, results_dir: Path, name: str):
        self.dir = Path(results_dir).resolve()
        self.name = name
        self.root = self.dir / name
        self.cells_dir = self.root / "cells"
        self.locks_dir = self.root / "locks"
        self.runs_dir = self.root / "runs"
        self.csv_path = self.dir / f"{name}.csv"

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def lock_path(self, cell_id: str) -> Path:
        return self.locks_dir / f"{cell_id}.lock"

    def run_dir(self, cell_id: str) -> Path:
        return self.runs_dir / cell_id

    def has(self, cell_id: str) -> bool:
        return self.cell_path(cell_id).is_file()

    def get(self, cell_id: str) -> dict | None:
        p = self.cell_path(cell_id)
        return json.loads(p.read_text()) if p.is_file() else None

    def put(self, row: dict) -> Path:
        p = self.cell_path(row["cell_id"])
        atomic_write_text(p, json.dumps(row, indent=1, sort_keys=True) + "\n")
        return p

    def remove(self, cell_id: str) -> None:
        self.cell_path(cell_id).unlink(missing_ok=True)

    def rows(self) -> list[dict]:
        out = []
        if self.cells_dir.is_dir():
            for p in sorted(self.cells_dir.glob("*.json")):
                try:
                    out.append(json.loads(p.read_text()))
                except ValueError as e:  # cannot happen with atomic writes; say so loudly if it does
                    raise ValueError(f"{p}: corrupt result file ({e}); delete it and re-run that cell") from e
        return out

    def frame(self):
        import pandas as pd

        rows = self.rows()
        df = in_percent(pd.DataFrame(rows))
        if df.empty:
            return pd.DataFrame(columns=COLUMNS)
        cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
        return df[cols].sort_values(["task", "upstream", "feature", "layers"]).reset_index(drop=True)

    def write_csv(self) -> Path:
        df = self.frame()
        atomic_write_text(self.csv_path, df.to_csv(index=False))
        return self.csv_path


def in_percent(df):
    """Rows written before every metric was in percent (no ``unit`` column, or an empty one) get their
    fraction metrics (acc, EER, PER: TaskSpec.unit 'fraction') scaled to percent and ``unit`` '%'."""
    from harness.superb.tasks import TASKS

    if df is None or not len(df) or "value" not in df.columns:
        return df
    df = df.copy()
    if "unit" not in df.columns:
        df["unit"] = None
    old = df["unit"].isna() | (df["unit"].astype(str) != UNIT)
    for i in df.index[old]:
        spec = TASKS.get(str(df.at[i, "task"]))
        if spec is not None:
            df.at[i, "value"] = to_percent(float(df.at[i, "value"]), spec.unit)
    df.loc[old, "unit"] = UNIT
    return df


def load_results(path: Path):
    """A results CSV, a results dir+name (`results/superb`), or a cells dir -> DataFrame (percent)."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".csv":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such results file; run `harness run` first or pass the CSV it wrote")
        return in_percent(pd.read_csv(path))
    for cand in (path / "cells", path):
        if cand.is_dir() and any(cand.glob("*.json")):
            return in_percent(pd.DataFrame([json.loads(p.read_text()) for p in sorted(cand.glob("*.json"))]))
    csv = path.with_suffix(".csv")
    if csv.is_file():
        return in_percent(pd.read_csv(csv))
    raise FileNotFoundError(f"{path}: no results here (expected NAME.csv or NAME/cells/*.json)")


def _pct(v) -> str:
    try:
        return "–" if v is None or v != v else f"{float(v):.1f}"
    except (TypeError, ValueError):
        return "–"


def format_table(df, columns=("task", "upstream", "feature", "layers", "metric", "value", "ci", "chance", "learned",
                              "cer", "wall_s")) -> str:
    """Plain-text table for the terminal (metrics in percent; ci: the 95 % interval)."""
    if df is None or len(df) == 0:
        return "(no results)"
    df = df.copy()
    if {"ci_low", "ci_high"} <= set(df.columns):
        df["ci"] = [f"[{_pct(a)}, {_pct(b)}]" for a, b in zip(df["ci_low"], df["ci_high"])]
    cols = [c for c in columns if c in df.columns]
    sub = df[cols].copy()
    if "metric" in sub:
        sub["metric"] = sub["metric"].map(lambda m: f"{m} %")
    for c in ("value", "chance", "cer"):
        if c in sub:
            sub[c] = sub[c].map(_pct)
    if "learned" in sub:
        sub["learned"] = sub["learned"].map(lambda v: "?" if v is None or v != v else "yes" if v in (True, "True")
                                            else "no")
    if "wall_s" in sub:
        sub["wall_s"] = sub["wall_s"].map(lambda v: f"{v:.0f}")
    return sub.to_string(index=False)
