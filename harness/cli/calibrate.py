"""`harness calibrate`: do the mini SUPERB configs measure anything? Per task, a positive control (a
feature known to carry the task's information) must learn, a negative control (one that cannot carry
it) must sit at chance, and for SID/ER a linear probe on the positive control's pooled features says
how close the mini downstream gets. Controls, and why each is one: harness/superb/calibration.py.

Each control is one `harness run` cell (same validation, cache and rows; rows under
RESULTS/NAME/cells). Writes OUT (Markdown, with command, commit, machine, load) and OUT's .csv.

Examples:
  harness calibrate --corpus tiny --steps 20                      # plumbing check, minutes
  harness calibrate --tasks sid,er --corpus small                 # -> results/calibration.md
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from upstream.facts import RESULTS_DIR

MARKER = "<!-- written by `harness calibrate` (harness/cli/calibrate.py); regenerate it, do not edit by hand -->"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("--tasks", default="sid,asv,er,pr,asr", help="comma list of: sid, asv, er, pr, asr (default all)")
    p.add_argument("--corpus", default="small", help="tiny|small|medium|large or a corpus PATH (default small)")
    p.add_argument("--corpora-dir", default="corpora", help="where generated corpora live (default ./corpora)")
    p.add_argument("--steps", type=int, default=None, help="cap total_steps (default: the mini configs' own)")
    p.add_argument("--folds", type=int, default=1, help="ER folds to run (default 1: fold1, as the probe)")
    p.add_argument("--controls", default="positive,negative", help="which controls to run (default both)")
    p.add_argument("--results", default=RESULTS_DIR, help=f"results dir for the cells (default ./{RESULTS_DIR})")
    p.add_argument("--name", default=None, help="run name for the cells (default calibration_<corpus>)")
    p.add_argument("--out", default=None, help="Markdown to write (default RESULTS/calibration.md; CSV beside it)")
    p.add_argument("--no-probe", dest="probe", action="store_false", help="skip the linear probes")
    p.add_argument("--no-run", dest="run", action="store_false",
                   help="train nothing: write the report from the cells already finished (missing ones: 'not run')")
    p.add_argument("--note", action="append", default=None, metavar="TEXT",
                   help="a paragraph to add under the table (repeatable), e.g. what was not run and why")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=1337)


def _fmt(v, nd=1) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if v != v else f"{v:.{nd}f}"


def verdict(role: str, row: dict, probe: float | None) -> str:
    learned = str(row.get("learned")).lower() in ("true", "1", "1.0")
    unknown = str(row.get("learned")).lower() in ("none", "nan", "")
    if unknown:
        return "? (no chance level)"
    if role == "negative":
        return "ok: at chance" if not learned else "FAIL: learned (should be at chance)"
    if not learned:
        return "FAIL: not above chance"
    if probe is not None:
        gap = probe - float(row["value"])
        return f"ok: learned, {gap:+.1f} points to the probe" if gap <= 10 else \
            f"under-trained: {gap:+.1f} points below the probe"
    return "ok: learned"


def targets(rows: list[dict]) -> list[str]:
    """The issue's bars for the positive controls: SID >= 80 %, ER above majority (learned), ASR CER <= 35 %."""
    pos = {r["task"]: r for r in rows if r["role"] == "positive" and r.get("value") is not None}
    out = []
    for task, what, ok in (
            ("sid", "SID accuracy >= 80 %", lambda r: float(r["value"]) >= 80.0),
            ("er", "ER accuracy above majority (interval beyond chance)",
             lambda r: str(r.get("learned")).lower() in ("true", "1", "1.0")),
            ("asr", "ASR CER <= 35 % (WER beside it)", lambda r: float(r.get("cer") or "nan") <= 35.0)):
        if task not in pos:
            out.append(f"{what}: not run")
            continue
        r = pos[task]
        got = f"CER {_fmt(r.get('cer'))} %, WER {_fmt(r['value'])} %" if task == "asr" else f"{_fmt(r['value'])} %"
        out.append(f"{what}: {'met' if ok(r) else 'NOT met'} ({got})")
    return out


