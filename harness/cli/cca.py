"""`harness cca`: projection-weighted CCA per layer between an upstream's streams and
(a) phone labels (mean-pooled phone segments vs one-hot), (b) word labels (mean-pooled word
segments vs one-hot of the top-500 words), (c) speaker labels (utterance means vs one-hot),
(d) fbank (frames vs the s3prl fbank frame at the same time).

  harness cca --upstream fbank --corpus small
  harness cca --upstream jooci --views word,phone --suggest-layers       # writes a -g model config

float64; small-variance dims dropped; eps chosen on a dev split; 80/10/10 splits (by utterance,
except the speaker view, split by utterance within speakers) averaged over --trials.
``--suggest-layers`` picks, per stream, the contiguous block of layers whose score on
``--suggest-view`` is at least ``--suggest-frac`` of the best, and writes
``layers: {content: "a-b", ...}`` as a YAML model config for ``run_downstream.py -g`` and
``harness run --layers``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from upstream.facts import progress_bar

VIEWS = ("phone", "word", "speaker", "fbank")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.features import analysis_io as io

    io.add_upstream_arguments(p)
    io.add_corpus_arguments(p)
    c = p.add_argument_group("CCA")
    c.add_argument("--views", default=",".join(VIEWS), help=f"comma-separated views out of {','.join(VIEWS)}")
    c.add_argument("--trials", type=int, default=3, help="random 80/10/10 splits averaged")
    c.add_argument("--top-words", type=int, default=500, help="word view: the most frequent N words")
    c.add_argument("--max-frames", type=int, default=20000, help="fbank view: frames sampled")
    c.add_argument("--max-utts", type=int, default=None, help="use only the first N utterances of the split")
    c.add_argument("--seed", type=int, default=0)
    s = p.add_argument_group("layer choice")
    s.add_argument("--suggest-layers", action="store_true",
                   help="write the contiguous high-CCA layer block of each stream as a YAML model config")
    s.add_argument("--suggest-view", default="word", choices=VIEWS, help="view that ranks layers (JOOCI: word)")
    s.add_argument("--suggest-frac", type=float, default=0.9, help="keep layers scoring >= FRAC x the best")
    s.add_argument("--suggest-streams", default="content", help="streams to choose layers for")
    s.add_argument("--suggest-out", type=Path, default=None, help="YAML path (default: next to the CSV)")
    io.add_output_arguments(p, "cca")


def build_views(rows, views, top_words: int):
    """Phone and word segments of the utterances, and what was skipped."""
    from collections import Counter

    from analysis.views import SILENCES, Segment, word_segments
    from harness.features import analysis_io as io

    phones, words, skipped = [], [], []
    for r in rows:
        ali = io.read_alignment(r["alignment_path"])
        phones += [Segment(r["utt_id"], a, b, p) for a, b, p in ali if p not in SILENCES]
        if "word" in views:
            rec = io.read_words(r["record"])
            ws = word_segments(rec[0], rec[1]) if rec else None
            if ws is None:
                skipped.append(r["utt_id"])
            else:
                words += [Segment(r["utt_id"], a, b, w) for a, b, w in ws]
    if words:
        top = {w for w, _ in Counter(s.label for s in words).most_common(top_words)}
        words = [s for s in words if s.label in top]
    return phones, words, skipped


def run(args: argparse.Namespace) -> int:
    from harness.features.analysis_io import guarded

    return guarded("cca", _run, args)


def _run(args: argparse.Namespace) -> int:
    import sys
    import time

    import numpy as np

    from analysis.cca import one_hot, pwcca_cv, suggest_layers
    from analysis.views import paired_frames, pooled_segments, utterance_means
    from harness.features import analysis_io as io

    t0 = time.time()
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise io.AnalysisError(f"--views: unknown or no view(s) {bad}: choose from {', '.join(VIEWS)}")
    io.check_common(args)
    io.check_numbers(args, {"trials": (1, True), "top_words": (1, True), "max_frames": (1, True),
                            "max_utts": (1, True), "seed": (0, True), "suggest_frac": (0, False)})
    if args.suggest_frac > 1:
        raise io.AnalysisError(f"--suggest-frac {args.suggest_frac}: must be in (0, 1]")
    out = args.out or io.default_out("cca", args)
    io.check_writable(out)
    if args.suggest_layers and args.suggest_out is not None:
        io.check_writable(args.suggest_out)
    corpus = io.resolve_corpus(args.corpus, args.corpora_dir)
    rows = io.corpus_utterances(corpus, args.split, args.max_utts)
    wavs = {r["utt_id"]: r["wav"] for r in rows}
    from harness.preflight import files_for_split

    io.check_audio(args, io.restrict(files_for_split(corpus, args.split), wavs.values()), corpus)
    upstream = io.open_upstream(args)
    keys = io.choose_keys(args, upstream)
    chosen = io.check_layers(args, upstream, keys)
    store = io.feature_store(args, wavs, keys, upstream)
    del upstream
    fb = None
    if "fbank" in views:
        fb_args = argparse.Namespace(**{**vars(args), "upstream": "fbank", "ckpt": None, "model_config": None,
                                        "cache": Path("cache") / "features" / "fbank" if args.cache is None
                                        else Path(str(args.cache) + "-fbank-ref")})
        fb = io.feature_store(fb_args, wavs, ["hidden_states"])
    phones, words, skipped = build_views(rows, views, args.top_words)
    if "word" in views and skipped:
        print(f"word view: {len(skipped)} utterance(s) without word times skipped (e.g. {skipped[:3]})", file=sys.stderr)
    utts = [r["utt_id"] for r in rows]
    spk = [r["speaker"] for r in rows]
    model = io.model_name(args)
    out_rows, best = [], {}
    for key in keys:
        layers = chosen[key]
        rate = store.rate(key)
        for layer in progress_bar(layers, enabled=not args.quiet, desc=f"CCA {key}"):
            get = lambda u: store.get(key, layer, u)  # noqa: E731
            for view in views:
                if view == "phone":
                    x, lab, grp = pooled_segments(get, phones, rate)
                    y, groups = one_hot(lab), np.asarray(grp)
                elif view == "word":
                    if not words:
                        continue
                    x, lab, grp = pooled_segments(get, words, rate)
                    y, groups = one_hot(lab), np.asarray(grp)
                elif view == "speaker":
                    x, y, groups = utterance_means(get, utts), one_hot(spk), None
                else:
                    x, y, groups = paired_frames(get, rate, lambda u: fb.get("hidden_states", 0, u),
                                                 fb.rate("hidden_states"), utts, args.max_frames, args.seed)
                r = pwcca_cv(x, y, groups=groups, trials=args.trials, seed=args.seed)
                out_rows.append({"model": model, "upstream": args.upstream, "ckpt": args.ckpt or "", "stream": key,
                                 "layer": layer, "metric": f"cca_{view}", "value": r.mean, "std": r.std,
                                 "chance": 0.0, **r.sizes(), "dim_y": y.shape[1],
                                 "eps": ";".join(f"{e:g}" for e in r.eps), "trials": args.trials})
                best.setdefault((key, view), {})[layer] = r.mean
    from analysis import samples

    samples.annotate(out_rows)
    io.write_results(out_rows, out, t0, {"corpus": str(corpus), "split": args.split, "n_utts": len(rows),
                                         "n_phone_segments": len(phones), "n_word_segments": len(words),
                                         "word_utts_skipped": len(skipped)})
    io.print_table(out_rows, ["model", "stream", "layer"])
    print(f"wrote {out}")
    if args.suggest_layers:
        chosen = {}
        for stream in [s.strip() for s in args.suggest_streams.split(",") if s.strip()]:
            scores = best.get((stream, args.suggest_view))
            if not scores:
                print(f"--suggest-layers: no '{args.suggest_view}' scores for stream '{stream}' "
                      f"(streams analysed: {', '.join(keys)})", file=sys.stderr)
                continue
            a, b = suggest_layers(scores, args.suggest_frac)
            chosen[stream] = f"{a}-{b}"
        if chosen:
            yml = args.suggest_out or Path(out).with_suffix(".layers.yaml")
            write_layers_config(yml, chosen, f"harness cca --suggest-layers: {model}, view {args.suggest_view}, "
                                              f">= {args.suggest_frac} x best PWCCA ({args.split} split of {corpus})")
            print(f"suggested layers {chosen}: wrote {yml}\n  use: run_downstream.py -u {args.upstream} -g {yml} ...\n"
                  f"  or:  harness run --upstreams {args.upstream} --layers {yml} ...")
    if args.plot:
        from analysis.plots import plot_results

        print(f"wrote {plot_results(out, 'cca')}")
    return 0


def write_layers_config(path: Path, layers: dict[str, str], comment: str) -> Path:
    """An upstream model config (``-g``) holding only ``layers: {stream: "a-b"}``."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# {comment}\n" + yaml.safe_dump({"layers": dict(layers)}, default_flow_style=False, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
