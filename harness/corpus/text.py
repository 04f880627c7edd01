"""The shipped sentence lists and their word transcripts: ``data/sentences.txt`` (every training and
test split) and ``data/unseen_sentences.txt`` (the unseen-voices evaluation set only; no sentence of the
first list, see scripts/corpus_sentences.py --unseen).

A sentence is spoken as written (punctuation gives espeak its pauses); its transcript is its words
upper-cased, LibriSpeech style (letters and inner apostrophes: ``DON'T``). ``words_with_offsets``
gives each word's character offset, used to attach espeak's word events to transcript words.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SENTENCES_PATH = Path(__file__).with_name("data") / "sentences.txt"
UNSEEN_SENTENCES_PATH = Path(__file__).with_name("data") / "unseen_sentences.txt"
WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


@lru_cache(maxsize=None)
def load_sentences(path: str | None = None) -> tuple[str, ...]:
    p = Path(path) if path else SENTENCES_PATH
    if not p.is_file():
        raise FileNotFoundError(f"sentence list {p} is missing; it ships with DUET (reinstall, or run "
                                f"scripts/corpus_sentences.py)")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    out = tuple(ln for ln in lines if ln and not ln.startswith("#"))
    if not out:
        raise ValueError(f"sentence list {p} has no sentences")
    return out


def load_unseen_sentences() -> tuple[str, ...]:
    """The unseen-voices set's sentences; raises if any is in the training list (case-insensitive)."""
    out = load_sentences(str(UNSEEN_SENTENCES_PATH))
    train = {x.lower() for x in load_sentences()}
    shared = [x for x in out if x.lower() in train]
    if shared:
        raise ValueError(f"{UNSEEN_SENTENCES_PATH}: {len(shared)} sentence(s) are also in {SENTENCES_PATH} "
                         f"(e.g. {shared[0]!r}); regenerate it with scripts/corpus_sentences.py --unseen")
    return out


def words_with_offsets(sentence: str) -> list[tuple[str, int]]:
    """[(WORD, char offset)] for each word of the sentence, words upper-cased."""
    return [(m.group(0).upper(), m.start()) for m in WORD_RE.finditer(sentence)]


def transcript(sentence: str) -> str:
    return " ".join(w for w, _ in words_with_offsets(sentence))
