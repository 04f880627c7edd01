"""Extraction cost of both streams vs a HuBERT-Base-shaped single-stream model.

Times, in one process on the same audio, interleaved round-robin (so machine load hits every
model alike), eval mode under torch.inference_mode():
  * reference: transformers `HubertModel(HubertConfig())` (default = HuBERT Base shape, random
    weights), `output_hidden_states=True` (all layers, as an s3prl upstream extracts them);
  * DUET hubert_compact "base" preset (same shape; checks our transformer matches HF's cost);
  * JOOCI "base" (content + other + utterance), Learn2Diss "base" (frozen HuBERT-Base backbone +
    2 frame layers + ECAPA-TDNN on a middle layer).
Prints the median seconds per extraction and the ratio vs the reference, against the goals
JOOCI-base <= 1.15x and Learn2Diss-base <= 1.25x.

Run by hand (CPU, 1 thread, as in the goals):
    python -m bench.bench_extract                      # 10 s of audio, 7 repeats
    python -m bench.bench_extract --seconds 10 --repeats 7 --breakdown --out results/bench_extract.md
    python -m bench.bench_extract --device cuda --threads 4
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
from upstream.facts import SAMPLE_RATE

GOALS = {"jooci base": 1.15, "learn2diss base": 1.25}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def build(device: torch.device) -> dict[str, object]:
    from transformers import HubertConfig, HubertModel

    from upstream.registry import build_model

    torch.manual_seed(0)
    hf = HubertModel(HubertConfig()).eval().to(device)
    models = {
        "HF HubertModel (ref)": lambda w, n: hf(w, output_hidden_states=True).hidden_states,
    }
    for name in ("hubert_compact", "jooci", "learn2diss"):
        m = build_model(name, "base").eval().to(device)
        models[f"{name} base"] = (lambda mm: (lambda w, n: mm(w, n)))(m)
    return models


def time_all(models: dict, wav: torch.Tensor, wav_len: torch.Tensor, repeats: int, device
             ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """-> (wall seconds, process CPU seconds) per model per round."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for fn in models.values():  # warm-up
            fn(wav, wav_len)
        sync()
        try:
            from tqdm import tqdm
            it = tqdm(range(repeats), desc="repeats")
        except ImportError:
            it = range(repeats)
        for _ in it:
            for name, fn in models.items():
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                fn(wav, wav_len)
                sync()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    return times, cpu


def breakdown(wav: torch.Tensor, wav_len: torch.Tensor, repeats: int, device) -> list[str]:
    """Median process-CPU seconds of each part of JOOCI-base and Learn2Diss-base: the share of
    the second stream is measured directly, whatever the load of the machine."""
    from upstream.registry import build_model

    torch.manual_seed(0)
    j = build_model("jooci", "base").eval().to(device)
    l2d = build_model("learn2diss", "base").eval().to(device)
    with torch.inference_mode():
        feat, c_len = j.features(wav, wav_len)
        content = j.encode_content(feat, c_len)
        other, o_len = j.encode_other(feat, c_len, content)
        layers, n = l2d.backbone_hidden(wav, wav_len)
        parts = {
            "jooci: shared CNN": lambda: j.features(wav, wav_len),
            "jooci: content transformer": lambda: j.encode_content(feat, c_len),
            "jooci: other encoder": lambda: j.encode_other(feat, c_len, content),
            "jooci: post-net (ASP+BN)": lambda: j.postnet(other[-1], o_len),
            "learn2diss: frozen CNN + lower layers": lambda: l2d.backbone_hidden(wav, wav_len),
            "learn2diss: g (top layers)": lambda: l2d.frame_encode(layers, n),
            "learn2diss: h (ECAPA-TDNN)": lambda: l2d.utterance_encode(layers, n),
        }
        cpu = {k: [] for k in parts}
        for f in parts.values():
            f()
        for _ in range(repeats):
            for k, f in parts.items():
                c0 = time.process_time()
                f()
                cpu[k].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    j_single = med["jooci: shared CNN"] + med["jooci: content transformer"]
    j_extra = med["jooci: other encoder"] + med["jooci: post-net (ASP+BN)"]
    l_single = med["learn2diss: frozen CNN + lower layers"] + med["learn2diss: g (top layers)"]
    l_extra = med["learn2diss: h (ECAPA-TDNN)"]
    rows = ["| part | median CPU s |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in med.items()]
    rows += ["", f"second-stream overhead over the single-stream part: JOOCI "
                 f"{(j_single + j_extra) / j_single:.3f}x, Learn2Diss {(l_single + l_extra) / l_single:.3f}x"]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length (16 kHz)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="also write a markdown table here")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each part of JOOCI-base / Learn2Diss-base (CPU time)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = int(args.seconds * SAMPLE_RATE)
    wav = (0.1 * torch.randn(args.batch, n, generator=torch.Generator().manual_seed(0))).to(device)
    wav_len = torch.full((args.batch,), n, dtype=torch.long, device=device)

    models = build(device)
    times, cpu = time_all(models, wav, wav_len, args.repeats, device)
    ref_name = "HF HubertModel (ref)"
    # On a shared CPU, wall time includes waiting for a core; with one thread, process CPU time
    # does not, so the CPU-time ratio judges the goals (GPU: wall time). Paired = median over
    # rounds of (model / reference in the same round).
    judge = times if device.type == "cuda" else cpu
    ref = statistics.median(judge[ref_name])

    machine = f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    header = (f"audio {args.seconds:g} s x batch {args.batch}, device {device}, threads "
              f"{args.threads}, {args.repeats} repeats (median), commit {_git_commit()}, {machine}; "
              f"ratios from {'wall' if device.type == 'cuda' else 'process CPU'} time")
    rows = ["| model | median wall s | median CPU s | ratio vs ref | paired ratio | goal | ok |",
            "|---|---|---|---|---|---|---|"]
    ok_all = True
    for name in times:
        ratio = statistics.median(judge[name]) / ref
        paired = statistics.median(a / b for a, b in zip(judge[name], judge[ref_name]))
        goal = GOALS.get(name)
        ok = "" if goal is None else ("yes" if ratio <= goal else "NO")
        ok_all &= ok != "NO"
        rows.append(f"| {name} | {statistics.median(times[name]):.3f} | "
                    f"{statistics.median(cpu[name]):.3f} | {ratio:.3f}x | {paired:.3f}x | "
                    f"{'' if goal is None else f'<= {goal}x'} | {ok} |")
    if args.breakdown:
        rows += ["", *breakdown(wav, wav_len, args.repeats, device)]
    text = "\n".join([header, "", *rows])
    print(text)
    if args.out:
        cmd = "python -m bench.bench_extract " + " ".join(
            f"--{k}" if v is True else f"--{k} {v}" for k, v in vars(args).items()
            if v is not None and v is not False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# Extraction benchmark\n\nCommand: `{cmd}`\n\n{text}\n")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
