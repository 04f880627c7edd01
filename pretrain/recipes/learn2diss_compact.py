"""learn2diss-compact: frozen backbone (hubert-compact or own HuBERT/WavLM) + frame encoder g + utterance encoder h, CLUB.

``backbone_ckpt`` takes what ``run_downstream.py -k`` takes (``pretrain/recipes/sources.py``); the
model has the backbone's shape, with ``model.frame_layers`` / ``model.utt_input_layer`` checked
against its layer count before any work.

The model freezes the parent's CNN + lower layers and initialises g from its top ``frame_layers``
layers (``Learn2Diss.init_from_backbone``). The two InfoNCE views are crops that share no sample
of the utterance (``DataConfig.disjoint_views``), each perturbed in gain and additive noise/babble
(``views``), so the utterance encoder cannot match them by their audio. Stage 1 (g and h independently; disjoint parameters):
pseudo-con on g's last layer with k-means labels of the parent's last layer (K frame clusters), and for h InfoNCE
between the pooled embeddings of two random crops of each utterance + a clustering loss (cosine
prototype classifier on k-means ids of mean-pooled backbone features, Q utterance clusters).
Stage 2: the same losses + λ·CLUB(h-embedding; g-frames) with the estimator frozen, then
``aux_steps`` estimator updates on the detached pair (Cheng et al. 2020; VQMIVC alternation).

CLUB weight λ = 0.01 (paper: 1e-3). Measured at 624f699: λ·MI ≈ 0.005 against a total loss of ~8,
and on a tiny model with a fitted estimator λ = 1e-3 changes the utterance encoder's gradient by
0.13-0.3 % (inert), λ = 0.01 by 1.2-2.7 %, λ = 0.1 by ~27 % (100-200 estimator steps). A compact trial with λ = 0.1 (75 stage-2
steps) was too strong: the estimate (summed over the 192 frame dimensions) grew from ~9 to ~78
nats, λ·MI became ~40 % of the loss, and InfoNCE (1.18 -> 2.39, chance 2.08) and clustering
(2.87 -> 5.10) were undone. λ = 0.01 keeps λ·MI at that level near 0.8 (~5 % of the loss): the
middle of the two measured ends, not yet trial-trained. The paper's value belongs to losses of
another scale (K = 2048 frame and Q = 2000 utterance clusters, large batches).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from pretrain.augment import AugmentBank, AugmentConfig, TwoViews, ViewConfig
from pretrain.data import CropBatches, DataConfig
from pretrain.losses import ClusterCE, InfoNCE, LossOutput, PseudoCon
from pretrain.recipes.common import RecipeError, RunContext, audio_bank, export_final, kmeans_labels, \
    model_featurizer, required_train_split, run_phase
from pretrain.recipes.sources import Source, frame_clusters, layer_range_error, load_source, pin_source, \
    utterance_clusters
from pretrain.trainer import TrainConfig

MODEL = "learn2diss"


@dataclass
class Learn2DissShape:
    """The model's shape against its backbone of L transformer layers (``model.frame_layers=2``);
    None: the preset's frame_layers (at most L) and the middle layer min(L // 2, L - M) for h."""

    frame_layers: int | None = None       # M: the backbone's top M layers become g (1..L)
    utt_input_layer: int | None = None    # backbone layer fed to h (0..L-M; 0 = the CNN features)


@dataclass
class Learn2DissRecipeConfig:
    preset: str = "compact"          # ECAPA size etc.; the backbone's shape comes from backbone_ckpt
    # what `run_downstream.py -k` takes: a DUET hubert_compact checkpoint dir, a transformers HuBERT/WavLM
    # dir, or a fairseq/s3prl .pt (relative paths: from the working directory, else the repo)
    backbone_ckpt: str = "checkpoints/hubert-compact"
    allow_unpickle: bool = False     # a fairseq .pt holding pickled objects (runs code from the file: trusted only)
    model: Learn2DissShape = field(default_factory=Learn2DissShape)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_s=2.0, batch_size=8, views=2, disjoint_views=True))
    # view perturbation: gain and noise/babble only (no filtering or reverb: they change the voice)
    views: ViewConfig = field(default_factory=lambda: ViewConfig(p_gain=1.0, gain_db=6.0, p_filter=0.0, p_noise=0.5,
                                                                 snr_db=(10.0, 30.0), p_reverb=0.0, p_mask=0.0))
    bank: AugmentConfig = field(default_factory=AugmentConfig)   # the noise/babble bank (prob unused)
    k_frame: int = 100               # frame clusters for pseudo-con (paper: 2048)
    q_utt: int = 50                  # utterance clusters (paper: 2000)
    kmeans_frames: int = 150_000
    tau_frame: float = 0.1
    tau_utt: float = 0.1
    pseudo_con_frames: int = 1024    # frames per pseudo-con call (O(N^2))
    w_pseudo_con: float = 1.0
    w_info_nce: float = 1.0
    w_cluster: float = 1.0
    club_weight: float = 0.01        # λ (paper: 1e-3; see the module docstring for the scale)
    club_hidden: int = 256
    stage1: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, lr=5e-4, warmup_steps=20, ckpt_every=50))
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, lr=2e-4, warmup_steps=10, ckpt_every=50,
                                                                    aux_steps=5, aux_lr=1e-3))


