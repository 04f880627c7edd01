"""jooci-compact: multicluster masked prediction on the content encoder, cosine distillation of the
other encoder's pooled embedding from a speaker teacher, and the gradient-reversal content decoder.

Content loss: MS-HuBERT's multicluster masked prediction — one cosine-logit masked-prediction
term per (content layer, label set) pair; the label sets are k-means ids of several layers of the
initialising hubert-compact model (*inferred*: regular intervals up to the last layer).
Other loss: 1 − cos(FC(BN(ASP(other))), teacher) with the teacher's whole-utterance embedding.
Regularisation: cross-entropy of the GRL(1/10) content decoder predicting the first label set
from the other stream. Total = content + other + regularisation (no weights, as in the paper).
Light augmentation: 12.5 % of the crops get noise / babble / reverb at 15–30 dB SNR.

Two stages, as in the paper (its appendix A.1): ``stage1`` freezes the shared CNN + content
encoder and trains the other encoder, post-net and decoder (other + regularisation losses) at a
high learning rate; ``stage2`` trains everything (all three losses) at a 5x lower one (paper: 5e-4
then 5e-5). The shared CNN + content encoder start from ``init_ckpt``: hubert-compact, or whatever
``-k`` takes (a transformers HuBERT/WavLM directory, a fairseq .pt), whose shape they then have;
``model.other_blocks`` etc. are checked against its layer count before any work. Teacher targets
are centred and whitened (``teacher_whiten``): raw resemblyzer d-vectors sit at cosine 0.82 to
their mean. ``teacher_pca=K`` whitens only their top K principal components (teachers.whiten_targets).
Measured 2026-12-03 on the small corpus (the bundled recipe otherwise; linear probes on the 30 unseen
voices): with K=16 the distillation loss (1 - cos) ends at ~0.30 instead of ~0.72, with the Learn2Diss
teacher at ~0.2, yet the other stream's best speaker probe stays 0.892 in all three runs; resemblyzer's
own d-vector scores 0.908 on those voices, so the teacher, not the fit to it, bounds that number. Not
the default.

Stage-2 options (defaults: the paper), measured 2026-12-03 on the 60 unseen voices of the small corpus
(``results/jooci_stage2_trials/``; bundled command otherwise; 240 held-out utterances, one = 0.004):
training content layer 0 (shared front-end + positional conv) in stage 2 raised its speaker probe from
hubert-compact's 0.879 to 0.917 (paper) / 0.908 (``stage2_shared=content``: content loss only) / 0.904
(``content_perturb``: warped input), making layer 0 the content stream's most speaker-laden layer;
``stage2_shared=frozen`` keeps it at 0.879. ``content_perturb.prob=0.8`` lowered the content layers
above it (0.846-0.875 against 0.867-0.883) and their best ABX across speaker (20.37-20.47 % against
20.74-20.78 %), phone probe unchanged (0.595-0.597). ``w_reg=0`` left the other stream's best layer
at 0.821 (its top layer 0.700 against 0.646): the decoder is not what bounds it. The bundled
checkpoint uses ``content_perturb.prob=0.8 stage2_shared=frozen``. With Learn2Diss's utterance
embedding as the teacher instead (0.904 on those voices against resemblyzer's 0.825; trial j7) the
other stream's best layer is still its O_0 (0.825: hubert-compact's layer 0 averaged to 5 Hz) and
O_1-O_4 reach 0.738-0.771: its input, not the teacher, bounds its speaker probe. Warping stage 2's content
input over 0.7-1.4x (``content_perturb.alpha=0.7,1.4``, trial j8) instead of 0.85-1.18x lowered the content
stream's ABX across speaker from 20.37 % to 18.85 % (phone probe 0.596 -> 0.597, other stream unchanged):
the bundled setting since 2026-12-03 ~18:15 UTC.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.augment import (AugmentBank, AugmentConfig, Augmenter, SpeakerPerturb, SpeakerPerturbConfig,
                              perturb_error)
from pretrain.data import CropBatches, DataConfig
from pretrain.losses import CosineDistillation, LossOutput, MulticlusterMaskedPrediction
from pretrain.masking import span_mask
from pretrain.recipes.common import RecipeError, RunContext, audio_bank, export_final, kmeans_labels, \
    mfcc_labels, model_featurizer, required_train_split, run_phase
from pretrain.recipes.sources import Source, frame_clusters, init_source, layer_range_error, pin_source
from pretrain.teachers import TeacherError, parse_teacher, teacher_embeddings, whiten_targets
from pretrain.trainer import TrainConfig

MODEL = "jooci"


@dataclass
class JoociShape:
    """The other side's shape against the content encoder's L layers (``model.other_blocks=12``);
    None: the preset's value (other_blocks at most L)."""

    other_blocks: int | None = None   # other-encoder blocks, each fed its own content layer (1..L)
    other_dim: int | None = None      # other-stream width (a multiple of res2net_scale and decoder_heads)
    downsample: int | None = None     # DF: the other stream has 320 * DF samples per frame


