"""Normalisations whose statistics only see valid frames, so padding cannot leak.

`MaskedInstanceNorm1d` is HuBERT-Base's first-layer `GroupNorm(C, C)` (one group per channel,
statistics over time) computed over the valid frames of each item; parameter names (`weight`,
`bias`) match `nn.GroupNorm` so HuBERT weights load directly.

`MaskedBatchNorm1d` is `nn.BatchNorm1d` over (B, C, T) inputs whose training statistics are
taken over valid frames only; in eval mode it is exactly `nn.BatchNorm1d` (running statistics).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedInstanceNorm1d(nn.Module):
    """x (B, C, T), mask (B, T) bool -> (B, C, T); per item and channel over valid frames."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """`mask` must be a prefix mask (valid frames first), as `lengths_to_mask` makes."""
        c, t = x.shape[1], x.shape[-1]
        lengths = mask.sum(1)
        if bool((lengths == t).all()):  # no padding: the fused kernel, exactly nn.GroupNorm(C, C)
            return F.group_norm(x, c, self.weight, self.bias, self.eps)
        # padded batch: normalise each item over its own valid frames (same fused kernel)
        pieces = []
        for b, n in enumerate(lengths.tolist()):
            y = F.group_norm(x[b : b + 1, :, :n], c, self.weight, self.bias, self.eps)
            pieces.append(F.pad(y, (0, t - n)))
        return torch.cat(pieces, 0)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (B, C, T) with a (B, T) mask, or over (B, C) with mask=None."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None or x.dim() == 2 or not self.training:
            y = super().forward(x)
            return y if mask is None or x.dim() == 2 else y * mask.unsqueeze(1).to(y.dtype)
        m = mask.unsqueeze(1).to(x.dtype)
        n = m.sum().clamp_min(1.0)
        mean = (x * m).sum(dim=(0, 2)) / n
        var = (((x - mean[None, :, None]) * m) ** 2).sum(dim=(0, 2)) / n
        if self.track_running_stats:
            with torch.no_grad():
                mom = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - mom).add_(mom * mean)
                self.running_var.mul_(1 - mom).add_(mom * unbiased)
                self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y * m
