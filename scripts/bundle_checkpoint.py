"""Bundle a finished run: copy runs/<recipe>/final into checkpoints/<recipe> (weights, config, loss curve, card) and
append the training-budget notes to the card. Usage: PYTHONPATH=. python scripts/bundle_checkpoint.py hubert-compact ..."""
import shutil, sys
from pathlib import Path
from upstream.checkpoint import load_checkpoint, checkpoint_hash

NOTE = """## Training budget (read this before using the numbers)

Trained on **CPU only**: the project's shared 2-core machine (no GPU was lent to this task), at
`nice -n 5` with `OMP_NUM_THREADS=2`, while seven other engineers' jobs ran (load average 9–20), so
this process got roughly 10–25 % of one core. That allowed only a *smoke-scale* run: {steps} optimiser
steps of {batch} crops x {crop:g} s on a {utts}-utterance subset of the `small` corpus's
`LibriSpeech/train-clean-100` (SID dev/test utterances excluded). The weights are a real
output of the recipe, but far from converged: treat them as a working default for the pipeline, not
as a trained representation. A later issue can retrain with the same command and larger
`*.steps` on a GPU (`harness pretrain --recipe {recipe} ...`, the full config is in `config.json`).

## Downstream numbers

SID / PR of each stream from `run_downstream.py` on the small corpus's test split: **missing** —
there was no CPU time left to run them after training. Measure with
`harness run --tasks sid,pr --upstreams {model} --ckpt {model}=checkpoints/{recipe} --features content,other`.
"""

EXTRA = {
    "hubert-compact": "Schedule note: iter1 was started with a 25-step budget, stopped at its step-5 checkpoint and resumed "
                      "with the 10-step budget recorded in `config.json` (steps 1–5 used the 25-step learning-rate schedule).",
    "barlow-twins-compact": "Schedule note: started with a 30-step budget, stopped at its step-5 checkpoint and resumed with "
                            "the 10-step budget recorded in `config.json` (steps 1–5 used the 30-step learning-rate schedule).",
    "learn2diss-compact": "Backbone note: `runs/hubert-compact/final` is the bundled `checkpoints/hubert-compact` "
                          "(weights sha256 prefix 93bb7a1e7649, also recorded in `config.json` → provenance.backbone).",
    "jooci-compact": "Initialisation note: `runs/hubert-compact/final` is the bundled `checkpoints/hubert-compact` "
                     "(weights sha256 prefix 93bb7a1e7649, also in `config.json` → provenance.init). Teacher embeddings: "
                     "resemblyzer's pretrained GE2E on the whole clean utterance.",
}


def main(recipe: str):
    src = Path("runs") / recipe / "final"
    dst = Path("checkpoints") / recipe
    model, meta = load_checkpoint(src)
    prov = meta["provenance"]
    rc = prov["recipe_config"]
    steps = " + ".join(f"{k} {v}" for k, v in prov["steps"].items())
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "config.json", "loss_curve.png"):
        shutil.copy2(src / f, dst / f)
    (dst / "model.safetensors").chmod(0o644)
    card = (src / "MODEL_CARD.md").read_text()
    card += "\n" + NOTE.format(steps=steps, batch=rc["data"]["batch_size"], crop=rc["data"]["crop_s"],
                               utts=rc["data"]["max_utts"] or "full", recipe=recipe, model=meta["model"])
    if recipe in EXTRA:
        card += "\n" + EXTRA[recipe] + "\n"
    (dst / "MODEL_CARD.md").write_text(card)
    sz = (dst / "model.safetensors").stat().st_size
    png = (dst / "loss_curve.png").stat().st_size
    assert sz <= 12_000_000, sz
    assert png < 100_000, png
    load_checkpoint(dst)
    print(recipe, meta["model"], f"{sz/1e6:.2f} MB", f"png {png/1e3:.0f} KB", checkpoint_hash(dst))

if __name__ == "__main__":
    for r in sys.argv[1:]:
        main(r)