@dataclass
class JoociRecipeConfig:
    preset: str = "compact"          # other-side sizes; the shared CNN + content encoder's shape come from init_ckpt
    # shared CNN + content encoder weights: what `run_downstream.py -k` takes (a DUET hubert_compact checkpoint dir,
    # a transformers HuBERT/WavLM dir, a fairseq/s3prl .pt); empty: random init with MFCC labels
    init_ckpt: str = "checkpoints/hubert-compact"
    allow_unpickle: bool = False     # a fairseq .pt holding pickled objects (runs code from the file: trusted only)
    model: JoociShape = field(default_factory=JoociShape)
    teacher: str = "resemblyzer"                    # or learn2diss:<checkpoint dir>
    teacher_whiten: bool = True                     # centre + whiten + L2-normalise the teacher targets
    teacher_pca: int = 0                            # > 0: whiten only the top principal components (teachers.whiten_targets)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_s=2.0, batch_size=8))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    label_layers: tuple[int, ...] = (2, 3, 4)       # init-model layers clustered into label sets
    predict_layers: tuple[int, ...] = (2, 3, 4)     # content layer predicting each set (same order)
    k: int = 100                                    # clusters per set (= the decoder's vocabulary)
    kmeans_frames: int = 150_000
    mask_prob: float = 0.65
    mask_len: int = 10
    proj_dim: int = 128
    tau: float = 0.1
    w_reg: float = 1.0                              # weight of the GRL decoder's loss (paper: 1, no weights); 0: off
    # stage 2's shared front-end: "both" (the paper: it learns from the content and the other/decoder losses),
    # "content" (the other/decoder losses are detached from it) or "frozen" (it and the content encoder's
    # positional conv, i.e. all that content layer 0 is made of, stay as init_ckpt's; see STAGE2_SHARED)
    stage2_shared: str = "both"
    # stage 2: the content encoder reads a formant-warped (+ gain) copy of the crop, its labels from the clean
    # audio (speaker-invariant content, as hubert-compact's iteration 2); the other encoder reads the clean crop.
    # prob=0 (default, the paper): off
    content_perturb: SpeakerPerturbConfig = field(default_factory=lambda: SpeakerPerturbConfig(prob=0.0))
    # stage 1: shared CNN + content frozen, other encoder / post-net / decoder learn; stage 2: all
    stage1: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=5e-4, warmup_steps=30, ckpt_every=50))
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=1e-4, warmup_steps=30, ckpt_every=50))


STAGE2_TEXT = {"both": "everything trains",
               "content": "everything trains, the shared front-end from the content loss only (the other and "
                          "regularisation losses are detached from it)",
               "frozen": "everything but content layer 0 trains (the shared front-end and the content encoder's "
                         "positional conv stay as initialised)"}
STAGE2_SHARED = tuple(STAGE2_TEXT)


