"""`harness report`: every cell with its chance level and whether it learned, leaderboards, the task x
stream matrix and plots (PNG + PDF), from `harness run` results. All metrics in percent. Rows from
`--steps`-capped runs, from `--folds` subsets and from mini configs are marked as not comparable with
SUPERB (footnotes say why). Cells of a checkpoint whose files have changed since they ran (a model
re-bundled while the results file lived on) are listed as stale and named upstream@hash;
--current-checkpoints leaves them out. The report's first line is a marker; a file without it
(hand-written) is never overwritten (exit 2).

Examples:
  harness report results/superb_small.csv                 # -> results/superb_small.md + results/superb_small/plots/
  harness report results/superb_small --out /tmp/r.md --plots /tmp/plots
  harness report results/superb_small.csv --current-checkpoints   # without the cells of re-bundled checkpoints
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("results", help="a results CSV (RESULTS/NAME.csv) or a run dir (RESULTS/NAME)")
    p.add_argument("--out", default=None, help="Markdown file to write (default: next to the CSV, NAME.md)")
    p.add_argument("--plots", default=None, help="PNG dir (default: RESULTS/NAME/plots)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--title", default=None)
    p.add_argument("--note", action="append", default=None, metavar="TEXT",
                   help="a paragraph to add under the provenance (repeatable), e.g. what the checkpoints are")
    p.add_argument("--current-checkpoints", action="store_true",
                   help="leave out the cells of checkpoints whose files have changed since the cell ran (a model "
                        "re-bundled while the results file lived on); the report says which and how many. Without "
                        "it they stay in, named upstream@hash, and the report lists them as stale")


def run(args: argparse.Namespace) -> int:
    from harness.superb.report import REPORT_MARKER, checkpoint_notes, render, written_by_report
    from harness.superb.results import load_results
    from harness.superb.stale import checkpoint_states, drop_changed
    from upstream.facts import atomic_write_text

    src = Path(args.results)
    try:
        df = load_results(src)
    except (FileNotFoundError, ValueError) as e:
        print(f"harness report: error: {e}", file=sys.stderr)
        return 2
    need = {"task", "upstream", "feature", "layers", "metric", "value", "higher_is_better"}
    missing = need - set(df.columns)
    if missing:
        print(f"harness report: error: {src} lacks columns {sorted(missing)}; is it a `harness run` results file?",
              file=sys.stderr)
        return 2
    if not len(df):
        print(f"harness report: error: {src} has no rows", file=sys.stderr)
        return 2
    base = src.with_suffix("") if src.suffix == ".csv" else src
    out = Path(args.out) if args.out else base.with_suffix(".md") if src.suffix == ".csv" else base.parent / f"{base.name}.md"
    plots = None if args.no_plots else Path(args.plots) if args.plots else base / "plots"
    if not written_by_report(out):
        print(f"harness report: error: {out} exists and was not written by `harness report` (its first line is not "
              f"the marker {REPORT_MARKER!r}); refusing to overwrite a hand-written file. Pass --out OTHER.md, "
              f"or move {out} away if it may be replaced", file=sys.stderr)
        return 2
    states = checkpoint_states(df)
    dropped = []
    if args.current_checkpoints:
        df, dropped = drop_changed(df, states)
        if not len(df):
            print(f"harness report: error: every row of {src} is of a checkpoint that has changed since; "
                  f"re-run them with `harness run`, or report without --current-checkpoints", file=sys.stderr)
            return 2
    stale = checkpoint_notes(states, dropped)
    for line in stale:
        print(f"harness report: {line}", file=sys.stderr)
    md = render(df, args.title or f"DUET SUPERB results: {base.name}", plots, out.parent,
                notes=stale + (args.note or []))
    atomic_write_text(out, md)
    print(md)
    print(f"\nwrote {out}" + (f" and plots in {plots}" if plots else ""), file=sys.stderr)
    return 0
