"""Which feature stores a sweep needs: one per (DUET upstream, checkpoint, corpus), holding every
file the sweep's cells read and, per key, the union of the layers they read (a store extends itself
when a later sweep reads more), built (or reused) before the first cell runs."""
from __future__ import annotations

from pathlib import Path

from harness.features.cache import build_store, store_root
from harness.superb import taskview
from harness.superb.upstreams import upstream_info


def prepare_cache(cells, data, cache_dir: Path, device: str = "cpu", max_gb: float | None = None,
                  dtype: str = "float16") -> dict[str, Path]:
    """Build (or reuse) one store per (DUET upstream, checkpoint, corpus) for the given cells.
    Returns cell id -> spec path for the cells that will read from the cache."""

    groups: dict[tuple, list] = {}
    for c in cells:
        if upstream_info(c.upstream).duet and c.ckpt:
            groups.setdefault((c.upstream, c.ckpt, c.ckpt_hash), []).append(c)
    out = {}
    for (upstream, ckpt, h), group in groups.items():
        keys = sorted({c.feature for c in group})
        layers = {k: sorted({c.layers for c in group if c.feature == k}) for k in keys}   # only what cells read
        audio = sorted({p for c in group for p in taskview.audio_files(c.task, data)})
        spec = build_store(store_root(Path(cache_dir).resolve(), upstream, h, data.corpus_id), upstream, ckpt, keys,
                           audio, device, max_gb=max_gb, dtype=dtype, layers=layers)
        for c in group:
            out[c.id] = spec
    return out
