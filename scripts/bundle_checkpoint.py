"""Bundle a finished run into checkpoints/<recipe> and write its model card.

    PYTHONPATH=. python scripts/bundle_checkpoint.py RECIPE [RECIPE ...] [--results results/superb_small_main.csv]
        [--scorecard results/scorecard_small.csv] [--budget-note TEXT]

Copies runs/<recipe>/final (weights, config, loss curve, the trainer's card) into checkpoints/<recipe>,
then appends to the card: the training budget (from the checkpoint's provenance) and, when the results
CSV has rows for this checkpoint's weights hash, the SID / ER / ASR (/ PR) numbers of each stream with
chance levels and the fbank / fbank_no_cmvn rows of the same run (written by `harness run`), and, when
the scorecard CSV has them, the validity scorecard of its streams beside its random-init twin and
fbank_no_cmvn (written by `harness scorecard`). Re-running with only --results/--scorecard refreshes
the numbers of an already bundled checkpoint (the weights are not copied again when identical).
"""
from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from upstream.checkpoint import checkpoint_hash, load_checkpoint
from upstream.facts import RESULTS_DIR

METRICS = {"sid": ("acc", "↑", "SID accuracy %"), "er": ("acc", "↑", "ER accuracy % (mean of the folds run)"),
           "asr": ("wer", "↓", "ASR word error rate % (CER beside it)"), "pr": ("per", "↓", "PR phone error rate %")}
REFERENCES = ("fbank", "fbank_no_cmvn")     # s3prl baselines shown under the streams, from the same CSV


