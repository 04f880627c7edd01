"""DUET's ABX (``slicing="fastabx"``) vs fastabx on identical .npy features and items.

fastabx needs Python >= 3.12 (not DUET's 3.11), so it runs in its own venv as a subprocess:
    python3.12 -m venv /tmp/fastabx-venv && /tmp/fastabx-venv/bin/pip install fastabx
    python -m bench.abx_fastabx --python /tmp/fastabx-venv/bin/python --features DIR --item FILE --rate 100
(the feature dirs are the ones `python -m bench.abx_reference --out DIR` writes: DIR/npy-fbank, ...).
fastabx samples its own subsets (its own RNG), so agreement is up to subsampling noise; with
``--max-size-group 1000 --max-x-across 1000`` nothing is subsampled and the two must agree to float
rounding.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from analysis.abx import ABXConfig, abx_scores, build_plan, read_item_file, slice_items

RUNNER = r'''
import inspect, json, sys, time
import numpy as np, torch
from fastabx import zerospeech_abx
item, feats, rate, msg, mxa = sys.argv[1], sys.argv[2], int(float(sys.argv[3])), int(sys.argv[4]), int(sys.argv[5])
params = inspect.signature(zerospeech_abx).parameters
out = {}
t0 = time.perf_counter()
for speaker in ("within", "across"):
    kw = dict(speaker=speaker, context="within", frequency=rate, max_size_group=msg, max_x_across=mxa)
    if "feature_maker" in params:
        kw["feature_maker"] = lambda p: torch.from_numpy(np.load(p))
    if "extension" in params:
        kw["extension"] = ".npy"
    if "distance" in params:
        kw["distance"] = "angular"
    out[speaker] = 100 * float(zerospeech_abx(item, feats, **kw))
out["seconds"] = time.perf_counter() - t0
print(json.dumps(out))
'''


def ours(item: Path, feat_dir: Path, rate: float, msg: int, mxa: int) -> dict:
    t0 = time.perf_counter()
    table = read_item_file(item)
    feats, kept = slice_items(table, lambda f: np.load(feat_dir / f"{f}.npy"), rate, "fastabx")
    t = table.subset(kept)
    cfg = ABXConfig(max_size_group=msg, max_x_across=mxa)
    s = abx_scores(feats, build_plan(t.phone, t.context, t.speaker, cfg), cfg)
    return {"within": s.within, "across": s.across, "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", required=True, help="python of a venv with fastabx installed")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--item", type=Path, required=True)
    p.add_argument("--rate", type=float, required=True, help="frames per second")
    p.add_argument("--max-size-group", type=int, default=10)
    p.add_argument("--max-x-across", type=int, default=5)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    proc = subprocess.run([a.python, "-c", RUNNER, str(a.item), str(a.features), str(a.rate),
                           str(a.max_size_group), str(a.max_x_across)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fastabx failed:\n{proc.stderr[-3000:]}")
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    mine = ours(a.item, a.features, a.rate, a.max_size_group, a.max_x_across)
    row = {"features": str(a.features), "max_size_group": a.max_size_group, "max_x_across": a.max_x_across,
           "fastabx_within": ref["within"], "duet_within": mine["within"], "fastabx_across": ref["across"],
           "duet_across": mine["across"], "fastabx_s": ref["seconds"], "fastabx_process_s": wall,
           "duet_s": mine["seconds"]}
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
