"""``manifest.csv``: one row per utterance with its labels and its audio's path in each layout
(paths relative to the corpus root; empty where the utterance is not in that layout)."""
from __future__ import annotations

import csv
import io

from .fileio import atomic_write_text
from .layout import MANIFEST_COLUMNS, CorpusLayout
from .plan import Plan
from .spec import SAMPLE_RATE
from .text import transcript


def manifest_rows(lay: CorpusLayout, plan: Plan, records: dict[str, dict]) -> list[dict]:
    # paths relative to the root as plain strings (pathlib's relative_to per cell cost more than
    # the rest of the manifest); each prefix is the layout's folder relative to the root
    def rel(p) -> str:
        return p.relative_to(lay.root).as_posix()

    libri, alignments = rel(lay.librispeech), rel(lay.alignments)
    vox = {s: rel(lay.vox_wav_dir(s)) for s in ("dev", "test")}
    iemocap = rel(lay.iemocap)
    abx = {s: rel(lay.abx_wav_dir(s)) for s in ("dev", "test")}
    rows = []
    for u in plan.utts:
        n = records[u.utt_id]["num_samples"]
        rows.append({
            "utt_id": u.utt_id, "speaker": u.libri_spk, "vox_id": u.vox_id, "gender": plan.voices[u.speaker].gender,
            "style": u.style, "er_label": u.er_label or "", "split": u.split, "sid_split": u.sid_split,
            "asv_set": u.vox_set, "session": u.session or "", "text": transcript(u.sentence), "sentence": u.sentence,
            "duration_s": f"{n / SAMPLE_RATE:.4f}", "num_samples": n,
            "librispeech": f"{libri}/{u.libri_rel}",
            "voxceleb1": f"{vox[u.vox_set]}/{u.vox_rel}",
            "iemocap": f"{iemocap}/{u.iemocap_rel}" if u.iemocap_rel else "",
            "alignment": f"{alignments}/{u.split}/{u.utt_id}.txt",
            "abx": f"{abx[u.split]}/{u.utt_id}.wav" if u.split in ("dev", "test") else "",
        })
    return rows


def write_manifest(lay: CorpusLayout, plan: Plan, records: dict[str, dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(manifest_rows(lay, plan, records))
    atomic_write_text(lay.manifest, buf.getvalue())
