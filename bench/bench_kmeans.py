"""Benchmark: DUET's torch k-means vs sklearn MiniBatchKMeans with the HuBERT recipe's settings.

Same features (MFCC+Δ+ΔΔ, 39-d, 50 Hz, of a corpus's LibriSpeech training split), same K, same
thread count. sklearn is configured as fairseq's examples/hubert/simple_kmeans/learn_kmeans.py:
init k-means++, max_iter 100, batch_size 10000, tol 0, max_no_improvement 100, n_init 20,
reassignment_ratio 0. Both inertias are computed by the same function on all the features.
Goal: >= 5x faster at <= 1.01x sklearn's inertia.

    PYTHONPATH=. python bench/bench_kmeans.py --corpus corpora/small --k 100 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="corpora/small")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--max-frames", type=int, default=300_000, help="features used (a random subset)")
    ap.add_argument("--max-utts", type=int, default=0, help="MFCC of only this many utterances (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--n-init", type=int, default=1, help="torch k-means restarts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache", default="runs/bench_cache")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import torch
    from sklearn.cluster import MiniBatchKMeans
    from tqdm import tqdm

    from pretrain.data import AudioBank, find_training_audio, mfcc_features
    from pretrain.kmeans import KMeans, KMeansConfig, _sq_dist_argmin

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = find_training_audio(args.corpus, max_utts=args.max_utts)
    fp = AudioBank.fingerprint_of(files)
    feat_file = cache / f"mfcc_{fp}.npy"
    if feat_file.exists():
        feats = np.load(feat_file)
    else:
        bank = AudioBank.build(files, cache / "audio")
        feats = np.concatenate([mfcc_features(bank.wav(i)).numpy()
                                for i in tqdm(range(len(bank)), desc="MFCC", leave=False)]).astype(np.float32)
        np.save(feat_file, feats)
    rng = np.random.default_rng(0)
    if feats.shape[0] > args.max_frames:
        feats = feats[np.sort(rng.choice(feats.shape[0], args.max_frames, replace=False))]
    x = torch.from_numpy(feats)
    print(f"features: {tuple(feats.shape)} MFCC+d+dd frames from {args.corpus} ({len(files)} utterances); "
          f"K={args.k}; {args.threads} threads; torch {torch.__version__}")

    def inertia(centers) -> float:
        c = torch.as_tensor(centers, dtype=torch.float32)
        return float(_sq_dist_argmin(x, c, (c * c).sum(1), 65536)[1].double().sum())

    rows = []
    for r in range(args.repeats):
        t = time.perf_counter()
        sk = MiniBatchKMeans(n_clusters=args.k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                             max_no_improvement=100, n_init=20, reassignment_ratio=0.0, compute_labels=False,
                             random_state=r).fit(feats)
        t_sk = time.perf_counter() - t
        i_sk = inertia(sk.cluster_centers_)
        t = time.perf_counter()
        km = KMeans(KMeansConfig(k=args.k, seed=r, n_init=args.n_init, device=args.device)).fit(x)
        if km.centers.is_cuda:
            torch.cuda.synchronize()
        t_t = time.perf_counter() - t
        i_t = inertia(km.centers.cpu())
        rows.append({"repeat": r, "sklearn_s": t_sk, "sklearn_inertia": i_sk, "torch_s": t_t, "torch_inertia": i_t,
                     "torch_iters": km.n_iter, "speedup": t_sk / t_t, "inertia_ratio": i_t / i_sk})
        print(f"[{r}] sklearn MiniBatchKMeans {t_sk:7.2f} s inertia {i_sk:.4e} | torch k-means "
              f"{t_t:6.2f} s ({km.n_iter} Lloyd iterations) inertia {i_t:.4e} | speed-up {t_sk / t_t:5.1f}x, "
              f"inertia ratio {i_t / i_sk:.4f}")
    sp = float(np.median([r["speedup"] for r in rows]))
    ir = float(np.median([r["inertia_ratio"] for r in rows]))
    ok = sp >= 5 and ir <= 1.01
    print(f"median speed-up {sp:.1f}x (goal >= 5x), inertia ratio {ir:.4f} (goal <= 1.01): {'MET' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "features": list(feats.shape), "rows": rows,
                                               "median_speedup": sp, "median_inertia_ratio": ir}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
