"""DUET's ABX vs the Libri-light ABX (PyPI `zerospeech-libriabx2`) on identical features and items.

Bench-only dependency (NOT in requirements): install it into the project venv with
    .venv/bin/pip install -c scripts/constraints.txt zerospeech-libriabx2==0.9.8
(it builds a small Cython DTW extension; measured to install cleanly on this stack).

Run by hand:
    python -m bench.abx_reference                                   # synthetic case only
    python -m bench.abx_reference --fastabx-python /tmp/fastabx-venv/bin/python   # + fastabx (bench/abx_fastabx.py)
    python -m bench.abx_reference --corpus DIR [--upstream fbank]   # + a corpus' abx/dev.item
    python -m bench.abx_reference --corpus DIR --sweep hubert_compact=checkpoints/hubert-compact   # + every layer
Prints, per case: both implementations' within/across error (%), their absolute difference, and the
wall and CPU time of each (same process, same CPU threads, --repeat runs alternating; medians) with the
speed ratios.
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

    def ours(self, device: str = "cpu", slicing: str = "librilight"):
        """DUET's ABX in one call: reads the item file and the features, plans, scores."""
        table = read_item_file(self.item_file)
        feats, kept = slice_items(table, lambda f: np.load(self.feat_dir / f"{f}.npy"), self.rate,
                                  slicing, file_order=self.file_order())
        t = table.subset(kept)
        cfg = ABXConfig(max_size_group=self.max_size_group, max_x_across=self.max_x_across, seed=self.seed,
                        device=device)
        return abx_scores(feats, build_plan(t.phone, t.context, t.speaker, cfg), cfg)


def _med(v) -> float:
    return float(np.median(v))


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


def _abx_audio(corpus: Path, split: str) -> tuple[Path, dict]:
    """A DUET corpus' abx/<split>.item and the audio files its items name."""
    from harness.cli.abx import abx_audio_files

    item = Path(corpus) / "abx" / f"{split}.item"
    return item, abx_audio_files(Path(corpus), split, set(read_item_file(item).file))


def _dump_layer(store, key: str, layer: int, files, feat_dir: Path) -> Path:
    """One <file_id>.npy (T, D) per file of one stored layer: the input format of both implementations."""
    feat_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        np.save(feat_dir / f"{f}.npy", np.asarray(store.get(key, layer, f)))
    return feat_dir


def corpus_case(corpus: Path, upstream: str, out: Path, split: str = "dev") -> Case:
    """Features of an s3prl upstream (e.g. fbank, mfcc) for a DUET corpus' abx/<split> items."""
    from harness.features.store import FeatureStore

    item, wavs = _abx_audio(corpus, split)
    store = FeatureStore(out / f"store-{upstream}").extract(upstream, None, ["hidden_states"], wavs)
    feat_dir = _dump_layer(store, "hidden_states", 0, wavs, out / f"npy-{upstream}")
    return Case(f"{Path(corpus).name} abx/{split}.item, s3prl {upstream}", feat_dir, item,
                store.rate("hidden_states"))


def sweep_dirs(corpus: Path, upstream: str, ckpt: str | None, out: Path, key: str = "hidden_states",
               split: str = "dev") -> tuple[list[Path], Path, float]:
    """One directory of <file_id>.npy per layer of an upstream's ``key`` (every layer, extracted once)."""
    from harness.features.store import FeatureStore

    item, wavs = _abx_audio(corpus, split)
    tag = upstream
    if ckpt:
        from upstream.checkpoint import checkpoint_hash
        tag += "-" + checkpoint_hash(ckpt)[:12]          # new weights -> new features, never stale ones
    store = FeatureStore(out / f"store-{tag}-sweep").extract(upstream, ckpt, [key], wavs)
    dirs = [_dump_layer(store, key, layer, wavs, out / f"npy-{tag}-{key}-L{layer}")
            for layer in range(store.num_layers(key))]
    return dirs, item, store.rate(key)


