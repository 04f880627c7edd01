"""`harness run --jobs N`: stores and cells side by side give the rows `--jobs 1` gives; a store that
cannot be built is exit 2 naming the cause, and the other group's store is kept.

Both run the real command in-process on the tiny corpus with 1 capped step (PR through s3prl's
runner, SID/ER on the fast path)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main
from harness.superb import sweep as sw
from harness.superb.cache_plan import plan_stores

DUET = "jooci"
# what makes a row's number; wall_s, paths, logs and timestamps may differ between two runs
SAME = ["value", "run_values", "n_test", "ci_low", "ci_high", "chance", "learned", "path", "cache", "cache_hit_rate",
        "layer_weights", "steps", "ckpt_hash"]


def _run(corpus, tmp_path, name: str, *extra: str) -> int:
    return main(["run", "--corpus", str(corpus), "--steps", "1", "--results", str(tmp_path / "res"),
                 "--name", name, "--device", "cpu", "--features", "content", *extra])


def _rows(tmp_path, name: str) -> pd.DataFrame:
    rows = [json.loads(p.read_text()) for p in (tmp_path / "res" / name / "cells").glob("*.json")]
    return pd.DataFrame(rows).set_index("cell_id").sort_index()


def test_jobs_2_gives_the_rows_of_jobs_1(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # random:tiny checkpoints go to ./cache/random_checkpoints
    ckpt = f"{DUET}=random:tiny"
    # --jobs 2: the DUET store builds in a worker while fbank's cells run; PR through s3prl, SID/ER fast
    assert _run(tiny_corpus, tmp_path, "j2", "--tasks", "sid,er,pr", "--upstreams", f"fbank,{DUET}", "--ckpt", ckpt,
                "--cache-dir", str(tmp_path / "cache2"), "--folds", "1", "--jobs", "2") == 0
    # --jobs 1 (its own store, built first, then one cell at a time); one PR cell is enough to compare
    assert _run(tiny_corpus, tmp_path, "j1", "--tasks", "sid,er", "--upstreams", f"fbank,{DUET}", "--ckpt", ckpt,
                "--cache-dir", str(tmp_path / "cache1"), "--folds", "1", "--jobs", "1") == 0
    assert _run(tiny_corpus, tmp_path, "j1", "--tasks", "pr", "--upstreams", DUET, "--ckpt", ckpt,
                "--cache-dir", str(tmp_path / "cache1"), "--jobs", "1") == 0
    j2, j1 = _rows(tmp_path, "j2"), _rows(tmp_path, "j1")
    assert len(j2) == 6 and len(j1) == 5 and set(j1.index) < set(j2.index)
    assert sorted(j2.loc[j1.index].path) == ["fast"] * 4 + ["s3prl"]
    assert j2.loc[j1.index, "cache"].sum() == 3                          # the DUET cells read the store
    pd.testing.assert_frame_equal(j2.loc[j1.index, SAME], j1[SAME])      # exactly, not within a tolerance
    # the CSV was rebuilt after the last row (one writer at a time)
    assert sorted(pd.read_csv(tmp_path / "res" / "j2.csv").cell_id) == sorted(j2.index)


def test_a_store_that_cannot_be_built_is_exit_2_and_the_other_store_is_kept(tiny_corpus, tmp_path, capsys):
    ckpts = {n: sw.random_checkpoint(n, "tiny", tmp_path / "ckpts") for n in (DUET, "barlow_twins")}
    ckpt_args = [f"{n}={p}" for n, p in ckpts.items()]
    data = sw.resolve_corpus(str(tiny_corpus), tmp_path, make=False)
    cells = sw.build_sweep(["sid"], list(ckpts), ["content"], None, ckpt_args, data, 1, folds=None).cells
    jobs = {j.upstream: j for j in plan_stores(cells, data, tmp_path / "cache")}
    assert sorted(jobs) == sorted(ckpts)
    bad = jobs["barlow_twins"].root
    bad.mkdir(parents=True)
    (bad / "store").write_text("a file where the store's folder goes")   # its build fails, jooci's does not

    rc = _run(tiny_corpus, tmp_path, "f", "--tasks", "sid", "--upstreams", ",".join(ckpts),
              *[a for c in ckpt_args for a in ("--ckpt", c)], "--cache-dir", str(tmp_path / "cache"), "--jobs", "2")
    err = capsys.readouterr().err
    assert rc == 2 and "could not be built" in err and str(bad) in err and "--no-cache" in err
    good = jobs[DUET].root
    assert (good / "spec.json").is_file()                                # the other group's store was built ...
    from harness.features.store import FeatureStore
    assert len(FeatureStore(good / "store").file_ids("content")) > 0    # ... and holds its features
    assert not list((tmp_path / "res").rglob("cells/sid-barlow_twins-*.json"))


def test_jobs_must_be_positive(tiny_corpus, tmp_path, capsys):
    assert _run(tiny_corpus, tmp_path, "x", "--tasks", "sid", "--upstreams", "fbank", "--jobs", "0",
                "--dry-run") == 2
    assert "--jobs 0" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", [1, 2])
def test_dry_run_accepts_jobs(tiny_corpus, tmp_path, jobs, capsys):
    assert _run(tiny_corpus, tmp_path, "x", "--tasks", "sid", "--upstreams", "fbank", "--jobs", str(jobs),
                "--dry-run") == 0
    assert "todo" in capsys.readouterr().out


def test_sigterm_with_two_cells_running_kills_both_children_and_leaves_no_row(tiny_corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import cli_env

    res = tmp_path / "res"
    args = ["run", "--tasks", "pr,asr", "--upstreams", "fbank", "--corpus", tiny_corpus, "--steps", "500",
            "--results", res, "--name", "t", "--device", "cpu", "--jobs", "2"]
    err = tmp_path / "err.txt"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=err.open("w"))
    try:
        deadline = time.time() + 400
        logs = []
        while len(logs) < 2:                     # both s3prl children are training
            assert proc.poll() is None and time.time() < deadline, err.read_text()[-2000:]
            time.sleep(0.3)
            logs = [q for q in (res / "t" / "runs").glob("*/cell.log")
                    if "[harness-cell] train" in q.read_text(errors="replace")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in err.read_text()
    sizes = {q: q.stat().st_size for q in logs}
    time.sleep(2)
    assert {q: q.stat().st_size for q in logs} == sizes                  # both children died with it
    assert not list(res.rglob("cells/*.json")) and not list(res.rglob("*.tmp"))   # no row, no half file
    for q in logs:
        assert "[harness-cell] done" not in q.read_text(errors="replace")



def test_long_cells_start_first(tiny_corpus, tmp_path):
    """ASR, then PR (through s3prl's runner), then SID/ER (fast path); the same without the fast path."""
    from harness.superb.execute import SweepExecutor
    from harness.superb.results import ResultStore, RunContext

    data = sw.resolve_corpus(str(tiny_corpus), tmp_path, make=False)
    sweep = sw.build_sweep(["sid", "er", "pr", "asr"], ["fbank"], [], None, None, data, None, folds=None)
    ctx = RunContext(corpus="tiny", corpus_path=str(tiny_corpus), device="cpu", machine="m", git_commit="c",
                     command="x", layout=data.layout)

    def order(fast: bool) -> list[str]:
        ex = SweepExecutor(sweep, ResultStore(tmp_path, "x"), ctx, {}, None, fast=fast)
        return [c.task for c in sorted(sweep.cells, key=ex.expected_cost, reverse=True)]

    assert order(True)[:2] == ["asr", "pr"] and sorted(order(True)[2:]) == ["er", "sid"]
    assert order(False)[:2] == ["asr", "pr"]
