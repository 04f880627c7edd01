"""Write results/abx_reference_check.md from the JSON rows of `python -m bench.abx_reference --json`.

    python -m bench.abx_reference --corpus corpora/small --json cache/bench_abx/rows.json
    python -m bench.abx_reference_report cache/bench_abx/rows.json --command "..." > results/abx_reference_check.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", type=Path)
    p.add_argument("--command", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--fastabx", default="not run")
    a = p.parse_args(argv)
    rows = json.loads(a.rows.read_text())
    print("# ABX: DUET vs the Libri-light implementation (zerospeech-libriabx2 0.9.8)\n")
    print(f"Command: `{a.command}`  \nCommit: `{a.commit}`  \nMachine: {a.machine}; both run in the same "
          "process, one after the other, torch single-threaded.\n")
    print("Identical inputs: the same `.npy` feature files, item file, seed (3459), `max_size_group` 10, "
          "`max_x_across` 5, cosine/angular distance, within-context condition, Libri-light slicing. "
          "Error rates in %; DUET replays Libri-light's `random` sampling calls, so both score the same "
          "triplets and the differences are float rounding only (goal: <= 0.2 absolute).\n")
    print("| case | Libri-light within | DUET within | Libri-light across | DUET across | max abs diff | "
          "Libri-light wall s | DUET wall s | speed-up (wall) | Libri-light CPU s | DUET CPU s | speed-up (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['ll_within']:.4f} | {r['duet_within']:.4f} | {r['ll_across']:.4f} | "
              f"{r['duet_across']:.4f} | {max(r['diff_within'], r['diff_across']):.1e} | {r['t_librilight_s']:.1f} | "
              f"{r['t_duet_s']:.1f} | x{r['speedup']:.1f} | {r.get('cpu_librilight_s', float('nan')):.1f} | "
              f"{r.get('cpu_duet_s', float('nan')):.1f} | x{r.get('cpu_speedup', float('nan')):.1f} |")
    print(f"\nfastabx: {a.fastabx}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
