"""JOOCI's other encoder: pooled shared features + blocks fed by the (detached) content stream.

    x_0 = AvgPool_DF(shared features)                       (B, D, T_o), T_o = ceil(T_c / DF)
    block n:  y = Res2Net(k=1)(x)
              s = split-and-append(content_n, y)            content split into groups of DF
                                                            frames, y_j appended after group j
                                                            -> (B, D, T_o * (DF + 1))
              z = DepthwiseConv(kernel = stride = DF + 1)(s)  -> (B, D, T_o)
              z = Res2Net(k=3, dilation 4)(z)
              x = BatchNorm(z + x)

Content frames come in at the content rate (B, T_c, D); the caller detaches them (JOOCI: no
gradient from the other encoder into the content encoder). The last, partial group of DF
frames is averaged over its valid frames only and the missing content frames are zeros, so
item b's outputs depend only on its own valid frames (padding does not leak).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masked_norm import MaskedBatchNorm1d
from .masking import lengths_to_mask, mask_time
from .res2net import Res2NetBlock


def pooled_lengths(lengths: Tensor, factor: int) -> Tensor:
    """ceil(lengths / factor): frames of a DF-pooled stream."""
    return torch.div(lengths + factor - 1, factor, rounding_mode="floor")


def masked_avg_pool(x: Tensor, lengths: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """x (B, T, D) -> (B, ceil(T / DF), D) mean over each group's valid frames, and lengths."""
    b, t, d = x.shape
    t_o = -(-t // factor)
    mask = lengths_to_mask(lengths, t).to(x.dtype)
    xs = F.pad(x * mask.unsqueeze(-1), (0, 0, 0, t_o * factor - t)).view(b, t_o, factor, d).sum(2)
    n = F.pad(mask, (0, t_o * factor - t)).view(b, t_o, factor).sum(2, keepdim=True)
    return xs / n.clamp_min(1.0), pooled_lengths(lengths, factor)


def split_and_append(content: Tensor, other: Tensor, factor: int) -> Tensor:
    """content (B, D, T_c), other (B, D, T_o) -> (B, D, T_o * (DF + 1)).

    Content is zero-padded/cut to T_o * DF frames and split into T_o groups of DF; other frame j
    is appended after group j.

    >>> c = torch.arange(4.).view(1, 1, 4); o = torch.tensor([[[10., 20.]]])
    >>> split_and_append(c, o, 2).tolist()
    [[[0.0, 1.0, 10.0, 2.0, 3.0, 20.0]]]
    """
    b, d, t_o = other.shape
    need = t_o * factor
    if content.shape[-1] < need:
        content = F.pad(content, (0, need - content.shape[-1]))
    groups = content[..., :need].reshape(b, d, t_o, factor)
    return torch.cat([groups, other.unsqueeze(-1)], dim=-1).reshape(b, d, t_o * (factor + 1))


class OtherEncoderBlock(nn.Module):
    """forward(x (B, D, T_o), content (B, D, T_c), mask_o (B, T_o), mask_c (B, T_c)) -> (B, D, T_o)."""

    def __init__(self, dim: int, factor: int = 10, scale: int = 8, dilation: int = 4):
        super().__init__()
        self.factor = factor
        self.res2net_in = Res2NetBlock(dim, scale=scale, kernel_size=1, dilation=1)
        self.depthwise = nn.Conv1d(dim, dim, factor + 1, stride=factor + 1, groups=dim)
        self.res2net_out = Res2NetBlock(dim, scale=scale, kernel_size=3, dilation=dilation)
        self.norm = MaskedBatchNorm1d(dim)
        # init: the depthwise conv passes the block's own (other) frame and ignores the DF content
        # taps, so the other stream starts as speaker-preserving as its input; content information
        # flows in only as training weights the taps (a default uniform init averaged DF content
        # frames into every block: speaker PWCCA 0.55 at O0 fell to 0.14 at O1-O4, like random)
        with torch.no_grad():
            self.depthwise.weight.zero_()
            self.depthwise.weight[:, :, -1] = 1.0
            self.depthwise.bias.zero_()

    def depthwise_conv(self, s: Tensor) -> Tensor:
        """`self.depthwise(s)`: kernel = stride = DF + 1, so windows do not overlap and the conv is
        a per-channel weighted sum over each window (same weights; much faster on CPU)."""
        b, d, _ = s.shape
        w = self.depthwise.weight.view(1, d, 1, self.factor + 1)
        return (s.view(b, d, -1, self.factor + 1) * w).sum(-1) + self.depthwise.bias.view(1, d, 1)

    def forward(self, x: Tensor, content: Tensor, mask_o: Tensor | None, mask_c: Tensor | None) -> Tensor:
        """Masks None = no padding in the batch (skips the masking ops)."""
        y = self.res2net_in(x, mask_o)
        if mask_c is not None:
            content = mask_time(content, mask_c, time_dim=2)
        z = self.depthwise_conv(split_and_append(content, y, self.factor))
        if mask_o is not None:
            z = mask_time(z, mask_o, time_dim=2)
        z = self.res2net_out(z, mask_o)
        return self.norm(z + x, mask_o)


class OtherEncoder(nn.Module):
    """Stack of `OtherEncoderBlock`s over DF-pooled shared features.

    forward(shared (B, T_c, D_in), shared_len (B,), contents: list of n tensors (B, T_c, D_c))
      -> (layers: list of n + 1 tensors (B, T_o, D), lengths (B,))
    layer 0 is the pooled (projected) input, layer n the output of block n. `contents[n]` feeds
    block n; the caller is responsible for detaching them.
    """

    def __init__(self, in_dim: int, content_dim: int, dim: int, blocks: int = 12,
                 factor: int = 10, scale: int = 8, dilation: int = 4):
        super().__init__()
        self.factor = factor
        self.dim = dim
        self.in_proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.content_proj = nn.Linear(content_dim, dim) if content_dim != dim else nn.Identity()
        self.blocks = nn.ModuleList(
            OtherEncoderBlock(dim, factor, scale, dilation) for _ in range(blocks)
        )

    def output_lengths(self, content_len: Tensor) -> Tensor:
        return pooled_lengths(content_len, self.factor)

    def forward(self, shared: Tensor, shared_len: Tensor, contents: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        if len(contents) != len(self.blocks):
            raise ValueError(f"{len(self.blocks)} other blocks need as many content layers, got {len(contents)}")
        pooled, o_len = masked_avg_pool(shared, shared_len, self.factor)
        mask_o = lengths_to_mask(o_len, pooled.shape[1])
        mask_c = lengths_to_mask(shared_len, shared.shape[1])
        x = mask_time(self.in_proj(pooled), mask_o).transpose(1, 2)  # (B, D, T_o)
        layers = [x.transpose(1, 2)]
        if bool(mask_o.all()) and bool(mask_c.all()):
            mask_o = mask_c = None  # no padding anywhere: same result, fewer ops
        for block, c in zip(self.blocks, contents):
            x = block(x, self.content_proj(c).transpose(1, 2), mask_o, mask_c)
            layers.append(x.transpose(1, 2))
        return layers, o_len
