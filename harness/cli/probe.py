"""`harness probe`: linear speaker-ID and phone probes per layer and stream, and a held-out MI
estimate between the content and other streams (fresh CLUB upper bound + InfoNCE lower bound).

  harness probe --upstream fbank --corpus small
  harness probe --upstream jooci --features content,other --mi --plot

Speaker probe: utterance means -> speaker (split within each speaker, 80/20). Phone probe: frames
-> the phone at the frame's centre (silence excluded; split by utterance, 80/20). Accuracies are
held-out fractions; ``chance`` is the majority class of the held-out split. Cross-probes read as
disentanglement: speaker ID on the content stream (lower = better), phones on the other stream.
MI pairs each content frame with the other-stream frame covering the same time (nats).
"""
from __future__ import annotations

import argparse

from upstream.facts import progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.features import analysis_io as io

    io.add_upstream_arguments(p)
    io.add_corpus_arguments(p)
    g = p.add_argument_group("probes")
    g.add_argument("--probes", default="speaker,phone", help="which probes: speaker,phone (or one)")
    g.add_argument("--max-frames", type=int, default=20000, help="phone probe / MI: frames sampled")
    g.add_argument("--max-utts", type=int, default=None, help="use only the first N utterances of the split")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mi", action="store_true", help="also estimate MI between the content and other streams")
    g.add_argument("--mi-layers", default="last,last",
                   help="content,other layers for MI (indices or 'last'; default last,last)")
    g.add_argument("--mi-steps", type=int, default=1500, help="training steps of each MI estimator")
    io.add_output_arguments(p, "probe")


def frame_phone_labels(rows, get, rate, max_frames: int, seed: int):
    """(X frames, phone labels, utterance groups) with frames labelled by the phone at their centre."""
    import numpy as np

    from analysis.views import SILENCES
    from harness.features import analysis_io as io

    xs, ys, gs = [], [], []
    for k, r in enumerate(rows):
        f = np.asarray(get(r["utt_id"]))
        ali = io.read_alignment(r["alignment_path"])
        ends = np.array([b for _, b, _ in ali])
        labs = [p for _, _, p in ali]
        centre = (np.arange(len(f)) + 0.5) / rate
        idx = np.minimum(np.searchsorted(ends, centre, side="right"), len(ali) - 1)
        keep = np.array([labs[i] not in SILENCES for i in idx], dtype=bool)
        xs.append(f[keep])
        ys += [labs[i] for i in idx[keep]]
        gs.append(np.full(int(keep.sum()), k))
    X, Y, G = np.concatenate(xs), np.array(ys), np.concatenate(gs)
    if len(X) > max_frames:
        sel = np.sort(np.random.default_rng(seed).choice(len(X), max_frames, replace=False))
        X, Y, G = X[sel], Y[sel], G[sel]
    return X, Y, G


def run(args: argparse.Namespace) -> int:
    from harness.features.analysis_io import guarded

    return guarded("probe", _run, args)


def _run(args: argparse.Namespace) -> int:
    import sys
    import time


    from analysis.mi import mi_bounds
    from analysis.probes import probe_accuracy
    from analysis.views import paired_frames, utterance_means
    from harness.features import analysis_io as io

    t0 = time.time()
    probes = [s.strip() for s in args.probes.split(",") if s.strip()]
    bad = [s for s in probes if s not in ("speaker", "phone")]
    if bad:
        raise io.AnalysisError(f"unknown probe(s) {bad}: choose speaker and/or phone")
    io.check_common(args)
    io.check_numbers(args, {"max_frames": (1, True), "max_utts": (1, True), "seed": (0, True),
                            "mi_steps": (1, True)})
    mi_layers = [s.strip() for s in args.mi_layers.split(",")]
    if len(mi_layers) != 2:
        raise io.AnalysisError(f"--mi-layers {args.mi_layers!r}: write CONTENT,OTHER layers, e.g. last,last or 6,2")
    for s in mi_layers:
        if s != "last":
            io.parse_layers(s, None, "--mi-layers")
    out = args.out or io.default_out("probe", args)
    io.check_writable(out)
    corpus = io.resolve_corpus(args.corpus, args.corpora_dir)
    rows = io.corpus_utterances(corpus, args.split, args.max_utts)
    from harness.preflight import files_for_split

    io.check_audio(args, io.restrict(files_for_split(corpus, args.split), [r["wav"] for r in rows]), corpus)
    upstream = io.open_upstream(args)
    keys = io.choose_keys(args, upstream)
    chosen = io.check_layers(args, upstream, keys)
    store = io.feature_store(args, {r["utt_id"]: r["wav"] for r in rows}, keys, upstream)
    del upstream
    utts, spk = [r["utt_id"] for r in rows], [r["speaker"] for r in rows]
    model = io.model_name(args)
    base = {"model": model, "upstream": args.upstream, "ckpt": args.ckpt or ""}
    out_rows = []
    for key in keys:
        layers = chosen[key]
        rate = store.rate(key)
        for layer in progress_bar(layers, enabled=not args.quiet, desc=f"probes {key}"):
            get = lambda u: store.get(key, layer, u)  # noqa: E731
            if "speaker" in probes:
                r = probe_accuracy(utterance_means(get, utts), spk, seed=args.seed, stratify=True, device=args.device)
                out_rows.append({**base, "stream": key, "layer": layer, "metric": "probe_speaker", "value": r.accuracy,
                                 "chance": r.chance, **r.sizes()})
            if "phone" in probes:
                x, y, g = frame_phone_labels(rows, get, rate, args.max_frames, args.seed)
                r = probe_accuracy(x, y, groups=g, seed=args.seed, device=args.device)
                out_rows.append({**base, "stream": key, "layer": layer, "metric": "probe_phone", "value": r.accuracy,
                                 "chance": r.chance, **r.sizes()})
    if args.mi:
        if not {"content", "other"} <= set(keys):
            print(f"--mi needs the content and other streams; {args.upstream} gives {', '.join(keys)}: MI skipped",
                  file=sys.stderr)
        else:
            lc, lo = mi_layers
            lc = store.num_layers("content") - 1 if lc == "last" else io.parse_layers(lc, store.num_layers("content"), "content")[0]
            lo = store.num_layers("other") - 1 if lo == "last" else io.parse_layers(lo, store.num_layers("other"), "other")[0]
            x, y, g = paired_frames(lambda u: store.get("content", lc, u), store.rate("content"),
                                    lambda u: store.get("other", lo, u), store.rate("other"), utts,
                                    args.max_frames, args.seed)
            est = mi_bounds(x, y, groups=g, seed=args.seed, steps=args.mi_steps, device=args.device)
            for r in est.rows():
                out_rows.append({**base, "stream": "content|other", "layer": lc, "layer_other": lo, **r})
    from analysis import samples

    samples.annotate(out_rows)
    io.write_results(out_rows, out, t0, {"corpus": str(corpus), "split": args.split, "n_utts": len(rows)})
    io.print_table(out_rows, ["model", "stream", "layer"])
    print(f"wrote {out}")
    if args.plot:
        from analysis.plots import plot_results

        print(f"wrote {plot_results(out, 'probe')}")
    return 0
