"""Shared types for the losses."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class LossOutput:
    """What an objective returns for one micro-batch.

    loss:   scalar to back-propagate (already weighted and summed)
    parts:  named scalar tensors for logging (detached by the trainer)
    cache:  detached tensors an auxiliary update may reuse (e.g. CLUB's estimator steps)
    """

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    cache: dict[str, Tensor] = field(default_factory=dict)
