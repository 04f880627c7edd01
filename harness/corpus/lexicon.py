"""A pronunciation lexicon file (``WORD PH1 PH2 ...`` per line), as LibriSpeech's and the corpus
generator's: read by ``harness prepare`` and by s3prl's libriphone task (harness/s3prl/libriphone.py)."""
from __future__ import annotations

from pathlib import Path


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
