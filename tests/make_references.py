"""Regenerate tests/references/<name>.json: reference outputs of every DUET expert built from a
seeded tiny random model (like s3prl's own upstream tests, which compare against stored hidden
states). Run after an intended change of model code, and say so in the commit:

    PYTHONPATH=. python tests/make_references.py            # all experts
    PYTHONPATH=. python tests/make_references.py jooci      # one
    PYTHONPATH=. python tests/make_references.py --bundled  # the bundled checkpoints (bundled_*.json)

The bundled references pin the outputs of checkpoints/*: rerun `--bundled` only when those
checkpoints are replaced (not after a model-code change, which they must survive).

Stored per key: the shape of every layer, each layer's mean and std, and a small slice
(utterance 1, first 3 frames, first 4 dims) of the first and the last layer. < 10 KB per expert.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REF_DIR = HERE / "references"
MODEL_CONFIG = {"random_init": "tiny", "seed": 0}
LENGTHS = (16000, 11000)


def reference_input() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    return [0.1 * torch.randn(n, generator=g) for n in LENGTHS]


def summarize(feats: dict) -> dict:
    out = {}
    for key in sorted(feats):
        layers = feats[key]
        out[key] = {
            "shapes": [list(t.shape) for t in layers],
            "mean": [float(t.mean()) for t in layers],
            "std": [float(t.std()) for t in layers],
            "slice_first": layers[0][1, :3, :4].tolist(),
            "slice_last": layers[-1][1, :3, :4].tolist(),
        }
    return out


def compute(name: str, model_config: dict | None = None, bundled: bool = False) -> dict:
    """`bundled=True`: the expert with no -k/-g, i.e. the bundled checkpoint in checkpoints/."""
    import harness.s3prl.compat
    harness.s3prl.compat.install()
    from upstream.hub import UPSTREAMS

    torch.set_num_threads(1)
    model_config = {} if bundled else dict(model_config or MODEL_CONFIG)
    up = (UPSTREAMS[name]() if bundled else UPSTREAMS[name](model_config=model_config)).eval()
    with torch.no_grad():
        feats = up(reference_input())
    return {"name": name, "model_config": model_config, "lengths": list(LENGTHS),
            "rates": {k: up.get_downsample_rates(k) for k in sorted(feats)},
            "keys": summarize(feats)}


def main(argv: list[str]) -> int:
    from upstream.hub import UPSTREAMS
    bundled = "--bundled" in argv
    names = [a for a in argv if a != "--bundled"] or list(UPSTREAMS)
    REF_DIR.mkdir(exist_ok=True)
    for name in names:
        ref = compute(name, bundled=bundled)
        path = REF_DIR / f"{'bundled_' if bundled else ''}{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(ref, indent=1) + "\n")
        tmp.replace(path)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
