"""What the harness knows about upstreams: s3prl name, feature keys, checkpoints.

`UPSTREAMS` is the explicit registry. DUET upstreams take a checkpoint directory
(safetensors + config.json, see docs/contracts.md); `fbank` is s3prl's own log-mel baseline.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from upstream.facts import ROOT

CHECKPOINTS_DIR = ROOT / "checkpoints"


@dataclass(frozen=True)
class UpstreamInfo:
    name: str                               # the s3prl hub name (-u)
    features: tuple[str, ...]               # keys it returns that a cell may select (-s)
    default_features: tuple[str, ...]       # what a bare `harness run` evaluates
    duet: bool = True                       # takes a DUET checkpoint dir (-k) and layer subsets (-g)
    description: str = ""
    layered: tuple[str, ...] = field(default=())  # keys whose layers a --layers subset can restrict

    def bundled_checkpoint(self) -> Path | None:
        if not self.duet:
            return None
        from upstream.expert_base import bundled_checkpoint   # one naming rule for experts and harness
        return bundled_checkpoint(self.name)


UPSTREAMS: dict[str, UpstreamInfo] = {
    "fbank": UpstreamInfo("fbank", ("hidden_states",), ("hidden_states",), duet=False,
                          description="s3prl baseline: 80-dim log-mel filterbank + deltas (no training)"),
    "learn2diss": UpstreamInfo("learn2diss", ("content", "other", "utterance", "hidden_states"), ("content", "other"),
                               description="frame + utterance encoders, MI minimised with CLUB",
                               layered=("content", "other")),
    "jooci": UpstreamInfo("jooci", ("content", "other", "utterance", "hidden_states"), ("content", "other"),
                          description="shared CNN, content and other encoders, GRL decoder",
                          layered=("content", "other")),
    "barlow_twins": UpstreamInfo("barlow_twins", ("content", "other", "utterance", "hidden_states"), ("content", "other"),
                                 description="Barlow Twins speaker-invariant content + other stream",
                                 layered=("content", "other")),
    "hubert_compact": UpstreamInfo("hubert_compact", ("content", "hidden_states"), ("hidden_states",),
                                   description="single-stream compact HuBERT (reference)",
                                   layered=("content", "hidden_states")),
}

# A bare `harness run` (no --upstreams): DUET's three models on every task, beside each task's controls
# (results/calibration.md). fbank normalises every utterance (CMVN): for SID, ASV and ER the negative
# control (chance by construction), for PR and ASR the baseline; fbank_no_cmvn is the SID/ASV/ER
# positive control, and no control at all for PR/ASR, so it does not run there. An explicit
# --upstreams runs every name on every task.
DEFAULT_MODELS = ("learn2diss", "jooci", "barlow_twins")
TASK_CONTROLS = {"sid": ("fbank", "fbank_no_cmvn"), "asv": ("fbank", "fbank_no_cmvn"), "er": ("fbank", "fbank_no_cmvn"),
                 "pr": ("fbank",), "asr": ("fbank",)}
DEFAULT_UPSTREAMS = tuple(dict.fromkeys([c for cs in TASK_CONTROLS.values() for c in cs] + list(DEFAULT_MODELS)))


def default_upstreams(task: str) -> tuple[str, ...]:
    """What a bare `harness run` evaluates on ``task``: its controls, then DUET's models."""
    return TASK_CONTROLS[task] + DEFAULT_MODELS

# s3prl's baseline front-ends, known without importing s3prl.hub (which pulls transformers & co.)
S3PRL_BASELINES = ("fbank", "fbank_no_cmvn", "mfcc", "mel", "linear", "spectrogram")


class UnknownUpstream(ValueError):
    """A name that is neither a DUET upstream nor on s3prl's hub (the message suggests close names)."""


def s3prl_hub_names() -> list[str]:
    """Every upstream name s3prl's hub offers (imports s3prl.hub: seconds; called only for names
    that are neither DUET's nor a baseline front-end)."""
    from harness.s3prl import compat

    compat.install()
    import s3prl.hub as hub

    return sorted(n for n in dir(hub) if not n.startswith("_") and callable(getattr(hub, n))
                  and getattr(getattr(hub, n), "__module__", "").startswith("s3prl."))


def upstream_info(name: str, hub_names=s3prl_hub_names) -> UpstreamInfo:
    """The harness's facts about any upstream: DUET's and fbank from UPSTREAMS, any other s3prl hub
    name (``fbank_no_cmvn``, ``mfcc``, ``hubert``, ...) as a single-key (``hidden_states``) upstream
    whose ``-k`` is passed through unchanged. Raises UnknownUpstream with a did-you-mean."""
    if name in UPSTREAMS:
        return UPSTREAMS[name]
    if name in S3PRL_BASELINES or (not name.startswith("_") and name in hub_names()):
        return UpstreamInfo(name, ("hidden_states",), ("hidden_states",), duet=False,
                            description=f"s3prl upstream {name!r} (its own -k, all layers)")
    import difflib
    local = list(dict.fromkeys([*UPSTREAMS, *S3PRL_BASELINES]))
    close = difflib.get_close_matches(name, local, n=3, cutoff=0.8) or \
        difflib.get_close_matches(name, list(dict.fromkeys([*local, *hub_names()])), n=3)
    raise UnknownUpstream(f"unknown upstream {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                          + f"; DUET: {', '.join(u for u in UPSTREAMS if UPSTREAMS[u].duet)}; s3prl baselines: "
                            f"{', '.join(S3PRL_BASELINES)}; or any name of s3prl's hub (`harness list`)")


def ckpt_identity(path: Path) -> str:
    """12 hex digits naming a checkpoint that is not a DUET directory: the sha256 of a weights file,
    or of a transformers directory's weights (model.safetensors / pytorch_model.bin)."""
    from upstream.facts import HASH_LEN, sha256_file

    p = Path(path)
    if p.is_file():
        return sha256_file(p)[:HASH_LEN]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (p / name).is_file():
            return sha256_file(p / name)[:HASH_LEN]
    raise CheckpointMissing(f"{p}: no weights file (model.safetensors or pytorch_model.bin) to identify")


class CheckpointMissing(ValueError):
    pass


def checkpoint_model_name(ckpt: Path) -> str:
    """The `model` field of a DUET checkpoint's config.json (clear error if unreadable)."""
    cfg = Path(ckpt) / "config.json"
    if not cfg.is_file():
        raise CheckpointMissing(f"{cfg}: not a DUET checkpoint directory (no config.json). "
                                f"Pass --ckpt DIR with config.json + model.safetensors, or train one with `harness pretrain`.")
    try:
        return str(json.loads(cfg.read_text())["model"])
    except (ValueError, KeyError) as e:
        raise CheckpointMissing(f"{cfg}: unreadable DUET checkpoint config ({e}); re-save the checkpoint") from e


def checkpoint_hash(ckpt: Path) -> str:
    """:func:`upstream.checkpoint.checkpoint_hash`, its error as CheckpointMissing (the harness's type)."""
    from upstream.checkpoint import CheckpointError
    from upstream.checkpoint import checkpoint_hash as weights_hash_of

    try:
        return weights_hash_of(ckpt)
    except CheckpointError as e:
        raise CheckpointMissing(str(e)) from e


def list_checkpoints(root: Path = CHECKPOINTS_DIR) -> list[tuple[str, Path]]:
    """(model name, dir) for every checkpoint dir under `root`."""
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "config.json").is_file():
                try:
                    out.append((checkpoint_model_name(d), d))
                except CheckpointMissing:
                    continue
    return out
