"""InfoNCE between two views: row i of ``a`` and row i of ``b`` are positives, other rows negatives.

L = (CE(a·bᵀ/tau, diag) + CE(b·aᵀ/tau, diag)) / 2 on L2-normalised rows.
Perfectly matched, mutually orthogonal views give ~0 at small tau; unrelated views give ~log(B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InfoNCE(nn.Module):
    def __init__(self, tau: float = 0.1, symmetric: bool = True):
        super().__init__()
        self.tau = tau
        self.symmetric = symmetric

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """a, b: (B, D)."""
        if a.shape != b.shape:
            raise ValueError(f"InfoNCE needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
        a = F.normalize(a.float(), dim=-1)
        b = F.normalize(b.float(), dim=-1)
        logits = a @ b.t() / self.tau
        target = torch.arange(a.shape[0], device=a.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.t(), target))
        return loss
