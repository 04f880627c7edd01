"""Emotion-like speaking styles: espeak prosody settings, and the ER class each maps to.

Each style sets espeak's rate (words per minute), pitch (0-99, relative to the voice's own base),
pitch range (0-99) and volume (amplitude, 100 = default). Per utterance the generator jitters rate
and pitch by a few percent so no two utterances of one style are identical.

ER (IEMOCAP-style, 4 classes) maps styles as IEMOCAP does: ``excited`` joins ``hap``; ``monotone``
has no ER class (like IEMOCAP's frustrated/other, it stays out of the ER metadata).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    name: str
    rate: int  # words per minute
    pitch: int  # espeak pitch parameter, 0-99 (50 = the voice's base)
    range: int  # espeak pitch range, 0-99 (0 = monotone)
    volume: int  # espeak amplitude, 100 = default
    er_label: str | None  # IEMOCAP class, or None


STYLES: dict[str, Style] = {
    "neutral": Style("neutral", rate=175, pitch=50, range=50, volume=100, er_label="neu"),
    "happy": Style("happy", rate=190, pitch=66, range=80, volume=115, er_label="hap"),
    "excited": Style("excited", rate=215, pitch=76, range=95, volume=125, er_label="hap"),
    "angry": Style("angry", rate=205, pitch=58, range=72, volume=160, er_label="ang"),
    "sad": Style("sad", rate=130, pitch=28, range=18, volume=70, er_label="sad"),
    "monotone": Style("monotone", rate=165, pitch=40, range=2, volume=90, er_label=None),
}

ER_LABELS: dict[str, int] = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}  # s3prl emotion's class order


def er_label(style: str) -> str | None:
    return STYLES[style].er_label
