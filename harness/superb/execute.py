"""Run a sweep's cells, one at a time, each under its lock; every cell ends as one CellReport.

A cell another `harness run` holds is deferred to the end and waited for; a cell whose stream s3prl
cannot build is reported not applicable (no row); a failing cell never stops the sweep. Rows are
written only for cells that finished (see harness.superb.results).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.locks import CellLock
from harness.superb import taskview
from harness.superb.results import ResultStore, RunContext, build_row
from harness.superb.runner import CellFailed, CellPlan, run_cell
from harness.superb.sweep import Sweep, steps_overrides, task_registry


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
                        device=self.ctx.device, seed=cell.seed, model_config=cell.model_config)

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
        bar = self.make_bar(f"{cell.task}/{cell.upstream}/{cell.feature}", (cell.steps or 1) * len(plan.runs)) \
            if self.make_bar else None
        try:
            outcome = run_cell(plan, pbar=bar)
        except CellFailed as e:
            return CellReport(cell.id, "failed", f"{e}", None)
        except Exception as e:  # noqa: BLE001 - one broken cell must not stop the sweep
            return CellReport(cell.id, "failed", f"{type(e).__name__}: {e} (log: {plan.log})")
        finally:
            if bar is not None:
                bar.close()
        row = build_row(cell, cfg, taskview.metric_name(spec), taskview.higher_is_better(spec), outcome, self.ctx,
                        cache=cell.id in self.cache_specs)
        row["path"] = "s3prl"
        return self._finish(row)

    def _finish(self, row: dict) -> CellReport:
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
            outcome = fastpath.run_fast_cell(fplan)
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
