"""The speaker probe of a JOOCI teacher itself, on a corpus's unseen voices: the bound its other stream
is distilled towards.

The scorecard's speaker probe (analysis.scorecard.speaker_probe: the same seeded per-speaker split,
L2 and linear softmax probe) on the teacher's whole-utterance embedding (pretrain.teachers.embed, as
the recipe embeds its training audio) instead of a stream's mean+std pooled frames. Prints one
Markdown line with the accuracy, its chance level and the sample sizes.

    PYTHONPATH=. python scripts/teacher_speaker_probe.py --corpus corpora/small
    PYTHONPATH=. python scripts/teacher_speaker_probe.py --teacher learn2diss:checkpoints/learn2diss-compact
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from analysis.probes import probe_accuracy
from analysis.scorecard import ScorecardConfig
from harness.cli.scorecard import load_eval_set
from pretrain.teachers import embed
from upstream.facts import SAMPLE_RATE


def waveforms(paths: list[Path]):
    for p in paths:
        w, sr = sf.read(str(p), dtype="float32")
        if sr != SAMPLE_RATE or w.ndim != 1:
            raise SystemExit(f"{p}: {sr} Hz, {w.ndim} dims; expected {SAMPLE_RATE} Hz mono")
        yield w


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("corpora/small"))
    p.add_argument("--teacher", default="resemblyzer", help="resemblyzer | learn2diss:<checkpoint dir> (the recipe's teacher=)")
    args = p.parse_args(argv)
    data, wavs, info = load_eval_set(args.corpus)
    cfg = ScorecardConfig()
    x = embed(args.teacher, waveforms([wavs[u] for u in data.utts]), len(data.utts))
    r = probe_accuracy(x, data.speakers, seed=cfg.seed, test_frac=cfg.speaker_test_frac, l2=cfg.l2, device="cpu",
                       stratify=True)
    print(f"| {args.teacher} | {args.corpus}/unseen, {len(set(data.speakers))} speakers | speaker probe "
          f"{r.accuracy:.3f} | chance {r.chance:.3f} | train / test utts {r.n_train} / {r.n_test} |")


if __name__ == "__main__":
    main()
