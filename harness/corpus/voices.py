"""Random espeak-ng voice *variant* files: one per speaker, near-duplicates dropped.

A variant file scales espeak's formants (frequency, height, width per formant, in percent), sets the
pitch base/max (Hz) and voice quality (voicing, consonant strength). What makes a new
speaker for a speaker model is mainly the formants (measured: pitch, rate or accent alone do not
separate speakers), so the near-duplicate rule is on formants:

    two voices are near-duplicates  <=>  the Euclidean distance between their F1..F5 frequency
    scales (percent points) is below ``min_distance`` (default 8).

``sample_voices`` draws candidates from a seeded generator and keeps a candidate only if it is not a
near-duplicate of any voice kept so far, so the result is a deterministic function of the seed.

``flutter`` and ``roughness`` are always 0: espeak keeps their state across calls (flutter a phase,
roughness a cycle state), which makes the audio depend on what was synthesised before, so on the
worker count and order. With both at 0 the output is a pure function of (text, voice, prosody)
(measured: identical bytes whatever was synthesised before).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FORMANTS = 6  # espeak formants 0..5 (0 is the low nasal-ish formant)


@dataclass(frozen=True)
class Voice:
    name: str
    gender: str  # "female" | "male"
    pitch_base: int  # Hz
    pitch_max: int  # Hz
    formants: tuple[tuple[int, int, int], ...]  # per formant (freq %, height %, width %)
    voicing: int  # %
    consonants: int  # %

    def formant_vector(self) -> np.ndarray:
        """F1..F5 frequency scales (percent), the space of the near-duplicate rule."""
        return np.array([f[0] for f in self.formants[1:6]], dtype=float)

    def variant_text(self) -> str:
        lines = [f"name {self.name}", f"gender {self.gender}", f"pitch {self.pitch_base} {self.pitch_max}"]
        lines += [f"formant {k} {f} {h} {w}" for k, (f, h, w) in enumerate(self.formants)]
        lines += ["flutter 0", "roughness 0", f"voicing {self.voicing}",
                  f"consonants {self.consonants}"]
        return "\n".join(lines) + "\n"


def voice_distance(a: Voice, b: Voice) -> float:
    return float(np.linalg.norm(a.formant_vector() - b.formant_vector()))


def is_near_duplicate(v: Voice, kept: list[Voice], min_distance: float) -> bool:
    if not kept:
        return False
    m = np.stack([k.formant_vector() for k in kept])
    return bool((np.linalg.norm(m - v.formant_vector(), axis=1) < min_distance).any())


def random_voice(rng: np.random.Generator, name: str, gender: str) -> Voice:
    female = gender == "female"
    base = int(rng.integers(150, 215)) if female else int(rng.integers(72, 125))
    top = base + int(rng.integers(40, 100) if female else rng.integers(25, 70))
    shift = int(rng.integers(6, 16)) if female else 0
    formants = []
    for k in range(N_FORMANTS):
        freq = 100 + shift + int(rng.integers(-22, 23))
        height = int(rng.integers(70, 131))
        width = int(rng.integers(80, 121))
        formants.append((freq, height, width))
    return Voice(name=name, gender=gender, pitch_base=base, pitch_max=top, formants=tuple(formants),
                 voicing=int(rng.integers(85, 116)),
                 consonants=int(rng.integers(80, 121)))


def sample_voices(n: int, seed: int, min_distance: float = 8.0, max_tries: int = 200) -> list[Voice]:
    """n distinct voices; speaker i is female for even i, male for odd i (balanced, and IEMOCAP
    sessions get one of each). Raises if the space is too crowded for ``min_distance``."""
    rng = np.random.default_rng([seed, 0x70CE])
    kept: list[Voice] = []
    mat = np.zeros((n, 5))
    for i in range(n):
        gender = "female" if i % 2 == 0 else "male"
        for _ in range(max_tries):
            v = random_voice(rng, f"spk{i:04d}", gender)
            if i == 0 or np.linalg.norm(mat[:i] - v.formant_vector(), axis=1).min() >= min_distance:
                mat[i] = v.formant_vector()
                kept.append(v)
                break
        else:
            raise RuntimeError(f"could not find {n} voices at min distance {min_distance}; lower it")
    return kept


# --- the unseen-voices evaluation set ---------------------------------------------------------
# Training voices (``random_voice``) per gender: pitch base female 150-214 Hz, male 72-124 Hz; formant
# frequency scales female 84-137 %, male 78-122 % (each formant drawn independently, so a voice's mean
# scale lies near 110 % / 100 %); heights 70-130 %, widths 80-120 %. Unseen voices sit at or outside
# those edges: one vocal-tract scale per speaker, far from the training centre (male: long tracts,
# every formant 60-93 %; female: short tracts, 116-148 %), pitch at or beyond the training range, and
# wider height/width/voicing/consonant ranges. (low, high) below are inclusive.
UNSEEN_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "male": {"tract": (-32, -15), "pitch_base": (50, 74), "pitch_span": (15, 45)},
    "female": {"tract": (24, 40), "pitch_base": (210, 255), "pitch_span": (60, 120)},
}
UNSEEN_JITTER = 8          # per-formant deviation from the speaker's tract scale (percent points)
UNSEEN_HEIGHT = (60, 135)
UNSEEN_WIDTH = (65, 135)
UNSEEN_VOICING = (75, 125)
UNSEEN_CONSONANTS = (70, 130)


def _between(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def random_unseen_voice(rng: np.random.Generator, name: str, gender: str) -> Voice:
    """A voice at or beyond the edges of ``random_voice``'s ranges (see ``UNSEEN_RANGES``)."""
    r = UNSEEN_RANGES[gender]
    tract = _between(rng, r["tract"])
    base = _between(rng, r["pitch_base"])
    top = base + _between(rng, r["pitch_span"])
    formants = tuple((100 + tract + _between(rng, (-UNSEEN_JITTER, UNSEEN_JITTER)), _between(rng, UNSEEN_HEIGHT),
                      _between(rng, UNSEEN_WIDTH)) for _ in range(N_FORMANTS))
    return Voice(name=name, gender=gender, pitch_base=base, pitch_max=top, formants=formants,
                 voicing=_between(rng, UNSEEN_VOICING), consonants=_between(rng, UNSEEN_CONSONANTS))


def sample_unseen_voices(n: int, seed: int, exclude: list[Voice], min_distance: float = 8.0,
                         max_tries: int = 200) -> list[Voice]:
    """n voices of the unseen-voices set, from their own seeded stream: no two near-duplicates, and
    none a near-duplicate (formant distance < ``min_distance``) of any voice in ``exclude`` (the
    training voices). Speaker i is female for even i, male for odd i; names ``unseen{i:03d}``.
    A prefix of a longer list (same seed and exclusions) is the shorter list."""
    rng = np.random.default_rng([seed, 0x0E5E, 0x70CE])
    ex = np.stack([v.formant_vector() for v in exclude]) if exclude else np.zeros((0, 5))
    kept: list[Voice] = []
    for i in range(n):
        gender = "female" if i % 2 == 0 else "male"
        for _ in range(max_tries):
            v = random_unseen_voice(rng, f"unseen{i:03d}", gender)
            if not is_near_duplicate(v, kept, min_distance) and not (
                    len(ex) and (np.linalg.norm(ex - v.formant_vector(), axis=1) < min_distance).any()):
                kept.append(v)
                break
        else:
            raise RuntimeError(f"could not find {n} unseen voices at min distance {min_distance}; lower it")
    return kept