class Learn2DissObjective(nn.Module):
    def __init__(self, model, frame_set: str, utt_set: str, n_utt: int, cfg: Learn2DissRecipeConfig,
                 club: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.pseudo_con = PseudoCon(cfg.tau_frame, cfg.pseudo_con_frames)
        self.info_nce = InfoNCE(cfg.tau_utt)
        self.cluster = ClusterCE(model.utterance_dim, n_utt)
        self.club = club
        self.frame_set, self.utt_set = frame_set, utt_set
        self.w = (cfg.w_pseudo_con, cfg.w_info_nce, cfg.w_cluster, cfg.club_weight)

    def aux_parameters(self):
        return list(self.club.parameters()) if self.club is not None else []

    def aux_loss(self, cache):
        return self.club.learning_loss(cache["x"], cache["y"], cache["y_mask"])

    def forward(self, batch) -> LossOutput:
        from upstream.nn.masking import lengths_to_mask

        B = batch["wav"].shape[0]
        wav = torch.cat([batch["wav"], batch["wav_b"]])
        wl = torch.cat([batch["wav_len"], batch["wav_b_len"]])
        layers, lens = self.model.backbone_hidden(wav, wl)
        g = self.model.frame_encode(layers, lens)[-1]                       # (2B, T, D)
        _, _, emb = self.model.utterance_encode(layers, lens)               # (2B, Du)
        labels = torch.cat([batch[f"labels.{self.frame_set}"], batch[f"labels_b.{self.frame_set}"]])
        T = min(g.shape[1], labels.shape[1])
        valid = lengths_to_mask(lens, g.shape[1])[:, :T] & (labels[:, :T] >= 0)
        l_pc = self.pseudo_con(g[:, :T][valid], labels[:, :T][valid])
        l_nce = self.info_nce(emb[:B], emb[B:])
        ul = batch[f"utt_labels.{self.utt_set}"]
        l_cl = self.cluster(emb, torch.cat([ul, ul]))
        wpc, wnce, wcl, wmi = self.w
        loss = wpc * l_pc + wnce * l_nce + wcl * l_cl
        parts = {"pseudo_con": l_pc.detach(), "info_nce": l_nce.detach(), "cluster": l_cl.detach()}
        cache = {}
        if self.club is not None:
            mask = lengths_to_mask(lens, g.shape[1])
            mi = self.club(emb, g, mask)
            loss = loss + wmi * mi
            parts["club_mi"] = mi.detach()
            cache = {"x": emb.detach(), "y": g.detach(), "y_mask": mask}
        return LossOutput(loss, parts, cache)




required = required_train_split


def model_config(cfg: Learn2DissRecipeConfig, src: Source):
    """The preset's Learn2Diss config with the backbone's shape and the ``model.*`` overrides,
    checked against the backbone's L layers (RecipeError naming the option and the valid range)."""
    from upstream.registry import preset_config

    pcfg = preset_config(MODEL, cfg.preset)
    L = src.num_layers
    m = cfg.model.frame_layers if cfg.model.frame_layers is not None else min(pcfg.frame_layers, L)
    if not 1 <= m <= L:
        raise layer_range_error("model.frame_layers", m, 1, L,
                                f"the backbone {src.path} has {L} transformer layers and g is its top "
                                f"model.frame_layers of them")
    k = cfg.model.utt_input_layer if cfg.model.utt_input_layer is not None else min(L // 2, L - m)
    if not 0 <= k <= L - m:
        raise layer_range_error("model.utt_input_layer", k, 0, L - m,
                                f"the backbone {src.path} has {L} transformer layers, the top "
                                f"model.frame_layers={m} form g, so h reads one of the frozen layers 0..{L - m} "
                                f"(0 = the CNN features)")
    return dataclasses.replace(pcfg, backbone=src.config, frame_layers=m, utt_input_layer=k)


def _source(cfg: Learn2DissRecipeConfig) -> Source:
    return load_source(cfg.backbone_ckpt, "backbone_ckpt", allow_unpickle=cfg.allow_unpickle)


def check(cfg: Learn2DissRecipeConfig) -> None:
    from upstream.registry import preset_config

    preset_config(MODEL, cfg.preset)
    if cfg.data.views != 2:
        raise RecipeError("learn2diss-compact needs data.views=2 (InfoNCE between two crops)")
    if cfg.data.same_crop or not cfg.data.disjoint_views:
        raise RecipeError("learn2diss-compact needs data.same_crop=false and data.disjoint_views=true: InfoNCE "
                          "views that share audio let the utterance encoder match samples instead of speakers")
    for opt, k in (("k_frame", cfg.k_frame), ("q_utt", cfg.q_utt)):
        if k > cfg.kmeans_frames:
            raise RecipeError(f"{opt}={k} clusters, but kmeans_frames={cfg.kmeans_frames} rows are sampled to fit "
                              f"them; set kmeans_frames >= {k} or lower {opt}")
    model_config(cfg, _source(cfg))     # loads the backbone once to check the shape before any work


def run(cfg: Learn2DissRecipeConfig, ctx: RunContext):
    from upstream.registry import build_model

    src = _source(cfg)
    backbone = src.model
    mcfg = model_config(cfg, src)
    ctx.notes["backbone"] = f"{src.identity}, frozen"
    pin_source(ctx, src, "backbone_ckpt")
    bank = audio_bank(ctx, cfg.data)
    ctx.log(f"{len(bank)} training utterances, {bank.seconds / 3600:.2f} h; backbone {src.identity}: "
            f"{src.num_layers} layers, {mcfg.frame_layers} -> g, h reads layer {mcfg.utt_input_layer}")
    frame_clusters("k_frame", cfg.k_frame, bank, cfg.kmeans_frames)
    utterance_clusters("q_utt", cfg.q_utt, bank, cfg.kmeans_frames)
    backbone.eval()
    k_layer = mcfg.utt_input_layer
    fname, uname = f"km_backbone_last_{cfg.k_frame}", f"km_backbone_utt_L{k_layer}_{cfg.q_utt}"

    def feats(w, n):
        out = backbone(w, n)
        return {fname: out.content[-1], uname: out.content[k_layer].mean(1, keepdim=True)}

    labs = kmeans_labels(ctx, {fname: cfg.k_frame, uname: cfg.q_utt}, bank,
                         model_featurizer(feats, bank, aligned=(fname,)), cfg.kmeans_frames, ctx.seed,
                         unaligned=(uname,))
    fl, ul = labs[fname], labs[uname]
    utt_labels = {uname: ul.values.astype("int64")}
    torch.manual_seed(ctx.seed)
    model = build_model(MODEL, mcfg)
    model.init_from_backbone(backbone)          # frozen lower layers + g initialised from the parent's top layers
    model.backbone.requires_grad_(False)
    aug_bank = AugmentBank.build(ctx.cache / "augment", bank, cfg.bank) if ctx.is_main else None
    ctx.barrier()
    if aug_bank is None:
        aug_bank = AugmentBank.build(ctx.cache / "augment", bank, cfg.bank)
    views = TwoViews(aug_bank, cfg.views)
    batches = lambda s: CropBatches(bank, cfg.data, s, labels={fname: fl}, utt_labels=utt_labels,  # noqa: E731
                                    view_augment=views)
    obj1 = Learn2DissObjective(model, fname, uname, cfg.q_utt, cfg)
    run_phase(ctx, "stage1", cfg.stage1, obj1, batches(ctx.seed))
    torch.manual_seed(ctx.seed + 1)
    obj2 = Learn2DissObjective(model, fname, uname, cfg.q_utt, cfg, club=model.build_club(cfg.club_hidden))
    obj2.cluster.load_state_dict(obj1.cluster.state_dict())
    run_phase(ctx, "stage2", cfg.stage2, obj2, batches(ctx.seed + 1))
    method = (f"Frozen backbone: {src.identity} ({src.num_layers} layers; the top {mcfg.frame_layers} initialise "
              f"the frame encoder g). InfoNCE views: two crops sharing no sample, gain +-{cfg.views.gain_db:g} dB "
              f"and noise/babble at {cfg.views.snr_db[0]:g}-{cfg.views.snr_db[1]:g} dB (p={cfg.views.p_noise}). Stage 1 ({cfg.stage1.steps} steps): pseudo-con (tau={cfg.tau_frame}) on the "
              f"frame encoder with K={cfg.k_frame} k-means labels of the backbone's last layer; InfoNCE "
              f"(tau={cfg.tau_utt}) between two crops' utterance embeddings + clustering CE on Q={cfg.q_utt} k-means "
              f"ids of mean-pooled backbone layer {k_layer}. Stage 2 ({cfg.stage2.steps} steps): + "
              f"{cfg.club_weight} x CLUB(utterance embedding; frame-encoder frames), {cfg.stage2.aux_steps} "
              f"estimator steps per encoder step.")
    return export_final(ctx, model, MODEL, mcfg, cfg, ["stage1", "stage2"], extra_card="## Method\n\n" + method + "\n")
