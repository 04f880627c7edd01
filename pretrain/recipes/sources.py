"""Where a recipe's starting model comes from, and the k-means sizes it can afford.

``backbone_ckpt`` (learn2diss-compact) and ``init_ckpt`` (jooci-compact) accept exactly what
``run_downstream.py -k`` accepts, through :func:`upstream.importers.load_backbone_and_config`:

  * a DUET ``hubert_compact`` checkpoint directory (``harness pretrain --recipe hubert-compact``);
  * a transformers HuBERT / WavLM directory (``save_pretrained`` output: config.json + model.safetensors);
  * a fairseq or s3prl-converted HuBERT ``.pt``, only with ``allow_unpickle=true`` when the file
    holds pickled objects (unpickling can run code from the file; the importer explains).

The model's shape (hidden size, number of layers, front-end) then comes from that backbone; the
recipe's shape options (``model.*``) are checked against its layer count before any work.

    >>> src = load_source("/models/hubert-base-ls960", "backbone_ckpt")     # doctest: +SKIP
    >>> src.config.num_layers, src.identity                                   # doctest: +SKIP
    (12, 'transformers hubert directory /models/hubert-base-ls960 (sha256 0123456789ab)')
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from pretrain.data import HOP, frames
from pretrain.recipes.common import RecipeError, resolve_path

ACCEPTED = ("a DUET hubert_compact backbone (the <out>/final directory of `harness pretrain --recipe hubert-compact`), "
            "a transformers HuBERT/WavLM directory (save_pretrained output), or a fairseq/s3prl HuBERT .pt "
            "(with allow_unpickle=true if it holds pickled objects)")


@dataclass
class Source:
    """A loaded starting model: DUET hubert backbone (eval), its config, where it came from."""

    path: Path
    model: nn.Module
    config: object            # upstream.models.hubert.HubertConfig
    identity: str             # for the run's provenance: kind, path, weights hash
    digest: str               # the weights hash alone (what a run directory is pinned to)

    @property
    def num_layers(self) -> int:
        """Transformer layers L (the model outputs L + 1 hidden states, layer 0 = CNN features)."""
        return int(self.config.num_layers)


def _identity(p: Path) -> tuple[str, str]:
    """(description, weights hash) of a source."""
    from upstream.checkpoint import checkpoint_hash, is_checkpoint_dir
    from upstream.facts import HASH_LEN, sha256_file
    from upstream.importers import is_hf_dir

    if p.is_dir() and is_checkpoint_dir(p):
        digest = checkpoint_hash(p)
        return f"DUET hubert_compact checkpoint {p} (sha256 {digest})", digest
    if p.is_dir() and is_hf_dir(p):
        kind = json.loads((p / "config.json").read_text()).get("model_type")
        w = next((p / f for f in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
                  if (p / f).is_file()), None)
        digest = sha256_file(w)[:HASH_LEN] if w is not None else "unknown"
        return f"transformers {kind} directory {p} (sha256 {digest})", digest
    digest = sha256_file(p)[:HASH_LEN]
    return f"fairseq/s3prl checkpoint {p} (sha256 {digest})", digest


def load_source(path: str, option: str, *, allow_unpickle: bool = False) -> Source:
    """The backbone named by recipe option ``option`` (e.g. ``backbone_ckpt``), any format ``-k``
    takes; RecipeError naming the option, the path and what is accepted if it cannot be used."""
    from upstream.checkpoint import CheckpointError
    from upstream.importers import BackboneImportError, load_backbone_and_config

    p = resolve_path(path)
    if not p.exists():
        raise RecipeError(f"{option}={path}: {p} not found; pass {ACCEPTED}")
    try:
        model, cfg = load_backbone_and_config(p, allow_unpickle=allow_unpickle)
    except (BackboneImportError, CheckpointError, OSError, KeyError) as e:
        raise RecipeError(f"{option}={path} cannot be used as the starting model: {str(e).strip(chr(39))}. "
                          f"{option} takes {ACCEPTED}") from None
    rate = 1
    for s in getattr(cfg, "conv_stride", ()) or ():
        rate *= int(s)
    if getattr(cfg, "frontend", "conv") == "conv" and rate != HOP:
        raise RecipeError(f"{option}={path}: the backbone's CNN has {rate} samples per frame; the recipes' "
                          f"pseudo-labels are on a {HOP}-sample (20 ms) grid, so only HuBERT/WavLM-shaped "
                          f"front-ends (stride {HOP}) can be trained from")
    return Source(p, model.eval(), cfg, *_identity(p))


def init_source(cfg) -> Source | None:
    """The model a recipe's ``init_ckpt`` names (with its ``allow_unpickle``), or None for an empty
    ``init_ckpt`` (random init): the one spelling of that choice for the JOOCI and Barlow Twins recipes."""
    return load_source(cfg.init_ckpt, "init_ckpt", allow_unpickle=cfg.allow_unpickle) if cfg.init_ckpt else None


def pin_source(ctx, src: Source, option: str) -> None:
    """Tie a run directory to its starting model: the cached k-means labels and finished phases of
    ``--out`` were made from it, so rerunning with another model there is refused (use a new --out)."""
    f = ctx.cache / "source.json"
    if f.exists():
        have = json.loads(f.read_text())
        if have.get("sha256") != src.digest:
            raise RecipeError(f"{ctx.out} was started from {have.get('identity')}; {option} now names "
                              f"{src.identity}. Its cached labels and phases belong to the first model: "
                              f"use a new --out (or delete {ctx.out})")
    elif ctx.is_main:
        from upstream.facts import atomic_write_json

        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(f, {"option": option, "identity": src.identity, "sha256": src.digest})
    ctx.barrier()


# ------------------------------------------------------------------------------------ k-means sizes
def check_clusters(option: str, k: int, rows: int, unit: str, fit_rows: int, fix: str) -> None:
    """k-means with ``k`` clusters needs at least ``k`` rows to fit: RecipeError naming the option,
    the rows there are and the fix, before any feature is computed (``KMeans.fit`` would crash late).

    ``rows``: rows of the whole training set (utterances or frames); ``fit_rows``: ``kmeans_frames``,
    the most rows sampled for fitting."""
    if k <= min(rows, fit_rows):
        return
    if rows <= fit_rows:
        raise RecipeError(f"{option}={k} clusters, but the training set has only {rows} {unit} to cluster "
                          f"(k-means needs at least one per cluster); {fix}")
    raise RecipeError(f"{option}={k} clusters, but kmeans_frames={fit_rows} rows are sampled to fit them; "
                      f"set kmeans_frames >= {k} or lower {option}")


def bank_frames(bank) -> int:
    """Frames (20 ms, the pseudo-label grid) of every utterance of an AudioBank."""
    return int(sum(frames(int(n)) for n in bank.lengths))


def frame_clusters(option: str, k: int, bank, fit_rows: int) -> None:
    """``option`` = K frame clusters on every frame of ``bank``."""
    check_clusters(option, k, bank_frames(bank), f"frames ({len(bank)} utterances, {bank.seconds:.0f} s)",
                   fit_rows, f"set {option}=<at most {bank_frames(bank)}> or train on more audio "
                             f"(--corpus, data.split, data.max_utts=0)")


def utterance_clusters(option: str, k: int, bank, fit_rows: int) -> None:
    """``option`` = K utterance clusters, one row per utterance of ``bank``."""
    n = len(bank)
    check_clusters(option, k, n, "utterances", fit_rows,
                   f"set {option}=<at most {n}> (e.g. {option}={max(1, n // 4)}) or train on more utterances "
                   f"(--corpus, data.split, data.max_utts=0)")


def layer_range_error(option: str, value: int, lo: int, hi: int, why: str) -> RecipeError:
    return RecipeError(f"{option}={value} is outside {lo}..{hi}: {why}; use {option}=<{lo}..{hi}>")
