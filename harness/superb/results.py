"""Results store: one JSON file per finished cell (written atomically), a CSV rebuilt from them.

Layout under `--results DIR` for run name NAME:

    DIR/NAME/cells/<cell-id>.json     one row per finished cell (only ever complete files)
    DIR/NAME/locks/<cell-id>.lock     per-cell locks (two runs into one dir never clobber)
    DIR/NAME/runs/<cell-id>/          s3prl experiment dir + train/test logs (git-ignored)
    DIR/NAME.csv                      every row, rebuilt from the cell files after each cell
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from upstream.facts import atomic_write_text  # noqa: F401  (re-exported for the report)

if TYPE_CHECKING:
    from harness.superb.cells import Cell
    from harness.superb.runner import CellOutcome

COLUMNS = ["task", "upstream", "feature", "layers", "metric", "value", "higher_is_better", "ckpt_hash",
           "corpus", "corpus_id", "config", "steps", "cache", "cache_hit_rate", "wall_s", "git_commit",
           "machine", "device", "cell_id", "eval_ckpt", "command", "finished_utc"]


@dataclass(frozen=True)
class RunContext:
    """What every row of one `harness run` shares: where the data came from and where it ran."""
    corpus: str                 # short label ("small", "real:datasets")
    corpus_path: str
    device: str
    machine: str
    git_commit: str
    command: str                # the harness command line


def build_row(cell: "Cell", config: Path, metric: str, higher_is_better: bool, outcome: "CellOutcome",
              ctx: RunContext, cache: bool) -> dict:
    """The one place a result row is made: what the cell is, how it was run, what it measured."""
    row = {**cell.key(), "corpus": ctx.corpus, "corpus_path": ctx.corpus_path, "ckpt": cell.ckpt,
           "cell_id": cell.id, "metric": metric, "higher_is_better": higher_is_better, "config": str(config),
           "cache": cache, "git_commit": ctx.git_commit, "machine": ctx.machine, "device": ctx.device,
           "harness_command": ctx.command, **asdict(outcome),
           "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
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
        df = pd.DataFrame(rows)
        if df.empty:
            return pd.DataFrame(columns=COLUMNS)
        cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
        return df[cols].sort_values(["task", "upstream", "feature", "layers"]).reset_index(drop=True)

    def write_csv(self) -> Path:
        df = self.frame()
        atomic_write_text(self.csv_path, df.to_csv(index=False))
        return self.csv_path


def load_results(path: Path):
    """A results CSV, a results dir+name (`results/superb`), or a cells dir -> DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".csv":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such results file; run `harness run` first or pass the CSV it wrote")
        return pd.read_csv(path)
    for cand in (path / "cells", path):
        if cand.is_dir() and any(cand.glob("*.json")):
            return pd.DataFrame([json.loads(p.read_text()) for p in sorted(cand.glob("*.json"))])
    csv = path.with_suffix(".csv")
    if csv.is_file():
        return pd.read_csv(csv)
    raise FileNotFoundError(f"{path}: no results here (expected NAME.csv or NAME/cells/*.json)")


def format_table(df, columns=("task", "upstream", "feature", "layers", "metric", "value", "wall_s")) -> str:
    """Plain-text table for the terminal."""
    if df is None or len(df) == 0:
        return "(no results)"
    cols = [c for c in columns if c in df.columns]
    sub = df[cols].copy()
    if "value" in sub:
        sub["value"] = sub["value"].map(lambda v: f"{v:.4f}")
    if "wall_s" in sub:
        sub["wall_s"] = sub["wall_s"].map(lambda v: f"{v:.0f}")
    return sub.to_string(index=False)
