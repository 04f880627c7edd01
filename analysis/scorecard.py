"""The validity scorecard (pure functions): what each layer of each stream holds about phones and
speakers on voices no checkpoint trained on, beside signal-processing baselines and random-init
twins, and the pass/fail of the properties a disentangled model must have.

Per layer (:func:`score_layer`), on an evaluation set of utterances with phone alignments and an
ABX item file (:class:`EvalSet`; DUET's is a corpus' ``unseen/`` set):

``probe_phone``    linear softmax probe, frame -> the phone at the frame's centre (silence left out),
                   trained on the frames of one part of the speakers and tested on the *other*
                   speakers (speaker-disjoint: every test voice is new to the probe too). Held-out
                   accuracy; chance = the majority phone of the test frames.
``abx_within``     triphone ABX error (%), Libri-light's protocol (:mod:`analysis.abx`), chance 50;
``abx_across``     within and across speaker.
``probe_speaker``  linear probe, utterance mean and std of the frames (concatenated) -> speaker;
                   each speaker's utterances split train/test; chance = the majority speaker of the
                   test split.

Baselines at another frame rate: :func:`pool_frames` averages ``factor`` consecutive frames (100 Hz
fbank -> 50 Hz: frames 2k and 2k+1), so a baseline is compared with a model at the model's own rate.

Summaries (:func:`summarize`): per model and stream, each metric at the layer that holds the MOST of
that information (probes: the highest accuracy; ABX: the lowest error), the layer named. For what a
stream is for (content: phones; other: speakers) that is its best layer; for what it should not hold
(content: speakers; other: phones) it is its worst leak. :func:`criteria` turns the summaries into
issue 11's pass/fail list (:data:`CRITERIA`).

Example::

    data = EvalSet(utts, speakers, segments, read_item_file("unseen/abx.item"))
    rows = score_layer(lambda u: store.get("content", 2, u), 50.0, data)
    summ = summarize(all_rows)
    for c in criteria(summ, models, twins, fbank="fbank_no_cmvn", reference="hubert_compact"): ...
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from analysis.abx import ABXConfig, ItemTable, abx_scores, build_plan, slice_items
from analysis.probes import ProbeResult, probe_accuracy, train_linear_probe
from analysis.views import SILENCES, utterance_frames
from analysis.samples import abx_coverage_too_low

METRICS = ("probe_phone", "abx_within", "abx_across", "probe_speaker")
HIGHER_IS_MORE = {"probe_phone": True, "abx_within": False, "abx_across": False, "probe_speaker": True}
TITLES = {"probe_phone": "phone probe", "abx_within": "ABX within (%)", "abx_across": "ABX across (%)",
          "probe_speaker": "speaker probe"}


@dataclass(frozen=True)
class ScorecardConfig:
    phone_test_speakers: float = 0.5   # fraction of the speakers whose frames test the phone probe
    speaker_test_frac: float = 0.25    # per speaker, fraction of utterances that test the speaker probe
    max_train_frames: int = 10000      # phone probe: training frames sampled (seeded)
    max_test_frames: int = 20000       # phone probe: test frames sampled (seeded)
    probe_iters: int = 100             # L-BFGS iterations of each probe
    l2: float = 1e-4
    seed: int = 0
    abx: ABXConfig = field(default_factory=lambda: ABXConfig(n_bootstrap=1000, device="cpu"))


@dataclass
class EvalSet:
    """Utterances (ids, speaker of each), their phone segments ``[(onset s, offset s, phone)]`` and
    the ABX item table of the same files."""

    utts: list[str]
    speakers: list[str]
    segments: Mapping[str, Sequence[tuple[float, float, str]]]
    items: ItemTable

    def __post_init__(self):
        if len(self.utts) != len(self.speakers):
            raise ValueError(f"{len(self.utts)} utterances but {len(self.speakers)} speaker labels")
        missing = [u for u in self.utts if u not in self.segments]
        if missing:
            raise ValueError(f"no phone segments for {len(missing)} utterance(s), e.g. {missing[0]}")
        if len(set(self.speakers)) < 2:
            raise ValueError("the evaluation set needs at least 2 speakers (speaker probe, across-speaker ABX)")


# ----------------------------------------------------------------------------------------------
# frames

def pool_frames(x: np.ndarray, factor: int) -> np.ndarray:
    """(T, D) -> (T // factor, D): the mean of each run of ``factor`` consecutive frames (a last
    incomplete run is dropped). ``factor`` 1 returns ``x``. Frame k of the result covers input
    frames factor*k .. factor*k + factor - 1, i.e. the same span of time at 1/factor the rate."""
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"pool factor must be a positive integer, got {factor}")
    x = np.asarray(x)
    if factor == 1:
        return x
    n = x.shape[0] // factor
    return x[:n * factor].reshape(n, factor, *x.shape[1:]).mean(1, dtype=np.float64).astype(np.float32)


def pool_factor(from_rate: float, to_rate: float) -> int:
    """The integer factor that takes ``from_rate`` to ``to_rate`` (ValueError when there is none)."""
    f = from_rate / to_rate
    if to_rate <= 0 or abs(f - round(f)) > 1e-6 or round(f) < 1:
        raise ValueError(f"cannot pool {from_rate:g} Hz frames to {to_rate:g} Hz (not an integer factor)")
    return int(round(f))


def mean_std(frames: np.ndarray) -> np.ndarray:
    """(T, D) -> (2D,): the mean and the standard deviation over time, concatenated."""
    f = np.asarray(frames, dtype=np.float64)
    return np.concatenate([f.mean(0), f.std(0)])


def frame_labels(n_frames: int, rate: float, segments: Sequence[tuple[float, float, str]]) -> np.ndarray:
    """The phone at each frame's centre ((i + 0.5) / rate s); '' for silence and past the end."""
    if not segments:
        return np.full(n_frames, "", dtype=object)
    ends = np.array([b for _, b, _ in segments])
    labs = np.array([("" if p in SILENCES else p) for _, _, p in segments] + [""], dtype=object)
    centre = (np.arange(n_frames) + 0.5) / rate
    return labs[np.searchsorted(ends, centre, side="right")]


