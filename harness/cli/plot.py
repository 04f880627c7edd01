"""`harness plot abx|cca|probe|model RESULTS.csv [...] [--out STEM]`: the analysis figures, PNG (for
READMEs) and PDF (vector, for papers) side by side, in the one style of analysis/style.py.

  harness plot cca results/analysis/cca-*.csv --out results/analysis/cca
  harness plot model results/analysis/*.csv --model jooci --out results/analysis/model-jooci

abx|cca|probe: score vs layer, one panel per metric (within / across speaker, CCA views, probes),
one line per model x stream, baselines grey, chance dotted, bands where the numbers have a spread.
model: the disentanglement figure of one model (--model, a registry name such as jooci): one panel
per measure (ABX, PWCCA, probes) with both streams, its random-init twin and the fbank/MFCC
baselines; give it the abx, cca and probe CSVs together.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("kind", choices=("abx", "cca", "probe", "model"), help="which figure")
    p.add_argument("results", nargs="+", type=Path, help="results CSV(s) written by harness abx|cca|probe")
    p.add_argument("--model", default=None, help="kind model: the model to draw (e.g. jooci)")
    p.add_argument("--out", type=Path, default=None,
                   help="output stem, or a .png/.pdf path (both are written); default: next to the first CSV "
                        "(kind model: model-<NAME> there)")


def run(args: argparse.Namespace) -> int:
    import sys

    from analysis import plots

    try:
        if args.kind == "model":
            if not args.model:
                raise ValueError("kind model needs --model NAME (e.g. --model jooci)")
            out = args.out or args.results[0].parent / f"model-{args.model}"
            png, pdf = plots.plot_model(plots.read_results(args.results), args.model, out)
            print(f"wrote {png}\nwrote {pdf}")
            return 0
        if args.model:
            raise ValueError("--model is for kind model only")
        png = plots.plot_results(args.results, args.kind, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"harness plot: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {png}\nwrote {png.with_suffix('.pdf')}")
    return 0
