"""Barlow Twins for speech (Zbontar et al. 2021; Brima et al., speech): encoder + projector.

    wav -> encoder f (HuBERT-shaped CNN + transformer) -> layers H_0 .. H_L
        utterance  z = masked mean over time of H_L                   (B, D)
        projector  p(z) = Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear  (pre-training)
    loss (pretrain/): c = BN(p(z_A))^T BN(p(z_B)) / N over two augmented views;
                      sum_i (1 - c_ii)^2 + lambda sum_{i != j} c_ij^2.

Streams (the `other` stream is a documented choice of this project; BT itself has one latent):
  content   = [H_0 .. H_L] at 320 samples per frame;
  other     = [AvgPool_DF(H_L)]: the last layer, averaged over windows of DF frames (default 10,
              i.e. 200 ms, 3200 samples per frame; the last partial window averages its valid
              frames) — the slow, utterance-like view the BT objective shapes, kept frame by
              frame so s3prl downstreams can use it;
  utterance = z (the representation the BT loss is applied to, before the projector).
With ``content_layers = k > 0`` the encoder is split by layers instead: content = [H_0 .. H_k],
other = [AvgPool_DF(H_{k+1}) .. AvgPool_DF(H_L)] (the recipe's frame term shapes H_k to ignore the
vocal tract, its utterance term the top layer to keep the speaker; the stream that holds a layer
is the one its objective is about).

Training hooks:
  * `embed(wav, wav_len) -> (z (B, D), StreamOutput)`; `project(z) -> (B, projector_dims[-1])`.
  * `features` / `encode(feat, lengths, mask)` as in hubert_compact (time masking views).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..nn.masking import lengths_to_mask, masked_mean
from ..nn.other_encoder import masked_avg_pool
from .hubert import HUBERT_BASE, HUBERT_COMPACT, HUBERT_TINY, HubertCompact, HubertConfig
from .output import StreamOutput


@dataclass
class BarlowTwinsConfig:
    encoder: HubertConfig = field(default_factory=lambda: HUBERT_BASE)
    projector_dims: tuple[int, ...] = (2048, 2048, 2048)   # official BT uses 8192
    other_downsample: int = 10
    content_layers: int = 0     # k > 0: content = H_0..H_k, other = pooled H_{k+1}..H_L; 0: content = all, other = pooled H_L

    @classmethod
    def from_dict(cls, d: dict) -> "BarlowTwinsConfig":
        d = dict(d)
        if isinstance(d.get("encoder"), dict):
            d["encoder"] = HubertConfig.from_dict(d["encoder"])
        if "projector_dims" in d:
            d["projector_dims"] = tuple(int(v) for v in d["projector_dims"])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


BARLOW_TWINS_BASE = BarlowTwinsConfig()
# compact / tiny: a narrow last projector layer, so the cross-correlation of the recipe's rows at a
# CPU batch (8 crops x 10 windows = 80 rows) is not rank-limited (512 dims from 8 rows had rank <= 7)
BARLOW_TWINS_COMPACT = BarlowTwinsConfig(encoder=HUBERT_COMPACT, projector_dims=(512, 512, 64))
BARLOW_TWINS_TINY = BarlowTwinsConfig(encoder=HUBERT_TINY, projector_dims=(32, 32, 8),
                                      other_downsample=4)


def content_layers_error(k: int, n_states: int) -> str | None:
    """Why ``content_layers=k`` does not fit an encoder with hidden states 0..n_states-1 (the other
    stream needs at least one layer above the content ones), or None when it does."""
    if 0 <= k <= n_states - 2:
        return None
    return (f"content_layers={k}: use 0 (content = every layer) or 1..{n_states - 2} (content = H_0..H_k, other = "
            f"the layers above; the encoder has H_0..H_{n_states - 1})")


def build_projector(in_dim: int, dims: tuple[int, ...]) -> nn.Sequential:
    """Official BT projector: (Linear -> BN -> ReLU) for all but the last size, then Linear."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in dims[:-1]:
        layers += [nn.Linear(d, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
        d = h
    layers.append(nn.Linear(d, dims[-1], bias=False))
    return nn.Sequential(*layers)


class BarlowTwins(nn.Module):
    """forward(wav (B, S), wav_len (B,)) -> StreamOutput.

    Example:
        >>> from upstream.models.barlow_twins import BarlowTwins, BARLOW_TWINS_TINY
        >>> m = BarlowTwins.from_config(BARLOW_TWINS_TINY).eval()
        >>> out = m(torch.randn(2, 8000), torch.tensor([8000, 5000]))
        >>> out.content_len.tolist(), out.other_len.tolist(), tuple(m.project(out.utterance).shape)
        ([24, 15], [6, 4], (2, 32))
    """

    config_cls = BarlowTwinsConfig

    def __init__(self, encoder: HubertCompact, projector: nn.Module, other_downsample: int = 10,
                 content_layers: int = 0):
        super().__init__()
        if (err := content_layers_error(content_layers, encoder.num_layers)) is not None:
            raise ValueError(err)
        self.encoder = encoder
        self.projector = projector          # pre-training only
        self.other_downsample = other_downsample
        self.content_layers = content_layers

    @classmethod
    def from_config(cls, cfg: BarlowTwinsConfig | dict) -> "BarlowTwins":
        if isinstance(cfg, dict):
            cfg = BarlowTwinsConfig.from_dict(cfg)
        enc = HubertCompact.from_config(cfg.encoder)
        return cls(enc, build_projector(cfg.encoder.hidden_size, cfg.projector_dims),
                   cfg.other_downsample, cfg.content_layers)

    @property
    def content_rate(self) -> int:
        return self.encoder.content_rate

    @property
    def other_rate(self) -> int:
        return self.encoder.content_rate * self.other_downsample

    def output_lengths(self, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        c = self.encoder.output_lengths(wav_len)
        return c, torch.div(c + self.other_downsample - 1, self.other_downsample, rounding_mode="floor")

    def inference_state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("projector.")}

    # ---- training hooks -------------------------------------------------------------------
    def features(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder.features(wav, wav_len)

    def encode(self, feat: Tensor, lengths: Tensor, mask: Tensor | None = None,
               detach_from: int | None = None) -> list[Tensor]:
        return self.encoder.encode(feat, lengths, mask, detach_from)

    def project(self, z: Tensor) -> Tensor:
        return self.projector(z)

    def streams(self, layers: list[Tensor], lengths: Tensor) -> StreamOutput:
        last = layers[-1]
        z = masked_mean(last, lengths_to_mask(lengths, last.shape[1]))
        k = self.content_layers
        content, upper = (layers[: k + 1], layers[k + 1:]) if k else (layers, layers[-1:])
        pooled = [masked_avg_pool(h, lengths, self.other_downsample) for h in upper]
        return StreamOutput(content=content, content_len=lengths, other=[p[0] for p in pooled],
                            other_len=pooled[0][1], utterance=z)

    def embed(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, StreamOutput]:
        out = self.forward(wav, wav_len)
        return out.utterance, out

    # ---- inference ------------------------------------------------------------------------
    def forward(self, wav: Tensor, wav_len: Tensor) -> StreamOutput:
        feat, lengths = self.features(wav, wav_len)
        return self.streams(self.encode(feat, lengths), lengths)
