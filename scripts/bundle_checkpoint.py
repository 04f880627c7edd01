"""Bundle a finished run into checkpoints/<recipe> and write its model card.

    PYTHONPATH=. python scripts/bundle_checkpoint.py RECIPE [RECIPE ...] [--results results/models_small.csv]
        [--budget-note TEXT]

Copies runs/<recipe>/final (weights, config, loss curve, the trainer's card) into checkpoints/<recipe>,
then appends to the card: the training budget (from the checkpoint's provenance) and, when the results
CSV has rows for this checkpoint's weights hash, the SID / PR numbers of each stream (written by
`harness run`, which runs s3prl's run_downstream.py). Re-running with only --results refreshes the
numbers of an already bundled checkpoint (the weights are not copied again when they are identical).
"""
from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from upstream.checkpoint import checkpoint_hash, load_checkpoint

METRICS = {"sid": ("acc", "↑", "SID accuracy (100 speakers, chance 0.01)"),
           "pr": ("per", "↓", "PR phone error rate")}


def budget(meta: dict, note: str) -> str:
    prov = meta["provenance"]
    rc = prov["recipe_config"]
    steps = " + ".join(f"{k} {v}" for k, v in prov["steps"].items())
    utts = rc["data"]["max_utts"] or "all"
    return (f"## Training budget\n\n"
            f"Trained on **CPU** ({prov['machine']}; no GPU was lent to this task): {steps} optimiser steps of "
            f"{rc['data']['batch_size']} crops x {rc['data']['crop_s']:g} s from {utts} training utterances of the "
            f"`small` corpus's `LibriSpeech/train-clean-100` (SID dev/test utterances excluded), "
            f"{prov['wall_s'] / 60:.1f} min of training. {note}\n"
            f"This is a compact model trained for minutes, not a published-scale model: compare streams and "
            f"methods with each other on this corpus, not with published SUPERB numbers. Retrain with "
            f"`scripts/train_bundled_checkpoints.sh` (more `*.steps`) or on a GPU with `harness pretrain`.\n")


def read_rows(path: Path, keep) -> list[dict]:
    """Rows of a `harness run` results CSV for the tasks in METRICS that ``keep(row)`` accepts."""
    if not path.is_file():
        return []
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r["task"] in METRICS and keep(r)]


def metric_cells(rows: list[dict]) -> list[str]:
    """One table cell per METRICS task: the last row's value, or a dash."""
    cells = []
    for t in METRICS:
        r = [x for x in rows if x["task"] == t]
        cells.append(f"{float(r[-1]['value']):.4f}" if r else "—")
    return cells


def downstream(results: Path, sha: str, model: str, recipe: str) -> str:
    rows = read_rows(results, lambda r: sha.startswith(r["ckpt_hash"]))
    if not rows:
        from harness.superb.upstreams import UPSTREAMS
        feats = ",".join(UPSTREAMS[model].default_features)
        return ("## Downstream numbers\n\nNot measured yet for these weights. Measure with\n"
                f"`harness run --tasks sid,pr --upstreams {model} --ckpt {model}=checkpoints/{recipe} "
                f"--features {feats} --name models_small` and re-run this script with `--results`.\n")
    feats = sorted({r["feature"] for r in rows})
    out = ["## Downstream numbers", "",
           f"s3prl's `run_downstream.py` (mini configs, {', '.join(sorted({r['task'] for r in rows}))}) on the frozen "
           "stream, weighted sum of all its layers, trained on the `small` corpus's train split, dev-best "
           "checkpoint scored on its **test** split. One seed (1337); a single run per cell.", "",
           "| stream | " + " | ".join(f"{t} {METRICS[t][0]} {METRICS[t][1]}" for t in METRICS) + " |",
           "|---|" + "---|" * len(METRICS)]
    for ft in feats:
        out.append(f"| {ft} | " + " | ".join(metric_cells([r for r in rows if r["feature"] == ft])) + " |")
    ref = Path("results/superb_small.csv")
    fb = read_rows(ref, lambda r: r["upstream"] == "fbank")
    if fb:
        out.append("| *reference: s3prl fbank* | " + " | ".join(metric_cells(fb)) + " |")
        out += ["", f"The fbank row is from `{ref.as_posix()}` (same corpus and mini configs, commit "
                f"`{fb[-1]['git_commit']}`); its SID is at chance because s3prl's fbank applies per-utterance CMVN."]
    r0 = rows[-1]
    out += ["", f"Produced by `{r0['harness_command']}` at commit `{r0['git_commit']}` on {r0['machine']} "
            f"({r0['finished_utc']}); rows in `{results.as_posix()}` (weights hash `{r0['ckpt_hash']}`). "
            f"{', '.join(f'{t}: {d}' for t, (_, _, d) in METRICS.items())}.", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="+")
    p.add_argument("--results", type=Path, default=Path("results/models_small.csv"))
    p.add_argument("--budget-note", default="", help="extra sentence for the budget section (e.g. how jobs shared "
                   "cores); without it, an existing card keeps its budget section")
    p.add_argument("--extra", action="append", default=[], metavar="RECIPE=TEXT", help="a note appended to one card")
    a = p.parse_args(argv)
    extra = dict(e.split("=", 1) for e in a.extra)
    for recipe in a.recipes:
        src, dst = Path("runs") / recipe / "final", Path("checkpoints") / recipe
        copied = src.is_dir() and (not dst.is_dir() or checkpoint_hash(src) != checkpoint_hash(dst))
        if copied:
            dst.mkdir(parents=True, exist_ok=True)
            for f in ("model.safetensors", "config.json", "loss_curve.png", "MODEL_CARD.md"):
                shutil.copy2(src / f, dst / f)
            (dst / "model.safetensors").chmod(0o644)
        _, meta = load_checkpoint(dst)
        text = (dst / "MODEL_CARD.md").read_text()
        base, _, rest = text.partition("\n## Training budget")                   # base: the trainer's part
        old_budget = "## Training budget" + rest.split("\n## Downstream numbers")[0] if rest else ""
        keep = old_budget and not a.budget_note and not copied
        card = base.rstrip() + "\n\n" + (old_budget.rstrip() + "\n" if keep else budget(meta, a.budget_note)) + "\n" + \
            downstream(a.results, checkpoint_hash(dst), meta["model"], recipe)
        if recipe in extra:
            card += "\n" + extra[recipe] + "\n"
        (dst / "MODEL_CARD.md").write_text(card)
        sz, png = (dst / "model.safetensors").stat().st_size, (dst / "loss_curve.png").stat().st_size
        if sz > 30_000_000 or png > 200_000:
            raise SystemExit(f"{dst}: weights {sz / 1e6:.1f} MB / curve {png / 1e3:.0f} KB — too large to commit")
        print(recipe, meta["model"], f"{sz / 1e6:.2f} MB", checkpoint_hash(dst)[:12])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
