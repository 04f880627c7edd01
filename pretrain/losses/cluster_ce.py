"""Clustering loss for utterance embeddings: cross-entropy of cosine logits against offline
k-means cluster ids of the utterances (Learn2Diss's utterance-level "clustering" term; the exact
form is *inferred*: a DeepCluster-style prototype classifier on fixed k-means assignments).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pretrain.losses.masked_prediction import CosineClassifier


class ClusterCE(nn.Module):
    def __init__(self, dim: int, num_clusters: int, proj_dim: int = 128, tau: float = 0.1):
        super().__init__()
        self.classifier = CosineClassifier(dim, num_clusters, proj_dim, tau)

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        """emb (B, D), labels (B,) long (negative = ignore)."""
        keep = labels >= 0
        if not bool(keep.any()):
            return emb.sum() * 0.0
        return F.cross_entropy(self.classifier(emb[keep]), labels[keep])
