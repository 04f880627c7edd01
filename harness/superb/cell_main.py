"""One cell in one process: the repo's run_downstream.py `-m train`, then `-m evaluate` of the
checkpoint the task selects (dev-best; for ASV, as SUPERB does, every saved checkpoint, reporting
the best EER) on its test split — s3prl's own runner both times, imported
once, which halves the start-up cost of a cell on CPU. A task with folds (ER: 5 sessions) does one
train + test per fold inside the cell.

    python -m harness.superb.cell_main PLAN.json     # written by harness/superb/runner.py

The cell's outcome is data: ``result.json`` beside the plan (written atomically, last), holding each
run's evaluated checkpoint and test metric (parsed here, from the output of that evaluation alone,
with the task's parser), the feature cache's hits and misses, or the stage that failed. s3prl's
training bar is silenced and written to ``progress.json`` (see harness.s3prl.progress). The
``[harness-cell]`` lines in the log are for people reading it.
"""
from __future__ import annotations

import io
import json
import runpy
import sys
from pathlib import Path

from upstream.facts import ROOT, atomic_write_json

MARK = "[harness-cell]"
RESULT_FORMAT = "duet-cell-result/1"


class _Tee(io.TextIOBase):
    """Writes to the real stream (the cell log) and keeps a copy (for the metric parser)."""

    def __init__(self, real):
        self.real, self.copy = real, io.StringIO()

    def write(self, s):
        self.copy.write(s)
        return self.real.write(s)

    def flush(self):
        self.real.flush()


def run_downstream(argv: list[str], capture: bool = False) -> tuple[int, str]:
    """Exactly `python run_downstream.py ARGV...` (the repo's script), in this process; returns the
    exit code and, with ``capture``, what it printed."""
    script = ROOT / "run_downstream.py"
    old_argv, old_out, old_err = sys.argv, sys.stdout, sys.stderr
    sys.argv = [str(script), *argv]
    out = err = None
    if capture:
        sys.stdout, sys.stderr = out, err = _Tee(old_out), _Tee(old_err)
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    finally:
        sys.argv, sys.stdout, sys.stderr = old_argv, old_out, old_err
    text = (out.copy.getvalue() + err.copy.getvalue()) if capture else ""
    return code, text


def test_checkpoints(task: str, expdir: Path) -> list[Path]:
    """The checkpoints the task tests (dev-best, or for ASV every saved one); [] if training wrote none."""
    from harness.superb.tasks import TASKS
    try:
        return TASKS[task].test_checkpoints(expdir)
    except FileNotFoundError:
        return []


def run_plan(plan: dict, result_path: Path) -> int:
    from harness.features.cache import COUNTS
    from harness.superb.tasks import TASKS

    spec = TASKS[plan["task"]]
    result: dict = {"format": RESULT_FORMAT, "ok": False, "runs": [], "cache": COUNTS}

    def finish(rc: int, **failure) -> int:
        result.update(ok=rc == 0, **failure)
        atomic_write_json(result_path, result, sort_keys=False)
        return rc

    for run in plan["runs"]:
        print(f"{MARK} train run={run['name']}", flush=True)
        rc, _ = run_downstream(run["train"])
        if rc:
            return finish(rc, stage="train", run=run["name"], error=f"training exited with {rc}")
        ckpts = test_checkpoints(plan["task"], Path(run["expdir"]))
        if not ckpts:
            return finish(3, stage="train", run=run["name"], error=f"no checkpoint in {run['expdir']}")
        tested = []
        for ckpt in ckpts:
            tests, extra = {}, {}
            for split in plan["test_splits"]:
                print(f"{MARK} test run={run['name']} split={split} ckpt={ckpt}", flush=True)
                rc, text = run_downstream(["-m", "evaluate", "-t", split, "-e", str(ckpt), *plan.get("test_extra", [])],
                                          capture=True)
                if rc:
                    return finish(rc, stage="test", run=run["name"], error=f"evaluation on {split} exited with {rc}")
                try:
                    tests[split] = float(spec.parse_metric(text, split))
                    extra[split] = {k: float(v) for k, v in spec.parse_extra(text, split).items()}
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    return finish(4, stage="test", run=run["name"],
                                  error=f"could not parse the test metric of {run['name']} on {split}: {e}")
            tested.append({"ckpt": str(ckpt), "test": tests, "extra": extra})
        first = plan["test_splits"][0]
        best = tested[0]
        for t in tested[1:]:                  # the best test score over the tested checkpoints (ASV)
            if spec.better(t["test"][first], best["test"][first]):
                best = t
        result["runs"].append({"name": run["name"], "expdir": run["expdir"], "ckpt": best["ckpt"],
                               "test": best["test"], "extra": best["extra"], "tested": tested})
    print(f"{MARK} done", flush=True)
    return finish(0)


def main(argv: list[str] | None = None) -> int:
    from harness.s3prl import compat
    from harness.s3prl.progress import install_progress_file

    compat.install()
    argv = sys.argv[1:] if argv is None else argv
    plan_path = Path(argv[0])
    plan = json.loads(plan_path.read_text())
    install_progress_file(plan_path.with_name("progress.json"))
    return run_plan(plan, plan_path.with_name("result.json"))


if __name__ == "__main__":
    sys.exit(main())
