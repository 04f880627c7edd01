"""Turn `harness run` arguments into validated cells and run plans — every check that can fail
(unknown task/upstream/feature, bad layer subset, missing checkpoint, missing dataset path)
happens here, before any training starts."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.superb.cells import Cell, parse_layers_arg
from harness.superb.upstreams import (DEFAULT_UPSTREAMS, UPSTREAMS, CheckpointMissing, checkpoint_hash,
                               checkpoint_model_name)

from harness.corpus.spec import SIZES as CORPUS_SIZES


class SweepError(ValueError):
    """A problem with the requested sweep, found before any training (message says the fix)."""


def split_list(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


# ----------------------------------------------------------------------------- tasks

def task_registry():
    from harness.superb.tasks import TASKS
    return TASKS


def resolve_tasks(names: list[str]) -> list[str]:
    from harness.superb.tasks import UnknownTaskError, get_tasks
    try:
        return [t.name for t in get_tasks(names)]
    except UnknownTaskError as e:
        raise SweepError(str(e)) from e


# ----------------------------------------------------------------------------- upstreams

def resolve_upstreams(names: list[str]) -> list[str]:
    names = names or list(DEFAULT_UPSTREAMS)
    bad = [u for u in names if u not in UPSTREAMS]
    if bad:
        raise SweepError(f"unknown upstream(s) {', '.join(bad)}; known: {', '.join(UPSTREAMS)} (see `harness list`)")
    return names


def random_checkpoint(name: str, preset: str, root: Path, seed: int = 0) -> Path:
    """A seeded random-init model of `preset` saved once as a real checkpoint dir (same seed ->
    same weights -> same hash): a baseline, and a stand-in before trained checkpoints exist."""
    d = Path(root).resolve() / f"{name.replace('_', '-')}-{preset}-random{seed}"
    if (d / "config.json").is_file():
        return d
    import torch

    from upstream.checkpoint import save_checkpoint
    from upstream.registry import build_model, make_config
    try:
        cfg = make_config(name, preset)
    except (KeyError, ValueError) as e:
        raise SweepError(f"--ckpt {name}=random:{preset}: {e}") from e
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, cfg)
    save_checkpoint(model, d, name=name, config=cfg, provenance={"recipe": f"random_init:{preset}", "seed": seed})
    return d


def resolve_checkpoints(upstreams: list[str], ckpt_args: list[str] | None,
                        random_dir: Path = Path("cache/random_checkpoints")) -> dict[str, Path | None]:
    """--ckpt DIR (model read from its config.json), NAME=DIR or NAME=random:PRESET (a seeded
    random-init baseline), repeatable; defaults to the bundled checkpoints/<name>-compact.
    Returns name -> dir (None for upstreams without checkpoints)."""
    given: dict[str, Path] = {}
    for item in ckpt_args or []:
        for part in split_list(item):
            name, sep, path = part.partition("=")
            if not sep:
                path, name = name, None
            if path.startswith("random:"):
                if name not in UPSTREAMS or not UPSTREAMS[name].duet:
                    raise SweepError(f"--ckpt {part}: write NAME=random:PRESET with NAME a DUET upstream")
                given[name] = random_checkpoint(name, path.split(":", 1)[1], random_dir)
                continue
            p = Path(path).expanduser().resolve()
            try:
                model = checkpoint_model_name(p)
            except CheckpointMissing as e:
                raise SweepError(str(e)) from e
            name = name or model
            if name not in UPSTREAMS or not UPSTREAMS[name].duet:
                raise SweepError(f"--ckpt {part}: {name!r} is not a DUET upstream ({', '.join(u for u in UPSTREAMS if UPSTREAMS[u].duet)})")
            if model != name:
                raise SweepError(f"--ckpt {part}: {p}/config.json is a {model!r} checkpoint, not {name!r}")
            given[name] = p
    out: dict[str, Path | None] = {}
    for u in upstreams:
        info = UPSTREAMS[u]
        if not info.duet:
            out[u] = None
            continue
        p = given.get(u) or info.bundled_checkpoint()
        if not (p / "config.json").is_file() or not (p / "model.safetensors").is_file():
            raise SweepError(f"no checkpoint for {u}: {p} (config.json + model.safetensors) does not exist. "
                             f"Pass --ckpt {u}=DIR (e.g. one trained with `harness pretrain`), or drop {u} from --upstreams")
        out[u] = p
    return out


def resolve_features(upstream: str, requested: list[str]) -> list[str]:
    info = UPSTREAMS[upstream]
    if not info.duet:
        return list(info.default_features)    # fbank has one key
    feats = requested or list(info.default_features)
    bad = [f for f in feats if f not in info.features]
    if bad:
        raise SweepError(f"upstream {upstream} has no feature {', '.join(bad)}; it has: {', '.join(info.features)}")
    return feats


def check_feature_names(requested: list[str]) -> None:
    known = sorted({f for i in UPSTREAMS.values() for f in i.features})
    bad = [f for f in requested if f not in known]
    if bad:
        raise SweepError(f"unknown feature(s) {', '.join(bad)}; known: {', '.join(known)}")


# ----------------------------------------------------------------------------- corpus / data

@dataclass
class DataSource:
    """Where the task data lie: a generated corpus (mini configs) or real datasets (real configs)."""
    kind: str                     # "generated" | "real"
    root: Path                    # corpus root, or the data-config YAML
    corpus_id: str
    layout: object                # CorpusLayout (generated) or RealData (real)
    name: str                     # short label for tables: "small", "tiny", "real:<yaml stem>"


def corpus_id_of(root: Path) -> str:
    spec = json.loads((Path(root) / "corpus.json").read_text())
    spec.pop("created", None)
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]


def resolve_corpus(corpus: str, corpora_dir: Path, make: bool = True, workers: int = 1, progress=print) -> DataSource:
    """`tiny|small|large` -> corpora_dir/<size> (generated on first use); else a corpus PATH."""
    from harness.corpus.layout import CorpusError, CorpusLayout
    from harness.corpus.resolve import resolve_corpus as resolve_root

    try:
        root = resolve_root(corpus, corpora_dir, make=make, workers=workers, progress=progress)
    except (CorpusError, OSError, ValueError) as e:
        raise SweepError(f"corpus {corpus}: {e}") from e
    return DataSource("generated", root, corpus_id_of(root), CorpusLayout(root), corpus if corpus in CORPUS_SIZES else root.name)


def resolve_real_data(path: Path, tasks: list[str]) -> DataSource:
    from harness.superb.real_data import RealData

    try:
        data = RealData.load(path)
        data.check(tasks)
    except (OSError, ValueError, KeyError) as e:
        raise SweepError(str(e)) from e
    ds = DataSource("real", Path(path).resolve(), data.data_id(), data.layout(), f"real:{Path(path).stem}")
    ds.real = data
    return ds


# ----------------------------------------------------------------------------- cells

@dataclass
class Sweep:
    cells: list[Cell]
    data: DataSource
    ckpts: dict[str, Path | None]
    configs: dict[str, Path] = field(default_factory=dict)   # task -> downstream config yaml


def task_config(task: str, real: bool) -> Path:
    from harness.superb import taskview
    try:
        return taskview.config_path(task_registry()[task], real)
    except FileNotFoundError as e:
        raise SweepError(str(e)) from e


def steps_overrides(config: Path, steps: int | None) -> str:
    """-o items that cap total_steps at `steps` and keep eval/save/log steps within it."""
    if not steps:
        return ""
    runner = (yaml.safe_load(Path(config).read_text()) or {}).get("runner", {})
    items = [f"config.runner.total_steps={steps}"]
    for k in ("eval_step", "save_step", "log_step"):
        if k == "eval_step" and not runner.get("eval_dataloaders"):
            continue                      # no dev selection (ASV): leave evaluation off
        if k in runner and float(runner[k]) > steps:
            items.append(f"config.runner.{k}={steps}")
    return ",,".join(items)


def build_sweep(tasks: list[str], upstreams: list[str], features: list[str], layers: list[str] | None,
                ckpt_args: list[str] | None, data: DataSource, steps: int | None, seed: int = 1337,
                folds: int | None = None) -> Sweep:
    check_feature_names(features)
    try:
        layer_sets = parse_layers_arg(layers)
    except ValueError as e:
        raise SweepError(str(e)) from e
    ckpts = resolve_checkpoints(upstreams, ckpt_args)
    real = data.kind == "real"
    configs = {t: task_config(t, real) for t in tasks}
    for t, c in configs.items():
        if not c.is_file():
            raise SweepError(f"task {t}: downstream config {c} is missing from this checkout")
    cells = []
    for t in tasks:
        from harness.superb import taskview
        runs = taskview.folds(task_registry()[t], folds)
        cfg_id = hashlib.sha1(configs[t].read_bytes() + steps_overrides(configs[t], steps).encode()
                              + repr(runs).encode()).hexdigest()[:10]
        for u in upstreams:
            info = UPSTREAMS[u]
            h = checkpoint_hash(ckpts[u]) if ckpts[u] is not None else "-"
            for f in resolve_features(u, features):
                specs = layer_sets.get(f, []) + layer_sets.get(None, [])
                if not info.duet or f not in info.layered:
                    specs = ["all"]
                for spec in dict.fromkeys(specs or ["all"]):
                    cells.append(Cell(task=t, upstream=u, ckpt=str(ckpts[u]) if ckpts[u] else None, ckpt_hash=h,
                                      feature=f, layers=spec, corpus=str(data.root), corpus_id=data.corpus_id,
                                      config_id=cfg_id, steps=steps, seed=seed))
    return Sweep(cells, data, ckpts, configs)
