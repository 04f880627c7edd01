"""Self-describing DUET checkpoints: a directory with safetensors weights and a JSON config.

Layout (docs/contracts.md, "Checkpoint directory")::

    <dir>/config.json        {"format": "duet-checkpoint/1", "model": "jooci", "config": {...},
                              "provenance": {...}, "sha256": {"model.safetensors": "..."}}
    <dir>/model.safetensors  float32 state_dict of the model
    <dir>/MODEL_CARD.md      optional human card

Nothing here unpickles: weights are safetensors, metadata is JSON.

Saving is reproducible: the same weights give the same ``model.safetensors`` bytes (safetensors
orders tensors by dtype and name, and its ``__metadata__`` is written with sorted keys here), so
the same model saved twice has one ``checkpoint_hash``, and any change of a weight changes it.
``checkpoint_hash`` hashes the file on disk and checks it against config.json, so a truncated or
edited copy never reports the original's hash.

    >>> from upstream.checkpoint import save_checkpoint, load_checkpoint   # doctest: +SKIP
    >>> save_checkpoint(model, "checkpoints/jooci-compact", name="jooci", config=cfg,
    ...                 provenance={"recipe": "jooci-compact", "steps": 2000})
    >>> model, meta = load_checkpoint("checkpoints/jooci-compact")
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from upstream.facts import HASH_LEN, WEIGHTS_FILE, atomic_dir, sha256_file, weights_hash

FORMAT = "duet-checkpoint/1"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


# ----------------------------------------------------------------------------------- helpers

def config_to_dict(config: Any) -> dict:
    """A model config (dataclass, possibly nested, or dict) as a JSON-safe dict."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dataclass instance or a dict, got {type(config).__name__}")
    return json.loads(json.dumps(config))  # fails early on non-JSON values; tuples -> lists


def _state_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.to(torch.float32)
        out[k] = v.clone().contiguous()  # clone: safetensors refuses tensors sharing storage
    return out


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """``state`` as safetensors bytes, the same bytes for the same tensors and metadata.

    safetensors orders tensors deterministically (dtype, then name) but writes ``__metadata__`` in
    hash-map order, which changes between runs; the header is rewritten here with sorted metadata
    keys (same format: 8-byte little-endian length, JSON header padded with spaces to 8 bytes, data).
    """
    from safetensors.torch import save

    raw = save(state, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    canonical: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    canonical.update(sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])))
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def _default_build(name: str, config: dict) -> nn.Module:
    from upstream.registry import build_model
    return build_model(name, config)


def _known_models() -> list[str]:
    try:
        from upstream.registry import MODELS
        return sorted(MODELS)
    except Exception:  # registry not importable: do not mask the original error with another
        return []


# ----------------------------------------------------------------------------------- save

