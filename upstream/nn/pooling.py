"""Masked attentive statistics pooling (Okabe et al. 2018; ECAPA-TDNN's global-context form).

  h_t = tanh(BN(ReLU(W1 [x_t ; mean ; std])))      (global context: utterance mean/std appended)
  a_t = softmax_t(W2 h_t) over valid frames only   (one attention weight per channel)
  out = [sum_t a_t x_t ; sqrt(sum_t a_t x_t^2 - mean^2)]  -> (B, 2C)

Padded frames get zero attention and are excluded from the global mean/std, so the pooled
vector of item b depends only on its valid frames.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .masked_norm import MaskedBatchNorm1d


def _weighted_stats(x: Tensor, w: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    mean = (w * x).sum(-1)
    var = (w * (x - mean.unsqueeze(-1)) ** 2).sum(-1)
    return mean, torch.sqrt(var.clamp_min(eps))


class AttentiveStatsPool(nn.Module):
    """x (B, C, T), mask (B, T) bool -> (B, 2C).

    Example:
        >>> p = AttentiveStatsPool(8, attention_channels=4)
        >>> tuple(p(torch.randn(2, 8, 10), torch.ones(2, 10, dtype=torch.bool)).shape)
        (2, 16)
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True,
                 eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        self.global_context = global_context
        c_in = channels * 3 if global_context else channels
        self.tdnn = nn.Conv1d(c_in, attention_channels, 1)
        self.norm = MaskedBatchNorm1d(attention_channels)
        self.attention = nn.Conv1d(attention_channels, channels, 1)

    @property
    def out_dim(self) -> int:
        return 2 * self.attention.out_channels

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        if self.global_context:
            w = m / m.sum(-1, keepdim=True).clamp_min(1.0)
            mean, std = _weighted_stats(x, w, self.eps)
            t = x.shape[-1]
            a_in = torch.cat([x, mean.unsqueeze(-1).expand(-1, -1, t), std.unsqueeze(-1).expand(-1, -1, t)], 1)
        else:
            a_in = x
        h = torch.tanh(self.norm(torch.relu(self.tdnn(a_in)), mask))
        logits = self.attention(h).masked_fill(~mask.unsqueeze(1), float("-inf"))
        a = torch.softmax(logits, dim=-1)
        a = torch.nan_to_num(a, nan=0.0)  # items with no valid frame
        mean, std = _weighted_stats(x, a, self.eps)
        return torch.cat([mean, std], dim=1)