def split_speakers(speakers: Sequence[str], test_frac: float, seed: int) -> tuple[list[str], list[str]]:
    """(train speakers, test speakers): a seeded permutation of the sorted distinct speakers, the
    last ``round(test_frac * n)`` (at least 1, at most n - 1) held out."""
    names = sorted(set(speakers))
    if len(names) < 2:
        raise ValueError(f"a speaker-disjoint split needs >= 2 speakers, got {len(names)}")
    k = min(len(names) - 1, max(1, int(round(test_frac * len(names)))))
    perm = np.random.default_rng([seed, 0x5C0]).permutation(len(names))
    test = sorted(names[i] for i in perm[:k])
    return sorted(set(names) - set(test)), test


# ----------------------------------------------------------------------------------------------
# the three measures

def phone_probe(get_frames: Callable[[str], np.ndarray], rate: float, data: EvalSet,
                config: ScorecardConfig = ScorecardConfig()) -> ProbeResult:
    """Speaker-disjoint linear phone probe (see the module docstring). Test frames whose phone never
    occurs in the training frames are left out (the same frames for every model at one rate)."""
    train_spk, _ = split_speakers(data.speakers, config.phone_test_speakers, config.seed)
    train_spk = set(train_spk)
    parts = {True: ([], [], []), False: ([], [], [])}
    for k, (u, s) in enumerate(zip(data.utts, data.speakers)):
        f = utterance_frames(get_frames, u)
        lab = frame_labels(len(f), rate, data.segments[u])
        keep = lab != ""
        xs, ys, gs = parts[s in train_spk]
        xs.append(f[keep])
        ys.append(lab[keep])
        gs.append(np.full(int(keep.sum()), k))
    rng = np.random.default_rng([config.seed, 0x9B0])
    out = []
    for is_train, cap in ((True, config.max_train_frames), (False, config.max_test_frames)):
        xs, ys, gs = parts[is_train]
        if not xs or sum(len(x) for x in xs) == 0:
            raise ValueError(f"phone probe: no {'training' if is_train else 'test'} frames outside silence")
        x, y, g = np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)
        if len(x) > cap:
            sel = np.sort(rng.choice(len(x), cap, replace=False))
            x, y, g = x[sel], y[sel], g[sel]
        out.append((x, y, g))
    (xtr, ytr, _), (xte, yte, gte) = out
    classes, ytr_i = np.unique(ytr.astype(str), return_inverse=True)
    seen = np.isin(yte.astype(str), classes)
    xte, yte, gte = xte[seen], yte[seen].astype(str), gte[seen]
    if len(xte) == 0:
        raise ValueError("phone probe: no test frame has a phone seen in training")
    import torch

    lin, mean, std = train_linear_probe(np.asarray(xtr, dtype=np.float64), ytr_i, len(classes), l2=config.l2,
                                        max_iter=config.probe_iters, device="cpu")
    with torch.no_grad():
        pred = lin(torch.as_tensor((xte - mean) / std, dtype=torch.float32)).argmax(1).numpy()
    yte_i = np.searchsorted(classes, yte)
    acc = float((pred == yte_i).mean())
    chance = float(np.bincount(yte_i).max() / len(yte_i))
    return ProbeResult(acc, chance, len(xtr), len(xte), len(classes), len(np.unique(gte)))


