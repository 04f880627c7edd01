"""Masked wrapper over speechbrain's `ECAPA_TDNN` (the model itself is speechbrain's, unchanged).

speechbrain's ECAPA pads its "same" convolutions with `reflect` and never masks between layers,
so in a padded batch the last valid frames of a short item read padding. This wrapper makes the
batch exact without rewriting the model:
  * every Conv1d with kernel > 1 is switched to zero padding and gets a forward pre-hook that
    zeroes the frames beyond each item's length (so a batch equals one-by-one runs);
  * the SE blocks and the attentive statistics pooling get speechbrain relative lengths computed
    as (n - 0.5) / T, so speechbrain's `length_to_mask(rel * T)` gives exactly n valid frames
    whatever the float rounding.
(BatchNorm in training mode still sees the zeroed padded frames; eval is exact.) Its BatchNorms
are `MaskedBatchNorm1d`s (same weights and names), so training on one short utterance, where a
BatchNorm sees a single value per channel, uses the running statistics instead of failing.

forward(x (B, T, F), lengths (B,) long) -> (frames: list of (B, T, C) — the TDNN block, each
SE-Res2Net block and the multi-layer feature aggregation (MFA) output — and the embedding (B, E)).
`pool(...)` also gives the pooled statistics before the final BatchNorm/linear layer.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, TDNNBlock
from speechbrain.nnet.CNN import Conv1d as SBConv1d

from .masked_norm import use_masked_batchnorm
from .masking import lengths_to_mask, mask_time


class MaskedECAPA(nn.Module):
    """Example:
        >>> e = MaskedECAPA(16, lin_neurons=8, channels=(16, 16, 16, 16, 48), attention_channels=8,
        ...                 res2net_scale=4, se_channels=8)
        >>> frames, emb = e(torch.randn(2, 30, 16), torch.tensor([30, 20]))
        >>> len(frames), tuple(frames[-1].shape), tuple(emb.shape)
        (5, (2, 30, 48), (2, 8))
    """

    def __init__(self, input_size: int, lin_neurons: int = 192,
                 channels: Sequence[int] = (512, 512, 512, 512, 1536),
                 kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
                 dilations: Sequence[int] = (1, 2, 3, 4, 1), attention_channels: int = 128,
                 res2net_scale: int = 8, se_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.ecapa = ECAPA_TDNN(
            input_size, lin_neurons=lin_neurons, channels=list(channels),
            kernel_sizes=list(kernel_sizes), dilations=list(dilations),
            attention_channels=attention_channels, res2net_scale=res2net_scale,
            se_channels=se_channels, global_context=global_context,
        )
        use_masked_batchnorm(self.ecapa)
        self.lin_neurons = lin_neurons
        self.frame_dims = [int(c) for c in channels[:-1]] + [int(channels[-1])]
        self._mask: Tensor | None = None
        for mod in self.ecapa.modules():
            if isinstance(mod, SBConv1d) and mod.kernel_size > 1:
                mod.padding_mode = "constant"
                mod.register_forward_pre_hook(self._mask_hook)

    def _mask_hook(self, module: nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        if self._mask is None or x.dim() != 3 or x.shape[-1] != self._mask.shape[1]:
            return None
        return (mask_time(x, self._mask, time_dim=2),) + tuple(args[1:])

    @staticmethod
    def relative_lengths(lengths: Tensor, t: int) -> Tensor:
        return (lengths.to(torch.float32) - 0.5).clamp_min(0.25) / t

    def _frames(self, x: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """-> (per-block (B, C, T) outputs incl. MFA, mask, relative lengths)."""
        t = x.shape[1]
        mask = lengths_to_mask(lengths.to(x.device), t)
        rel = self.relative_lengths(lengths.to(x.device), t)
        h = mask_time(x, mask).transpose(1, 2)
        self._mask = mask
        try:
            outs = []
            for layer in self.ecapa.blocks:
                h = layer(h) if isinstance(layer, TDNNBlock) else layer(h, lengths=rel)
                outs.append(mask_time(h, mask, time_dim=2))
                h = outs[-1]
            mfa = self.ecapa.mfa(torch.cat(outs[1:], dim=1))
            outs.append(mask_time(mfa, mask, time_dim=2))
        finally:
            self._mask = None
        return outs, mask, rel

    def pool(self, x: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """-> (frames (B, T, C) list, pooled stats after BN (B, 2C), embedding (B, E))."""
        outs, mask, rel = self._frames(x, lengths)
        stats = self.ecapa.asp(outs[-1], lengths=rel)          # (B, 2C, 1)
        stats = self.ecapa.asp_bn(stats)
        emb = self.ecapa.fc(stats).squeeze(-1)                  # (B, E)
        return [o.transpose(1, 2) for o in outs], stats.squeeze(-1), emb

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        frames, _, emb = self.pool(x, lengths)
        return frames, emb
