"""Run a sweep's cells, each under its lock; every cell ends as one CellReport.

A cell another `harness run` holds is deferred to the end and waited for; a cell whose stream s3prl
cannot build is reported not applicable (no row); a failing cell never stops the sweep. Rows are
written only for cells that finished (see harness.superb.results).

``SweepExecutor.run`` runs the cells one after another (``harness run --jobs 1``);
``SweepExecutor.run_concurrent`` runs up to N things at once — feature-store builds and cells — with
each cell waiting only for its own store (see its docstring for how).
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.locks import CellLock
from harness.superb import taskview
from harness.superb.results import ResultStore, RunContext, build_row
from harness.superb.runner import CellFailed, CellPlan, run_cell
from harness.superb.sweep import Sweep, steps_overrides, task_registry

# Expected cost of a cell through s3prl's runner, per step: the frame-level tasks (sequence heads
# over every frame, CTC) cost most, the utterance-level ones least. Used only to start long cells first.
TASK_RANK = {"asr": 3, "pr": 2, "asv": 1}


@dataclass(frozen=True)
class CellReport:
    cell_id: str
    status: str                 # "ok" | "n/a" | "failed" | "done" (finished by another run meanwhile)
    detail: str = ""            # the reason (n/a), the log (failed) or the metric line (ok)
    row: dict | None = None


class StreamRates:
    """Samples per frame of a cell's stream: from its feature cache when there is one, else by
    building the upstream once per (upstream, checkpoint, model config)."""

    def __init__(self, cache_specs: dict):
        self.cache_specs = cache_specs
        self._up: dict = {}

    def __call__(self, cell) -> int:
        spec = self.cache_specs.get(cell.id)
        if spec is not None:
            from harness.features.cache import read_spec
            from harness.features.store import FeatureStore
            return FeatureStore(read_spec(spec)["store"]).downsample_rate(cell.feature)
        key = (cell.upstream, cell.ckpt, cell.model_config)
        if key not in self._up:
            from harness.features.store import load_upstream
            self._up[key] = load_upstream(cell.upstream, cell.ckpt, cell.model_config)
        return int(self._up[key].get_downsample_rates(cell.feature))


def not_applicable(cell, config: Path, rate_of) -> str | None:
    """Why s3prl cannot build this cell's downstream on its stream (see harness.superb.applicable), or None."""
    from harness.superb.applicable import modelrc, reason_not_applicable, total_rate
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


