"""One cell in one process: the repo's run_downstream.py `-m train`, then `-m evaluate` of the
checkpoint the task selects (dev-best) on its test split — s3prl's own runner both times, imported
once, which halves the start-up cost of a cell on CPU. A task with folds (ER: 5 sessions) does one
train + test per fold inside the cell.

    python -m harness.cell_main PLAN.json     # written by harness/runner.py

Prints `[harness-cell] test run=R split=S ckpt=C` before each evaluation so the caller parses each
run's metric from its own segment of the log.
"""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

from harness.provenance import ROOT

MARK = "[harness-cell]"


def run_downstream(argv: list[str]) -> int:
    """Exactly `python run_downstream.py ARGV...` (the repo's script), in this process."""
    script = ROOT / "run_downstream.py"
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
        return 0
    except SystemExit as e:
        code = e.code
        if code is None or code == 0:
            return 0
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            return 1
        return code
    finally:
        sys.argv = old


def eval_checkpoint(task: str, expdir: Path) -> Path | None:
    from harness.tasks import TASKS
    try:
        return TASKS[task].eval_checkpoint(expdir)
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(argv[0]).read_text())
    for run in plan["runs"]:
        print(f"{MARK} train run={run['name']}", flush=True)
        rc = run_downstream(run["train"])
        if rc:
            print(f"{MARK} train failed run={run['name']} rc={rc}", flush=True)
            return rc
        ckpt = eval_checkpoint(plan["task"], Path(run["expdir"]))
        if ckpt is None:
            print(f"{MARK} no checkpoint in {run['expdir']}", flush=True)
            return 3
        for split in plan["test_splits"]:
            print(f"{MARK} test run={run['name']} split={split} ckpt={ckpt}", flush=True)
            rc = run_downstream(["-m", "evaluate", "-t", split, "-e", str(ckpt), *plan.get("test_extra", [])])
            if rc:
                print(f"{MARK} test failed rc={rc}", flush=True)
                return rc
    print(f"{MARK} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
