"""The harness's view of a task spec from harness/tasks.py (TASKS, owned by the bridge).

Kept in one place so the runner depends on a handful of questions only: which s3prl downstream,
which config, which `-o` overrides for a data source, which test split(s), how to parse the metric.
"""
from __future__ import annotations

from pathlib import Path

from harness.provenance import ROOT


def _get(spec, *names, default=None):
    for n in names:
        if hasattr(spec, n):
            return getattr(spec, n)
        if isinstance(spec, dict) and n in spec:
            return spec[n]
    return default


def downstream(spec) -> str:
    return _get(spec, "downstream")


def config_path(spec, real: bool) -> Path:
    fn = _get(spec, "config_path")
    if callable(fn):
        return Path(fn(real=real) if real else fn(real=False))
    p = _get(spec, "real_config" if real else "mini_config")
    if p is None:
        cfgs = _get(spec, "configs") or {}
        p = cfgs.get("real" if real else "mini")
    p = Path(p)
    return p if p.is_absolute() else ROOT / p


def overrides(spec, data) -> str:
    """`-o` string pointing the task's config at `data` (a generated corpus or real datasets)."""
    fn = _get(spec, "overrides")
    return fn(data.layout) if callable(fn) else ""


def test_splits(spec) -> list[str]:
    s = _get(spec, "test_splits", "eval_splits", "test_split", "eval_split", default="test")
    return [s] if isinstance(s, str) else list(s)


def parser(spec):
    return _get(spec, "parse_metric")


def metric_name(spec) -> str:
    return _get(spec, "metric", "metric_name", default="metric")


def higher_is_better(spec) -> bool:
    return bool(_get(spec, "higher_is_better", default=True))


def audio_files(task: str, data) -> list[Path]:
    """Every audio file the task can read in `data` (what the feature cache extracts)."""
    from harness.tasks import TASKS
    spec = TASKS[task]
    fn = _get(spec, "audio_files")
    if callable(fn):
        return [Path(p) for p in fn(data.layout)]
    sub = {"sid": "VoxCeleb1", "asv": "VoxCeleb1", "er": "IEMOCAP", "pr": "LibriSpeech", "asr": "LibriSpeech"}[task]
    root = Path(data.root) / sub if data.kind == "generated" else Path(data.real.root_for(task))
    return sorted(p for ext in ("*.wav", "*.flac") for p in root.rglob(ext))
