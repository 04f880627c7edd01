"""Where everything lives in a generated corpus (the one place that names the files).

```
DIR/corpus.json                      written LAST (atomically): its absence means half-written
DIR/plan.json                        size + seed + spec of the corpus being generated (resume check)
DIR/generation.json                  wall time, workers, machine of the last generation run
DIR/manifest.csv                     one row per utterance (columns: MANIFEST_COLUMNS)
DIR/utterances/<spk>.json            per-speaker record (samples, phones, word phones of each
                                     utterance); written after its audio: marks the speaker done
DIR/LibriSpeech/                     ASR + PR (s3prl `asr`, `ctc`)
    {train-clean-100,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-NNNN.flac + SPK-CHAP.trans.txt
    len_for_bucket/{train-clean-100,dev-clean,test-clean}.csv   ",file_path,length,label" (samples)
    char.dict                        fairseq dictionary "SYMBOL COUNT" ("|" = word boundary)
    lexicon.txt                      "WORD ph ph ..." (libriphone `lexicon`), one pronunciation a word
    phones.txt                       phone vocabulary, one a line (libriphone `text.vocab_file`, word mode)
    phones/<libri split>.txt         "UTT_ID ph ph ..." exact phone transcripts (the audio's phones)
    libriphone/<libri split>.csv     harness.s3prl.libriphone tables "wav_path,transcription,phones"
                                     (wav_path relative to this folder; phones = the exact transcript)
DIR/VoxCeleb1/                       SID (`voxceleb1`) + ASV (`sv_voxceleb1`)
    {dev,test}/wav/idNNNNN/<video>/<nnnnn>.wav   test/ = ASV test speakers (unseen in dev/)
    iden_split.txt                   "1|2|3 idNNNNN/<video>/<nnnnn>.wav" (train/dev/test), all speakers
    veri_test.txt                    ASV test trials "1|0 path1 path2", paths relative to test/wav
    dev_meta_data/dev_meta_data.txt  ASV dev trials, same format, relative to dev/wav
DIR/IEMOCAP/                         ER (`emotion`), 5 sessions = 5 folds, 4 classes
    SessionK/sentences/wav/<dialog>/<utt>.wav
    SessionK/dialog/EmoEvaluation/<dialog>.txt    IEMOCAP-style labels (neu hap exc ang sad oth)
    meta_data/SessionK/{train,test}_meta_data.json  s3prl's format: test = session K
DIR/alignments/{train,dev,test}/<utt_id>.txt      "onset offset phone" (s), tiles [0, duration]
DIR/abx/{dev,test}.item              "#file onset offset #phone prev-phone next-phone speaker"
DIR/abx/{dev,test}/<utt_id>.wav      the files the items name (#file = utt_id)
DIR/unseen/                          the unseen-voices evaluation set (no training layout reads it;
                                     added to an older corpus by rerunning `harness corpus make`)
    plan.json                        its spec + seed (resume check); info.json written LAST (complete)
    voices.json                      every unseen voice's parameters and the ranges they came from
    manifest.csv                     one row per utterance (UNSEEN_MANIFEST_COLUMNS)
    utterances/<spk>.json            per-speaker records, as utterances/ above
    wav/<utt_id>.wav                 16 kHz mono 16-bit
    alignments/<utt_id>.txt          "onset offset phone" (s), tiles [0, duration]
    abx.item                         ABX items of the set (#file = utt_id, audio in wav/)
```

Split name ``unseen``: ``alignment("unseen", u)``, ``abx_item("unseen")`` and ``abx_wav_dir("unseen")``
name the unseen set's files, so readers of the dev/test ABX layout read it unchanged.

Audio is 16 kHz mono 16-bit; flac under LibriSpeech, wav elsewhere. The wav files of VoxCeleb1,
IEMOCAP and abx are hard links to one file (copies where the file system has no hard links).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SPLITS = ("train", "dev", "test")
LIBRI_SPLITS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
ABX_SPLITS = ("dev", "test")
UNSEEN = "unseen"  # the unseen-voices set's split name (alignment / abx_item / abx_wav_dir)
UNSEEN_MANIFEST_COLUMNS = ["utt_id", "speaker", "gender", "style", "text", "sentence", "duration_s", "num_samples",
                           "wav", "alignment"]
ER_FOLDS = (1, 2, 3, 4, 5)
FORMAT = "duet-corpus/1"
# support files (everything s3prl reads besides audio), relative to each corpus folder; the keys are
# the CorpusLayout attributes and harness.superb.real_data's --data-config keys. harness.corpus.prepare
# writes the same names for a real corpus.
LIBRI_FILES = {"bucket_dir": "len_for_bucket", "char_dict": "char.dict", "lexicon": "lexicon.txt",
               "phone_vocab": "phones.txt", "phone_transcripts_dir": "phones", "libriphone_dir": "libriphone"}
VOX_FILES = {"iden_split": "iden_split.txt", "veri_test": "veri_test.txt",
             "veri_dev": "dev_meta_data/dev_meta_data.txt"}
IEMOCAP_FILES = {"iemocap_meta": "meta_data"}
MANIFEST_COLUMNS = ["utt_id", "speaker", "vox_id", "gender", "style", "er_label", "split", "sid_split",
                    "asv_set", "session", "text", "sentence", "duration_s", "num_samples",
                    "librispeech", "voxceleb1", "iemocap", "alignment", "abx"]


@lru_cache(maxsize=8)
def _speaker_records(path: str, mtime_ns: int, size: int) -> dict:
    try:
        return json.loads(Path(path).read_text())["utterances"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise CorpusError(f"speaker record {path} is unreadable ({e}); delete it and rerun "
                          f"`harness corpus make` with the same --size/--out (it resumes)") from None


class CorpusError(RuntimeError):
    """A corpus directory that is missing, half-written or not a DUET corpus."""


def read_json(path: Path, fix: str, what: str = ""):
    """``path`` parsed as JSON, or a CorpusError naming it (``what`` before it) and the ``fix``."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorpusError(f"{what}{path} is unreadable ({e}); {fix}") from None


