"""Linear probes and MI bounds on data with known answers."""
from __future__ import annotations

import numpy as np

from analysis.mi import mi_bounds
from analysis.probes import probe_accuracy


def test_probe_separable_and_random():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 600)
    centres = rng.standard_normal((5, 10)) * 3
    x = centres[labels] + rng.standard_normal((600, 10))
    r = probe_accuracy(x, labels, stratify=True)
    assert r.accuracy > 0.95 and r.n_classes == 5 and r.n_test > 100
    r = probe_accuracy(rng.standard_normal((600, 10)), labels, groups=np.arange(600) // 6)
    assert r.accuracy < 0.4                     # chance is ~0.2


def gaussian_pairs(n, d, rho, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + np.sqrt(1 - rho ** 2) * rng.standard_normal((n, d))
    return x, y, -0.5 * d * np.log(1 - rho ** 2)


def test_mi_bounds_on_gaussians():
    x, y, true = gaussian_pairs(3000, 3, 0.8, 0)          # I = 1.53 nats
    est = mi_bounds(x, y, steps=250, hidden=32, device="cpu")
    assert true - 0.6 < est.infonce <= true + 0.15       # a lower bound, reasonably tight here
    # CLUB is an upper bound; with q(y|x) the true Gaussian conditional its value is d*rho^2/(1-rho^2)
    assert est.club >= true and abs(est.club - 3 * 0.64 / 0.36) < 0.7
    x, y, _ = gaussian_pairs(3000, 3, 0.0, 1)             # independent: I = 0
    est = mi_bounds(x, y, steps=250, hidden=32, device="cpu")
    assert abs(est.club) < 0.1 and abs(est.infonce) < 0.1
