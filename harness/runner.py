"""Run one cell: train the s3prl downstream, then test the dev-best checkpoint, both through the
repo's `run_downstream.py` (s3prl's own runner), in subprocesses with one log per cell.

A cell's row is written only after its test metric is parsed, so a run killed mid-cell leaves
no row; the next run wipes that cell's half-written experiment dir and redoes it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.provenance import ROOT

RUN_DOWNSTREAM = ROOT / "run_downstream.py"
_STEP_RE = re.compile(rb"overall:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


class CellFailed(RuntimeError):
    def __init__(self, message: str, log: Path):
        super().__init__(f"{message} (log: {log})")
        self.log = log


@dataclass
class CellPlan:
    """Everything needed to run one cell (built by cmd_run, executed here)."""
    cell_id: str
    run_dir: Path
    downstream: str
    config: Path
    overrides: str
    upstream_args: list[str]            # -u NAME [-k CKPT] [-g YAML] -s KEY
    test_splits: list[str]
    parse_metric: object                # callable(text) -> float
    device: str = "cpu"
    seed: int = 1337
    total_steps: int | None = None
    model_config: dict | None = None    # written to run_dir/upstream.yaml and passed as -g
    env: dict = field(default_factory=dict)

    @property
    def expdir(self) -> Path:
        return self.run_dir / "exp"

    @property
    def log(self) -> Path:
        return self.run_dir / "cell.log"

    def train_cmd(self) -> list[str]:
        cmd = [sys.executable, str(RUN_DOWNSTREAM), "-m", "train", *self.upstream_args,
               "-d", self.downstream, "-c", str(self.config), "-p", str(self.expdir),
               "--device", self.device, "--seed", str(self.seed)]
        if self.model_config is not None:
            cmd += ["-g", str(self.run_dir / "upstream.yaml")]
        if self.overrides:
            cmd += ["-o", self.overrides]
        return cmd

    def test_cmd(self, ckpt: Path, split: str) -> list[str]:
        return [sys.executable, str(RUN_DOWNSTREAM), "-m", "evaluate", "-t", split, "-e", str(ckpt),
                "--device", self.device]


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


def stream_subprocess(cmd: list[str], log: Path, env: dict, on_progress=None, cwd: Path | None = None) -> tuple[int, bytes]:
    """Run `cmd`, appending stdout+stderr to `log`; call on_progress(step, total) as s3prl's
    'overall' bar moves. Returns (returncode, output). The child runs in its own process group and
    is killed with it if we are interrupted."""
    with open(log, "ab") as logf:
        logf.write(("\n$ " + " ".join(cmd) + "\n").encode())
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=str(cwd) if cwd else None, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        chunks = []
        try:
            fd = proc.stdout.fileno()
            while True:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                logf.write(data)
                logf.flush()
                chunks.append(data)
                if on_progress is not None:
                    m = None
                    for m in _STEP_RE.finditer(data):
                        pass
                    if m is not None:
                        on_progress(int(m.group(1)), int(m.group(2)))
            rc = proc.wait()
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
    return rc, b"".join(chunks)


def pick_eval_ckpt(expdir: Path) -> Path | None:
    """The dev-best checkpoint s3prl saved (`dev-best.ckpt`, `dev-clean-best.ckpt`, ...), else the
    last `states-N.ckpt` (tasks with no dev set, e.g. ASV, as in s3prl's own protocol)."""
    best = sorted(expdir.glob("*best*.ckpt"))
    if best:
        return best[0]
    states = sorted(expdir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[-1]))
    return states[-1] if states else None


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


def split_segments(text: str) -> dict[str, str]:
    """{split: output of its evaluation} from a cell_main log."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("[harness-cell] test split="):
            cur = line.split("split=", 1)[1].split(" ckpt=")[0]
            out[cur] = ""
        elif line.startswith("[harness-cell]"):
            cur = None
        elif cur is not None:
            out[cur] += line + "\n"
    return out


def run_cell(plan: CellPlan, pbar=None) -> dict:
    """Train + test in one subprocess (harness.cell_main running the repo's run_downstream.py);
    returns the measured part of the row (metric value, wall time, commands, layer weights)."""
    import json

    import yaml

    if plan.run_dir.exists():  # a half-finished earlier attempt: start clean
        shutil.rmtree(plan.run_dir)
    plan.run_dir.mkdir(parents=True)
    if plan.model_config is not None:
        (plan.run_dir / "upstream.yaml").write_text(yaml.safe_dump(plan.model_config))
    env = _child_env(plan.env)
    t0 = time.time()

    def progress(step, total):
        if pbar is not None:
            if pbar.total != total:
                pbar.reset(total=total)
            pbar.n = step
            pbar.refresh()

    train_cmd = plan.train_cmd()
    cell_plan = {"train": train_cmd[2:], "expdir": str(plan.expdir), "test_splits": plan.test_splits,
                 "test_extra": ["--device", plan.device]}
    (plan.run_dir / "plan.json").write_text(json.dumps(cell_plan, indent=1))
    cmd = [sys.executable, "-m", "harness.cell_main", str(plan.run_dir / "plan.json")]
    rc, out = stream_subprocess(cmd, plan.log, env, progress)
    text = out.decode(errors="replace")
    if rc != 0:
        where = "testing" if "[harness-cell] test split=" in text else "training"
        raise CellFailed(f"{where} failed (exit {rc})", plan.log)
    ckpt = pick_eval_ckpt(plan.expdir)
    segments = split_segments(text)
    values = []
    for split in plan.test_splits:
        try:
            values.append(float(plan.parse_metric(segments.get(split, ""))))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise CellFailed(f"could not parse the test metric on {split}: {e}", plan.log) from e
    weights = featurizer_weights(ckpt)
    for p in plan.expdir.glob("states-*.ckpt"):  # keep only the evaluated checkpoint (disk)
        if p != ckpt:
            p.unlink()
    test_cmds = [" ".join(plan.test_cmd(ckpt, s)) for s in plan.test_splits]
    return {
        "value": sum(values) / len(values),
        "split_values": values,
        "wall_s": round(time.time() - t0, 1),
        "eval_ckpt": str(ckpt),
        "layer_weights": weights,
        "command": " ".join(train_cmd) + " && " + " && ".join(test_cmds),
        "log": str(plan.log),
    }
