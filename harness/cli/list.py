"""`harness list`: the tasks, upstreams, feature keys and checkpoints the harness knows."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", default="all", choices=["all", "tasks", "upstreams", "features", "checkpoints"])
    p.add_argument("--checkpoints-dir", default=None, help="also list checkpoints under this dir")


def run(args: argparse.Namespace) -> int:
    from harness.superb.upstreams import CHECKPOINTS_DIR, DEFAULT_UPSTREAMS, UPSTREAMS, checkpoint_hash, list_checkpoints

    if args.what in ("all", "tasks"):
        print("tasks (harness run --tasks):")
        try:
            from harness.superb import taskview
            from harness.superb.tasks import TASKS
            for name, spec in TASKS.items():
                print(f"  {name:6s} s3prl -d {taskview.downstream(spec):14s} metric {taskview.metric_name(spec)} "
                      f"({'higher' if taskview.higher_is_better(spec) else 'lower'} is better)")
        except ImportError as e:
            print(f"  (task registry unavailable: {e})")
    if args.what in ("all", "upstreams", "features"):
        print("upstreams (--upstreams) and their feature keys (--features):")
        for name, info in UPSTREAMS.items():
            d = " [default]" if name in DEFAULT_UPSTREAMS else ""
            print(f"  {name:15s}{d:10s} features: {', '.join(info.features)} (default {', '.join(info.default_features)})")
            if args.what != "features":
                print(f"  {'':25s} {info.description}")
    if args.what in ("all", "checkpoints"):
        roots = [CHECKPOINTS_DIR] + ([Path(args.checkpoints_dir)] if args.checkpoints_dir else [])
        print("checkpoints (--ckpt [NAME=]DIR):")
        found = False
        for root in roots:
            for model, d in list_checkpoints(root):
                found = True
                try:
                    h = checkpoint_hash(d)
                except Exception as e:  # noqa: BLE001 - listing only
                    h = f"unreadable: {e}"
                print(f"  {model:15s} {d}  sha {h}")
        if not found:
            print(f"  (none under {', '.join(map(str, roots))})")
        for name, info in UPSTREAMS.items():
            b = info.bundled_checkpoint()
            if b is not None and not (b / "config.json").is_file():
                print(f"  {name}: bundled {b} not present")
    return 0
