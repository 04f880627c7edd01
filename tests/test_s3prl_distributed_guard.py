"""`torchrun run_downstream.py` without s3prl's --local_rank is refused (it would run N silent
copies into one experiment folder); a plain run and a correctly ranked one pass."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.s3prl.distributed_guard import refusal

ROOT = Path(__file__).resolve().parents[1]
ARGV = ["-m", "train", "-u", "fbank", "-d", "voxceleb1", "-c", "downstream_configs/mini/sid.yaml", "-p", "runs/x"]


def test_plain_run_passes():
    assert refusal(ARGV, {}) is None
    assert refusal(ARGV, {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None


def test_torchrun_without_local_rank_is_refused_with_the_command_to_use():
    msg = refusal(ARGV, {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "2"})
    assert msg is not None and "WORLD_SIZE=4" in msg and "--local_rank" in msg
    # the exact single-process command, with the user's arguments, quoted for the shell
    assert "CUDA_VISIBLE_DEVICES=0 python run_downstream.py -m train -u fbank -d voxceleb1 " \
           "-c downstream_configs/mini/sid.yaml -p runs/x" in msg


def test_local_rank_must_match_the_launcher():
    env = {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert refusal([*ARGV, "--local_rank", "1"], env) is None
    assert refusal([*ARGV, "--local_rank=1"], env) is None
    msg = refusal([*ARGV, "--local_rank", "0"], env)
    assert msg is not None and "LOCAL_RANK=1" in msg and "GPU 0" in msg


def test_bad_world_size_is_named():
    msg = refusal(ARGV, {"WORLD_SIZE": "two"})
    assert msg is not None and "'two'" in msg


def test_run_downstream_script_exits_2_before_loading_anything():
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "run_downstream.py"), *ARGV], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "without s3prl's --local_rank" in proc.stderr and "python run_downstream.py -m train" in proc.stderr
    assert not (ROOT / "runs" / "x").exists()
