"""Explicit model registry: name -> (model class, config class, presets).

    >>> from upstream.registry import MODELS, build_model
    >>> sorted(MODELS)                                      # doctest: +SKIP
    ['barlow_twins', 'hubert_compact', 'jooci', 'learn2diss']
    >>> m = build_model("hubert_compact", "tiny")           # a preset name ...
    >>> m = build_model("hubert_compact", {"num_layers": 1, "hidden_size": 32, "num_heads": 2,
    ...                                    "ffn_dim": 64, "conv_dim": [16] * 7,
    ...                                    "pos_conv_kernel": 8, "pos_conv_groups": 4})  # ... or a dict

A dict is a full config (fields not given take the dataclass defaults, i.e. the paper-size
`base`); to change a preset, use `preset_config(name, preset)` and `dataclasses.replace`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from .models.barlow_twins import (BARLOW_TWINS_BASE, BARLOW_TWINS_COMPACT, BARLOW_TWINS_TINY,
                                  BarlowTwins, BarlowTwinsConfig)
from .models.hubert import HUBERT_BASE, HUBERT_COMPACT, HUBERT_TINY, HubertCompact, HubertConfig
from .models.jooci import JOOCI_BASE, JOOCI_COMPACT, JOOCI_TINY, Jooci, JoociConfig
from .models.learn2diss import (LEARN2DISS_BASE, LEARN2DISS_COMPACT, LEARN2DISS_TINY, Learn2Diss,
                                Learn2DissConfig)


@dataclass(frozen=True)
class ModelSpec:
    model_cls: type
    config_cls: type
    presets: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "hubert_compact": ModelSpec(
        HubertCompact, HubertConfig,
        {"base": HUBERT_BASE, "compact": HUBERT_COMPACT, "tiny": HUBERT_TINY},
    ),
    "learn2diss": ModelSpec(
        Learn2Diss, Learn2DissConfig,
        {"base": LEARN2DISS_BASE, "compact": LEARN2DISS_COMPACT, "tiny": LEARN2DISS_TINY},
    ),
    "jooci": ModelSpec(
        Jooci, JoociConfig, {"base": JOOCI_BASE, "compact": JOOCI_COMPACT, "tiny": JOOCI_TINY},
    ),
    "barlow_twins": ModelSpec(
        BarlowTwins, BarlowTwinsConfig,
        {"base": BARLOW_TWINS_BASE, "compact": BARLOW_TWINS_COMPACT, "tiny": BARLOW_TWINS_TINY},
    ),
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def preset_config(name: str, preset: str):
    spec = get_spec(name)
    if preset not in spec.presets:
        raise KeyError(
            f"model {name!r} has no preset {preset!r}; presets: {', '.join(sorted(spec.presets))}"
        )
    return spec.presets[preset]


def make_config(name: str, preset_or_cfg: str | dict | Any):
    """A preset name, a plain dict (e.g. from a checkpoint's config.json) or a config object."""
    spec = get_spec(name)
    if isinstance(preset_or_cfg, str):
        return preset_config(name, preset_or_cfg)
    if isinstance(preset_or_cfg, spec.config_cls):
        return preset_or_cfg
    if isinstance(preset_or_cfg, dict):
        try:
            return spec.config_cls.from_dict(preset_or_cfg)
        except TypeError as e:
            raise ValueError(f"bad config for model {name!r}: {e}") from e
    raise TypeError(f"expected a preset name, a dict or a {spec.config_cls.__name__}, got {type(preset_or_cfg)}")


def config_to_dict(cfg) -> dict:
    """JSON-ready dict of a config (tuples become lists); inverse of `config_cls.from_dict`."""
    return asdict(cfg)


def build_model(name: str, preset_or_cfg: str | dict | Any = "compact") -> nn.Module:
    spec = get_spec(name)
    return spec.model_cls.from_config(make_config(name, preset_or_cfg))
