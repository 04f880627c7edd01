"""LibriSpeech layout for s3prl `asr` (char CTC) and `ctc` + libriphone (phone recognition).

Audio (flac) is written by the worker; this writes the text side: ``SPK-CHAP.trans.txt`` per
chapter, the bucket csv files (as s3prl's ``preprocess/generate_len_for_bucket.py`` makes them:
``,file_path,length,label`` with ``file_path`` relative to the LibriSpeech root, ``length`` in
samples, longest first), ``char.dict`` (fairseq format), the lexicon, phone vocabulary, exact
phone transcripts and the ``harness.s3prl.libriphone`` split tables.
"""
from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict

from .fileio import atomic_write_text
from .layout import SPLITS, CorpusLayout
from .plan import Plan
from .synth import SIL
from .text import transcript


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
    missing = sorted(words - set(lex))
    if missing:
        from .synth import get_engine

        eng = get_engine()
        for w in missing:
            lex[w] = eng.word_phonemes(w) or ["sil"]
    return dict(sorted(lex.items()))


def write_librispeech(lay: CorpusLayout, plan: Plan, records: dict[str, dict]) -> dict:
    chapters: dict[tuple, list] = defaultdict(list)
    buckets: dict[str, list] = defaultdict(list)
    phone_lines: dict[str, list] = defaultdict(list)
    tables: dict[str, list] = defaultdict(list)
    chars: Counter = Counter()
    phones: set[str] = set()
    for u in plan.utts:
        text = transcript(u.sentence)
        chapters[(u.split, u.libri_spk, u.chapter)].append(f"{u.utt_id} {text}\n")
        buckets[u.split].append((records[u.utt_id]["num_samples"], u.libri_rel))
        seq = [p for _, _, p in records[u.utt_id]["phones"] if p != SIL]
        phones.update(seq)
        phone_lines[u.split].append(f"{u.utt_id} {' '.join(seq)}\n")
        tables[u.split].append((u.utt_id, f"../{u.libri_rel}", text, " ".join(seq)))
        chars.update(text.replace(" ", "|") + "|")
    for (split, spk, chap), lines in chapters.items():
        d = lay.libri_split_dir(split) / spk / chap
        atomic_write_text(d / f"{spk}-{chap}.trans.txt", "".join(sorted(lines)))
    for split in SPLITS:
        rows = sorted(buckets[split], key=lambda r: (-r[0], r[1]))
        atomic_write_text(lay.bucket_csv(split), ",file_path,length,label\n" +
                          "".join(f"{i},{path},{n},\n" for i, (n, path) in enumerate(rows)))
        atomic_write_text(lay.phone_transcripts(split), "".join(sorted(phone_lines[split])))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["wav_path", "transcription", "phones"])
        w.writerows(r[1:] for r in sorted(tables[split]))
        atomic_write_text(lay.libriphone_csv(split), buf.getvalue())
    atomic_write_text(lay.char_dict, "".join(f"{c} {n}\n" for c, n in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))))
    lex = lexicon_from_records(records)
    for ph in lex.values():
        phones.update(ph)
    atomic_write_text(lay.lexicon, "".join(f"{w} {' '.join(ph)}\n" for w, ph in lex.items()))
    atomic_write_text(lay.phone_vocab, "".join(f"{p}\n" for p in sorted(phones)))
    return {"phones": sorted(phones), "lexicon_words": len(lex), "chars": len(chars)}
