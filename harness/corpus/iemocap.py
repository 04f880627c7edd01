"""IEMOCAP layout for s3prl `emotion` (ER): 5 sessions (2 speakers each) = 5 folds, 4 classes.

``SessionK/sentences/wav/<dialog>/<utt>.wav`` (hard links to the VoxCeleb1 wav of the same
utterance), ``SessionK/dialog/EmoEvaluation/<dialog>.txt`` in IEMOCAP's label-file format (so
s3prl's ``IEMOCAP_preprocess.py`` also works), and the ``meta_data/SessionK/{train,test}_meta_data.json``
that script would write: fold K tests on session K and trains on the other four; ``exc`` counts as
``hap``; styles without an ER class (``oth``) are left out. ``er_entry`` and ``write_er_meta`` are shared with
``harness.corpus.prepare`` (which reads a real IEMOCAP's EmoEvaluation files).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from .fileio import atomic_write_json, atomic_write_text, link_or_copy
from .layout import ER_FOLDS, CorpusLayout
from .plan import Plan
from .spec import SAMPLE_RATE
from .styles import ER_LABELS

_EMO_EVAL = {"neutral": "neu", "happy": "hap", "excited": "exc", "angry": "ang", "sad": "sad", "monotone": "oth"}


def er_entry(rel_path: str, emotion: str) -> dict | None:
    """s3prl's meta-data entry for an IEMOCAP utterance (path relative to the IEMOCAP root) with
    its EmoEvaluation label, as ``IEMOCAP_preprocess.py`` makes it; None for labels outside the
    four classes (``exc`` counts as ``hap``)."""
    label = "hap" if emotion == "exc" else emotion
    if label not in ER_LABELS:
        return None
    return {"path": rel_path, "label": label, "speaker": rel_path.rsplit("/", 1)[-1].split("_")[0]}


def write_er_meta(meta_dir: Path, entries: dict[int, list[dict]]) -> dict:
    """``meta_dir/SessionK/{train,test}_meta_data.json`` for the five folds: fold K tests on session
    K (``entries[K]``, in the given order) and trains on the other four (sessions in order)."""
    counts = Counter()
    for k in ER_FOLDS:
        train = [e for s in ER_FOLDS if s != k for e in entries.get(s, [])]
        atomic_write_json(meta_dir / f"Session{k}" / "train_meta_data.json",
                          {"labels": ER_LABELS, "meta_data": train}, indent=None)
        atomic_write_json(meta_dir / f"Session{k}" / "test_meta_data.json",
                          {"labels": ER_LABELS, "meta_data": entries.get(k, [])}, indent=None)
        counts.update(e["label"] for e in entries.get(k, []))
    return {"er_utterances": sum(counts.values()), "er_classes": dict(sorted(counts.items()))}


def write_iemocap(lay: CorpusLayout, plan: Plan, records: dict[str, dict]) -> dict:
    dialogs: dict[tuple, list] = defaultdict(list)
    entries: dict[int, list] = defaultdict(list)
    for u in plan.utts:
        if not u.iemocap_rel:
            continue
        link_or_copy(lay.vox_wav_dir(u.vox_set) / u.vox_rel, lay.iemocap / u.iemocap_rel)
        parts = u.iemocap_rel.split("/")
        dialog, name = parts[3], parts[4][:-4]
        dur = records[u.utt_id]["num_samples"] / SAMPLE_RATE
        dialogs[(u.session, dialog)].append(f"[0.0000 - {dur:.4f}]\t{name}\t{_EMO_EVAL[u.style]}\t[2.5000, 2.5000, 2.5000]\n")
        if u.er_label:
            entries[u.session].append(er_entry(u.iemocap_rel, u.er_label))
    for (session, dialog), lines in dialogs.items():
        atomic_write_text(lay.iemocap_session(session) / "dialog" / "EmoEvaluation" / f"{dialog}.txt",
                          "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(sorted(lines)))
    return write_er_meta(lay.iemocap_meta, entries)
