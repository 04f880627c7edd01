"""Pseudo-con: supervised-contrastive loss over frames with k-means labels (Learn2Diss's frame loss).

For L2-normalised frames z_i with label y_i, P(i) = {p != i : y_p = y_i}:

    L = mean_{i : |P(i)| > 0}  -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau) )

With a single cluster and identical z, every term is log(N - 1) (the known answer the tests use).
Frames are subsampled to at most ``max_frames`` per call (O(N^2) memory).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PseudoCon(nn.Module):
    def __init__(self, tau: float = 0.1, max_frames: int = 1024):
        super().__init__()
        self.tau = tau
        self.max_frames = max_frames

    def forward(self, z: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z (N, D) frames, labels (N,) long (negative = ignore)."""
        keep = labels >= 0
        z, labels = z[keep], labels[keep]
        if z.shape[0] > self.max_frames:
            idx = torch.randperm(z.shape[0], generator=generator, device="cpu")[: self.max_frames].to(z.device)
            z, labels = z[idx], labels[idx]
        n = z.shape[0]
        if n < 2:
            return z.sum() * 0.0
        z = F.normalize(z.float(), dim=-1)
        sim = z @ z.t() / self.tau
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(eye, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        pos = (labels[:, None] == labels[None, :]) & ~eye
        npos = pos.sum(1)
        valid = npos > 0
        if not bool(valid.any()):
            return z.sum() * 0.0
        pos_lp = log_prob.masked_fill(~pos, 0.0).sum(1)
        return -(pos_lp[valid] / npos[valid]).mean()
