"""WavLM's gated relative position bias (Chen et al. 2022, "WavLM", section 2.2).

Two parts, computed exactly as transformers' `WavLMAttention` does:

* `RelativePositionBias` (one per encoder, shared by every layer; transformers keeps it in layer
  0 as `rel_attn_embed`): the relative position j - i of key j to query i falls into one of
  `num_buckets` buckets (half for j > i, half for j <= i; exact below `num_buckets // 4`,
  logarithmic up to `max_distance`, clamped beyond); each bucket holds one learned value per
  head. `forward(t) -> (H, T, T)` float.
* `GatedPositionBias` (one per layer, `gru_rel_pos_linear` + `gru_rel_pos_const`): from the
  layer's attention input x (B, T, D), split into heads, a gate per query
  g = a * (b * c - 1) + 2 with a, b = sigmoid(two sums of four linear outputs), c per head;
  `forward(x, bias (H, T, T)) -> (B, H, T, T)` = g * bias, added to the attention logits.

Example:
    >>> rel = RelativePositionBias(heads=2, num_buckets=16, max_distance=40)
    >>> gate = GatedPositionBias(dim=8, heads=2)
    >>> tuple(gate(torch.randn(3, 5, 8), rel(5)).shape)
    (3, 2, 5, 5)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def relative_position_buckets(relative: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Bucket index (long, same shape) of each relative position (key minus query), as
    transformers' `WavLMAttention._relative_positions_bucket` computes it."""
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half
    relative = torch.abs(relative)
    max_exact = half // 2
    is_small = relative < max_exact
    large = torch.log(relative.float() / max_exact)
    large = large / math.log(max_distance / max_exact)
    large = (max_exact + large * (half - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, half - 1))
    return buckets + torch.where(is_small, relative, large)


class RelativePositionBias(nn.Module):
    """forward(t) -> (heads, t, t): the learned bias of every (query, key) pair's bucket."""

    def __init__(self, heads: int, num_buckets: int = 320, max_distance: int = 800):
        super().__init__()
        if num_buckets < 4 or max_distance <= num_buckets // 4:
            raise ValueError(f"relative position bias needs num_buckets >= 4 and max_distance > "
                             f"num_buckets // 4, got {num_buckets} and {max_distance}")
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.rel_attn_embed = nn.Embedding(num_buckets, heads)

    def forward(self, t: int) -> Tensor:
        pos = torch.arange(t, dtype=torch.long, device=self.rel_attn_embed.weight.device)
        buckets = relative_position_buckets(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.rel_attn_embed(buckets).permute(2, 0, 1)


class GatedPositionBias(nn.Module):
    """forward(x (B, T, D), bias (H, T, T)) -> (B, H, T, T): the bias scaled per query by a gate
    computed from that query's attention input."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(dim // heads, 8)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, t, _ = x.shape
        per_head = x.view(b, t, self.heads, -1).permute(0, 2, 1, 3)             # (B, H, T, D/H)
        proj = self.gru_rel_pos_linear(per_head).view(b, self.heads, t, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(proj).chunk(2, dim=-1)                   # (B, H, T, 1) each
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0
        return gate * bias.unsqueeze(0)
