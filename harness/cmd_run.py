"""`harness run`: SUPERB tasks over upstreams x features x layer subsets, through s3prl's runner.

Each cell (upstream, checkpoint hash, feature key, layers, task, corpus) trains the task's s3prl
downstream on the frozen upstream, then tests the dev-best checkpoint, in subprocesses running the
repo's run_downstream.py (log per cell). Finished cells are skipped on re-run (--force redoes
them); rows go to RESULTS/NAME/cells/*.json and RESULTS/NAME.csv.

Examples:
  harness run --tasks sid,asr,er                                # fbank + 3 DUET upstreams, small corpus
  harness run --tasks sid,pr --upstreams jooci --features content,other --layers all 6-11
  harness run --tasks sid --upstreams jooci --ckpt jooci=runs/jooci/final --steps 200
  harness run --tasks sid,er --data-config my_datasets.yaml     # real VoxCeleb1 / IEMOCAP (see README)
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("--tasks", required=True, help="comma list of: sid, asv, er, pr, asr")
    p.add_argument("--upstreams", default=None,
                   help="comma list (default fbank,learn2diss,jooci,barlow_twins); see `harness list`")
    p.add_argument("--features", default=None,
                   help="comma list of feature keys for DUET upstreams (default content,other; fbank always "
                        "uses hidden_states)")
    p.add_argument("--layers", nargs="+", default=None, metavar="SPEC",
                   help="layer subsets for the weighted sum, swept: all, 6-11, 0,2,4-6 or FEATURE=SPEC "
                        "(e.g. --layers all 6-11 other=0-3); default all")
    p.add_argument("--corpus", default="small",
                   help="tiny|small|large (generated into --corpora-dir on first use) or a corpus PATH")
    p.add_argument("--corpora-dir", default="corpora", help="where generated corpora live (default ./corpora)")
    p.add_argument("--data-config", default=None, metavar="YAML",
                   help="real datasets: a YAML of corpus roots (see downstream_configs/real/datasets.example.yaml); "
                        "uses downstream_configs/real/<task>.yaml; overrides --corpus")
    p.add_argument("--ckpt", action="append", default=None, metavar="[NAME=]DIR",
                   help="DUET checkpoint dir(s); NAME from its config.json if omitted (default: bundled checkpoints/)")
    p.add_argument("--steps", type=int, default=None, help="cap each downstream's total_steps (default: the config's)")
    p.add_argument("--results", default="results", help="results dir (default ./results)")
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
    p.add_argument("--cache-dir", default="cache/features", help="feature cache root (default ./cache/features)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the cells, train nothing")


def _on_sigterm(signum, frame):  # make `kill` behave like Ctrl-C: children are killed, no partial row
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from harness import sweep as sw
    from harness import taskview
    from harness.locks import CellLock
    from harness.provenance import git_commit, machine
    from harness.results import ResultStore, format_table
    from harness.runner import CellFailed, CellPlan, run_cell

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        tasks = sw.resolve_tasks(sw.split_list(args.tasks))
        upstreams = sw.resolve_upstreams(sw.split_list(args.upstreams))
        features = sw.split_list(args.features)
        sw.check_feature_names(features)
        sw.parse_layers_arg(args.layers)
        sw.resolve_checkpoints(upstreams, args.ckpt)      # fail fast, before a corpus is generated
        if args.data_config:
            data = sw.resolve_real_data(Path(args.data_config), tasks)
        else:
            data = sw.resolve_corpus(args.corpus, Path(args.corpora_dir), make=not args.dry_run)
        sweep = sw.build_sweep(tasks, upstreams, features, args.layers, args.ckpt, data, args.steps, args.seed,
                               folds=args.folds)
    except (sw.SweepError, ValueError, FileNotFoundError) as e:
        print(f"harness run: error: {e}", file=sys.stderr)
        return 2

    device = args.device
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = args.name or f"superb_{data.name.replace(':', '_')}"
    store = ResultStore(Path(args.results), name)
    command = "harness " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("harness", "cli.py")) else " ".join(sys.argv)
    todo = [c for c in sweep.cells if args.force or not store.has(c.id)]
    print(f"harness run: {len(sweep.cells)} cells ({len(sweep.cells) - len(todo)} already done) -> {store.csv_path}"
          f"  [corpus {data.name}, device {device}, cache {'on' if args.cache else 'off'}]")
    if args.dry_run:
        for c in sweep.cells:
            print(f"  {'done' if store.has(c.id) else 'todo'}  {c.id}")
        return 0

    cache_specs = {}
    if args.cache and todo:
        from harness.cache import prepare_cache
        try:
            cache_specs = prepare_cache(todo, data, Path(args.cache_dir), device=device)
        except Exception as e:  # noqa: BLE001 - a broken cache must not stop the sweep: run uncached
            print(f"harness run: feature cache unavailable ({type(e).__name__}: {e}); running without it",
                  file=sys.stderr)
            cache_specs = {}

    failed: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    deferred = []
    rate_of = _StreamRates(cache_specs)
    overall = tqdm(total=len(todo), desc="cells", unit="cell", position=0, dynamic_ncols=True)

    def do(cell, lock):
        try:
            if store.has(cell.id) and not args.force:
                return
            spec = sw.task_registry()[cell.task]
            cfg = sweep.configs[cell.task]
            reason = not_applicable(cell, cfg, rate_of)
            if reason:
                skipped.append((cell.id, reason))
                tqdm.write(f"  n/a  {cell.id}: {reason}")
                return
            steps = sw.steps_overrides(cfg, cell.steps)
            runs = [(fold or "main", ",,".join(x for x in (taskview.overrides(spec, data, fold), steps) if x))
                    for fold in taskview.folds(spec, args.folds)]
            cache_spec = cache_specs.get(cell.id)
            plan = CellPlan(cell_id=cell.id, task=cell.task, run_dir=store.run_dir(cell.id),
                            downstream=taskview.downstream(spec), config=cfg, runs=runs,
                            upstream_args=upstream_args(cell, cache_spec),
                            test_splits=taskview.test_splits(spec), parse_metric=taskview.parser(spec),
                            device=device, seed=cell.seed, model_config=cell.model_config)
            bar = tqdm(total=(cell.steps or 1) * len(runs), desc=f"{cell.task}/{cell.upstream}/{cell.feature}", unit="step",
                       position=1, leave=False, dynamic_ncols=True)
            try:
                out = run_cell(plan, pbar=bar)
            finally:
                bar.close()
            row = {**cell.key(), "corpus": data.name, "corpus_path": str(data.root), "ckpt": cell.ckpt,
                   "cell_id": cell.id, "metric": taskview.metric_name(spec),
                   "higher_is_better": taskview.higher_is_better(spec), "config": str(cfg),
                   "cache": bool(cache_spec), "git_commit": git_commit(), "machine": machine(device),
                   "device": device, "harness_command": command, **out}
            if cache_spec:
                from harness.cache import hit_rate_from_log
                row["cache_hit_rate"] = hit_rate_from_log(plan.log)
            from datetime import datetime, timezone
            row["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            store.put(row)
            store.write_csv()
            tqdm.write(f"  ok   {cell.id}: {row['metric']} = {row['value']:.4f}  ({row['wall_s']:.0f} s)")
        except CellFailed as e:
            failed.append((cell.id, str(e.log)))
            tqdm.write(f"  FAIL {cell.id}: {e}")
        except Exception as e:  # noqa: BLE001 - one broken cell must not stop the sweep
            log = store.run_dir(cell.id) / "cell.log"
            failed.append((cell.id, str(log)))
            tqdm.write(f"  FAIL {cell.id}: {type(e).__name__}: {e} (log: {log})")
        finally:
            lock.release()
            overall.update(1)

    try:
        for cell in todo:
            lock = CellLock(store.lock_path(cell.id))
            if not lock.acquire(block=False):
                deferred.append(cell)           # another run has it: come back at the end
                continue
            do(cell, lock)
        for cell in deferred:
            tqdm.write(f"  wait {cell.id}: running in another harness process")
            lock = CellLock(store.lock_path(cell.id))
            lock.acquire(block=True)
            do(cell, lock)
    except KeyboardInterrupt:
        overall.close()
        print("\nharness run: interrupted; finished cells are kept, the interrupted one will be redone", file=sys.stderr)
        return 130
    overall.close()

    df = store.frame()
    ids = {c.id for c in sweep.cells}
    df = df[df["cell_id"].isin(ids)] if len(df) else df
    print(format_table(df))
    print(f"results: {store.csv_path}")
    if skipped:
        print(f"\n{len(skipped)} cell(s) not applicable (not run, no row):", file=sys.stderr)
        for cid, why in skipped:
            print(f"  {cid}: {why}", file=sys.stderr)
    if failed:
        print(f"\n{len(failed)} cell(s) failed:", file=sys.stderr)
        for cid, log in failed:
            print(f"  {cid}: see {log}", file=sys.stderr)
        return 1
    return 0


class _StreamRates:
    """Samples per frame of a cell's stream: from its feature cache when there is one, else by
    building the upstream once per (upstream, checkpoint, model config)."""

    def __init__(self, cache_specs: dict):
        self.cache_specs = cache_specs
        self._up: dict = {}

    def __call__(self, cell) -> int:
        spec = self.cache_specs.get(cell.id)
        if spec is not None:
            from harness.cache import read_spec
            from harness.features import FeatureStore
            return FeatureStore(read_spec(spec)["store"]).downsample_rate(cell.feature)
        key = (cell.upstream, cell.ckpt, cell.model_config)
        if key not in self._up:
            from harness.features import load_upstream
            self._up[key] = load_upstream(cell.upstream, cell.ckpt, cell.model_config)
        return int(self._up[key].get_downsample_rates(cell.feature))


def not_applicable(cell, config: Path, rate_of) -> str | None:
    """Why s3prl cannot build this cell's downstream on its stream (see harness.applicable), or None."""
    from harness.applicable import modelrc, reason_not_applicable, total_rate
    rc = modelrc(config)
    if total_rate(rc) is None:              # nothing to check: do not build the upstream for it
        return None
    return reason_not_applicable(rc, rate_of(cell))


def upstream_args(cell, cache_spec: Path | None) -> list[str]:
    """-u/-k/-s for run_downstream.py (the cached upstream when the cell's features are cached)."""
    if cache_spec is not None:
        return ["-u", "duet_cached", "-k", str(cache_spec), "-s", cell.feature]
    args = ["-u", cell.upstream]
    if cell.ckpt:
        args += ["-k", cell.ckpt]
    return args + ["-s", cell.feature]
