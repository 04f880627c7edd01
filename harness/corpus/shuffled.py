"""Label-shuffled views of a generated corpus: the negative controls of PR/ASR (transcripts) and ASV
(speakers; ``make_speaker_shuffled`` below).

``make_label_shuffled(SRC, DST, seed)`` writes DST as a copy of the corpus SRC in which every
file is a hard link to SRC's (a copy where the file system has none), except the transcripts of
LibriSpeech's training split: there each utterance gets the words (and phones) of another training
utterance, drawn by a seeded permutation. dev-clean and test-clean keep their true transcripts. A
downstream trained on DST can learn nothing from the audio that carries over to the test split, only
the label prior, so PR and ASR must land at their chance level (the best constant output) -- the
CTC counterpart of per-utterance CMVN for the utterance tasks (harness/superb/calibration.py). A
random-init model is no such control: its features are a fixed function of the log-mel and keep
the phones (results/calibration_pr_asr_asv.md).

DST's ``corpus.json`` records where it came from and the seed (so its corpus id, and every cell and
cache that depends on it, differs from SRC's); it is written last, so a half-written DST is redone.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
from pathlib import Path

from .fileio import atomic_write_text, link_or_copy
from .layout import LIBRI_SPLITS, CorpusError, CorpusLayout
from .transcripts import (read_chapter_transcripts, read_phone_transcripts, write_chapter_transcripts,
                          write_phone_transcripts)

SHUFFLED_SPLIT = "train"


def shuffled_root(src: Path, corpora_dir: Path, seed: int = 0) -> Path:
    """Where the label-shuffled view of ``src`` goes: ``corpora_dir/<src name>-shuffled-labels<seed>``."""
    return Path(corpora_dir) / f"{Path(src).name}-shuffled-labels{seed}"


def _permutation(utts: list[str], seed: int) -> dict[str, str]:
    """utt -> the utterance whose transcript it gets (a seeded derangement where possible)."""
    order = sorted(utts)
    donors = order[:]
    random.Random(seed).shuffle(donors)
    if len(order) > 1:                      # no utterance keeps its own transcript
        for i in range(len(order)):
            if donors[i] == order[i]:
                j = (i + 1) % len(order)
                donors[i], donors[j] = donors[j], donors[i]
    return dict(zip(order, donors))


def _link_tree(src: Path, dst: Path, skip: set[Path], moved: dict[Path, Path] | None = None) -> None:
    """Hard-link every file of ``src`` into ``dst`` at the same place, except ``skip`` (written by the
    caller) and ``moved`` (source file -> its new path under ``dst``)."""
    skip = {p.resolve() for p in skip}
    moved = {k.resolve(): v for k, v in (moved or {}).items()}
    for dirpath, _, files in os.walk(src):
        d = Path(dirpath)
        for f in files:
            p = (d / f).resolve()
            if p in skip:
                continue
            link_or_copy(d / f, moved.get(p, dst / d.relative_to(src) / f))


def _fresh(dst: Path, source: dict, key: str) -> bool:
    """True when ``dst`` is already the complete view described by ``source``; else clears it."""
    marker = dst / "corpus.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get(key) == source:
                return True
        except ValueError:
            pass
    if dst.exists():
        shutil.rmtree(dst)
    return False


def make_label_shuffled(src: str | Path, dst: str | Path, seed: int = 0) -> Path:
    """Write (or reuse) the label-shuffled view of the corpus ``src`` at ``dst``; returns ``dst``."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    lay = CorpusLayout(src)
    meta = lay.check()                            # a complete corpus (raises CorpusError naming the fix)
    source = {"corpus": str(src), "seed": seed, "split": LIBRI_SPLITS[SHUFFLED_SPLIT],
              "what": "LibriSpeech training transcripts (words, phones) permuted across utterances"}
    marker = dst / "corpus.json"
    if _fresh(dst, source, "label_shuffled"):
        return dst
    split_dir = lay.libri_split_dir(SHUFFLED_SPLIT)
    trans = sorted(split_dir.rglob("*.trans.txt"))
    chapters = {t: read_chapter_transcripts(t) for t in trans}
    words = {utt: text for table in chapters.values() for utt, text in table.items()}
    if len(words) < 2:
        raise CorpusError(f"{split_dir}: {len(words)} training transcript(s); nothing to shuffle")
    donor = _permutation(list(words), seed)
    phones_path = lay.phone_transcripts(SHUFFLED_SPLIT)
    phones = read_phone_transcripts(phones_path) if phones_path.is_file() else {}
    _link_tree(src, dst, {*trans, phones_path, lay.libriphone_csv(SHUFFLED_SPLIT), src / "corpus.json"})
    for t, table in chapters.items():
        write_chapter_transcripts(dst / t.relative_to(src), ((utt, words[donor[utt]]) for utt in table))
    if phones:
        write_phone_transcripts(dst / phones_path.relative_to(src),
                                ((u, phones[donor[u]] if donor.get(u) in phones else phones[u]) for u in phones))
    lp = lay.libriphone_csv(SHUFFLED_SPLIT)
    if lp.is_file():
        rows = list(csv.DictReader(io.StringIO(lp.read_text(encoding="utf-8"))))
        by_utt = {Path(r["wav_path"]).name.split(".")[0]: r for r in rows}
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()) if rows else ["wav_path", "transcription", "phones"],
                           lineterminator="\n")
        w.writeheader()
        for r in rows:
            u = Path(r["wav_path"]).name.split(".")[0]
            d = by_utt.get(donor.get(u, u), r)
            w.writerow(dict(r, transcription=d["transcription"], phones=d.get("phones", r.get("phones", ""))))
        atomic_write_text(dst / lp.relative_to(src), buf.getvalue())
    meta = dict(meta, label_shuffled=source)
    atomic_write_text(marker, json.dumps(meta, indent=1, sort_keys=True))     # last: the view is complete
    return dst


