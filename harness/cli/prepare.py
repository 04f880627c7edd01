"""`harness prepare`: the support files s3prl's SUPERB tasks need, from your real corpora.

  harness prepare librispeech --root /data/LibriSpeech --lexicon librispeech-lexicon.txt --out /data/duet_prep
  harness prepare voxceleb1   --root /data/VoxCeleb1 --out /data/duet_prep
  harness prepare iemocap     --root /data/IEMOCAP_full_release --out /data/duet_prep
  harness run --tasks sid,asv,er,pr,asr --data-config /data/duet_prep/datasets.yaml
  harness prepare overrides --data-config /data/duet_prep/datasets.yaml --task pr   # -o for run_downstream.py

librispeech: bucket tables (len_for_bucket/<split>.csv), char.dict, lexicon.txt (--lexicon entries,
espeak-ng for missing words), phones.txt, phone transcripts. voxceleb1: checks iden_split.txt and
veri_test2.txt (official lists, downloaded next to dev/ and test/), writes the ASV dev trials.
iemocap: s3prl's five-fold meta_data/. Each merges its paths into OUT/datasets.yaml. Rerunning
changes nothing. See docs/real_data.md and harness/corpus/prepare.py.
"""
from __future__ import annotations

import argparse
import sys

ACTIONS = ("librispeech", "voxceleb1", "iemocap", "overrides")  # harness.corpus.prepare.CORPORA + overrides


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("corpus", choices=ACTIONS, help="which corpus to prepare (or 'overrides': print run_downstream.py's -o)")
    p.add_argument("--root", default=None, help="the corpus root (as distributed; see the table in harness/corpus/prepare.py)")
    p.add_argument("--out", default=None, help="where to write the support files and datasets.yaml (default: --root)")
    p.add_argument("--lexicon", default=None, metavar="FILE",
                   help="librispeech: 'WORD PH PH ...' lexicon for the phone transcripts (words it lacks and "
                        "every word without it: espeak-ng g2p)")
    p.add_argument("--seed", type=int, default=0, help="voxceleb1: seed of the ASV dev trials (default 0)")
    p.add_argument("--asv-dev-speakers", type=int, default=40, help="voxceleb1: dev speakers in the ASV dev trials")
    p.add_argument("--asv-trials-per-speaker", type=int, default=40, help="voxceleb1: trials per dev speaker")
    p.add_argument("--data-config", default=None, metavar="YAML", help="overrides: the datasets.yaml")
    p.add_argument("--task", default=None, help="overrides: sid, asv, er, pr or asr")
    p.add_argument("--fold", default=None, help="overrides, er: fold1..fold5 (default fold1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def overrides(data_config, task: str, fold: str | None = None) -> str:
    """The ``-o`` string that points ``downstream_configs/real/<task>.yaml`` at the datasets of a
    ``datasets.yaml`` (for ``run_downstream.py``; ``harness run --data-config`` does this itself)."""
    from pathlib import Path

    from harness.corpus.prepare import PrepareError
    from harness.superb.real_data import RealData
    from harness.superb.tasks import TASKS

    if task not in TASKS:
        raise PrepareError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    try:
        data = RealData.load(Path(data_config))
        data.check([task])
        return TASKS[task].overrides(data.layout(), fold=fold, check=False)
    except (OSError, ValueError) as e:
        raise PrepareError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from harness.corpus import prepare as prep

    try:
        if args.corpus == "overrides":
            if not args.data_config or not args.task:
                raise prep.PrepareError("overrides needs --data-config YAML and --task TASK")
            print(overrides(args.data_config, args.task, args.fold))
            return 0
        if not args.root:
            raise prep.PrepareError(f"--root DIR is required: the {args.corpus} corpus as distributed")
        if args.lexicon is not None and args.corpus != "librispeech":
            raise prep.PrepareError("--lexicon applies to librispeech only")
        kw = {"out": args.out, "progress": not args.no_progress}
        if args.corpus == "librispeech":
            kw["lexicon"] = args.lexicon
        elif args.corpus == "voxceleb1":
            kw.update(seed=args.seed, dev_speakers=args.asv_dev_speakers,
                      trials_per_speaker=args.asv_trials_per_speaker)
        summary = prep.PREPARE[args.corpus](args.root, **kw)
    except prep.PrepareError as e:
        print(f"harness prepare: error: {e}", file=sys.stderr)
        return 2
    facts = ", ".join(f"{k} {v}" for k, v in summary.items() if k not in ("corpus", "root", "out", "datasets_yaml"))
    print(f"prepared {summary['corpus']} ({summary['root']}) into {summary['out']}: {facts}")
    print(f"datasets: {summary['datasets_yaml']}  (harness run --data-config {summary['datasets_yaml']} ...)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run without the `harness` entry point: ``python harness/cli/prepare.py librispeech --root ...``."""
    p = argparse.ArgumentParser(prog="harness prepare")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's harness, installed or not
    sys.exit(main())
