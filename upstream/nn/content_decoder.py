"""JOOCI's content decoder: one transformer decoder layer predicting frame pseudo-labels from the
other stream (pre-training only; it sits behind a gradient-reversal layer).

Design (*inferred*; the paper follows Ao et al. 2022 without details): non-autoregressive. The
queries carry no content at all — fixed sinusoidal positions at the content frame rate — and
cross-attend to the other stream (B, T_o, D) with a key-padding mask, so anything the decoder
can predict about the labels must come from the other stream. Output: logits (B, T_c, vocab).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_positions(t: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    pos = torch.arange(t, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(t, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


class ContentDecoder(nn.Module):
    """forward(memory (B, T_o, D), memory_mask (B, T_o) bool, n_frames int, query_mask (B, T_c))
    -> logits (B, T_c, vocab).

    Example:
        >>> d = ContentDecoder(dim=16, heads=2, ffn_dim=32, vocab=5)
        >>> m = torch.ones(2, 3, dtype=torch.bool)
        >>> tuple(d(torch.randn(2, 3, 16), m, 30).shape)
        (2, 30, 5)
    """

    def __init__(self, dim: int, heads: int = 8, ffn_dim: int = 3072, vocab: int = 1005,
                 dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.query = nn.Parameter(torch.zeros(dim))
        self.layer = nn.TransformerDecoderLayer(dim, heads, ffn_dim, dropout, batch_first=True,
                                                norm_first=True, activation="gelu")
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, memory: Tensor, memory_mask: Tensor, n_frames: int,
                query_mask: Tensor | None = None) -> Tensor:
        b = memory.shape[0]
        q = (self.query + sinusoidal_positions(n_frames, self.dim, memory.device, memory.dtype))
        q = q.unsqueeze(0).expand(b, -1, -1)
        y = self.layer(
            q, memory,
            tgt_key_padding_mask=None if query_mask is None else ~query_mask,
            memory_key_padding_mask=~memory_mask,
        )
        return self.head(self.norm(y))
