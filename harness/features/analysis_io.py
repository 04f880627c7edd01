"""Plumbing shared by ``harness abx|cca|probe``: corpus and upstream arguments, the feature store,
layer selections and the results CSV (long format, one row per model x stream x layer x metric).

Results CSV columns: ``model, upstream, ckpt, stream, layer, metric, value, chance`` plus
command-specific columns; a ``<csv>.meta.json`` beside it records the command line, git commit,
machine and wall time. ``harness plot`` reads these files.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from upstream import facts
from upstream.facts import RESULTS_DIR, SAMPLE_RATE, atomic_write_json, atomic_write_text, weights_hash



class AnalysisError(RuntimeError):
    """Bad analysis arguments; the message says what to change."""


# ----------------------------------------------------------------------------------------------
# arguments

def add_upstream_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("upstream")
    g.add_argument("--upstream", "-u", required=True,
                   help="s3prl upstream name: a DUET one (learn2diss, jooci, barlow_twins, hubert_compact) or an "
                        "s3prl built-in such as fbank, mfcc")
    g.add_argument("--ckpt", "-k", default=None, help="checkpoint directory (DUET upstreams: default the bundled one)")
    g.add_argument("--model-config", "-g", default=None, help="upstream model config YAML (as run_downstream.py -g)")
    g.add_argument("--features", default=None,
                   help="comma-separated feature keys (streams); default content,other for DUET upstreams "
                        "that return them, else hidden_states")
    g.add_argument("--layers", default="all", help="layers to analyse: all | 6-11 | 0,3,5 | 2-4,8 (0-based, inclusive)")
    g.add_argument("--cache", default=None, type=Path,
                   help="feature store directory (default cache/features/<upstream>[-<ckpt hash>])")
    g.add_argument("--cache-max-gb", type=float, default=50.0,
                   help="refuse (before extracting) a feature store estimated above this size (float16; default 50)")
    g.add_argument("--batch-seconds", type=float, default=0.0,
                   help="padded audio per forward pass during extraction; 0 (default): one file per forward, so a "
                        "file's features do not depend on which files were extracted with it (> 0: faster on a "
                        "GPU, last bits depend on the batch; harness/features/planning.py)")
    g.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    g.add_argument("--no-preflight", action="store_true",
                   help="skip the pre-flight audio check of every file read (harness/preflight.py)")


def add_corpus_arguments(p: argparse.ArgumentParser, default: str | None = "small",
                         splits: tuple[str, ...] = ("dev", "test", "train")) -> None:
    p.add_argument("--corpus", default=default,
                   help="tiny|small|medium|large (generated into --corpora-dir on first use) or a corpus PATH")
    p.add_argument("--corpora-dir", default="corpora", type=Path, help="where generated corpora live")
    p.add_argument("--split", default="dev", choices=splits, help="corpus split to analyse (default dev)")


def add_output_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--out", type=Path, default=None,
                   help=f"results CSV (default results/{name}/<model>-<split>.csv)")
    p.add_argument("--plot", action="store_true", help="also write a PNG next to the CSV (harness plot)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve_corpus(arg: str | None, corpora_dir: Path, make: bool = True) -> Path:
    """A corpus size name (generated if missing) or an existing corpus path; checked."""
    from harness.corpus.layout import CorpusError
    from harness.corpus.resolve import resolve_corpus as resolve_root

    try:
        return resolve_root(arg, corpora_dir, make=make, workers=max(1, os.cpu_count() or 1),
                            progress=lambda m: print(m, file=sys.stderr))
    except CorpusError as e:
        raise AnalysisError(str(e)) from e


# 'all' | '6-11' | '0,3,5' | '2-4,8' -> sorted layer indices, checked against the key's layers
parse_layers = functools.partial(facts.parse_layers, error=AnalysisError, noun="layers")


# ----------------------------------------------------------------------------------------------
# checks before any work (arguments, output, audio)

def check_numbers(args, rules: dict[str, tuple[float, bool]]) -> None:
    """``rules``: option dest -> (minimum, inclusive); None values (option not given) pass.
    Every checked value must be finite and at least (or above) its minimum, else AnalysisError
    naming the option."""
    import math

    for dest, (lo, inclusive) in rules.items():
        v = getattr(args, dest, None)
        if v is None:
            continue
        opt = "--" + dest.replace("_", "-")
        if not math.isfinite(v) or (v < lo if inclusive else v <= lo):
            raise AnalysisError(f"{opt} {v}: must be a number {'>=' if inclusive else '>'} {lo:g}")


def check_common(args) -> None:
    """The options every analysis shares: --layers syntax (its range is checked against the model
    in :func:`check_layers`) and --batch-seconds."""
    check_numbers(args, {"batch_seconds": (0, True), "cache_max_gb": (0, False)})
    parse_layers(args.layers, None, "--layers")


def check_layers(args, upstream, keys: list[str]) -> dict[str, list[int]]:
    """{key: layers} of --layers for each key, checked against the layers the upstream returns
    (one forward pass on 1 s of silence), before any extraction."""
    import torch

    with torch.no_grad():
        out = upstream([torch.zeros(SAMPLE_RATE)])
    have = [k for k in out if not str(k).startswith("_")]
    missing = [k for k in keys if k not in out]
    if missing:
        raise AnalysisError(f"--features: upstream {args.upstream} has no key(s) {', '.join(missing)}; "
                            f"it returns: {', '.join(have)}")
    return {k: parse_layers(args.layers, len(out[k]) if isinstance(out[k], (list, tuple)) else 1, k) for k in keys}


def check_writable(out: Path) -> None:
    """The results CSV's folder can be created and written (found before any work)."""
    folder = Path(out).parent
    why = facts.unwritable_dir(folder)
    if why:
        raise AnalysisError(f"--out {out}: cannot write to {folder} ({why}); choose a writable --out")