def speaker_probe(get_frames: Callable[[str], np.ndarray], data: EvalSet,
                  config: ScorecardConfig = ScorecardConfig()) -> ProbeResult:
    """Linear speaker probe on mean+std pooled utterances (per-speaker train/test split)."""
    x = np.stack([mean_std(utterance_frames(get_frames, u)) for u in data.utts])
    return probe_accuracy(x, data.speakers, seed=config.seed, test_frac=config.speaker_test_frac, l2=config.l2,
                          device="cpu", stratify=True)


@dataclass
class ABXCache:
    """ABX plans by (rate, kept items): built once, shared by every layer and model at that rate."""

    plans: dict = field(default_factory=dict)

    def plan(self, rate: float, kept: np.ndarray, table: ItemTable, config: ABXConfig):
        key = (float(rate), kept.tobytes())
        if key not in self.plans:
            t = table.subset(kept)
            self.plans[key] = build_plan(t.phone, t.context, t.speaker, config)
        return self.plans[key]


def abx_rows(get_frames: Callable[[str], np.ndarray], rate: float, data: EvalSet,
             config: ScorecardConfig = ScorecardConfig(), cache: ABXCache | None = None) -> list[dict]:
    """Within/across-speaker ABX rows (value %, chance 50, interval, sizes); NaN values when no
    item spans a frame at ``rate`` (a 5 Hz stream)."""
    feats, kept = slice_items(data.items, get_frames, rate)
    base = {"chance": 50.0, "n_items_total": len(data.items), "n_items": int(len(kept))}
    if len(kept) == 0:
        return [{**base, "metric": f"abx_{c}", "value": float("nan"), "n_cells": 0, "n_speakers": 0,
                 "ci_lo": float("nan"), "ci_hi": float("nan")} for c in ("within", "across")]
    plan = (cache or ABXCache()).plan(rate, kept, data.items, config.abx)
    s = abx_scores(feats, plan, config.abx)
    return [{**base, **r} for r in s.rows()]


def score_layer(get_frames: Callable[[str], np.ndarray], rate: float, data: EvalSet,
                config: ScorecardConfig = ScorecardConfig(), cache: ABXCache | None = None) -> list[dict]:
    """The four metrics of one layer (``get_frames(utt) -> (T, D)`` at ``rate`` frames/s), as result
    rows: metric, value, chance and the sample sizes (``analysis.samples.row_warnings`` reads them)."""
    rows = []
    p = phone_probe(get_frames, rate, data, config)
    rows.append({"metric": "probe_phone", "value": p.accuracy, "chance": p.chance, **p.sizes()})
    rows += abx_rows(get_frames, rate, data, config, cache)
    s = speaker_probe(get_frames, data, config)
    rows.append({"metric": "probe_speaker", "value": s.accuracy, "chance": s.chance, **s.sizes()})
    return rows


# ----------------------------------------------------------------------------------------------
# summaries and criteria

