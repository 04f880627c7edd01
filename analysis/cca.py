"""Projection-weighted CCA (PWCCA; Morcos et al. 2018) as used for layer-wise analysis of speech
models (Pasad, Chou & Livescu 2021/2023). float64 throughout, pure numpy.

* :func:`fit_cca` — centre both views, drop small-variance dimensions (variance below
  ``var_tol`` x the view's largest), add ``eps`` x (mean variance) x I to each covariance, and take
  the SVD of Sxx^-1/2 Sxy Syy^-1/2: canonical correlations and directions.
* :func:`pwcca` — canonical correlations of held-out data along the fitted directions, weighted by
  how much of the representation X each direction accounts for: alpha_i = sum_j |<p_i, x_j>| with
  p_i the orthonormalised canonical variates and x_j the centred dimensions of X (Morcos et al.).
* :func:`pwcca_cv` — 80/10/10 train/dev/test splits (optionally by group, e.g. utterance): fit on
  train for every eps of a grid, pick eps by dev PWCCA, report test PWCCA; mean over trials.

Example::

    res = pwcca_cv(layer_feats, one_hot_labels, groups=utt_ids, trials=3)
    res.mean, res.std, res.eps
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.checks import check_finite

EPS_GRID = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class CCAFit:
    mean_x: np.ndarray
    mean_y: np.ndarray
    keep_x: np.ndarray        # indices of the dimensions kept (variance above tolerance)
    keep_y: np.ndarray
    a: np.ndarray             # (Dx', k) canonical directions of X
    b: np.ndarray             # (Dy', k)
    rho: np.ndarray           # (k,) canonical correlations on the fitting data
    eps: float


def _cov_parts(x: np.ndarray, var_tol: float):
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0)
    xc = x - mean
    var = (xc ** 2).mean(0)
    keep = np.flatnonzero(var > var_tol * max(var.max(), 1e-300))
    return mean, keep, xc[:, keep]


def _inv_sqrt(evals: np.ndarray, evecs: np.ndarray, shift: float) -> np.ndarray:
    return (evecs / np.sqrt(np.maximum(evals, 0) + shift)) @ evecs.T


class _Prepared:
    """Covariances and their eigendecompositions of a training split, reused over an eps grid."""

    def __init__(self, x: np.ndarray, y: np.ndarray, var_tol: float):
        if len(x) != len(y):
            raise ValueError(f"views have {len(x)} and {len(y)} samples")
        if len(x) < 3:
            raise ValueError(f"CCA needs at least 3 samples, got {len(x)}")
        check_finite(x, "CCA view x")
        check_finite(y, "CCA view y")
        self.mx, self.kx, xc = _cov_parts(x, var_tol)
        self.my, self.ky, yc = _cov_parts(y, var_tol)
        if len(self.kx) == 0 or len(self.ky) == 0:
            raise ValueError("a view has no dimension with non-zero variance")
        n = len(xc)
        sxx, syy, self.sxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
        self.ex = np.linalg.eigh(sxx)
        self.ey = np.linalg.eigh(syy)
        self.sx = np.trace(sxx) / len(sxx)
        self.sy = np.trace(syy) / len(syy)

    def fit(self, eps: float) -> CCAFit:
        ix = _inv_sqrt(*self.ex, eps * self.sx)
        iy = _inv_sqrt(*self.ey, eps * self.sy)
        u, s, vt = np.linalg.svd(ix @ self.sxy @ iy, full_matrices=False)
        return CCAFit(self.mx, self.my, self.kx, self.ky, ix @ u, iy @ vt.T, np.clip(s, 0, 1), eps)


def fit_cca(x: np.ndarray, y: np.ndarray, eps: float = 0.0, var_tol: float = 1e-8) -> CCAFit:
    """Regularised CCA of views x (N, Dx) and y (N, Dy); eps is relative to each view's mean variance."""
    return _Prepared(x, y, var_tol).fit(eps)


