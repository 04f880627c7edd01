"""hubert-compact: HuBERT-style masked prediction, two iterations (Hsu et al. 2021).

Iteration 1 predicts k-means ids of MFCC+Δ+ΔΔ frames (50 Hz, the model's frame grid); iteration 2
predicts k-means ids of an intermediate layer of the iteration-1 model. Loss: cross-entropy with
cosine logits (τ = 0.1) on masked frames only (span masking, p = 0.65, span 10 → ~50 % masked).
Budget choice (documented in the card): iteration 2 continues from the iteration-1 weights
instead of re-initialising, and K is smaller than HuBERT Base's 100/500.

Speaker-invariant targets (``speaker_perturb``, ContentVec-style): the student's input is
formant-warped (+ gain) while its labels come from the clean audio (they are computed once, before
training), so the content layers are pushed to predict the same unit across voices. By default only
iteration 2 (``speaker_perturb_iters``): iteration 1's targets are k-means of MFCCs, i.e. of the
spectral envelope the warp changes, so predicting them from a warped input is ill-posed (ContentVec
perturbs the student of HuBERT-unit targets).

This is Learn2Diss's frozen backbone, JOOCI's initialisation and the single-stream baseline.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pretrain.augment import SpeakerPerturb, SpeakerPerturbConfig, perturb_error
from pretrain.data import CropBatches, DataConfig
from pretrain.losses import LossOutput, MaskedPrediction
from pretrain.masking import span_mask
from pretrain.recipes.common import (RunContext, audio_bank, export_final, kmeans_labels, mfcc_labels,
                                     model_featurizer, required_train_split, run_phase)
from pretrain.recipes.sources import frame_clusters
from pretrain.trainer import TrainConfig

MODEL = "hubert_compact"


@dataclass
class HubertRecipeConfig:
    preset: str = "compact"          # upstream.registry preset of hubert_compact
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_s=2.0, batch_size=8))
    k_mfcc: int = 50                 # iteration-1 clusters (MFCC)
    k_layer: int = 100               # iteration-2 clusters (layer features)
    label_layer: int = 2             # iteration-2 features: this layer of the iteration-1 model
    iter2_utts: int = 0              # > 0: iteration 2 labels and trains on only this many utterances (CPU budget)
    kmeans_frames: int = 150_000     # frames sampled to fit k-means
    mask_prob: float = 0.65
    mask_len: int = 10
    proj_dim: int = 128
    tau: float = 0.1
    speaker_perturb: SpeakerPerturbConfig = field(default_factory=SpeakerPerturbConfig)   # prob=0: off
    speaker_perturb_iters: tuple[int, ...] = (2,)   # iterations whose student input is perturbed
    iter1: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=5e-4, warmup_steps=30, ckpt_every=50))
    iter2: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, lr=3e-4, warmup_steps=20, ckpt_every=50))


class MaskedPredictionObjective(nn.Module):
    """Masked prediction of one label set at the last layer of a HubertCompact-shaped model."""

    def __init__(self, model: nn.Module, label_set: str, num_classes: int, *, mask_prob: float, mask_len: int,
                 proj_dim: int, tau: float, dim: int):
        super().__init__()
        self.model = model
        self.head = MaskedPrediction(dim, num_classes, proj_dim, tau)
        self.label_set = label_set
        self.mask_prob, self.mask_len = mask_prob, mask_len

    def forward(self, batch) -> LossOutput:
        feat, flen = self.model.features(batch["wav"], batch["wav_len"])
        mask = span_mask(flen, feat.shape[1], self.mask_prob, self.mask_len)
        layers = self.model.encode(feat, flen, mask)
        labels = batch[f"labels.{self.label_set}"]
        loss = self.head(layers[-1], labels, mask)
        return LossOutput(loss, {"mpl": loss.detach(), "acc": self.head.accuracy(layers[-1], labels, mask)})


required = required_train_split


def check(cfg: HubertRecipeConfig) -> None:
    from upstream.registry import preset_config

    mcfg = preset_config(MODEL, cfg.preset)
    if not 0 <= cfg.label_layer <= mcfg.num_layers:
        raise ValueError(f"label_layer={cfg.label_layer} outside 0..{mcfg.num_layers} for preset {cfg.preset}")
    for opt, k in (("k_mfcc", cfg.k_mfcc), ("k_layer", cfg.k_layer)):
        if k > cfg.kmeans_frames:
            raise ValueError(f"{opt}={k} clusters, but kmeans_frames={cfg.kmeans_frames} rows are sampled to fit "
                             f"them; set kmeans_frames >= {k} or lower {opt}")
    if (err := perturb_error("speaker_perturb", cfg.speaker_perturb)) is not None:
        raise ValueError(err)


def run(cfg: HubertRecipeConfig, ctx: RunContext):
    from upstream.registry import build_model, preset_config

    mcfg = preset_config(MODEL, cfg.preset)
    bank = audio_bank(ctx, cfg.data)
    ctx.log(f"{len(bank)} training utterances, {bank.seconds / 3600:.2f} h")
    frame_clusters("k_mfcc", cfg.k_mfcc, bank, cfg.kmeans_frames)
    frame_clusters("k_layer", cfg.k_layer, bank.subset(cfg.iter2_utts), cfg.kmeans_frames)   # before iteration 1
    lab1 = mfcc_labels(ctx, bank, cfg.k_mfcc, cfg.kmeans_frames, ctx.seed)
    torch.manual_seed(ctx.seed)
    model = build_model(MODEL, mcfg)
    kw = dict(mask_prob=cfg.mask_prob, mask_len=cfg.mask_len, proj_dim=cfg.proj_dim, tau=cfg.tau,
              dim=mcfg.hidden_size)
    obj1 = MaskedPredictionObjective(model, lab1.name, lab1.num_classes, **kw)
    perturb = SpeakerPerturb(cfg.speaker_perturb) if cfg.speaker_perturb.prob > 0 else None
    run_phase(ctx, "iter1", cfg.iter1, obj1, CropBatches(bank, cfg.data, ctx.seed, labels={lab1.name: lab1},
                                                          augment=perturb if 1 in cfg.speaker_perturb_iters else None))

    model.eval()
    dev = next(model.parameters()).device
    layer = cfg.label_layer

    name2 = f"km_iter1_L{layer}_{cfg.k_layer}"
    bank2 = bank.subset(cfg.iter2_utts)
    lab2 = kmeans_labels(ctx, {name2: cfg.k_layer}, bank2,
                         model_featurizer(lambda w, n: {name2: model(w.to(dev), n.to(dev)).content[layer]}, bank2),
                         cfg.kmeans_frames, ctx.seed)[name2]
    torch.manual_seed(ctx.seed + 1)
    obj2 = MaskedPredictionObjective(model, lab2.name, lab2.num_classes, **kw)
    run_phase(ctx, "iter2", cfg.iter2, obj2, CropBatches(bank2, cfg.data, ctx.seed + 1, labels={lab2.name: lab2},
                                                          augment=perturb if 2 in cfg.speaker_perturb_iters else None))
    ctx.notes["labels"] = (f"iteration 1: k-means K={cfg.k_mfcc} on MFCC+delta+delta-delta (50 Hz) of {len(bank)} "
                           f"utterances; iteration 2: K={cfg.k_layer} on layer {layer} of the iteration-1 model, "
                           f"{len(bank2)} utterances; iteration 2 continues from the iteration-1 weights")
    return export_final(ctx, model, MODEL, mcfg, cfg, ["iter1", "iter2"],
                        extra_card="## Method\n\n" + ctx.notes["labels"] + ". Masked prediction with cosine "
                        f"logits (tau={cfg.tau}) on span-masked frames (p={cfg.mask_prob}, span {cfg.mask_len}). "
                        f"Student input formant-warped (alpha {cfg.speaker_perturb.alpha[0]:g}-"
                        f"{cfg.speaker_perturb.alpha[1]:g}) + gain on {cfg.speaker_perturb.prob:.0%} of crops in "
                        f"iteration(s) {list(cfg.speaker_perturb_iters)}, labels from the clean audio.\n")
