"""Synthetic mini-SUPERB corpora in the real corpora's layouts (see ``layout.py`` for every path).

    from harness.corpus import make_corpus
    from harness.corpus.layout import CorpusLayout
    root = make_corpus("corpora/tiny", size="tiny", seed=0, workers=2)
    info = CorpusLayout(root).check()

Components: ``text`` (shipped sentences), ``voices`` (random espeak variants, near-duplicates
dropped), ``styles`` (emotion-like prosody), ``synth`` (espeak-ng via ctypes, exact phone times),
``plan`` (who says what where), ``worker`` (one utterance), writers ``librispeech``, ``voxceleb``,
``iemocap``, ``abx``, ``manifest``, and ``build`` (orchestration, resume).
"""
from __future__ import annotations

from .build import GenerationInterrupted, make_corpus
from .layout import CorpusError, CorpusLayout
from .spec import SIZES, CorpusSpec, get_spec

__all__ = ["make_corpus", "CorpusLayout", "CorpusError", "GenerationInterrupted", "SIZES", "CorpusSpec", "get_spec"]
