"""Barlow Twins redundancy-reduction loss (Zbontar et al. 2021), with the "modified" L2 variant.

c = BN(z_a)ᵀ BN(z_b) / N  (batch-norm without affine, i.e. per-dimension standardisation)
L = sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2      (lambda = 0.0051 in the official code)

``normalize=True`` L2-normalises each latent before the correlation ("modified BT", inferred).
Identical, decorrelated views give ~0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BarlowTwins(nn.Module):
    def __init__(self, lambd: float = 0.0051, normalize: bool = False, eps: float = 1e-5):
        super().__init__()
        self.lambd = lambd
        self.normalize = normalize
        self.eps = eps

    def cross_correlation(self, za: Tensor, zb: Tensor) -> Tensor:
        za, zb = za.float(), zb.float()
        if self.normalize:
            za, zb = F.normalize(za, dim=-1), F.normalize(zb, dim=-1)
        n = za.shape[0]
        za = (za - za.mean(0)) / torch.sqrt(za.var(0, unbiased=False) + self.eps)
        zb = (zb - zb.mean(0)) / torch.sqrt(zb.var(0, unbiased=False) + self.eps)
        return za.t() @ zb / n

    def forward(self, za: Tensor, zb: Tensor) -> Tensor:
        """za, zb: (N, D) projections of two views (N rows paired)."""
        if za.shape != zb.shape or za.shape[0] < 2:
            raise ValueError(f"BarlowTwins needs two (N>=2, D) tensors of one shape, got {tuple(za.shape)}, {tuple(zb.shape)}")
        c = self.cross_correlation(za, zb)
        on = (torch.diagonal(c) - 1).pow(2).sum()
        off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on + self.lambd * off
