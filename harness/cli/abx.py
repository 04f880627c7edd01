"""`harness abx`: triphone ABX error per layer of every chosen stream of an upstream.

  harness abx --upstream fbank --corpus small                      # hidden_states of s3prl fbank
  harness abx --upstream jooci --features content,other --layers all --plot
  harness abx --upstream learn2diss --ckpt checkpoints/learn2diss-compact --item my.item --audio-dir wavs/
  harness abx --upstream fbank_no_cmvn --corpus small --split unseen     # the unseen-voices set

Features of every layer are extracted once into a feature store (cached, resumable) and reused for
all layers and both conditions (within / across speaker). The sampling plan of a stream is built
once and shared by its layers. Error rates are in % (chance 50). Frame slicing: Libri-light's rule
with its off-by-one by default (``--slicing fastabx`` for the corrected one); see analysis/abx.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from upstream.facts import progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.features import analysis_io as io

    io.add_upstream_arguments(p)
    src = p.add_argument_group("items")
    src.add_argument("--item", type=Path, default=None,
                     help="a Libri-light item file (instead of a corpus' abx/<split>.item)")
    src.add_argument("--audio-dir", type=Path, default=None,
                     help="wavs named <file>.wav that --item refers to (default: the item file's stem as a "
                          "folder beside it, e.g. abx/dev.item -> abx/dev/)")
    io.add_corpus_arguments(p, default=None, splits=("dev", "test", "unseen"))
    a = p.add_argument_group("ABX")
    a.add_argument("--max-size-group", type=int, default=10, help="max tokens per (context, speaker, phone) group")
    a.add_argument("--max-x-across", type=int, default=5, help="max X speakers per cell, across-speaker")
    a.add_argument("--seed", type=int, default=3459, help="sampling seed (Libri-light's default)")
    a.add_argument("--slicing", choices=("librilight", "fastabx"), default="librilight",
                   help="frame slicing: Libri-light's (drops the last frame) or fastabx's (inclusive)")
    a.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="speaker-bootstrap resamples for the 95 %% interval of each score (ci_lo, ci_hi; "
                        "0: none); default 1000")
    io.add_output_arguments(p, "abx")


def audio_files(folder: Path, file_ids: set[str]) -> dict[str, Path]:
    from harness.features.analysis_io import AnalysisError

    out, missing = {}, []
    for f in sorted(file_ids):
        p = folder / f"{f}.wav"
        if not p.is_file():
            p = folder / f"{f}.flac"
        (out.__setitem__(f, p) if p.is_file() else missing.append(f))
    if missing:
        raise AnalysisError(f"{len(missing)} file(s) named in the item file have no audio in {folder}: "
                            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    return out


def run(args: argparse.Namespace) -> int:
    from harness.features.analysis_io import guarded

    return guarded("abx", _run, args)


def _run(args: argparse.Namespace) -> int:
    import sys
    import time


    from analysis import samples
    from analysis.abx import ABXConfig, abx_scores, build_plan, read_item_file, slice_items
    from harness.features import analysis_io as io
    from harness.preflight import files_for_abx

    t0 = time.time()
    io.check_common(args)
    io.check_numbers(args, {"max_size_group": (1, True), "max_x_across": (1, True), "seed": (0, True),
                            "bootstrap": (0, True)})
    out = args.out or io.default_out("abx", args)
    io.check_writable(out)
    if args.item is None:
        corpus = io.resolve_corpus(args.corpus or "small", args.corpora_dir)
        from harness.corpus.layout import CorpusLayout

        item, audio_dir = CorpusLayout(corpus).abx_item(args.split), CorpusLayout(corpus).abx_wav_dir(args.split)
    else:
        item = args.item
        audio_dir = args.audio_dir or item.with_suffix("")
    table = read_item_file(item)
    wavs = audio_files(audio_dir, set(table.file))
    io.check_audio(args, files_for_abx(item, audio_dir), audio_dir)
    upstream = io.open_upstream(args)
    keys = io.choose_keys(args, upstream)
    chosen = io.check_layers(args, upstream, keys)
    store = io.feature_store(args, wavs, keys, upstream)
    cfg = ABXConfig(max_size_group=args.max_size_group, max_x_across=args.max_x_across, seed=args.seed,
                    device=args.device, n_bootstrap=args.bootstrap)
    model = io.model_name(args)
    rows = []
    for key in keys:
        layers = chosen[key]
        rate = store.rate(key)
        plan = kept = None
        for layer in progress_bar(layers, enabled=not args.quiet, desc=f"ABX {key}"):
            feats, k = slice_items(table, lambda f: store.get(key, layer, f), rate, args.slicing)
            if plan is None:
                kept = k
                if len(kept) < len(table):
                    print(f"abx: stream '{key}' at {rate:g} frames/s: {len(table) - len(kept)} of {len(table)} items "
                          "span no frame and are left out" + (" (ABX undefined)" if len(kept) == 0 else ""),
                          file=sys.stderr)
                t = table.subset(kept)
                plan = build_plan(t.phone, t.context, t.speaker, cfg)
            s = abx_scores(feats, plan, cfg)
            for r in s.rows():
                rows.append({"model": model, "upstream": args.upstream, "ckpt": args.ckpt or "", "stream": key,
                             "layer": layer, **r, "chance": 50.0, "n_items_total": len(table),
                             "n_bootstrap": args.bootstrap, "item_file": str(item), "slicing": args.slicing,
                             "rate_hz": rate})
    samples.annotate(rows)
    io.write_results(rows, out, t0, {"item_file": str(item), "n_items_total": len(table)})
    io.print_table(rows, ["model", "stream", "layer"])
    print(f"wrote {out}")
    if args.plot:
        from analysis.plots import plot_results

        png = plot_results(out, "abx")
        print(f"wrote {png}")
    return 0
