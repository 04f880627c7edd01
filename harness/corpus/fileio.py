"""Small atomic file helpers: write to a temporary name in the same folder, then rename (text files
whose content is unchanged are not rewritten)."""
from __future__ import annotations

import functools
import json
import io
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from upstream import facts


_MADE: set = set()  # folders this process already created


def _mkdir(d) -> None:
    if d not in _MADE:
        os.makedirs(d, exist_ok=True)
        _MADE.add(d)


# The corpus writes thousands of small files and records each finished item itself (resume), so
# its atomic writes skip the fsync; the rule itself is upstream.facts'.
atomic_write_bytes = functools.partial(facts.atomic_write_bytes, fsync=False)


def write_text_if_changed(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; a file that already holds exactly these bytes is left
    alone (not even its mtime changes), so rerunning a writer (``harness prepare``) changes nothing."""
    data = text.encode("utf-8")
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write_bytes(path, data)


def write_json_if_changed(path: Path, obj, indent: int | None = 1) -> None:
    write_text_if_changed(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


atomic_write_text = write_text_if_changed      # the names the corpus writers import
atomic_write_json = write_json_if_changed


def write_bytes(path: str, data: bytes) -> None:
    """Plain (non-atomic) write, for files whose completion is marked by a record written after."""
    _mkdir(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(data)


def encode_wav16(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM ``audio`` as a canonical 44-byte-header WAV file's bytes: the same bytes
    libsndfile writes for it (checked in tests/test_corpus.py), ~4x cheaper than going through it."""
    if audio.ndim != 1 or audio.dtype != np.int16:
        raise ValueError(f"encode_wav16 wants mono int16 audio, got {audio.dtype} {audio.shape}")
    n = 2 * len(audio)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + n, b"WAVE", b"fmt ", 16, 1, 1, sample_rate,
                         2 * sample_rate, 2, 16, b"data", n)
    return header + audio.astype("<i2", copy=False).tobytes()


def encode_audio(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """16-bit PCM ``audio`` as a WAV or FLAC file's bytes (encoded in memory: libsndfile's many
    small writes and seeks are much slower on disk than one write)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, subtype="PCM_16", format=fmt)
    return buf.getvalue()


def atomic_write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM; the container (WAV or FLAC) follows the file suffix."""
    atomic_write_bytes(path, encode_audio(audio, sample_rate, "FLAC" if path.suffix == ".flac" else "WAV"))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (replacing dst); copy where hard links are not possible."""
    _mkdir(dst.parent)
    if dst.exists():
        try:
            if os.path.samefile(src, dst):
                return
        except OSError:
            pass
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