def speaker_shuffled_root(src: Path, corpora_dir: Path, seed: int = 0) -> Path:
    """Where the speaker-shuffled view of ``src`` goes: ``corpora_dir/<src name>-shuffled-speakers<seed>``."""
    return Path(corpora_dir) / f"{Path(src).name}-shuffled-speakers{seed}"


def make_speaker_shuffled(src: str | Path, dst: str | Path, seed: int = 0) -> Path:
    """The ASV (and SID) negative control's view: VoxCeleb1's training speakers (``dev/wav``) permuted
    across utterances. s3prl's ``sv_voxceleb1`` reads a training utterance's speaker from its
    directory, so each file is re-linked under another utterance's speaker
    (``dev/wav/<new speaker>/<old speaker>-<video>/<file>``; the speakers keep their utterance
    counts), and ``iden_split.txt`` / the dev trials name the new paths. The test speakers
    (``test/wav``, the ASV trials) are untouched, so the test EER stays meaningful: a model trained
    on these labels can learn nothing about speakers that carries over to it."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    lay = CorpusLayout(src)
    meta = lay.check()
    source = {"corpus": str(src), "seed": seed, "split": "VoxCeleb1/dev/wav",
              "what": "VoxCeleb1 training speakers permuted across utterances"}
    if _fresh(dst, source, "speaker_shuffled"):
        return dst
    wav_root = lay.vox_wav_dir("dev")
    files = sorted(wav_root.rglob("*.wav"))
    rel = [f.relative_to(wav_root) for f in files]
    speakers = [r.parts[0] for r in rel]
    if len(set(speakers)) < 2:
        raise CorpusError(f"{wav_root}: {len(set(speakers))} training speaker(s); nothing to shuffle")
    new_spk = speakers[:]
    random.Random(seed).shuffle(new_spk)
    new_rel = {r.as_posix(): f"{s}/{r.parts[0]}-{r.parts[1]}/{r.name}" for r, s in zip(rel, new_spk)}
    dst_wav = dst / wav_root.relative_to(src)
    meta_files = [lay.iden_split, lay.veri_dev]
    _link_tree(src, dst, {*meta_files, src / "corpus.json"},
               {f: dst_wav / new_rel[r.as_posix()] for f, r in zip(files, rel)})
    for path, cols in ((lay.iden_split, (1,)), (lay.veri_dev, (1, 2))):
        if not path.is_file():
            continue
        lines = []
        for line in path.read_text().splitlines():
            parts = line.split()
            for c in cols:
                if c < len(parts):
                    parts[c] = new_rel.get(parts[c], parts[c])
            lines.append(" ".join(parts))
        atomic_write_text(dst / path.relative_to(src), "\n".join(lines) + "\n")
    atomic_write_text(dst / "corpus.json", json.dumps(dict(meta, speaker_shuffled=source), indent=1, sort_keys=True))
    return dst


# the label-shuffled views by what they shuffle: (where it goes, how it is made)
VIEWS = {"transcripts": (shuffled_root, make_label_shuffled),
         "speakers": (speaker_shuffled_root, make_speaker_shuffled)}
