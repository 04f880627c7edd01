"""Loss registry: name -> class. One loss per module; weights live in recipe configs as {name: weight}."""
from __future__ import annotations

from pretrain.losses.barlow_twins import BarlowTwins
from pretrain.losses.base import LossOutput
from pretrain.losses.cluster_ce import ClusterCE
from pretrain.losses.distill import CosineDistillation
from pretrain.losses.info_nce import InfoNCE
from pretrain.losses.masked_prediction import MaskedPrediction, MulticlusterMaskedPrediction
from pretrain.losses.pseudo_con import PseudoCon
from upstream.nn.club import CLUBSample

LOSSES: dict[str, type] = {
    "masked_prediction": MaskedPrediction,
    "multicluster_masked_prediction": MulticlusterMaskedPrediction,
    "pseudo_con": PseudoCon,
    "info_nce": InfoNCE,
    "cluster_ce": ClusterCE,
    "barlow_twins": BarlowTwins,
    "cosine_distillation": CosineDistillation,
    "club": CLUBSample,           # upstream/nn/club.py: learning_loss (estimator) and forward (MI upper bound)
}

__all__ = ["LOSSES", "LossOutput", "BarlowTwins", "ClusterCE", "CosineDistillation", "InfoNCE", "MaskedPrediction",
           "MulticlusterMaskedPrediction", "PseudoCon", "CLUBSample"]