class SweepExecutor:
    """Runs cells of ``sweep`` into ``store``; ``make_bar(desc, total)`` gives a per-cell progress bar."""

    def __init__(self, sweep: Sweep, store: ResultStore, ctx: RunContext, cache_specs: dict, folds: int | None,
                 force: bool = False, make_bar: Callable | None = None, fast: bool = False,
                 pooled_dir: Path | None = None):
        self.sweep, self.store, self.ctx = sweep, store, ctx
        self.cache_specs, self.folds, self.force = cache_specs, folds, force
        self.fast, self.pooled_dir = fast, pooled_dir   # SID/ER on pooled features (harness.superb.fastpath)
        self.make_bar = make_bar
        self.rate_of = StreamRates(cache_specs)
        # set by run_concurrent only (None: one cell at a time, in this process, as ever)
        self._stop: threading.Event | None = None   # set: running s3prl children are killed, nothing new starts
        self._procs = None                          # worker processes for store builds and fast-path cells
        self._positions: list[int] | None = None    # free progress-bar lines (1..N)
        self._lock = threading.Lock()               # serialises row writes and bar positions
        self._child_env: dict = {}                  # thread caps for s3prl children running side by side

    def plan(self, cell) -> CellPlan:
        spec = task_registry()[cell.task]
        cfg = self.sweep.configs[cell.task]
        data = self.sweep.data
        steps = steps_overrides(cfg, cell.steps)
        runs = [(fold or "main", ",,".join(x for x in (taskview.overrides(spec, data, fold), steps) if x))
                for fold in taskview.folds(spec, self.folds)]
        return CellPlan(cell_id=cell.id, task=cell.task, run_dir=self.store.run_dir(cell.id),
                        downstream=taskview.downstream(spec), config=cfg, runs=runs,
                        upstream_args=upstream_args(cell, self.cache_specs.get(cell.id)),
                        test_splits=taskview.test_splits(spec), parse_metric=taskview.parser(spec),
                        device=self.ctx.device, seed=cell.seed, model_config=cell.model_config,
                        env=dict(self._child_env))

    def run_one(self, cell) -> CellReport:
        """One cell, its lock already held."""
        if self.store.has(cell.id) and not self.force:
            return CellReport(cell.id, "done")
        spec = task_registry()[cell.task]
        cfg = self.sweep.configs[cell.task]
        reason = not_applicable(cell, cfg, self.rate_of)
        if reason:
            return CellReport(cell.id, "n/a", reason)
        plan = self.plan(cell)
        if self.fast:
            report = self.run_fast(cell, plan)
            if report is not None:
                return report
        bar, position = self._open_bar(f"{cell.task}/{cell.upstream}/{cell.feature}",
                                       (cell.steps or 1) * len(plan.runs))
        try:
            outcome = run_cell(plan, pbar=bar, stop=self._stop)
        except CellFailed as e:
            return CellReport(cell.id, "failed", f"{e}", None)
        except Exception as e:  # noqa: BLE001 - one broken cell must not stop the sweep
            return CellReport(cell.id, "failed", f"{type(e).__name__}: {e} (log: {plan.log})")
        finally:
            self._close_bar(bar, position)
        row = build_row(cell, cfg, taskview.metric_name(spec), taskview.higher_is_better(spec), outcome, self.ctx,
                        cache=cell.id in self.cache_specs)
        row["path"] = "s3prl"
        return self._finish(row)

    def _open_bar(self, desc: str, total: int):
        """(bar, its line) for a cell through s3prl's runner; one line per running cell."""
        if not self.make_bar:
            return None, None
        if self._positions is None:
            return self.make_bar(desc, total), None
        with self._lock:
            position = self._positions.pop(0)
        return self.make_bar(desc, total, position=position), position

    def _close_bar(self, bar, position) -> None:
        if bar is not None:
            bar.close()
        if position is not None:
            with self._lock:
                self._positions.append(position)
                self._positions.sort()

    def _finish(self, row: dict) -> CellReport:
        with self._lock:                        # cells/<id>.json and the CSV rebuild, one writer at a time
            self.store.put(row)
            self.store.write_csv()
        return CellReport(row["cell_id"], "ok", f"{row['metric']} = {row['value']:.4f}  ({row['wall_s']:.0f} s, "
                                                f"{row['path']})", row)

    def run_fast(self, cell, plan: CellPlan) -> CellReport | None:
        """The cell on the fast path, or None (not a SID/ER cell, or one the fast path would not
        reproduce: then the reason is printed and s3prl's runner runs it)."""
        from harness.superb import fastpath

        if cell.task not in fastpath.FAST_TASKS:
            return None
        fplan = fastpath.plan_for_cell(cell, plan, self.cache_specs.get(cell.id), self.pooled_dir)
        try:
            reason = fastpath.check_plan(fplan)
            if reason:
                print(f"harness run: {cell.id}: fast path not used ({reason}); running s3prl's runner",
                      file=sys.stderr)
                return None
            if self._procs is None:
                outcome = fastpath.run_fast_cell(fplan)
            else:                               # it seeds and draws from torch's global RNG: own process
                outcome = self._procs.submit(fastpath.run_fast_cell, fplan).result()
        except Exception as e:  # noqa: BLE001 - one broken cell must not stop the sweep
            return CellReport(cell.id, "failed", f"fast path: {type(e).__name__}: {e} (run dir: {plan.run_dir})")
        spec = task_registry()[cell.task]
        row = build_row(cell, self.sweep.configs[cell.task], taskview.metric_name(spec), taskview.higher_is_better(spec),
                        outcome, self.ctx, cache=cell.id in self.cache_specs)
        row["path"] = "fast"
        return self._finish(row)

    def run(self, cells: list, on_report: Callable[[CellReport], None] | None = None) -> list[CellReport]:
        """Every cell under its lock; cells another process holds are waited for at the end."""
        reports, deferred = [], []

        def locked(cell, block: bool) -> bool:
            lock = CellLock(self.store.lock_path(cell.id))
            if not lock.acquire(block=block):
                return False
            try:
                report = self.run_one(cell)
            finally:
                lock.release()
            reports.append(report)
            if on_report is not None:
                on_report(report)
            return True

        for cell in cells:
            if not locked(cell, block=False):
                deferred.append(cell)           # another run has it: come back at the end
        for cell in deferred:
            if on_report is not None:
                on_report(CellReport(cell.id, "wait", "running in another harness process"))
            locked(cell, block=True)
        return reports

    # ------------------------------------------------------------------------- N at a time

    def expected_cost(self, cell) -> tuple:
        """Sort key, larger = longer: cells through s3prl's runner before fast-path ones, frame-level
        tasks before utterance-level ones, more steps before fewer."""
        from harness.superb.fastpath import FAST_TASKS

        runner = not (self.fast and cell.task in FAST_TASKS)
        return runner, TASK_RANK.get(cell.task, 0), cell.steps or self._config_steps(cell.task)

    def _config_steps(self, task: str) -> int:
        import yaml

        cfg = yaml.safe_load(Path(self.sweep.configs[task]).read_text()) or {}
        return int((cfg.get("runner") or {}).get("total_steps") or 0)

    def run_concurrent(self, cells: list, on_report: Callable[[CellReport], None] | None = None, jobs: int = 2,
                       stores: list | None = None, build: dict | None = None,
                       say: Callable[[str], None] = print) -> list[CellReport]:
        """Up to ``jobs`` things at once: the feature stores ``stores`` (cache_plan.StoreJob) and the cells.

        * A store builds in a worker process (spawn, ``build`` = build_store's device/max_gb/dtype, no
          bars); the cells that read it start once it is built; the others start at once.
        * Stores start first (biggest first), then the ready cells by :meth:`expected_cost`, longest
          first, so long s3prl cells start early and short fast-path cells fill the gaps.
        * A cell runs in a thread under its lock: s3prl's runner in its subprocess (``--jobs`` threads
          run ``--jobs`` children), a fast-path cell in a worker process (it seeds and draws from
          torch's global RNG, which threads would share). Workers and children get cpu_count/jobs
          torch threads unless OMP_NUM_THREADS is set. Rows are written one at a time; ``on_report``
          and ``say`` are called from this thread only.
        * A cell another `harness run` holds is waited for at the end, as in :meth:`run`.
        * A store that cannot be built: nothing new starts, what runs finishes (stores keep what they
          extracted, finished cells keep their rows), then :class:`cache_plan.StoreBuildError` is raised.
        * KeyboardInterrupt (Ctrl-C, or SIGTERM as harness run maps it): s3prl children and workers are
          killed, running threads end without a row, and the interrupt is raised again.
        """
        import multiprocessing
        import time
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

        from harness.superb.cache_plan import StoreBuildError

        stores, build = list(stores or []), dict(build or {})
        threads_each = None if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // jobs)
        if threads_each is not None:
            self._child_env = {"OMP_NUM_THREADS": str(threads_each), "MKL_NUM_THREADS": str(threads_each)}
        needs = {cid: i for i, job in enumerate(stores) for cid in job.cell_ids}
        waiting: dict[int, list] = {i: [] for i in range(len(stores))}
        ready = []
        for c in cells:
            (waiting[needs[c.id]] if c.id in needs else ready).append(c)
        ready.sort(key=self.expected_cost, reverse=True)
        store_queue = sorted(range(len(stores)), key=lambda i: -len(stores[i].audio))

        self._stop = threading.Event()
        self._positions = list(range(1, jobs + 1))
        self._procs = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_init_worker, initargs=(threads_each,))
        pool = ThreadPoolExecutor(jobs, thread_name_prefix="harness-cell")
        running: dict = {}
        reports, deferred, failures, started = [], [], [], {}
        block = False
        try:
            while True:
                while len(running) < jobs and not failures and (store_queue or ready):
                    if store_queue:
                        i = store_queue.pop(0)
                        job = stores[i]
                        say(f"  feat {job.label}: building the feature store ({len(job.audio)} files, "
                            f"keys {','.join(job.keys)}) beside the cells that do not need it")
                        started[i] = time.time()
                        running[pool.submit(self._build, job, build)] = ("store", i)
                    else:
                        cell = ready.pop(0)
                        running[pool.submit(self._cell, cell, block)] = ("cell", cell)
                if not running:
                    if deferred and not failures:   # held by another run: wait for them, as run() does
                        for cell in deferred:
                            if on_report is not None:
                                on_report(CellReport(cell.id, "wait", "running in another harness process"))
                        ready, deferred, block = deferred, [], True
                        continue
                    break
                done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for f in done:
                    kind, what = running.pop(f)
                    if kind == "store":
                        job = stores[what]
                        try:
                            spec = f.result()
                        except Exception as e:  # noqa: BLE001 - reported with its cause once the others end
                            failures.append(StoreBuildError(job, e))
                            say(f"  FAIL {job.label}: {type(e).__name__}: {e} (no new work starts; "
                                f"waiting for the running ones)")
                            continue
                        for cid in job.cell_ids:
                            self.cache_specs[cid] = spec
                        say(f"  feat {job.label}: ready ({time.time() - started[what]:.0f} s)")
                        ready = sorted(ready + waiting.pop(what), key=self.expected_cost, reverse=True)
                    else:
                        report = f.result()
                        if report is None:
                            deferred.append(what)
                        else:
                            reports.append(report)
                            if on_report is not None:
                                on_report(report)
        except BaseException:
            self._stop.set()                    # s3prl children die at their next poll (0.5 s)
            for proc in list((getattr(self._procs, "_processes", None) or {}).values()):
                proc.kill()                     # (no public kill before Python 3.14); extracted shards are kept
            raise
        finally:
            self._procs.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            self._procs = self._stop = self._positions = None
            self._child_env = {}
        if failures:
            raise failures[0]
        return reports

    def _build(self, job, build: dict) -> Path:
        return self._procs.submit(job.build, progress=False, **build).result()

    def _cell(self, cell, block: bool) -> CellReport | None:
        """One cell under its lock (None: another process holds it and ``block`` is False, or stopped)."""
        lock = CellLock(self.store.lock_path(cell.id))
        while not lock.acquire(block=False):    # polled, so a stop is seen while waiting
            if not block or self._stop.wait(0.5):
                return None
        try:
            return None if self._stop.is_set() else self.run_one(cell)
        finally:
            lock.release()


def _init_worker(threads: int | None) -> None:
    """A worker process of run_concurrent: torch threads capped, Ctrl-C left to the parent (which
    kills the workers), and killed with the parent."""
    import signal

    import torch

    from harness.superb.runner import _die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        _die_with_parent()
