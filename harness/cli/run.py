"""`harness run`: SUPERB tasks over upstreams x features x layer subsets, through s3prl's runner.

Each cell (upstream, checkpoint hash, feature key, layers, task, corpus) trains the task's s3prl
downstream on the frozen upstream, then tests the dev-best checkpoint, in subprocesses running the
repo's run_downstream.py (log per cell). Finished cells are skipped on re-run (--force redoes
them); rows go to RESULTS/NAME/cells/*.json and RESULTS/NAME.csv.

Examples:
  harness run --tasks sid,asr,er                                # 3 DUET upstreams + each task's controls, small corpus
  harness run --tasks sid,pr --upstreams jooci --features content,other --layers all 6-11
  harness run --tasks sid --upstreams jooci --ckpt jooci=runs/jooci/final --steps 200
  harness run --tasks sid,er --data-config my_datasets.yaml     # real VoxCeleb1 / IEMOCAP (see README)

Before any work every audio file the tasks read is decoded once (harness/preflight.py: sample
rate, channels, length, finiteness; cached by size and mtime); a problem stops the run with exit
2 and a list of the files and their fixes (--no-preflight skips the check, at your own risk).
A feature cache that cannot be built is an error naming the cause (exit 2; what was extracted is
kept for the next run); --no-cache runs the upstream at every step instead.

--jobs N (default 2, at most the number of CPUs) runs N things at once: the feature stores of
different upstreams/checkpoints build side by side, and cells run side by side, each waiting only
for its own store (long s3prl cells start first, fast SID/ER cells fill the gaps). The rows are the
same as with --jobs 1, which runs everything one after another.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from upstream.facts import progress_bar
from upstream.facts import RESULTS_DIR


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("--tasks", required=True, help="comma list of: sid, asv, er, pr, asr")
    p.add_argument("--upstreams", default=None,
                   help="comma list: DUET's upstreams or any s3prl hub name (fbank_no_cmvn, mfcc, mel, hubert, ...), "
                        "each run on every task; see `harness list`. Default: learn2diss,jooci,barlow_twins and each "
                        "task's controls (fbank and fbank_no_cmvn for sid/asv/er, fbank for pr/asr)")
    p.add_argument("--features", default=None,
                   help="comma list of feature keys for DUET upstreams (default content,other; fbank always "
                        "uses hidden_states)")
    p.add_argument("--layers", nargs="+", default=None, metavar="SPEC",
                   help="layer subsets for the weighted sum, swept: all, 6-11, 0,2,4-6 or FEATURE=SPEC "
                        "(e.g. --layers all 6-11 other=0-3); default all")
    p.add_argument("--corpus", default="small",
                   help="tiny|small|medium|large (generated into --corpora-dir on first use) or a corpus PATH")
    p.add_argument("--corpora-dir", default="corpora", help="where generated corpora live (default ./corpora)")
    p.add_argument("--data-config", default=None, metavar="YAML",
                   help="real datasets: a YAML of corpus roots (see downstream_configs/real/datasets.example.yaml); "
                        "uses downstream_configs/real/<task>.yaml; overrides --corpus")
    p.add_argument("--ckpt", action="append", default=None, metavar="[NAME=]PATH",
                   help="what `run_downstream.py -u NAME -k` takes: a DUET checkpoint dir (NAME from its config.json "
                        "if omitted), NAME=random:PRESET (seeded random init of a preset), NAME=random:CKPT_DIR "
                        "(seeded random init of that checkpoint's own config: its twin), a transformers HuBERT/WavLM dir or "
                        "fairseq .pt for hubert_compact/learn2diss, or for an s3prl upstream its own -k "
                        "(default: bundled checkpoints/)")
    p.add_argument("--steps", type=int, default=None,
                   help="cap each downstream's total_steps, a positive number (default: the config's); "
                        "capped rows are marked not comparable with SUPERB")
    p.add_argument("--results", default=RESULTS_DIR, help=f"results dir (default ./{RESULTS_DIR})")
    p.add_argument("--name", default=None, help="run name: RESULTS/NAME.csv (default superb_<corpus>)")
    p.add_argument("--force", action="store_true", help="redo cells that already have a result")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default cuda if available, else cpu")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--folds", type=int, default=None,
                   help="tasks with folds (er: 5 IEMOCAP sessions): run the first N per cell (default all; "
                        "the row is the mean, as SUPERB reports)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache", dest="cache", action="store_true", default=True,
                       help="extract each frozen upstream's features once and feed every task/epoch from disk (default)")
    cache.add_argument("--no-cache", dest="cache", action="store_false", help="run the upstream at every step (plain s3prl)")
    fast = p.add_mutually_exclusive_group()
    fast.add_argument("--fast", dest="fast", action="store_true", default=True,
                      help="SID/ER: train s3prl's utterance-level head on per-utterance pooled features, in-process "
                           "(exact when no random crop applies; else s3prl's runner, with the reason printed; "
                           "see harness/superb/fastpath.py) (default)")
    fast.add_argument("--no-fast", dest="fast", action="store_false", help="run every cell through s3prl's runner")
    p.add_argument("--cache-dir", default="cache/features", help="feature cache root (default ./cache/features)")
    p.add_argument("--cache-max-gb", type=float, default=50.0,
                   help="refuse (before extracting) new features estimated above this size; a store holds only the "
                        "layers the cells read (--layers), as float16 (default 50)")
    p.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16",
                   help="how a new feature store keeps its features (reads are float32 either way; default float16)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="run up to N feature-store builds and cells at once (default 2, capped at the CPU count; "
                        "1 = one after another); the rows do not depend on it")
    p.add_argument("--dry-run", action="store_true", help="validate and list the cells, train nothing")
    p.add_argument("--no-preflight", action="store_true",
                   help="skip the pre-flight audio check (bad audio then fails mid-run or gives a wrong result)")


def preflight_tasks(tasks, data, folds: int | None):
    """The pre-flight audio check of every file ``tasks`` read in ``data`` (ER: its first ``folds``
    sessions); the report (``.ok``, ``.format()``)."""
    from harness.preflight import FileList, check_audio, default_cache_path, files_for_task

    files = FileList()
    for t in tasks:
        files = files + (files_for_task(t, data.layout, folds=list(range(1, folds + 1)))
                         if t == "er" and folds else files_for_task(t, data.layout))
    return check_audio(files, cache_path=default_cache_path(data.root), workers=2)


def _on_sigterm(signum, frame):  # make `kill` behave like Ctrl-C: children are killed, no partial row
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    """`harness run`; SIGTERM behaves like Ctrl-C while it runs, and the caller's handler is back after."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from harness.superb import sweep as sw
    from upstream.facts import git_commit, machine
    from harness.superb.execute import CellReport, SweepExecutor
    from harness.superb.results import ResultStore, RunContext, format_table
    from harness.superb.stale import checkpoint_states

    try:
        # every check that can fail, before a corpus is generated or anything trains
        tasks = sw.resolve_tasks(sw.split_list(args.tasks))
        upstreams = sw.resolve_upstreams(sw.split_list(args.upstreams))
        sw.check_steps(args.steps)
        jobs = min(2, os.cpu_count() or 1) if args.jobs is None else args.jobs
        if jobs < 1:
            raise sw.SweepError(f"--jobs {args.jobs}: must be 1 or more (1 runs everything one after another)")
        if not args.cache_max_gb > 0:
            raise sw.SweepError(f"--cache-max-gb {args.cache_max_gb}: must be a number > 0")
        sw.check_folds(args.folds, tasks)
        features = sw.split_list(args.features)
        sw.check_feature_names(features)
        sw.parse_layers_arg(args.layers)
        sw.check_results_dir(Path(args.results))
        ckpts = sw.resolve_checkpoints(upstreams, args.ckpt)
        sw.validate_layer_subsets(upstreams, features, args.layers, ckpts)
        if args.data_config:
            data = sw.resolve_real_data(Path(args.data_config), tasks)
        else:
            data = sw.resolve_corpus(args.corpus, Path(args.corpora_dir), make=not args.dry_run,
                                     workers=jobs)     # generated on first use with --jobs processes (same bytes)
        sweep = sw.build_sweep(tasks, upstreams, features, args.layers, args.ckpt, data, args.steps, args.seed,
                               folds=args.folds, per_task_defaults=not sw.split_list(args.upstreams))
    except (sw.SweepError, ValueError, FileNotFoundError) as e:
        print(f"harness run: error: {e}", file=sys.stderr)
        return 2

    device = args.device
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = args.name or f"superb_{data.name.replace(':', '_')}"
    store = ResultStore(Path(args.results), name)
    from upstream.facts import unwritable_dir
    for folder in (store.cells_dir, store.runs_dir, store.locks_dir):   # found before training, not after
        why = unwritable_dir(folder, create=False)
        if why:
            print(f"harness run: error: cannot write to {folder} ({why}); a finished cell's row would be lost: "
                  f"fix the folder or pass another --results / --name", file=sys.stderr)
            return 2
    command = "harness " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("harness", "__init__.py", "__main__.py")) else " ".join(sys.argv)
    todo = [c for c in sweep.cells if args.force or not store.has(c.id)]
    check = sorted({c.task for c in (sweep.cells if args.dry_run else todo)})
    if check and not args.no_preflight:
        report = preflight_tasks(check, data, args.folds)
        if not report.ok:
            print(f"harness run: error: {report.format()}", file=sys.stderr)
            return 2
    print(f"harness run: {len(sweep.cells)} cells ({len(sweep.cells) - len(todo)} already done) -> {store.csv_path}"
          f"  [corpus {data.name}, device {device}, cache {'on' if args.cache else 'off'}, "
          f"fast {'on' if args.fast else 'off'}]")
    if args.dry_run:
        for c in sweep.cells:
            print(f"  {'done' if store.has(c.id) else 'todo'}  {c.id}")
        return 0

    def cache_error(e: BaseException, where=args.cache_dir) -> int:
        print(f"harness run: error: the feature cache under {where} could not be built "
              f"({type(e).__name__}: {e}). What was extracted is kept and the next run continues from it; "
              f"fix the cause, or pass --no-cache to run the upstream at every step", file=sys.stderr)
        return 2

    from harness.superb.cache_plan import StoreBuildError, plan_stores, prepare_cache
    cache_specs, stores = {}, []
    if args.cache and todo and jobs > 1:            # built beside the cells by run_concurrent
        stores = plan_stores(todo, data, Path(args.cache_dir))
    elif args.cache and todo:
        try:
            cache_specs = prepare_cache(todo, data, Path(args.cache_dir), device=device, max_gb=args.cache_max_gb,
                                        dtype=args.cache_dtype)
        except KeyboardInterrupt:
            print("\nharness run: interrupted while building the feature cache; what was extracted is kept "
                  "and the next run continues", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - never fall back silently: name the cause, keep the partial store
            return cache_error(e)

    ctx = RunContext(corpus=data.name, corpus_path=str(data.root), device=device, machine=machine(device),
                     git_commit=git_commit(), command=command, layout=data.layout)
    overall = progress_bar(total=len(todo), desc="cells", unit="cell", position=0, dynamic_ncols=True)

    def make_bar(desc: str, total: int, position: int = 1):
        return progress_bar(total=total, desc=desc, unit="step", position=position, leave=False, dynamic_ncols=True)

    def on_report(r: CellReport) -> None:
        label = {"ok": "ok  ", "n/a": "n/a ", "failed": "FAIL", "wait": "wait", "done": "done"}[r.status]
        tqdm.write(f"  {label} {r.cell_id}: {r.detail}" if r.detail else f"  {label} {r.cell_id}")
        if r.status != "wait":
            overall.update(1)

    executor = SweepExecutor(sweep, store, ctx, cache_specs, args.folds, force=args.force, make_bar=make_bar,
                             fast=args.fast, pooled_dir=Path(args.cache_dir) / "pooled")
    try:
        if jobs == 1:
            reports = executor.run(todo, on_report)
        else:
            reports = executor.run_concurrent(todo, on_report, jobs=jobs, stores=stores, say=tqdm.write,
                                              build=dict(device=device, max_gb=args.cache_max_gb,
                                                         dtype=args.cache_dtype))
    except KeyboardInterrupt:
        overall.close()
        print("\nharness run: interrupted; finished cells are kept, the interrupted one will be redone"
              + (" (and a feature store from what was extracted)" if jobs > 1 else ""), file=sys.stderr)
        return 130
    except StoreBuildError as e:
        overall.close()
        return cache_error(e.cause, e.job.root)
    overall.close()

    df = store.frame()
    ids = {c.id for c in sweep.cells}
    stale = [s for s in checkpoint_states(df) if s.status == "changed"]
    df = df[df["cell_id"].isin(ids)] if len(df) else df
    print(format_table(df))
    print(f"results: {store.csv_path}")
    if stale:
        print(f"\n{store.csv_path} also holds cells of checkpoints that have changed since they ran (kept; "
              f"`harness report {store.csv_path} --current-checkpoints` leaves them out):", file=sys.stderr)
        for s in stale:
            print(f"  {s.describe()}", file=sys.stderr)
    skipped = [r for r in reports if r.status == "n/a"]
    failed = [r for r in reports if r.status == "failed"]
    if skipped:
        print(f"\n{len(skipped)} cell(s) not applicable (not run, no row):", file=sys.stderr)
        for r in skipped:
            print(f"  {r.cell_id}: {r.detail}", file=sys.stderr)
    if failed:
        print(f"\n{len(failed)} cell(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.cell_id}: {r.detail}", file=sys.stderr)
        return 1
    return 0
