"""How much of the scorecard's linear phone probe is the stream's width: fixed random ReLU features of
+-4 log-mel frames (80 bins, averaged to 50 Hz, standardised), at several widths, on the corpus's
unseen voices with the scorecard's own speaker-disjoint probe. No training: every number is what a
linear probe reads from a random expansion of the input, to put a D-wide stream's number beside.

    PYTHONPATH=. python scripts/random_feature_probe.py [--corpus corpora/small] [--widths 192,384,768,3000]

Measured 2026-12-03 (small corpus, 2-core VM, 4 min): the 80 log-mel bins alone 0.508; random
features of 192 dims 0.482, 384 0.558, 768 0.630, 3000 0.702 (the scorecard's fbank_no_cmvn at 50 Hz,
240 dims: 0.566; chance 0.073).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from analysis.scorecard import ScorecardConfig, phone_probe
from harness.cli.scorecard import load_eval_set
from upstream.nn.logmel_frontend import LogMelFrontEnd

RATE = 50          # the compact models' frame rate


def context(x: np.ndarray, k: int) -> np.ndarray:
    pad = np.pad(x, ((k, k), (0, 0)), mode="edge")
    return np.concatenate([pad[i:i + len(x)] for i in range(2 * k + 1)], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="corpora/small")
    p.add_argument("--widths", default="192,384,768,3000")
    p.add_argument("--context", type=int, default=4, help="frames either side")
    args = p.parse_args()
    torch.set_num_threads(1)
    data, wavs, _ = load_eval_set(Path(args.corpus))
    fe = LogMelFrontEnd(out_dim=8)
    mel = {}
    for u, path in wavs.items():
        w = torch.from_numpy(sf.read(path, dtype="float32")[0])[None]
        with torch.no_grad():
            lm, n = fe.log_mel(w, torch.tensor([w.shape[1]]))       # (1, T, 2 x 80) stacked pairs, 50 Hz
        x = lm[0, :int(n[0])].numpy()
        mel[u] = x.reshape(len(x), 2, -1).mean(1)
    ctx = {u: context(x, args.context) for u, x in mel.items()}
    allx = np.concatenate(list(ctx.values()))
    mu, sd = allx.mean(0), allx.std(0) + 1e-5
    rng = np.random.default_rng(0)
    widths = [int(w) for w in args.widths.split(",")]
    proj = rng.standard_normal((allx.shape[1], max(widths))).astype(np.float32) / np.sqrt(allx.shape[1])
    cfg = ScorecardConfig()
    print(f"log-mel (80 dims): {phone_probe(lambda u: mel[u], RATE, data, cfg).accuracy:.3f}")
    for d in widths:
        acc = phone_probe(lambda u: np.maximum(((ctx[u] - mu) / sd) @ proj[:, :d], 0), RATE, data, cfg).accuracy
        print(f"random ReLU features, {d} dims: {acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
