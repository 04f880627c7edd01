"""hubert_compact: a single-stream HuBERT-shaped backbone (CNN front-end + transformer).

Used on its own (registry name `hubert_compact`), as Learn2Diss's frozen backbone, and as the
module layout the HF / fairseq importers map HuBERT weights onto. The `base` preset has the
shape of HuBERT Base (transformers' default `HubertConfig`: 7x512 CNN, 12 layers, 768 wide,
3072 FFN, 12 heads, post-LN, positional conv 128/16); `compact` trains on CPU; `tiny` is for
tests. `compact` and `tiny` read 80-bin log-mel frames stacked to 20 ms (MelHuBERT) and use
pre-LN; `base` keeps the raw-waveform CNN so imported HuBERT/WavLM weights map one to one.
`rel_pos="wavlm"` adds WavLM's gated relative position bias (transformers' `WavLMModel` maps onto
it, see upstream/importers.py); the default "none" is HuBERT.

Output: `StreamOutput(content=[layer 0 .. layer L], other=[], utterance=None)`, where layer 0 is
the transformer input (front-end projection + positional conv [+ LayerNorm in post-LN]), i.e.
exactly transformers' `hidden_states`.

Training hooks (used by pretrain/):
  * `features(wav, wav_len) -> (feat (B, T, D), feat_len)`: front-end projection (unmasked).
  * `cnn_features(wav, wav_len) -> (proj, cnn (B, T, C), feat_len)`: also the raw CNN output.
  * `encode(feat, feat_len, mask=None) -> list[Tensor]`: the transformer on features, with the
    frames where `mask` (B, T) bool is True replaced by the learned `masked_spec_embed`
    (HuBERT masked prediction); returns all L+1 layers.
  * `apply_mask(feat, mask)`: the masking step alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..nn.conv_frontend import ConvFrontEnd
from ..nn.logmel_frontend import LogMelFrontEnd
from ..nn.masking import lengths_to_mask
from ..nn.transformer import TransformerEncoder
from .output import StreamOutput


@dataclass
class HubertConfig:
    frontend: str = "conv"            # "conv": raw-waveform CNN (HuBERT); "logmel": MelHuBERT input
    n_mels: int = 80                  # logmel only
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    conv_norm: str = "group"          # "group" (HuBERT Base) or "layer" (HuBERT Large)
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    layer_norm_first: bool = False    # False: post-LN (Base); True: pre-LN (Large)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    feat_proj_layer_norm: bool = True
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.0
    layerdrop: float = 0.0
    layer_norm_eps: float = 1e-5
    rel_pos: str = "none"             # "wavlm": WavLM's gated relative position bias (off: HuBERT)
    num_buckets: int = 320            # rel_pos="wavlm" only: relative position buckets
    max_bucket_distance: int = 800    # rel_pos="wavlm" only: distance of the last bucket

    @classmethod
    def from_dict(cls, d: dict) -> "HubertConfig":
        d = dict(d)
        for k in ("conv_dim", "conv_kernel", "conv_stride"):
            if k in d:
                d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


HUBERT_BASE = HubertConfig()
# compact / tiny: log-mel input (a raw-waveform CNN does not learn a filterbank in a few hundred
# CPU steps) and pre-LN (stable for small transformers trained briefly at a high learning rate).
# A config dict without `frontend` (checkpoints written before it existed) means "conv".
HUBERT_COMPACT = HubertConfig(
    frontend="logmel", conv_dim=(128,) * 7, hidden_size=192, num_layers=4, num_heads=4,
    ffn_dim=768, layer_norm_first=True, pos_conv_kernel=32, pos_conv_groups=12, dropout=0.1,
    attention_dropout=0.1,
)
HUBERT_TINY = HubertConfig(
    frontend="logmel", conv_dim=(16,) * 7, hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64,
    layer_norm_first=True, pos_conv_kernel=8, pos_conv_groups=4, dropout=0.0, attention_dropout=0.0,
)


def _conv_frontend(cfg: HubertConfig) -> ConvFrontEnd:
    return ConvFrontEnd(
        conv_dim=cfg.conv_dim, conv_kernel=cfg.conv_kernel, conv_stride=cfg.conv_stride,
        conv_bias=cfg.conv_bias, norm=cfg.conv_norm, out_dim=cfg.hidden_size,
        proj_layer_norm=cfg.feat_proj_layer_norm, dropout=cfg.feat_proj_dropout,
    )


def _logmel_frontend(cfg: HubertConfig) -> LogMelFrontEnd:
    return LogMelFrontEnd(n_mels=cfg.n_mels, out_dim=cfg.hidden_size, dropout=cfg.feat_proj_dropout)


FRONTENDS = {"conv": _conv_frontend, "logmel": _logmel_frontend}


def build_frontend(cfg: HubertConfig) -> ConvFrontEnd | LogMelFrontEnd:
    """The front-end named by `cfg.frontend` (both: 320 samples per frame, same output lengths)."""
    if cfg.frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {', '.join(FRONTENDS)}, got {cfg.frontend!r}")
    return FRONTENDS[cfg.frontend](cfg)


def build_encoder(cfg: HubertConfig, num_layers: int | None = None, *, final_norm: bool = True,
                  top: bool = False) -> TransformerEncoder:
    """The transformer of `cfg` (or its first `num_layers` layers). `final_norm=False`: a lower
    part of a cut stack; `top=True`: an upper part (no positional conv, no input LayerNorm)."""
    return TransformerEncoder(
        dim=cfg.hidden_size, layers=cfg.num_layers if num_layers is None else num_layers,
        heads=cfg.num_heads, ffn_dim=cfg.ffn_dim, layer_norm_first=cfg.layer_norm_first,
        pos_conv_groups=cfg.pos_conv_groups, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        act_dropout=cfg.activation_dropout, layerdrop=cfg.layerdrop, eps=cfg.layer_norm_eps,
        final_norm=final_norm, pos_conv_kernel=0 if top else cfg.pos_conv_kernel,
        input_norm=not top, rel_pos=cfg.rel_pos, num_buckets=cfg.num_buckets,
        max_bucket_distance=cfg.max_bucket_distance,
    )


class HubertCompact(nn.Module):
    """forward(wav (B, S) float, wav_len (B,) long) -> StreamOutput (content only).

    Example:
        >>> from upstream.models.hubert import HubertCompact, HUBERT_TINY
        >>> m = HubertCompact.from_config(HUBERT_TINY).eval()
        >>> out = m(torch.randn(2, 8000), torch.tensor([8000, 4000]))
        >>> len(out.content), out.content_len.tolist()
        (3, [24, 12])
    """

    config_cls = HubertConfig

    def __init__(self, frontend: ConvFrontEnd | LogMelFrontEnd, encoder: TransformerEncoder):
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.masked_spec_embed = nn.Parameter(torch.empty(encoder.dim).uniform_())

    @classmethod
    def from_config(cls, cfg: HubertConfig | dict) -> "HubertCompact":
        if isinstance(cfg, dict):
            cfg = HubertConfig.from_dict(cfg)
        return cls(build_frontend(cfg), build_encoder(cfg))

    @property
    def content_rate(self) -> int:
        return self.frontend.rate

    @property
    def other_rate(self) -> int:
        return self.frontend.rate

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers) + 1

    def output_lengths(self, wav_len: Tensor) -> Tensor:
        return self.frontend.output_lengths(wav_len)

    def bottom_modules(self, n: int) -> list[nn.Module]:
        """The modules that compute hidden states 0 .. n-1: the front-end and the positional conv
        (with a post-LN stack's input LayerNorm) for state 0, transformer layer i for state i, and a
        pre-LN stack's final LayerNorm when n covers the last state (n = 0: none)."""
        if not 0 <= n <= self.num_layers:
            raise ValueError(f"bottom_modules({n}): this model has hidden states 0..{self.num_layers - 1}")
        if n == 0:
            return []
        enc = self.encoder
        mods: list[nn.Module] = [self.frontend] + ([enc.pos_conv_embed] if enc.pos_conv_embed is not None else [])
        if not enc.layer_norm_first:
            mods.append(enc.layer_norm)
        mods += list(enc.layers[: n - 1])
        if enc.layer_norm_first and enc.final_norm and n == self.num_layers:
            mods.append(enc.layer_norm)
        return mods

    def freeze_bottom(self, n: int) -> None:
        """Hidden states 0 .. n-1 stay as they are: their modules get no gradients (n = 0: nothing frozen)."""
        for m in self.bottom_modules(n):
            m.requires_grad_(False)

    # ---- training hooks -------------------------------------------------------------------
    def features(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        return self.frontend(wav, wav_len)

    def cnn_features(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.frontend.conv_features(wav, wav_len)

    def apply_mask(self, feat: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            return feat
        return torch.where(mask.unsqueeze(-1), self.masked_spec_embed.to(feat.dtype), feat)

    def encode(self, feat: Tensor, feat_len: Tensor, mask: Tensor | None = None,
               detach_from: int | None = None) -> list[Tensor]:
        """Every hidden state; ``detach_from=k``: no gradient from the states above k reaches k or below."""
        pad = lengths_to_mask(feat_len, feat.shape[1])
        return self.encoder(self.apply_mask(feat, mask), pad, detach_from=detach_from)

    # ---- inference ------------------------------------------------------------------------
    def forward(self, wav: Tensor, wav_len: Tensor) -> StreamOutput:
        feat, feat_len = self.features(wav, wav_len)
        hidden = self.encode(feat, feat_len)
        return StreamOutput(
            content=hidden, content_len=feat_len, other=[],
            other_len=torch.zeros_like(feat_len), utterance=None,
        )
