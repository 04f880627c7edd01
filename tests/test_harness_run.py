"""`harness run` end to end through the real CLI on the tiny corpus: 2 tasks x 2 upstreams, resume,
kill mid-cell, early errors. Each cell is a real s3prl train + test (few steps)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("harness.tasks")
if not (Path(__file__).resolve().parents[1] / "run_downstream.py").is_file():
    pytest.skip("run_downstream.py not in this checkout", allow_module_level=True)

from conftest import cli_env  # noqa: E402

STEPS = "3"


def _rows(results: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(results / f"{name}.csv")


def test_two_tasks_two_upstreams_then_resume(run_cli, tiny_corpus, tmp_path):
    res = tmp_path / "results"
    args = ["run", "--tasks", "sid,er", "--upstreams", "fbank,jooci", "--features", "content",
            "--ckpt", "jooci=random:tiny", "--corpus", tiny_corpus, "--steps", STEPS, "--results", res,
            "--name", "e2e", "--device", "cpu", "--cache-dir", tmp_path / "cache"]
    p = run_cli(*args, cwd=tmp_path)
    df = _rows(res, "e2e")
    assert sorted(zip(df.task, df.upstream, df.feature)) == [
        ("er", "fbank", "hidden_states"), ("er", "jooci", "content"),
        ("sid", "fbank", "hidden_states"), ("sid", "jooci", "content")]
    assert df.value.between(0, 1).all() and (df.metric == "acc").all()
    assert (df.ckpt_hash[df.upstream == "jooci"].str.len() == 12).all()
    assert df.cache[df.upstream == "jooci"].all() and not df.cache[df.upstream == "fbank"].any()
    assert (df.cache_hit_rate[df.upstream == "jooci"] > 0.5).all()     # the cache was really used
    for _, r in df.iterrows():
        assert Path(r.log).is_file() and Path(r.eval_ckpt).is_file()
        assert "run_downstream.py -m train" in r.command and r.git_commit and r.machine
    assert "sid" in p.stdout and "acc" in p.stdout                       # the table is printed
    # the DUET cells learned a weighted sum over the content layers, read back from the s3prl ckpt
    row = json.loads(next((res / "e2e" / "cells").glob("sid-jooci-*.json")).read_text())
    assert len(row["layer_weights"]) > 1 and abs(sum(row["layer_weights"]) - 1) < 1e-5

    mtimes = {q: q.stat().st_mtime for q in (res / "e2e" / "cells").glob("*.json")}
    p = run_cli(*args, cwd=tmp_path)                                      # resume: nothing to do
    assert "4 cells (4 already done)" in p.stdout
    assert {q: q.stat().st_mtime for q in (res / "e2e" / "cells").glob("*.json")} == mtimes


def test_killed_mid_cell_leaves_no_row_and_only_that_cell_is_redone(run_cli, tiny_corpus, tmp_path):
    res = tmp_path / "results"
    args = ["run", "--tasks", "er,sid", "--upstreams", "fbank", "--corpus", tiny_corpus, "--steps", STEPS,
            "--results", res, "--name", "kill", "--device", "cpu", "--no-cache"]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells, runs = res / "kill" / "cells", res / "kill" / "runs"
    deadline = time.time() + 300
    second_log = None
    try:   # wait until cell 1 has its row and cell 2 has started, then kill -9 the harness
        while time.time() < deadline:
            done = list(cells.glob("*.json")) if cells.is_dir() else []
            if done:
                started = [q for q in runs.glob("*/cell.log") if q.parent.name != done[0].stem]
                if started and "[harness-cell] train" in started[0].read_text(errors="replace"):
                    second_log = started[0]
                    break
            assert proc.poll() is None, "harness run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the second cell never started")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = next(cells.glob("*.json"))
    first_mtime = first.stat().st_mtime
    time.sleep(2)
    assert [q.name for q in cells.glob("*.json")] == [first.name]      # no row for the killed cell
    assert not list(res.rglob("*.tmp"))
    text = second_log.read_text(errors="replace")
    assert "[harness-cell] done" not in text                             # it really was mid-cell ...
    size = second_log.stat().st_size
    time.sleep(2)
    assert second_log.stat().st_size == size                             # ... and its child died too

    p = run_cli(*args, cwd=tmp_path)
    assert "2 cells (1 already done)" in p.stdout
    assert first.stat().st_mtime == first_mtime                          # the finished cell was not redone
    df = _rows(res, "kill")
    assert sorted(df.task) == ["er", "sid"]
    assert "[harness-cell] done" in second_log.read_text(errors="replace")
