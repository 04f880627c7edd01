"""HuBERT/wav2vec2-style span masking: ``span_mask(lengths, T, prob, span, gen) -> (B, T) bool``.

Each valid frame starts a span of ``span`` frames with probability ``prob / span`` (so about
``prob`` of the frames would be covered without overlaps; with overlaps ~ 1 - exp(-prob)).
At least one frame is masked per non-empty item. Drawn from ``gen`` on the CPU.
"""
from __future__ import annotations

import torch
from torch import Tensor


def span_mask(lengths: Tensor, T: int, prob: float, span: int, gen: torch.Generator | None = None) -> Tensor:
    B = lengths.shape[0]
    mask = torch.zeros(B, T, dtype=torch.bool)
    if prob <= 0:
        return mask
    starts = torch.rand(B, T, generator=gen) < (prob / span)
    lens = lengths.cpu()
    for b in range(B):
        n = int(lens[b])
        if n <= 0:
            continue
        s = starts[b, :n].nonzero().flatten()
        if s.numel() == 0:
            s = torch.randint(0, n, (1,), generator=gen)
        for k in range(span):
            idx = (s + k).clamp_max(n - 1)
            mask[b, idx] = True
    return mask.to(lengths.device)
