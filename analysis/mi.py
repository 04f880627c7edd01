"""Held-out mutual information between two streams: a CLUB upper bound beside an InfoNCE lower bound.

Both estimators are trained fresh on training pairs (x_i, y_i) and evaluated on held-out pairs, in
nats.

* CLUB (Cheng et al. 2020): q(y|x) = N(mu(x), diag sigma^2(x)) with mu = Linear-ReLU-Linear and
  log sigma^2 the same + Tanh, fitted by maximum likelihood. Estimate
  I_CLUB = E_p(x,y)[log q(y|x)] - E_p(x)E_p(y)[log q(y|x)]; for a diagonal Gaussian the second
  expectation over all held-out y is exact in closed form (mean and variance of y), so no
  sampling: 0.5 * mean_i sum_d [((ybar_d - mu_id)^2 + var_d - (y_id - mu_id)^2) / sigma_id^2].
  An upper bound when q approximates p(y|x) well.
* InfoNCE (van den Oord et al. 2018): separable critic f(x, y) = g(x)^T h(y) / tau (two MLPs);
  I >= log K - L_NCE over batches of K held-out pairs; never above log K.

Example::

    est = mi_bounds(x, y, groups=utt_ids)
    est.club, est.infonce, est.infonce_cap
    est.converged     # False: InfoNCE < 0 or CLUB < InfoNCE -- report no MI (est.rows() writes NaN)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.cca import split_indices
from analysis.samples import mi_converged


@dataclass
class MIEstimate:
    club: float          # nats, CLUB upper bound (held out)
    infonce: float       # nats, InfoNCE lower bound (held out)
    infonce_cap: float   # log K: InfoNCE cannot exceed it
    n_train: int
    n_test: int
    n_test_groups: int = 0   # held-out groups (utterances); = n_test without groups

    @property
    def converged(self) -> bool:
        """False when the bounds contradict themselves (InfoNCE < 0, or CLUB < InfoNCE): then neither
        number is an MI estimate (see analysis.samples.mi_converged)."""
        return mi_converged(self.club, self.infonce)

    def rows(self) -> list[dict]:
        """Two results rows (metric mi_club / mi_infonce). ``value`` is NaN when not converged; the raw
        estimate stays in ``bound``; sizes and ``converged`` ride along for the warnings."""
        ok = self.converged
        return [{"metric": m, "value": v if ok else float("nan"), "bound": v, "converged": ok, "chance": 0.0,
                 "n_train": self.n_train, "n_test": self.n_test, "n_test_groups": self.n_test_groups,
                 "infonce_cap": self.infonce_cap}
                for m, v in (("mi_club", self.club), ("mi_infonce", self.infonce))]


class CLUB(nn.Module):
    def __init__(self, dx: int, dy: int, hidden: int = 256):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(dx, hidden), nn.ReLU(), nn.Linear(hidden, dy))
        self.logvar = nn.Sequential(nn.Linear(dx, hidden), nn.ReLU(), nn.Linear(hidden, dy), nn.Tanh())

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, lv = self.mu(x), self.logvar(x)
        return 0.5 * (((y - mu) ** 2) / lv.exp() + lv).sum(1).mean()

    @torch.no_grad()
    def estimate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        mu, var = self.mu(x), self.logvar(x).exp()
        ybar, yvar = y.mean(0), y.var(0, unbiased=False)
        pos = (y - mu) ** 2
        neg = (ybar - mu) ** 2 + yvar
        return float(0.5 * ((neg - pos) / var).sum(1).mean())


class SeparableCritic(nn.Module):
    def __init__(self, dx: int, dy: int, hidden: int = 256, out: int = 64):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(dx, hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.h = nn.Sequential(nn.Linear(dy, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.h(y).T            # (K, K): pairs on the diagonal

    def nce(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = self.scores(x, y)
        return nn.functional.cross_entropy(s, torch.arange(len(x), device=x.device))


def _train(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int,
           lr: float, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, n, (min(batch, n),), generator=gen).to(x.device)
            opt.zero_grad()
            loss_fn(x[idx], y[idx]).backward()
            opt.step()


def mi_bounds(x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0, test_frac: float = 0.2,
              steps: int = 1500, batch: int = 256, lr: float = 1e-3, hidden: int = 256,
              device: str | None = None) -> MIEstimate:
    """Held-out CLUB and InfoNCE estimates of I(x; y) (nats) from paired samples x (N, Dx), y (N, Dy).

    Both views are standardised with training statistics. ``groups`` keeps a group on one side.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    tr, dv, te = split_indices(len(x), groups, rng, (1 - test_frac, 0.0, test_frac))
    tr = np.concatenate([tr, dv])
    if len(te) < 8:
        raise ValueError(f"too few held-out pairs ({len(te)}) for an MI estimate")
    mx, sx = x[tr].mean(0), x[tr].std(0) + 1e-8
    my, sy = y[tr].mean(0), y[tr].std(0) + 1e-8

    def t(a, m, s):
        return torch.as_tensor((a - m) / s, dtype=torch.float32, device=dev)

    xtr, ytr, xte, yte = t(x[tr], mx, sx), t(y[tr], my, sy), t(x[te], mx, sx), t(y[te], my, sy)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    club = CLUB(x.shape[1], y.shape[1], hidden).to(dev)
    _train(club, club.nll, xtr, ytr, steps, batch, lr, gen)
    critic = SeparableCritic(x.shape[1], y.shape[1], hidden).to(dev)
    _train(critic, critic.nce, xtr, ytr, steps, batch, lr, gen)
    club.eval()
    critic.eval()
    k = min(batch, len(te))
    with torch.no_grad():
        perm = torch.as_tensor(rng.permutation(len(te)), device=dev)
        vals = [float(np.log(k) - critic.nce(xte[perm[s:s + k]], yte[perm[s:s + k]]))
                for s in range(0, len(te) - k + 1, k)]
    n_groups = len(np.unique(np.asarray(groups)[te])) if groups is not None else len(te)
    return MIEstimate(club.estimate(xte, yte), float(np.mean(vals)), float(np.log(k)), len(tr), len(te), n_groups)
