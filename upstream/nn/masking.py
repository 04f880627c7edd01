"""Length/mask helpers shared by every block. Convention: `mask` is bool (B, T), True = valid."""
from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B,) long lengths -> (B, T) bool mask, True on valid frames.

    >>> lengths_to_mask(torch.tensor([1, 3]), 3).tolist()
    [[True, False, False], [True, True, True]]
    """
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def mask_time(x: Tensor, mask: Tensor, time_dim: int = 1) -> Tensor:
    """Zero the padded frames of `x` (time on `time_dim`, batch on 0) given a (B, T) bool mask."""
    shape = [1] * x.dim()
    shape[0] = mask.shape[0]
    shape[time_dim] = mask.shape[1]
    return x * mask.view(shape).to(x.dtype)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid frames. x (B, T, D), mask (B, T) -> (B, D). Empty items give zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)
