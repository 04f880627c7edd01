"""What a SUPERB cell's metric would be without learning anything, and whether a score beats it.

Every number here is in percent (the unit of every row; see harness/superb/results.py).

====  ==========================================  =========================================
task  chance                                       n_test (what the interval counts)
====  ==========================================  =========================================
sid   100 / speakers in iden_split.txt ("1/classes")  test utterances (iden_split ``3``)
er    majority class of each test fold's labels,  test utterances over the folds run
      averaged over the folds run ("majority")
asv   50 (a random score's EER)                   test trials (veri_test.txt)
pr    best constant output: one phone repeated    test utterances (phones/test-clean.txt)
      m times, m and phone chosen on the test
      references ("constant output"); 100 without
      references (the empty output)
asr   the same for words (WER) and characters     test utterances (test-clean *.trans.txt)
      (CER, ``|`` between words as s3prl's
      character dictionary spells it)
====  ==========================================  =========================================

``learned``: the score's 95 % interval lies wholly on the good side of chance. Accuracies: the
Wilson interval of a binomial proportion over ``n_test`` test utterances. Error rates (PER, WER, CER,
EER): the same Wilson interval with ``n`` = test utterances (trials for EER), the rate clipped to
[0, 100] % -- a documented, conservative rule: the errors inside one utterance are correlated, so
counting utterances rather than tokens widens the interval (a per-utterance bootstrap would need
s3prl to keep per-utterance errors, which its ``ctc`` downstream does not write).

    >>> wilson(80.0, 100)                       # doctest: +ELLIPSIS
    (71.1..., 86.6...)
    >>> best_constant_error([["a", "b", "a"], ["a", "c"]])   # "a" once: 2 + 1 errors of 5 tokens
    60.0
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.corpus.transcripts import read_chapter_transcripts, read_phone_transcripts

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Chance:
    value: float | None          # percent, in the task's metric; None: unknown for this data
    kind: str                    # how it was computed ("1/classes (100 speakers)", ...)
    n_test: int | None           # what the interval counts (utterances, or trials for EER)


def wilson(value_pct: float, n: int | None, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval (percent) of a proportion ``value_pct`` % observed over ``n``
    trials; the proportion is clipped to [0, 100] % first. (nan, nan) without a sample size."""
    if not n or n <= 0 or value_pct is None or math.isnan(float(value_pct)):
        return (math.nan, math.nan)
    p = min(1.0, max(0.0, float(value_pct) / 100.0))
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # the interval holds p (exactly, also where rounding would put a bound a hair past it at 0 or 1)
    return (100.0 * max(0.0, min(p, centre - half)), 100.0 * min(1.0, max(p, centre + half)))


def learned(value_pct: float, chance_pct: float | None, n: int | None, higher_is_better: bool) -> bool | None:
    """Does the score's interval lie wholly on the good side of chance? None when either is unknown."""
    if chance_pct is None or not n:
        return None
    lo, hi = wilson(value_pct, n)
    if math.isnan(lo):
        return None
    return bool(lo > chance_pct) if higher_is_better else bool(hi < chance_pct)


def best_constant_error(refs: list[list[str]], candidates: int = 5) -> float:
    """Error rate (percent) of the best output that ignores the audio: the same token repeated m
    times for every utterance (m = 0 is the empty output, 100 %). For a reference of N tokens with c
    copies of the token, the edit distance of m copies is N + m - 2 min(m, c); the token is searched
    among the ``candidates`` most frequent, m over 0..max c."""
    total = sum(len(r) for r in refs)
    if total == 0:
        return 100.0
    best = total
    for tok, _ in Counter(t for r in refs for t in r).most_common(candidates):
        counts = [r.count(tok) for r in refs]
        for m in range(0, max(counts) + 1):
            errs = sum(len(r) + m - 2 * min(m, c) for r, c in zip(refs, counts))
            best = min(best, errs)
    return 100.0 * best / total


# ----------------------------------------------------------------------------- per task

def sid_chance(layout) -> Chance:
    lines = [ln.split() for ln in Path(layout.iden_split).read_text().splitlines() if ln.strip()]
    speakers = {ln[1].split("/")[0] for ln in lines if len(ln) >= 2}
    n_test = sum(1 for ln in lines if ln and ln[0] == "3")
    if not speakers:
        raise ValueError(f"{layout.iden_split}: no '1|2|3 idNNNNN/...' lines; regenerate the corpus")
    return Chance(100.0 / len(speakers), f"1/classes ({len(speakers)} speakers)", n_test)


def er_chance(layout, folds: list[str]) -> Chance:
    """Majority class of each fold's test labels, weighted by fold size (the row is the fold mean;
    folds of equal size make the two agree)."""
    majority = n = 0
    for fold in folds:
        k = int(str(fold).replace("fold", "") or 1)
        meta = Path(layout.iemocap_meta) / f"Session{k}" / "test_meta_data.json"
        labels = [m["label"] for m in json.loads(meta.read_text())["meta_data"]]
        if labels:
            majority += Counter(labels).most_common(1)[0][1]
            n += len(labels)
    if not n:
        raise ValueError(f"{layout.iemocap_meta}: no test labels for folds {folds}")
    return Chance(100.0 * majority / n, f"majority class ({len(folds)} fold{'s' * (len(folds) > 1)})", n)


def asv_chance(layout) -> Chance:
    n = sum(1 for ln in Path(layout.veri_test).read_text().splitlines() if ln.strip())
    return Chance(50.0, "EER of a random score", n)


def _libri_test_texts(layout) -> list[str]:
    root = Path(layout.librispeech) / "test-clean"
    texts = []
    for trans in sorted(root.rglob("*.trans.txt")):
        texts += read_chapter_transcripts(trans).values()
    return texts


def pr_chance(layout) -> Chance:
    path = Path(getattr(layout, "phone_transcripts_dir", Path("/nonexistent"))) / "test-clean.txt"
    if path.is_file():
        refs = list(read_phone_transcripts(path).values())
        return Chance(best_constant_error(refs), "best constant output", len(refs))
    n = len(_libri_test_texts(layout)) or None
    return Chance(100.0, "empty output", n)


def asr_chance(layout) -> tuple[Chance, Chance]:
    """(WER chance, CER chance)."""
    texts = _libri_test_texts(layout)
    words = [t.split() for t in texts]
    chars = [list("|".join(w)) for w in words]
    return (Chance(best_constant_error(words), "best constant output", len(texts)),
            Chance(best_constant_error(chars), "best constant output", len(texts)))


def chance_for(task: str, layout, runs: list[str] | None = None) -> dict[str, Chance]:
    """{metric column: Chance} for a task on a corpus layout ('value' is the task's main metric;
    ASR adds 'cer'). Unknown ({'value': Chance(None, ...)}) when the data cannot be read."""
    try:
        if task == "sid":
            return {"value": sid_chance(layout)}
        if task == "er":
            folds = [r for r in (runs or []) if str(r).startswith("fold")] or ["fold1"]
            return {"value": er_chance(layout, folds)}
        if task == "asv":
            return {"value": asv_chance(layout)}
        if task == "pr":
            return {"value": pr_chance(layout)}
        if task == "asr":
            wer, cer = asr_chance(layout)
            return {"value": wer, "cer": cer}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {"value": Chance(None, f"unknown ({type(e).__name__}: {e})", None)}
    return {"value": Chance(None, f"unknown (no chance rule for task {task})", None)}