def compare_sweep(name: str, dirs: list[Path], item: Path, rate: float, repeat: int = 3) -> dict:
    """ABX of every layer: Libri-light runs once per layer (its CLI has no layer loop); DUET reads the
    item file and builds the plan once, then slices and scores each layer (what `harness abx` does)."""
    cases = [Case(f"{name} L{k}", d, item, rate) for k, d in enumerate(dirs)]
    c_ref, c_ours, diffs = [], [], []
    for _ in range(repeat):
        c0 = time.process_time()
        refs = [run_librilight(c) for c in cases]
        c_ref.append(time.process_time() - c0)
        c0 = time.process_time()
        table = read_item_file(item)
        cfg = ABXConfig(device="cpu")
        plan, ours = None, []
        for c in cases:
            feats, kept = slice_items(table, lambda f, d=c.feat_dir: np.load(d / f"{f}.npy"), rate,
                                      "librilight", file_order=c.file_order())
            if plan is None:
                t = table.subset(kept)
                plan = build_plan(t.phone, t.context, t.speaker, cfg)
            ours.append(abx_scores(feats, plan, cfg))
        c_ours.append(time.process_time() - c0)
        diffs = [max(abs(r["within"] - o.within), abs(r["across"] - o.across)) for r, o in zip(refs, ours)]
    row = {"case": f"{name}: all {len(dirs)} layers", "layers": len(dirs), "max_abs_diff": max(diffs),
           "cpu_librilight_s": _med(c_ref), "cpu_duet_s": _med(c_ours), "cpu_speedup": _med(c_ref) / _med(c_ours),
           "cpu_librilight_all": c_ref, "cpu_duet_all": c_ours,
           "layer_scores": [(o.within, o.across) for o in ours]}
    print(f"{row['case']}\n  max |diff| over layers and conditions {row['max_abs_diff']:.2e}   CPU time (medians of "
          f"{repeat}) Libri-light {row['cpu_librilight_s']:.2f} s, DUET {row['cpu_duet_s']:.2f} s: x{row['cpu_speedup']:.1f}")
    for k, (w, a) in enumerate(row["layer_scores"]):
        print(f"  layer {k}: within {w:.3f} %  across {a:.3f} %")
    return row


def _timed(fn):
    """(result, wall s, CPU s of this process) of fn()."""
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - t0, time.process_time() - c0


def compare(case: Case, repeat: int = 3, fastabx_python: str | None = None) -> dict:
    """Libri-light and DUET (Libri-light slicing) ``repeat`` times, alternating in this process; with
    ``fastabx_python`` also fastabx (a subprocess; CPU time of its scoring calls measured inside it)
    and DUET with fastabx's slicing and the same caps, in the same alternation. Medians."""
    if fastabx_python:
        from bench.abx_fastabx import run_fastabx
    t = {k: [] for k in ("t_librilight", "cpu_librilight", "t_duet", "cpu_duet", "t_fastabx", "cpu_fastabx",
                         "process_wall_fastabx", "t_duet_fx", "cpu_duet_fx", "fx_within", "fx_across")}
    load = [os.getloadavg()[0]]
    for _ in range(repeat):
        ref, w, c = _timed(lambda: run_librilight(case))
        t["t_librilight"].append(w), t["cpu_librilight"].append(c)
        ours, w, c = _timed(case.ours)
        t["t_duet"].append(w), t["cpu_duet"].append(c)
        if fastabx_python:
            fx = run_fastabx(fastabx_python, case)
            t["t_fastabx"].append(fx["wall_s"]), t["cpu_fastabx"].append(fx["cpu_s"])
            t["process_wall_fastabx"].append(fx["process_wall_s"])
            t["fx_within"].append(fx["within"]), t["fx_across"].append(fx["across"])     # its sampling varies
            ours_fx, w, c = _timed(lambda: case.ours(slicing="fastabx"))
            t["t_duet_fx"].append(w), t["cpu_duet_fx"].append(c)
    load.append(os.getloadavg()[0])
    row = {"case": case.name, "ll_within": ref["within"], "duet_within": ours.within,
           "ll_across": ref["across"], "duet_across": ours.across,
           "diff_within": abs(ref["within"] - ours.within), "diff_across": abs(ref["across"] - ours.across),
           "t_librilight_s": _med(t["t_librilight"]), "t_duet_s": _med(t["t_duet"]),
           "speedup": _med(t["t_librilight"]) / _med(t["t_duet"]),
           "cpu_librilight_s": _med(t["cpu_librilight"]), "cpu_duet_s": _med(t["cpu_duet"]),
           "cpu_speedup": _med(t["cpu_librilight"]) / _med(t["cpu_duet"]),
           "cells": ours.n_within_cells + ours.n_across_cells, "repeats": repeat, "load1_before_after": load,
           "cpu_librilight_all": t["cpu_librilight"], "cpu_duet_all": t["cpu_duet"]}
    print(f"{case.name}\n  Libri-light within {ref['within']:.4f} %  across {ref['across']:.4f} %   "
          f"{row['t_librilight_s']:.2f} s\n  DUET        within {ours.within:.4f} %  across {ours.across:.4f} %   "
          f"{row['t_duet_s']:.2f} s\n  |diff| within {row['diff_within']:.2e}  across {row['diff_across']:.2e}   "
          f"speed-up x{row['speedup']:.1f} wall, x{row['cpu_speedup']:.1f} CPU time (medians of {repeat}: "
          f"{row['cpu_librilight_s']:.2f} s vs {row['cpu_duet_s']:.2f} s)")
    if fastabx_python:
        row.update({"fx_within": fx["within"], "duet_fx_within": ours_fx.within, "fx_across": fx["across"],
                    "duet_fx_across": ours_fx.across, "diff_fx_within": abs(fx["within"] - ours_fx.within),
                    "diff_fx_across": abs(fx["across"] - ours_fx.across),
                    "cpu_fastabx_s": _med(t["cpu_fastabx"]), "cpu_duet_fx_s": _med(t["cpu_duet_fx"]),
                    "cpu_speedup_fastabx": _med(t["cpu_fastabx"]) / _med(t["cpu_duet_fx"]),
                    "t_fastabx_s": _med(t["t_fastabx"]), "t_duet_fx_s": _med(t["t_duet_fx"]),
                    "process_wall_fastabx_s": _med(t["process_wall_fastabx"]),
                    "cpu_fastabx_all": t["cpu_fastabx"], "cpu_duet_fx_all": t["cpu_duet_fx"],
                    "process_wall_fastabx_all": t["process_wall_fastabx"], "fx_within_all": t["fx_within"],
                    "fx_across_all": t["fx_across"]})
        print(f"  fastabx     within {fx['within']:.4f} %  across {fx['across']:.4f} %   (its 2 scoring calls: CPU "
              f"{row['cpu_fastabx_s']:.2f} s, wall {row['t_fastabx_s']:.2f} s; whole process {row['process_wall_fastabx_s']:.1f} s)\n"
              f"  DUET fastabx slicing within {ours_fx.within:.4f} %  across {ours_fx.across:.4f} %   CPU "
              f"{row['cpu_duet_fx_s']:.2f} s\n  |diff| within {row['diff_fx_within']:.2e}  across "
              f"{row['diff_fx_across']:.2e}   speed-up vs fastabx x{row['cpu_speedup_fastabx']:.1f} CPU time")
    return row


