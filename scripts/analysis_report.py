"""Summarise the CSVs of scripts/run_analysis.sh as markdown (tables per kind + provenance).

    python scripts/analysis_report.py results/analysis --title "..." > results/analysis_small.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def table(df: pd.DataFrame) -> str:
    df = df.copy()
    df["layer"] = df["layer"].astype(str)
    wide = df.pivot_table(index=["model", "stream", "layer"], columns="metric", values="value", aggfunc="first",
                          sort=False).reset_index()
    cols = list(wide.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in wide.iterrows():
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path)
    p.add_argument("--title", default="Layer analysis")
    p.add_argument("--notes", default="")
    a = p.parse_args(argv)
    print(f"# {a.title}\n")
    if a.notes:
        print(a.notes + "\n")
    for kind, what in (("abx", "Triphone ABX error (%, chance 50), dev items"),
                       ("cca", "PWCCA (held-out, mean of trials)"),
                       ("probe", "Linear probes (held-out accuracy) and MI between streams (nats)")):
        csvs = sorted(a.dir.glob(f"{kind}-*.csv"))
        if not csvs:
            continue
        print(f"## {what}\n")
        if (a.dir / f"{kind}.png").is_file():
            print(f"![{kind}]({a.dir.name}/{kind}.png)\n")
        print(table(pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)) + "\n")
        if kind == "probe":
            df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
            ch = df[df["metric"].str.startswith("probe")].groupby("metric")["chance"].first()
            print("Chance (majority class of the held-out split): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in ch.items()) + "\n")
        print("Provenance:\n")
        for c in csvs:
            m = json.loads(Path(str(c) + ".meta.json").read_text())
            print(f"- `{m['command']}` — commit `{m['commit']}`, {m['machine']}, {m['wall_s']:.0f} s, {m['utc']}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
