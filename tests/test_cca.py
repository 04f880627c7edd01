"""CCA: planted canonical correlations, a direct float64 reference, PWCCA limits, layer choice."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from analysis.cca import fit_cca, one_hot, pwcca, pwcca_cv, suggest_layers


def planted(n, rhos, dx=8, dy=6, seed=0):
    """Views whose canonical correlations are exactly rhos (population), mixed by random maps."""
    rng = np.random.default_rng(seed)
    k = len(rhos)
    zx = rng.standard_normal((n, k))
    zy = np.asarray(rhos) * zx + np.sqrt(1 - np.asarray(rhos) ** 2) * rng.standard_normal((n, k))
    x = np.hstack([zx, rng.standard_normal((n, dx - k))]) @ rng.standard_normal((dx, dx))
    y = np.hstack([zy, rng.standard_normal((n, dy - k))]) @ rng.standard_normal((dy, dy))
    return x, y


def reference_cca(x, y):
    """Textbook: eigenvalues of Sxx^-1 Sxy Syy^-1 Syx are the squared canonical correlations."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    ev = np.sort(np.real(scipy.linalg.eigvals(m)))[::-1][:min(x.shape[1], y.shape[1])]
    return np.sqrt(np.clip(ev, 0, 1))


def test_planted_correlations_recovered():
    rhos = [0.95, 0.7, 0.4]
    x, y = planted(200_000, rhos)
    fit = fit_cca(x, y, eps=0.0)
    np.testing.assert_allclose(fit.rho[:3], rhos, atol=0.01)
    assert fit.rho[3:].max() < 0.02


def test_matches_direct_float64_reference():
    x, y = planted(500, [0.9, 0.5], seed=3)
    fit = fit_cca(x, y, eps=0.0)
    np.testing.assert_allclose(fit.rho, reference_cca(x, y), atol=1e-9)
    # the directions really give those correlations on the fitting data
    from analysis.cca import correlations

    np.testing.assert_allclose(correlations(fit, x, y), fit.rho, atol=1e-9)


def test_pwcca_limits_and_cv():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 5))
    assert pwcca(fit_cca(x, x), x, x) == pytest.approx(1.0, abs=1e-9)
    y = x @ rng.standard_normal((5, 4))
    assert pwcca(fit_cca(x, y), x, y) == pytest.approx(1.0, abs=1e-9)       # y is a linear map of x
    noise = rng.standard_normal((3000, 4))
    r = pwcca_cv(x, noise, trials=2)
    assert abs(r.mean) < 0.1 and len(r.eps) == 2
    labels = rng.integers(0, 6, 3000)
    feats = one_hot(labels) @ rng.standard_normal((6, 12)) + 0.3 * rng.standard_normal((3000, 12))
    r = pwcca_cv(feats, one_hot(labels), groups=np.arange(3000) // 10, trials=2)
    assert r.mean > 0.8


def test_suggest_layers():
    assert suggest_layers({0: 0.1, 1: 0.5, 2: 0.8, 3: 0.9, 4: 0.85, 5: 0.3}, frac=0.9) == (3, 4)
    assert suggest_layers({0: 0.1, 1: 0.5, 2: 0.82, 3: 0.9, 4: 0.85, 5: 0.3}, frac=0.9) == (2, 4)