def compare_uncapped(case: Case, fastabx_python: str, cap: int = 1000) -> dict:
    """fastabx vs DUET (fastabx slicing) with nothing subsampled (caps of ``cap``): the same triplets,
    so the scores must agree to float rounding. One run each."""
    from dataclasses import replace

    from bench.abx_fastabx import run_fastabx

    case = replace(case, max_size_group=cap, max_x_across=cap)
    fx = run_fastabx(fastabx_python, case)
    ours, w, c = _timed(lambda: case.ours(slicing="fastabx"))
    row = {"case": f"{case.name}, uncapped ({cap}/{cap})", "fx_within": fx["within"], "duet_fx_within": ours.within,
           "fx_across": fx["across"], "duet_fx_across": ours.across,
           "diff_fx_within": abs(fx["within"] - ours.within), "diff_fx_across": abs(fx["across"] - ours.across),
           "cpu_fastabx_s": fx["cpu_s"], "cpu_duet_fx_s": c, "cpu_speedup_fastabx": fx["cpu_s"] / c,
           "process_wall_fastabx_s": fx["process_wall_s"], "cells": ours.n_within_cells + ours.n_across_cells}
    print(f"{row['case']}\n  fastabx within {fx['within']:.6f} %  across {fx['across']:.6f} %  CPU {fx['cpu_s']:.2f} s\n"
          f"  DUET    within {ours.within:.6f} %  across {ours.across:.6f} %  CPU {c:.2f} s\n  |diff| within "
          f"{row['diff_fx_within']:.2e}  across {row['diff_fx_across']:.2e}")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="a DUET corpus directory (with abx/dev.item)")
    p.add_argument("--upstream", default="fbank,mfcc", help="s3prl upstream(s) for the corpus case")
    p.add_argument("--out", type=Path, default=Path("cache/bench_abx"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument("--sweep", default=None, metavar="UPSTREAM[=CKPT]",
                   help="also score every hidden_states layer of this upstream (e.g. hubert_compact=checkpoints/hubert-compact)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each implementation (alternating); medians reported")
    p.add_argument("--fastabx-python", default=None, metavar="PATH",
                   help="python of a venv with fastabx (Python >= 3.12): also run fastabx and DUET with its slicing")
    p.add_argument("--uncapped", action="store_true",
                   help="with --fastabx-python: also compare fastabx and DUET once with nothing subsampled (caps 1000)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cases = [synthetic_case(a.out / "synthetic")]
    if a.corpus:
        cases += [corpus_case(a.corpus, up, a.out) for up in a.upstream.split(",")]
    rows = [compare(c, a.repeat, a.fastabx_python) for c in cases]
    if a.fastabx_python and a.uncapped:
        rows += [compare_uncapped(c, a.fastabx_python) for c in cases]
    sweep = None
    if a.corpus and a.sweep:
        up, _, ck = a.sweep.partition("=")
        sweep = compare_sweep(up, *sweep_dirs(a.corpus, up, ck or None, a.out), repeat=a.repeat)
    cols = [k for k in rows[0] if not k.endswith("_all") and k != "load1_before_after"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in cols) + " |")
    if a.json:
        a.json.write_text(json.dumps(rows + ([sweep] if sweep else []), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
