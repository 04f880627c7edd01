"""The two transcript formats of a LibriSpeech tree, each with its one reader and one writer (the
corpus generator, the shuffled-labels view, ``harness prepare``, s3prl's phone-recognition dataset
and the chance levels all go through them):

* chapter transcripts, ``SPK/CHAP/SPK-CHAP.trans.txt``: one ``SPK-CHAP-NNNN TRANSCRIPT`` line per
  utterance (LibriSpeech's own);
* phone transcripts, ``phones/<split>.txt``: one ``SPK-CHAP-NNNN ph ph ...`` line per utterance
  (DUET's, written by the generator and by ``harness prepare`` from a lexicon)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from .fileio import atomic_write_text

UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


class TranscriptError(ValueError):
    """A transcript line that is not ``SPK-CHAP-NNNN TOKENS...`` (the message names file:line)."""


def _read_id_lines(path: str | Path, what: str) -> dict[str, list[str]]:
    """``{utt_id: tokens}`` of a file of ``SPK-CHAP-NNNN TOKEN TOKEN ...`` lines (blank lines
    skipped); a line without such an id or without tokens raises TranscriptError naming file:line."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt, *tokens = line.split()
        if not UTT_RE.match(utt) or not tokens:
            raise TranscriptError(f"{path}:{n}: expected 'SPK-CHAP-NNNN {what}', got {line[:80]!r}; "
                                  f"fix or remove that line")
        out[utt] = tokens
    return out


def read_chapter_transcripts(path: str | Path) -> dict[str, str]:
    """``{utt_id: transcript}`` of one ``SPK-CHAP.trans.txt`` (the transcript's whitespace collapsed to
    single spaces)."""
    return {u: " ".join(t) for u, t in _read_id_lines(path, "TRANSCRIPT").items()}


def read_phone_transcripts(path: str | Path) -> dict[str, list[str]]:
    """``{utt_id: [phone, ...]}`` of one ``phones/<split>.txt``."""
    return _read_id_lines(path, "PHONE PHONE ...")


def write_phone_transcripts(path: Path, rows: Iterable[tuple[str, list[str]]]) -> None:
    """``phones/<split>.txt`` from ``(utt_id, phones)`` pairs, sorted by id, written atomically."""
    atomic_write_text(path, "".join(sorted(f"{u} {' '.join(seq)}\n" for u, seq in rows)))


def chapter_transcript_path(audio: str | Path) -> Path:
    """The ``SPK-CHAP.trans.txt`` beside an utterance's audio ``SPK-CHAP-NNNN.flac``."""
    audio = Path(audio)
    utt = audio.name.split(".")[0]
    return audio.parent / f"{utt.rsplit('-', 1)[0]}.trans.txt"


def write_chapter_transcripts(path: Path, lines: Iterable[tuple[str, str]]) -> None:
    """``SPK-CHAP.trans.txt`` from ``(utt_id, transcript)`` pairs, sorted by id, written atomically."""
    atomic_write_text(path, "".join(sorted(f"{u} {t}\n" for u, t in lines)))
