"""The ``libriphone`` corpus of s3prl's ``ctc`` downstream (SUPERB PR), missing from the 0.4.18 sdist.

s3prl's ``downstream/ctc/data.py`` does ``from .corpus.libriphone import LibriPhoneDataset`` when
the config says ``corpus.name: libriphone``, but the PyPI sdist ships no ``ctc/corpus`` package.
:func:`harness.compat.install` registers this module as ``s3prl.downstream.ctc.corpus.libriphone``
(only when the installed s3prl lacks it). Written from the interface s3prl's data.py uses:

    LibriPhoneDataset(split_csv, tokenizer, bucket_size, lexicon, csv_dir, ascending=False, **kw)

* ``csv_dir/split_csv``: a CSV with columns ``wav_path`` (absolute, or relative to ``csv_dir``)
  and ``transcription`` (words separated by spaces);
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

logger = logging.getLogger(__name__)


def read_lexicon(files, vocab: set[str] | None = None) -> dict[str, list[str]]:
    """word -> phones (first entry of each word across ``files`` wins). Unknown phones raise."""
    lex: dict[str, list[str]] = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"libriphone: lexicon file {path} does not exist; set "
                                    f"config.downstream_expert.corpus.lexicon to your lexicon file(s)")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.replace("\t", " ").split()
            if not parts:
                continue
            word, phones = parts[0], parts[1:]
            if vocab is not None:
                bad = [p for p in phones if p not in vocab]
                if bad:
                    raise ValueError(f"libriphone: {path}:{n}: phones {bad} of {word!r} are not in the "
                                     f"phone vocabulary (config.downstream_expert.text.vocab_file)")
            lex.setdefault(word, phones)
    return lex


class LibriPhoneDataset(Dataset):
    """Phone-transcribed LibriSpeech-style utterances for CTC phone recognition."""

    def __init__(self, split_csv, tokenizer, bucket_size, lexicon, csv_dir, ascending=False, **kwargs):
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
            missing = {"wav_path", "transcription"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"libriphone: {table} lacks column(s) {sorted(missing)} "
                                 f"(needs wav_path,transcription)")
            for row in reader:
                wav = row["wav_path"]
                if not os.path.isabs(wav):
                    wav = str(Path(csv_dir) / wav)
                phones = []
                for word in row["transcription"].split():
                    pron = lex.get(word, lex.get(word.upper()))
                    if pron is None:
                        raise KeyError(f"libriphone: word {word!r} of {row['wav_path']} ({table}) is not "
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
