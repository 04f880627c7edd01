"""End to end: s3prl's `fbank` through the real run_downstream.py on the tiny corpus.

SID (voxceleb1) and PR (ctc + libriphone): train a few steps, then `-m evaluate -e <ckpt>`, and
the test metric parsed from what s3prl printed. One subprocess runs the real script file
(``runpy.run_path("run_downstream.py")``) for every command, so s3prl is imported once
(~10-20 s on 2 cores) rather than per command; the same process checks the CLI's bad-input exit.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.superb.tasks import TASKS, runner_overrides

from conftest import ROOT, cli_env  # noqa: E402

DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback
script, jobs = sys.argv[1], json.loads(sys.argv[2])
out = []
for argv in jobs:
    if isinstance(argv, dict):  # {"eval_of": task, "expdir": dir}: the checkpoint the task picks
        from harness.superb.tasks import TASKS
        argv = TASKS[argv["eval_of"]].eval_argv(argv["expdir"])
    buf = io.StringIO()
    code = 0
    sys.argv = [script, *argv]
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if code:
                print(e.code)
        except BaseException:
            traceback.print_exc()
            code = 1
    out.append({"argv": argv, "code": code, "text": buf.getvalue()})
print(json.dumps(out))
"""

STEPS = runner_overrides(total_steps=4, eval_step=2, save_step=2, log_step=2)


def _run(jobs: list, tmp_path: Path) -> list[dict]:
    env = cli_env()
    env["DUET_S3PRL_CACHE"] = str(tmp_path / "s3prl_cache")
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT / "run_downstream.py"), json.dumps(jobs)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fbank_sid_and_pr_train_then_evaluate(tiny_corpus, tmp_path):
    sid, pr = TASKS["sid"], TASKS["pr"]
    jobs = [sid.train_argv("fbank", tmp_path / "sid", tiny_corpus, extra=STEPS),
            {"eval_of": "sid", "expdir": str(tmp_path / "sid")},
            pr.train_argv("fbank", tmp_path / "pr", tiny_corpus, extra=STEPS),
            {"eval_of": "pr", "expdir": str(tmp_path / "pr")},
            ["-m", "train", "-u", "fbank", "-d", "voxceleb1", "-c", str(tmp_path / "missing.yaml")]]
    res = _run(jobs, tmp_path)
    for r in res[:4]:
        assert r["code"] == 0, r["text"][-3000:]

    # training ran the configured steps, evaluated dev and saved checkpoints
    assert (tmp_path / "sid" / "states-4.ckpt").is_file() and (tmp_path / "pr" / "states-4.ckpt").is_file()
    assert "-e" in res[1]["argv"] and res[1]["argv"][-1].endswith(".ckpt")
    assert sid.parse_metric(res[0]["text"], split="dev") >= 0.0
    acc = sid.parse_metric(res[1]["text"])
    assert 0.0 <= acc <= 1.0
    # s3prl wrote one prediction per test utterance of the split file
    n_test = sum(1 for line in (tiny_corpus / "VoxCeleb1" / "iden_split.txt").read_text().splitlines()
                 if line.startswith("3 "))
    assert len((tmp_path / "sid" / "test_predict.txt").read_text().splitlines()) == n_test > 0
    per = pr.parse_metric(res[3]["text"])
    assert 0.0 < per <= 2.0  # a 4-step linear CTC head: high, but a real edit-distance rate
    hyp = (tmp_path / "pr" / "test-hyp.ark").read_text().splitlines()
    ref = (tmp_path / "pr" / "test-ref.ark").read_text().splitlines()
    assert len(hyp) == len(ref) > 0 and all(len(line.split()) > 1 for line in ref)  # phone references

    # bad input through the same entry point: exit 1, the path and the fix named
    bad = res[4]
    assert bad["code"] == 1 and "missing.yaml does not exist" in bad["text"] and "Traceback" not in bad["text"]
