"""Regenerate harness/corpus/data/sentences.txt from Debian's `fortunes` package (run once, by hand).

    apt-get download fortunes && dpkg-deb -x fortunes_*.deb /tmp/fort
    python scripts/corpus_sentences.py /tmp/fort/usr/share/games/fortunes > harness/corpus/data/sentences.txt
    python scripts/corpus_sentences.py --unseen /tmp/fort/usr/share/games/fortunes > harness/corpus/data/unseen_sentences.txt

Splits fortunes into sentences (attributions and quotes dropped) and keeps sentences of 5-20 plain English words (ASCII letters and inner apostrophes only,
no digits, hyphens, quotes, acronyms or attributions), de-duplicated, in a fixed order.

``--unseen``: the sentences of the evaluation-only unseen-voices set instead: the same filter over the
text files the training list skips (``UNSEEN_FILES``: computers, linux, startrek, ...), minus every
sentence of the training list (compared lower-cased), so no training text can be heard in it.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
ALLOWED = re.compile(r"^[A-Za-z' ,;.!?]+$")
SKIP_FILES = {"ascii-art", "art", "debian", "linux", "linuxcookie", "computers", "startrek", "zippy"}
UNSEEN_FILES = SKIP_FILES - {"ascii-art", "art"}  # text the training list never reads
UNSEEN_HEADER = """# DUET unseen-voices sentences (evaluation only): sentences of the Debian `fortunes` files that the
# training list (sentences.txt) skips (computers, debian, linux, linuxcookie, startrek, zippy), same filter,
# minus every sentence of sentences.txt. Regenerate with scripts/corpus_sentences.py --unseen.
# One sentence per line; the transcript is the sentence's words upper-cased (LibriSpeech style).
"""
HEADER = """# DUET corpus sentences: sentences of fortunes (attributions dropped), filtered from Debian's `fortunes`
# (fortune-mod 1.99.1, files in /usr/share/games/fortunes, the distribution's free, inoffensive set;
# BSD-licensed collection of public quotations). Regenerate with scripts/corpus_sentences.py.
# One sentence per line; the transcript is the sentence's words upper-cased (LibriSpeech style).
"""


def sentences(root: Path, only: set[str] | None = None, seen: set[str] | None = None):
    """Filtered sentences of the fortune files under ``root`` (all but SKIP_FILES, or only ``only``);
    ``seen``: lower-cased sentences to leave out (updated with those yielded)."""
    seen = set() if seen is None else seen
    for f in sorted(root.iterdir()):
        if f.suffix or not f.is_file() or (f.name not in only if only is not None else f.name in SKIP_FILES):
            continue
        text = f.read_text(encoding="latin-1")
        for entry in text.split("\n%\n"):
            entry = " ".join(entry.split()).split(" -- ")[0].replace('"', "")
            for s in re.split(r"(?<=[.!?]) +(?=[A-Z])", entry):
                s = s.strip()
                if not s or not ALLOWED.match(s) or s[-1] not in ".!?":
                    continue
                if len(re.findall(r"[.!?]", s)) != 1 or not s[0].isupper():
                    continue
                yield from _keep(s, seen)


def _keep(s: str, seen: set):
    words = s.replace(",", " ").replace(";", " ").rstrip(".!?").split()
    if not 5 <= len(words) <= 20 or any(not WORD.fullmatch(w) for w in words):
        return
    if any(len(w) > 1 and any(c.isupper() for c in w[1:]) for w in words):
        return
    key = s.lower()
    if key not in seen:
        seen.add(key)
        yield s


if __name__ == "__main__":
    if sys.argv[1] == "--unseen":
        train = Path(__file__).resolve().parents[1] / "harness" / "corpus" / "data" / "sentences.txt"
        exclude = {ln.strip().lower() for ln in train.read_text(encoding="utf-8").splitlines()
                   if ln.strip() and not ln.startswith("#")}
        out = list(sentences(Path(sys.argv[2]), only=UNSEEN_FILES, seen=exclude))
        sys.stdout.write(UNSEEN_HEADER)
    else:
        out = list(sentences(Path(sys.argv[1])))
        sys.stdout.write(HEADER)
    for s in out:
        sys.stdout.write(s + "\n")
    print(f"{len(out)} sentences", file=sys.stderr)
