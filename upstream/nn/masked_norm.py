"""Normalisations whose statistics only see valid frames, so padding cannot leak.

`MaskedInstanceNorm1d` is HuBERT-Base's first-layer `GroupNorm(C, C)` (one group per channel,
statistics over time) computed over the valid frames of each item; parameter names (`weight`,
`bias`) match `nn.GroupNorm` so HuBERT weights load directly.

`MaskedBatchNorm1d` is `nn.BatchNorm1d` over (B, C, T) inputs whose training statistics are
taken over valid frames only; in eval mode it is exactly `nn.BatchNorm1d` (running statistics).

A batch with at most one valid value per channel (one 0.05 s utterance in training mode, as
s3prl's upstream fine-tuning ``-f`` gives) has no batch variance: `nn.BatchNorm1d` raises
"Expected more than 1 value per channel", and batch statistics would map every input to the
bias. `MaskedBatchNorm1d` then normalises with its running statistics (what eval mode does) and
leaves them unchanged for that batch (a single value says nothing about the variance).
`use_masked_batchnorm(module)` swaps the plain `nn.BatchNorm1d`s inside a third-party module
(speechbrain's ECAPA) for this class; parameter and buffer names stay the same.
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
    """BatchNorm over (B, C, T) with a (B, T) mask, or over (B, C) / (B, C, T) with mask=None.

    Training with at most one valid value per channel uses the running statistics and does not
    update them (see the module docstring). Example:
        >>> bn = MaskedBatchNorm1d(4).train()
        >>> y = bn(torch.randn(1, 4, 1))            # one value per channel: no error
        >>> int(bn.num_batches_tracked), tuple(y.shape)
        (0, (1, 4, 1))
    """

    def _running(self, x: Tensor) -> Tensor:
        """Normalise with the running statistics (eval-mode arithmetic), leaving them unchanged."""
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        single = self.training and self.track_running_stats and x.numel() <= x.shape[1]
        if mask is None or x.dim() == 2 or not self.training:
            y = self._running(x) if single else super().forward(x)
            return y if mask is None or x.dim() == 2 else y * mask.unsqueeze(1).to(y.dtype)
        m = mask.unsqueeze(1).to(x.dtype)
        count = m.sum()
        n = count.clamp_min(1.0)
        mean = (x * m).sum(dim=(0, 2)) / n
        var = (((x - mean[None, :, None]) * m) ** 2).sum(dim=(0, 2)) / n
        if self.track_running_stats:
            # at most one valid value: no batch statistics; use and keep the running ones.
            # (a tensor condition, not an `if`, so no host sync on an accelerator)
            ok = count > 1
            with torch.no_grad():
                mom = (self.momentum if self.momentum is not None else 0.1) * ok.to(self.running_mean.dtype)
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - mom).add_(mom * mean)
                self.running_var.mul_(1 - mom).add_(mom * unbiased)
                self.num_batches_tracked.add_(ok.to(self.num_batches_tracked.dtype))
            mean = torch.where(ok, mean, self.running_mean.to(mean.dtype))
            var = torch.where(ok, var, self.running_var.to(var.dtype))
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y * m


def use_masked_batchnorm(module: nn.Module) -> int:
    """Replace every plain `nn.BatchNorm1d` inside ``module`` by a `MaskedBatchNorm1d` with the
    same settings and state (same state-dict keys); returns how many were replaced."""
    swaps = [(parent, name, child) for parent in module.modules()
             for name, child in parent.named_children() if type(child) is nn.BatchNorm1d]
    for parent, name, bn in swaps:
        new = MaskedBatchNorm1d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                                track_running_stats=bn.track_running_stats)
        new.load_state_dict(bn.state_dict())
        device = next(iter(bn.state_dict().values()), torch.empty(0)).device
        setattr(parent, name, new.to(device).train(bn.training))
    return len(swaps)