def variates(fit: CCAFit, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical variates (N, k) of new data along the fitted directions."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (x[:, fit.keep_x] - fit.mean_x[fit.keep_x]) @ fit.a, (y[:, fit.keep_y] - fit.mean_y[fit.keep_y]) @ fit.b


def correlations(fit: CCAFit, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-direction correlation of the canonical variates of (x, y) (held-out canonical correlations)."""
    hx, hy = variates(fit, x, y)
    hx = hx - hx.mean(0)
    hy = hy - hy.mean(0)
    den = np.sqrt((hx ** 2).sum(0) * (hy ** 2).sum(0))
    return np.where(den > 0, (hx * hy).sum(0) / np.where(den > 0, den, 1), 0.0)


def pwcca(fit: CCAFit, x: np.ndarray, y: np.ndarray) -> float:
    """Projection-weighted mean of the canonical correlations of (x, y), weights from x's side."""
    rho = correlations(fit, x, y)
    hx, _ = variates(fit, x, y)
    hx = hx - hx.mean(0)
    xc = np.asarray(x, dtype=np.float64)[:, fit.keep_x]
    xc = xc - xc.mean(0)
    q, _ = np.linalg.qr(hx)
    w = np.abs(q.T @ xc).sum(1)
    rho = rho[:len(w)]            # fewer held-out samples than directions: the rest are degenerate
    if w.sum() <= 0:
        return 0.0
    return float((w * rho).sum() / w.sum())


@dataclass
class CVResult:
    mean: float
    std: float
    scores: list[float]
    eps: list[float]                        # eps chosen on dev, per trial
    n_samples: int
    dev_scores: list[dict] = field(default_factory=list)
    n_test: float = 0.0                     # held-out samples per trial (mean over trials)
    n_test_groups: float | None = None      # held-out groups (utterances) per trial; None: ungrouped

    def sizes(self) -> dict:
        """Sample sizes for a results row (see analysis.samples.row_warnings)."""
        return {"n_samples": self.n_samples, "n_test": self.n_test,
                "n_test_groups": self.n_test_groups if self.n_test_groups is not None else float("nan")}


def split_indices(n: int, groups: np.ndarray | None, rng: np.random.Generator,
                  frac: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/dev/test split of n samples; with ``groups`` all samples of a group go together."""
    if groups is None:
        units = np.arange(n)
        inv = units
    else:
        units, inv = np.unique(np.asarray(groups), return_inverse=True)
        units = np.arange(len(units))
    perm = rng.permutation(len(units))
    n_tr = int(round(frac[0] * len(units)))
    n_dev = max(1, int(round(frac[1] * len(units))))
    part = np.empty(len(units), dtype=np.int64)
    part[perm[:n_tr]] = 0
    part[perm[n_tr:n_tr + n_dev]] = 1
    part[perm[n_tr + n_dev:]] = 2
    lab = part[inv]
    return np.flatnonzero(lab == 0), np.flatnonzero(lab == 1), np.flatnonzero(lab == 2)


def pwcca_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, trials: int = 3,
             eps_grid: tuple[float, ...] = EPS_GRID, seed: int = 0, var_tol: float = 1e-8) -> CVResult:
    """PWCCA of held-out data: eps chosen on dev per trial, test score averaged over trials."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    check_finite(x, "CCA view x")
    check_finite(y, "CCA view y")
    rng = np.random.default_rng(seed)
    scores, chosen, devs, n_te, g_te = [], [], [], [], []
    for _ in range(trials):
        tr, dv, te = split_indices(len(x), groups, rng)
        n_te.append(len(te))
        if groups is not None:
            g_te.append(len(np.unique(np.asarray(groups)[te])))
        if min(len(tr), len(dv), len(te)) < 2:
            raise ValueError(f"too few samples ({len(x)}) for 80/10/10 splits")
        prep = _Prepared(x[tr], y[tr], var_tol)
        fits = {e: prep.fit(e) for e in eps_grid}
        dev = {e: pwcca(f, x[dv], y[dv]) for e, f in fits.items()}
        best = max(dev, key=dev.get)
        scores.append(pwcca(fits[best], x[te], y[te]))
        chosen.append(best)
        devs.append(dev)
    return CVResult(float(np.mean(scores)), float(np.std(scores)), scores, chosen, len(x), devs,
                    float(np.mean(n_te)), float(np.mean(g_te)) if g_te else None)


def one_hot(labels, classes=None) -> np.ndarray:
    """(N, C) float64 one-hot of labels (classes default: sorted unique labels)."""
    labels = np.asarray(labels)
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    idx = {c: i for i, c in enumerate(classes.tolist())}
    out = np.zeros((len(labels), len(classes)))
    out[np.arange(len(labels)), [idx[v] for v in labels.tolist()]] = 1
    return out


def suggest_layers(scores: dict[int, float], frac: float = 0.9) -> tuple[int, int]:
    """The contiguous layer range around the best layer whose scores are >= frac x the best
    (what JOOCI chose by hand: the high-CCA block of a stream). Returns (first, last) inclusive."""
    if not scores:
        raise ValueError("no layer scores")
    layers = sorted(scores)
    best = max(layers, key=lambda k: scores[k])
    thr = frac * scores[best]
    i = j = layers.index(best)
    while i > 0 and scores[layers[i - 1]] >= thr:
        i -= 1
    while j < len(layers) - 1 and scores[layers[j + 1]] >= thr:
        j += 1
    return layers[i], layers[j]