def restrict(files, wavs):
    """A harness.preflight.FileList cut down to the audio files ``wavs`` (e.g. --max-utts of a split);
    problems of other listed files that are not on disk are dropped, every other problem kept."""
    keep = {os.path.abspath(w) for w in wavs}
    files.files = [f for f in files.files if os.path.abspath(f) in keep]
    files.problems = [p for p in files.problems
                      if p.kind != "missing" or not p.where or os.path.abspath(p.path) in keep]
    return files


def check_audio(args, files, root) -> None:
    """The pre-flight audio check of ``files`` (a harness.preflight.FileList; cached per ``root``)
    unless --no-preflight; raises harness.preflight.PreflightError listing the bad files."""
    if getattr(args, "no_preflight", False):
        return
    from harness.preflight import check_audio as check, default_cache_path

    report = check(files, cache_path=default_cache_path(root), workers=2)
    report.raise_for_problems()
    if not getattr(args, "quiet", False):
        print(report.format(), file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# upstream + features

def ckpt_tag(ckpt: str | None) -> str:
    if ckpt is None:
        return ""
    p = Path(ckpt)
    w = p / "model.safetensors" if p.is_dir() else p
    if w.is_file():
        return f"{p.name}@{weights_hash(w)}"
    return p.name


def model_name(args) -> str:
    """Label of an upstream in results: name[ckpt@hash]{-g config stem}."""
    tag = ckpt_tag(args.ckpt)
    cfg = getattr(args, "model_config", None)
    return args.upstream + (f"[{tag}]" if tag else "") + (f"{{{Path(cfg).stem}}}" if cfg else "")


def open_upstream(args):
    """Build the upstream once (for probing its keys and for extraction)."""
    from harness.features.store import load_upstream

    return load_upstream(args.upstream, args.ckpt, args.model_config)


def choose_keys(args, upstream) -> list[str]:
    """--features, or the streams the upstream returns (content, other) else hidden_states."""
    if args.features:
        return [k.strip() for k in args.features.split(",") if k.strip()]
    import torch

    with torch.no_grad():
        out = upstream([torch.zeros(SAMPLE_RATE)])
    keys = [k for k in ("content", "other") if isinstance(out.get(k), (list, tuple)) and len(out[k]) > 0]
    return keys or ["hidden_states"]


def feature_store(args, wavs: dict[str, Path], keys: list[str], upstream=None):
    """Extract (once; cached, resumable) every layer of ``keys`` for ``wavs``; returns the store."""
    from harness.features.store import FeatureStore

    root = args.cache
    if root is None:
        from harness.features.store import store_name

        h = weights_hash(args.ckpt) if args.ckpt is not None else None
        root = Path("cache") / "features" / store_name(args.upstream, h, model_config=args.model_config)
    store = FeatureStore(root)
    store.extract(args.upstream, args.ckpt, keys, wavs, model_config=args.model_config,
                  batch_seconds=args.batch_seconds, device=args.device, upstream=upstream,
                  progress=not getattr(args, "quiet", False), max_gb=getattr(args, "cache_max_gb", None))
    return store


# ----------------------------------------------------------------------------------------------
# results

def default_out(name: str, args) -> Path:
    model = model_name(args)
    for a, b in (("[", "-"), ("]", ""), ("{", "-"), ("}", ""), ("@", "-"), ("/", "_")):
        model = model.replace(a, b)
    return Path(RESULTS_DIR) / name / f"{model}-{args.split}.csv"


def write_results(rows: list[dict], out: Path, started: float, extra_meta: dict | None = None) -> Path:
    """Write the CSV atomically plus ``<out>.meta.json`` (command, commit, machine, wall time)."""
    import pandas as pd

    from upstream.facts import git_commit, machine_here

    out = Path(out)
    atomic_write_text(out, pd.DataFrame(rows).to_csv(index=False))
    via_cli = Path(sys.argv[0]).name in ("harness", "__init__.py", "__main__.py", "-m") or sys.argv[0].endswith("harness/cli/__init__.py")
    meta = {"command": " ".join((["harness"] + sys.argv[1:]) if via_cli else sys.argv),
            "commit": git_commit(), "machine": machine_here(), "wall_s": round(time.time() - started, 2),
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    meta.update(extra_meta or {})
    atomic_write_json(out.with_name(out.name + ".meta.json"), meta, sort_keys=False)
    return out


def print_table(rows: list[dict], index: list[str], columns: str = "metric") -> None:
    import pandas as pd

    if not rows:
        print("(no results)")
        return
    df = pd.DataFrame(rows)
    wide = df.pivot_table(index=index, columns=columns, values="value", aggfunc="first")
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))


