"""K-means in torch (CPU or GPU): greedy k-means++ seeding + full-batch Lloyd iterations.

Distances are computed in chunks as ||x||² − 2·x·cᵀ + ||c||² (one matmul per chunk), so memory
stays O(chunk · K) whatever N is. Used for HuBERT-style pseudo-labels (MFCC for iteration 1, an
intermediate layer for iteration 2) and for Learn2Diss's utterance clusters.

Example::

    km = KMeans(KMeansConfig(k=100, seed=0)).fit(feats)    # feats (N, D) float tensor
    labels = km.predict(feats)                              # (N,) long
    km.inertia(feats)                                       # sum of squared distances

``bench/bench_kmeans.py`` compares this with sklearn's MiniBatchKMeans (the HuBERT recipe's).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from upstream.facts import progress_bar


@dataclass
class KMeansConfig:
    k: int = 100
    max_iter: int = 100
    tol: float = 1e-4            # stop when relative inertia improvement < tol
    init_sample: int = 100_000   # points used for k-means++ seeding (a random subset)
    n_local_trials: int = 0      # greedy k-means++ candidates per centre; 0 -> 2 + ln(k) (sklearn)
    n_init: int = 1              # independent seedings + Lloyd runs; the lowest inertia wins
    chunk: int = 65_536          # rows per distance chunk
    seed: int = 0
    device: str = "auto"         # "auto" -> cuda if available else cpu


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sq_dist_argmin(x: Tensor, c: Tensor, c_sq: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """For each row of x: (index of nearest centre, squared distance to it)."""
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], chunk):
        xb = x[s:s + chunk]
        d = torch.addmm(c_sq[None, :], xb, c.t(), beta=1.0, alpha=-2.0)   # (n, K) = ||c||² − 2x·c
        m, idx = d.min(dim=1)
        labels[s:s + chunk] = idx
        dists[s:s + chunk] = (m + (xb * xb).sum(1)).clamp_min_(0)
    return labels, dists


class KMeans:
    """Fitted state: ``centers`` (K, D) float32 on the fit device."""

    def __init__(self, cfg: KMeansConfig):
        self.cfg = cfg
        self.centers: Tensor | None = None
        self.n_iter = 0
        self.inertia_: float = math.inf

    # ---- seeding ---------------------------------------------------------------------------
    def _kmeanspp(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """Greedy k-means++ (Arthur & Vassilvitskii 2007, sklearn's variant with local trials)."""
        n, k = x.shape[0], self.cfg.k
        trials = self.cfg.n_local_trials or (2 + int(math.log(k)))
        centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
        first = int(torch.randint(n, (1,), generator=gen))
        centers[0] = x[first]
        closest = ((x - centers[0]) ** 2).sum(1)
        pot = closest.sum()
        x_sq = (x * x).sum(1)
        for i in range(1, k):
            probs = (closest / pot.clamp_min(1e-12)).cpu().double()
            cand = torch.multinomial(probs, trials, replacement=True, generator=gen).to(x.device)
            cx = x[cand]                                                   # (trials, D)
            d = (x_sq[:, None] - 2 * x @ cx.t() + (cx * cx).sum(1)[None, :]).clamp_min_(0)
            new_closest = torch.minimum(closest[:, None], d)               # (n, trials)
            pots = new_closest.sum(0)
            best = int(pots.argmin())
            centers[i] = cx[best]
            closest = new_closest[:, best].contiguous()
            pot = pots[best]
        return centers

    # ---- fit / predict ---------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, feats: Tensor, progress: bool = False) -> "KMeans":
        cfg = self.cfg
        dev = _device(cfg.device)
        x = torch.as_tensor(feats, dtype=torch.float32).to(dev)
        if x.ndim != 2 or x.shape[0] < cfg.k:
            raise ValueError(f"k-means needs an (N >= k={cfg.k}, D) matrix, got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("k-means features contain NaN/Inf; check the feature extraction")
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        best = None
        for _ in range(max(1, cfg.n_init)):
            c, n_iter, inertia = self._lloyd(x, gen, progress)
            if best is None or inertia < best[2]:
                best = (c, n_iter, inertia)
        self.centers, self.n_iter, self.inertia_ = best
        return self

    def _lloyd(self, x: Tensor, gen: torch.Generator, progress: bool) -> tuple[Tensor, int, float]:
        cfg = self.cfg
        if x.shape[0] > cfg.init_sample:
            sub = torch.randperm(x.shape[0], generator=gen)[: cfg.init_sample].to(x.device)
            c = self._kmeanspp(x[sub], gen)
        else:
            c = self._kmeanspp(x, gen)
        prev = math.inf
        it_range = range(cfg.max_iter)
        if progress:
            it_range = progress_bar(it_range, desc=f"k-means K={cfg.k}", leave=False)
        n_iter = 0
        for it in it_range:
            c_sq = (c * c).sum(1)
            labels, d = _sq_dist_argmin(x, c, c_sq, cfg.chunk)
            inertia = float(d.double().sum())
            sums = torch.zeros_like(c).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=cfg.k).to(x.dtype)
            empty = counts == 0
            c = sums / counts.clamp_min(1)[:, None]
            if bool(empty.any()):   # re-seed empty clusters at the points farthest from their centre
                far = torch.topk(d, int(empty.sum())).indices
                c[empty] = x[far]
            n_iter = it + 1
            if prev - inertia <= cfg.tol * max(inertia, 1e-12) and not bool(empty.any()):
                break
            prev = inertia
        c_sq = (c * c).sum(1)
        return c, n_iter, float(_sq_dist_argmin(x, c, c_sq, cfg.chunk)[1].double().sum())

    @torch.no_grad()
    def predict(self, feats: Tensor) -> Tensor:
        c = self._require()
        x = torch.as_tensor(feats, dtype=torch.float32).to(c.device)
        return _sq_dist_argmin(x, c, (c * c).sum(1), self.cfg.chunk)[0].cpu()

    @torch.no_grad()
    def inertia(self, feats: Tensor) -> float:
        c = self._require()
        x = torch.as_tensor(feats, dtype=torch.float32).to(c.device)
        return float(_sq_dist_argmin(x, c, (c * c).sum(1), self.cfg.chunk)[1].double().sum())

    def _require(self) -> Tensor:
        if self.centers is None:
            raise RuntimeError("KMeans is not fitted: call fit(features) first")
        return self.centers

    # ---- persistence (safetensors + JSON; no pickle) ----------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict]:
        return {"centers": self._require().cpu().contiguous()}, {"config": asdict(self.cfg), "n_iter": self.n_iter,
                                                                 "inertia": self.inertia_}
