"""Input checks for DUET upstream experts: every bad waveform gets a ValueError saying what is
wrong and how to fix it, before it reaches a model (where it would give garbage or a cryptic
shape error deep inside a convolution).

    >>> import torch
    >>> wavs = check_wavs([torch.randn(16000), torch.randn(8000)])
    >>> [w.shape for w in wavs]
    [torch.Size([16000]), torch.Size([8000])]
    >>> pad_wavs(wavs)[1].tolist()
    [16000, 8000]
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from upstream.facts import SAMPLE_RATE

# The wav2vec2/HuBERT CNN front-end has a receptive field of 400 samples (25 ms at 16 kHz):
# a shorter input gives zero frames.
MIN_SAMPLES = 400


def _name(index: int | None) -> str:
    return "the waveform" if index is None else f"waveform {index}"


def check_sample_rate(sample_rate: int | None, expected: int = SAMPLE_RATE) -> None:
    """Raise if a declared sample rate differs from what the models were trained on."""
    if sample_rate is None:
        return
    if int(sample_rate) != expected:
        raise ValueError(
            f"declared sample rate is {sample_rate} Hz but DUET upstreams expect {expected} Hz audio; "
            f"resample first, e.g. torchaudio.functional.resample(wav, {sample_rate}, {expected})")


def check_wav(wav, *, index: int | None = None, min_samples: int = MIN_SAMPLES) -> Tensor:
    """Check one mono waveform and return it as a contiguous float32 1-D tensor (same device)."""
    name = _name(index)
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
            f"a list of 1-D waveforms, one per utterance")
    if wav.dim() > 2:
        raise ValueError(f"{name} has shape {tuple(wav.shape)}; expected a 1-D tensor of mono samples")
    n = wav.numel()
    if n == 0:
        raise ValueError(f"{name} is empty (0 samples); drop it from the batch")
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
            f"{name} contains {nan} NaN and {inf} Inf samples (first at sample {first}); the audio "
            f"decoder or preprocessing produced invalid values: fix the source, or replace them with "
            f"torch.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)")
    return wav.to(torch.float32).contiguous()


def check_wavs(wavs: Sequence[Tensor], *, sample_rate: int | None = None,
               expected_rate: int = SAMPLE_RATE, min_samples: int = MIN_SAMPLES) -> list[Tensor]:
    """Check what an s3prl upstream receives: a list of 1-D float waveforms at 16 kHz.

    ``sample_rate`` is the rate the caller declares for its audio (None: not declared).
    Returns the waveforms as float32 1-D tensors.
    """
    check_sample_rate(sample_rate, expected_rate)
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
    out = [check_wav(w, index=i, min_samples=min_samples) for i, w in enumerate(wavs)]
    devices = {w.device for w in out}
    if len(devices) > 1:
        raise ValueError(f"waveforms are on several devices {sorted(map(str, devices))}; move them to one")
    return out


def pad_wavs(wavs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad checked waveforms into (B, S) float32 plus their lengths (B,) long."""
    lens = torch.tensor([w.numel() for w in wavs], dtype=torch.long, device=wavs[0].device)
    batch = torch.nn.utils.rnn.pad_sequence(list(wavs), batch_first=True)
    return batch, lens
