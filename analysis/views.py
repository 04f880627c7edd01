"""Sample views for CCA and probes from per-utterance frame features (pure functions).

Segments [onset, offset] (seconds) at ``rate`` frames/s cover frames floor(onset*rate) ..
ceil(offset*rate) - 1 (at least one frame; clipped to the utterance), Pasad et al.'s rule.

Every utterance's features are checked: NaN/Inf raise :class:`NonFiniteFeaturesError` and a
segment that ends past the utterance's last frame (see :func:`analysis.checks.end_limit`)
raises :class:`SegmentOutsideFileError`, each naming the utterance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from analysis.checks import AnalysisInputError, SegmentOutsideFileError, check_finite, end_limit

SILENCES = frozenset({"sil", "sp", "spn", "SIL", "<sil>", "pau"})


@dataclass
class Segment:
    utt: str
    onset: float
    offset: float
    label: str


def segment_range(onset: float, offset: float, rate: float, n_frames: int) -> tuple[int, int]:
    s = min(max(0, int(math.floor(onset * rate))), max(n_frames - 1, 0))
    e = min(n_frames, max(s + 1, int(math.ceil(offset * rate))))
    return s, e


def utterance_frames(get_frames: Callable[[str], np.ndarray], utt: str, dtype=None) -> np.ndarray:
    """``get_frames(utt)`` as a (T, D) array, checked: 2-D, at least one frame, all finite."""
    f = np.asarray(get_frames(utt), dtype=dtype)
    if f.ndim != 2 or len(f) == 0:
        raise AnalysisInputError(f"features of utterance {utt} have shape {tuple(f.shape)}; expected (frames >= 1, dim): "
                         f"re-extract them")
    check_finite(f, f"features of utterance {utt}")
    return f


def pooled_segments(get_frames: Callable[[str], np.ndarray], segments: Sequence[Segment], rate: float
                    ) -> tuple[np.ndarray, list[str], list[str]]:
    """Mean-pooled features of each segment: (N, D), labels, utterance of each (for grouped splits)."""
    by_utt: dict[str, list[Segment]] = {}
    for s in segments:
        by_utt.setdefault(s.utt, []).append(s)
    xs, labels, groups = [], [], []
    outside = []
    for utt, segs in by_utt.items():
        f = utterance_frames(get_frames, utt, np.float64)
        limit = end_limit(len(f), rate)
        outside += [f"{utt} {s.label} {s.onset:g}-{s.offset:g} s (its features end at {len(f) / rate:.2f} s)"
                    for s in segs if s.offset > limit]
        for s in segs:
            a, b = segment_range(s.onset, s.offset, rate, len(f))
            xs.append(f[a:b].mean(0))
            labels.append(s.label)
            groups.append(utt)
    if outside:
        raise SegmentOutsideFileError(
            f"{len(outside)} segment(s) end past the end of their utterance: {'; '.join(outside[:10])}"
            f"{' ...' if len(outside) > 10 else ''}. The alignment does not match the audio or the features "
            f"(another utterance's, or times not in seconds): re-create the alignments or re-extract the features")
    return np.stack(xs), labels, groups


def utterance_means(get_frames: Callable[[str], np.ndarray], utts: Iterable[str]) -> np.ndarray:
    return np.stack([utterance_frames(get_frames, u, np.float64).mean(0) for u in utts])


def paired_frames(get_x: Callable[[str], np.ndarray], rate_x: float, get_y: Callable[[str], np.ndarray],
                  rate_y: float, utts: Sequence[str], max_frames: int = 20000, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of x with the y frame at the same time (y frame containing x's frame centre).

    Returns (X, Y, groups) with at most ``max_frames`` frames sampled uniformly (seeded).
    """
    xs, ys, gs = [], [], []
    for k, u in enumerate(utts):
        x = utterance_frames(get_x, u)
        y = utterance_frames(get_y, u)
        t = (np.arange(len(x)) + 0.5) / rate_x
        j = np.floor(t * rate_y).astype(np.int64)
        ok = j < len(y)
        xs.append(x[ok])
        ys.append(y[j[ok]])
        gs.append(np.full(int(ok.sum()), k))
    X, Y, G = np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)
    if len(X) > max_frames:
        sel = np.sort(np.random.default_rng(seed).choice(len(X), max_frames, replace=False))
        X, Y, G = X[sel], Y[sel], G[sel]
    return X.astype(np.float64), Y.astype(np.float64), G


def word_segments(phones: Sequence[tuple[float, float, str]], words: Sequence[tuple],
                  silences=SILENCES) -> list[tuple[float, float, str]] | None:
    """Word times from a phone alignment and each word's phone sequence (in order).

    ``words``: (WORD, phones) or (WORD, phones | None, merged). Words spoken as one unit with their
    neighbours (merged: phones on the group's first word, None on the others) are consumed but not
    returned. The non-silence phones of the alignment are consumed word by word; returns None when
    they do not spell the words' phones (the caller skips that utterance and reports it).
    """
    seq = [(a, b, p) for a, b, p in phones if p not in silences]
    out, i = [], 0
    for w in words:
        word, wph = w[0], w[1]
        merged = bool(w[2]) if len(w) > 2 else False
        if not wph:
            continue
        n = len(wph)
        chunk = seq[i:i + n]
        if len(chunk) != n or [p for _, _, p in chunk] != list(wph):
            return None
        if not merged:
            out.append((chunk[0][0], chunk[-1][1], word))
        i += n
    return out if i == len(seq) else None
