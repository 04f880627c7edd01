"""The corpus plan: every utterance's speaker, sentence, style and its place in every layout; and the
plan of the unseen-voices evaluation set (``make_unseen_plan``), drawn from streams of its own so that
the training plan is the same with or without it.

The plan is a pure function of (spec, seed): it is what makes a corpus reproducible whatever the
worker count, and what resumption compares against. Synthesis only fills it with audio.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .layout import LIBRI_SPLITS
from .spec import CorpusSpec, UnseenSpec
from .styles import STYLES, er_label
from .text import load_sentences, load_unseen_sentences
from .voices import Voice, sample_unseen_voices, sample_voices

_VIDEO_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@dataclass(frozen=True)
class Utt:
    utt_id: str  # LibriSpeech id SPK-CHAP-NNNN, the utterance's id everywhere
    speaker: int  # speaker index
    libri_spk: str
    chapter: str
    split: str  # train | dev | test (LibriSpeech split, by speaker)
    sentence: str
    style: str
    rate: int
    pitch: int
    range: int
    volume: int
    vox_id: str  # id1NNNN
    vox_set: str  # dev | test (VoxCeleb1 folder; test = ASV test speakers)
    vox_rel: str  # idNNNNN/<video>/<nnnnn>.wav, relative to VoxCeleb1/<vox_set>/wav
    sid_split: int  # 1 train, 2 dev, 3 test (iden_split.txt)
    iemocap_rel: str | None  # SessionK/sentences/wav/<dialog>/<utt>.wav, or None
    er_label: str | None  # neu | hap | ang | sad for IEMOCAP utterances with an ER class

    @property
    def libri_rel(self) -> str:
        """Path relative to the LibriSpeech root."""
        return f"{LIBRI_SPLITS[self.split]}/{self.libri_spk}/{self.chapter}/{self.utt_id}.flac"

    @property
    def session(self) -> int | None:
        return int(self.iemocap_rel.split("/")[0][len("Session"):]) if self.iemocap_rel else None


@dataclass(frozen=True)
class Plan:
    spec: CorpusSpec
    seed: int
    voices: list[Voice]
    utts: list[Utt]


def _video_id(seed: int, speaker: int, k: int) -> str:
    h = hashlib.sha256(f"duet-video/{seed}/{speaker}/{k}".encode()).digest()
    return "".join(_VIDEO_CHARS[b % len(_VIDEO_CHARS)] for b in h[:11])


def _sentence_pools(n: int, seed: int) -> dict[str, list[int]]:
    """Disjoint sentence index pools for train/dev/test (80/10/10 %), each shuffled."""
    rng = np.random.default_rng([seed, 0x5E7])
    order = rng.permutation(n)
    a, b = int(n * 0.8), int(n * 0.9)
    return {"train": order[:a].tolist(), "dev": order[a:b].tolist(), "test": order[b:].tolist()}


def make_plan(spec: CorpusSpec, seed: int) -> Plan:
    sentences = load_sentences()
    voices = sample_voices(spec.n_speakers, seed, spec.min_voice_distance)
    pools = _sentence_pools(len(sentences), seed)
    cursor = {k: 0 for k in pools}
    style_names = list(STYLES)
    utts: list[Utt] = []
    for i, voice in enumerate(voices):
        rng = np.random.default_rng([seed, 0x577, i])
        split = spec.libri_split(i)
        libri_spk = str(100 + i)
        vox_id = f"id{10001 + i}"
        n = spec.utts_per_speaker
        # styles: a random permutation per speaker, cycled (balanced within each speaker)
        perm = rng.permutation(len(style_names))
        styles = [style_names[perm[j % len(perm)]] for j in range(n)]
        # SID split: per speaker, some utterances to dev (2) and test (3), at least one each
        n_sd = max(1, int(round(spec.sid_dev_frac * n)))
        n_st = max(1, int(round(spec.sid_test_frac * n)))
        sid = np.ones(n, dtype=int)
        pick = rng.permutation(n)
        sid[pick[:n_sd]] = 2
        sid[pick[n_sd:n_sd + n_st]] = 3
        iem = i < spec.n_iemocap
        # speakers 2k, 2k+1 (female, male) go to session k % 5 + 1; m-th pair of that session
        session, m, g = (i // 2) % 5 + 1, i // 10, ("F" if voice.gender == "female" else "M")
        pool = pools[split]
        jrs, jps = rng.uniform(0.94, 1.06, size=n), rng.uniform(0.92, 1.08, size=n)
        videos = [_video_id(seed, i, k) for k in range((n + spec.video_size - 1) // spec.video_size)]
        for j in range(n):
            sent = sentences[pool[cursor[split] % len(pool)]]
            cursor[split] += 1
            st = STYLES[styles[j]]
            jr, jp = float(jrs[j]), float(jps[j])
            chapter = str(10000 + 10 * i + j // spec.chapter_size)
            utt_id = f"{libri_spk}-{chapter}-{j % spec.chapter_size:04d}"
            video = videos[j // spec.video_size]
            iem_rel = None
            if iem:
                dialog = f"Ses0{session}{g}_impro{m * 10 + j // 10 + 1:02d}"
                iem_rel = f"Session{session}/sentences/wav/{dialog}/{dialog}_{g}{j % 10:03d}.wav"
            utts.append(Utt(
                utt_id=utt_id, speaker=i, libri_spk=libri_spk, chapter=chapter, split=split, sentence=sent,
                style=st.name, rate=int(round(st.rate * jr)), pitch=min(99, max(0, int(round(st.pitch * jp)))),
                range=st.range, volume=st.volume, vox_id=vox_id, vox_set=spec.asv_role(i),
                vox_rel=f"{vox_id}/{video}/{j % spec.video_size + 1:05d}.wav", sid_split=int(sid[j]),
                iemocap_rel=iem_rel, er_label=er_label(st.name) if iem else None))
    return Plan(spec=spec, seed=seed, voices=voices, utts=utts)


# --- the unseen-voices evaluation set ----------------------------------------------------------

@dataclass(frozen=True)
class UnseenUtt:
    utt_id: str  # <speaker>-<NNNN>, e.g. U003-0005
    speaker: int  # index into UnseenPlan.voices
    spk: str  # speaker id, e.g. U003 (the ABX item file's speaker column)
    sentence: str
    style: str
    rate: int
    pitch: int
    range: int
    volume: int


@dataclass(frozen=True)
class UnseenPlan:
    spec: UnseenSpec
    seed: int
    voices: list[Voice]
    utts: list[UnseenUtt]


def training_voices(spec: CorpusSpec, seed: int) -> list[Voice]:
    """The voices of every corpus size with this seed (each size's are a prefix of the longest list)."""
    from .spec import SIZES

    n = max([spec.n_speakers] + [s.n_speakers for s in SIZES.values()])
    return sample_voices(n, seed, spec.min_voice_distance)


def make_unseen_plan(spec: CorpusSpec, seed: int) -> UnseenPlan:
    """Who says what in ``<corpus>/unseen/``: voices from their own seed stream at the edges of the
    training ranges and no near-duplicate of a training voice of any size with this seed; sentences of
    the unseen list (shuffled by the seed, consecutive per speaker, cycled if the list runs out); styles
    as in training (a random permutation per speaker, cycled)."""
    if spec.unseen is None:
        raise ValueError(f"corpus size {spec.name!r} has no unseen-voices set (CorpusSpec.unseen is None)")
    u = spec.unseen
    voices = sample_unseen_voices(u.n_speakers, seed, training_voices(spec, seed), spec.min_voice_distance)
    sentences = load_unseen_sentences()
    order = np.random.default_rng([seed, 0x0E5E, 0x5E7]).permutation(len(sentences)).tolist()
    style_names = list(STYLES)
    utts: list[UnseenUtt] = []
    k = 0
    for i in range(u.n_speakers):
        rng = np.random.default_rng([seed, 0x0E5E, 0x577, i])
        perm = rng.permutation(len(style_names))
        jrs, jps = rng.uniform(0.94, 1.06, size=u.utts_per_speaker), rng.uniform(0.92, 1.08, size=u.utts_per_speaker)
        spk = f"U{i:03d}"
        for j in range(u.utts_per_speaker):
            st = STYLES[style_names[perm[j % len(perm)]]]
            utts.append(UnseenUtt(
                utt_id=f"{spk}-{j:04d}", speaker=i, spk=spk, sentence=sentences[order[k % len(order)]], style=st.name,
                rate=int(round(st.rate * float(jrs[j]))), pitch=min(99, max(0, int(round(st.pitch * float(jps[j]))))),
                range=st.range, volume=st.volume))
            k += 1
    return UnseenPlan(spec=u, seed=seed, voices=voices, utts=utts)
