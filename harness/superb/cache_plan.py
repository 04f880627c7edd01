"""Which feature stores a sweep needs: one per (DUET upstream, checkpoint, corpus), holding every
file the sweep's cells read and, per key, the union of the layers they read (a store extends itself
when a later sweep reads more), built (or reused) before the cells that read it run.

:func:`plan_stores` lists them (:class:`StoreJob`); :func:`prepare_cache` builds them one after
another (``harness run --jobs 1``); ``harness.superb.execute.SweepExecutor.run_concurrent`` builds
them side by side in worker processes, each cell waiting only for its own store.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.features.cache import build_store, store_root
from harness.superb import taskview
from harness.superb.upstreams import upstream_info


@dataclass(frozen=True)
class StoreJob:
    """One store to build: where, of what, for which files, and the cells that read it."""
    root: Path
    upstream: str
    ckpt: str
    keys: tuple[str, ...]
    audio: tuple[Path, ...]
    cell_ids: tuple[str, ...]
    layers: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (key, the cells' `-g layers:` subsets): only what cells read

    @property
    def label(self) -> str:
        return self.root.name

    def build(self, device: str = "cpu", max_gb: float | None = None, dtype: str = "float16",
              progress: bool = True) -> Path:
        """Extract what is missing (resumable, under the store's own lock); returns the spec path."""
        return build_store(self.root, self.upstream, self.ckpt, list(self.keys), list(self.audio), device,
                           max_gb=max_gb, dtype=dtype, progress=progress,
                           layers={k: list(v) for k, v in self.layers} or None)


class StoreBuildError(RuntimeError):
    """A store could not be built; ``cause`` is what the build raised."""

    def __init__(self, job: StoreJob, cause: BaseException):
        super().__init__(f"{job.label}: {type(cause).__name__}: {cause}")
        self.job, self.cause = job, cause


def plan_stores(cells, data, cache_dir: Path) -> list[StoreJob]:
    """One StoreJob per (DUET upstream, checkpoint, corpus) among ``cells``, in the cells' order."""
    groups: dict[tuple, list] = {}
    for c in cells:
        if upstream_info(c.upstream).duet and c.ckpt:
            groups.setdefault((c.upstream, c.ckpt, c.ckpt_hash), []).append(c)
    jobs = []
    for (upstream, ckpt, h), group in groups.items():
        keys = tuple(sorted({c.feature for c in group}))
        layers = tuple((k, tuple(sorted({c.layers for c in group if c.feature == k}))) for k in keys)
        audio = tuple(sorted({p for c in group for p in taskview.audio_files(c.task, data)}))
        jobs.append(StoreJob(store_root(Path(cache_dir).resolve(), upstream, h, data.corpus_id), upstream, ckpt,
                             keys, audio, tuple(c.id for c in group), layers))
    return jobs


def prepare_cache(cells, data, cache_dir: Path, device: str = "cpu", max_gb: float | None = None,
                  dtype: str = "float16") -> dict[str, Path]:
    """Build (or reuse) one store per (DUET upstream, checkpoint, corpus) for the given cells, one
    after another. Returns cell id -> spec path for the cells that will read from the cache."""
    out = {}
    for job in plan_stores(cells, data, cache_dir):
        spec = job.build(device, max_gb=max_gb, dtype=dtype)
        for cid in job.cell_ids:
            out[cid] = spec
    return out
