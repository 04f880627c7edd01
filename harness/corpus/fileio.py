"""Small atomic file helpers: write to a temporary name in the same folder, then rename."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def atomic_write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM; the container (WAV or FLAC) follows the file suffix."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format=fmt)
    os.replace(tmp, path)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (replacing dst); copy where hard links are not possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
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
