"""Load a model from whatever the user has: a DUET checkpoint directory, a transformers HuBERT/WavLM
directory, or a fairseq / s3prl-converted HuBERT ``.pt`` (behind the ``allow_unpickle`` opt-in).

It sits above both :mod:`upstream.checkpoint` (DUET's own format) and :mod:`upstream.importers`
(everyone else's), so neither imports the other.

    >>> from upstream.pretrained import from_pretrained
    >>> model = from_pretrained("checkpoints/jooci-compact")          # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from upstream import importers
from upstream.checkpoint import is_checkpoint_dir, load_checkpoint


def from_pretrained(path: str | os.PathLike, *, expected_model: str | None = None,
                    allow_unpickle: bool = False) -> nn.Module:
    """A DUET checkpoint directory loads as its own model; a transformers HuBERT directory or a
    fairseq ``.pt`` becomes the project's hubert backbone (see :mod:`upstream.importers`)."""
    p = Path(path)
    if p.is_dir() and is_checkpoint_dir(p):
        return load_checkpoint(p, expected_model=expected_model)[0]
    if p.is_dir() and importers.is_hf_dir(p):
        return importers.load_hf_backbone(p)
    if p.is_file() and p.suffix in (".pt", ".ckpt", ".pth"):
        return importers.load_fairseq_hubert(p, allow_unpickle=allow_unpickle)
    return load_checkpoint(p, expected_model=expected_model)[0]  # raises the precise error
