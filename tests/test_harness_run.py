"""`harness run` end to end through the real CLI on the tiny corpus: 2 tasks x 2 upstreams (fbank and
a random-init tiny DUET model, its features from the cache), killed with SIGKILL mid-cell, resumed.
Every cell is a real s3prl train + test (STEPS steps)."""
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

import harness.superb.tasks  # noqa: E402,F401  (a broken import fails CI)
if not (Path(__file__).resolve().parents[1] / "run_downstream.py").is_file():
    pytest.skip("run_downstream.py not in this checkout", allow_module_level=True)

from conftest import cli_env  # noqa: E402

DUET = "jooci"


def _wait_then_kill(proc, cells: Path, runs: Path, min_done: int, timeout: float = 400) -> tuple[Path, int]:
    """Wait until at least `min_done` rows exist and a later cell is training (its log says so and not
    yet done, in one read); SIGKILL the harness. Returns that cell's log and how many rows existed:
    which cell is caught depends on the machine's load, what must hold after the kill does not."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            done = {q.stem for q in cells.glob("*.json")} if cells.is_dir() else set()
            if len(done) >= min_done:
                started = [q for q in runs.glob("*/cell.log") if q.parent.name not in done]
                text = started[0].read_text(errors="replace") if started else ""
                if "[harness-cell] train" in text and "[harness-cell] done" not in text:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return started[0], len(done)
            assert proc.poll() is None, "harness run ended before a cell could be killed mid-training (raise STEPS)"
            time.sleep(0.2)
        pytest.fail(f"no cell after the first {min_done} was ever seen training")
    finally:
        if proc.poll() is None:
            proc.kill()


# enough training steps that the killed cell cannot finish between the poll that sees it train and
# the kill (with 3 it did, on a loaded 2-core machine: its log already said "done")
STEPS = 60


def test_run_end_to_end_killed_mid_cell_then_resumed(run_cli, tiny_corpus, tmp_path):
    res = tmp_path / "results"
    args = ["run", "--tasks", "sid,er", "--upstreams", f"fbank,{DUET}", "--features", "content",
            "--ckpt", f"{DUET}=random:tiny", "--corpus", tiny_corpus, "--steps", str(STEPS), "--results", res,
            "--name", "e2e", "--device", "cpu", "--cache-dir", tmp_path / "cache", "--folds", "1",
            "--no-fast"]                                                          # s3prl's runner in every cell
    cells, runs = res / "e2e" / "cells", res / "e2e" / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_log, n_done = _wait_then_kill(proc, cells, runs, min_done=1)
    done = {q.name: q.stat().st_mtime for q in cells.glob("*.json")}
    assert len(done) == n_done < 4
    time.sleep(2)
    assert len(list(cells.glob("*.json"))) == n_done                     # no row for the killed cell
    assert not list(res.rglob("*.tmp"))                                  # no half-written file
    text = killed_log.read_text(errors="replace")
    assert "[harness-cell] done" not in text                             # it really was mid-cell ...
    size = killed_log.stat().st_size
    time.sleep(2)
    assert killed_log.stat().st_size == size                             # ... and its s3prl child died too

    p = run_cli(*args, cwd=tmp_path)                                     # resume
    assert f"4 cells ({n_done} already done)" in p.stdout
    assert {q.name: q.stat().st_mtime for q in cells.glob("*.json") if q.name in done} == done  # not redone
    assert "[harness-cell] done" in killed_log.read_text(errors="replace")                      # redone

    df = pd.read_csv(res / "e2e.csv")
    assert sorted(zip(df.task, df.upstream, df.feature)) == [
        ("er", "fbank", "hidden_states"), ("er", DUET, "content"),
        ("sid", "fbank", "hidden_states"), ("sid", DUET, "content")]
    assert df.value.between(0, 100).all() and (df.metric == "acc").all() and (df.unit == "%").all()
    # every row knows its chance level, test size and interval; capped steps are not SUPERB-comparable
    assert df.chance.notna().all() and (df.n_test > 0).all() and (df.ci_low <= df.value).all()
    assert (df[df.task == "sid"].chance_kind.str.startswith("1/classes")).all()
    assert df.not_comparable.str.contains(f"steps capped at {STEPS}").all() and not df.superb_comparable.any()
    duet = df[df.upstream == DUET]
    assert (duet.ckpt_hash.str.len() == 12).all()
    assert duet.cache.all() and not df[df.upstream == "fbank"].cache.any()
    assert (duet.cache_hit_rate > 0.5).all()                             # features really came from disk
    for _, r in df.iterrows():
        assert Path(r.log).is_file() and Path(r.eval_ckpt).is_file()
        assert "run_downstream.py -m train" in r.command and r.git_commit and r.machine
    assert "sid" in p.stdout and "acc" in p.stdout                       # the table is printed
    # the DUET cells learned a weighted sum over the content layers (read back from the s3prl ckpt)
    row = json.loads(next(cells.glob(f"sid-{DUET}-*.json")).read_text())
    assert len(row["layer_weights"]) > 1 and abs(sum(row["layer_weights"]) - 1) < 1e-5


def test_rerun_after_a_rebundle_keeps_the_old_cells_and_says_they_are_stale(run_cli, tiny_corpus, tmp_path):
    """A checkpoint directory gets new weights (a re-bundle) and the same named run goes again: the new
    cell is run, the old one is kept (nothing computed is lost), and the run says which cells are now
    stale and how the report leaves them out."""
    import shutil

    from upstream.checkpoint import checkpoint_hash, save_random_preset

    old = save_random_preset(DUET, "tiny", tmp_path / "a", seed=1)
    new = save_random_preset(DUET, "tiny", tmp_path / "b", seed=2)
    here = tmp_path / "ck"
    shutil.copytree(old, here)
    res = tmp_path / "results"
    args = ["run", "--tasks", "sid", "--upstreams", DUET, "--features", "content", "--ckpt", f"{DUET}={here}",
            "--corpus", tiny_corpus, "--steps", "5", "--results", res, "--name", "re", "--device", "cpu",
            "--cache-dir", tmp_path / "cache", "--no-preflight"]
    p = run_cli(*args)
    assert "changed since they ran" not in p.stderr
    shutil.rmtree(here)
    shutil.copytree(new, here)
    p = run_cli(*args)
    assert "1 cells (0 already done)" in p.stdout
    assert f"`{DUET}` sha {checkpoint_hash(old)} at `{here}`: 1 cell(s), stale: the files at that path now hash " \
           f"to {checkpoint_hash(new)}" in p.stderr and "--current-checkpoints` leaves them out" in p.stderr
    assert sorted(pd.read_csv(res / "re.csv").ckpt_hash) == sorted([checkpoint_hash(old), checkpoint_hash(new)])
