"""JOOCI (jointly optimising other and content information): one forward pass, two encoders.

    wav -> shared CNN front-end (E^S, HuBERT layout, 320 samples/frame) -> F (B, T_c, D)
       content encoder E^C: transformer on F (masked during pre-training)  -> C_0 .. C_n
       other encoder E^O:   AvgPool_DF(F) -> n blocks [Res2Net(k=1) -> split-and-append with
                            C_i.detach() -> depthwise conv (kernel = stride = DF+1) ->
                            Res2Net(k=3, dil 4) -> residual + BN]              -> O_0 .. O_n
       post-net:            ASP(O_n) -> BN  (= utterance)   [-> FC(512): pre-training only]
       content decoder:     GRL(1/10) -> 1-layer transformer decoder -> pseudo-label logits
                            (pre-training only)

No gradient flows from the other encoder into the content encoder: the content layers enter
the other encoder detached (the shared CNN does receive gradients from both, as in the paper's
second stage; in its first stage, `freeze_content()`, shared CNN + content encoder are frozen, so
a randomly initialised other encoder and the reversed decoder never reach the CNN).
Other block i is fed content layer round((i + 1) * n_content / n_other) (layer i + 1 when the
counts match, as in the paper's 12 + 12). `content_rate` = 320, `other_rate` = 320 * DF.

StreamOutput: content = [C_0 .. C_n]; other = [O_0 .. O_n] (O_0: the pooled, projected shared
features); utterance = ASP + BN of O_n (the paper's best SID feature).

Training hooks (pretrain/ uses these):
  * `features(wav, wav_len) -> (F, lengths)`: shared front-end output (unmasked).
  * `content_encoder.apply_mask(F, mask)` / `encode_content(F, lengths, mask)`: the content
    transformer on masked features (mask (B, T_c) bool, True = replace by the mask embedding);
    returns every layer for the multicluster masked prediction loss.
  * `encode_other(F, lengths, content_layers) -> (other layers, other_len)`.
  * `postnet(other_last, other_len) -> (pooled (B, 2D) before BN, after BN, FC(512) output)`.
  * `decode(other_last, other_len, content_len) -> logits (B, T_c, vocab)` through the GRL.
  * `forward_train(wav, wav_len, mask=None, shared_from_content_only=False, content_wav=None) ->
    JoociTrainOutput` does all of it in one pass (two front-end passes with ``content_wav``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..nn.content_decoder import ContentDecoder
from ..nn.grl import GradientReversal
from ..nn.masked_norm import MaskedBatchNorm1d
from ..nn.masking import lengths_to_mask
from ..nn.other_encoder import OtherEncoder
from ..nn.pooling import AttentiveStatsPool
from .hubert import HUBERT_BASE, HUBERT_COMPACT, HUBERT_TINY, HubertCompact, HubertConfig
from .output import StreamOutput


@dataclass
class JoociConfig:
    encoder: HubertConfig = field(default_factory=lambda: HUBERT_BASE)  # shared CNN + content
    other_dim: int = 768
    other_blocks: int = 12
    downsample: int = 10              # DF: other stream at 320 * DF samples per frame
    res2net_scale: int = 8
    res2net_dilation: int = 4
    asp_attention: int = 128
    fc_dim: int = 512                 # post-net FC (teacher embedding size), pre-training only
    decoder_heads: int = 8
    decoder_ffn: int = 3072
    decoder_vocab: int = 1005
    grl_scale: float = 0.1

    @classmethod
    def from_dict(cls, d: dict) -> "JoociConfig":
        d = dict(d)
        if isinstance(d.get("encoder"), dict):
            d["encoder"] = HubertConfig.from_dict(d["encoder"])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


JOOCI_BASE = JoociConfig()
JOOCI_COMPACT = JoociConfig(
    encoder=HUBERT_COMPACT, other_dim=192, other_blocks=4, downsample=10, res2net_scale=4,
    asp_attention=48, fc_dim=256, decoder_heads=4, decoder_ffn=192, decoder_vocab=100,
)
JOOCI_TINY = JoociConfig(
    encoder=HUBERT_TINY, other_dim=16, other_blocks=2, downsample=4, res2net_scale=4,
    asp_attention=8, fc_dim=8, decoder_heads=2, decoder_ffn=32, decoder_vocab=7,
)


@dataclass
class JoociTrainOutput:
    """Everything the JOOCI losses need from one pre-training forward pass."""

    streams: StreamOutput            # content from the (masked) input, other, utterance
    features: Tensor                 # (B, T_c, D) shared front-end output, unmasked
    pooled: Tensor                   # (B, 2 D_o) ASP output before BN
    projected: Tensor                # (B, fc_dim) FC(512) output (student embedding)
    decoder_logits: Tensor           # (B, T_c, vocab), computed through the GRL


class Jooci(nn.Module):
    """forward(wav (B, S), wav_len (B,)) -> StreamOutput. Build with `Jooci.from_config`.

    Example:
        >>> from upstream.models.jooci import Jooci, JOOCI_TINY
        >>> m = Jooci.from_config(JOOCI_TINY).eval()
        >>> out = m(torch.randn(2, 8000), torch.tensor([8000, 5000]))
        >>> out.content_len.tolist(), out.other_len.tolist(), tuple(out.utterance.shape)
        ([24, 15], [6, 4], (2, 32))
    """

    config_cls = JoociConfig

    def __init__(self, content_encoder: HubertCompact, other_encoder: OtherEncoder,
                 pool: AttentiveStatsPool, fc_dim: int, decoder: ContentDecoder,
                 grl_scale: float = 0.1):
        super().__init__()
        self.content_encoder = content_encoder      # shared CNN front-end + content transformer
        self.other_encoder = other_encoder
        self.pool = pool
        self.pool_norm = MaskedBatchNorm1d(pool.out_dim)
        self.fc = nn.Linear(pool.out_dim, fc_dim)    # pre-training only
        self.grl = GradientReversal(grl_scale)       # pre-training only
        self.decoder = decoder                       # pre-training only
        n_c = content_encoder.num_layers - 1
        n_o = len(other_encoder.blocks)
        self.feed_layers = [max(1, min(n_c, round((i + 1) * n_c / n_o))) for i in range(n_o)]
        self.content_frozen = False

    def freeze_content(self, frozen: bool = True) -> None:
        """JOOCI's first pre-training stage: the shared CNN + content encoder are frozen (no
        gradients, eval mode under `train()`, computed without a graph) and only the other
        encoder, post-net and decoder learn; `freeze_content(False)` for the second stage."""
        self.content_frozen = frozen
        self.content_encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Jooci":
        super().train(mode)
        if self.content_frozen:
            self.content_encoder.eval()
        return self

    @classmethod
    def from_config(cls, cfg: JoociConfig | dict) -> "Jooci":
        if isinstance(cfg, dict):
            cfg = JoociConfig.from_dict(cfg)
        enc = HubertCompact.from_config(cfg.encoder)
        d = cfg.encoder.hidden_size
        other = OtherEncoder(in_dim=d, content_dim=d, dim=cfg.other_dim, blocks=cfg.other_blocks,
                             factor=cfg.downsample, scale=cfg.res2net_scale,
                             dilation=cfg.res2net_dilation)
        pool = AttentiveStatsPool(cfg.other_dim, attention_channels=cfg.asp_attention)
        dec = ContentDecoder(cfg.other_dim, cfg.decoder_heads, cfg.decoder_ffn, cfg.decoder_vocab)
        return cls(enc, other, pool, cfg.fc_dim, dec, cfg.grl_scale)

    @property
    def content_rate(self) -> int:
        return self.content_encoder.content_rate

    @property
    def other_rate(self) -> int:
        return self.content_encoder.content_rate * self.other_encoder.factor

    @property
    def downsample(self) -> int:
        return self.other_encoder.factor

    def output_lengths(self, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        c = self.content_encoder.output_lengths(wav_len)
        return c, self.other_encoder.output_lengths(c)

    def inference_state_dict(self) -> dict[str, Tensor]:
        """state_dict without the pre-training-only heads (fc, decoder)."""
        return {k: v for k, v in self.state_dict().items()
                if not (k.startswith("fc.") or k.startswith("decoder."))}

    # ---- training hooks -------------------------------------------------------------------
    def features(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        return self.content_encoder.features(wav, wav_len)

    def encode_content(self, feat: Tensor, lengths: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        return self.content_encoder.encode(feat, lengths, mask)

    def encode_other(self, feat: Tensor, lengths: Tensor, content: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        feed = [content[i].detach() for i in self.feed_layers]   # no gradient into content
        return self.other_encoder(feat, lengths, feed)

    def postnet(self, other_last: Tensor, other_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mask = lengths_to_mask(other_len, other_last.shape[1])
        pooled = self.pool(other_last.transpose(1, 2), mask)
        normed = self.pool_norm(pooled)
        return pooled, normed, self.fc(normed)

    def decode(self, other_last: Tensor, other_len: Tensor, content_len: Tensor) -> Tensor:
        mem_mask = lengths_to_mask(other_len, other_last.shape[1])
        t_c = int(content_len.max().item())
        return self.decoder(self.grl(other_last), mem_mask, t_c, lengths_to_mask(content_len, t_c))

    def forward_train(self, wav: Tensor, wav_len: Tensor, mask: Tensor | None = None,
                      shared_from_content_only: bool = False, content_wav: Tensor | None = None) -> JoociTrainOutput:
        """``shared_from_content_only``: the other encoder reads the shared features detached, so the
        shared CNN learns from the content loss alone (not the paper's stage 2, where it learns from both).
        ``content_wav``: what the content encoder reads instead of ``wav`` (same shape and lengths, e.g. a
        formant-warped copy: speaker-invariant content, ContentVec-style); the other encoder and the
        post-net still read ``wav``, with the content layers of ``content_wav`` appended. A frozen content
        side (stage 1) reads ``wav`` only: passing ``content_wav`` then is an error."""
        if self.content_frozen and content_wav is not None:
            raise ValueError("content_wav given while the content side is frozen (stage 1): it would be ignored")
        if self.content_frozen:            # stage 1: no graph through the shared CNN / content
            with torch.no_grad():
                feat, c_len = self.features(wav, wav_len)
                content = self.encode_content(feat, c_len, mask)
        elif content_wav is None:
            feat, c_len = self.features(wav, wav_len)
            content = self.encode_content(feat, c_len, mask)
        else:
            if content_wav.shape != wav.shape:
                raise ValueError(f"content_wav {tuple(content_wav.shape)} must have wav's shape {tuple(wav.shape)}")
            feat_c, c_len = self.features(content_wav, wav_len)
            content = self.encode_content(feat_c, c_len, mask)
            feat, _ = self.features(wav, wav_len)
        other, o_len = self.encode_other(feat.detach() if shared_from_content_only else feat, c_len, content)
        pooled, normed, projected = self.postnet(other[-1], o_len)
        logits = self.decode(other[-1], o_len, c_len)
        streams = StreamOutput(content=content, content_len=c_len, other=other, other_len=o_len,
                               utterance=normed)
        return JoociTrainOutput(streams, feat, pooled, projected, logits)

    # ---- inference ------------------------------------------------------------------------
    def forward(self, wav: Tensor, wav_len: Tensor) -> StreamOutput:
        feat, c_len = self.features(wav, wav_len)
        content = self.encode_content(feat, c_len)
        other, o_len = self.encode_other(feat, c_len, content)
        _, utterance, _ = self.postnet(other[-1], o_len)
        return StreamOutput(content=content, content_len=c_len, other=other, other_len=o_len,
                            utterance=utterance)
