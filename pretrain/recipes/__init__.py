"""Recipe registry: name -> Recipe (config dataclass, required corpus paths, pre-flight check, run).

    harness pretrain --recipe hubert-compact --corpus DIR --out runs/hubert iter1.steps=100

Every recipe module defines ``<Name>RecipeConfig`` (a small dataclass: model preset, data, loss
and one ``TrainConfig`` per phase), ``required(cfg) -> [corpus-relative paths]``,
``check(cfg)`` (raises before any work) and ``run(cfg, ctx) -> final checkpoint dir``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pretrain.recipes import barlow_twins_compact, hubert_compact, jooci_compact, learn2diss_compact


@dataclass(frozen=True)
class Recipe:
    name: str
    config_cls: type
    required: Callable
    check: Callable
    run: Callable
    description: str


def _recipe(name: str, module, cfg_cls) -> Recipe:
    return Recipe(name, cfg_cls, module.required, module.check, module.run, (module.__doc__ or "").strip().splitlines()[0])


RECIPES: dict[str, Recipe] = {
    "hubert-compact": _recipe("hubert-compact", hubert_compact, hubert_compact.HubertRecipeConfig),
    "learn2diss-compact": _recipe("learn2diss-compact", learn2diss_compact, learn2diss_compact.Learn2DissRecipeConfig),
    "jooci-compact": _recipe("jooci-compact", jooci_compact, jooci_compact.JoociRecipeConfig),
    "barlow-twins-compact": _recipe("barlow-twins-compact", barlow_twins_compact,
                                    barlow_twins_compact.BarlowTwinsRecipeConfig),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]
