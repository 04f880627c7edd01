"""The upstream side of a feature store: building the s3prl upstream a store extracts from (DUET's
names, s3prl's baseline front-ends, anything on s3prl.hub), what makes two extractions the same
(:func:`upstream_identity`, :func:`same_upstream`), and the error type of ``harness.features``.

``harness.features.store`` re-exports all of these (their home before the store learnt layer groups).
"""
from __future__ import annotations

import json
from pathlib import Path

from upstream.facts import weights_hash

class FeatureStoreError(RuntimeError):
    """Bad store directory, missing features or a wrong request; the message names the fix."""


# upstream loading (s3prl built-ins and DUET's own names)

# s3prl built-ins that live in one light hubconf (importing all of s3prl.hub pulls transformers & co.)
_LIGHT_HUBCONFS = {n: "s3prl.upstream.baseline.hubconf"
                   for n in ("fbank", "fbank_no_cmvn", "mfcc", "mel", "linear", "spectrogram")}


def load_upstream(name: str, ckpt: str | None = None, model_config: str | None = None):
    """Build the s3prl upstream ``name`` exactly as ``run_downstream.py -u name -k ckpt -g cfg``.

    DUET names come from ``upstream.hub.UPSTREAMS`` and s3prl's baseline front-ends from their
    hubconf: the very factories ``s3prl.hub`` exposes, without importing all of it (seconds
    faster); anything else goes through ``s3prl.hub`` with DUET's names registered.
    """
    import importlib

    from harness.s3prl import compat
    from upstream import hub as duet_hub

    compat.install()
    if name in duet_hub.UPSTREAMS:
        factory = duet_hub.UPSTREAMS[name]
    elif name in _LIGHT_HUBCONFS:
        factory = getattr(importlib.import_module(_LIGHT_HUBCONFS[name]), name)
    else:
        import s3prl.hub as hub

        from harness.s3prl.hub import register

        register(hub)
        factory = getattr(hub, name, None)
        if factory is None or not callable(factory):
            import difflib

            names = [n for n in dir(hub) if not n.startswith("_") and callable(getattr(hub, n))]
            close = difflib.get_close_matches(name, names, n=5)
            raise FeatureStoreError(f"unknown upstream '{name}' on s3prl.hub"
                                    + (f"; did you mean: {', '.join(close)}?" if close else ""))
    kwargs = {}
    if ckpt is not None:
        kwargs["ckpt"] = str(ckpt)
    if model_config is not None:
        kwargs["model_config"] = str(model_config)
    return factory(**kwargs)


def upstream_identity(name: str, ckpt: str | None, model_config: str | None) -> dict:
    """What makes two extractions the same: name, checkpoint (weights hash + its config.json's model
    and config; the path is recorded but not compared), model config text."""
    ident = {"upstream": name, "ckpt": None, "ckpt_hash": None, "ckpt_config": None, "model_config": None}
    if ckpt is not None:
        p = Path(ckpt)
        ident["ckpt"] = str(p.resolve())
        w = p / "model.safetensors" if p.is_dir() else p
        if w.is_file():
            ident["ckpt_hash"] = weights_hash(w)
        cfg = p / "config.json" if p.is_dir() else None
        if cfg is not None and cfg.is_file():
            try:
                c = json.loads(cfg.read_text())
                ident["ckpt_config"] = json.dumps({"model": c.get("model"), "config": c.get("config")}, sort_keys=True)
            except json.JSONDecodeError:
                ident["ckpt_config"] = cfg.read_text()
    if model_config is not None:
        p = Path(model_config)
        ident["model_config"] = p.read_text() if p.is_file() else str(model_config)
    return ident


def _canonical_config(text: str | None) -> str | None:
    """A checkpoint's recorded {"model", "config"} with every field the model's config class has, at
    its default where the file predates the field (a DUET model: a config written before a field
    existed loads as that default, so it is the same architecture); other text unchanged."""
    if text is None:
        return None
    try:
        from upstream.registry import config_to_dict, make_config

        d = json.loads(text)
        return json.dumps({"model": d["model"], "config": config_to_dict(make_config(d["model"], d["config"]))},
                          sort_keys=True)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):   # not a DUET model's config: compare as written
        return text


def same_upstream(a: dict, b: dict) -> bool:
    """Two identities extract the same features: same upstream and model config, and the same
    checkpoint — by weights hash and architecture when both have one (a copied or moved checkpoint
    directory is the same checkpoint), else by path."""
    if a.get("upstream") != b.get("upstream") or a.get("model_config") != b.get("model_config"):
        return False
    if a.get("ckpt_hash") and b.get("ckpt_hash"):
        ca, cb = a.get("ckpt_config"), b.get("ckpt_config")      # None: a store written before it was recorded
        return a["ckpt_hash"] == b["ckpt_hash"] and (ca is None or cb is None or
                                                     _canonical_config(ca) == _canonical_config(cb))
    return a.get("ckpt") == b.get("ckpt") and a.get("ckpt_hash") == b.get("ckpt_hash")
