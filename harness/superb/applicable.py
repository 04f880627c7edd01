"""Which (task, stream) cells s3prl can build at all: a stream's frame rate against the task's downsampling.

s3prl's ASR model (``modelrc.select: RNNs``) first concatenates ``round(total_rate / upstream_rate)``
frames. For a stream coarser than ``total_rate`` samples per frame — e.g. a 5 frames/s utterance-rate
stream (3200 samples per frame) against SUPERB's 320 — that is 0 frames and the model cannot be built
(s3prl stops with "input_size must be greater than zero"). `harness run` lists such cells as not
applicable instead of launching a run that must fail.

    reason_not_applicable({"select": "RNNs", "RNNs": {"total_rate": 320}}, 3200)   # -> the reason (a str)
    reason_not_applicable({"select": "RNNs", "RNNs": {"total_rate": 320}}, 320)    # -> None
"""
from __future__ import annotations

from pathlib import Path

import yaml
from upstream.facts import SAMPLE_RATE


def modelrc(config: str | Path) -> dict:
    """``downstream_expert.modelrc`` of a downstream config (empty when it has none)."""
    with open(config) as f:
        cfg = yaml.safe_load(f) or {}
    return (cfg.get("downstream_expert") or {}).get("modelrc") or {}


def total_rate(rc: dict) -> int | None:
    """The selected model's ``total_rate`` (None: it does not downsample by one, or -1: no concat)."""
    sel = rc.get("select")
    tr = (rc.get(sel) or {}).get("total_rate") if sel else None
    return None if tr in (None, -1) else int(tr)


def reason_not_applicable(rc: dict, upstream_rate: int) -> str | None:
    """Why a stream of ``upstream_rate`` samples per frame cannot feed this model, or None if it can."""
    tr = total_rate(rc)
    if tr is None or round(tr / upstream_rate) >= 1:
        return None
    return (f"the stream has {upstream_rate} samples per frame ({SAMPLE_RATE / upstream_rate:g} frames/s); this config's "
            f"{rc['select']}.total_rate is {tr}, so s3prl would concatenate round({tr}/{upstream_rate}) = 0 frames. "
            "Use a frame-rate stream (e.g. content) for this task")
