"""Each pre-training loss on hand-made inputs with known answers; k-means on planted clusters."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pretrain.kmeans import KMeans, KMeansConfig
from pretrain.losses import LOSSES, BarlowTwins, CosineDistillation, InfoNCE, MaskedPrediction, PseudoCon
from pretrain.losses.masked_prediction import MulticlusterMaskedPrediction


def test_registry_names():
    assert {"masked_prediction", "multicluster_masked_prediction", "pseudo_con", "info_nce", "barlow_twins",
            "cosine_distillation", "cluster_ce"} <= set(LOSSES)


def test_pseudo_con_one_cluster_identical_frames_is_log_n_minus_1():
    n = 16
    z = torch.ones(n, 8)
    loss = PseudoCon(tau=0.1)(z, torch.zeros(n, dtype=torch.long))
    assert loss.item() == pytest.approx(math.log(n - 1), abs=1e-5)


def test_pseudo_con_one_cluster_random_frames_matches_formula():
    torch.manual_seed(0)
    n, tau = 12, 0.5
    z = torch.randn(n, 4)
    loss = PseudoCon(tau=tau)(z, torch.zeros(n, dtype=torch.long))
    zn = F.normalize(z, dim=-1)
    s = zn @ zn.t() / tau
    want = 0.0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        lse = torch.logsumexp(s[i, others], 0)
        want += float(lse - s[i, others].mean())
    assert loss.item() == pytest.approx(want / n, rel=1e-5)
    assert loss.item() >= math.log(n - 1) - 1e-6          # Jensen: equality only for identical frames


def test_pseudo_con_separated_clusters_beats_mixed():
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(8)
    centers = torch.eye(4, 16) * 5
    good = centers[labels] + 0.01 * torch.randn(32, 16)
    bad = torch.randn(32, 16)
    pc = PseudoCon(tau=0.1)
    assert pc(good, labels).item() < pc(bad, labels).item() - 1.0
    # perfectly clustered: each frame's 7 positives share all the mass -> log(7)
    assert pc(good, labels).item() == pytest.approx(math.log(7), abs=0.05)


def test_info_nce_perfect_vs_random():
    torch.manual_seed(0)
    B = 16
    a = torch.eye(B, 32)
    nce = InfoNCE(tau=0.05)
    assert nce(a, a.clone()).item() < 1e-6
    # unrelated views at tau=1: cosines ~ N(0, 1/D), so the loss is log(B) up to a small correction
    r = InfoNCE(tau=1.0)(torch.randn(B, 256), torch.randn(B, 256)).item()
    assert r == pytest.approx(math.log(B), abs=0.1)
    assert nce(torch.randn(B, 32), torch.randn(B, 32)).item() > 1.0
    with pytest.raises(ValueError):
        nce(torch.randn(4, 8), torch.randn(5, 8))


def test_barlow_twins_identical_decorrelated_views_near_zero():
    torch.manual_seed(0)
    z = torch.randn(4096, 16)
    bt = BarlowTwins()
    assert bt(z, z.clone()).item() < 0.01
    # unrelated views: the diagonal is ~0, so the on-diagonal term ~ D
    assert bt(z, torch.randn(4096, 16)).item() == pytest.approx(16, rel=0.1)
    c = bt.cross_correlation(z, z)
    assert torch.allclose(torch.diagonal(c), torch.ones(16), atol=1e-3)


def test_barlow_twins_penalises_redundant_dimensions():
    torch.manual_seed(0)
    x = torch.randn(2048, 1)
    redundant = x.repeat(1, 8) + 0.01 * torch.randn(2048, 8)   # all dims the same signal
    bt = BarlowTwins(lambd=1.0)
    assert bt(redundant, redundant).item() > 50                 # off-diagonal ~1 each: 56 entries


def test_cosine_distillation_known_values():
    d = CosineDistillation()
    t = torch.randn(5, 7)
    assert d(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    assert d(-t, t).item() == pytest.approx(2.0, abs=1e-6)
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert d(a, b).item() == pytest.approx(1.0, abs=1e-6)


def test_masked_prediction_only_masked_frames_count_and_learns():
    torch.manual_seed(0)
    B, T, D, K = 2, 20, 8, 5
    labels = torch.randint(0, K, (B, T))
    h = F.one_hot(labels, D).float() * 3               # frames that identify their label
    mp = MaskedPrediction(D, K, proj_dim=16, tau=0.1)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, :5] = True
    # unmasked frames must not influence the loss
    h2 = h.clone()
    h2[:, 5:] = torch.randn(B, T - 5, D) * 100
    assert mp(h, labels, mask).item() == pytest.approx(mp(h2, labels, mask).item(), rel=1e-6)
    opt = torch.optim.Adam(mp.parameters(), lr=0.05)
    first = mp(h, labels, torch.ones(B, T, dtype=torch.bool)).item()
    for _ in range(200):
        opt.zero_grad()
        loss = mp(h, labels, torch.ones(B, T, dtype=torch.bool))
        loss.backward()
        opt.step()
    assert first > 1.0 and loss.item() < 0.05
    assert mp.accuracy(h, labels).item() == 1.0
    # -100 labels are ignored; all-ignored gives a zero loss with a graph
    empty = mp(h, torch.full((B, T), -100), mask)
    assert empty.item() == 0.0 and empty.requires_grad


def test_multicluster_sums_its_heads():
    torch.manual_seed(0)
    layers = [torch.randn(2, 10, 8) for _ in range(3)]
    labels = {"a": torch.randint(0, 4, (2, 10)), "b": torch.randint(0, 6, (2, 10))}
    mm = MulticlusterMaskedPrediction(8, [(1, "a", 4), (2, "b", 6)], proj_dim=8)
    total, parts = mm(layers, labels, None)
    assert set(parts) == {"mpl_L1_a", "mpl_L2_b"}
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    assert parts["mpl_L1_a"].item() == pytest.approx(mm.heads[0](layers[1], labels["a"]).item(), rel=1e-6)


def test_kmeans_recovers_planted_clusters_and_persists():
    torch.manual_seed(0)
    centers = torch.randn(6, 3) * 10
    truth = torch.arange(6).repeat(200)
    x = centers[truth] + 0.1 * torch.randn(1200, 3)
    km = KMeans(KMeansConfig(k=6, seed=0, n_init=3)).fit(x)
    pred = km.predict(x)
    # a perfect partition up to relabelling: every true cluster maps to exactly one predicted id
    pairs = {(int(t), int(p)) for t, p in zip(truth, pred)}
    assert len(pairs) == 6 and len({p for _, p in pairs}) == 6
    assert km.inertia(x) == pytest.approx(float(((x - centers[truth]) ** 2).sum()), rel=0.05)
    tensors, meta = km.state()
    assert tensors["centers"].shape == (6, 3) and meta["config"]["k"] == 6
    with pytest.raises(ValueError):
        KMeans(KMeansConfig(k=10)).fit(torch.randn(5, 2))
    with pytest.raises(RuntimeError):
        KMeans(KMeansConfig(k=2)).predict(x)
