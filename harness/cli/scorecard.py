"""`harness scorecard`: the validity scorecard on voices no checkpoint trained on.

  harness scorecard --corpus small                                   # the four bundled checkpoints
  harness scorecard --upstreams jooci=runs/jooci/ckpt,learn2diss --corpus corpora/small --out results/sc

For every stream and layer of each upstream, on the corpus' unseen-voices set (``<corpus>/unseen/``,
added by `harness corpus make` when missing): a speaker-disjoint linear phone probe, triphone ABX
within and across speaker, and a linear speaker probe on mean+std pooled utterances (see
analysis/scorecard.py). The same for the baselines (default s3prl's ``fbank_no_cmvn`` and ``mfcc``)
at their own 100 Hz and at each model's frame rate (pairs of 100 Hz frames averaged: 50 Hz), and for
a random-init twin of each DUET checkpoint (the checkpoint's own config, seeded random weights).

Writes ``OUT.csv`` (one row per model x stream x layer x metric, with chance and sample sizes;
``OUT.csv.meta.json`` has the command, commit, machine), ``OUT.md`` (summary, issue 11's pass/fail
criteria, every layer) and ``OUT.png``/``OUT.pdf`` (score vs layer, one panel per metric).
Features are cached per upstream x checkpoint x evaluation set under ``--cache``.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from upstream.facts import progress_bar
from upstream.facts import RESULTS_DIR

DEFAULT_UPSTREAMS = ("learn2diss", "jooci", "barlow_twins", "hubert_compact")
DEFAULT_BASELINES = ("fbank_no_cmvn", "mfcc")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upstreams", default=",".join(DEFAULT_UPSTREAMS),
                   help="comma-separated DUET upstreams, each NAME (its bundled checkpoint), NAME=CKPT_DIR or "
                        "NAME=random:PRESET (a seeded random model of a preset); default: the four bundled ones")
    p.add_argument("--corpus", default="small",
                   help="tiny|small|medium|large (generated into --corpora-dir on first use) or a corpus PATH; its "
                        "unseen-voices set is added if missing")
    p.add_argument("--corpora-dir", default="corpora", type=Path, help="where generated corpora live")
    p.add_argument("--out", default=Path(RESULTS_DIR) / "scorecard", type=Path,
                   help="output stem: writes OUT.md, OUT.csv (+ .meta.json), OUT.png, OUT.pdf")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="s3prl front-ends scored at 100 Hz and at each model's frame rate ('' for none)")
    p.add_argument("--no-twins", action="store_true", help="skip the random-init twin of each checkpoint")
    p.add_argument("--twin-seed", type=int, default=0, help="seed of the twins' random weights")
    p.add_argument("--reference", default="hubert_compact",
                   help="single-stream upstream whose content speaker probe bounds the others' (criterion)")
    p.add_argument("--layers", default="all", help="layers of every stream: all | 0-3 | 0,2 (0-based)")
    p.add_argument("--cache", default=Path("cache/features/scorecard"), type=Path, help="feature stores")
    p.add_argument("--batch-seconds", type=float, default=0.0,
                   help="padded audio per forward pass; 0 (default): one file per forward, exact (see harness run)")
    p.add_argument("--max-train-frames", type=int, default=10000, help="phone probe: training frames sampled")
    p.add_argument("--phone-test-speakers", type=float, default=0.5,
                   help="phone probe: fraction of the speakers held out (tested on)")
    p.add_argument("--speaker-test-frac", type=float, default=0.25,
                   help="speaker probe: fraction of each speaker's utterances held out")
    p.add_argument("--seed", type=int, default=0, help="probe splits and frame sampling")
    p.add_argument("--device", default="cpu", help="feature extraction device (probes and ABX run on cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from harness.features.analysis_io import guarded

    return guarded("scorecard", _run, args)


# ----------------------------------------------------------------------------------------------
# what is scored

@dataclass
class Entry:
    """One upstream x checkpoint to extract, scored as one or more result models (baselines: one per
    frame rate)."""

    upstream: str
    ckpt: Path | None
    role: str                 # model | twin | baseline
    model: str = ""           # results label (models and twins)
    twin_of: str = ""


def parse_upstreams(spec: str) -> list[tuple[str, str | None]]:
    """'a,b=DIR,c=random:compact' -> [(a, None), (b, DIR), (c, 'random:compact')], checked."""
    from harness.features.analysis_io import AnalysisError
    from upstream.hub import UPSTREAMS

    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, sep, ckpt = part.partition("=")
        if name not in UPSTREAMS:
            raise AnalysisError(f"--upstreams {part}: {name!r} is not a DUET upstream; choose from "
                                f"{', '.join(UPSTREAMS)} (baselines go in --baselines)")
        if sep and not ckpt:
            raise AnalysisError(f"--upstreams {part}: write NAME=CKPT_DIR or NAME=random:PRESET")
        out.append((name, ckpt or None))
    if not out:
        raise AnalysisError("--upstreams is empty: name at least one DUET upstream")
    if len({n for n, _ in out}) != len(out):
        raise AnalysisError(f"--upstreams {spec}: an upstream is named twice")
    return out


def resolve_entries(args) -> list[Entry]:
    import json

    from harness.features.analysis_io import AnalysisError, ckpt_tag
    from upstream.checkpoint import save_random_preset, save_twin
    from upstream.expert_base import bundled_checkpoint
    from upstream.facts import weights_hash

    twins_dir = Path(args.cache) / "random_checkpoints"
    entries: list[Entry] = []
    for name, ckpt in parse_upstreams(args.upstreams):
        if ckpt and ckpt.startswith("random:"):
            preset = ckpt.split(":", 1)[1]
            try:
                p = save_random_preset(name, preset, twins_dir, args.twin_seed)
            except (KeyError, ValueError) as e:
                raise AnalysisError(f"--upstreams {name}={ckpt}: {e}") from e
            entries.append(Entry(name, p, "model", f"{name}[random-{preset}@{weights_hash(p / 'model.safetensors')[:8]}]"))
            continue
        p = Path(ckpt).expanduser() if ckpt else bundled_checkpoint(name)
        if not (p / "config.json").is_file() or not (p / "model.safetensors").is_file():
            raise AnalysisError(f"no checkpoint for {name}: {p} (config.json + model.safetensors) does not exist; "
                                f"pass --upstreams {name}=CKPT_DIR (e.g. one from `harness pretrain`)")
        meta = json.loads((p / "config.json").read_text())
        if meta.get("model") != name:
            raise AnalysisError(f"--upstreams {name}={p}: {p}/config.json is a {meta.get('model')!r} checkpoint")
        label = f"{name}[{ckpt_tag(str(p))[:len(p.name) + 9]}]"
        entries.append(Entry(name, p, "model", label))
        if not args.no_twins:
            h = weights_hash(p / "model.safetensors")
            t = save_twin(name, p, twins_dir, args.twin_seed)
            entries.append(Entry(name, t, "twin", f"{name}[random-twin@{h[:8]}]", twin_of=label))
    for b in [x.strip() for x in args.baselines.split(",") if x.strip()]:
        entries.append(Entry(b, None, "baseline"))
    return entries


# ----------------------------------------------------------------------------------------------
# the evaluation set

def unseen_root(args) -> Path:
    """The corpus (checked), with its unseen-voices set (generated if missing)."""
    import json

    from harness.corpus import make_corpus
    from harness.corpus.layout import CorpusError, CorpusLayout
    from harness.corpus.spec import SIZES
    from harness.features import analysis_io as io

    root = io.resolve_corpus(args.corpus, args.corpora_dir)
    lay = CorpusLayout(root)
    if not lay.unseen_info_json.is_file():
        plan = json.loads(lay.plan_json.read_text())
        if plan.get("size") not in SIZES:
            raise CorpusError(f"{root} has no unseen-voices set and was made with a custom size; regenerate it")
        import sys

        print(f"harness scorecard: adding the unseen-voices set to {root} ...", file=sys.stderr)
        make_corpus(root, size=plan["size"], seed=plan["seed"], workers=1, progress=not args.quiet)
    lay.check_unseen()
    return root


def load_eval_set(root: Path):
    """(EvalSet, {utt: wav path}, unseen info) of a corpus' unseen-voices set."""
    import csv
    import json

    from analysis.abx import read_item_file
    from analysis.scorecard import EvalSet
    from harness.corpus.layout import CorpusLayout
    from harness.features import analysis_io as io

    lay = CorpusLayout(root)
    info = lay.check_unseen()
    with open(lay.unseen_manifest, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["utt_id"])
    segs = {r["utt_id"]: io.read_alignment(lay.alignment("unseen", r["utt_id"])) for r in rows}
    data = EvalSet([r["utt_id"] for r in rows], [r["speaker"] for r in rows], segs, read_item_file(lay.unseen_item))
    wavs = {r["utt_id"]: lay.unseen_wav(r["utt_id"]) for r in rows}
    info = {**info, "corpus": json.loads(lay.corpus_json.read_text()).get("size"), "root": str(root)}
    return data, wavs, info


