"""DUET's ABX vs the Libri-light ABX (PyPI `zerospeech-libriabx2`) on identical features and items.

Bench-only dependency (NOT in requirements): install it into the project venv with
    .venv/bin/pip install -c scripts/constraints.txt zerospeech-libriabx2==0.9.8
(it builds a small Cython DTW extension; measured to install cleanly on this stack).

Run by hand:
    python -m bench.abx_reference                                   # synthetic case only
    python -m bench.abx_reference --corpus DIR [--upstream fbank]   # + a corpus' abx/dev.item
Prints, per case: both implementations' within/across error (%), their absolute difference, and the
wall time of each (same process, same CPU threads) with the speed ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.abx import ABXConfig, abx_scores, build_plan, read_item_file, slice_items


@dataclass
class Case:
    name: str
    feat_dir: Path        # one <file_id>.npy (T, D) per file
    item_file: Path
    rate: float           # frames per second
    max_size_group: int = 10
    max_x_across: int = 5
    seed: int = 3459

    def file_order(self) -> list[str]:
        """The order Libri-light's loader sees the files in (os.walk)."""
        out = []
        for root, _, names in os.walk(self.feat_dir):
            out += [Path(n).stem for n in names if n.endswith(".npy")]
        return out

    def ours(self, device: str = "cpu"):
        table = read_item_file(self.item_file)
        feats, kept = slice_items(table, lambda f: np.load(self.feat_dir / f"{f}.npy", mmap_mode="r"), self.rate,
                                  "librilight", file_order=self.file_order())
        t = table.subset(kept)
        cfg = ABXConfig(max_size_group=self.max_size_group, max_x_across=self.max_x_across, seed=self.seed,
                        device=device)
        return abx_scores(feats, build_plan(t.phone, t.context, t.speaker, cfg), cfg)


def run_librilight(case: Case) -> dict:
    """Within/across error (%) from zrc_abx2 (within-context condition, cosine, no pooling)."""
    import contextlib
    import io

    from zrc_abx2.eval_ABX import EvalABX, EvalArgs

    args = EvalArgs(path_data=str(case.feat_dir), path_item_file=str(case.item_file), file_extension=".npy",
                    feature_size=1.0 / case.rate, cuda=False, speaker_mode="all", context_mode="within",
                    distance_mode="cosine", max_size_group=case.max_size_group, max_x_across=case.max_x_across,
                    seed=case.seed, pooling="none")
    with contextlib.redirect_stdout(io.StringIO()):
        res = EvalABX().eval_abx(args)
    return {r["abx-s-condition"]: 100 * r["score"] for r in res}


def synthetic_case(root: Path, n_files: int = 60, seed: int = 0, rate: float = 50.0) -> Case:
    """Random files of noisy phone prototypes with a 3-phone alphabet; groups > 10 exercise sampling."""
    rng = np.random.default_rng(seed)
    feat_dir = Path(root) / "feats"
    feat_dir.mkdir(parents=True, exist_ok=True)
    protos = rng.standard_normal((4, 12))
    spk_shift = rng.standard_normal((6, 12)) * 0.8
    lines = ["#file onset offset #phone prev-phone next-phone speaker"]
    for f in range(n_files):
        spk = f % 6
        n_ph = int(rng.integers(8, 16))
        phones = rng.integers(0, 4, n_ph)
        durs = rng.integers(2, 8, n_ph)
        frames = np.concatenate([protos[p] + spk_shift[spk] + rng.standard_normal((d, 12)) * 1.2
                                 for p, d in zip(phones, durs)])
        np.save(feat_dir / f"file{f:03d}.npy", frames.astype(np.float32))
        t = np.concatenate([[0], np.cumsum(durs)]) / rate
        for k in range(1, n_ph - 1):
            lines.append(f"file{f:03d} {t[k - 1]:.4f} {t[k + 2]:.4f} p{phones[k]} p{phones[k - 1]} p{phones[k + 1]} spk{spk}")
    item = Path(root) / "synthetic.item"
    item.write_text("\n".join(lines) + "\n")
    return Case("synthetic (random phone prototypes, 50 Hz)", feat_dir, item, rate)


def corpus_case(corpus: Path, upstream: str, out: Path, split: str = "dev") -> Case:
    """Features of an s3prl upstream (e.g. fbank, mfcc) for a DUET corpus' abx/<split> items."""
    from harness.cmd_abx import abx_audio_files
    from harness.features import FeatureStore

    item = Path(corpus) / "abx" / f"{split}.item"
    table = read_item_file(item)
    wavs = abx_audio_files(Path(corpus), split, set(table.file))
    store = FeatureStore(out / f"store-{upstream}").extract(upstream, None, ["hidden_states"], wavs)
    feat_dir = out / f"npy-{upstream}"
    feat_dir.mkdir(parents=True, exist_ok=True)
    for f in wavs:
        np.save(feat_dir / f"{f}.npy", np.asarray(store.get("hidden_states", 0, f)))
    return Case(f"{Path(corpus).name} abx/{split}.item, s3prl {upstream}", feat_dir, item,
                store.rate("hidden_states"))


def compare(case: Case) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    ref = run_librilight(case)
    t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    ours = case.ours()
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    row = {"case": case.name, "ll_within": ref["within"], "duet_within": ours.within,
           "ll_across": ref["across"], "duet_across": ours.across,
           "diff_within": abs(ref["within"] - ours.within), "diff_across": abs(ref["across"] - ours.across),
           "t_librilight_s": t_ref, "t_duet_s": t_ours, "speedup": t_ref / t_ours,
           "cpu_librilight_s": c_ref, "cpu_duet_s": c_ours, "cpu_speedup": c_ref / c_ours,
           "cells": ours.n_within_cells + ours.n_across_cells}
    print(f"{case.name}\n  Libri-light within {ref['within']:.4f} %  across {ref['across']:.4f} %   "
          f"{t_ref:.1f} s\n  DUET        within {ours.within:.4f} %  across {ours.across:.4f} %   {t_ours:.2f} s"
          f"\n  |diff| within {row['diff_within']:.2e}  across {row['diff_across']:.2e}   speed-up x{row['speedup']:.1f} wall, "
          f"x{row['cpu_speedup']:.1f} CPU time ({c_ref:.1f} s vs {c_ours:.1f} s)")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="a DUET corpus directory (with abx/dev.item)")
    p.add_argument("--upstream", default="fbank,mfcc", help="s3prl upstream(s) for the corpus case")
    p.add_argument("--out", type=Path, default=Path("cache/bench_abx"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = [compare(synthetic_case(a.out / "synthetic"))]
    if a.corpus:
        for up in a.upstream.split(","):
            rows.append(compare(corpus_case(a.corpus, up, a.out)))
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