def budget(meta: dict, note: str) -> str:
    prov = meta["provenance"]
    rc = prov["recipe_config"]
    steps = " + ".join(f"{k} {v}" for k, v in prov["steps"].items())
    utts = rc["data"]["max_utts"] or "all"
    other = rc["data"].get("exclude_speakers_of")
    excluded = f"; no speaker of `{other}`" if other else ""
    gpu = any(w in str(prov.get("machine", "")).lower() for w in ("cuda", "gpu", "nvidia", "h100", "h200"))
    return (f"## Training budget\n\n"
            f"Trained on **{'GPU' if gpu else 'CPU'}** ({prov['machine']}): {steps} optimiser steps of "
            f"{rc['data']['batch_size']} crops x {rc['data']['crop_s']:g} s from {utts} training utterances of the "
            f"`{(prov.get('corpus') or {}).get('size', 'small')}` corpus's `LibriSpeech/train-clean-100` (SID dev/test "
            f"utterances excluded{excluded}), "
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


def metric_cells(rows: list[dict], tasks: list[str]) -> list[str]:
    """One table cell per task: the last row's value in percent with its chance level (and CER for ASR)."""
    cells = []
    for t in tasks:
        r = [x for x in rows if x["task"] == t]
        if not r:
            cells.append("—")
            continue
        x = r[-1]
        v = float(x["value"]) * (100.0 if x.get("unit") != "%" else 1.0)
        cer = f", CER {float(x['cer']):.1f}" if x.get("cer") not in (None, "") else ""
        ch = f" (chance {float(x['chance']):.1f})" if x.get("chance") not in (None, "") else ""
        cells.append(f"{v:.1f}{cer}{ch}" + ("" if str(x.get("learned")) != "False" else " **not learned**"))
    return cells


def downstream(results: Path, sha: str, model: str, recipe: str) -> str:
    rows = read_rows(results, lambda r: sha.startswith(r["ckpt_hash"]))
    if not rows:
        from harness.superb.upstreams import UPSTREAMS
        feats = ",".join(UPSTREAMS[model].default_features)
        return ("## Downstream numbers\n\nNot measured yet for these weights. Measure with\n"
                f"`harness run --tasks sid,er,asr --upstreams {model} --ckpt {model}=checkpoints/{recipe} "
                f"--features {feats}` and re-run this script with `--results`.\n")
    tasks = [t for t in METRICS if any(r["task"] == t for r in rows)]
    feats = sorted({r["feature"] for r in rows})
    out = ["## Downstream numbers (SUPERB mini tasks)", "",
           f"s3prl's downstreams (mini configs, {', '.join(tasks)}) on the frozen stream, weighted sum of all its "
           "layers, trained on the `small` corpus's train split, dev-best checkpoint scored on its **test** "
           "split; SID/ER on the exact fast path. One seed; a single run per cell. All numbers in percent.", "",
           "| stream | " + " | ".join(f"{t} {METRICS[t][0]} % {METRICS[t][1]}" for t in tasks) + " |",
           "|---|" + "---|" * len(tasks)]
    for ft in feats:
        out.append(f"| {ft} | " + " | ".join(metric_cells([r for r in rows if r["feature"] == ft], tasks)) + " |")
    for ref in REFERENCES:
        fb = read_rows(results, lambda r, ref=ref: r["upstream"] == ref)
        if fb:
            out.append(f"| *reference: s3prl {ref}* | " + " | ".join(metric_cells(fb, tasks)) + " |")
    r0 = rows[-1]
    out += ["", f"Produced by `{r0['harness_command']}` at commit `{r0['git_commit']}` on {r0['machine']} "
            f"({r0['finished_utc']}); rows in `{results.as_posix()}` (weights hash `{r0['ckpt_hash']}`). "
            "s3prl's `fbank` applies per-utterance CMVN, so its SID/ER sit at chance by construction (the negative "
            "control); `fbank_no_cmvn` is the positive control (results/calibration.md).", ""]
    return "\n".join(out)


def scorecard(path: Path, sha: str) -> str:
    """The card's scorecard section: this checkpoint's streams, its random-init twin and fbank_no_cmvn at
    the same rate, each metric at its best layer (analysis.scorecard.summarize), from ``path``."""
    from analysis.scorecard import METRICS as SC, TITLES, summarize

    if not path.is_file():
        return ""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    tag = f"@{sha[:8]}]"
    mine = [r for r in rows if r["model"].endswith(tag)]
    if not mine:
        return ""
    rates = {float(r["rate_hz"]) for r in mine if r["role"] == "model"}
    base = [r for r in rows if r["role"] == "baseline" and r["upstream"] == "fbank_no_cmvn"
            and float(r["rate_hz"]) in rates]
    summ = summarize(mine + base)
    out = ["## Validity scorecard (unseen voices)", "",
           f"`harness scorecard` on the corpus's unseen-voices set (`{path.as_posix()}`; phone probe "
           "speaker-disjoint, ABX Libri-light protocol, speaker probe on mean+std pooled utterances; each "
           "column at its best layer, in brackets).", "",
           "| model | stream | " + " | ".join(TITLES[m] for m in SC) + " |", "|---|---|" + "---|" * len(SC)]
    for (model, stream), best in sorted(summ.items(), key=lambda kv: ("twin" in kv[0][0], "{" in kv[0][0], kv[0])):
        cells = [("n/a" if b.layer is None else f"{b.value:.3f} (L{b.layer}){'*' if b.warnings else ''}")
                 for b in (best[m] for m in SC)]
        out.append(f"| {model} | {stream} | " + " | ".join(cells) + " |")
    warned = sorted({f"{model} {stream} {m}: {b.warnings}" for (model, stream), best in summ.items()
                     for m, b in best.items() if b.layer is not None and b.warnings})
    if warned:
        out += ["", "\\* small-sample warning (analysis/samples.py), not a measurement to read: "
                + "; ".join(warned) + "."]
    if any(b.layer is None for best in summ.values() for b in best.values()):
        out += ["", "n/a: no layer has a comparable value (ABX: fewer than half the items span a frame of the "
                "stream; analysis/samples.py, abx_coverage_too_low)."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="+")
    p.add_argument("--results", type=Path, default=Path(RESULTS_DIR) / "superb_small_main.csv")
    p.add_argument("--scorecard", type=Path, default=Path(RESULTS_DIR) / "scorecard_small.csv")
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
        old_budget = "## Training budget" + rest.split("\n## Downstream numbers")[0].split("\n## Validity")[0] \
            if rest else ""
        keep = old_budget and not a.budget_note and not copied
        card = base.rstrip() + "\n\n" + (old_budget.rstrip() + "\n" if keep else budget(meta, a.budget_note)) + "\n" + \
            downstream(a.results, checkpoint_hash(dst), meta["model"], recipe) + "\n" + \
            scorecard(a.scorecard, checkpoint_hash(dst))
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
