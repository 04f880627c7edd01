"""HuBERT / wav2vec2-style transformer encoder with key-padding masks; returns every layer.

Layout (mirrors transformers' `HubertEncoder` / `HubertEncoderStableLayerNorm`, same module
names so weights map one to one):

  x <- x (padded frames zeroed) + GELU(weight-normed grouped Conv1d(x))   # relative positions
  post-LN (HuBERT Base, layer_norm_first=False):
      x <- LayerNorm(x); each layer: x <- LN(x + MHA(x)); x <- LN(x + FFN(x))
  pre-LN  (HuBERT Large, layer_norm_first=True):
      each layer: x <- x + MHA(LN(x)); x <- x + FFN(LN(x)); final LayerNorm on the last output

Returned hidden states equal transformers' `output_hidden_states`: element 0 is the layer
input (after positional conv, and after the LayerNorm in post-LN mode), element i the output of
layer i, i.e. L + 1 tensors. In pre-LN mode the last element has the final LayerNorm applied
(= transformers' `last_hidden_state`; note transformers 5's `hidden_states[-1]` is the raw output
of the last layer instead; post-LN models such as HuBERT Base agree element by element).
Padded keys are masked out of attention; padded frames are zeroed in every output.

WavLM (`rel_pos="wavlm"`): one bucketed relative position bias per encoder, shared by every
layer, gated per layer from the layer's attention input and added to the attention logits
(`rel_pos_bias.py`; transformers' `WavLMEncoder` / `WavLMEncoderStableLayerNorm`). Off by
default: then attention takes no bias at all.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masking import mask_time
from .rel_pos_bias import GatedPositionBias, RelativePositionBias

REL_POS = ("none", "wavlm")


class PositionalConv(nn.Module):
    """Convolutional relative positional embedding (kernel K, groups G, weight norm over dim 2)."""

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) with padded frames zeroed
        y = self.conv(x.transpose(1, 2))
        if self.remove:
            y = y[:, :, : -self.remove]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """forward(x (B, T, D), key_mask (B, T) bool or None, position_bias (H, T, T) or None).
    `gated_bias=True` (WavLM): the layer's own gate scales `position_bias` per query."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, gated_bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.rel_pos_gate = GatedPositionBias(dim, heads) if gated_bias else None

    def forward(self, x: Tensor, key_mask: Tensor | None, position_bias: Tensor | None = None) -> Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(z: Tensor) -> Tensor:
            return z.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        # no padding -> no mask, so SDPA can use its memory-efficient (flash) CPU/GPU kernels
        attn_mask = None if key_mask is None or bool(key_mask.all()) else key_mask[:, None, None, :]
        if self.rel_pos_gate is not None:
            if position_bias is None:
                raise ValueError("this attention has a relative position gate: pass position_bias (H, T, T)")
            bias = self.rel_pos_gate(x, position_bias).to(q.dtype)                # (B, H, T, T) float
            attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0, act_dropout: float = 0.0):
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, ffn_dim)
        self.intermediate_dropout = nn.Dropout(act_dropout)
        self.output_dense = nn.Linear(ffn_dim, dim)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, layer_norm_first: bool,
                 dropout: float = 0.1, attention_dropout: float = 0.1, act_dropout: float = 0.0,
                 eps: float = 1e-5, gated_bias: bool = False):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.attention = SelfAttention(dim, heads, attention_dropout, gated_bias)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout, act_dropout)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, key_mask: Tensor | None, position_bias: Tensor | None = None) -> Tensor:
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), key_mask, position_bias))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, key_mask, position_bias)))
        return self.final_layer_norm(x + self.feed_forward(x))


class TransformerEncoder(nn.Module):
    """forward(x (B, T, D), mask (B, T) bool) -> list of L+1 tensors (B, T, D).

    A stack can be cut in two (Learn2Diss: frozen lower layers + trainable top layers g) so
    that the two halves compose to the uncut stack: the lower half with `final_norm=False`
    (pre-LN: no final LayerNorm yet), the upper half with `pos_conv_kernel=0` (no positional
    convolution) and `input_norm=False` (post-LN: no input LayerNorm). With `rel_pos="wavlm"`
    each half holds a copy of the shared relative position bias (it depends only on T).

    Example:
        >>> enc = TransformerEncoder(dim=16, layers=2, heads=2, ffn_dim=32, pos_conv_kernel=8,
        ...                          pos_conv_groups=2)
        >>> hs = enc(torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool))
        >>> len(hs), tuple(hs[-1].shape)
        (3, (2, 10, 16))
    """

    def __init__(self, dim: int = 768, layers: int = 12, heads: int = 12, ffn_dim: int = 3072,
                 layer_norm_first: bool = False, pos_conv_kernel: int = 128,
                 pos_conv_groups: int = 16, dropout: float = 0.1, attention_dropout: float = 0.1,
                 act_dropout: float = 0.0, layerdrop: float = 0.0, input_norm: bool = True,
                 final_norm: bool = True, eps: float = 1e-5, rel_pos: str = "none",
                 num_buckets: int = 320, max_bucket_distance: int = 800):
        super().__init__()
        if rel_pos not in REL_POS:
            raise ValueError(f"rel_pos must be one of {', '.join(REL_POS)}, got {rel_pos!r}")
        self.dim = dim
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.pos_conv_embed = PositionalConv(dim, pos_conv_kernel, pos_conv_groups) if pos_conv_kernel else None
        self.final_norm = final_norm
        use_norm = (layer_norm_first and final_norm) or (not layer_norm_first and input_norm)
        self.layer_norm = nn.LayerNorm(dim, eps=eps) if use_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        gated = rel_pos == "wavlm"
        self.rel_pos_bias = RelativePositionBias(heads, num_buckets, max_bucket_distance) if gated else None
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, ffn_dim, layer_norm_first, dropout, attention_dropout,
                         act_dropout, eps, gated)
            for _ in range(layers)
        )

    def forward(self, x: Tensor, mask: Tensor | None = None, detach_from: int | None = None) -> list[Tensor]:
        """``detach_from=k``: the states above k are computed from a detached copy of state k (the
        layers above train on their own losses only; no gradient from them reaches state k or below)."""
        if mask is not None:
            x = mask_time(x, mask)
        if self.pos_conv_embed is not None:
            x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        if mask is not None:
            x = mask_time(x, mask)
        hidden = [x]
        bias = self.rel_pos_bias(x.shape[1]) if self.rel_pos_bias is not None else None
        for layer in self.layers:
            if detach_from is not None and len(hidden) - 1 == detach_from:
                x = x.detach()
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                hidden.append(x)
                continue
            x = layer(x, mask, bias)
            if mask is not None:
                x = mask_time(x, mask)
            hidden.append(x)
        if self.layer_norm_first and self.final_norm and self.layers:
            last = self.layer_norm(hidden[-1])
            hidden[-1] = last if mask is None else mask_time(last, mask)
        return hidden