class JoociObjective(nn.Module):
    def __init__(self, model, pairs: list[tuple[int, str, int]], cfg: JoociRecipeConfig, dim: int,
                 stage: int = 2):
        """stage 1: the model's content part frozen, no content loss; stage 2: everything trains."""
        super().__init__()
        if stage not in (1, 2):
            raise ValueError(f"JOOCI stage must be 1 or 2, got {stage}")
        self.model = model
        self.stage = stage
        model.freeze_content(stage == 1)
        self.content_loss = MulticlusterMaskedPrediction(dim, pairs, cfg.proj_dim, cfg.tau)
        self.other_loss = CosineDistillation()
        self.reg_set = pairs[0][1]
        self.w_reg = cfg.w_reg
        self.shared_from_content_only = stage == 2 and cfg.stage2_shared == "content"
        if stage == 2 and cfg.stage2_shared == "frozen":
            model.content_encoder.freeze_bottom(1)
        self.mask_prob, self.mask_len = cfg.mask_prob, cfg.mask_len

    def forward(self, batch) -> LossOutput:
        from upstream.nn.masking import lengths_to_mask

        wav, wl = batch["wav"], batch["wav_len"]
        c_len = self.model.output_lengths(wl)[0]
        T = int(self.model.content_encoder.frontend.output_lengths(torch.tensor([wav.shape[1]]))[0])
        # stage 1: the frozen content encoder sees its input unmasked (as at inference)
        mask = span_mask(c_len, T, self.mask_prob, self.mask_len) if self.stage == 2 else None
        out = self.model.forward_train(wav, wl, mask, self.shared_from_content_only,
                                       batch.get("wav_a2") if self.stage == 2 else None)
        labels = {k[len("labels."):]: v for k, v in batch.items() if k.startswith("labels.")}
        if self.stage == 1:
            l_c, parts = out.projected.sum() * 0.0, {}
        else:
            l_c, parts = self.content_loss(out.streams.content, labels, mask)
        l_o = self.other_loss(out.projected, batch["teacher"])
        y = labels[self.reg_set]
        logits = out.decoder_logits
        Tm = min(logits.shape[1], y.shape[1])
        valid = lengths_to_mask(out.streams.content_len, logits.shape[1])[:, :Tm] & (y[:, :Tm] >= 0)
        l_r = F.cross_entropy(logits[:, :Tm][valid].float(), y[:, :Tm][valid])
        loss = l_c + l_o + self.w_reg * l_r
        parts = {k: v.detach() for k, v in parts.items()}
        parts.update({"content": l_c.detach(), "other_distill": l_o.detach(), "reg_decoder": l_r.detach()})
        return LossOutput(loss, parts)




required = required_train_split


def model_config(cfg: JoociRecipeConfig, src: Source | None):
    """The preset's JOOCI config with the initialising model's encoder shape and the ``model.*``
    overrides, checked against its L layers (RecipeError naming the option and the valid range)."""
    from upstream.registry import preset_config

    pcfg = preset_config(MODEL, cfg.preset)
    enc = src.config if src is not None else pcfg.encoder
    L = int(enc.num_layers)
    where = f"the init model {src.path}" if src is not None else f"preset {cfg.preset!r}'s content encoder"
    n_o = cfg.model.other_blocks if cfg.model.other_blocks is not None else min(pcfg.other_blocks, L)
    if not 1 <= n_o <= L:
        raise layer_range_error("model.other_blocks", n_o, 1, L,
                                f"{where} has {L} content layers and each other block reads its own one")
    d_o = cfg.model.other_dim if cfg.model.other_dim is not None else pcfg.other_dim
    for what, div in (("res2net_scale", pcfg.res2net_scale), ("decoder_heads", pcfg.decoder_heads)):
        if d_o < 1 or d_o % div:
            raise RecipeError(f"model.other_dim={d_o} must be a positive multiple of the preset's {what}={div} "
                              f"(e.g. model.other_dim={div * max(1, round(d_o / div))})")
    df = cfg.model.downsample if cfg.model.downsample is not None else pcfg.downsample
    if df < 1:
        raise RecipeError(f"model.downsample={df} must be >= 1 (the other stream's frames per content frame)")
    for opt, layers in (("label_layers", cfg.label_layers if src is not None else ()),
                        ("predict_layers", cfg.predict_layers)):
        bad = [l for l in layers if not 0 <= l <= L]
        if bad:
            raise layer_range_error(opt, bad[0], 0, L, f"{where} has layers 0..{L} (0 = the CNN features)")
    return dataclasses.replace(pcfg, encoder=enc, other_blocks=n_o, other_dim=d_o, downsample=df)


