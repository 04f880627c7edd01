"""Linear probes: held-out accuracy of a softmax-regression classifier on frozen features.

Features are standardised with the training split's statistics; the probe is trained full-batch
with L-BFGS and a small L2 penalty (a convex problem: no learning-rate tuning). Used for the
speaker-ID probe (utterance means -> speaker) and the phone probe (frames -> phone at that time),
on each layer of each stream; the cross-probes (speaker ID on the content stream, phones on the
other stream) are the disentanglement measures.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.cca import split_indices
from analysis.checks import check_finite


@dataclass
class ProbeResult:
    accuracy: float          # held-out accuracy (fraction)
    chance: float            # majority-class accuracy on the held-out split
    n_train: int
    n_test: int
    n_classes: int
    n_test_groups: int = 0   # held-out groups (utterances); = n_test when each sample is one utterance

    def sizes(self) -> dict:
        """Sample sizes for a results row (see analysis.samples.row_warnings)."""
        return {"n_train": self.n_train, "n_test": self.n_test, "n_classes": self.n_classes,
                "n_test_groups": self.n_test_groups}


def train_linear_probe(x_tr: np.ndarray, y_tr: np.ndarray, n_classes: int, l2: float = 1e-4,
                       max_iter: int = 200, device: str | None = None) -> tuple[torch.nn.Linear, np.ndarray, np.ndarray]:
    """Fit softmax regression; returns (linear layer, mean, std) of the standardisation."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    mean = x_tr.mean(0)
    std = x_tr.std(0) + 1e-8
    x = torch.as_tensor((x_tr - mean) / std, dtype=torch.float32, device=dev)
    y = torch.as_tensor(y_tr, dtype=torch.long, device=dev)
    lin = torch.nn.Linear(x.shape[1], n_classes).to(dev)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), y) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lin, mean, std


def probe_accuracy(x: np.ndarray, labels, groups=None, seed: int = 0, test_frac: float = 0.2,
                   l2: float = 1e-4, device: str | None = None, stratify: bool = False) -> ProbeResult:
    """Held-out accuracy of a linear probe predicting ``labels`` from ``x`` (N, D).

    ``groups``: samples of a group (e.g. an utterance) stay on one side of the split.
    ``stratify``: split each class separately (every class in train and test; speaker ID).
    ``n_test_groups`` of the result counts held-out groups (held-out samples without ``groups``).
    """
    x = np.asarray(x, dtype=np.float64)
    check_finite(x, "probe input features")
    if len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} feature rows; pass one label per row")
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    rng = np.random.default_rng(seed)
    if stratify:
        te = []
        for c in range(len(classes)):
            idx = np.flatnonzero(y == c)
            k = max(1, int(round(test_frac * len(idx)))) if len(idx) > 1 else 0
            te += list(rng.choice(idx, k, replace=False))
        te = np.sort(np.array(te, dtype=np.int64))
        tr = np.setdiff1d(np.arange(len(y)), te)
    else:
        tr, dv, te = split_indices(len(x), groups, rng, (1 - test_frac, 0.0, test_frac))
        tr = np.concatenate([tr, dv])
    if len(tr) == 0 or len(te) == 0:
        raise ValueError(f"too few samples ({len(x)}) for a train/test split")
    lin, mean, std = train_linear_probe(x[tr], y[tr], len(classes), l2=l2, device=device)
    with torch.no_grad():
        xt = torch.as_tensor((x[te] - mean) / std, dtype=torch.float32, device=lin.weight.device)
        pred = lin(xt).argmax(1).cpu().numpy()
    acc = float((pred == y[te]).mean())
    chance = float(np.bincount(y[te]).max() / len(te))
    n_groups = len(np.unique(np.asarray(groups)[te])) if groups is not None else len(te)
    return ProbeResult(acc, chance, len(tr), len(te), len(classes), n_groups)
