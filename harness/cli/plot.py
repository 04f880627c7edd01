"""`harness plot abx|cca|probe RESULTS.csv [...] [--out PNG]`: score vs layer, one line per
model x stream, one panel per metric (within / across speaker, CCA views, probes), chance dashed."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=("abx", "cca", "probe"), help="which results to plot")
    p.add_argument("results", nargs="+", type=Path, help="results CSV(s) written by harness abx|cca|probe")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: next to the first CSV)")


def run(args: argparse.Namespace) -> int:
    import sys

    from analysis.plots import plot_results

    try:
        png = plot_results(args.results, args.kind, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"harness plot: {e}", file=sys.stderr)
        return 2
    print(f"wrote {png}")
    return 0
