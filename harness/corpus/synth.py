"""espeak-ng through ctypes (PyPI ``espeakng-loader`` ships the library and its data; no apt).

The library runs in synchronous mode with phoneme events: every ``espeakEVENT_PHONEME`` carries the
sample position where a phone starts, so phone times are exact, not estimated. A phone ends where
the next starts; pauses (``_``, ``_:``) become ``sil``; a leading ``sil`` covers the start. Audio is
resampled 22050 -> 16000 Hz (soxr) and the boundaries are mapped to 16 kHz samples, so the segments
tile ``[0, len(audio))`` exactly.

Each process keeps one engine (the library has global state) with a private copy of the data
directory (symlinks), whose variant file ``voices/!v/duet`` is rewritten before every utterance
(espeak re-reads a variant at each voice selection; its voice list stops at 350 entries).
Stress marks are stripped from phone names.

Example::

    eng = get_engine()
    s = eng.synthesize("Hello there.", voice, rate=175, pitch=50, range=50, volume=100)
    s.audio (int16, 16 kHz), s.phones [(start, end, phone)] in samples, s.words [(WORD, [phones], merged)]
"""
from __future__ import annotations

import atexit
import ctypes
import multiprocessing.util
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from .spec import SAMPLE_RATE
from .text import words_with_offsets
from .voices import Voice

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7
_CHARS_UTF8 = 1
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4
_STRESS = str.maketrans("", "", "',%=")
SIL = "sil"
_PHONE_NAMES: dict[bytes, str] = {}  # espeak phoneme mnemonic -> DUET phone (stress stripped, pauses sil)


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    audio: np.ndarray  # (S,) int16 at 16 kHz
    phones: list[tuple[int, int, str]]  # (start, end) in 16 kHz samples; tiles [0, S); pauses are "sil"
    # transcript words: (WORD, the phones espeak spoke for it, merged); merged words were spoken in one
    # word event with their neighbours (the group's phones are on its first word, None on the others)
    words: list[tuple[str, list[str] | None, bool]]

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class EspeakError(RuntimeError):
    pass


