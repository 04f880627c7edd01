"""Two steps of scripts/train_gpu.sh that are easier in Python than in bash.

    python scripts/train_gpu_helpers.py finish RECIPE RUN_DIR [--later-steps N]
        print the `key=value` overrides that turn an interrupted run into a finished one (exit 0), or
        say why none can (exit 1)
    python scripts/train_gpu_helpers.py bundle OUT RUNS_DIR RECIPE [RECIPE ...] [--logs DIR] [--max-mib 16]
        one `<recipe>.tar.gz` per finished run (its final/ checkpoint and each phase's log.csv /
        DONE.json), one `logs.tar.gz` (every run's logs, finished or not, and DIR), file sizes checked

`finish`: the trainer has no wall-clock budget, so train_gpu.sh stops a run that outlives its time
share (`timeout`) and reruns the same command with these overrides. The pretrain CLI resumes every
phase from its last checkpoint (`<phase>/state/LATEST`); the interrupted phase gets `steps=` its last
saved step (so it trains no further and writes DONE.json), every later phase a few steps
(``--later-steps``), and the recipe then exports `final/`. A phase with no checkpoint yet cannot be
finished this way (exit 1): its model is not bundled.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

MIB = 2 ** 20


def finish_overrides(recipe: str, run_dir: Path, later_steps: int) -> list[str]:
    """Overrides that finish ``run_dir`` from its saved states; ValueError if a phase has none."""
    from pretrain.recipes import RECIPES
    from pretrain.recipes.common import train_phases
    from pretrain.state import latest_state

    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    phases = train_phases(RECIPES[recipe].config_cls())
    out: list[str] = []
    interrupted = None
    for ph in phases:
        pdir = run_dir / ph
        if interrupted is None:
            if (pdir / "DONE.json").exists():
                continue
            sd = latest_state(pdir) if pdir.is_dir() else None
            if sd is None:
                raise ValueError(f"{pdir}: phase {ph} has no saved checkpoint yet (nothing to finish from)")
            step = int(json.loads((sd / "state.json").read_text())["step"])
            out.append(f"{ph}.steps={step}")
            interrupted = ph
        else:   # a later phase: train a few steps only (warm-up fitted, a checkpoint at the end)
            out += [f"{ph}.steps={later_steps}", f"{ph}.warmup_steps={later_steps // 2}",
                    f"{ph}.ckpt_every={later_steps}"]
    if interrupted is None:
        raise ValueError(f"{run_dir}: every phase is done; rerun the same command to export final/")
    return out


def _add_logs(tar: tarfile.TarFile, run: Path, arc: str) -> None:
    for f in sorted(run.glob("*/log.csv")) + sorted(run.glob("*/DONE.json")):
        tar.add(f, arcname=f"{arc}/{f.relative_to(run)}")


def bundle(out: Path, runs: Path, recipes: list[str], logs: Path | None, max_mib: float) -> dict:
    """Write the tars into ``out``; -> {"bundled": [...], "missing": [...], "files": {name: bytes},
    "too_big": [...]} (too big files are deleted: the device tool would not bring them back)."""
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"bundled": [], "missing": [], "files": {}, "too_big": []}
    for r in recipes:
        run = runs / r
        final = run / "final"
        if not (final / "model.safetensors").is_file() or not (final / "config.json").is_file():
            res["missing"].append(r)
            continue
        dst = out / f"{r}.tar.gz"
        with tarfile.open(dst, "w:gz", compresslevel=6) as tar:
            tar.add(final, arcname=f"{r}/final")
            _add_logs(tar, run, r)
        res["bundled"].append(r)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for r in recipes:
            if (runs / r).is_dir():
                _add_logs(tar, runs / r, r)
        if logs is not None and logs.is_dir():
            tar.add(logs, arcname="logs")
    for f in sorted(out.iterdir()):
        if f.is_file():
            res["files"][f.name] = f.stat().st_size
            if f.stat().st_size > max_mib * MIB:
                res["too_big"].append(f.name)
    for name in res["too_big"]:
        (out / name).unlink()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("finish")
    f.add_argument("recipe")
    f.add_argument("run_dir", type=Path)
    f.add_argument("--later-steps", type=int, default=10)
    b = sub.add_parser("bundle")
    b.add_argument("out", type=Path)
    b.add_argument("runs", type=Path)
    b.add_argument("recipes", nargs="+")
    b.add_argument("--logs", type=Path, default=None)
    b.add_argument("--max-mib", type=float, default=16.0)
    args = p.parse_args(argv)
    if args.cmd == "finish":
        try:
            print(" ".join(finish_overrides(args.recipe, args.run_dir, max(2, args.later_steps))))
        except ValueError as e:
            print(f"train_gpu_helpers.py finish: {e}", file=sys.stderr)
            return 1
        return 0
    res = bundle(args.out, args.runs, args.recipes, args.logs, args.max_mib)
    for name, size in res["files"].items():
        print(f"  {size / MIB:6.2f} MiB  {name}{'  (OVER the limit: deleted)' if name in res['too_big'] else ''}")
    print(f"bundled: {', '.join(res['bundled']) or 'none'}; not finished: {', '.join(res['missing']) or 'none'}")
    if res["too_big"]:
        print(f"train_gpu_helpers.py bundle: {', '.join(res['too_big'])} over {args.max_mib:g} MiB; the device "
              f"tool brings back files of at most 16 MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
