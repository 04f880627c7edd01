"""Extraction planning of a FeatureStore: file ids, forward batches, disk estimates, layer names.

A file's features are a function of the model and that file alone only when it gets a forward of its
own: in a batch, its padded neighbours and the GEMM blocking of the batch's shape change their last
bits (measured with the bundled JOOCI on 200 unseen-voice files: 132 of 200 differ in float16 between
a store built in one call and one built in two halves; SUPERB-mini SID moved by up to 1.5 points on
such one-ulp differences). So ``length_batches(lengths, 0)`` -- one file a forward -- is the default
of every extraction; ``batch_seconds > 0`` trades that for speed (a GPU, a big corpus).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from harness.features.loading import FeatureStoreError


def normalize_wav_paths(wav_paths: Mapping[str, str | Path] | Iterable[str | Path]) -> dict[str, Path]:
    """{file_id: path}; a plain list uses each file's stem as its id (duplicates are an error)."""
    if isinstance(wav_paths, Mapping):
        return {str(k): Path(v) for k, v in wav_paths.items()}
    out: dict[str, Path] = {}
    for p in wav_paths:
        p = Path(p)
        if p.stem in out and out[p.stem] != p:
            raise FeatureStoreError(f"two audio files share the id '{p.stem}': {out[p.stem]} and {p}; "
                                    "pass a {file_id: path} mapping instead of a list")
        out[p.stem] = p
    return out


def estimate_bytes(parts: Iterable[tuple[int, int, float, float]], dtype: str) -> int:
    """Disk new features need: ``parts`` of (layers, dims, frames per second, seconds of audio)."""
    size = np.dtype(dtype).itemsize
    return int(sum(L * D * fps * seconds * size for L, D, fps, seconds in parts))


def layer_span(layers: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the --layers syntax, for messages)."""
    out: list[str] = []
    for i in sorted(layers):
        if out and "-" not in out[-1][1:] and int(out[-1]) == i - 1:
            out[-1] = f"{out[-1]}-{i}"
        elif out and "-" in out[-1][1:] and int(out[-1].split("-")[-1]) == i - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out) or "none"


def length_batches(lengths: dict[str, int], max_padded: float) -> list[list[str]]:
    """Files sorted by (length, id) in batches of at most ``max_padded`` padded samples (0: one file a
    batch, the exact default: see the module docstring), whatever order they came in."""
    batches, cur = [], []
    for f in sorted(lengths, key=lambda f: (lengths[f], f)):
        if cur and (not max_padded or (len(cur) + 1) * lengths[f] > max_padded):
            batches.append(cur)
            cur = []
        cur.append(f)
    if cur:
        batches.append(cur)
    return batches
