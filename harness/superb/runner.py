"""Run one cell: train the s3prl downstream, then test the dev-best checkpoint, both through the
repo's `run_downstream.py` (s3prl's own runner), in subprocesses with one log per cell.

A cell's row is written only after its test metric is parsed, so a run killed mid-cell leaves
no row; the next run wipes that cell's half-written experiment dir and redoes it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from upstream.facts import ROOT

RUN_DOWNSTREAM = ROOT / "run_downstream.py"


class CellFailed(RuntimeError):
    def __init__(self, message: str, log: Path):
        super().__init__(f"{message} (log: {log})")
        self.log = log


@dataclass
class CellPlan:
    """Everything needed to run one cell (built by harness/cli/run.py, executed here).

    `runs`: (name, -o overrides) per training run of the cell: one, or one per fold (ER)."""
    cell_id: str
    task: str
    run_dir: Path
    downstream: str
    config: Path
    runs: list[tuple[str, str]]
    upstream_args: list[str]            # -u NAME [-k CKPT] -s KEY
    test_splits: list[str]
    parse_metric: object                # callable(text, split) -> float
    device: str = "cpu"
    seed: int = 1337
    model_config: dict | None = None    # written to run_dir/upstream.yaml and passed as -g
    env: dict = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.run_dir / "cell.log"

    def expdir(self, run: str) -> Path:
        return self.run_dir / ("exp" if len(self.runs) == 1 else f"exp-{run}")

    def train_argv(self, run: str, overrides: str) -> list[str]:
        argv = ["-m", "train", *self.upstream_args, "-d", self.downstream, "-c", str(self.config),
                "-p", str(self.expdir(run)), "--device", self.device, "--seed", str(self.seed)]
        if self.model_config is not None:
            argv += ["-g", str(self.run_dir / "upstream.yaml")]
        if overrides:
            argv += ["-o", overrides]
        return argv

    def test_argv(self, ckpt: Path, split: str) -> list[str]:
        return ["-m", "evaluate", "-t", split, "-e", str(ckpt), "--device", self.device]


def _quote(argv: list[str]) -> str:
    import shlex
    return " ".join(shlex.quote(a) for a in argv)


def _child_env(extra: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra)
    return env


def _die_with_parent() -> None:  # runs in the child before exec (Linux): SIGKILL when the harness dies
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stream_subprocess(cmd: list[str], log: Path, env: dict, on_progress=None, cwd: Path | None = None,
                      progress_file: Path | None = None, stop=None) -> int:
    """Run `cmd`, appending stdout+stderr to `log`; while it runs, call on_progress(step, total) as
    the child's ``progress_file`` (see harness.s3prl.progress) moves. Returns the exit code. The child
    runs in its own process group and is killed with it if we are interrupted, or when ``stop`` (a
    threading.Event, for a caller running this in a thread) is set: then KeyboardInterrupt is raised."""
    from harness.s3prl.progress import read_progress

    with open(log, "ab") as logf:
        logf.write(("\n$ " + " ".join(cmd) + "\n").encode())
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                cwd=str(cwd) if cwd else None, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt("stopped")
                if on_progress is not None and progress_file is not None:
                    state = read_progress(progress_file)
                    if state and state.get("total"):
                        on_progress(int(state["step"]), int(state["total"]))
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
    return rc


def featurizer_weights(ckpt: Path) -> list[float] | None:
    """softmax of the learned Featurizer (weighted-sum) weights in an s3prl checkpoint, or None
    (single layer). Loaded with weights_only=True: no code in the pickle is executed."""
    import argparse

    import torch

    torch.serialization.add_safe_globals([argparse.Namespace])
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    w = (state.get("Featurizer") or {}).get("weights")
    if w is None:
        return None
    return torch.softmax(w.float(), dim=-1).tolist()


@dataclass(frozen=True)
class CellOutcome:
    """What running a cell measured (the row adds what the cell was: see harness.superb.results.build_row)."""
    value: float                        # the mean over runs (folds) and test splits
    run_values: list[float]
    runs: list[str]
    wall_s: float
    eval_ckpt: str                      # the evaluated (dev-best) s3prl checkpoint of the first run
    layer_weights: list[float] | None   # softmax of the learned weighted sum, None for one layer
    command: str                        # the run_downstream.py commands that reproduce the cell
    log: str
    cache_hit_rate: float | None        # None: the cell did not read the feature cache
    extra: dict = field(default_factory=dict)   # second metrics, mean over runs (asr: {"cer": x})


def run_cell(plan: CellPlan, pbar=None, stop=None) -> CellOutcome:
    """Train + test in one subprocess (harness.superb.cell_main running the repo's run_downstream.py),
    which reports back through its result.json. ``stop``: see :func:`stream_subprocess`."""
    import json

    import yaml

    if plan.run_dir.exists():  # a half-finished earlier attempt: start clean
        shutil.rmtree(plan.run_dir)
    plan.run_dir.mkdir(parents=True)
    if plan.model_config is not None:
        (plan.run_dir / "upstream.yaml").write_text(yaml.safe_dump(plan.model_config))
    env = _child_env(plan.env)
    t0 = time.time()
    n_runs = len(plan.runs)
    state = {"run": 0, "last": -1}

    def progress(step, total):
        if pbar is None:
            return
        if step < state["last"]:           # s3prl's bar restarted: next fold
            state["run"] += 1
        state["last"] = step
        if pbar.total != total * n_runs:
            pbar.reset(total=total * n_runs)
        pbar.n = state["run"] * total + step
        pbar.refresh()

    runs = [{"name": name, "train": plan.train_argv(name, ov), "expdir": str(plan.expdir(name))}
            for name, ov in plan.runs]
    cell_plan = {"task": plan.task, "runs": runs, "test_splits": plan.test_splits,
                 "test_extra": ["--device", plan.device]}
    (plan.run_dir / "plan.json").write_text(json.dumps(cell_plan, indent=1))
    cmd = [sys.executable, "-m", "harness.superb.cell_main", str(plan.run_dir / "plan.json")]
    rc = stream_subprocess(cmd, plan.log, env, progress, progress_file=plan.run_dir / "progress.json",
                           stop=stop)
    result = read_result(plan.run_dir / "result.json")
    if result is None:
        raise CellFailed(f"the cell process ended without a result (exit {rc})", plan.log)
    if not result["ok"] or rc != 0:
        raise CellFailed(f"{result.get('stage', 'cell')} failed: {result.get('error', f'exit {rc}')}", plan.log)
    values, commands, ckpts, extras = [], [], [], {}
    for run, done in zip(runs, result["runs"]):
        commands.append(_quote([sys.executable, str(RUN_DOWNSTREAM), *run["train"]]))
        for split in plan.test_splits:
            values.append(float(done["test"][split]))
            for k, v in (done.get("extra") or {}).get(split, {}).items():
                extras.setdefault(k, []).append(float(v))
            commands.append(_quote([sys.executable, str(RUN_DOWNSTREAM), *plan.test_argv(Path(done["ckpt"]), split)]))
        ckpts.append(done["ckpt"])
    weights = featurizer_weights(Path(ckpts[0])) if ckpts else None
    keep = {Path(c) for c in ckpts}
    for p in plan.run_dir.glob("exp*/states-*.ckpt"):  # keep only the evaluated checkpoints (disk)
        if p not in keep:
            p.unlink()
    from harness.features.cache import hit_rate

    return CellOutcome(value=sum(values) / len(values), run_values=values, runs=[r["name"] for r in runs],
                       wall_s=round(time.time() - t0, 1), eval_ckpt=ckpts[0] if ckpts else "",
                       layer_weights=weights, command=" && ".join(commands), log=str(plan.log),
                       cache_hit_rate=hit_rate(result.get("cache") or {}),
                       extra={k: sum(v) / len(v) for k, v in extras.items()})


def read_result(path: Path) -> dict | None:
    """The cell process's result.json (see harness.superb.cell_main), or None if it wrote none."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
