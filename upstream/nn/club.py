"""CLUB: contrastive log-ratio upper bound of mutual information (Cheng et al., ICML 2020).

A variational q(y|x) = N(mu(x), diag sigma^2(x)) with
    mu(x)         = Linear -> ReLU -> Linear
    log sigma^2(x) = Linear -> ReLU -> Linear -> Tanh.

* `learning_loss(x, y)`: train q on matched pairs, = -mean_i sum_d [-(mu_i - y_i)^2 / sigma_i^2
  - log sigma_i^2] (the estimator step; run it with the encoders detached).
* `forward(x, y)` / `mi_est`: the CLUBSample estimate (O(N)), 1/2 mean_i sum_d
  [(mu_i - y_pi(i))^2 - (mu_i - y_i)^2] / sigma_i^2 with pi a random permutation — the quantity
  the encoders minimise (estimator frozen).

For speech (the VQMIVC pattern used by Learn2Diss) x is the utterance embedding (B, Dx) and y a
frame sequence (B, T, Dy) with a (B, T) mask: mu(x_i) is broadcast over T and the squared
errors are averaged over the valid frames of the y item they are compared with.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class CLUBSample(nn.Module):
    """Example:
        >>> club = CLUBSample(4, 3, hidden=8)
        >>> x, y = torch.randn(16, 4), torch.randn(16, 10, 3)
        >>> club.learning_loss(x, y).shape, club(x, y).shape
        (torch.Size([]), torch.Size([]))
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 512):
        super().__init__()
        h = max(hidden // 2, 1)
        self.p_mu = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim), nn.Tanh())

    def get_mu_logvar(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.p_mu(x), self.p_logvar(x)

    @staticmethod
    def _frame_mean(v: Tensor, mask: Tensor | None) -> Tensor:
        """v (B, T) or (B,) -> (B,): mean over valid frames."""
        if v.dim() == 1:
            return v
        if mask is None:
            return v.mean(1)
        m = mask.to(v.dtype)
        return (v * m).sum(1) / m.sum(1).clamp_min(1.0)

    def _sq_err(self, mu: Tensor, inv_var: Tensor, y: Tensor) -> Tensor:
        """sum_d (mu - y)^2 / sigma^2 -> (B,) or (B, T)."""
        if y.dim() == 3:
            mu, inv_var = mu.unsqueeze(1), inv_var.unsqueeze(1)
        return ((mu - y) ** 2 * inv_var).sum(-1)

    def log_likelihood(self, x: Tensor, y: Tensor, y_mask: Tensor | None = None) -> Tensor:
        """mean_i sum_d [-(mu_i - y_i)^2 / sigma_i^2 - log sigma_i^2] (up to constants)."""
        mu, logvar = self.get_mu_logvar(x)
        err = self._frame_mean(self._sq_err(mu, torch.exp(-logvar), y), y_mask)
        return (-err - logvar.sum(-1)).mean()

    def learning_loss(self, x: Tensor, y: Tensor, y_mask: Tensor | None = None) -> Tensor:
        return -self.log_likelihood(x, y, y_mask)

    def mi_est(self, x: Tensor, y: Tensor, y_mask: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        mu, logvar = self.get_mu_logvar(x)
        inv_var = torch.exp(-logvar)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        pos = self._frame_mean(self._sq_err(mu, inv_var, y), y_mask)
        neg_mask = None if y_mask is None else y_mask[perm]
        neg = self._frame_mean(self._sq_err(mu, inv_var, y[perm]), neg_mask)
        return 0.5 * (neg - pos).mean()

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        return self.mi_est(x, y, y_mask, generator)
