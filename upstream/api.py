"""The Python API a researcher expects: load a DUET model by name or from a checkpoint, extract its
streams from waveforms, with frame lengths.

    >>> from upstream import load
    >>> model = load("jooci")                                # the bundled checkpoint
    >>> model = load("learn2diss", "path/to/ckpt_or_hf_dir") # DUET dir, transformers HuBERT dir, ...
    >>> model = load("jooci", random_init="compact", seed=0) # a seeded random-init twin
    >>> out = model.extract([wav1, wav2])                   # 1-D float tensors at 16 kHz
    >>> out["content"][6].shape, out.content_len             # (B, T, D) per layer, valid frames
    >>> model.streams                                        # ('content', 'other')

Everything goes through the same expert s3prl uses (``upstream/<name>/expert.py``), so what
``extract`` returns is what ``run_downstream.py -u NAME -s content|other`` feeds a downstream.
For s3prl itself: ``harness.s3prl.hub.register()`` then ``s3prl.nn.S3PRLUpstream(NAME)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from upstream.facts import SAMPLE_RATE
from upstream.registry import MODELS
from upstream.validation import check_wavs, pad_wavs


@dataclass
class Streams:
    """One batch's streams: every layer of each, (B, T, D), with the valid frames per item."""
    content: list[Tensor]
    content_len: Tensor
    other: list[Tensor]
    other_len: Tensor
    utterance: Tensor | None

    def __getitem__(self, key: str):
        if key not in ("content", "other", "utterance", "content_len", "other_len"):
            raise KeyError(f"{key!r}: a DUET output has content, other, utterance, content_len, other_len")
        return getattr(self, key)


class DuetModel:
    """A loaded DUET model (eval mode, no gradients) with its streams' shapes and frame rates."""

    def __init__(self, expert):
        self.expert = expert
        self.name = expert.MODEL_NAME
        self.source = expert.source
        self.num_layers = dict(expert.num_layers)
        self.streams = tuple(s for s in ("content", "other") if self.num_layers.get(s))
        self.samples_per_frame = {"content": expert.content_rate, "other": expert.other_rate}

    def to(self, device: str | torch.device) -> "DuetModel":
        self.expert.to(device)
        return self

    @torch.no_grad()
    def extract(self, wavs: list[Tensor] | Tensor, sample_rate: int = SAMPLE_RATE,
                names: list[str] | None = None) -> Streams:
        """``wavs``: a list of 1-D float waveforms (or one (B, S) tensor of equal lengths) at 16 kHz;
        ``names`` (optional) put the file in any error about a bad waveform."""
        if isinstance(wavs, Tensor):
            wavs = list(wavs) if wavs.dim() == 2 else [wavs]
        device = next(self.expert.model.parameters()).device
        wavs = check_wavs(wavs, sample_rate=sample_rate, names=names)
        wav, wav_len = pad_wavs([w.to(device) for w in wavs])
        out = self.expert.model(wav, wav_len.to(device))
        return Streams(content=list(out.content), content_len=out.content_len, other=list(out.other),
                       other_len=out.other_len, utterance=out.utterance)

    def __repr__(self) -> str:
        return (f"DuetModel({self.name}, source={self.source.get('source')}, "
                f"layers={self.num_layers}, samples_per_frame={self.samples_per_frame})")


def load(model: str, ckpt: str | os.PathLike | None = None, *, random_init: str | None = None, seed: int = 0,
         device: str = "cpu", **options: Any) -> DuetModel:
    """``model``: a DUET name (learn2diss, jooci, barlow_twins, hubert_compact). ``ckpt``: what
    ``run_downstream.py -k`` takes (a DUET checkpoint directory; for learn2diss / hubert_compact also
    a transformers HuBERT/WavLM directory or a fairseq .pt); none: the bundled checkpoint, or with
    ``random_init`` a seeded random model of that preset. Other ``options`` are the ``-g`` entries."""
    if model not in MODELS:
        raise KeyError(f"unknown DUET model {model!r}; choose one of {', '.join(MODELS)}")
    from upstream.hub import UPSTREAMS

    config = {**options, "seed": seed, **({"random_init": random_init} if random_init else {})}
    expert = UPSTREAMS[model](ckpt=None if ckpt is None else str(ckpt), model_config=config)
    return DuetModel(expert.eval()).to(device)
