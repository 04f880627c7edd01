"""Synthesise one planned utterance and write its audio (wav + flac), alignment and record.

The record ``utterances/<spk>/<utt_id>.json`` is written last, so its presence means the utterance
is complete; a resumed run skips those. Everything here runs in a worker process.
"""
from __future__ import annotations

import json
from pathlib import Path

from .fileio import atomic_write_audio, atomic_write_text
from .layout import CorpusLayout
from .plan import Utt
from .spec import SAMPLE_RATE
from .synth import get_engine
from .voices import Voice


def fmt_time(samples: int) -> str:
    """Seconds with 7 decimals: exact for 16 kHz sample positions (1/16000 = 0.0000625)."""
    return f"{samples / SAMPLE_RATE:.7f}"


def synthesize_utt(root: Path, voice: Voice, utt: Utt) -> str:
    lay = CorpusLayout(root)
    s = get_engine().synthesize(utt.sentence, voice, utt.rate, utt.pitch, utt.range, utt.volume)
    atomic_write_audio(lay.vox_wav_dir(utt.vox_set) / utt.vox_rel, s.audio, SAMPLE_RATE)
    atomic_write_audio(lay.librispeech / utt.libri_rel, s.audio, SAMPLE_RATE)
    atomic_write_text(lay.alignment(utt.split, utt.utt_id),
                      "".join(f"{fmt_time(a)} {fmt_time(b)} {p}\n" for a, b, p in s.phones))
    record = {"utt_id": utt.utt_id, "num_samples": int(len(s.audio)),
              "phones": [[a, b, p] for a, b, p in s.phones], "words": [[w, p, m] for w, p, m in s.words]}
    atomic_write_text(lay.utterance_record(utt.libri_spk, utt.utt_id), json.dumps(record, separators=(",", ":")))
    return utt.utt_id


# --- process-pool plumbing (state set once per worker by the initializer) -----------------
_STATE: dict = {}


def init_worker(root: str, voices: list[Voice], utts: list[Utt]) -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.update(root=Path(root), voices=voices, utts=utts)


def run_job(k: int) -> str:
    u = _STATE["utts"][k]
    return synthesize_utt(_STATE["root"], _STATE["voices"][u.speaker], u)
