"""ABX item files (ZeroSpeech / Libri-light format) from the phone alignments, dev and test splits.

``abx/<split>.item``: header ``#file onset offset #phone prev-phone next-phone speaker``, one row
per phone whose neighbours are phones (not silence): a triphone with its centre phone's times in
seconds; ``#file`` is the utterance id and ``abx/<split>/<utt_id>.wav`` the audio.
"""
from __future__ import annotations

from .fileio import atomic_write_text, link_or_copy
from .layout import ABX_SPLITS, CorpusLayout
from .plan import Plan
from .spec import SAMPLE_RATE
from .synth import SIL

HEADER = "#file onset offset #phone prev-phone next-phone speaker\n"


def item_rows(utt_id: str, speaker: str, phones: list) -> list[str]:
    rows = []
    for j in range(1, len(phones) - 1):
        (_, _, prev), (a, b, ph), (_, _, nxt) = phones[j - 1], phones[j], phones[j + 1]
        if SIL in (prev, ph, nxt):
            continue
        rows.append(f"{utt_id} {a / SAMPLE_RATE:.4f} {b / SAMPLE_RATE:.4f} {ph} {prev} {nxt} {speaker}\n")
    return rows


def write_abx(lay: CorpusLayout, plan: Plan, records: dict[str, dict]) -> dict:
    out = {}
    for split in ABX_SPLITS:
        rows = []
        for u in plan.utts:
            if u.split != split:
                continue
            link_or_copy(lay.vox_wav_dir(u.vox_set) / u.vox_rel, lay.abx_wav_dir(split) / f"{u.utt_id}.wav")
            rows += item_rows(u.utt_id, u.libri_spk, records[u.utt_id]["phones"])
        atomic_write_text(lay.abx_item(split), HEADER + "".join(rows))
        out[f"abx_{split}_items"] = len(rows)
    return out
