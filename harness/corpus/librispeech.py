"""LibriSpeech layout for s3prl `asr` (char CTC) and `ctc` + libriphone (phone recognition).

Audio (flac) is written by the worker; this writes the text side: ``SPK-CHAP.trans.txt`` per
chapter, the bucket csv files (as s3prl's ``preprocess/generate_len_for_bucket.py`` makes them:
``,file_path,length,label`` with ``file_path`` relative to the LibriSpeech root, ``length`` in
samples, longest first), ``char.dict`` (fairseq format), the lexicon, phone vocabulary, exact
phone transcripts and the ``harness.s3prl.libriphone`` split tables.

The ``write_*`` file writers take plain data (no plan), so ``harness.corpus.prepare`` writes the
same files, byte for byte, for a real LibriSpeech tree.
"""
from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from .fileio import atomic_write_text
from .layout import SPLITS, CorpusLayout
from .plan import Plan
from .synth import SIL
from .text import transcript
from .transcripts import write_chapter_transcripts, write_phone_transcripts


# --- file writers (plain data in, one file out, atomically) -------------------------------

def write_bucket_csv(path: Path, rows: Iterable[tuple[int, str]]) -> None:
    """s3prl's bucket table: ``,file_path,length,label``; ``rows`` = (num_samples, path relative to
    the LibriSpeech root); longest first, ties by path; empty label column."""
    rows = sorted(rows, key=lambda r: (-r[0], r[1]))
    atomic_write_text(path, ",file_path,length,label\n" +
                      "".join(f"{i},{p},{n},\n" for i, (n, p) in enumerate(rows)))


def char_counts(transcripts: Iterable[str]) -> Counter:
    """Character counts of transcripts as fairseq counts them for s3prl's ``char.dict``: spaces
    become ``|`` and every transcript ends with one."""
    chars: Counter = Counter()
    for text in transcripts:
        chars.update(text.replace(" ", "|") + "|")
    return chars


def write_char_dict(path: Path, chars: Counter) -> None:
    """fairseq dictionary ``SYMBOL COUNT``, most frequent first (ties: symbol order)."""
    atomic_write_text(path, "".join(f"{c} {n}\n" for c, n in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))))


def write_lexicon(path: Path, lex: dict[str, list[str]]) -> None:
    """``WORD ph ph ...``, one pronunciation a word, words sorted."""
    atomic_write_text(path, "".join(f"{w} {' '.join(ph)}\n" for w, ph in sorted(lex.items())))


def write_phone_vocab(path: Path, phones: Iterable[str]) -> None:
    atomic_write_text(path, "".join(f"{p}\n" for p in sorted(set(phones))))


def write_libriphone_table(path: Path, rows: Iterable[tuple[str, str, str, list[str]]]) -> None:
    """``harness.s3prl.libriphone`` table ``wav_path,transcription,phones``; ``rows`` = (utt_id, wav path
    relative to the table's folder, transcript, phones), sorted by utt_id."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["wav_path", "transcription", "phones"])
    w.writerows((wav, text, " ".join(ph)) for _, wav, text, ph in sorted(rows))
    atomic_write_text(path, buf.getvalue())


# --- the generated corpus -------------------------------------------------------------------

def lexicon_from_records(records: dict[str, dict]) -> dict[str, list[str]]:
    """Each word's most frequent pronunciation as espeak spoke it in the corpus (ties: the smallest);
    words only ever spoken merged with a neighbour get espeak's pronunciation of the word alone."""
    prons: dict[str, Counter] = defaultdict(Counter)
    words: set[str] = set()
    for rec in records.values():
        for w, ph, merged in rec["words"]:
            words.add(w)
            if ph and not merged:
                prons[w][tuple(ph)] += 1
    lex = {w: list(min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]) for w, c in prons.items()}
    lex.update(espeak_lexicon(words - set(lex)))
    return dict(sorted(lex.items()))


def espeak_lexicon(words: Iterable[str]) -> dict[str, list[str]]:
    """espeak-ng's pronunciation of each word spoken alone (its en-us dictionary and rules, stress
    stripped; ``["sil"]`` if it has none): the generator's and ``prepare``'s fallback g2p."""
    words = sorted(set(words))
    if not words:
        return {}
    from .synth import get_engine

    eng = get_engine()
    return {w: eng.word_phonemes(w) or [SIL] for w in words}


def write_librispeech(lay: CorpusLayout, plan: Plan, records: dict[str, dict]) -> dict:
    chapters: dict[tuple, list] = defaultdict(list)
    buckets: dict[str, list] = defaultdict(list)
    phone_lines: dict[str, list] = defaultdict(list)
    tables: dict[str, list] = defaultdict(list)
    texts: list[str] = []
    phones: set[str] = set()
    for u in plan.utts:
        text = transcript(u.sentence)
        chapters[(u.split, u.libri_spk, u.chapter)].append((u.utt_id, text))
        buckets[u.split].append((records[u.utt_id]["num_samples"], u.libri_rel))
        seq = [p for _, _, p in records[u.utt_id]["phones"] if p != SIL]
        phones.update(seq)
        phone_lines[u.split].append((u.utt_id, seq))
        tables[u.split].append((u.utt_id, f"../{u.libri_rel}", text, seq))
        texts.append(text)
    for (split, spk, chap), lines in chapters.items():
        write_chapter_transcripts(lay.libri_split_dir(split) / spk / chap / f"{spk}-{chap}.trans.txt", lines)
    for split in SPLITS:
        write_bucket_csv(lay.bucket_csv(split), buckets[split])
        write_phone_transcripts(lay.phone_transcripts(split), phone_lines[split])
        write_libriphone_table(lay.libriphone_csv(split), tables[split])
    chars = char_counts(texts)
    write_char_dict(lay.char_dict, chars)
    lex = lexicon_from_records(records)
    for ph in lex.values():
        phones.update(ph)
    write_lexicon(lay.lexicon, lex)
    write_phone_vocab(lay.phone_vocab, phones)
    return {"phones": sorted(phones), "lexicon_words": len(lex), "chars": len(chars)}
