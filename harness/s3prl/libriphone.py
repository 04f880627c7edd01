"""The ``libriphone`` corpus of s3prl's ``ctc`` downstream (SUPERB PR), missing from the 0.4.18 sdist.

s3prl's ``downstream/ctc/data.py`` does ``from .corpus.libriphone import LibriPhoneDataset`` when
the config says ``corpus.name: libriphone``, but the PyPI sdist ships no ``ctc/corpus`` package.
:func:`harness.s3prl.compat.install` registers this module as ``s3prl.downstream.ctc.corpus.libriphone``
(only when the installed s3prl lacks it). Written from the interface s3prl's data.py uses:

    LibriPhoneDataset(split_csv, tokenizer, bucket_size, lexicon, csv_dir, ascending=False, **kw)

* ``csv_dir/split_csv``: a CSV with columns ``wav_path`` (absolute, or relative to ``csv_dir``)
  and ``transcription`` (words separated by spaces) -- SUPERB's PR tables; or, DUET's extension,
  an s3prl ASR bucket table (``len_for_bucket/<split>.csv``, column ``file_path`` relative to the
  ``libri_root`` corpus option) whose transcripts are read from LibriSpeech's
  ``SPK-CHAP.trans.txt`` beside each file (so a LibriSpeech tree needs no extra PR tables);
* ``lexicon``: list of files with lines ``WORD PH1 PH2 ...`` (first pronunciation wins);
* items: ``(wav_path, token_ids)``, or with ``bucket_size > 1`` a list of ``bucket_size``
  neighbouring items (sorted by label length, longest first unless ``ascending``), which
  ``collect_audio_batch`` turns into one batch.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from torch.utils.data import Dataset

from harness.corpus.lexicon import read_lexicon  # noqa: E402,F401  (the corpus reads it too)
from harness.corpus.transcripts import chapter_transcript_path, read_chapter_transcripts

logger = logging.getLogger(__name__)


class _TranscriptCache:
    """utt_id -> words from LibriSpeech ``SPK-CHAP.trans.txt`` files, read once per chapter."""

    def __init__(self):
        self._loaded: dict[Path, dict[str, str]] = {}

    def get(self, wav_path: str) -> str:
        wav = Path(wav_path)
        utt = wav.name.split(".")[0]
        trans = chapter_transcript_path(wav)
        if trans not in self._loaded:
            if not trans.is_file():
                raise FileNotFoundError(f"libriphone: no transcript file {trans} for {wav} (LibriSpeech layout "
                                        f"SPK/CHAP/SPK-CHAP.trans.txt expected; set corpus.libri_root)")
            self._loaded[trans] = read_chapter_transcripts(trans)
        try:
            return self._loaded[trans][utt]
        except KeyError:
            raise KeyError(f"libriphone: utterance {utt} has no line in {trans}") from None


class LibriPhoneDataset(Dataset):
    """Phone-transcribed LibriSpeech-style utterances for CTC phone recognition."""

    def __init__(self, split_csv, tokenizer, bucket_size, lexicon, csv_dir, ascending=False,
                 libri_root=None, **kwargs):
        self.bucket_size = int(bucket_size)
        vocab = set(getattr(tokenizer, "_vocab2idx", {}) or []) or None
        lex = read_lexicon(lexicon if isinstance(lexicon, (list, tuple)) else [lexicon], vocab)
        table = Path(csv_dir) / split_csv
        if not table.is_file():
            raise FileNotFoundError(f"libriphone: split table {table} does not exist; set "
                                    f"config.downstream_expert.corpus.csv_dir (and train/dev/test file names)")
        items = []
        with open(table, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or [])
            path_col = "wav_path" if "wav_path" in fields else "file_path" if "file_path" in fields else None
            if path_col is None or (path_col == "wav_path" and "transcription" not in fields):
                raise ValueError(f"libriphone: {table} needs columns wav_path,transcription (SUPERB PR table) "
                                 f"or file_path (s3prl ASR bucket table + libri_root); has {sorted(fields)}")
            base = Path(libri_root) if (path_col == "file_path" and libri_root) else Path(csv_dir)
            transcripts = _TranscriptCache()
            for row in reader:
                wav = row[path_col]
                if not os.path.isabs(wav):
                    wav = str(base / wav)
                text = row.get("transcription")
                if text is None:
                    text = transcripts.get(wav)
                phones = []
                for word in text.split():
                    pron = lex.get(word, lex.get(word.upper()))
                    if pron is None:
                        raise KeyError(f"libriphone: word {word!r} of {wav} ({table}) is not "
                                       f"in the lexicon {list(lexicon) if isinstance(lexicon, (list, tuple)) else lexicon}")
                    phones += pron
                items.append((wav, tokenizer.encode(" ".join(phones))))
        if not items:
            raise ValueError(f"libriphone: {table} has no utterances")
        items.sort(key=lambda it: len(it[1]), reverse=not ascending)
        self.file_list = [w for w, _ in items]
        self.text = [t for _, t in items]
        logger.info("libriphone: %d utterances from %s", len(items), table)

    def __getitem__(self, index):
        if self.bucket_size > 1:
            index = max(0, min(len(self.file_list) - self.bucket_size, index))
            end = index + self.bucket_size
            return list(zip(self.file_list[index:end], self.text[index:end]))
        return self.file_list[index], self.text[index]

    def __len__(self):
        return len(self.file_list)
