"""LibriSpeech chapter transcripts, ``SPK/CHAP/SPK-CHAP.trans.txt``: one ``SPK-CHAP-NNNN TRANSCRIPT``
line per utterance. The one reader and the one writer of that format (the corpus generator, the
shuffled-labels view, ``harness prepare``, s3prl's phone-recognition dataset and the chance levels
all go through them)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from .fileio import atomic_write_text

UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


class TranscriptError(ValueError):
    """A ``*.trans.txt`` line that is not ``SPK-CHAP-NNNN TRANSCRIPT`` (the message names file:line)."""


def read_chapter_transcripts(path: str | Path) -> dict[str, str]:
    """``{utt_id: transcript}`` of one ``SPK-CHAP.trans.txt`` (blank lines skipped; the transcript's
    whitespace collapsed to single spaces). A line without an ``SPK-CHAP-NNNN`` id or without words
    raises TranscriptError naming the file and the line."""
    path = Path(path)
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        if not UTT_RE.match(utt) or not text.strip():
            raise TranscriptError(f"{path}:{n}: expected 'SPK-CHAP-NNNN TRANSCRIPT', got {line[:80]!r}; "
                                  f"fix or remove that line")
        out[utt] = " ".join(text.split())
    return out


def chapter_transcript_path(audio: str | Path) -> Path:
    """The ``SPK-CHAP.trans.txt`` beside an utterance's audio ``SPK-CHAP-NNNN.flac``."""
    audio = Path(audio)
    utt = audio.name.split(".")[0]
    return audio.parent / f"{utt.rsplit('-', 1)[0]}.trans.txt"


def write_chapter_transcripts(path: Path, lines: Iterable[tuple[str, str]]) -> None:
    """``SPK-CHAP.trans.txt`` from ``(utt_id, transcript)`` pairs, sorted by id, written atomically."""
    atomic_write_text(path, "".join(sorted(f"{u} {t}\n" for u, t in lines)))
