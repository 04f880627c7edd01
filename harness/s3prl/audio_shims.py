"""soundfile-backed stand-ins for the torchaudio I/O and sox APIs that s3prl 0.4.18 calls.

On this stack torchaudio 2.11 imports as pure Python (its CUDA-only C++ extension removed), so
``torchaudio.load/save`` need torchcodec (not installable on CPU torch) and ``torchaudio.info``,
``torchaudio.sox_effects`` and ``set_audio_backend`` do not exist. :func:`harness.s3prl.compat.install`
puts the functions below in their place; this module is also registered as
``torchaudio.sox_effects``.

Semantics follow torchaudio: ``load`` returns ``(float32 Tensor [channels, frames], sample_rate)``
(``channels_first=False`` gives ``[frames, channels]``); ``apply_effects_*`` take sox-style
effect chains ``[["channels", "1"], ["rate", "16000"], ["gain", "-3.0"], ["silence", ...]]``
and return ``(Tensor [channels, frames], sample_rate)``.

Example::

    >>> wav, sr = apply_effects_tensor(torch.zeros(1, 16000), 16000, [["gain", "-3.0"]])
    >>> wav.shape, sr
    (torch.Size([1, 16000]), 16000)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

__all__ = ["load", "save", "info", "AudioMetaData", "apply_effects_tensor", "apply_effects_file",
           "effect_names", "init_sox_effects", "shutdown_sox_effects", "SUPPORTED_EFFECTS"]


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------
@dataclass
class AudioMetaData:
    """What ``torchaudio.info`` returns (the fields s3prl reads)."""

    sample_rate: int
    num_frames: int
    num_channels: int
    bits_per_sample: int
    encoding: str


_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}
_ENCODING = {"PCM_S8": "PCM_S", "PCM_U8": "PCM_U", "PCM_16": "PCM_S", "PCM_24": "PCM_S", "PCM_32": "PCM_S",
             "FLOAT": "PCM_F", "DOUBLE": "PCM_F"}


def _path(uri) -> str | object:
    return os.fspath(uri) if isinstance(uri, (str, os.PathLike)) else uri


def load(uri, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
         channels_first: bool = True, format: str | None = None, buffer_size: int = 4096,
         backend: str | None = None) -> tuple[torch.Tensor, int]:
    """Read an audio file (wav, flac, ogg, ... whatever libsndfile reads) as float32 in [-1, 1].

    Like torchaudio >= 2.9, samples are always normalised float32 (``normalize`` is accepted for
    compatibility). Raises ``RuntimeError`` naming the file when it cannot be read.
    """
    src = _path(uri)
    try:
        data, sr = sf.read(src, start=int(frame_offset), frames=int(num_frames), dtype="float32",
                           always_2d=True, format=format.upper() if format else None)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise RuntimeError(f"cannot read audio file {src!r}: {e}") from e
    wav = torch.from_numpy(np.ascontiguousarray(data))  # (frames, channels)
    return (wav.T.contiguous() if channels_first else wav), int(sr)


def info(uri, format: str | None = None, buffer_size: int = 4096, backend: str | None = None) -> AudioMetaData:
    """Sample rate, frame count, channels, bit depth and encoding of an audio file."""
    src = _path(uri)
    try:
        i = sf.info(src)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise RuntimeError(f"cannot read audio file {src!r}: {e}") from e
    return AudioMetaData(sample_rate=int(i.samplerate), num_frames=int(i.frames), num_channels=int(i.channels),
                         bits_per_sample=_BITS.get(i.subtype, 0), encoding=_ENCODING.get(i.subtype, i.subtype))


def save(uri, src: torch.Tensor, sample_rate: int, channels_first: bool = True, format: str | None = None,
         encoding: str | None = None, bits_per_sample: int | None = None, buffer_size: int = 4096,
         backend: str | None = None, compression=None) -> None:
    """Write a (channels, frames) tensor (or (frames, channels) with ``channels_first=False``).

    Default subtype: 16-bit PCM for integer tensors and for formats without float support (flac),
    32-bit float for float tensors in wav, as torchaudio does; ``bits_per_sample`` / ``encoding``
    ("PCM_S", "PCM_F") override it.
    """
    x = src.detach().cpu()
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if channels_first:
        x = x.T
    dst = _path(uri)
    fmt = (format or (os.path.splitext(dst)[1][1:] if isinstance(dst, str) else "wav") or "wav").upper()
    if encoding == "PCM_F" or (encoding is None and x.is_floating_point() and bits_per_sample in (None, 32)
                               and fmt in ("WAV", "W64", "RF64", "AIFF")):
        subtype = "DOUBLE" if bits_per_sample == 64 else "FLOAT"
    else:
        subtype = {8: "PCM_U8" if fmt == "WAV" else "PCM_S8", 16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}[bits_per_sample or 16]
    data = x.numpy()
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    sf.write(dst, data.astype(np.float32, copy=False), int(sample_rate), subtype=subtype, format=fmt)


# ---------------------------------------------------------------------------------------------
# sox effects (the subset s3prl's downstreams use), in torch / numpy
# ---------------------------------------------------------------------------------------------
def _threshold(s: str) -> float:
    """sox threshold: '0.1%' (of full scale), '-50d' (dB) or a plain fraction of full scale."""
    s = s.strip()
    if s.endswith("%"):
        return float(s[:-1]) / 100.0
    if s.endswith("d"):
        return 10.0 ** (float(s[:-1]) / 20.0)
    return float(s)


def _seconds(s: str, sr: int) -> int:
    """sox time: seconds ('0.1'), samples ('1600s') or hh:mm:ss.frac -> samples."""
    s = s.strip()
    if s.endswith("s"):
        return int(float(s[:-1]))
    total = 0.0
    for part in s.split(":"):
        total = total * 60 + float(part)
    return int(round(total * sr))


def _frame_rms(x: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """RMS of the channel mix over 20 ms windows with a 10 ms hop -> (rms[frames], hop)."""
    mono = np.abs(x).max(axis=0) if x.shape[0] > 1 else np.abs(x[0])
    hop, win = max(1, sr // 100), max(1, sr // 50)
    n = max(1, int(math.ceil(len(mono) / hop)))
    padded = np.concatenate([mono, np.zeros(n * hop + win - len(mono), dtype=mono.dtype)])
    sq = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    starts = np.arange(n) * hop
    rms = np.sqrt((sq[starts + win] - sq[starts]) / win)
    return rms, hop


def _runs(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """Run-length encode a boolean vector -> [(start, end, value)]."""
    if len(mask) == 0:
        return []
    change = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [len(mask)]])
    return [(int(a), int(b), bool(mask[a])) for a, b in zip(bounds[:-1], bounds[1:])]


def silence(x: np.ndarray, sr: int, args: Sequence[str]) -> np.ndarray:
    """sox ``silence above_periods above_dur above_thr [below_periods below_dur below_thr]``.

    Frame-level (20 ms RMS, 10 ms hop) version of sox's algorithm: with ``above_periods`` > 0 the
    start is trimmed up to the first stretch of ``above_dur`` seconds above ``above_thr``; with
    ``below_periods`` = -1 every stretch of at least ``below_dur`` seconds below ``below_thr`` is
    removed (middle and end), with ``below_periods`` >= 1 audio stops at the first such stretch.
    Returns x (channels, frames) with the silences cut out (possibly empty).
    """
    args = list(args)
    if len(args) < 3:
        raise ValueError(f"sox silence needs at least 3 arguments, got {args}")
    above_periods, above_len, above_thr = int(args[0]), _seconds(args[1], sr), _threshold(args[2])
    rms, hop = _frame_rms(x, sr)
    keep = np.ones(len(rms), dtype=bool)
    start = 0
    if above_periods > 0:
        loud = rms > above_thr
        need = max(1, int(math.ceil(above_len / hop)))
        start = len(rms)
        for a, b, v in _runs(loud):
            if v and b - a >= need:
                start = a
                break
        keep[:start] = False
    if len(args) >= 6:
        below_periods, below_len, below_thr = int(args[3]), _seconds(args[4], sr), _threshold(args[5])
        quiet = rms <= below_thr
        need = max(1, int(math.ceil(below_len / hop)))
        for a, b, v in _runs(quiet[start:]):
            if v and b - a >= need:
                keep[start + a:start + b] = False
                if below_periods > 0:
                    keep[start + a:] = False
                    break
    sample_keep = np.repeat(keep, hop)[: x.shape[1]]
    if len(sample_keep) < x.shape[1]:
        sample_keep = np.concatenate([sample_keep, np.full(x.shape[1] - len(sample_keep), keep[-1])])
    return x[:, sample_keep]


SUPPORTED_EFFECTS = ("channels", "rate", "gain", "vol", "norm", "reverse", "pad", "trim", "silence")


def _apply(wav: torch.Tensor, sr: int, effects: Sequence[Sequence[str]]) -> tuple[torch.Tensor, int]:
    import torchaudio.functional as AF

    x = wav.to(torch.float32)
    for effect in effects:
        name, *args = [str(a) for a in effect]
        if name == "channels":
            n = int(args[0])
            x = x.mean(dim=0, keepdim=True) if n == 1 else (x.repeat(n, 1) if x.shape[0] == 1 else x[:n])
        elif name == "rate":
            new_sr = int(float(args[-1]))
            if new_sr != sr:
                x = AF.resample(x, sr, new_sr)
                sr = new_sr
        elif name in ("gain", "vol"):
            if name == "gain":
                vals = [a for a in args if not a.startswith("-") or _is_number(a)]
                db = float(vals[-1]) if vals else 0.0
                if "-n" in args:  # normalise to 0 dBFS first
                    peak = x.abs().max()
                    x = x / peak if peak > 0 else x
                x = x * (10.0 ** (db / 20.0))
            else:
                v = args[0]
                x = x * (10.0 ** (float(v[:-2]) / 20.0) if v.endswith("dB") else float(v))
        elif name == "norm":
            db = float(args[0]) if args else 0.0
            peak = x.abs().max()
            if peak > 0:
                x = x / peak * (10.0 ** (db / 20.0))
        elif name == "reverse":
            x = x.flip(-1)
        elif name == "pad":
            before = _seconds(args[0], sr) if args else 0
            after = _seconds(args[1], sr) if len(args) > 1 else 0
            x = torch.nn.functional.pad(x, (before, after))
        elif name == "trim":
            a = _seconds(args[0], sr)
            b = x.shape[1] if len(args) < 2 else a + _seconds(args[1], sr)
            x = x[:, a:b]
        elif name == "silence":
            x = torch.from_numpy(np.ascontiguousarray(silence(x.numpy(), sr, args)))
        else:
            raise NotImplementedError(
                f"sox effect {name!r} is not implemented by DUET's torchaudio.sox_effects stand-in "
                f"(harness/s3prl/audio_shims.py); supported: {', '.join(SUPPORTED_EFFECTS)}")
    return x, sr


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def apply_effects_tensor(tensor: torch.Tensor, sample_rate: int, effects, channels_first: bool = True):
    """Apply a sox effect chain to a tensor -> (Tensor, sample_rate), like torchaudio's."""
    x = tensor if channels_first else tensor.T
    if x.dim() == 1:
        x = x.unsqueeze(0)
    out, sr = _apply(x, int(sample_rate), effects)
    return (out if channels_first else out.T), sr


def apply_effects_file(path, effects, normalize: bool = True, channels_first: bool = True, format: str | None = None):
    """Load a file and apply a sox effect chain -> (Tensor, sample_rate), like torchaudio's."""
    wav, sr = load(path, format=format)
    out, sr = _apply(wav, sr, effects)
    return (out if channels_first else out.T), sr


def effect_names() -> list[str]:
    return list(SUPPORTED_EFFECTS)


def init_sox_effects() -> None:
    """No-op (kept for torchaudio API compatibility)."""


def shutdown_sox_effects() -> None:
    """No-op (kept for torchaudio API compatibility)."""
