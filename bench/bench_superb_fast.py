"""SID/ER time-to-result: plain s3prl (`run_downstream.py -m train`, then `-m evaluate` of the dev-best
checkpoint) against the fast path (`python -m harness.superb.fastpath PLAN.json`), same config, seed,
steps and upstream, one run each, in one process each from the shell's point of view.

Prints per task: plain s3prl's wall seconds (its train and evaluate processes, start-up included);
the fast path as its own process (the row's command: start-up, ~10 s of torch + torch._dynamo
imports on a loaded 2-core machine, included), in-process as `harness run` runs it (imports paid
once per sweep; pooled features computed from the audio) and with the pooled features cached (a
re-run); the ratios plain / fast (goal >= 20x); both test accuracies and how many test utterances get
the same prediction; the machine's load.

    python bench/bench_superb_fast.py --corpus small                   # sid + er fold1, fbank_no_cmvn, 600 steps
    python bench/bench_superb_fast.py --corpus tiny --steps 100 --tasks sid
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(cmd: list[str], log: Path) -> tuple[float, str]:
    t0 = time.time()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    log.write_text(p.stdout + "\n" + p.stderr)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}); see {log}")
    return wall, p.stdout + p.stderr


def predictions(path: Path) -> dict[str, str]:
    return dict(line.split() for line in path.read_text().splitlines())


def main(argv=None) -> int:
    from harness.corpus.resolve import resolve_corpus
    from harness.superb import fastpath
    from harness.superb.sweep import steps_overrides
    from harness.superb.tasks import TASKS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="small", help="tiny|small|large or a corpus path")
    p.add_argument("--corpora-dir", default="corpora")
    p.add_argument("--tasks", default="sid,er")
    p.add_argument("--upstream", default="fbank_no_cmvn", help="an s3prl upstream run live by both paths")
    p.add_argument("--ckpt", default=None, help="its -k (a DUET checkpoint dir)")
    p.add_argument("--key", default="hidden_states")
    p.add_argument("--steps", type=int, default=None, help="cap total_steps (default: the mini config's)")
    p.add_argument("--fold", default="fold1", help="ER: the test fold")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--work", default=None, help="scratch dir (default: a new temp dir, kept)")
    p.add_argument("--reuse-plain", action="store_true",
                   help="take plain s3prl's times and metric from --work's plain-TASK.json (an earlier run of this "
                        "bench, same settings) and time only the fast path")
    a = p.parse_args(argv)
    corpus = resolve_corpus(a.corpus, Path(a.corpora_dir))
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_superb_fast_"))
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])    # the one-time imports every process pays
    load0 = os.getloadavg()
    lines = []
    for task in a.tasks.split(","):
        spec = TASKS[task]
        config = spec.config("mini")
        fold = a.fold if spec.folds else None
        overrides = ",,".join(x for x in (spec.overrides(corpus, fold=fold), steps_overrides(config, a.steps)) if x)
        exp = work / f"plain-{task}"
        up = ["-u", a.upstream, "-s", a.key] + (["-k", a.ckpt] if a.ckpt else [])
        train = [sys.executable, str(ROOT / "run_downstream.py"), "-m", "train", *up, "-d", spec.downstream,
                 "-c", str(config), "-o", overrides, "-p", str(exp), "--seed", str(a.seed), "--device", "cpu"]
        saved = work / f"plain-{task}.json"
        if a.reuse_plain:
            prev = json.loads(saved.read_text())
            if prev["train"] != train[1:]:
                raise SystemExit(f"{saved}: an earlier run with other settings; run without --reuse-plain")
            t_train, t_test, plain_acc = prev["train_s"], prev["test_s"], prev["acc"]
        else:
            t_train, _ = timed(train, work / f"plain-{task}-train.log")
            t_test, out = timed([sys.executable, str(ROOT / "run_downstream.py"), "-m", "evaluate", "-t", "test",
                                 "-e", str(spec.eval_checkpoint(exp)), "--device", "cpu"], work / f"plain-{task}-test.log")
            plain_acc = spec.parse_metric(out, "test")
            saved.write_text(json.dumps({"train": train[1:], "train_s": t_train, "test_s": t_test, "acc": plain_acc,
                                         "load": os.getloadavg()[0]}, indent=1))
        run = fold or "main"
        plan = fastpath.FastPlan(cell_id=f"bench-{task}", task=task, config=str(config), runs=[(run, overrides)],
                                 seed=a.seed, source={"upstream": a.upstream, "key": a.key, "ckpt": a.ckpt},
                                 run_dir=str(work / f"fast-{task}"), pooled_cache=str(work / f"pooled-{task}.npz"))
        Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
        plan_path = Path(plan.run_dir) / "fast_plan.json"
        plan_path.write_text(json.dumps(asdict(plan), indent=1))
        Path(plan.pooled_cache).unlink(missing_ok=True)                     # every timing below starts cold
        t_proc, out_proc = timed([sys.executable, "-m", "harness.superb.fastpath", str(plan_path)],
                                 work / f"fast-{task}-process.log")          # pools the features (cold)
        Path(plan.pooled_cache).unlink()
        t0 = time.time()
        cold = fastpath.run_fast_cell(plan)                                  # in-process, as in `harness run`
        t_cold = time.time() - t0
        t0 = time.time()
        warm = fastpath.run_fast_cell(plan)                                  # pooled features cached
        t_warm = time.time() - t0
        fast_acc = warm.value
        assert cold.value == warm.value == float(out_proc.split(f"{run} test acc: ")[1].split()[0]), \
            "the fast path's runs disagree"
        ours = predictions(Path(plan.run_dir) / f"fast-{run}-test_predict.txt")
        theirs = predictions(exp / (f"test_{fold}_predict.txt" if fold else "test_predict.txt"))
        same = sum(ours[k] == theirs.get(k) for k in ours)
        plain = t_train + t_test
        lines.append(f"{task:4s} plain s3prl {plain:6.1f} s (train {t_train:.1f} + test {t_test:.1f} s, two processes)"
                     f"  acc {plain_acc:.4f}\n"
                     f"       fast: own process {t_proc:5.1f} s (pooling included) | in-process {t_cold:5.1f} s (pooling included), "
                     f"{t_warm:5.1f} s (pooled cached)  acc {fast_acc:.4f}\n"
                     f"       plain/fast: {plain / t_proc:5.1f}x own process, {plain / t_cold:5.1f}x in-process, "
                     f"{plain / t_warm:5.1f}x cached | same prediction on {same}/{len(ours)} test utterances")
    from upstream.facts import git_commit, machine

    load1 = os.getloadavg()
    print(f"\nbench_superb_fast: corpus {a.corpus}, upstream {a.upstream}:{a.key}, steps "
          f"{a.steps or 'config'}, ER {a.fold}, seed {a.seed}; machine {machine('cpu')}, {os.cpu_count()} CPUs, "
          f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end; commit {git_commit()}; work {work}")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
