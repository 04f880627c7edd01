"""Masked 1-D Res2Net block (Gao et al. 2019), as used in ECAPA-TDNN and JOOCI's other encoder.

Channels are split into `scale` groups; group 0 passes through, group i (i >= 1) goes through
Conv1d(k, dilation) -> ReLU -> BatchNorm after adding the previous group's output (the
hierarchical "multi-scale" connection); the groups are concatenated back.

Convolutions use zero "same" padding and every input is masked first, so with a (B, T) mask
the valid frames of item b only see item b's valid frames (padding does not leak; in training
mode the BatchNorm statistics are also taken over valid frames only).
"""
from __future__ import annotations

from torch import Tensor, nn
import torch
import torch.nn.functional as F

from .masked_norm import MaskedBatchNorm1d
from .masking import mask_time


def conv1d_same(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """`conv(x)` for a stride-1 "same"-padded Conv1d. On CPU a dilated kernel is computed as one
    matmul over the k shifted copies of the input (PyTorch's CPU dilated convolution takes a
    slow path, ~10x slower here); elsewhere, and for dilation 1, it is `conv(x)`."""
    k, d = conv.kernel_size[0], conv.dilation[0]
    if d == 1 or k == 1 or x.device.type != "cpu":
        return conv(x)
    t = x.shape[-1]
    xp = F.pad(x, (conv.padding[0], conv.padding[0]))
    stacked = torch.cat([xp[..., i * d : i * d + t] for i in range(k)], dim=1)   # (B, k*C, T)
    w = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1, 1)            # (O, k*C, 1)
    return F.conv1d(stacked, w, conv.bias)


class Res2NetBlock(nn.Module):
    """x (B, C, T), mask (B, T) | None -> (B, C, T).

    Example:
        >>> blk = Res2NetBlock(16, scale=4, kernel_size=3, dilation=4)
        >>> tuple(blk(torch.randn(2, 16, 20)).shape)
        (2, 16, 20)
    """

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        if channels % scale:
            raise ValueError(f"Res2Net channels {channels} must be divisible by scale {scale}")
        width = channels // scale
        self.scale = scale
        self.pad = dilation * (kernel_size - 1) // 2
        if (dilation * (kernel_size - 1)) % 2:
            raise ValueError("Res2Net needs an odd effective kernel for 'same' padding")
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=self.pad)
            for _ in range(scale - 1)
        )
        self.norms = nn.ModuleList(MaskedBatchNorm1d(width) for _ in range(scale - 1))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        out = [chunks[0]]
        y = None
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            z = chunks[i + 1] if y is None else chunks[i + 1] + y
            if mask is not None:
                z = mask_time(z, mask, time_dim=2)
            y = norm(F.relu(conv1d_same(conv, z)), mask)
            out.append(y)
        y = torch.cat(out, dim=1)
        return y if mask is None else mask_time(y, mask, time_dim=2)
