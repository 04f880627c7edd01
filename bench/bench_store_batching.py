"""What one-file-a-forward extraction (the FeatureStore default) costs against length-batched.

For each bundled DUET checkpoint, in one process on the same files, alternating the two modes each
round (so machine load hits both alike): wall seconds to build a fresh float16 store of the files'
``content`` and ``other`` keys with ``batch_seconds=0`` (one file a forward: a file's bytes do not
depend on its neighbours) and with ``batch_seconds=60`` (length-batched), the median ratio, and how
many files' stored bytes differ between the two (why the default is exact:
harness/features/planning.py).

Run by hand, alone on the machine (CPU, 1 thread unless told):
    python -m bench.bench_store_batching --corpus corpora/small --files 200 --rounds 3
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

MODELS = {"hubert_compact": "checkpoints/hubert-compact", "learn2diss": "checkpoints/learn2diss-compact",
          "jooci": "checkpoints/jooci-compact", "barlow_twins": "checkpoints/barlow-twins-compact"}
MODES = {"one file a forward (default)": 0.0, "batched 60 s": 60.0}


def unseen_files(corpus: Path, n: int) -> dict[str, Path]:
    """The first ``n`` utterances (by id) of the corpus's unseen-voices set, as the scorecard reads it."""
    from harness.cli.scorecard import load_eval_set

    data, wavs, _ = load_eval_set(corpus)
    return {u: wavs[u] for u in data.utts[:n]}


def main(argv: list[str] | None = None) -> None:
    from harness.features.loading import load_upstream
    from harness.features.store import FeatureStore

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("corpora/small"))
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = unseen_files(args.corpus, args.files)
    audio_s = sum(sf.info(str(f)).duration for f in files.values())
    print(f"{len(files)} files, {audio_s:.0f} s of audio, {args.threads} thread(s), {args.rounds} rounds")
    print("| model | one file a forward s | batched s | ratio | files whose bytes differ |\n|---|---|---|---|---|")
    for name in args.models.split(","):
        up = load_upstream(name, MODELS[name], None)
        keys = ["hidden_states"] if name == "hubert_compact" else ["content", "other"]
        times: dict[str, list[float]] = {m: [] for m in MODES}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for mode, bs in MODES.items():
                    root = Path(tmp) / str(bs)
                    shutil.rmtree(root, ignore_errors=True)
                    t = time.perf_counter()
                    FeatureStore(root).extract(name, MODELS[name], keys, files, batch_seconds=bs, upstream=up,
                                               device="cpu", progress=False)
                    times[mode].append(time.perf_counter() - t)
            a, b = (FeatureStore(Path(tmp) / str(bs)) for bs in MODES.values())
            differ = sum(any(not np.array_equal(a.get_all_layers(k, f), b.get_all_layers(k, f)) for k in keys)
                         for f in files)
        one, batched = (statistics.median(times[m]) for m in MODES)
        print(f"| {name} | {one:.2f} | {batched:.2f} | {one / batched:.2f}x | {differ} of {len(files)} |")


if __name__ == "__main__":
    main()