@dataclass(frozen=True)
class Best:
    value: float
    layer: int | None
    chance: float
    warnings: str = ""   # the picked row's small-sample warnings ("" when none)
    n_test: int = 0      # probes: the held-out items the value was measured on (0: unknown / not a probe)
    ci: tuple[float, float] = (math.nan, math.nan)   # ABX: its 95 % speaker-bootstrap interval (nan: none)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def summarize(rows: Sequence[Mapping]) -> dict[tuple[str, str], dict[str, Best]]:
    """{(model, stream): {metric: Best}}: each metric at the layer with the most of that information
    (highest probe accuracy, lowest ABX error); NaN with layer None where no layer has a value.
    An ABX row on too few of the items (``samples.abx_coverage_too_low``) is not a value here."""
    out: dict[tuple[str, str], dict[str, Best]] = {}
    for r in rows:
        out.setdefault((r["model"], r["stream"]), {})
    for key in out:
        for m in METRICS:
            rs = [r for r in rows if (r["model"], r["stream"]) == key and r["metric"] == m and _finite(r["value"])
                  and not abx_coverage_too_low(r)]
            if not rs:
                out[key][m] = Best(float("nan"), None, float("nan"))
                continue
            pick = (max if HIGHER_IS_MORE[m] else min)(rs, key=lambda r: (float(r["value"]), -int(r["layer"])))
            n = pick.get("n_test")
            ci = tuple(float(pick[k]) if _finite(pick.get(k)) else math.nan for k in ("ci_lo", "ci_hi"))
            out[key][m] = Best(float(pick["value"]), int(pick["layer"]), float(pick.get("chance", float("nan"))),
                               str(pick.get("warnings") or ""), int(float(n)) if m.startswith("probe_") and _finite(n) else 0,
                               ci if m.startswith("abx_") else (math.nan, math.nan))
    return out


@dataclass(frozen=True)
class Criterion:
    model: str
    name: str          # short id, e.g. "content phone >= fbank + 0.05"
    measured: str      # what was compared, with numbers
    passed: bool | None  # None: not evaluable (a number missing), reported as n/a

    @property
    def close(self) -> bool:
        """Whether a comparison in it is a tie at its sample size: a probe verdict decided by at most
        CLOSE_ITEMS held-out items (``close_call``) or two ABX errors inside each other's interval (``abx_tie``)."""
        return CLOSE_MARK in self.measured or TIE_MARK in self.measured


# (id, description) of issue 11's "what must hold"; TWIN is checked column by column
CRITERIA = {
    "phone_vs_fbank": "content phone probe >= fbank_no_cmvn's (same rate) + 0.05",
    "abx_vs_fbank": "content ABX across < fbank_no_cmvn's (same rate)",
    "other_speaker": "other speaker probe >= 0.90",
    "other_vs_content_speaker": "other speaker probe > content speaker probe",
    "other_vs_content_phone": "other phone probe < content phone probe",
    "content_speaker_vs_reference": "content speaker probe < the single-stream reference's (hubert_compact)",
    "twin": "better than the random-init twin on every column",
}
PHONE_MARGIN = 0.05
OTHER_SPEAKER_MIN = 0.90
# the columns the twin comparison checks: (stream, metric, True if higher is better); the speaker /
# phone columns of the wrong stream count only for two-stream models
TWIN_COLUMNS = (("content", "probe_phone", True), ("content", "abx_within", False), ("content", "abx_across", False))
TWIN_COLUMNS_TWO_STREAM = (("other", "probe_speaker", True), ("content", "probe_speaker", False),
                           ("other", "probe_phone", False))


# a probe verdict decided by at most this many held-out items is marked as such: one speaker-probe
# test utterance is 1/120 = 0.008 on the small corpus, inside the run-to-run spread of the same
# weights on two CPUs (0.717 / 0.733 for one unchanged checkpoint)
CLOSE_ITEMS = 2
CLOSE_MARK = "held-out items apart]"


def close_call(a: Best, b: float, b_n_test: int | None = None) -> str:
    """" [k of n held-out items apart]" when two probe accuracies measured on the same n held-out items
    (or one against a fixed threshold: ``b_n_test`` None) differ by at most CLOSE_ITEMS items, else ""."""
    if not a.n_test or (b_n_test is not None and b_n_test != a.n_test) or not (_finite(a.value) and _finite(b)):
        return ""
    k = round(abs(a.value - b) * a.n_test)
    return f" [{k} of {a.n_test} {CLOSE_MARK}" if k <= CLOSE_ITEMS else ""


TIE_MARK = "inside each other's 95 % interval]"


def abx_tie(a: Best, b: Best) -> str:
    """" [inside each other's 95 % interval]" when each of two ABX errors lies inside the other's
    speaker-bootstrap interval (hubert-compact's 20.51 % [19.6, 21.3] against its twin's 20.49 %), else "".
    The intervals are marginal, not of the difference: this marks a tie, it is not a test."""
    if not all(_finite(x) for x in (a.value, b.value, *a.ci, *b.ci)):
        return ""
    inside = a.ci[0] <= b.value <= a.ci[1] and b.ci[0] <= a.value <= b.ci[1]
    return f" [{TIE_MARK}" if inside else ""


