"""Synthesise one speaker's planned utterances: audio (wav + flac), alignments, one record.

The unit of work and of resumption is a speaker: its audio and alignment files are written in
place, then ``utterances/<spk>.json`` (every utterance's sample count, phones and word phones)
is written atomically, last. A speaker whose record exists is complete; a resumed run redoes any
other speaker from scratch (overwriting what an interrupted run left). Runs in worker processes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .fileio import atomic_write_text, encode_audio, encode_wav16, write_bytes
from .layout import CorpusLayout
from .plan import Utt
from .spec import SAMPLE_RATE
from .synth import get_engine
from .voices import Voice


def fmt_time(samples: int) -> str:
    """Seconds with 7 decimals: exact for 16 kHz sample positions (1/16000 = 0.0000625)."""
    return f"{samples / SAMPLE_RATE:.7f}"


def synthesize_utt(lay: CorpusLayout, voice: Voice, utt: Utt) -> dict:
    s = get_engine().synthesize(utt.sentence, voice, utt.rate, utt.pitch, utt.range, utt.volume)
    join = os.path.join  # plain strings: pathlib costs more than the writes here
    write_bytes(join(lay.voxceleb1, utt.vox_set, "wav", utt.vox_rel), encode_wav16(s.audio, SAMPLE_RATE))
    write_bytes(join(lay.librispeech, utt.libri_rel), encode_audio(s.audio, SAMPLE_RATE, "FLAC"))
    write_bytes(join(lay.alignments, utt.split, f"{utt.utt_id}.txt"),
                "".join(f"{a / SAMPLE_RATE:.7f} {b / SAMPLE_RATE:.7f} {p}\n" for a, b, p in s.phones).encode())
    return {"num_samples": int(len(s.audio)), "phones": [[a, b, p] for a, b, p in s.phones],
            "words": [[w, p, m] for w, p, m in s.words]}


def synthesize_speaker(root: Path, voice: Voice, utts: list[Utt]) -> int:
    lay = CorpusLayout(root)
    recs = {u.utt_id: synthesize_utt(lay, voice, u) for u in utts}
    atomic_write_text(lay.speaker_record(utts[0].libri_spk),
                      json.dumps({"speaker": utts[0].libri_spk, "utterances": recs}, separators=(",", ":")))
    return len(utts)


# --- process-pool plumbing (state set once per worker by the initializer) -----------------
_STATE: dict = {}


def init_worker(root: str, voices: list[Voice], by_speaker: dict[int, list[Utt]]) -> None:
    import os
    import signal

    # a forked worker must die on the pool's SIGTERM even when the parent installed a Python handler
    # (a deadlock otherwise: the handler runs only between bytecodes, the worker may sit in a lock)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.update(root=Path(root), voices=voices, by_speaker=by_speaker)


def run_job(speaker: int) -> int:
    return synthesize_speaker(_STATE["root"], _STATE["voices"][speaker], _STATE["by_speaker"][speaker])