def shown(c) -> str:
    """The control's upstream as the report names it (a shuffled-label control says so)."""
    return f"{c.upstream} on shuffled {c.shuffled}" if c.shuffled else c.upstream


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.cli import main as harness_main
    from harness.superb import sweep as sw
    from harness.superb.calibration import CONTROLS, probe_for
    from harness.superb.results import load_results
    from upstream.facts import atomic_write_text, git_commit, machine_here

    started, load0 = time.time(), os.getloadavg()
    try:
        tasks = sw.resolve_tasks(sw.split_list(args.tasks))
        sw.check_steps(args.steps)
        roles = sw.split_list(args.controls)
        bad = [r for r in roles if r not in ("positive", "negative")]
        if bad or not roles:
            raise sw.SweepError(f"--controls {args.controls}: choose from positive, negative")
    except sw.SweepError as e:
        print(f"harness calibrate: error: {e}", file=sys.stderr)
        return 2
    corpus_label = Path(args.corpus).name
    name = args.name or f"calibration_{corpus_label}"
    out = Path(args.out) if args.out else Path(args.results) / "calibration.md"
    if out.exists() and MARKER not in out.read_text(errors="replace").splitlines()[:3]:
        print(f"harness calibrate: error: {out} exists and was not written by `harness calibrate`; refusing to "
              f"overwrite it. Pass --out OTHER.md or move it away", file=sys.stderr)
        return 2
    common = ["--corpus", args.corpus, "--corpora-dir", args.corpora_dir, "--results", args.results, "--name", name,
              "--seed", str(args.seed)] + (["--steps", str(args.steps)] if args.steps else []) + \
        (["--device", args.device] if args.device else [])
    from harness.superb.sweep import corpus_id_of, resolve_corpus
    base = None
    plan = []
    for t in tasks:
        for role, c in zip(("positive", "negative"), CONTROLS[t]):
            if role not in roles:
                continue
            argv = ["run", "--tasks", t, "--upstreams", c.upstream, *common]
            if c.shuffled:                      # the same corpus with its training labels permuted
                from harness.corpus.layout import CorpusError
                from harness.corpus.shuffled import VIEWS
                where, make = VIEWS[c.shuffled]
                try:
                    base = base or resolve_corpus(args.corpus, Path(args.corpora_dir), make=args.run).root
                    view = where(base, Path(args.corpora_dir), args.seed)
                    if args.run:
                        view = make(base, view, args.seed)
                except (sw.SweepError, CorpusError) as e:
                    print(f"harness calibrate: error: {e}", file=sys.stderr)
                    return 2
                argv[argv.index("--corpus") + 1] = str(view)
            argv += ["--ckpt", c.ckpt] if c.ckpt else []
            argv += ["--features", c.features] if c.features else []
            argv += ["--folds", str(args.folds)] if t == "er" and args.folds else []
            plan.append((t, role, c, argv))
    codes = {}
    for t, role, c, argv in plan:
        if not args.run:
            codes[(t, role)] = None
            continue
        print(f"harness calibrate: {t} {role} control: harness {' '.join(argv)}", flush=True)
        codes[(t, role)] = harness_main(argv)
        if codes[(t, role)] in (2, 130):
            return codes[(t, role)]                    # bad arguments, or interrupted (Ctrl-C / kill): stop here
    try:
        df = load_results(Path(args.results) / name)
    except FileNotFoundError as e:
        if args.run:
            print(f"harness calibrate: error: no rows were written ({e})", file=sys.stderr)
            return 1
        df = pd.DataFrame(columns=["task", "upstream", "steps", "finished_utc"])
    data = resolve_corpus(args.corpus, Path(args.corpora_dir), make=False)
    layout = data.layout
    rows = []
    for t, role, c, argv in plan:
        corpus = Path(argv[argv.index("--corpus") + 1])
        cid = data.corpus_id if not c.shuffled else \
            (corpus_id_of(corpus) if (corpus / "corpus.json").is_file() else None)
        sub = df[(df["task"] == t) & (df["upstream"] == c.upstream)]
        if "corpus_id" in sub.columns:      # a shuffled-label control shares its upstream with the positive one
            sub = sub[sub["corpus_id"].astype(str) == str(cid)]
        if "steps" in sub.columns:
            sub = sub[sub["steps"].isna()] if args.steps is None else sub[sub["steps"] == args.steps]
        if not len(sub):
            rows.append({"task": t, "role": role, "upstream": shown(c), "ckpt": c.ckpt or "", "why": c.why,
                         "verdict": "not run" if codes[(t, role)] is None else f"no row (exit {codes[(t, role)]})"})
            continue
        r = sub.sort_values("finished_utc").iloc[-1].to_dict()
        probe = probe_mean = None
        if role == "positive" and args.probe:
            p = probe_for(t, layout, c.upstream)
            probe, probe_mean = (p["probe"], p["probe_mean"]) if p else (None, None)
        rows.append({"task": t, "role": role, "upstream": shown(c), "feature": r.get("feature"),
                     "ckpt": c.ckpt or "", "why": c.why, "metric": r.get("metric"), "value": r.get("value"),
                     "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "chance": r.get("chance"),
                     "chance_kind": r.get("chance_kind"), "n_test": r.get("n_test"), "learned": r.get("learned"),
                     "cer": r.get("cer"), "cer_learned": r.get("cer_learned"), "probe_mean": probe_mean, "probe": probe,
                     "steps": r.get("steps"), "folds_run": r.get("folds_run"), "wall_s": r.get("wall_s"),
                     "verdict": verdict(role, r, probe_mean), "cell_id": r.get("cell_id")})
    table = pd.DataFrame(rows)
    csv = out.with_suffix(".csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(csv, table.to_csv(index=False))
    load1 = os.getloadavg()
    cmd = "harness " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("harness", "__init__.py", "__main__.py")) else " ".join(sys.argv)
    lines = [MARKER, "", f"# Calibration of the mini SUPERB configs ({corpus_label})", "",
             f"- command: `{cmd}`", f"- git commit: `{git_commit()}`", f"- machine: {machine_here()}",
             f"- load average (1/5/15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
             f"at end {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}; wall time {(time.time() - started) / 60:.1f} min "
             f"(finished cells are reused, not re-run)",
             f"- steps: {'the configs own (downstream_configs/mini/)' if args.steps is None else args.steps}; "
             f"ER: fold1{'' if args.folds == 1 else f'..fold{args.folds}'}; cells in `{Path(args.results) / name}`",
             "", "All metrics in percent; interval: 95 % Wilson over the test utterances (trials for EER); "
             "*learned*: the interval lies wholly beyond chance (harness/superb/chance.py). Probes: softmax "
             "regression, train split -> test split (harness/superb/calibration.py), on the positive control's "
             "frame means (*probe (mean)*: all that s3prl's utterance downstream sees, as it is linear up to its "
             "mean pooling; the verdict compares with it) and on mean+std pooled frames (*probe (mean+std)*: "
             "beyond that downstream's reach, for context).", "",
             "| task | control | upstream | metric | value [95 % CI] | chance | learned | CER % | probe (mean) "
             "| probe (mean+std) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = f" [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]" if r.get("ci_low") is not None else ""
        lines.append(f"| {r['task']} | {r['role']}: {r.get('why', '')} | {r['upstream']}"
                     f"{' (' + r['ckpt'] + ')' if r.get('ckpt') else ''} | {r.get('metric', '–')} % | "
                     f"{_fmt(r.get('value'))}{ci} | {_fmt(r.get('chance'))} ({r.get('chance_kind', '–')}) | "
                     f"{r.get('learned', '–')} | {_fmt(r.get('cer'))} | {_fmt(r.get('probe_mean'))} | "
                     f"{_fmt(r.get('probe'))} | {r['verdict']} |")
    lines += ["", "Targets of the issue (small corpus):", ""] + [f"- {t}" for t in targets(rows)]
    for n in args.note or []:
        lines += ["", n]
    lines += ["", f"Rows as CSV: `{csv}`.", ""]
    atomic_write_text(out, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out} and {csv}", file=sys.stderr)
    failed = [k for k, v in codes.items() if v not in (0, None)]
    return 1 if failed else 0
