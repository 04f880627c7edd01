"""Feature cache benchmark: the same cell (task, steps, upstream, feature) run by plain s3prl
(`harness run --no-cache`, the upstream runs at every step) and from the feature cache.

Prints the wall times, the ratio plain / cached (goal >= 3x) and both test metrics (should agree
within noise; the cache feeds bit-for-bit the same features, so usually identically).

    python bench/bench_cache.py --corpus small --task sid --upstream jooci --steps 400
    python bench/bench_cache.py --corpus tiny --upstream jooci --ckpt jooci=random:compact --steps 200
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def harness(*args) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], check=True, cwd=ROOT)
    return time.time() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="small")
    p.add_argument("--task", default="sid")
    p.add_argument("--upstream", default="jooci")
    p.add_argument("--feature", default="content")
    p.add_argument("--ckpt", default=None, help="e.g. jooci=random:compact (default: bundled)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--device", default="cpu")
    p.add_argument("--folds", type=int, default=1, help="ER: folds per cell (default 1)")
    p.add_argument("--work", default=None, help="scratch dir (default: a temp dir, removed)")
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_cache_"))
    common = ["run", "--tasks", a.task, "--upstreams", a.upstream, "--features", a.feature, "--steps", a.steps,
              "--corpus", a.corpus, "--results", work / "results", "--device", a.device, "--force",
              "--folds", a.folds]
    if a.ckpt:
        common += ["--ckpt", a.ckpt]
    cache_dir = work / "cache"
    t_plain_total = harness(*common, "--name", "plain", "--no-cache")
    t_cached_total_cold = harness(*common, "--name", "cached", "--cache", "--cache-dir", cache_dir)   # extracts
    t_cached_total_warm = harness(*common, "--name", "cached_warm", "--cache", "--cache-dir", cache_dir)

    def row(name):
        cells = list((work / "results" / name / "cells").glob("*.json"))
        return json.loads(cells[0].read_text())
    plain, cold, warm = row("plain"), row("cached"), row("cached_warm")
    extract_s = t_cached_total_cold - t_cached_total_warm
    print(f"\nbench_cache: task {a.task}, upstream {a.upstream}:{a.feature}, {a.steps} steps, corpus {a.corpus}, "
          f"device {a.device}, machine {plain['machine']}, commit {plain['git_commit']}")
    print(f"  plain s3prl     cell wall {plain['wall_s']:7.1f} s   {plain['metric']} = {plain['value']:.4f}")
    print(f"  cached (warm)   cell wall {warm['wall_s']:7.1f} s   {warm['metric']} = {warm['value']:.4f}   "
          f"hit rate {warm.get('cache_hit_rate')}")
    print(f"  cached (cold)   cell wall {cold['wall_s']:7.1f} s   {cold['metric']} = {cold['value']:.4f}   "
          f"+ extraction ~{extract_s:.1f} s (once per upstream x corpus, shared by all tasks)")
    print(f"  speed-up plain/cached cell: {plain['wall_s'] / warm['wall_s']:.2f}x   "
          f"incl. one extraction: {plain['wall_s'] / (warm['wall_s'] + max(extract_s, 0)):.2f}x   "
          f"metric diff {warm['value'] - plain['value']:+.4f}")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
