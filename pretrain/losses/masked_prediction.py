"""HuBERT-style masked prediction with cosine-similarity logits, and MS-HuBERT's multicluster form.

logits_c(h) = cos(A·h, e_c) / tau    (A: projection, e_c: learned codeword embeddings)
L = mean over masked frames of CE(logits(h_t), y_t)

``MulticlusterMaskedPrediction`` sums one such term per (layer, label set) pair
(MS-HuBERT / JOOCI's "MMPL"), each with its own projection and codebook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CosineClassifier(nn.Module):
    """Projection + codeword embeddings; returns cosine logits / tau. x (..., D) -> (..., C)."""

    def __init__(self, dim: int, num_classes: int, proj_dim: int = 256, tau: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(dim, proj_dim)
        self.codewords = nn.Parameter(torch.randn(num_classes, proj_dim) * proj_dim ** -0.5)
        self.tau = tau

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.proj(x).float(), dim=-1)
        e = F.normalize(self.codewords.float(), dim=-1)
        return z @ e.t() / self.tau


class MaskedPrediction(nn.Module):
    """Cross-entropy with cosine logits on the selected frames.

    forward(h (B, T, D), labels (B, T) long with -100 = ignore, mask (B, T) bool) -> scalar.
    Frames with mask False or label -100 do not count. Returns 0 (with grad) if none count.
    """

    def __init__(self, dim: int, num_classes: int, proj_dim: int = 256, tau: float = 0.1):
        super().__init__()
        self.classifier = CosineClassifier(dim, num_classes, proj_dim, tau)
        self.num_classes = num_classes

    def forward(self, h: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        T = min(h.shape[1], labels.shape[1])
        h, labels = h[:, :T], labels[:, :T]
        sel = labels >= 0
        if mask is not None:
            sel = sel & mask[:, :T]
        if not bool(sel.any()):
            return h.sum() * 0.0 + self.classifier.codewords.sum() * 0.0
        logits = self.classifier(h[sel])
        return F.cross_entropy(logits, labels[sel])

    @torch.no_grad()
    def accuracy(self, h: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        T = min(h.shape[1], labels.shape[1])
        sel = labels[:, :T] >= 0
        if mask is not None:
            sel = sel & mask[:, :T]
        if not bool(sel.any()):
            return torch.zeros(())
        return (self.classifier(h[:, :T][sel]).argmax(-1) == labels[:, :T][sel]).float().mean()


class MulticlusterMaskedPrediction(nn.Module):
    """Sum of masked-prediction terms, one per (layer index, label-set name, num_classes).

    forward(layers: list of (B, T, D), labels: {set name: (B, T)}, mask (B, T)) -> (total, parts)
    """

    def __init__(self, dim: int, pairs: list[tuple[int, str, int]], proj_dim: int = 256, tau: float = 0.1):
        super().__init__()
        if not pairs:
            raise ValueError("MulticlusterMaskedPrediction needs at least one (layer, label set, K) pair")
        self.pairs = [(int(layer), str(name), int(k)) for layer, name, k in pairs]
        self.heads = nn.ModuleList([MaskedPrediction(dim, k, proj_dim, tau) for _, _, k in self.pairs])

    def forward(self, layers: list[Tensor], labels: dict[str, Tensor], mask: Tensor | None = None):
        parts: dict[str, Tensor] = {}
        total = None
        for (layer, name, _), head in zip(self.pairs, self.heads):
            term = head(layers[layer], labels[name], mask)
            parts[f"mpl_L{layer}_{name}"] = term
            total = term if total is None else total + term
        return total, parts
