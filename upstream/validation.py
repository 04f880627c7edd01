"""Input checks for DUET upstream experts: every bad waveform gets a ValueError saying what is
wrong and how to fix it, before it reaches a model (where it would give garbage or a cryptic
shape error deep inside a convolution). When the caller knows which file a waveform came from it
passes ``names`` (paths or utterance ids, one per waveform) and every message names that file.

    >>> import torch
    >>> wavs = check_wavs([torch.randn(16000), torch.randn(8000)])
    >>> [w.shape for w in wavs]
    [torch.Size([16000]), torch.Size([8000])]
    >>> pad_wavs(wavs)[1].tolist()
    [16000, 8000]
    >>> check_wavs([torch.zeros(0)], names=["spk1/a.wav"])
    Traceback (most recent call last):
    ...
    ValueError: waveform 0 (spk1/a.wav) is empty (0 samples); re-create the file or drop it from the list
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import Tensor
from upstream.facts import SAMPLE_RATE

# The wav2vec2/HuBERT CNN front-end has a receptive field of 400 samples (25 ms at 16 kHz):
# a shorter input gives zero frames.
MIN_SAMPLES = 400


# The one-line fix for a file in the wrong format (rate, channels, encoding): sox writes 16 kHz,
# mono, 16-bit PCM. ``ffmpeg -i in.wav -ar 16000 -ac 1 out.wav`` does the same.
SOX_FIX = f"sox in.wav -r {SAMPLE_RATE} -c 1 out.wav"


def sox_fix(path: str | os.PathLike | None = None) -> str:
    """The sox command that turns ``path`` into 16 kHz mono (``SOX_FIX`` without a path)."""
    if path is None:
        return SOX_FIX
    p = os.fspath(path)
    stem, _ = os.path.splitext(p)
    return f"sox {p} -r {SAMPLE_RATE} -c 1 {stem}-16k.wav"


def _name(index: int | None, source: str | os.PathLike | None = None) -> str:
    base = "the waveform" if index is None else f"waveform {index}"
    return base if source is None else f"{base} ({os.fspath(source)})"


def check_sample_rate(sample_rate: int | None, expected: int = SAMPLE_RATE,
                      source: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> None:
    """Raise if a declared sample rate differs from what the models were trained on
    (``source``: the file, or the list of files, the audio was read from)."""
    if sample_rate is None:
        return
    if int(sample_rate) != expected:
        one = source if isinstance(source, (str, os.PathLike)) else None
        if one is not None:
            where = f" ({os.fspath(one)})"
        elif source:
            names = [os.fspath(n) for n in source]
            where = f" ({', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''})"
        else:
            where = ""
        raise ValueError(
            f"declared sample rate is {sample_rate} Hz{where} but DUET upstreams expect {expected} Hz audio; "
            f"resample first, e.g. torchaudio.functional.resample(wav, {sample_rate}, {expected}), or "
            f"convert the files once: {sox_fix(one)}")


def check_wav(wav, *, index: int | None = None, min_samples: int = MIN_SAMPLES,
              source: str | os.PathLike | None = None) -> Tensor:
    """Check one mono waveform and return it as a contiguous float32 1-D tensor (same device).

    ``source``: the file (or utterance id) it came from; named in every error."""
    name = _name(index, source)
    file_fix = f", or convert the file once: {sox_fix(source)}" if source is not None else ""
    if not isinstance(wav, Tensor):
        kind = type(wav).__module__ + "." + type(wav).__name__
        raise ValueError(f"{name} is a {kind}, expected a torch.Tensor of float samples in [-1, 1]; "
                         f"convert it with torch.as_tensor(x, dtype=torch.float32)")
    if wav.dtype == torch.bool or wav.is_complex():
        raise ValueError(f"{name} has dtype {wav.dtype}; expected real float samples in [-1, 1]")
    if not wav.is_floating_point():
        scale = {torch.int16: "32768", torch.int32: "2147483648", torch.uint8: "128 after subtracting 128"}
        hint = scale.get(wav.dtype, "the integer format's full scale")
        raise ValueError(
            f"{name} has integer dtype {wav.dtype} (raw PCM); convert it to float in [-1, 1]: "
            f"wav.float() / {hint} (soundfile.read(path, dtype='float32') does this for you)")
    if wav.dim() == 0:
        raise ValueError(f"{name} is a scalar; expected a 1-D tensor of samples")
    if wav.dim() == 2:
        a, b = wav.shape
        if 1 in (a, b):
            raise ValueError(f"{name} has shape {tuple(wav.shape)}; expected 1-D samples: drop the "
                             f"channel dimension with wav.reshape(-1)")
        ch, n = (a, b) if a < b else (b, a)
        raise ValueError(
            f"{name} has shape {tuple(wav.shape)}: it looks like {ch}-channel (stereo/multi-channel) "
            f"audio or a padded batch; mix down to mono with wav.mean(dim={0 if a < b else 1}) or pass "
            f"a list of 1-D waveforms, one per utterance{file_fix}")
    if wav.dim() > 2:
        raise ValueError(f"{name} has shape {tuple(wav.shape)}; expected a 1-D tensor of mono samples")
    n = wav.numel()
    if n == 0:
        raise ValueError(f"{name} is empty (0 samples); " + ("re-create the file or drop it from the list"
                                                             if source is not None else "drop it from the batch"))
    if n < min_samples:
        raise ValueError(
            f"{name} has only {n} samples ({1000 * n / SAMPLE_RATE:.1f} ms at 16 kHz); the CNN "
            f"front-end needs at least {min_samples} samples ({1000 * min_samples / SAMPLE_RATE:.0f} ms): "
            f"pad it with zeros, torch.nn.functional.pad(wav, (0, {min_samples} - len(wav))), or drop it")
    finite = torch.isfinite(wav)
    if not bool(finite.all()):
        nan = int(torch.isnan(wav).sum())
        inf = int(torch.isinf(wav).sum())
        first = int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"{name} contains {nan} NaN and {inf} Inf samples (first at sample {first}); "
            + ("the file holds invalid (non-finite) float samples: re-create it from the original "
               "recording or drop it from the list" if source is not None else
               "the audio decoder or preprocessing produced invalid values: fix the source")
            + ", or replace them with torch.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)")
    return wav.to(torch.float32).contiguous()


def check_wavs(wavs: Sequence[Tensor], *, sample_rate: int | None = None,
               expected_rate: int = SAMPLE_RATE, min_samples: int = MIN_SAMPLES,
               names: Sequence[str | os.PathLike] | None = None) -> list[Tensor]:
    """Check what an s3prl upstream receives: a list of 1-D float waveforms at 16 kHz.

    ``sample_rate`` is the rate the caller declares for its audio (None: not declared).
    ``names``: the file path (or utterance id) of each waveform, when the caller knows them;
    errors then name the file. Returns the waveforms as float32 1-D tensors.
    """
    if names is not None:
        if isinstance(names, (str, os.PathLike)) or not isinstance(names, Sequence):
            raise ValueError(f"names must be a list with one file name per waveform, got {type(names).__name__}")
        if isinstance(wavs, (list, tuple)) and len(names) != len(wavs):
            raise ValueError(f"got {len(names)} names for {len(wavs)} waveforms; pass one file name per waveform")
    check_sample_rate(sample_rate, expected_rate, names[0] if names is not None and len(names) == 1 else names)
    if isinstance(wavs, Tensor):
        if wavs.dim() == 1:
            raise ValueError("got a single 1-D tensor; s3prl upstreams take a list of waveforms: "
                             "pass [wav]")
        raise ValueError(f"got one tensor of shape {tuple(wavs.shape)}; s3prl upstreams take a list of "
                         f"1-D waveforms (unequal lengths allowed): pass list(batch) for a batch, or mix "
                         f"multi-channel audio down to mono first (wav.mean(dim=0))")
    if not isinstance(wavs, (list, tuple)):
        raise ValueError(f"expected a list of 1-D waveform tensors, got {type(wavs).__name__}")
    if len(wavs) == 0:
        raise ValueError("got an empty list of waveforms; pass at least one utterance")
    out = [check_wav(w, index=i, min_samples=min_samples, source=None if names is None else names[i])
           for i, w in enumerate(wavs)]
    devices = {w.device for w in out}
    if len(devices) > 1:
        raise ValueError(f"waveforms are on several devices {sorted(map(str, devices))}; move them to one")
    return out


def pad_wavs(wavs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad checked waveforms into (B, S) float32 plus their lengths (B,) long."""
    lens = torch.tensor([w.numel() for w in wavs], dtype=torch.long, device=wavs[0].device)
    batch = torch.nn.utils.rnn.pad_sequence(list(wavs), batch_first=True)
    return batch, lens
