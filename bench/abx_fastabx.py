"""DUET's ABX (``slicing="fastabx"``) vs fastabx on identical .npy features and items.

fastabx needs Python >= 3.12 (not DUET's 3.11), so it runs in its own venv as a subprocess:
    python3.12 -m venv /tmp/fastabx-venv && /tmp/fastabx-venv/bin/pip install fastabx
    python -m bench.abx_fastabx --python /tmp/fastabx-venv/bin/python --features DIR --item FILE --rate 100
(the feature dirs are the ones `python -m bench.abx_reference --out DIR` writes: DIR/npy-fbank, ...;
`python -m bench.abx_reference --fastabx-python PATH` runs this side by side with Libri-light).
fastabx samples its own subsets (its own RNG), so agreement is up to subsampling noise; with
``--max-size-group 1000 --max-x-across 1000`` nothing is subsampled and the two must agree to float
rounding.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from bench.abx_reference import Case

# Runs inside the fastabx venv. Times only the two scoring calls (one per speaker condition; each call
# reads the item file and the features itself, as DUET's single call does), torch single-threaded.
RUNNER = r'''
import inspect, json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from fastabx import zerospeech_abx
item, feats, rate, msg, mxa = sys.argv[1], sys.argv[2], int(float(sys.argv[3])), int(sys.argv[4]), int(sys.argv[5])
params = inspect.signature(zerospeech_abx).parameters
out = {}
t0, c0 = time.perf_counter(), time.process_time()
for speaker in ("within", "across"):
    kw = dict(speaker=speaker, context="within", frequency=rate, max_size_group=msg, max_x_across=mxa)
    if "feature_maker" in params:
        kw["feature_maker"] = lambda p: torch.from_numpy(np.load(p))
    if "extension" in params:
        kw["extension"] = ".npy"
    if "distance" in params:
        kw["distance"] = "angular"
    if "progress" in params:
        kw["progress"] = False
    if "device" in params:
        kw["device"] = "cpu"
    out[speaker] = 100 * float(zerospeech_abx(item, feats, **kw))
out["cpu_s"] = time.process_time() - c0
out["wall_s"] = time.perf_counter() - t0
print(json.dumps(out))
'''


def run_fastabx(python: str, case: Case) -> dict:
    """fastabx's within/across error (%) on a case, in a subprocess of ``python``: {"within", "across",
    "cpu_s" and "wall_s" of its two scoring calls (measured inside the subprocess), "process_wall_s"}."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", RUNNER, str(case.item_file), str(case.feat_dir), str(case.rate),
                           str(case.max_size_group), str(case.max_x_across)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fastabx ({python}) failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", required=True, help="python of a venv with fastabx installed")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--item", type=Path, required=True)
    p.add_argument("--rate", type=float, required=True, help="frames per second")
    p.add_argument("--max-size-group", type=int, default=10)
    p.add_argument("--max-x-across", type=int, default=5)
    a = p.parse_args(argv)
    case = Case(str(a.features), a.features, a.item, a.rate, a.max_size_group, a.max_x_across)
    ref = run_fastabx(a.python, case)
    t0, c0 = time.perf_counter(), time.process_time()
    mine = case.ours(slicing="fastabx")
    row = {"features": str(a.features), "max_size_group": a.max_size_group, "max_x_across": a.max_x_across,
           "fastabx_within": ref["within"], "duet_within": mine.within, "fastabx_across": ref["across"],
           "duet_across": mine.across, "fastabx_cpu_s": ref["cpu_s"], "fastabx_wall_s": ref["wall_s"],
           "fastabx_process_wall_s": ref["process_wall_s"], "duet_cpu_s": time.process_time() - c0,
           "duet_wall_s": time.perf_counter() - t0}
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
