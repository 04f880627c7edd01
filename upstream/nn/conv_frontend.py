"""wav2vec2 / HuBERT convolutional front-end (the "shared encoder" of JOOCI).

Seven valid (unpadded) 1-D convolutions, kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2):
one frame per 320 samples (20 ms at 16 kHz), receptive field 400 samples. Then LayerNorm and a
linear projection to the model width.

Padding does not leak: a valid convolution's output frame t only reads input samples
[t*s, t*s+k), so frames below the output length never read padding; the only statistic over
time, HuBERT-Base's first-layer GroupNorm(C, C), is computed over valid frames only
(`MaskedInstanceNorm1d`). Frames at or beyond the output length are zeroed.

Module names mirror transformers' `HubertFeatureEncoder` / `HubertFeatureProjection`
(`conv_layers.{i}.conv`, `conv_layers.0.layer_norm`, `layer_norm`, `projection`) so importers
can map HuBERT weights one to one.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masked_norm import MaskedInstanceNorm1d
from .masking import lengths_to_mask, mask_time


def conv_output_lengths(lengths: Tensor, kernels: Sequence[int], strides: Sequence[int]) -> Tensor:
    """Same arithmetic as transformers' `_get_feat_extract_output_lengths`:
    L <- floor((L - k) / s) + 1 per layer. Inputs shorter than the receptive field give <= 0.
    """
    lengths = lengths.long()
    for k, s in zip(kernels, strides):
        lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
    return lengths


def checked_lengths(frontend, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
    """A front-end's input check: ``wav`` (B, S) and every item long enough for one frame;
    returns (wav_len as long on wav's device, output frame lengths)."""
    if wav.dim() != 2:
        raise ValueError(f"wav must be (batch, samples), got shape {tuple(wav.shape)}")
    wav_len = wav_len.to(wav.device).long()
    out_len = frontend.output_lengths(wav_len)
    if bool((out_len < 1).any()):
        raise ValueError(
            f"every input needs at least {frontend.receptive_field} samples "
            f"(got lengths {wav_len.tolist()}); pad or drop shorter clips"
        )
    return wav_len, out_len


class _ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.layer_norm = MaskedInstanceNorm1d(c_out)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out)
        elif norm != "none":
            raise ValueError(f"conv norm must be 'group', 'layer' or 'none', got {norm!r}")

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_kind == "group":
            x = self.layer_norm(x, mask)
        elif self.norm_kind == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class ConvFrontEnd(nn.Module):
    """Raw waveform -> frame features.

    forward(wav (B, S) float, wav_len (B,) long) -> (features (B, T, D), lengths (B,) long)
    where T = max(lengths) and D = `out_dim`.  `conv_features(...)` also returns the
    pre-projection CNN output (B, T, C) for training targets / analysis.

    Example:
        >>> fe = ConvFrontEnd(conv_dim=(8,) * 7, out_dim=16)
        >>> y, n = fe(torch.randn(2, 16000), torch.tensor([16000, 8000]))
        >>> tuple(y.shape), n.tolist()
        ((2, 49, 16), [49, 24])
    """

    def __init__(
        self,
        conv_dim: Sequence[int] = (512,) * 7,
        conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        conv_bias: bool = False,
        norm: str = "group",
        out_dim: int = 768,
        proj_layer_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not (len(conv_dim) == len(conv_kernel) == len(conv_stride)):
            raise ValueError("conv_dim, conv_kernel and conv_stride must have the same length")
        self.kernels = tuple(int(k) for k in conv_kernel)
        self.strides = tuple(int(s) for s in conv_stride)
        layers = []
        c_in = 1
        for i, (c, k, s) in enumerate(zip(conv_dim, conv_kernel, conv_stride)):
            # HuBERT-Base ("group"): norm on the first layer only; "layer": on every layer.
            n = norm if (norm == "layer" or i == 0) else "none"
            layers.append(_ConvLayer(c_in, c, k, s, conv_bias, n))
            c_in = c
        self.conv_layers = nn.ModuleList(layers)
        self.conv_out_dim = c_in
        self.layer_norm = nn.LayerNorm(c_in) if proj_layer_norm else nn.Identity()
        self.projection = nn.Linear(c_in, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = out_dim

    @property
    def rate(self) -> int:
        """Samples per output frame (320 for the HuBERT layout)."""
        r = 1
        for s in self.strides:
            r *= s
        return r

    @property
    def receptive_field(self) -> int:
        """Samples needed for one output frame (400 for the HuBERT layout)."""
        rf = 1
        for k, s in reversed(list(zip(self.kernels, self.strides))):
            rf = (rf - 1) * s + k
        return rf

    def output_lengths(self, wav_len: Tensor) -> Tensor:
        return conv_output_lengths(wav_len, self.kernels, self.strides)

    def conv_features(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> (projected (B, T, D), cnn (B, T, C) after the last conv, lengths (B,))."""
        wav_len, out_len = checked_lengths(self, wav, wav_len)
        x = wav.unsqueeze(1)
        lengths = wav_len
        for layer in self.conv_layers:
            lengths = conv_output_lengths(lengths, (layer.conv.kernel_size[0],), (layer.conv.stride[0],))
            # the conv output is longer than max(lengths) when wav carries extra padding
            t = (x.shape[-1] - layer.conv.kernel_size[0]) // layer.conv.stride[0] + 1
            mask = lengths_to_mask(lengths, t)
            x = layer(x, mask)
        t_out = int(out_len.max().item())
        cnn = x[:, :, :t_out].transpose(1, 2)  # (B, T, C)
        mask = lengths_to_mask(out_len, t_out)
        cnn = mask_time(cnn, mask)
        proj = self.dropout(self.projection(self.layer_norm(cnn)))
        return mask_time(proj, mask), cnn, out_len

    def forward(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        proj, _, out_len = self.conv_features(wav, wav_len)
        return proj, out_len
