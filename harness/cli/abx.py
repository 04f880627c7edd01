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
    io.add_output_arguments(p, "abx")


def abx_audio_files(corpus: Path, split: str, file_ids: set[str]) -> dict[str, Path]:
    """{file id: wav} for the files an item file names, from a corpus' abx/<split>/."""
    from harness.corpus.layout import CorpusLayout

    return audio_files(CorpusLayout(corpus).abx_wav_dir(split), file_ids)


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

    from tqdm import tqdm

    from analysis.abx import ABXConfig, abx_scores, build_plan, read_item_file, slice_items
    from harness.features import analysis_io as io

    t0 = time.time()
    if args.item is None:
        corpus = io.resolve_corpus(args.corpus or "small", args.corpora_dir)
        from harness.corpus.layout import CorpusLayout

        item = CorpusLayout(corpus).abx_item(args.split)
        table = read_item_file(item)
        wavs = abx_audio_files(corpus, args.split, set(table.file))
    else:
        item = args.item
        table = read_item_file(item)
        wavs = audio_files(args.audio_dir or item.with_suffix(""), set(table.file))
    upstream = io.open_upstream(args)
    keys = io.choose_keys(args, upstream)
    store = io.feature_store(args, wavs, keys, upstream)
    cfg = ABXConfig(max_size_group=args.max_size_group, max_x_across=args.max_x_across, seed=args.seed,
                    device=args.device)
    model = io.model_name(args)
    rows = []
    for key in keys:
        layers = io.parse_layers(args.layers, store.num_layers(key), key)
        rate = store.rate(key)
        plan = kept = None
        for layer in tqdm(layers, desc=f"ABX {key}", disable=args.quiet):
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
            for cond, val in (("within", s.within), ("across", s.across)):
                rows.append({"model": model, "upstream": args.upstream, "ckpt": args.ckpt or "", "stream": key,
                             "layer": layer, "metric": f"abx_{cond}", "value": val, "chance": 50.0,
                             "n_items": len(kept), "n_cells": s.n_within_cells if cond == "within" else s.n_across_cells,
                             "item_file": str(item), "slicing": args.slicing, "rate_hz": rate})
    out = args.out or io.default_out("abx", args)
    io.write_results(rows, out, t0, {"item_file": str(item), "n_items_total": len(table)})
    io.print_table(rows, ["model", "stream", "layer"])
    print(f"wrote {out}")
    if args.plot:
        from analysis.plots import plot_results

        png = plot_results(out, "abx")
        print(f"wrote {png}")
    return 0
