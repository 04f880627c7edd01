"""Learn2Diss (Krishna & Ganapathy, arXiv 2407.02543): frozen backbone + frame encoder g +
utterance encoder h, disentangled by minimising a CLUB estimate of I(h-embedding; g-frames).

    wav -> backbone (HuBERT-shaped CNN + transformer, frozen) -> layers B_0 .. B_L
           g: M transformer layers on B_L                     -> G_1 .. G_M   (frame / content)
           h: ECAPA-TDNN (speechbrain, masked) on B_k         -> per-frame block outputs and the
                                                                 pooled utterance embedding

StreamOutput: content = [B_0 .. B_L, G_1 .. G_M] (content_rate 320); other = h's per-frame
outputs [TDNN, SE-Res2Net x3, MFA] (same frame rate, other_rate 320); utterance = h's
embedding (B, ecapa_lin). The input layer k of h (`utt_input_layer`) is a design choice
(*inferred*; default: the middle backbone layer, where HuBERT-style models hold most speaker
information). The backbone is either the project's hubert_compact or HuBERT weights imported
onto the same modules (see upstream/checkpoint.py).

Training hooks (pretrain/ uses these; the backbone is frozen: `train()` keeps it in eval mode
and its parameters have requires_grad=False when `freeze_backbone`):
  * `backbone_hidden(wav, wav_len) -> (layers, lengths)`: frozen backbone layers (no grad), to
    compute once and cache.
  * `frame_encode(layers, lengths) -> list[Tensor]`: g's M layer outputs (pseudo-con loss on the
    last one).
  * `utterance_encode(layers, lengths) -> (frames, pooled_stats, embedding)`: h on layer k;
    `pooled_stats` (B, 2C) is the attentive statistics before h's final linear layer.
  * `streams_from_backbone(layers, lengths) -> StreamOutput`: the forward from cached layers.
  * `build_club(hidden)`: a fresh `CLUBSample(x=utterance dim, y=frame dim)` estimator; it is a
    training-only head owned by the trainer (not part of this module's state_dict). Stage 2:
    λ · club(utterance, content[-1], mask) with the estimator frozen, then estimator steps on
    `club.learning_loss` with the encoders detached.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..nn.club import CLUBSample
from ..nn.ecapa import MaskedECAPA
from ..nn.masking import lengths_to_mask
from ..nn.transformer import TransformerEncoder
from .hubert import HUBERT_BASE, HUBERT_COMPACT, HUBERT_TINY, HubertCompact, HubertConfig
from .output import StreamOutput


@dataclass
class Learn2DissConfig:
    backbone: HubertConfig = field(default_factory=lambda: HUBERT_BASE)
    frame_layers: int = 2                 # M transformer layers of g (same width/heads/FFN)
    utt_input_layer: int = 6              # backbone layer fed to h
    ecapa_channels: tuple[int, ...] = (512, 512, 512, 512, 1536)
    ecapa_kernels: tuple[int, ...] = (5, 3, 3, 3, 1)
    ecapa_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    ecapa_attention: int = 128
    ecapa_res2net_scale: int = 8
    ecapa_se: int = 128
    ecapa_lin: int = 256                  # utterance embedding size
    freeze_backbone: bool = True
    dropout: float = 0.1

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
    ecapa_channels=(80, 80, 80, 80, 240), ecapa_attention=40, ecapa_res2net_scale=4,
    ecapa_se=40, ecapa_lin=128,
)
LEARN2DISS_TINY = Learn2DissConfig(
    backbone=HUBERT_TINY, frame_layers=1, utt_input_layer=1,
    ecapa_channels=(16, 16, 16, 16, 48), ecapa_attention=8, ecapa_res2net_scale=4,
    ecapa_se=8, ecapa_lin=16, dropout=0.0,
)


class Learn2Diss(nn.Module):
    """forward(wav (B, S), wav_len (B,)) -> StreamOutput. Build with `Learn2Diss.from_config`.

    Example:
        >>> from upstream.models.learn2diss import Learn2Diss, LEARN2DISS_TINY
        >>> m = Learn2Diss.from_config(LEARN2DISS_TINY).eval()
        >>> out = m(torch.randn(2, 8000), torch.tensor([8000, 5000]))
        >>> len(out.content), len(out.other), tuple(out.utterance.shape)
        (4, 5, (2, 16))
    """

    config_cls = Learn2DissConfig

    def __init__(self, backbone: HubertCompact, frame_encoder: TransformerEncoder,
                 utterance_encoder: MaskedECAPA, utt_input_layer: int, freeze_backbone: bool = True):
        super().__init__()
        if not 0 <= utt_input_layer < backbone.num_layers:
            raise ValueError(f"utt_input_layer {utt_input_layer} outside 0..{backbone.num_layers - 1}")
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
        backbone = HubertCompact.from_config(b)
        g = TransformerEncoder(
            dim=b.hidden_size, layers=cfg.frame_layers, heads=b.num_heads, ffn_dim=b.ffn_dim,
            layer_norm_first=b.layer_norm_first, pos_conv_kernel=0, input_norm=False,
            dropout=cfg.dropout, attention_dropout=cfg.dropout, eps=b.layer_norm_eps,
        )
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