def check(cfg: JoociRecipeConfig) -> None:
    from upstream.registry import preset_config

    preset_config(MODEL, cfg.preset)
    try:
        parse_teacher(cfg.teacher)
    except TeacherError as e:
        raise RecipeError(str(e)) from None
    if cfg.teacher_pca < 0 or (cfg.teacher_pca and not cfg.teacher_whiten):
        raise RecipeError(f"teacher_pca={cfg.teacher_pca}: use 0 (whiten every direction) or a positive number of "
                          f"principal components, with teacher_whiten=true")
    if len(cfg.label_layers) != len(cfg.predict_layers) or not cfg.label_layers:
        raise RecipeError("label_layers and predict_layers must be non-empty and of equal length")
    if (err := perturb_error("content_perturb", cfg.content_perturb)) is not None:
        raise RecipeError(err)
    if cfg.stage2_shared not in STAGE2_SHARED:
        raise RecipeError(f"stage2_shared={cfg.stage2_shared!r}: use one of {', '.join(STAGE2_SHARED)}")
    if cfg.w_reg < 0:
        raise RecipeError(f"w_reg={cfg.w_reg} must be >= 0 (0 turns the gradient-reversal decoder off)")
    if cfg.k > cfg.kmeans_frames:
        raise RecipeError(f"k={cfg.k} clusters, but kmeans_frames={cfg.kmeans_frames} rows are sampled to fit them; "
                          f"set kmeans_frames >= {cfg.k} or lower k")
    model_config(cfg, init_source(cfg))    # loads the init model once to check the shape before any work


