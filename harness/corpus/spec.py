"""Corpus sizes: how many speakers, utterances and which speakers play which role.

A corpus is one pool of synthesised utterances; every layout (LibriSpeech, VoxCeleb1, IEMOCAP,
ABX) is a view of that pool, so one utterance appears in several layouts (hard links).

Speaker roles, by speaker index ``i`` in ``0 .. n_speakers-1``:

- LibriSpeech split by speaker (as the real corpus): the last ``n_test`` speakers are
  ``test-clean``, the ``n_dev`` before them ``dev-clean``, the rest ``train-clean-100``.
  Their sentences come from disjoint thirds of the sentence list (no test text seen in training).
- VoxCeleb1: every speaker is ``id{10001+i}`` (s3prl derives SID labels as ``int(id[2:]) - 10001``
  and has 1251 output classes, so at most 1251 speakers). The last ``n_asv_test`` speakers live in
  ``VoxCeleb1/test/wav`` (ASV test speakers, unseen in ASV training), the others in ``dev/wav``.
  SID (``iden_split.txt``) splits every speaker's utterances 1/2/3 = train/dev/test.
- Unseen voices (``unseen``, evaluation only): ``UnseenSpec.n_speakers`` further speakers whose voices
  lie at or beyond the edges of the training voices' ranges (``voices.UNSEEN_RANGES``, own seed stream,
  no near-duplicate of any training voice) saying sentences of another list (``text.UNSEEN_SENTENCES_PATH``,
  none in the training list). They are in no LibriSpeech/VoxCeleb1/IEMOCAP layout: only under
  ``<corpus>/unseen/`` (see ``layout.py``).
- IEMOCAP: the first ``n_iemocap`` speakers (a multiple of 10), spread over five sessions = five
  ER folds, as many female as male speakers per session (``Ses0kF``, ``Ses0kM`` dialogs); the
  utterances whose style maps to one of the four ER classes are in the ER metadata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from upstream.facts import SAMPLE_RATE  # noqa: F401  (re-exported: the corpus is written at the models' rate)

MAX_VOXCELEB_SPEAKERS = 1251


@dataclass(frozen=True)
class UnseenSpec:
    """The unseen-voices evaluation set: ``n_speakers`` x ``utts_per_speaker`` utterances."""
    n_speakers: int
    utts_per_speaker: int

    def __post_init__(self):
        if self.n_speakers < 2 or self.utts_per_speaker < 2:
            raise ValueError(f"unseen set: need >= 2 speakers and >= 2 utterances each (a speaker probe and "
                             f"across-speaker ABX), got {self.n_speakers} x {self.utts_per_speaker}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    n_speakers: int
    utts_per_speaker: int
    n_dev: int  # LibriSpeech dev-clean speakers
    n_test: int  # LibriSpeech test-clean speakers
    n_asv_test: int  # VoxCeleb1/test speakers (ASV trials), unseen in ASV training
    sid_dev_frac: float = 0.1  # per speaker, fraction of utterances in iden_split 2 (dev)
    sid_test_frac: float = 0.1  # ... and 3 (test)
    asv_trials_per_speaker: int = 40  # target + non-target trials per ASV test speaker
    n_iemocap: int = 10  # IEMOCAP speakers (multiple of 10: 5 sessions x (F, M)); real IEMOCAP has 10
    min_voice_distance: float = 8.0  # near-duplicate rule, see voices.py
    chapter_size: int = 25  # utterances per LibriSpeech chapter
    video_size: int = 5  # utterances per VoxCeleb1 "video"
    # the unseen-voices set (None: none). Not part of to_dict(): corpus.json and plan.json (so corpus ids
    # and feature-store names) of a corpus stay what they were before the set existed; the set records
    # its own spec in unseen/plan.json.
    unseen: UnseenSpec | None = None

    def __post_init__(self):
        if self.n_speakers > MAX_VOXCELEB_SPEAKERS:
            raise ValueError(f"{self.name}: at most {MAX_VOXCELEB_SPEAKERS} speakers (s3prl voxceleb1 has 1251 classes)")
        if self.n_dev + self.n_test >= self.n_speakers:
            raise ValueError(f"{self.name}: need some LibriSpeech train speakers (n_dev + n_test < n_speakers)")
        if self.n_iemocap < 10 or self.n_iemocap % 10 or self.n_iemocap > self.n_speakers:
            raise ValueError(f"{self.name}: n_iemocap must be a multiple of 10 in [10, n_speakers]")
        if self.n_asv_test < 2 or self.n_asv_test >= self.n_speakers - 1:
            raise ValueError(f"{self.name}: need 2 <= n_asv_test < n_speakers - 1")

    def to_dict(self) -> dict:
        """Every field but ``unseen`` (see above)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "unseen"}

    def libri_split(self, i: int) -> str:
        """'train' | 'dev' | 'test' for speaker index i."""
        if i >= self.n_speakers - self.n_test:
            return "test"
        if i >= self.n_speakers - self.n_test - self.n_dev:
            return "dev"
        return "train"

    def asv_role(self, i: int) -> str:
        """'test' if speaker i is an ASV test speaker (VoxCeleb1/test), else 'dev'."""
        return "test" if i >= self.n_speakers - self.n_asv_test else "dev"


SIZES: dict[str, CorpusSpec] = {
    # tests: seconds to generate; every task, split and ER fold non-empty
    "tiny": CorpusSpec("tiny", n_speakers=12, utts_per_speaker=10, n_dev=2, n_test=2, n_asv_test=3,
                       sid_dev_frac=0.2, sid_test_frac=0.2, asv_trials_per_speaker=12, chapter_size=5,
                       unseen=UnseenSpec(n_speakers=5, utts_per_speaker=6)),
    # the demo: 2.6 h of audio (3.1 s a sentence), ~30 CPU-seconds; 60 unseen voices (the first 30 are the
    # 30 of the earlier 30-voice set: the voice stream is sequential), so that most scorecard verdicts are
    # decided by more than one held-out utterance
    "small": CorpusSpec("small", n_speakers=100, utts_per_speaker=30, n_dev=10, n_test=10, n_asv_test=10,
                        n_iemocap=40, unseen=UnseenSpec(n_speakers=60, utts_per_speaker=16)),
    # CPU pre-training of the bundled checkpoints: ~13 h, 500 speakers (train on speakers the demo corpus
    # lacks: `harness pretrain ... data.exclude_speakers_of=corpora/small`), ~3 CPU-minutes
    "medium": CorpusSpec("medium", n_speakers=500, utts_per_speaker=30, n_dev=20, n_test=20, n_asv_test=20,
                         n_iemocap=40, unseen=UnseenSpec(n_speakers=30, utts_per_speaker=16)),
    # GPU training: ~105 h, 1200 speakers (generate on the big machine: ~21 CPU-minutes, ~20 GiB)
    "large": CorpusSpec("large", n_speakers=1200, utts_per_speaker=100, n_dev=40, n_test=40, n_asv_test=40,
                        n_iemocap=100, sid_dev_frac=0.05, sid_test_frac=0.05,
                        unseen=UnseenSpec(n_speakers=60, utts_per_speaker=20)),
}


def get_spec(size: str) -> CorpusSpec:
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown corpus size {size!r}: choose one of {', '.join(SIZES)}") from None
