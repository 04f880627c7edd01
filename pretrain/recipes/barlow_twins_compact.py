"""barlow-twins-compact: two augmented views of each crop, Barlow Twins redundancy reduction.

Views: the same 2-s crop perturbed twice (gain, band-limiting, noise/babble, reverb, time masking;
``augment.TwoViews``). The perturbations keep the time axis, so frame t of view A and frame t of
view B are a positive pair too. Loss = w_utt · BT(p(z_A), p(z_B)) over the rows chosen by
``utt_rows`` (p: the model's projector) + w_frame · BT over up to ``max_frames`` aligned frame
pairs (the projector applied per frame).

``utt_rows``: "segments" (default) — one row per window of the model's other stream (the last
layer averaged over DF frames, 200 ms), aligned across the two views; "utterances" — one row per
crop (z: masked mean of the last layer), the original, which needs a batch larger than the
projector's output size: the correlation of N rows has rank <= N - 1, so at 8 crops the 512-wide
term sat at its floor ≈ λD²/(N-1) (bt_utt plateaued at 220-250). ``check`` refuses a config whose
rows cannot fill the projector's output dimensions.

``views_mode``: which pairs the two terms see.
  * "perturb" (default): one crop perturbed twice; both terms on it (the other stream's rows then
    share their words as well as their speaker).
  * "split" (``data.same_crop=false frame_layer=2``): the utterance term pairs two crops of one
    utterance that share no sample (same speaker, other words); the frame term pairs view A with a
    formant-warped (+gain, perturbed) copy of the same crop, frame t with frame t (same words,
    another vocal tract), on encoder layer ``frame_layer``. Three encoder passes per step.
    Measured 2026-12-03 (compact, small corpus, 2000 steps against the bundled perturb model's 800;
    linear probes on the 30 unseen voices): the other stream's speaker probe fell 0.717 -> 0.667 and
    the content layers' phone probe 0.439-0.473 -> 0.409-0.461 (the perturb model's numbers from the
    same quick probe). A likely reason, not tested: with 8 utterances a batch, two crops of one
    utterance can be matched by its pitch, rate or style without the vocal tract. So it is not the
    default, and the bundled checkpoint stays the perturb one.

Vocal-tract range (2026-12-03 17:00-17:45 UTC, ``results/bt_trials/`` b8-b11; the bundled split-by-layer
command otherwise, scored on the 60 unseen voices, whose tracts sit at 0.60-0.93x / 1.16-1.48x of the
training voices' centre): a frame term whose warped copy spans ``speaker_perturb.alpha=0.7,1.4`` (b10)
lowered the content stream's ABX across speaker from 18.07 % to 15.17 % (phone probe 0.601 -> 0.602, ABX
within 3.94 -> 4.09 %), the other stream's speaker probe 0.767 -> 0.750: the bundled setting.
``voice_perturb`` (both utterance-term views warped by one shared factor, 0.7-1.4x; b9) gave 14.25 % but
0.717, and views without band-limiting and reverb (``views.p_filter=0 views.p_reverb=0``; b8, b11) 16.69 %
and 13.62 % but 0.708 and 0.692: neither adds speaker information to the other stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pretrain.augment import (AugmentBank, AugmentConfig, SpeakerPerturb, SpeakerPerturbConfig, TwoViews, ViewConfig,
                              perturb_error)
from pretrain.data import CropBatches, DataConfig
from pretrain.losses import BarlowTwins, LossOutput
from pretrain.recipes.common import required_train_split
from pretrain.recipes.common import RecipeError, RunContext, audio_bank, export_final, run_phase
from pretrain.recipes.sources import Source, init_source, pin_source
from pretrain.trainer import TrainConfig
from upstream.facts import SAMPLE_RATE
from upstream.models.barlow_twins import content_layers_error

MODEL = "barlow_twins"


@dataclass
class BarlowTwinsRecipeConfig:
    preset: str = "compact"
    # the encoder's starting weights (what `run_downstream.py -k` takes: a DUET hubert_compact checkpoint dir,
    # a transformers HuBERT/WavLM dir, a fairseq/s3prl .pt), whose shape it then has; empty: random init
    init_ckpt: str = ""
    allow_unpickle: bool = False     # a fairseq .pt holding pickled objects (runs code from the file: trusted only)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_s=2.0, batch_size=8, views=2, same_crop=True))
    views_mode: str = "perturb"      # "perturb" | "split" (see the module docstring)
    frame_layer: int = -1            # encoder layer the frame term shapes (-1: the last)
    content_layers: int = 0          # > 0: the model's streams split by layers (content H_0..H_k, other the layers above)
    freeze_layers: int = 0           # hidden states 0..n-1 stay as init_ckpt made them (1: the front-end + positional conv)
    detach_content: bool = False     # with content_layers: no gradient from the other layers reaches the content ones
    other_downsample: int = 0        # frames averaged per other-stream frame (0: the preset's; 1: the content rate)
    speaker_perturb: SpeakerPerturbConfig = field(default_factory=lambda: SpeakerPerturbConfig(prob=1.0))
    # the utterance term's two views warped together (one factor per utterance, the same for both views: a
    # new voice that the pair shares), so the other stream meets vocal tracts beyond the corpus's; prob=0: off
    voice_perturb: SpeakerPerturbConfig = field(default_factory=lambda: SpeakerPerturbConfig(prob=0.0, gain_db=0.0))
    views: ViewConfig = field(default_factory=ViewConfig)
    bank: AugmentConfig = field(default_factory=AugmentConfig)   # the noise/babble/RIR bank (prob unused)
    lambd: float = 0.0051
    normalize: bool = False          # "modified BT": L2-normalise latents first
    w_utt: float = 1.0
    utt_rows: str = "segments"       # "segments" (other-stream windows) | "utterances" (one per crop)
    w_frame: float = 1.0
    max_frames: int = 512
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=400, lr=5e-4, warmup_steps=40, ckpt_every=50))


class BarlowTwinsObjective(nn.Module):
    def __init__(self, model, cfg: BarlowTwinsRecipeConfig):
        super().__init__()
        self.model = model
        self.bt = BarlowTwins(cfg.lambd, cfg.normalize)
        self.w_utt, self.w_frame, self.max_frames = cfg.w_utt, cfg.w_frame, cfg.max_frames
        self.utt_rows = cfg.utt_rows
        self.split = cfg.views_mode == "split"
        self.frame_layer = cfg.frame_layer
        self.detach_from = cfg.content_layers if cfg.detach_content else None

    def utt_pairs(self, a, b):
        """The paired rows (N, D) of the utterance term, projected (see ``utt_rows``)."""
        from upstream.nn.masking import lengths_to_mask

        if self.utt_rows == "utterances":
            return self.model.project(a.utterance), self.model.project(b.utterance)
        sa, sb = a.other[-1], b.other[-1]
        T = min(sa.shape[1], sb.shape[1])
        valid = lengths_to_mask(a.other_len, sa.shape[1])[:, :T] & lengths_to_mask(b.other_len, sb.shape[1])[:, :T]
        return self.model.project(sa[:, :T][valid]), self.model.project(sb[:, :T][valid])

    def _encode(self, wav, wl):
        feat, lens = self.model.features(wav, wl)
        return self.model.streams(self.model.encode(feat, lens, detach_from=self.detach_from), lens)

    def forward(self, batch) -> LossOutput:
        from upstream.nn.masking import lengths_to_mask

        a = self._encode(batch["wav"], batch["wav_len"])
        b = self._encode(batch["wav_b"], batch["wav_b_len"])
        fb_out = self._encode(batch["wav_a2"], batch["wav_len"]) if self.split else b   # frame term's partner
        loss = a.utterance.sum() * 0.0
        parts = {}
        if self.w_utt > 0:
            l_u = self.bt(*self.utt_pairs(a, b))
            loss = loss + self.w_utt * l_u
            parts["bt_utt"] = l_u.detach()
        if self.w_frame > 0:
            ha, hb = a.content[self.frame_layer], fb_out.content[self.frame_layer]
            T = min(ha.shape[1], hb.shape[1])
            valid = (lengths_to_mask(a.content_len, ha.shape[1])[:, :T]
                     & lengths_to_mask(fb_out.content_len, hb.shape[1])[:, :T])
            fa, fb = ha[:, :T][valid], hb[:, :T][valid]
            if fa.shape[0] > self.max_frames:
                idx = torch.randperm(fa.shape[0])[: self.max_frames].to(fa.device)
                fa, fb = fa[idx], fb[idx]
            l_f = self.bt(self.model.project(fa), self.model.project(fb))
            loss = loss + self.w_frame * l_f
            parts["bt_frame"] = l_f.detach()
        return LossOutput(loss, parts)


required = required_train_split


def model_config(cfg: BarlowTwinsRecipeConfig, src: Source | None):
    """The preset's config, with the initialising model's encoder shape when there is one."""
    import dataclasses

    from upstream.registry import preset_config

    m = dataclasses.replace(preset_config(MODEL, cfg.preset), content_layers=cfg.content_layers)
    if cfg.other_downsample:
        m = dataclasses.replace(m, other_downsample=cfg.other_downsample)
    return dataclasses.replace(m, encoder=src.config) if src is not None else m


def check(cfg: BarlowTwinsRecipeConfig) -> None:
    m = model_config(cfg, init_source(cfg))     # loads the init model once to check it before any work
    if cfg.data.views != 2:
        raise RecipeError("barlow-twins-compact needs data.views=2")
    if cfg.data.batch_size < 2 and cfg.w_utt > 0:
        raise RecipeError("the utterance-level Barlow Twins term needs data.batch_size >= 2")
    if cfg.w_utt <= 0 and cfg.w_frame <= 0:
        raise RecipeError("w_utt and w_frame are both 0: nothing to train")
    if cfg.views_mode not in ("split", "perturb"):
        raise RecipeError(f"views_mode must be split or perturb, got {cfg.views_mode!r}")
    if cfg.data.same_crop != (cfg.views_mode == "perturb"):
        raise RecipeError(f"views_mode={cfg.views_mode} needs data.same_crop={cfg.views_mode == 'perturb'} "
                          f"(split: two disjoint crops; perturb: one crop perturbed twice)")
    if cfg.views_mode == "split" and not cfg.data.disjoint_views:
        raise RecipeError("views_mode=split needs data.disjoint_views=true: the utterance term's crops must share no sample")
    n_layers = m.encoder.num_layers + 1
    if not -n_layers <= cfg.frame_layer < n_layers:
        raise RecipeError(f"frame_layer={cfg.frame_layer}: the {cfg.preset} encoder has layers 0..{n_layers - 1}")
    if (err := content_layers_error(cfg.content_layers, n_layers)) is not None:
        raise RecipeError(err)
    if cfg.content_layers and cfg.w_frame > 0 and not 0 <= cfg.frame_layer <= cfg.content_layers:
        raise RecipeError(f"frame_layer={cfg.frame_layer} with content_layers={cfg.content_layers}: the frame term shapes "
                          f"the content stream, so frame_layer must be one of its layers 0..{cfg.content_layers}")
    if cfg.detach_content and not cfg.content_layers:
        raise RecipeError("detach_content=true separates the content layers from the other ones: set content_layers too")
    if cfg.other_downsample < 0:
        raise RecipeError(f"other_downsample={cfg.other_downsample}: use 0 (the preset's) or a number of frames >= 1")
    if cfg.freeze_layers:
        if not cfg.init_ckpt:
            raise RecipeError(f"freeze_layers={cfg.freeze_layers} keeps layers as init_ckpt made them, but init_ckpt is "
                              f"empty (random init): set init_ckpt or freeze_layers=0")
        top = cfg.content_layers if cfg.content_layers else n_layers - 1
        if not 0 < cfg.freeze_layers <= top:
            raise RecipeError(f"freeze_layers={cfg.freeze_layers}: use 0..{top} (at least one layer of the content "
                              f"stream must train)")
    for option in ("speaker_perturb", "voice_perturb"):
        if (err := perturb_error(option, getattr(cfg, option))) is not None:
            raise RecipeError(err)
    if cfg.utt_rows not in ("segments", "utterances"):
        raise RecipeError(f"utt_rows must be segments or utterances, got {cfg.utt_rows!r}")
    if cfg.w_utt > 0:
        from pretrain.data import frames

        per_crop = 1 if cfg.utt_rows == "utterances" else -(-frames(int(cfg.data.crop_s * SAMPLE_RATE)) // m.other_downsample)
        rows, dim = cfg.data.batch_size * per_crop, m.projector_dims[-1]
        if rows - 1 < dim:
            raise RecipeError(f"the utterance Barlow Twins term would correlate {rows} rows ({cfg.data.batch_size} crops x "
                              f"{per_crop}) in {dim} dimensions: rank <= {rows - 1}, stuck at its floor. Use "
                              f"utt_rows=segments, a larger data.batch_size, or a smaller projector")


def run(cfg: BarlowTwinsRecipeConfig, ctx: RunContext):
    from upstream.registry import build_model

    src = init_source(cfg)
    mcfg = model_config(cfg, src)
    if src is not None:
        pin_source(ctx, src, "init_ckpt")
    bank = audio_bank(ctx, cfg.data)
    ctx.log(f"{len(bank)} training utterances, {bank.seconds / 3600:.2f} h")
    aug_bank = AugmentBank.build(ctx.cache / "augment", bank, cfg.bank) if ctx.is_main else None
    ctx.barrier()
    if aug_bank is None:
        aug_bank = AugmentBank.build(ctx.cache / "augment", bank, cfg.bank)
    torch.manual_seed(ctx.seed)
    model = build_model(MODEL, mcfg)
    if src is not None:
        model.encoder.load_state_dict(src.model.state_dict())
        ctx.notes["init"] = src.identity
    model.encoder.freeze_bottom(cfg.freeze_layers)
    obj = BarlowTwinsObjective(model, cfg)
    views = TwoViews(aug_bank, cfg.views)
    aligned = None
    if cfg.views_mode == "split":
        warp = SpeakerPerturb(cfg.speaker_perturb)
        aligned = lambda w, gen: views(warp(w, gen), gen)   # noqa: E731  view A's crop, another vocal tract
    voice = SpeakerPerturb(cfg.voice_perturb, "voice_perturb").pair if cfg.voice_perturb.prob > 0 else None
    batches = CropBatches(bank, cfg.data, ctx.seed, view_augment=views, aligned_augment=aligned, pair_augment=voice)
    run_phase(ctx, "train", cfg.train, obj, batches)
    init = f"Initialised from `{ctx.notes['init']}`. " if src is not None else "Random init. "
    if cfg.views_mode == "split":
        method = (f"Utterance term: BT between {cfg.utt_rows} projections of two disjoint {cfg.data.crop_s:g}-s crops of "
                  f"each utterance (same speaker, other words), each perturbed (gain, band-limiting, noise/babble, reverb, "
                  f"time masking). Frame term: BT between aligned frames of layer {cfg.frame_layer} of crop A and of a "
                  f"formant-warped (alpha {cfg.speaker_perturb.alpha[0]}-{cfg.speaker_perturb.alpha[1]}) perturbed copy of "
                  f"it (<= {cfg.max_frames} pairs). Loss {cfg.w_utt} x utterance + {cfg.w_frame} x frame, "
                  f"lambda={cfg.lambd}, normalize={cfg.normalize}.")
    else:
        method = (f"Two perturbed views of each {cfg.data.crop_s:g}-s crop (gain, band-limiting, noise/babble, reverb, "
                  f"time masking). Loss {cfg.w_utt} x BT({cfg.utt_rows} projections) + {cfg.w_frame} x BT(aligned frame "
                  f"projections, <= {cfg.max_frames} pairs), lambda={cfg.lambd}, normalize={cfg.normalize}.")
    if cfg.voice_perturb.prob > 0:
        a = cfg.voice_perturb.alpha
        method += (f" Before the view perturbations, {cfg.voice_perturb.prob:.0%} of the utterances have both views "
                   f"formant-warped by one factor (log-uniform {a[0]}-{a[1]}): a new vocal tract that the two views share.")
    if cfg.content_layers:
        method += (f" Streams split by layers: content = H_0..H_{cfg.content_layers}, other = H_{cfg.content_layers + 1}.."
                   f"H_{mcfg.encoder.num_layers} averaged over {mcfg.other_downsample} frames.")
    if cfg.detach_content:
        method += " No gradient from the other layers reaches the content ones (the frame term alone trains those)."
    if cfg.freeze_layers:
        method += f" Hidden states 0..{cfg.freeze_layers - 1} kept as initialised (not trained)."
    return export_final(ctx, model, MODEL, mcfg, cfg, ["train"], extra_card="## Method\n\n" + init + method + "\n")