def run(cfg: JoociRecipeConfig, ctx: RunContext):
    from upstream.registry import build_model

    src = init_source(cfg)
    mcfg = model_config(cfg, src)
    if src is not None:
        pin_source(ctx, src, "init_ckpt")
    bank = audio_bank(ctx, cfg.data)
    ctx.log(f"{len(bank)} training utterances, {bank.seconds / 3600:.2f} h")
    frame_clusters("k", cfg.k, bank, cfg.kmeans_frames)
    init = None
    if src is not None:
        init = src.model
        ctx.notes["init"] = src.identity
        names = [f"km_init_L{l}_{cfg.k}" for l in cfg.label_layers]
        init.eval()

        def feats(w, n):
            c = init(w, n).content
            return {name: c[l] for name, l in zip(names, cfg.label_layers)}

        labels = kmeans_labels(ctx, {n: cfg.k for n in names}, bank, model_featurizer(feats, bank),
                               cfg.kmeans_frames, ctx.seed)
    else:
        lab = mfcc_labels(ctx, bank, cfg.k, cfg.kmeans_frames, ctx.seed)
        names = [lab.name] * len(cfg.label_layers)
        labels = {lab.name: lab}
    teacher, tdesc = teacher_embeddings(cfg.teacher, bank, ctx.cache, ctx.progress) if ctx.is_main else (None, "")
    ctx.barrier()
    if not ctx.is_main:
        teacher, tdesc = teacher_embeddings(cfg.teacher, bank, ctx.cache, False)
    if cfg.teacher_whiten:
        teacher, st = whiten_targets(teacher, dims=cfg.teacher_pca)
        top = f"top {cfg.teacher_pca} principal components ({st['variance_kept']:.0%} of the variance) " \
            if cfg.teacher_pca else ""
        tdesc += (f"; centred, {top}whitened, L2-normalised (cosine to the mean {st['cos_to_mean_before']:.2f} -> "
                  f"{st['cos_to_mean_after']:.2f})")
        ctx.log(f"teacher targets whitened: cosine to their mean {st['cos_to_mean_before']:.3f} -> "
                f"{st['cos_to_mean_after']:.3f}")
    ctx.notes["teacher"] = tdesc
    # the student's FC must match the targets' size; the decoder predicts the first label set
    mcfg = dataclasses.replace(mcfg, fc_dim=int(teacher.shape[1]), decoder_vocab=cfg.k)
    torch.manual_seed(ctx.seed)
    model = build_model(MODEL, mcfg)
    if init is not None:
        model.content_encoder.load_state_dict(init.state_dict())
    aug_bank = AugmentBank.build(ctx.cache / "augment", bank, cfg.augment) if ctx.is_main else None
    ctx.barrier()
    if aug_bank is None:
        aug_bank = AugmentBank.build(ctx.cache / "augment", bank, cfg.augment)
    pairs = [(pl, n, cfg.k) for pl, n in zip(cfg.predict_layers, names)]
    warp = SpeakerPerturb(cfg.content_perturb, "content_perturb") if cfg.content_perturb.prob > 0 else None
    batches = lambda s, aligned=None: CropBatches(bank, cfg.data, s, labels={n: labels[n] for n in set(names)},  # noqa: E731
                                                  teacher=teacher, augment=Augmenter(aug_bank, cfg.augment),
                                                  aligned_augment=aligned)
    obj1 = JoociObjective(model, pairs, cfg, mcfg.encoder.hidden_size, stage=1)
    run_phase(ctx, "stage1", cfg.stage1, obj1, batches(ctx.seed))
    torch.manual_seed(ctx.seed + 1)
    obj2 = JoociObjective(model, pairs, cfg, mcfg.encoder.hidden_size, stage=2)
    obj2.content_loss.load_state_dict(obj1.content_loss.state_dict())
    run_phase(ctx, "stage2", cfg.stage2, obj2, batches(ctx.seed + 1, warp))
    method = (f"Initialised from `{ctx.notes.get('init', 'random')}`. Stage 1 ({cfg.stage1.steps} steps, lr "
              f"{cfg.stage1.lr:g}): shared CNN + content encoder frozen, other + regularisation losses; stage 2 "
              f"({cfg.stage2.steps} steps, lr {cfg.stage2.lr:g}): " + STAGE2_TEXT[cfg.stage2_shared] + f", all three losses. Content: multicluster masked prediction, pairs "
              f"(content layer, label set) = {[(p[0], p[1]) for p in pairs]}, K={cfg.k}, cosine logits tau={cfg.tau}, "
              f"span masking p={cfg.mask_prob}/{cfg.mask_len}. Other: cosine distillation from the teacher "
              f"**{tdesc}** (whole-utterance embeddings). Regularisation: GRL content decoder predicting "
              f"`{pairs[0][1]}`. " + (f"Stage 2's content encoder reads a formant-warped (alpha {cfg.content_perturb.alpha[0]:g}-"
              f"{cfg.content_perturb.alpha[1]:g}) + gain copy of {cfg.content_perturb.prob:.0%} of the crops, labels from the "
              f"clean audio; the other encoder reads the clean crop. " if warp else "") + f"Augmentation: {cfg.augment.prob:.1%} of crops, {', '.join(cfg.augment.kinds)}, "
              f"SNR {cfg.augment.snr_db[0]:g}-{cfg.augment.snr_db[1]:g} dB (synthetic noise/babble/RIR bank).")
    model.freeze_content(False)
    return export_final(ctx, model, MODEL, mcfg, cfg, ["stage1", "stage2"], extra_card="## Method\n\n" + method + "\n")
