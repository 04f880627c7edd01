"""The one rule for naming a corpus on the command line: a size name (`tiny`, `small`, `large`),
generated into ``corpora_dir/<size>`` on first use under a lock (two processes never generate it
twice), or the path of a corpus made by `harness corpus make`; checked either way.

    >>> root = resolve_corpus("tiny", Path("corpora"))        # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .build import make_corpus
from .layout import CorpusError, CorpusLayout
from .spec import SIZES


def resolve_corpus(corpus: str | None, corpora_dir: Path, *, make: bool = True, workers: int = 1,
                   progress: Callable[[str], None] = print) -> Path:
    """The checked root of ``corpus`` (raises CorpusError naming the fix)."""
    from harness.locks import CellLock

    if not corpus:
        raise CorpusError(f"no corpus given: pass --corpus {'|'.join(SIZES)}|PATH")
    if corpus in SIZES:
        root = (Path(corpora_dir) / corpus).resolve()
        if not (root / "corpus.json").is_file():
            if not make:
                raise CorpusError(f"corpus {root} does not exist; run `harness corpus make --size {corpus} --out {root}`")
            with CellLock(Path(corpora_dir) / f".{corpus}.lock"):
                if not (root / "corpus.json").is_file():
                    progress(f"harness: generating the {corpus} corpus in {root} (first use) ...")
                    make_corpus(root, size=corpus, seed=0, workers=workers)
    else:
        root = Path(corpus).expanduser().resolve()
        if not root.is_dir():
            raise CorpusError(f"--corpus {corpus}: no such directory; use {'|'.join(SIZES)} or a corpus made by "
                              f"`harness corpus make --out DIR`")
    CorpusLayout(root).check()
    return root