def _cmp(a: Best, b: Best | float, op: str, fmt: str = ".3f", close: bool = False) -> tuple[str, bool | None]:
    """``a op b`` as (text, verdict); ``b`` another probe's Best or a fixed number. ``close``: mark a
    verdict decided by at most CLOSE_ITEMS held-out items (close_call)."""
    b_value, b_n_test = (b.value, b.n_test) if isinstance(b, Best) else (b, None)
    if not (_finite(a.value) and _finite(b_value)):
        return "n/a", None
    ok = {"<": a.value < b_value, ">": a.value > b_value, ">=": a.value >= b_value}[op]
    note = close_call(a, b_value, b_n_test) if close else ""
    return f"{a.value:{fmt}} (L{a.layer}) {op} {b_value:{fmt}}{note}", bool(ok)


def criteria(summary: Mapping[tuple[str, str], Mapping[str, Best]], models: Mapping[str, dict],
             fbank: Mapping[float, str], reference: str | None) -> list[Criterion]:
    """Issue 11's pass/fail list.

    ``models``: {model name: {"upstream": registry name, "twin": twin model name or None, "rate": the
    content stream's frame rate}}; ``fbank``: {rate: baseline model name at that rate};
    ``reference``: the single-stream model whose content speaker probe bounds the others' (or None).
    The first six criteria apply to two-stream models (those with an ``other`` stream); the twin
    criterion to every model with a twin.
    """
    out = []
    for name, info in models.items():
        c = summary.get((name, "content"), {})
        o = summary.get((name, "other"))
        two = o is not None
        if two:
            fb = fbank.get(info.get("rate"))
            f = summary.get((fb, "hidden_states"), {}) if fb else {}
            nan = Best(float("nan"), None, float("nan"))
            fp, fa = f.get("probe_phone", nan), f.get("abx_across", nan)
            m, ok = _cmp(c.get("probe_phone", nan), fp.value + PHONE_MARGIN, ">=")
            out.append(Criterion(name, "phone_vs_fbank", m + (f" ({fb} {fp.value:.3f} + {PHONE_MARGIN})" if ok is not None else
                                                            f" (no {fb or 'fbank_no_cmvn at this rate'})"), ok))
            m, ok = _cmp(c.get("abx_across", nan), fa.value, "<", ".2f")
            m += abx_tie(c.get("abx_across", nan), fa) if ok is not None else ""
            out.append(Criterion(name, "abx_vs_fbank", m + (f" ({fb})" if ok is not None else ""), ok))
            m, ok = _cmp(o["probe_speaker"], OTHER_SPEAKER_MIN, ">=", close=True)
            out.append(Criterion(name, "other_speaker", m, ok))
            m, ok = _cmp(o["probe_speaker"], c.get("probe_speaker", nan), ">", close=True)
            out.append(Criterion(name, "other_vs_content_speaker", m, ok))
            m, ok = _cmp(o["probe_phone"], c.get("probe_phone", nan), "<")
            out.append(Criterion(name, "other_vs_content_phone", m, ok))
            ref = summary.get((reference, "content"), {}).get("probe_speaker", nan) if reference else nan
            m, ok = _cmp(c.get("probe_speaker", nan), ref, "<", close=True)
            out.append(Criterion(name, "content_speaker_vs_reference", m + (f" ({reference})" if ok is not None else
                                                                          " (reference not in this run)"), ok))
        twin = info.get("twin")
        if twin:
            cols = TWIN_COLUMNS + (TWIN_COLUMNS_TWO_STREAM if two else ())
            parts, oks = [], []
            for stream, metric, higher in cols:
                a = summary.get((name, stream), {}).get(metric)
                b = summary.get((twin, stream), {}).get(metric)
                if a is None or b is None or not (_finite(a.value) and _finite(b.value)):
                    parts.append(f"{stream} {TITLES[metric]} n/a")
                    continue
                ok = a.value > b.value if higher else a.value < b.value
                oks.append(ok)
                parts.append(f"{stream} {TITLES[metric]} {a.value:.3g} vs {b.value:.3g} {'ok' if ok else 'WORSE'}"
                             + (abx_tie(a, b) if metric.startswith("abx_") else close_call(a, b.value, b.n_test)))
            out.append(Criterion(name, "twin", "; ".join(parts), all(oks) if oks else None))
    return out
