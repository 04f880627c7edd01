"""`harness`: DUET's one command-line entry point.

Each subcommand lives in its own module ``harness/cli/<name>.py`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; the table below is the explicit registry.
A cmd module imports only argparse-level things at the top and does its heavy imports
(torch, s3prl, pandas) inside ``run``, so ``harness --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("harness.cli.corpus", "generate or inspect a synthetic corpus in the real corpora's layouts"),
    "pretrain": ("harness.cli.pretrain", "train a DUET model with one of the bundled recipes"),
    "run": ("harness.cli.run", "run SUPERB tasks (s3prl downstreams) over upstreams x features x tasks"),
    "report": ("harness.cli.report", "render leaderboards, the disentanglement matrix and plots from results"),
    "calibrate": ("harness.cli.calibrate", "positive / negative controls and linear probes for the mini SUPERB configs"),
    "list": ("harness.cli.list", "list known tasks, upstreams, features and checkpoints"),
    "abx": ("harness.cli.abx", "triphone ABX error per layer and stream"),
    "cca": ("harness.cli.cca", "projection-weighted CCA per layer (phone, word, speaker, fbank views)"),
    "probe": ("harness.cli.probe", "linear speaker/phone probes per layer and an MI estimate between streams"),
    "plot": ("harness.cli.plot", "plot ABX / CCA / probe results and per-model figures (PNG + PDF)"),
    "scorecard": ("harness.cli.scorecard", "the validity scorecard on unseen voices: probes, ABX, baselines, random twins"),
    "prepare": ("harness.cli.prepare", "write the files s3prl's tasks need for real LibriSpeech / VoxCeleb1 / IEMOCAP"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="DUET: Disentangled Upstreams and Evaluation Toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    mod = importlib.import_module(args._module)
    return int(mod.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
