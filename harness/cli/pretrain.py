"""`harness pretrain --recipe NAME [--out DIR] [--corpus DIR] [key=value ...]`: train a DUET model.

Recipes (pretrain/recipes): hubert-compact, learn2diss-compact, jooci-compact, barlow-twins-compact.
Everything is checked before any work: the recipe name, every override key and numeric value
(finite, in range), the corpus files the recipe needs, the checkpoints it builds on, that --out is
writable, and every training audio file (the pre-flight audio check of harness/preflight.py;
--no-preflight skips it). An interrupted run
(even SIGKILL) resumes from its last checkpoint when the same command is run again.
Multi-process: `torchrun --nproc_per_node N -m harness.cli pretrain ...` (gloo on CPU, NCCL on GPU).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_CORPUS = "corpora/small"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="recipe name (see --list)")
    p.add_argument("--out", help="run directory (default: runs/<recipe>); rerun the same command to resume")
    p.add_argument("--corpus", default=None, help=f"corpus root with LibriSpeech/<split> (default: {DEFAULT_CORPUS}, "
                   "or $DUET_CORPUS)")
    p.add_argument("--seed", type=int, default=0, help="seed for data order, masking, init and k-means")
    p.add_argument("--steps", type=int, default=None, help="train every phase this many steps (smoke runs)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--no-preflight", action="store_true",
                   help="skip the pre-flight audio check of the training files (bad audio then fails mid-run)")
    p.add_argument("--list", action="store_true", help="list recipes and exit")
    p.add_argument("--show-config", action="store_true", help="print the resolved recipe config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="recipe config overrides, e.g. iter1.steps=100 data.batch_size=4 (see --show-config)")


def _fail(msg: str) -> int:
    print(f"harness pretrain: error: {msg}", file=sys.stderr)
    return 2


def _check_writable(out: Path) -> str | None:
    from upstream.facts import unwritable_dir

    why = unwritable_dir(out)
    return f"cannot write to --out {out}: {why}; choose a writable directory" if why else None


# numeric recipe options: each must be finite; these must be > 0, these in [0, 1], these may be < 0
POSITIVE = {"steps", "batch_size", "lr", "aux_lr", "crop_s", "clip_s", "views", "grad_accum", "ckpt_every",
            "log_every", "keep_ckpts", "tau", "tau_frame", "tau_utt", "k", "k_mfcc", "k_layer", "k_frame", "q_utt",
            "proj_dim", "mask_len", "kmeans_frames", "max_frames", "pseudo_con_frames", "club_hidden",
            "n_noise", "n_babble", "n_rir"}
FRACTIONS = {"mask_prob", "mask_frac", "min_lr_ratio", "prob", "p_filter", "p_gain", "p_mask", "p_noise",
             "p_reverb", "betas"}
SIGNED = {"snr_db", "frame_layer"}   # frame_layer: a layer index, -1 = the last (the recipe checks its range)


def check_numbers(cfg, prefix: str = "") -> None:
    """Every numeric value of a recipe config is finite and in its range (``POSITIVE`` > 0,
    ``FRACTIONS`` in [0, 1], ``SIGNED`` any sign, every other >= 0); else RecipeError naming the
    key, so ``data.batch_size=0`` or ``iter1.lr=nan`` stops before any work."""
    import dataclasses
    import math

    from pretrain.recipes.common import RecipeError

    for f in dataclasses.fields(cfg):
        v, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(v):
            check_numbers(v, key + ".")
            continue
        values = v if isinstance(v, (tuple, list)) else (v,)
        for x in values:
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                continue
            bad = None
            if not math.isfinite(x):
                bad = "must be a finite number"
            elif f.name in SIGNED:
                pass
            elif f.name in POSITIVE and x <= 0:
                bad = "must be > 0"
            elif f.name in FRACTIONS and not 0 <= x <= 1:
                bad = "must be in [0, 1]"
            elif x < 0:
                bad = "must be >= 0"
            if bad:
                raise RecipeError(f"{key}={v!r}: {bad} (set it with {key}=VALUE; see --show-config)")


def run(args) -> int:
    import dataclasses
    import json

    from pretrain.recipes import RECIPES
    from pretrain.recipes.common import RecipeError, RunContext, apply_overrides, set_all_steps

    if args.list:
        for name, r in RECIPES.items():
            print(f"{name:22s} {r.description}")
        return 0
    if not args.recipe:
        return _fail("--recipe is required; known recipes: " + ", ".join(RECIPES))
    if args.recipe not in RECIPES:
        return _fail(f"unknown recipe {args.recipe!r}; known recipes: {', '.join(RECIPES)}")
    recipe = RECIPES[args.recipe]
    try:
        cfg = recipe.config_cls()
        if args.steps is not None:
            if args.steps < 1:
                raise RecipeError("--steps must be >= 1")
            cfg = set_all_steps(cfg, args.steps)
        cfg = apply_overrides(cfg, args.overrides)
        if args.show_config:
            print(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
            return 0
        check_numbers(cfg)
        recipe.check(cfg)
    except (RecipeError, ValueError, KeyError) as e:
        return _fail(str(e).strip("'\""))

    corpus = Path(args.corpus or os.environ.get("DUET_CORPUS") or DEFAULT_CORPUS)
    if not corpus.is_dir():
        return _fail(f"corpus {corpus} not found; make one with `harness corpus make --size small --out {corpus}` "
                     f"or pass --corpus DIR")
    for rel in recipe.required(cfg):
        p = corpus / rel
        if not p.exists():
            return _fail(f"{p} not found: recipe {args.recipe} needs {rel} in the corpus; regenerate the corpus "
                         f"(`harness corpus make --out {corpus}`) or pass another --corpus")
    out = Path(args.out or f"runs/{args.recipe}")
    err = _check_writable(out)
    if err:
        return _fail(err)
    if not args.no_preflight:          # every rank checks (cached), so all stop together
        from harness.preflight import check_audio, default_cache_path, files_for_pretrain
        from pretrain.data import DataError

        try:
            files = files_for_pretrain(corpus, cfg.data.split, cfg.data.exclude_eval, cfg.data.exclude_speakers_of)
        except DataError as e:
            return _fail(str(e))
        report = check_audio(files, cache_path=default_cache_path(corpus), workers=2)
        if not report.ok:
            return _fail(report.format())

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    owns_pg = False
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            owns_pg = True
    ctx = RunContext(recipe=args.recipe, out=out, corpus=corpus, seed=args.seed, rank=rank, world=world,
                     progress=not args.no_progress and rank == 0)
    from pretrain.trainer import NonFiniteLoss

    try:
        final = recipe.run(cfg, ctx)
    except NonFiniteLoss as e:
        print(f"harness pretrain: stopped: {e}", file=sys.stderr)
        return 3
    except (RecipeError, FileNotFoundError) as e:
        return _fail(str(e))
    finally:
        if owns_pg:
            import torch.distributed as dist
            dist.destroy_process_group()
    if rank == 0 and final is not None:
        print(f"done: {final}")
    return 0