def eval_set_id(root: Path) -> str:
    import hashlib

    from harness.corpus.layout import CorpusLayout

    lay = CorpusLayout(root)
    return "unseen" + hashlib.sha1(lay.corpus_json.read_bytes() + lay.unseen_info_json.read_bytes()).hexdigest()[:10]


# ----------------------------------------------------------------------------------------------
# the run

def _store(args, e: Entry, wavs: dict, set_id: str):
    from harness.features import analysis_io as io
    from harness.features.store import store_name
    from upstream.facts import weights_hash

    h = weights_hash(e.ckpt / "model.safetensors") if e.ckpt else None
    ns = argparse.Namespace(upstream=e.upstream, ckpt=str(e.ckpt) if e.ckpt else None, model_config=None,
                            cache=Path(args.cache) / store_name(e.upstream, h, set_id), batch_seconds=args.batch_seconds,
                            device=args.device, quiet=args.quiet, features=None)
    up = io.open_upstream(ns)
    keys = [k for k in io.choose_keys(ns, up)] if e.role != "baseline" else ["hidden_states"]
    store = io.feature_store(ns, wavs, keys, up)
    return store, keys


def _run(args: argparse.Namespace) -> int:
    import os
    import sys
    import time


    from analysis.samples import annotate
    from analysis.scorecard import ABXCache, ScorecardConfig, pool_factor, pool_frames, score_layer
    from harness.features import analysis_io as io

    t0 = time.time()
    cfg = ScorecardConfig(phone_test_speakers=args.phone_test_speakers, speaker_test_frac=args.speaker_test_frac,
                          max_train_frames=args.max_train_frames, seed=args.seed)
    entries = resolve_entries(args)
    root = unseen_root(args)
    data, wavs, info = load_eval_set(root)
    set_id = eval_set_id(root)
    cache = ABXCache()
    rows: list[dict] = []
    timing: dict[str, float] = {}
    model_rates: set[float] = set()
    # models first: their content rates decide the baselines' pooled rates
    for e in sorted(entries, key=lambda e: e.role == "baseline"):
        t1 = time.time()
        store, keys = _store(args, e, wavs, set_id)
        t_ext = time.time() - t1
        views = []   # (model label, key, native rate, pool factor)
        if e.role == "baseline":
            rate = store.rate("hidden_states")
            rates = sorted({rate} | {r for r in model_rates if r < rate}, reverse=True)
            for r in rates:
                try:
                    views.append((f"{e.upstream}{{{r:g}Hz}}", "hidden_states", rate, pool_factor(rate, r)))
                except ValueError as err:
                    print(f"scorecard: {e.upstream}: {err}; skipped", file=sys.stderr)
        else:
            views = [(e.model, k, store.rate(k), 1) for k in keys]
            if "content" in keys:
                model_rates.add(store.rate("content"))
        base = {"role": e.role, "upstream": e.upstream, "ckpt": str(e.ckpt or ""), "twin_of": e.twin_of}
        for model, key, rate, factor in views:
            layers = io.parse_layers(args.layers, store.num_layers(key), key)
            for layer in progress_bar(layers, enabled=not args.quiet, desc=f"{model} {key}", leave=False):
                get = (lambda u, k=key, l=layer: store.get(k, l, u)) if factor == 1 else \
                      (lambda u, k=key, l=layer, f=factor: pool_frames(store.get(k, l, u), f))
                for r in score_layer(get, rate / factor, data, cfg, cache):
                    rows.append({"model": model, **base, "stream": key, "layer": layer, "rate_hz": rate / factor, **r})
        timing[e.model or e.upstream] = round(time.time() - t1, 1)
        if not args.quiet:
            print(f"scorecard: {e.model or e.upstream}: extraction {t_ext:.0f} s, all {time.time() - t1:.0f} s",
                  file=sys.stderr)
    annotate(rows, file=None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join(["harness"] + sys.argv[1:]) if Path(sys.argv[0]).name in ("harness", "__main__.py")
            else " ".join(sys.argv), "corpus": str(root), "unseen": {k: info[k] for k in ("size", "seed", "counts", "hours")},
            "load_avg_end": [round(x, 2) for x in os.getloadavg()], "seconds_per_upstream": timing,
            "config": {k: getattr(cfg, k) for k in ("phone_test_speakers", "speaker_test_frac", "max_train_frames",
                                                    "max_test_frames", "probe_iters", "l2", "seed")}}
    csv_path = io.write_results(rows, out.with_suffix(".csv"), t0, meta)
    import json

    meta = json.loads(csv_path.with_name(csv_path.name + ".meta.json").read_text())
    md = render_markdown(rows, entries, meta, info, args)
    from upstream.facts import atomic_write_text

    atomic_write_text(out.with_suffix(".md"), md)
    from analysis.plots import plot_scorecard

    png, _ = plot_scorecard(rows, out, title=f"Scorecard on {info['counts']['speakers']} unseen voices")
    print(f"wrote {out.with_suffix('.md')}, {csv_path}, {png} ({time.time() - t0:.0f} s)")
    return 0


