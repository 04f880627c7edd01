"""Markdown tables for results/abx_reference_check.md from the JSON rows of `python -m bench.abx_reference --json`.

    python -m bench.abx_reference --corpus corpora/small --fastabx-python PY --uncapped --repeat 5 --json rows.json
    python -m bench.abx_reference_report rows.json          # prints the tables; the prose around them is written by hand
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _runs(v: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in v)


def tables(rows: list[dict]) -> str:
    capped = [r for r in rows if "ll_within" in r]
    uncapped = [r for r in rows if "ll_within" not in r and "fx_within" in r]
    out = ["### Libri-light vs DUET (Libri-light slicing, its sampling replayed)\n",
           "| case | Libri-light within | DUET within | Libri-light across | DUET across | max abs diff | "
           "Libri-light CPU s | DUET CPU s | speed-up (CPU) | speed-up (wall) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in capped:
        out.append(f"| {r['case']} | {r['ll_within']:.4f} | {r['duet_within']:.4f} | {r['ll_across']:.4f} | "
                   f"{r['duet_across']:.4f} | {max(r['diff_within'], r['diff_across']):.1e} | {r['cpu_librilight_s']:.2f} | "
                   f"{r['cpu_duet_s']:.2f} | **x{r['cpu_speedup']:.1f}** | x{r['speedup']:.1f} |")
    fx = [r for r in capped if "fx_within" in r]
    if fx:
        out += ["\n### fastabx vs DUET (fastabx slicing, caps 10 / 5, each its own sampling)\n",
                "| case | fastabx within | DUET within | fastabx across (last run; all runs) | DUET across | max abs diff "
                "(last run) | fastabx CPU s (2 scoring calls) | DUET CPU s (1 call) | speed-up (CPU) | fastabx process wall s |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in fx:
            alls = "; ".join(f"{v:.3f}" for v in r.get("fx_across_all", []))
            out.append(f"| {r['case']} | {r['fx_within']:.4f} | {r['duet_fx_within']:.4f} | {r['fx_across']:.4f} ({alls}) | "
                       f"{r['duet_fx_across']:.4f} | {max(r['diff_fx_within'], r['diff_fx_across']):.3f} | "
                       f"{r['cpu_fastabx_s']:.2f} | {r['cpu_duet_fx_s']:.2f} | **x{r['cpu_speedup_fastabx']:.1f}** | "
                       f"{r['process_wall_fastabx_s']:.1f} |")
    if uncapped:
        out += ["\n### fastabx vs DUET with nothing subsampled (caps 1000 / 1000: the same triplets; one run each)\n",
                "| case | fastabx within | DUET within | fastabx across | DUET across | max abs diff | fastabx CPU s | "
                "DUET CPU s | speed-up (CPU) |", "|---|---|---|---|---|---|---|---|---|"]
        for r in uncapped:
            out.append(f"| {r['case']} | {r['fx_within']:.6f} | {r['duet_fx_within']:.6f} | {r['fx_across']:.6f} | "
                       f"{r['duet_fx_across']:.6f} | {max(r['diff_fx_within'], r['diff_fx_across']):.1e} | "
                       f"{r['cpu_fastabx_s']:.2f} | {r['cpu_duet_fx_s']:.2f} | x{r['cpu_speedup_fastabx']:.1f} |")
    out += ["\n### Per run (CPU s, in order; load average (1 min) before / after each case)\n",
            "| case | Libri-light | DUET | fastabx | DUET (fastabx slicing) | load before / after |", "|---|---|---|---|---|---|"]
    for r in capped:
        lb = r.get("load1_before_after", [float("nan")] * 2)
        out.append(f"| {r['case']} | {_runs(r['cpu_librilight_all'])} | {_runs(r['cpu_duet_all'])} | "
                   f"{_runs(r.get('cpu_fastabx_all', []))} | {_runs(r.get('cpu_duet_fx_all', []))} | {lb[0]:.1f} / {lb[1]:.1f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", type=Path)
    a = p.parse_args(argv)
    print(tables(json.loads(a.rows.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
