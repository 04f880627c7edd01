"""The SUPERB tasks DUET runs through s3prl: one explicit registry, ``TASKS``.

Each :class:`TaskSpec` says which s3prl downstream runs it (``-d``), which config
(``downstream_configs/{real,mini}/<task>.yaml``), the ``-o`` overrides that point the config at a
generated corpus (:meth:`TaskSpec.overrides`), how to read the metric s3prl prints at test time
(:meth:`TaskSpec.parse_metric`), whether higher is better, the eval split(s), and which
checkpoint to test (:meth:`TaskSpec.eval_checkpoint`).

    >>> from harness.superb.tasks import TASKS, get_tasks
    >>> [t.name for t in get_tasks("sid,asr,er")]
    ['sid', 'asr', 'er']
    >>> TASKS["pr"].parse_metric("dev per: 0.9\\ntest per: 0.4123\\n")
    0.4123

Train then test, as s3prl users do (the harness builds these argv lists the same way)::

    python run_downstream.py -m train -u fbank -d voxceleb1 -c downstream_configs/mini/sid.yaml \\
        -o "$(python -c 'from harness.superb.tasks import TASKS; print(TASKS["sid"].overrides("/work/corpora/small"))')" -p runs/sid
    python run_downstream.py -m evaluate -t test -e runs/sid/dev-best.ckpt

What s3prl prints (``-m evaluate``), per task:

====  ================  ===========================  ======================  ==========
task  ``-d``            printed                      unit                    better
====  ================  ===========================  ======================  ==========
sid   voxceleb1         ``test acc: x``              fraction                higher
asv   sv_voxceleb1      ``sv-voxceleb1/test-EER: x`` fraction                lower
er    emotion           ``test acc: x`` (per fold)   fraction                higher
pr    ctc (libriphone)  ``test per: x``              fraction                lower
asr   asr               ``test-clean wer: x``        percent                 lower
====  ================  ===========================  ======================  ==========

ASR also prints ``test-clean uer: x``, the character error rate (CER, percent): a second metric,
``extra_metrics`` / :meth:`TaskSpec.parse_extra`. Rows hold every metric in percent
(harness/superb/results.py).
"""
from __future__ import annotations

import difflib
import glob
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # harness.corpus is the corpus engineer's package
    from harness.corpus.layout import CorpusLayout

from upstream.facts import ROOT  # noqa: E402
CONFIG_DIR = ROOT / "downstream_configs"
CONFIG_KINDS = ("real", "mini")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))"


class UnknownTaskError(ValueError):
    """A task name that is not in TASKS; the message lists the known ones."""


class MetricNotFoundError(ValueError):
    """s3prl's output holds no line with the task's test metric (the run failed or was cut short)."""


def _q(value) -> str:
    """An ``-o`` value that s3prl's ``eval`` turns back into exactly this string / list of strings."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_q(v) for v in value) + "]"
    s = str(value)
    if "=" in s or ",," in s:
        raise ValueError(f"path {s!r} contains '=' or ',,', which s3prl's -o syntax cannot carry; "
                         f"move the corpus to a path without them")
    return repr(s)


def format_overrides(items: dict[str, object]) -> str:
    """{'config.a.b': value} -> s3prl's ``-o`` string (``config.a.b='v',,config.c=3``)."""
    parts = []
    for key, value in items.items():
        if isinstance(value, (str, Path, list, tuple)):
            parts.append(f"{key}={_q(value)}")
        else:
            parts.append(f"{key}={value!r}")
    return ",,".join(parts)


def runner_overrides(total_steps: int | None = None, eval_step: int | None = None,
                     save_step: int | None = None, log_step: int | None = None) -> dict[str, int]:
    """Override items for the runner's step counts (merge into :meth:`TaskSpec.overrides`' ``extra``)."""
    out = {}
    for name, v in (("total_steps", total_steps), ("eval_step", eval_step), ("save_step", save_step),
                    ("log_step", log_step)):
        if v is not None:
            if int(v) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v}")
            out[f"config.runner.{name}"] = int(v)
    return out


def _as_layout(layout) -> "CorpusLayout":
    if isinstance(layout, (str, Path)):
        from harness.corpus.layout import CorpusLayout

        return CorpusLayout(layout)
    return layout