# ----------------------------------------------------------------------------------------------
# Markdown

def _fmt(v, metric: str) -> str:
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.2f}" if metric.startswith("abx") else f"{v:.3f}"


def render_markdown(rows: list[dict], entries: list[Entry], meta: dict, info: dict, args) -> str:
    from analysis.scorecard import CLOSE_ITEMS, CRITERIA, METRICS, TITLES, criteria, summarize
    from analysis.samples import MIN_ABX_KEPT_FRACTION, abx_coverage_too_low

    summ = summarize(rows)
    models = {}
    for e in entries:
        if e.role != "model":
            continue
        rate = next((r["rate_hz"] for r in rows if r["model"] == e.model and r["stream"] == "content"), None)
        twin = next((t.model for t in entries if t.role == "twin" and t.twin_of == e.model), None)
        models[e.model] = {"upstream": e.upstream, "twin": twin, "rate": rate}
    fbank = {r["rate_hz"]: r["model"] for r in rows if r["upstream"] == "fbank_no_cmvn"}
    ref = next((m for m, i in models.items() if i["upstream"] == args.reference), None)
    crits = criteria(summ, models, fbank, ref)
    c = info["counts"]
    L = [f"# Validity scorecard on unseen voices ({info['corpus']} corpus)", ""]
    L += [f"Command: `{meta['command']}`  ", f"Commit: `{meta['commit']}`; machine: {meta['machine']}; "
          f"{meta['utc']}; wall {meta['wall_s']:.0f} s (load average at the end "
          f"{', '.join(map(str, meta.get('load_avg_end', [])))}).", ""]
    L += [f"Evaluation set: `{info['root']}/unseen` — {c['speakers']} speakers ({c['female_speakers']} female) x "
          f"{c['utterances'] // c['speakers']} utterances = {c['utterances']} utterances, {info['hours'] * 60:.1f} min; "
          f"{c['abx_items']} ABX items. Voices at or beyond the edges of the training voices' ranges (own seed "
          f"stream, no near-duplicate of any training voice), sentences from a list training never reads "
          f"(harness/corpus/layout.py, voices.py).", ""]
    L += ["Measures (analysis/scorecard.py): **phone probe** = linear probe frame -> phone, trained on "
          f"{1 - args.phone_test_speakers:.0%} of the speakers, tested on the others (speaker-disjoint); **ABX** = "
          "triphone ABX error % within / across speaker (Libri-light protocol, chance 50); **speaker probe** = "
          f"linear probe on mean+std pooled utterances, {args.speaker_test_frac:.0%} of each speaker's utterances "
          "held out. Baselines are s3prl front-ends at their 100 Hz and at the models' frame rate by averaging "
          "pairs of 100 Hz frames (`{50Hz}`). Twins: the checkpoint's own config with seeded random weights "
          f"(seed {args.twin_seed}).", ""]
    L += ["## Summary (each column at the layer holding the most of it: probes highest, ABX lowest; layer in "
          "brackets)", ""]
    L += ["| model | role | stream | rate Hz | " + " | ".join(TITLES[m] for m in METRICS) + " |",
          "|---|---|---|---|" + "---|" * len(METRICS)]
    order = {"model": 0, "twin": 1, "baseline": 2}
    keys = sorted(summ, key=lambda k: (order.get(_role(rows, k[0]), 3), k[0], k[1]))
    for k in keys:
        rate = next(r["rate_hz"] for r in rows if (r["model"], r["stream"]) == k)
        cells = [f"{_fmt(summ[k][m].value, m)} (L{summ[k][m].layer}){'*' if summ[k][m].warnings else ''}"
                 if summ[k][m].layer is not None else "n/a" for m in METRICS]
        L.append(f"| {k[0]} | {_role(rows, k[0])} | {k[1]} | {rate:g} | " + " | ".join(cells) + " |")
    L += ["", "\\* the value has a small-sample warning (listed below). n/a for ABX: fewer than "
          f"{MIN_ABX_KEPT_FRACTION:.0%} of the items span a frame of the stream (a frame rate too low for most "
          "phones), so its ABX would be measured on another, much smaller item set and compare with nothing; "
          "the CSV keeps that value with its warning.", ""]
    L += ["Chance and sample sizes (identical for every model at one frame rate unless a range is shown):", ""]
    L += ["| rate Hz | phone probe chance | phone train / test frames (test utts) | phones | speaker probe chance | "
          "speaker train / test utts | speakers | ABX items kept / total | ABX cells within / across |",
          "|---|---|---|---|---|---|---|---|---|"]
    for rate in sorted({r["rate_hz"] for r in rows}, reverse=True):
        rr = [r for r in rows if r["rate_hz"] == rate]
        p = [r for r in rr if r["metric"] == "probe_phone"]
        s = [r for r in rr if r["metric"] == "probe_speaker"]
        aw = [r for r in rr if r["metric"] == "abx_within"]
        aa = [r for r in rr if r["metric"] == "abx_across"]
        L.append(f"| {rate:g} | {_rng(p, 'chance', '.3f')} | {_rng(p, 'n_train')} / {_rng(p, 'n_test')} "
                 f"({_rng(p, 'n_test_groups')}) | {_rng(p, 'n_classes')} | {_rng(s, 'chance', '.3f')} | "
                 f"{_rng(s, 'n_train')} / {_rng(s, 'n_test')} | {_rng(s, 'n_classes')} | {_rng(aw, 'n_items')} / "
                 f"{_rng(aw, 'n_items_total')} | {_rng(aw, 'n_cells')} / {_rng(aa, 'n_cells')} |")
    L += ["", "## Issue 11's criteria (what must hold)", ""]
    L += ["| model | criterion | measured | result |", "|---|---|---|---|"]
    for cr in crits:
        res = "n/a" if cr.passed is None else ("PASS" if cr.passed else "FAIL")
        L.append(f"| {cr.model} | {CRITERIA[cr.name]} | {cr.measured} | **{res}** |")
    n_pass = sum(cr.passed is True for cr in crits)
    n_close = sum(cr.close for cr in crits)
    L += ["", f"{n_pass} of {len(crits)} criteria pass. Content/other values are the summary's (best layer for "
          "what a stream is for, the most-leaking layer for what it should not hold). "
          f"\"[k of n held-out items apart]\" marks a probe comparison decided by at most {CLOSE_ITEMS} held-out "
          "items, \"[inside each other's 95 % interval]\" two ABX errors each inside the other's speaker-bootstrap "
          f"interval ({n_close} of the criteria have one or the other): read them as ties, not as passes or fails.", ""]
    warns = sorted({(r["model"], r["metric"], r["warnings"]) for r in rows if r.get("warnings")})
    if warns:
        L += ["Small-sample warnings (analysis/samples.py):", ""]
        L += [f"- {m} {met}: {w}" for m, met, w in warns]
        L.append("")
    L += ["## Every layer", "", "| model | stream | layer | rate Hz | " + " | ".join(TITLES[m] for m in METRICS) + " |",
          "|---|---|---|---|" + "---|" * len(METRICS)]
    by = {}
    for r in rows:
        by.setdefault((r["model"], r["stream"], r["layer"], r["rate_hz"]), {})[r["metric"]] = r
    for (m, s, layer, rate) in sorted(by, key=lambda k: (order.get(_role(rows, k[0]), 3), k[0], k[1], k[2])):
        d = by[(m, s, layer, rate)]
        cells = []
        for met in METRICS:
            r = d.get(met)
            shown = bool(r) and not abx_coverage_too_low(r)
            v = _fmt(r["value"], met) if shown else "n/a"
            if shown and met.startswith("abx") and r.get("ci_lo") is not None and math.isfinite(float(r["ci_lo"])):
                v += f" [{float(r['ci_lo']):.1f}, {float(r['ci_hi']):.1f}]"
            cells.append(v)
        L.append(f"| {m} | {s} | {layer} | {rate:g} | " + " | ".join(cells) + " |")
    L += ["", "ABX brackets: 95 % speaker-bootstrap interval. Figure: "
          f"![scorecard]({Path(args.out).name}.png)", ""]
    return "\n".join(L)


def _role(rows, model) -> str:
    return next((r["role"] for r in rows if r["model"] == model), "")


def _rng(rows, key, fmt="d") -> str:
    vals = sorted({r[key] for r in rows if r.get(key) is not None})
    if not vals:
        return "-"
    f = (lambda v: f"{v:{fmt}}") if fmt != "d" else (lambda v: f"{int(v)}")
    return f(vals[0]) if len(vals) == 1 else f"{f(vals[0])}–{f(vals[-1])}"
