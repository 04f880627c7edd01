"""The speaker probe of JOOCI's teacher itself, on a corpus's unseen voices: the bound its other stream
is distilled towards.

The scorecard's speaker probe (analysis.scorecard.speaker_probe: the same seeded per-speaker split,
L2 and linear softmax probe) on resemblyzer's whole-utterance d-vector instead of a stream's mean+std
pooled frames. Prints one Markdown line with the accuracy, its chance level and the sample sizes.

    PYTHONPATH=. python scripts/teacher_speaker_probe.py --corpus corpora/small
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from analysis.probes import probe_accuracy
from analysis.scorecard import ScorecardConfig
from harness.cli.scorecard import load_eval_set
from upstream.facts import progress_bar


def resemblyzer_embeddings(wavs: list[Path]) -> np.ndarray:
    """(N, 256) d-vectors, each utterance whole, as pretrain.teachers embeds training audio."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder, preprocess_wav
    from pretrain.teachers import untrimmed
    from upstream.facts import SAMPLE_RATE

    enc = VoiceEncoder("cpu", verbose=False)
    out = []
    for p in progress_bar(wavs, desc="resemblyzer"):
        w, sr = sf.read(str(p), dtype="float32")
        if sr != SAMPLE_RATE or w.ndim != 1:
            raise SystemExit(f"{p}: {sr} Hz, {w.ndim} dims; expected {SAMPLE_RATE} Hz mono")
        x = preprocess_wav(w, source_sr=SAMPLE_RATE)
        out.append(enc.embed_utterance(x if len(x) >= SAMPLE_RATE * 0.5 else untrimmed(w)))
    return np.stack(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("corpora/small"))
    args = p.parse_args(argv)
    data, wavs, info = load_eval_set(args.corpus)
    cfg = ScorecardConfig()
    x = resemblyzer_embeddings([wavs[u] for u in data.utts])
    r = probe_accuracy(x, data.speakers, seed=cfg.seed, test_frac=cfg.speaker_test_frac, l2=cfg.l2, device="cpu",
                       stratify=True)
    print(f"| resemblyzer d-vector | {args.corpus}/unseen, {len(set(data.speakers))} speakers | speaker probe "
          f"{r.accuracy:.3f} | chance {r.chance:.3f} | train / test utts {r.n_train} / {r.n_test} |")


if __name__ == "__main__":
    main()