@dataclass(frozen=True)
class TaskSpec:
    """One SUPERB task as s3prl runs it. See the module docstring for the table."""

    name: str
    title: str
    downstream: str                      # s3prl -d
    metric: str                          # name as s3prl prints it: acc | EER | per | wer
    higher_is_better: bool
    eval_splits: tuple[str, ...]         # -t for -m evaluate; the first is the reported one
    dev_split: str | None                # split whose best checkpoint is tested (None: last checkpoint)
    unit: str                            # "fraction" | "percent"
    corpus_paths: Callable[["CorpusLayout"], dict[str, object]] = field(repr=False, compare=False)
    metric_prefix: str = ""              # printed before "<split>" (sv_voxceleb1: "sv-voxceleb1/")
    metric_sep: str = " "                # between split and metric ("test acc" vs "test-EER")
    folds: tuple[str, ...] = ()          # er: fold1..fold5 (one run each; SUPERB reports the mean)
    test_every_checkpoint: bool = False  # asv: SUPERB tests every saved checkpoint and reports the best
    extra_metrics: tuple[tuple[str, str], ...] = ()   # (row column, name s3prl prints): asr's CER is its "uer"

    # ---- configs --------------------------------------------------------------------------
    def config(self, kind: str = "mini") -> Path:
        """``downstream_configs/<kind>/<task>.yaml`` (kind: 'real' for the real corpora, 'mini')."""
        if kind not in CONFIG_KINDS:
            raise ValueError(f"config kind must be one of {CONFIG_KINDS}, got {kind!r}")
        path = CONFIG_DIR / kind / f"{self.name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"config {path} is missing from this checkout (restore downstream_configs/)")
        return path

    # ---- corpus ---------------------------------------------------------------------------
    def overrides(self, layout, fold: str | None = None, extra: dict[str, object] | None = None,
                  check: bool = True) -> str:
        """The ``-o`` string pointing this task's config at a generated corpus.

        ``layout``: a :class:`harness.corpus.layout.CorpusLayout` or its root directory.
        ``fold``: for ER, which session is the test fold ('fold1'..'fold5'; default fold1).
        ``extra``: more override items, e.g. :func:`runner_overrides` (applied last).
        ``check``: run ``layout.check()`` first (clear error for a missing / half-written corpus).
        """
        layout = _as_layout(layout)
        if check:
            layout.check()
        items = {f"config.downstream_expert.{k}": v for k, v in self.corpus_paths(layout).items()}
        if self.folds:
            fold = fold or self.folds[0]
            if fold not in self.folds:
                raise ValueError(f"task {self.name}: fold must be one of {', '.join(self.folds)}, got {fold!r}")
            items["config.downstream_expert.datarc.test_fold"] = fold
        elif fold is not None:
            raise ValueError(f"task {self.name} has no folds (got fold={fold!r})")
        items.update(extra or {})
        return format_overrides(items)

    # ---- metric ---------------------------------------------------------------------------
    def metric_pattern(self, split: str | None = None) -> re.Pattern:
        split = split or self.eval_splits[0]
        head = re.escape(f"{self.metric_prefix}{split}{self.metric_sep}{self.metric}")
        return re.compile(rf"(?<![\w/-]){head}:\s*{_NUMBER}")

    def parse_metric(self, text: str, split: str | None = None) -> float:
        """The last ``<split> <metric>: x`` s3prl printed (default split: the test split).

        Raises MetricNotFoundError when there is none (the run failed or did not reach testing).
        """
        clean = _ANSI.sub("", text).replace("\r", "\n")
        found = self.metric_pattern(split).findall(clean)
        if not found:
            tail = "\n".join(clean.strip().splitlines()[-5:])
            raise MetricNotFoundError(
                f"task {self.name}: no '{self.metric_prefix}{split or self.eval_splits[0]}{self.metric_sep}"
                f"{self.metric}: x' line in s3prl's output (the run failed or did not reach evaluation); "
                f"last lines:\n{tail}")
        return float(found[-1])

    def parse_extra(self, text: str, split: str | None = None) -> dict[str, float]:
        """{row column: value} of the task's second metrics (ASR: ``cer`` from s3prl's ``uer``, the
        character error rate in percent: its tokens are the characters of char.dict, ``|`` included)."""
        return {column: replace(self, metric=printed, extra_metrics=()).parse_metric(text, split)
                for column, printed in self.extra_metrics}

    def better(self, a: float, b: float) -> bool:
        """Is score a better than b for this task (NaN is never better)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.higher_is_better else a < b

    # ---- checkpoints ----------------------------------------------------------------------
    def eval_checkpoint(self, expdir: str | Path) -> Path:
        """Which checkpoint of a training run to test.

        ``<dev_split>-best.ckpt`` when the task selects on dev and training wrote one; else the
        last ``states-N.ckpt`` (ASV as in SUPERB, which has no dev selection; or a run whose dev
        score never beat s3prl's initial best, e.g. ASR at 100 % WER).
        """
        expdir = Path(expdir)
        if self.dev_split:
            best = expdir / f"{self.dev_split}-best.ckpt"
            if best.is_file():
                return best
        states = sorted(glob.glob(str(expdir / "states-*.ckpt")),
                        key=lambda p: int(Path(p).stem.split("-")[-1]))
        if not states:
            raise FileNotFoundError(f"task {self.name}: no checkpoint in {expdir} (expected "
                                    f"{self.dev_split + '-best.ckpt or ' if self.dev_split else ''}states-N.ckpt); "
                                    f"did training finish?")
        return Path(states[-1])

    def test_checkpoints(self, expdir: str | Path) -> list[Path]:
        """Every checkpoint to test: all saved ``states-N.ckpt`` for a task that reports the best
        test score over them (ASV in SUPERB: every save_step, best EER), else :meth:`eval_checkpoint`."""
        if not self.test_every_checkpoint:
            return [self.eval_checkpoint(Path(expdir))]
        self.eval_checkpoint(Path(expdir))              # the clear error when there is none
        return sorted((Path(p) for p in glob.glob(str(Path(expdir) / "states-*.ckpt"))),
                      key=lambda p: int(p.stem.split("-")[-1]))

    # ---- command lines for run_downstream.py ----------------------------------------------
    def train_argv(self, upstream: str, expdir: str | Path, layout=None, *, kind: str = "mini",
                   fold: str | None = None, extra: dict[str, object] | None = None,
                   upstream_args: Sequence[str] = ()) -> list[str]:
        """argv for ``run_downstream.py -m train`` (``layout`` None: the config's own paths)."""
        argv = ["-m", "train", "-u", upstream, "-d", self.downstream, "-c", str(self.config(kind)),
                "-p", str(expdir), *upstream_args]
        if layout is not None:
            argv += ["-o", self.overrides(layout, fold=fold, extra=extra)]
        elif extra or fold:
            items = dict(extra or {})
            if fold:
                items["config.downstream_expert.datarc.test_fold"] = fold
            argv += ["-o", format_overrides(items)]
        return argv

    def eval_argv(self, expdir: str | Path, split: str | None = None) -> list[str]:
        """argv for ``run_downstream.py -m evaluate`` on the checkpoint :meth:`eval_checkpoint` picks."""
        return ["-m", "evaluate", "-t", split or self.eval_splits[0], "-e", str(self.eval_checkpoint(expdir))]


def _sid_paths(c) -> dict[str, object]:
    return {"datarc.file_path": c.voxceleb1, "datarc.meta_data": c.iden_split}


def _asv_paths(c) -> dict[str, object]:
    return {"datarc.file_path": c.voxceleb1, "datarc.train_meta_data": c.iden_split,
            "datarc.dev_meta_data": c.veri_dev, "datarc.test_meta_data": c.veri_test}


def _er_paths(c) -> dict[str, object]:
    return {"datarc.root": c.iemocap, "datarc.meta_data": c.iemocap_meta}


def _pr_paths(c) -> dict[str, object]:
    return {"corpus.csv_dir": c.bucket_dir, "corpus.libri_root": c.librispeech, "corpus.lexicon": [c.lexicon],
            "corpus.train": c.bucket_csv("train").name, "corpus.dev": c.bucket_csv("dev").name,
            "corpus.test": c.bucket_csv("test").name, "text.vocab_file": c.phone_vocab}


def _asr_paths(c) -> dict[str, object]:
    return {"datarc.libri_root": c.librispeech, "datarc.bucket_file": c.bucket_dir, "datarc.dict_path": c.char_dict}


TASKS: dict[str, TaskSpec] = {
    "sid": TaskSpec("sid", "speaker identification (VoxCeleb1)", "voxceleb1", "acc", True, ("test",), "dev",
                    "fraction", _sid_paths),
    "asv": TaskSpec("asv", "speaker verification (VoxCeleb1)", "sv_voxceleb1", "EER", False, ("test",), None,
                    "fraction", _asv_paths, metric_prefix="sv-voxceleb1/", metric_sep="-",
                    test_every_checkpoint=True),
    "er": TaskSpec("er", "emotion recognition (IEMOCAP, 5 folds)", "emotion", "acc", True, ("test",), "dev",
                   "fraction", _er_paths, folds=tuple(f"fold{k}" for k in range(1, 6))),
    "pr": TaskSpec("pr", "phone recognition (LibriSpeech, libriphone)", "ctc", "per", False, ("test",), "dev",
                   "fraction", _pr_paths),
    "asr": TaskSpec("asr", "speech recognition (LibriSpeech, char CTC)", "asr", "wer", False, ("test-clean",),
                    "dev-clean", "percent", _asr_paths, extra_metrics=(("cer", "uer"),)),
}


def get_task(name: str) -> TaskSpec:
    """TASKS[name], or UnknownTaskError naming the known tasks (and the closest match)."""
    key = name.strip().lower()
    if key in TASKS:
        return TASKS[key]
    near = difflib.get_close_matches(key, list(TASKS), n=1)
    raise UnknownTaskError(f"unknown task {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                           + f"; known tasks: {', '.join(TASKS)}")


def get_tasks(names: str | Sequence[str]) -> list[TaskSpec]:
    """'sid,asr,er' (or a list) -> [TaskSpec, ...] in the given order, duplicates dropped."""
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [n for n in (i.strip() for i in items) if n]
    if not items:
        raise UnknownTaskError(f"no task given; known tasks: {', '.join(TASKS)}")
    out: list[TaskSpec] = []
    for n in items:
        t = get_task(n)
        if t not in out:
            out.append(t)
    return out