class Espeak:
    """One per process (see ``get_engine``)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - dependency of the package
            raise EspeakError("espeakng-loader is not installed: pip install espeakng-loader "
                              "(scripts/setup.sh installs it)") from e
        import soxr  # noqa: F401  (fail early)

        src = espeakng_loader.get_data_path()
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _remove_stale_homes(shm or tempfile.gettempdir())
        # the variant file is rewritten often: keep it in memory where possible
        self._home = tempfile.mkdtemp(prefix=f"duet-espeak-{os.getpid()}-", dir=shm)
        atexit.register(shutil.rmtree, self._home, True)
        # pool workers leave through multiprocessing's exit path, which skips atexit but runs these
        multiprocessing.util.Finalize(self, shutil.rmtree, args=(self._home, True), exitpriority=10)
        data = os.path.join(self._home, "espeak-ng-data")
        os.makedirs(os.path.join(data, "voices", "!v"))
        for name in os.listdir(src):
            if name != "voices":
                os.symlink(os.path.join(src, name), os.path.join(data, name))
        for name in os.listdir(os.path.join(src, "voices")):
            if name != "!v":
                os.symlink(os.path.join(src, "voices", name), os.path.join(data, "voices", name))
        self._variant = os.path.join(data, "voices", "!v", "duet")
        self._variant_text = None
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 1000, self._home.encode(),
                                                _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if self.rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({self.rate}) with data in {self._home}")
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, bytes]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes must not free it
        self._lib.espeak_SetSynthCallback(self._cb)

    def _on_audio(self, wav, n, events):
        if n > 0:  # raw bytes: np.ctypeslib.as_array costs ~0.1 ms a call, string_at ~1 us
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            if e.type in (_EV_WORD, _EV_PHONEME):
                self._events.append((e.type, e.text_position, e.sample, e.id if e.type == _EV_PHONEME else b""))
            i += 1
        return 0

    def raw(self, text: str, voice: Voice, rate: int, pitch: int, range: int, volume: int):
        """(int16 audio at the engine rate, [(type, text_position, sample, phone bytes)])."""
        text_v = voice.variant_text()
        new_voice = text_v != self._variant_text
        if new_voice:  # (rewriting an unchanged file would cost a truncate)
            with open(self._variant, "w") as f:
                f.write(text_v)
            self._variant_text = text_v
        if self._lib.espeak_SetVoiceByName(b"en-us+duet") != 0:
            raise EspeakError(f"espeak could not select voice en-us+duet ({self._variant})")
        for p, v in ((_P_RATE, rate), (_P_PITCH, pitch), (_P_RANGE, range), (_P_VOLUME, volume)):
            self._lib.espeak_SetParameter(p, int(v), 0)
        if new_voice:
            # espeak carries a little state from the previous voice into the first synthesis with a
            # new one (measured: the first utterance of a speaker differed by what came before it).
            # A short throw-away synthesis with the new voice makes the output history-free.
            self._synth(b"a.")
        return self._synth(text.encode("utf-8"), text)

    def _synth(self, b: bytes, text: str | None = None):
        self._chunks, self._events = [], []
        err = self._lib.espeak_Synth(b, len(b) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if err != 0 or not self._chunks:
            raise EspeakError(f"espeak_Synth failed ({err}) on {text or b.decode()!r}")
        return np.frombuffer(b"".join(self._chunks), dtype=np.int16), self._events

    def synthesize(self, text: str, voice: Voice, rate: int, pitch: int, range: int, volume: int) -> Synthesis:
        import soxr

        audio22, events = self.raw(text, voice, rate, pitch, range, volume)
        x = audio22.astype(np.float32)
        x *= 1.0 / 32768.0  # (in place; scaling by a power of two is exact: same values as x / 32768)
        y = soxr.resample(x, self.rate, SAMPLE_RATE, quality="HQ")
        y *= 32768.0
        np.rint(y, out=y)
        np.clip(y, -32768, 32767, out=y)
        audio = y.astype(np.int16)
        n = len(audio)
        scale = SAMPLE_RATE / self.rate

        words = words_with_offsets(text)
        starts = {off: k for k, (_, off) in enumerate(words)}
        groups: list[tuple[int, list[str]]] = []  # (first word index of a word event, its phones)
        bounds: list[tuple[int, str]] = [(0, SIL)]
        for typ, pos, sample, name in events:
            if typ == _EV_WORD:
                k = starts.get(pos - 1)
                if k is None:  # an event inside a word (e.g. a split contraction): stay on that word
                    k = max([j for j, (_, off) in enumerate(words) if off <= pos - 1], default=0)
                if not groups or groups[-1][0] != k:
                    groups.append((k, []))
                continue
            ph = _PHONE_NAMES.get(name)
            if ph is None:
                ph = name.decode("utf-8", "replace").translate(_STRESS).strip()
                _PHONE_NAMES[name] = ph = SIL if ph.startswith("_") else ph
            if not ph:
                continue
            if ph != SIL and groups:
                groups[-1][1].append(ph)
            bounds.append((min(n, max(0, int(round(sample * scale)))), ph))
        # a word event may cover several words (espeak speaks "I shall" as one): the group's phones
        # go to its first word and every word of the group is marked merged (None for the others)
        word_phones: list[tuple[str, list[str] | None, bool]] = [(w, None, True) for w, _ in words]
        for g, (k, phs) in enumerate(groups):
            end = groups[g + 1][0] if g + 1 < len(groups) else len(words)
            merged = end - k > 1
            word_phones[k] = (words[k][0], phs, merged)
        segs: list[tuple[int, int, str]] = []
        for j, (start, ph) in enumerate(bounds):
            end = bounds[j + 1][0] if j + 1 < len(bounds) else n
            if end <= start:
                continue
            if segs and segs[-1][2] == ph == SIL:
                segs[-1] = (segs[-1][0], end, SIL)
            elif segs and segs[-1][1] != start:  # a zero-length phone was dropped: extend the previous
                segs[-1] = (segs[-1][0], start, segs[-1][2])
                segs.append((start, end, ph))
            else:
                segs.append((start, end, ph))
        if not segs or segs[-1][1] != n:
            raise EspeakError(f"phone segments do not tile the audio for {text!r}")
        return Synthesis(audio=audio, phones=segs, words=word_phones)

    def word_phonemes(self, word: str) -> list[str]:
        """espeak's phones for a word spoken alone (its dictionary/rules), stress marks stripped."""
        self._lib.espeak_SetVoiceByName(b"en-us")
        self._variant_text = None  # the next synthesis selects (and warms up) its voice again
        buf = ctypes.create_string_buffer(word.lower().encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        out = []
        while ptr.value:
            res = self._lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, ord(" ") << 8)
            if res:
                out += [p.translate(_STRESS) for p in res.decode("utf-8", "replace").split()]
        return [p for p in out if p and not p.startswith("_")]


def _remove_stale_homes(parent: str) -> None:
    """Remove data folders left by engines whose process died without cleaning up (killed)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != "duet" or parts[1] != "espeak" or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        try:
            os.kill(pid, 0)
            continue  # alive
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:
            continue


_ENGINE: Espeak | None = None
_ENGINE_PID: int | None = None


def get_engine() -> Espeak:
    """This process's engine. A forked child gets its own (own data folder and variant file: the
    parent's would be shared, and two processes rewriting one variant file mix their voices)."""
    global _ENGINE, _ENGINE_PID
    if _ENGINE is None or _ENGINE_PID != os.getpid():
        if _ENGINE is not None:
            _ENGINE._lib.espeak_Terminate()
        _ENGINE, _ENGINE_PID = Espeak(), os.getpid()
    return _ENGINE