def save_checkpoint(model: nn.Module, dir: str | os.PathLike, *, name: str, config: Any,
                    provenance: dict | None = None, model_card: str | None = None,
                    overwrite: bool = True) -> Path:
    """Write ``model`` as a checkpoint directory, atomically (temp dir + rename).

    ``name`` is the registry name (``jooci``...), ``config`` the model's dataclass config (or its
    dict), ``provenance`` what made it (recipe, corpus, seed, steps, wall_s, machine, git_commit).
    A reader never sees a half-written directory: either the old one or the new one.
    Returns the directory.
    """
    dest = Path(dir)
    if dest.exists() and not overwrite:
        raise CheckpointError(f"{dest} already exists; pass overwrite=True or choose another directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(dest) as tmp:
        blob = safetensors_bytes(_state_for_saving(model), metadata={"format": FORMAT, "model": name})
        (tmp / WEIGHTS_FILE).write_bytes(blob)
        meta = {
            "format": FORMAT,
            "model": name,
            "config": config_to_dict(config),
            "provenance": json.loads(json.dumps(provenance or {}, default=str)),
            "sha256": {WEIGHTS_FILE: sha256_file(tmp / WEIGHTS_FILE)},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
        if model_card is not None:
            (tmp / CARD_FILE).write_text(model_card)
    return dest


def save_random_init(name: str, config: Any, dir: str | os.PathLike, seed: int, provenance: dict) -> Path:
    """A seeded random-init model of ``config`` saved once at ``dir`` (kept when it is there already):
    the same config and seed give the same weights, hence the same hash, wherever it is saved. The
    random-init twins and baselines of ``harness run`` (``--ckpt NAME=random:...``) and ``harness
    scorecard`` come from here."""
    from upstream.registry import build_model

    d = Path(dir)
    if (d / CONFIG_FILE).is_file() and (d / WEIGHTS_FILE).is_file():
        return d
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, config)
    return save_checkpoint(model, d, name=name, config=config, provenance={**provenance, "seed": seed})


def save_random_preset(name: str, preset: str, root: str | os.PathLike, seed: int) -> Path:
    """The seeded random init of ``name``'s preset ``preset``, saved once under ``root`` as
    ``<name>-<preset>-random<seed>``: ``harness run --ckpt NAME=random:PRESET`` and ``harness scorecard
    --upstreams NAME=random:PRESET`` both come from here. KeyError / ValueError: no such model or preset."""
    from upstream.registry import make_config

    cfg = make_config(name, preset)
    d = Path(root) / f"{name.replace('_', '-')}-{preset}-random{seed}"
    return save_random_init(name, cfg, d, seed, {"recipe": f"random_init:{preset}"})


def save_twin(name: str, ckpt: str | os.PathLike, root: str | os.PathLike, seed: int) -> Path:
    """The random-init twin of checkpoint ``ckpt`` (a ``name`` model): its own config (e.g. a Barlow
    Twins split by layer) with seeded random weights, saved once under ``root`` as
    ``<name>-twin-of-<weights hash>-seed<seed>``. ``harness scorecard``'s twins and ``harness run
    --ckpt NAME=random:CKPT_DIR`` both come from here, so they are one model."""
    src = Path(ckpt)
    meta = read_meta(src)
    if meta.get("model") != name:
        raise CheckpointError(f"{src}/{CONFIG_FILE} is a {meta.get('model')!r} checkpoint, not {name!r}")
    d = Path(root) / f"{name.replace('_', '-')}-twin-of-{weights_hash(src)}-seed{seed}"
    return save_random_init(name, meta["config"], d, seed, {"recipe": "random_init (twin)", "twin_of": str(src.resolve())})


# ----------------------------------------------------------------------------------- load

def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory whose config.json declares the DUET format."""
    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format", "").startswith("duet-checkpoint/")
    except (OSError, ValueError, AttributeError):
        return False


def read_meta(dir: str | os.PathLike) -> dict:
    """Read and check config.json of a checkpoint directory (weights not touched)."""
    d = Path(dir)
    if not d.exists():
        raise CheckpointError(f"{d}: no such checkpoint directory; pass a directory written by "
                              f"upstream.checkpoint.save_checkpoint (config.json + {WEIGHTS_FILE})")
    if d.is_file():
        hint = ("it looks like a fairseq/s3prl .pt: load it with upstream.importers.load_fairseq_hubert "
                "(or pass it to -k of learn2diss/hubert_compact)") if d.suffix in (".pt", ".ckpt") else \
            f"pass the directory that contains {CONFIG_FILE} and {WEIGHTS_FILE}"
        raise CheckpointError(f"{d} is a file, not a DUET checkpoint directory; {hint}")
    cfg = d / CONFIG_FILE
    if not cfg.is_file():
        raise CheckpointError(f"{cfg} is missing; {d} is not a complete DUET checkpoint (an interrupted "
                              f"copy?). Re-copy the directory or re-save it with save_checkpoint")
    try:
        meta = json.loads(cfg.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg} is corrupt or truncated (not valid JSON: {e}); re-copy the "
                              f"checkpoint directory") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{cfg} does not hold a JSON object; it is not a DUET checkpoint config")
    fmt = meta.get("format")
    if fmt != FORMAT:
        if meta.get("model_type") in ("hubert", "wavlm", "wav2vec2"):
            raise CheckpointError(
                f"{cfg} is a transformers {meta['model_type']} config, not a DUET checkpoint; load it with "
                f"upstream.importers.load_hf_backbone (or pass the directory to -k of learn2diss/hubert_compact)")
        raise CheckpointError(f"{cfg} has format {fmt!r}, expected {FORMAT!r}; it was not written by this "
                              f"version of DUET's save_checkpoint")
    for key in ("model", "config", "sha256"):
        if key not in meta:
            raise CheckpointError(f"{cfg} lacks the {key!r} entry; re-save the checkpoint with save_checkpoint")
    return meta


def _load_weights(d: Path, meta: dict, verify: bool) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    w = d / WEIGHTS_FILE
    if not w.is_file():
        raise CheckpointError(f"{w} is missing; the checkpoint directory {d} is incomplete: re-copy it")
    if verify:
        expected = meta["sha256"].get(WEIGHTS_FILE)
        got = sha256_file(w)
        if expected != got:
            raise CheckpointError(
                f"{w} is corrupt or truncated: sha256 {got[:12]}... does not match {expected and expected[:12]}... "
                f"recorded in {d / CONFIG_FILE} ({w.stat().st_size} bytes on disk); re-copy the checkpoint")
    try:
        return load_file(str(w))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{w} cannot be read as safetensors ({e}); the file is corrupt or "
                              f"truncated: re-copy the checkpoint") from e


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError listing missing / unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    if problems:
        raise CheckpointError(f"{where} does not match the model its config describes: "
                              f"{'; '.join(problems)}. The checkpoint was written by different model code "
                              f"or its config.json was edited; re-save it with the current code")


def load_checkpoint(dir: str | os.PathLike, *, expected_model: str | None = None, verify: bool = True,
                    build: Callable[[str, dict], nn.Module] | None = None) -> tuple[nn.Module, dict]:
    """Load a checkpoint directory -> (model in eval mode, meta dict from config.json).

    ``expected_model``: raise if the checkpoint holds another model (e.g. a jooci checkpoint given to
    the learn2diss expert). ``verify``: check the weights' sha256 against config.json.
    ``build(name, config_dict)`` builds the empty model (default: upstream.registry.build_model).
    """
    d = Path(dir)
    meta = read_meta(d)
    name = meta["model"]
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"{d / CONFIG_FILE} holds a {name!r} model, not {expected_model!r}; use the "
                              f"{name} upstream (-u {name}) or a {expected_model} checkpoint")
    build = build or _default_build
    try:
        model = build(name, meta["config"])
    except KeyError as e:
        known = _known_models()
        raise CheckpointError(f"{d / CONFIG_FILE}: model {name!r} is not a known DUET model"
                              f"{' (known: ' + ', '.join(known) + ')' if known else ''}") from e
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{d / CONFIG_FILE}: its 'config' does not fit the {name} model code ({e}); "
                              f"the checkpoint was made by another DUET version") from e
    state = _load_weights(d, meta, verify)
    check_state_dict(model, state, str(d / WEIGHTS_FILE))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (weights path, size, mtime_ns) -> sha256, this process


def checkpoint_hash(dir: str | os.PathLike, *, verify: bool = True) -> str:
    """The checkpoint hash: the first HASH_LEN (12) hex digits of the sha256 of the weights file on disk.

    ``verify`` (default): hash the file and check it against config.json; a truncated, edited or
    half-copied ``model.safetensors`` raises CheckpointError instead of reporting the original's
    hash. (Each file is hashed once per process while its size and mtime stay the same.)
    ``verify=False`` returns the recorded hash without reading the weights.
    """
    d = Path(dir)
    meta = read_meta(d)
    recorded = meta["sha256"].get(WEIGHTS_FILE)
    if not verify and recorded:
        return recorded[:HASH_LEN]
    w = d / WEIGHTS_FILE
    if not w.is_file():
        raise CheckpointError(f"{w} is missing; the checkpoint directory {d} is incomplete: re-copy it")
    st = w.stat()
    key = (str(w.resolve()), st.st_size, st.st_mtime_ns)
    got = _VERIFIED.get(key)
    if got is None:
        got = _VERIFIED[key] = sha256_file(w)
    if recorded and got != recorded:
        raise CheckpointError(
            f"{w} is corrupt, truncated or was changed after saving: sha256 {got[:12]}... does not match "
            f"{recorded[:12]}... recorded in {d / CONFIG_FILE} ({st.st_size} bytes on disk); re-copy the "
            f"checkpoint, or re-save it with save_checkpoint if the new weights are intended")
    return got[:HASH_LEN]