def read_records(paths, fix: str, what: str = "speaker record ") -> dict[str, dict]:
    """The ``utterances`` of per-speaker record files, merged; a CorpusError naming the bad file and ``fix``."""
    out: dict[str, dict] = {}
    for p in paths:
        rec = read_json(p, fix, what)
        if not isinstance(rec, dict) or "utterances" not in rec:
            raise CorpusError(f"{what}{p} is unreadable ('utterances' missing); {fix}")
        out.update(rec["utterances"])
    return out


def make_hint(root: Path, size: str = "small") -> str:
    return f"run `harness corpus make --size {size} --out {root}`"


class CorpusLayout:
    """Every path of a corpus rooted at ``root``. Nothing is created or checked on construction;
    call ``check()`` before reading."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        r = self.root
        self.corpus_json = r / "corpus.json"
        self.plan_json = r / "plan.json"
        self.generation_json = r / "generation.json"
        self.manifest = r / "manifest.csv"
        self.utterances = r / "utterances"
        # LibriSpeech
        self.librispeech = r / "LibriSpeech"
        self.bucket_dir = self.librispeech / LIBRI_FILES["bucket_dir"]
        self.char_dict = self.librispeech / LIBRI_FILES["char_dict"]
        self.lexicon = self.librispeech / LIBRI_FILES["lexicon"]
        self.phone_vocab = self.librispeech / LIBRI_FILES["phone_vocab"]
        self.phone_transcripts_dir = self.librispeech / LIBRI_FILES["phone_transcripts_dir"]
        self.libriphone_dir = self.librispeech / LIBRI_FILES["libriphone_dir"]
        # VoxCeleb1
        self.voxceleb1 = r / "VoxCeleb1"
        self.vox_dev_wav = self.voxceleb1 / "dev" / "wav"
        self.vox_test_wav = self.voxceleb1 / "test" / "wav"
        self.iden_split = self.voxceleb1 / VOX_FILES["iden_split"]
        self.veri_test = self.voxceleb1 / VOX_FILES["veri_test"]
        self.veri_dev = self.voxceleb1 / VOX_FILES["veri_dev"]
        # IEMOCAP
        self.iemocap = r / "IEMOCAP"
        self.iemocap_meta = self.iemocap / IEMOCAP_FILES["iemocap_meta"]
        # alignments, ABX
        self.alignments = r / "alignments"
        self.abx = r / "abx"
        # the unseen-voices evaluation set
        self.unseen = r / UNSEEN
        self.unseen_plan_json = self.unseen / "plan.json"
        self.unseen_info_json = self.unseen / "info.json"
        self.unseen_voices_json = self.unseen / "voices.json"
        self.unseen_manifest = self.unseen / "manifest.csv"
        self.unseen_utterances = self.unseen / "utterances"
        self.unseen_wav_dir = self.unseen / "wav"
        self.unseen_alignments = self.unseen / "alignments"
        self.unseen_item = self.unseen / "abx.item"

    # --- per-split / per-item paths -------------------------------------------------------
    def libri_split_dir(self, split: str) -> Path:
        return self.librispeech / LIBRI_SPLITS[split]

    def bucket_csv(self, split: str) -> Path:
        return self.bucket_dir / f"{LIBRI_SPLITS[split]}.csv"

    def phone_transcripts(self, split: str) -> Path:
        return self.phone_transcripts_dir / f"{LIBRI_SPLITS[split]}.txt"

    def libriphone_csv(self, split: str) -> Path:
        return self.libriphone_dir / f"{LIBRI_SPLITS[split]}.csv"

    def vox_wav_dir(self, vox_set: str) -> Path:
        return self.voxceleb1 / vox_set / "wav"

    def iemocap_meta_json(self, fold: int, part: str) -> Path:
        """part: 'train' | 'test'; fold k tests on Session k."""
        return self.iemocap_meta / f"Session{fold}" / f"{part}_meta_data.json"

    def iemocap_session(self, k: int) -> Path:
        return self.iemocap / f"Session{k}"

    def alignment(self, split: str, utt_id: str) -> Path:
        if split == UNSEEN:
            return self.unseen_alignments / f"{utt_id}.txt"
        return self.alignments / split / f"{utt_id}.txt"

    def abx_item(self, split: str) -> Path:
        return self.unseen_item if split == UNSEEN else self.abx / f"{split}.item"

    def abx_wav_dir(self, split: str) -> Path:
        return self.unseen_wav_dir if split == UNSEEN else self.abx / split

    def unseen_wav(self, utt_id: str) -> Path:
        return self.unseen_wav_dir / f"{utt_id}.wav"

    def unseen_record(self, spk: str) -> Path:
        return self.unseen_utterances / f"{spk}.json"

    def speaker_record(self, libri_spk: str) -> Path:
        return self.utterances / f"{libri_spk}.json"

    def read_record(self, libri_spk: str, utt_id: str) -> dict | None:
        """One utterance's record, or None: ``{"num_samples": int, "phones": [[start, end, phone]]
        (16 kHz samples), "words": [[WORD, phones | None, merged]]}`` (see ``synth.Synthesis``)."""
        p = self.speaker_record(libri_spk)
        try:
            st = p.stat()
        except OSError:
            return None
        return _speaker_records(str(p), st.st_mtime_ns, st.st_size).get(utt_id)

    def read_unseen_record(self, spk: str, utt_id: str) -> dict | None:
        """One unseen utterance's record (same fields as ``read_record``), or None."""
        p = self.unseen_record(spk)
        try:
            st = p.stat()
        except OSError:
            return None
        return _speaker_records(str(p), st.st_mtime_ns, st.st_size).get(utt_id)

    # --- checks ----------------------------------------------------------------------------
    def _size_hint(self) -> str:
        try:
            return json.loads(self.plan_json.read_text())["size"]
        except Exception:
            return "small"

    def check(self) -> dict:
        """Raise CorpusError unless ``root`` holds a complete corpus; return its corpus.json."""
        if not self.root.is_dir():
            raise CorpusError(f"corpus directory {self.root} does not exist: {make_hint(self.root)}")
        if not self.corpus_json.is_file():
            what = "half-written (generation was interrupted or is still running)" if any(self.root.iterdir()) \
                else "empty"
            raise CorpusError(f"corpus directory {self.root} is {what}: {self.corpus_json.name} is missing; "
                              f"{make_hint(self.root, self._size_hint())} (it resumes where it stopped)")
        info = read_json(self.corpus_json, f"remove it and {make_hint(self.root, self._size_hint())}")
        if info.get("format") != FORMAT:
            raise CorpusError(f"{self.corpus_json} is not a {FORMAT} corpus (format {info.get('format')!r}); "
                              f"regenerate: {make_hint(self.root)}")
        required = [self.manifest, self.iden_split, self.veri_test, self.char_dict, self.lexicon,
                    self.phone_vocab, self.abx_item("dev"), self.abx_item("test")]
        required += [self.bucket_csv(s) for s in SPLITS] + [self.libriphone_csv(s) for s in SPLITS] + [self.iemocap_meta_json(k, p) for k in ER_FOLDS
                                                             for p in ("train", "test")]
        missing = [p for p in required if not p.is_file()]
        if missing:
            raise CorpusError(f"corpus {self.root} is incomplete: {missing[0]} is missing "
                              f"({len(missing)} files in all); {make_hint(self.root, info.get('size', 'small'))}")
        return info

    def check_unseen(self) -> dict:
        """Raise CorpusError unless the corpus has a complete unseen-voices set; return its info.json."""
        info = self.check()
        if not self.unseen_info_json.is_file():
            raise CorpusError(f"corpus {self.root} has no (complete) unseen-voices set: {self.unseen_info_json} is "
                              f"missing; {make_hint(self.root, info.get('size', 'small'))} (adds it, corpus unchanged)")
        unseen = read_json(self.unseen_info_json, f"remove it and {make_hint(self.root, info.get('size', 'small'))}")
        missing = [p for p in (self.unseen_manifest, self.unseen_item, self.unseen_voices_json) if not p.is_file()]
        if missing:
            raise CorpusError(f"unseen-voices set of {self.root} is incomplete: {missing[0]} is missing; remove "
                              f"{self.unseen_info_json} and {make_hint(self.root, info.get('size', 'small'))}")
        return unseen
