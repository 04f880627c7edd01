"""Re-render the committed analysis figures from the committed CSVs (until `harness plot` does it).

  python scripts/replot_analysis.py [--dir results/analysis] [--models jooci,learn2diss,barlow_twins]

Writes <dir>/{abx,cca,probe}.{png,pdf} (score vs layer, every model) and <dir>/model-<name>.{png,pdf}
(one per DUET model with two streams: ABX, PWCCA and probes of both streams, its random-init twin and
the fbank/MFCC baselines).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import plots, style  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=ROOT / "results" / "analysis", help="folder of abx-*/cca-*/probe-* CSVs")
    p.add_argument("--models", default=None,
                   help="comma-separated models for per-model figures (default: every model with a content and an other stream)")
    args = p.parse_args(argv)
    frames = {}
    for kind in plots.KINDS:
        csvs = sorted(args.dir.glob(f"{kind}-*.csv"))
        if not csvs:
            print(f"no {kind}-*.csv in {args.dir}", file=sys.stderr)
            continue
        frames[kind] = plots.read_results(csvs)
        for f in plots.plot_layers(frames[kind], args.dir / kind, kind):
            print(f"wrote {f}")
    if not frames:
        return 2
    import pandas as pd

    df = pd.concat(frames.values(), ignore_index=True)
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    else:
        streams = df.groupby(df["model"].map(style.model_key))["stream"].agg(set)
        models = [k for k, s in streams.items() if {"content", "other"} <= s and not k.endswith(":random")]
    for m in models:
        for f in plots.plot_model(df, m, args.dir / f"model-{m}"):
            print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
