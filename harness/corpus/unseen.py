"""The unseen-voices evaluation set, ``<corpus>/unseen/`` (paths in ``layout.py``): synthesise it,
write its alignments, ABX items, manifest and voice table, then ``info.json`` (last: complete).

It is generated after the corpus proper, from plan streams of its own (``plan.make_unseen_plan``),
and written only under ``unseen/``: every other file of the corpus is byte-for-byte what it was before
the set existed, and rerunning ``harness corpus make`` on an older corpus adds the set. Resumable per
speaker as the corpus is (a speaker is done when its record exists); synthesis is a pure function of
the plan, so the bytes do not depend on where a run was interrupted.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json

from upstream.facts import progress_bar

from .abx import HEADER, item_rows
from .fileio import atomic_write_json, atomic_write_text, encode_wav16, write_bytes
from .layout import UNSEEN_MANIFEST_COLUMNS, CorpusError, CorpusLayout, read_records
from .plan import UnseenPlan, UnseenUtt, make_unseen_plan
from .spec import SAMPLE_RATE, CorpusSpec
from .text import UNSEEN_SENTENCES_PATH, transcript
from .voices import (UNSEEN_CONSONANTS, UNSEEN_HEIGHT, UNSEEN_JITTER, UNSEEN_RANGES, UNSEEN_VOICING, UNSEEN_WIDTH,
                     Voice)


def unseen_meta(spec: CorpusSpec, seed: int) -> dict:
    """What identifies the set (``unseen/plan.json``)."""
    return {"size": spec.name, "seed": seed, "unseen": spec.unseen.to_dict()}


def _alignment_text(phones) -> str:
    return "".join(f"{a / SAMPLE_RATE:.7f} {b / SAMPLE_RATE:.7f} {p}\n" for a, b, p in phones)


def _synthesize_speaker(lay: CorpusLayout, voice: Voice, utts: list[UnseenUtt]) -> None:
    from .synth import get_engine

    eng = get_engine()
    recs = {}
    for u in utts:
        s = eng.synthesize(u.sentence, voice, u.rate, u.pitch, u.range, u.volume)
        write_bytes(str(lay.unseen_wav(u.utt_id)), encode_wav16(s.audio, SAMPLE_RATE))
        write_bytes(str(lay.alignment("unseen", u.utt_id)), _alignment_text(s.phones).encode())
        recs[u.utt_id] = {"num_samples": int(len(s.audio)), "phones": [[a, b, p] for a, b, p in s.phones],
                          "words": [[w, p, m] for w, p, m in s.words]}
    atomic_write_text(lay.unseen_record(utts[0].spk),
                      json.dumps({"speaker": utts[0].spk, "utterances": recs}, separators=(",", ":")))


def _records(lay: CorpusLayout, plan: UnseenPlan) -> dict[str, dict]:
    return read_records([lay.unseen_record(spk) for spk in dict.fromkeys(u.spk for u in plan.utts)],
                        "delete it and rerun `harness corpus make` with the same --size/--out", "unseen speaker record ")


def _manifest(lay: CorpusLayout, plan: UnseenPlan, records: dict[str, dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=UNSEEN_MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    for u in plan.utts:
        n = records[u.utt_id]["num_samples"]
        w.writerow({"utt_id": u.utt_id, "speaker": u.spk, "gender": plan.voices[u.speaker].gender, "style": u.style,
                    "text": transcript(u.sentence), "sentence": u.sentence, "duration_s": f"{n / SAMPLE_RATE:.4f}",
                    "num_samples": n, "wav": lay.unseen_wav(u.utt_id).relative_to(lay.root).as_posix(),
                    "alignment": lay.alignment("unseen", u.utt_id).relative_to(lay.root).as_posix()})
    return buf.getvalue()


def voice_table(plan: UnseenPlan) -> dict:
    """``unseen/voices.json``: the ranges the voices were drawn from and each voice's parameters."""
    return {"ranges": {"per_gender": UNSEEN_RANGES, "formant_jitter": UNSEEN_JITTER, "height": UNSEEN_HEIGHT,
                       "width": UNSEEN_WIDTH, "voicing": UNSEEN_VOICING, "consonants": UNSEEN_CONSONANTS},
            "voices": {f"U{i:03d}": dataclasses.asdict(v) for i, v in enumerate(plan.voices)}}


def make_unseen(lay: CorpusLayout, spec: CorpusSpec, seed: int, progress: bool = True) -> dict | None:
    """Generate (or finish, or just read) ``lay.root/unseen``; returns its info.json (None when the
    spec has no unseen set). Call with the corpus directory locked (``build._exclusive``)."""
    if spec.unseen is None:
        return None
    meta = unseen_meta(spec, seed)
    if lay.unseen_plan_json.is_file():
        try:
            old = json.loads(lay.unseen_plan_json.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != meta:
            raise CorpusError(f"{lay.unseen} holds another unseen-voices set ({old}; asked {meta}); delete "
                              f"{lay.unseen} and rerun `harness corpus make`")
        if lay.unseen_info_json.is_file():
            return json.loads(lay.unseen_info_json.read_text())
        for tmp in lay.unseen.rglob(".*.tmp*"):  # resuming: drop temporary files of cut-off writes
            tmp.unlink(missing_ok=True)
    atomic_write_json(lay.unseen_plan_json, meta)
    plan = make_unseen_plan(spec, seed)
    by_speaker: dict[int, list[UnseenUtt]] = {}
    for u in plan.utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    todo = [i for i, us in by_speaker.items() if not lay.unseen_record(us[0].spk).is_file()]

    for i in progress_bar(todo, enabled=progress and bool(todo), desc=f"unseen voices {spec.name}", unit="speaker"):
        _synthesize_speaker(lay, plan.voices[i], by_speaker[i])
    records = _records(lay, plan)
    rows = [r for u in plan.utts for r in item_rows(u.utt_id, u.spk, records[u.utt_id]["phones"])]
    atomic_write_text(lay.unseen_item, HEADER + "".join(rows))
    atomic_write_text(lay.unseen_manifest, _manifest(lay, plan, records))
    atomic_write_json(lay.unseen_voices_json, voice_table(plan))
    secs = sum(r["num_samples"] for r in records.values()) / SAMPLE_RATE
    info = {**meta, "sample_rate": SAMPLE_RATE, "hours": round(secs / 3600, 4),
            "counts": {"speakers": len(plan.voices), "utterances": len(plan.utts), "abx_items": len(rows),
                       "female_speakers": sum(v.gender == "female" for v in plan.voices)},
            "sentences": {"file": "harness/corpus/data/unseen_sentences.txt",
                          "sha256_16": hashlib.sha256(UNSEEN_SENTENCES_PATH.read_bytes()).hexdigest()[:16]},
            "speakers": [f"U{i:03d}" for i in range(len(plan.voices))]}
    atomic_write_json(lay.unseen_info_json, info)  # last: marks the set complete
    return info
