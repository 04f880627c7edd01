"""Typed forward output shared by every DUET model (see docs/contracts.md, "Model forward")."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class StreamOutput:
    """Both streams of a disentangling model.

    content:     list of (B, T_c, D_c); layer 0 = CNN/front-end projection, then each block.
    content_len: (B,) long, valid frames of every content layer.
    other:       list of (B, T_o, D_o) at the other stream's own frame rate ([] if none).
    other_len:   (B,) long, valid frames of every other layer.
    utterance:   (B, D_u) pooled utterance embedding, or None if the model has none.

    Frames at or beyond the valid length are padding and carry no meaning (they are zeroed
    by the models, but callers must use the lengths).
    """

    content: list[Tensor]
    content_len: Tensor
    other: list[Tensor]
    other_len: Tensor
    utterance: Tensor | None
