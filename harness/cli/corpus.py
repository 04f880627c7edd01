"""`harness corpus make|info`: generate or inspect a synthetic corpus in the real corpora's layouts.

    harness corpus make --size small --out corpora/small [--seed 0] [--workers 2]
    harness corpus info corpora/small

A generated corpus holds LibriSpeech (ASR, PR), VoxCeleb1 (SID, ASV), IEMOCAP (ER), phone
alignments, ABX item files and manifest.csv, and an evaluation-only unseen-voices set under unseen/
(voices and sentences training never sees; `harness scorecard` reads it); see harness/corpus/layout.py
for every path. Rerunning `make` on a corpus made before the unseen set existed adds it.
Generation is resumable (rerun the same command) and deterministic (same seed, same bytes).
"""
from __future__ import annotations

import argparse
import sys

SIZE_NAMES = ("tiny", "small", "medium", "large")  # harness.corpus.spec.SIZES (kept import-free here)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION")
    mk = sub.add_parser("make", help="generate a corpus (resumes an interrupted one)",
                        description="Synthesise a corpus with espeak-ng and write it in the LibriSpeech, "
                                    "VoxCeleb1 and IEMOCAP layouts, with alignments and ABX items.")
    mk.add_argument("--size", required=True, help=f"corpus size: {', '.join(SIZE_NAMES)} "
                    "(tiny: tests, seconds; small: demo, 2.6 h audio, ~30 CPU-s; medium: CPU pre-training, ~13 h; "
                    "large: GPU training, ~105 h)")
    mk.add_argument("--out", required=True, help="output directory (created; rerun to resume)")
    mk.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical corpus); default 0")
    mk.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    mk.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="check a corpus and print its summary")
    info.add_argument("dir", help="corpus directory")
    info.add_argument("--json", action="store_true", help="print corpus.json instead of a summary")
    parser.set_defaults(_corpus_parser=parser)


def _make(args) -> int:
    import os
    import time

    from harness.corpus import make_corpus
    from harness.corpus.layout import CorpusLayout

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be >= 1 (default: all cores)")
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed}: must be >= 0")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    t0 = time.time()
    root = make_corpus(args.out, size=args.size, seed=args.seed, workers=workers, progress=not args.no_progress)
    info = CorpusLayout(root).check()
    c = info["counts"]
    print(f"corpus {info['size']} (seed {info['seed']}) at {root}: {c['speakers']} speakers, "
          f"{c['utterances']} utterances, {info['hours']:.2f} h audio, {time.time() - t0:.1f} s")
    _print_unseen(CorpusLayout(root))
    return 0


def _print_unseen(lay) -> None:
    if not lay.unseen_info_json.is_file():
        print(f"  unseen voices: none ({lay.unseen_info_json} missing)")
        return
    u = lay.check_unseen()
    c = u["counts"]
    print(f"  unseen voices (evaluation only): {c['speakers']} speakers, {c['utterances']} utterances, "
          f"{u['hours']:.3f} h, {c['abx_items']} ABX items in {lay.unseen}")


def _info(args) -> int:
    import json

    from harness.corpus.layout import CorpusLayout

    lay = CorpusLayout(args.dir)
    info = lay.check()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    c = info["counts"]
    print(f"{lay.root}: DUET corpus {info['size']!r}, seed {info['seed']}, {info['sample_rate']} Hz")
    print(f"  audio: {info['hours']:.3f} h  " + "  ".join(f"{s} {h:.3f} h" for s, h in info["hours_per_split"].items()))
    print(f"  speakers {c['speakers']} (LibriSpeech train/dev/test {c['train_speakers']}/{c['dev_speakers']}/"
          f"{c['test_speakers']}), utterances {c['utterances']}")
    print(f"  SID iden_split 1/2/3: {c['sid_train']}/{c['sid_dev']}/{c['sid_test']}; ASV: {c['asv_train_speakers']} "
          f"training speakers, {c['asv_test_speakers']} unseen test speakers, {c['asv_test_trials']} trials")
    print(f"  ER: {c['er_utterances']} utterances {c['er_classes']} in 5 sessions")
    print(f"  PR: {len(info['phones'])} phones, lexicon {c['lexicon_words']} words; ABX items dev/test "
          f"{c['abx_dev_items']}/{c['abx_test_items']}")
    print(f"  layouts: {lay.librispeech}, {lay.voxceleb1}, {lay.iemocap}, {lay.alignments}, {lay.abx}, {lay.manifest}")
    _print_unseen(lay)
    return 0


def run(args) -> int:
    from harness.corpus.layout import CorpusError

    if args.corpus_command is None:
        args._corpus_parser.print_help()
        return 2
    try:
        return _make(args) if args.corpus_command == "make" else _info(args)
    except (CorpusError, ValueError) as e:
        print(f"harness corpus: error: {e}", file=sys.stderr)
        return 2