# ----------------------------------------------------------------------------------------------
# corpus utterances (manifest + alignments + per-utterance records)

def corpus_utterances(root: Path, split: str, max_utts: int | None = None) -> list[dict]:
    """Manifest rows of a split with absolute ``wav`` and ``alignment`` paths (sorted by utt_id)."""
    import csv

    from harness.corpus.layout import CorpusLayout

    lay = CorpusLayout(root)
    with open(lay.manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    if not rows:
        raise AnalysisError(f"{lay.manifest} has no utterances of split '{split}'")
    rows.sort(key=lambda r: r["utt_id"])
    if max_utts:
        rows = rows[:max_utts]
    for r in rows:
        r["wav"] = Path(root) / r["librispeech"]
        r["alignment_path"] = lay.alignment(split, r["utt_id"])
        r["record"] = lay.read_record(r["speaker"], r["utt_id"])
    return rows


def read_alignment(path: Path) -> list[tuple[float, float, str]]:
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            cols = line.split()
            if not cols:
                continue
            if len(cols) != 3:
                raise AnalysisError(f"{path}:{n}: expected 'onset offset phone', got {line.strip()!r}")
            out.append((float(cols[0]), float(cols[1]), cols[2]))
    return out


def read_words(record: dict | None, sample_rate: int = SAMPLE_RATE) -> tuple[list, list] | None:
    """(phones in seconds, [(word, phones)]) from a corpus utterance record
    (``CorpusLayout.read_record``), None if absent."""
    if not record:
        return None
    rec = record
    phones = [(a / sample_rate, b / sample_rate, p) for a, b, p in rec["phones"]]
    words = [tuple(w) for w in rec.get("words", [])]
    return phones, words


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (printed as one line, exit status 2), not a bug."""
    from analysis.abx import ItemFileError, MissingFeaturesError
    from analysis.checks import AnalysisInputError
    from harness.features.store import FeatureStoreError
    from harness.preflight import PreflightError

    errs: list[type[BaseException]] = [AnalysisError, ItemFileError, MissingFeaturesError, FeatureStoreError,
                                       AnalysisInputError, PreflightError]
    try:
        from harness.corpus.layout import CorpusError

        errs.append(CorpusError)
    except ImportError:
        pass
    try:
        from upstream.expert_base import UpstreamConfigError

        errs.append(UpstreamConfigError)
    except ImportError:
        pass
    try:
        from upstream.checkpoint import CheckpointError

        errs.append(CheckpointError)
    except ImportError:
        pass
    return tuple(errs)


def guarded(name: str, fn, args) -> int:
    """Run a command; bad input becomes ``harness NAME: error: ...`` on stderr and exit status 2."""
    try:
        return int(fn(args) or 0)
    except known_errors() as e:
        print(f"harness {name}: error: {e}", file=sys.stderr)
        return 2
