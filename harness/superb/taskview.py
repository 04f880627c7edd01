"""The harness's view of a task spec from harness/superb/tasks.py (TASKS, owned by the bridge): which s3prl
downstream, which config, which `-o` overrides for a data source and fold, which test split, how to
parse the metric. Kept in one place so the rest of the harness asks only these questions."""
from __future__ import annotations

from pathlib import Path


def downstream(spec) -> str:
    return spec.downstream


def config_path(spec, real: bool) -> Path:
    return Path(spec.config("real" if real else "mini"))


def folds(spec, requested: int | None = None) -> list[str | None]:
    """The runs of one cell: each fold of a task with folds (first `requested` ones), else [None]."""
    fs = list(getattr(spec, "folds", ()) or ())
    if not fs:
        return [None]
    return fs[:requested] if requested else fs


def overrides(spec, data, fold: str | None = None) -> str:
    """`-o` string pointing the task's config at `data` (a generated corpus or real datasets)."""
    return spec.overrides(data.layout, fold=fold, check=data.kind == "generated")


def test_splits(spec) -> list[str]:
    return [spec.eval_splits[0]]          # the first eval split is the reported one


def parser(spec):
    return spec.parse_metric


def metric_name(spec) -> str:
    return spec.metric


def higher_is_better(spec) -> bool:
    return bool(spec.higher_is_better)


AUDIO_ROOTS = {"sid": ("voxceleb1",), "asv": ("voxceleb1",), "er": ("iemocap",),
               "pr": ("librispeech",), "asr": ("librispeech",)}


def audio_files(task: str, data) -> list[Path]:
    """Every audio file the task can read in `data` (what the feature cache extracts)."""
    out = []
    for attr in AUDIO_ROOTS.get(task, ()):
        root = Path(getattr(data.layout, attr))
        out += [p for ext in ("*.wav", "*.flac") for p in root.rglob(ext)]
    return sorted(out)
