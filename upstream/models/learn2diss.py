"""Learn2Diss (Krishna & Ganapathy, arXiv 2407.02543): frozen backbone + frame encoder g +
utterance encoder h, disentangled by minimising a CLUB estimate of I(h-embedding; g-frames).

The backbone config describes a whole pre-trained HuBERT-shaped model with L layers (HuBERT
Base, or the project's hubert_compact). Its CNN and first L - M transformer layers are the
frozen feature extractor; its top M layers become the trainable frame encoder g (initialised
from the pre-trained top layers: `init_from_backbone`), so extracting the content stream costs
exactly one pass of the parent model (*inferred* reading of "the frame-level encoder is
initialised with pre-trained HuBERT/wavLM"; M is `frame_layers`).

    wav -> CNN + layers 1 .. L-M (frozen)          -> B_0 .. B_{L-M}
           g: layers L-M+1 .. L (trainable)        -> G_1 .. G_M        (frame / content)
           h: ECAPA-TDNN (speechbrain, masked) on B_k -> per-frame block outputs + embedding

StreamOutput: content = [B_0 .. B_{L-M}, G_1 .. G_M] (L + 1 layers, content_rate 320; equal to
the parent's hidden states before training); other = h's per-frame outputs [TDNN, SE-Res2Net
x3, MFA] (same frame rate, other_rate 320); utterance = h's embedding (B, ecapa_lin). The input
layer k of h (`utt_input_layer`, 0 <= k <= L - M) is a design choice (*inferred*; default: a
middle layer, where HuBERT-style models hold most speaker information).

Training hooks (pretrain/ uses these; the frozen part stays in eval mode under `train()` and has
requires_grad=False when `freeze_backbone`):
  * `init_from_backbone(hubert)`: copy a trained/imported `HubertCompact` with the backbone
    config's shape into the frozen part and g.
  * `backbone_hidden(wav, wav_len) -> (layers, lengths)`: frozen layers B_0 .. B_{L-M} (no grad),
    to compute once and cache.
  * `frame_encode(layers, lengths) -> list[Tensor]`: g's M outputs (pseudo-con loss on the last).
  * `utterance_encode(layers, lengths) -> (frames, pooled_stats, embedding)`: h on layer k;
    `pooled_stats` (B, 2C) are the attentive statistics after BN, before h's final linear layer.
  * `streams_from_backbone(layers, lengths) -> StreamOutput`: the forward from cached layers.
  * `build_club(hidden)`: a fresh `CLUBSample(x=utterance dim, y=frame dim)` estimator, a
    training-only head owned by the trainer (not in this module's state_dict). Stage 2:
    lambda * club(utterance, content[-1], mask) with the estimator frozen, then estimator steps
    on `club.learning_loss` with the encoders' outputs detached.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..nn.club import CLUBSample
from ..nn.ecapa import MaskedECAPA
from ..nn.masking import lengths_to_mask
from ..nn.transformer import TransformerEncoder
from .hubert import (HUBERT_BASE, HUBERT_COMPACT, HUBERT_TINY, HubertCompact, HubertConfig,
                     build_encoder, build_frontend)
from .output import StreamOutput


@dataclass
class Learn2DissConfig:
    backbone: HubertConfig = field(default_factory=lambda: HUBERT_BASE)
    frame_layers: int = 2                 # M: the backbone's top M layers form g
    utt_input_layer: int = 6              # backbone layer fed to h
    ecapa_channels: tuple[int, ...] = (512, 512, 512, 512, 1536)
    ecapa_kernels: tuple[int, ...] = (5, 3, 3, 3, 1)
    ecapa_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    ecapa_attention: int = 128
    ecapa_res2net_scale: int = 8
    ecapa_se: int = 128
    ecapa_lin: int = 256                  # utterance embedding size
    freeze_backbone: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "Learn2DissConfig":
        d = dict(d)
        if isinstance(d.get("backbone"), dict):
            d["backbone"] = HubertConfig.from_dict(d["backbone"])
        for k in ("ecapa_channels", "ecapa_kernels", "ecapa_dilations"):
            if k in d:
                d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


LEARN2DISS_BASE = Learn2DissConfig()
LEARN2DISS_COMPACT = Learn2DissConfig(
    backbone=HUBERT_COMPACT, frame_layers=1, utt_input_layer=2,
    ecapa_channels=(128, 128, 128, 128, 384), ecapa_attention=64, ecapa_res2net_scale=4,
    ecapa_se=64, ecapa_lin=128,
)
LEARN2DISS_TINY = Learn2DissConfig(
    backbone=HUBERT_TINY, frame_layers=1, utt_input_layer=1,
    ecapa_channels=(16, 16, 16, 16, 48), ecapa_attention=8, ecapa_res2net_scale=4,
    ecapa_se=8, ecapa_lin=16,
)


class Learn2Diss(nn.Module):
    """forward(wav (B, S), wav_len (B,)) -> StreamOutput. Build with `Learn2Diss.from_config`.

    Example:
        >>> from upstream.models.learn2diss import Learn2Diss, LEARN2DISS_TINY
        >>> m = Learn2Diss.from_config(LEARN2DISS_TINY).eval()
        >>> out = m(torch.randn(2, 8000), torch.tensor([8000, 5000]))
        >>> len(out.content), len(out.other), tuple(out.utterance.shape)
        (3, 5, (2, 16))
    """

    config_cls = Learn2DissConfig

    def __init__(self, backbone: HubertCompact, frame_encoder: TransformerEncoder,
                 utterance_encoder: MaskedECAPA, utt_input_layer: int, freeze_backbone: bool = True):
        super().__init__()
        if not 0 <= utt_input_layer < backbone.num_layers:
            raise ValueError(f"utt_input_layer {utt_input_layer} outside the frozen layers "
                             f"0..{backbone.num_layers - 1}")
        self.backbone = backbone
        self.frame_encoder = frame_encoder
        self.utterance_encoder = utterance_encoder
        self.utt_input_layer = utt_input_layer
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    @classmethod
    def from_config(cls, cfg: Learn2DissConfig | dict) -> "Learn2Diss":
        if isinstance(cfg, dict):
            cfg = Learn2DissConfig.from_dict(cfg)
        b = cfg.backbone
        if not 1 <= cfg.frame_layers <= b.num_layers:
            raise ValueError(f"frame_layers must be in 1..{b.num_layers} (the backbone's layers), "
                             f"got {cfg.frame_layers}")
        frozen = b.num_layers - cfg.frame_layers
        backbone = HubertCompact(build_frontend(b), build_encoder(b, frozen, final_norm=False))
        g = build_encoder(b, cfg.frame_layers, top=True)
        h = MaskedECAPA(
            b.hidden_size, lin_neurons=cfg.ecapa_lin, channels=cfg.ecapa_channels,
            kernel_sizes=cfg.ecapa_kernels, dilations=cfg.ecapa_dilations,
            attention_channels=cfg.ecapa_attention, res2net_scale=cfg.ecapa_res2net_scale,
            se_channels=cfg.ecapa_se,
        )
        return cls(backbone, g, h, cfg.utt_input_layer, cfg.freeze_backbone)

    def train(self, mode: bool = True) -> "Learn2Diss":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    @property
    def content_rate(self) -> int:
        return self.backbone.content_rate

    @property
    def other_rate(self) -> int:
        return self.backbone.content_rate

    @property
    def utterance_dim(self) -> int:
        return self.utterance_encoder.lin_neurons

    @property
    def frame_dim(self) -> int:
        return self.frame_encoder.dim

    def output_lengths(self, wav_len: Tensor) -> Tensor:
        return self.backbone.output_lengths(wav_len)

    # ---- training hooks -------------------------------------------------------------------
    def init_from_backbone(self, hubert: HubertCompact) -> None:
        """Load a whole pre-trained `HubertCompact` (L layers): CNN + layers 1..L-M into the
        frozen part, layers L-M+1..L into g (which then continues exactly where it was cut)."""
        frozen = len(self.backbone.encoder.layers)
        src = hubert.state_dict()
        own = {}
        for k, v in src.items():
            if k.startswith("encoder.layers."):
                i = int(k.split(".")[2])
                rest = k.split(".", 3)[3]
                if i < frozen:
                    own[f"backbone.encoder.layers.{i}.{rest}"] = v
                else:
                    own[f"frame_encoder.layers.{i - frozen}.{rest}"] = v
            elif k == "encoder.layer_norm.weight" or k == "encoder.layer_norm.bias":
                # post-LN: input LayerNorm (lower part); pre-LN: final LayerNorm (upper part)
                part = "frame_encoder" if self.frame_encoder.layer_norm_first else "backbone.encoder"
                own[f"{part}.{k.split('.', 1)[1]}"] = v
            elif k.startswith("encoder.rel_pos_bias."):
                # WavLM: one relative position bias shared by all layers, so both parts hold it
                own[f"backbone.{k}"] = v
                own[f"frame_encoder.{k.split('.', 1)[1]}"] = v
            else:
                own[f"backbone.{k}"] = v
        missing, unexpected = self.load_state_dict(own, strict=False)
        bad = [k for k in missing if k.startswith(("backbone.", "frame_encoder."))]
        if bad or unexpected:
            raise ValueError(f"backbone does not fit this Learn2Diss config: missing {bad[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")

    def backbone_hidden(self, wav: Tensor, wav_len: Tensor) -> tuple[list[Tensor], Tensor]:
        if self.freeze_backbone:
            with torch.no_grad():
                out = self.backbone(wav, wav_len)
        else:
            out = self.backbone(wav, wav_len)
        return out.content, out.content_len

    def frame_encode(self, layers: list[Tensor], lengths: Tensor) -> list[Tensor]:
        x = layers[-1]
        return self.frame_encoder(x, lengths_to_mask(lengths, x.shape[1]))[1:]

    def utterance_encode(self, layers: list[Tensor], lengths: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        return self.utterance_encoder.pool(layers[self.utt_input_layer], lengths)

    def streams_from_backbone(self, layers: list[Tensor], lengths: Tensor) -> StreamOutput:
        g = self.frame_encode(layers, lengths)
        frames, _, emb = self.utterance_encode(layers, lengths)
        return StreamOutput(content=list(layers) + g, content_len=lengths, other=frames,
                            other_len=lengths.clone(), utterance=emb)

    def build_club(self, hidden: int = 512) -> CLUBSample:
        return CLUBSample(self.utterance_dim, self.frame_dim, hidden)

    # ---- inference ------------------------------------------------------------------------
    def forward(self, wav: Tensor, wav_len: Tensor) -> StreamOutput:
        layers, lengths = self.backbone_hidden(wav, wav_len)
        return self.streams_from_backbone(layers, lengths)
