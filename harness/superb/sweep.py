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
from harness.superb.upstreams import (DEFAULT_UPSTREAMS, UPSTREAMS, CheckpointMissing, UnknownUpstream,
                                      checkpoint_hash, checkpoint_model_name, ckpt_identity, upstream_info)

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
    """DUET's upstreams, fbank, and any other name on s3prl's hub (looked up only when needed)."""
    names = list(dict.fromkeys(names or DEFAULT_UPSTREAMS))
    for u in names:
        try:
            upstream_info(u)
        except UnknownUpstream as e:
            raise SweepError(str(e)) from e
    return names


def check_steps(steps: int | None) -> int | None:
    """--steps: None (the config's total_steps) or a positive cap; 0 or negative is an error."""
    if steps is not None and steps <= 0:
        raise SweepError(f"--steps {steps}: must be a positive number of training steps (omit --steps to use "
                         f"each config's total_steps)")
    return steps


def check_folds(folds: int | None, tasks: list[str]) -> int | None:
    """--folds N: 1..(folds of the tasks that have folds); an error when no chosen task has folds."""
    if folds is None:
        return None
    have = {t: len(task_registry()[t].folds) for t in tasks if task_registry()[t].folds}
    if not have:
        raise SweepError(f"--folds {folds}: none of the tasks {', '.join(tasks)} has folds (er does); drop --folds")
    most = max(have.values())
    if not 1 <= folds <= most:
        raise SweepError(f"--folds {folds}: out of range; {', '.join(f'{t} has {n}' for t, n in have.items())} "
                         f"folds (1-{most}; omit --folds for all, as SUPERB reports)")
    return folds


def check_results_dir(path: Path) -> Path:
    """The results dir exists or can be made, and a file can be written in it."""
    from upstream.facts import unwritable_dir

    p = Path(path)
    why = unwritable_dir(p)
    if why:
        raise SweepError(f"--results {p}: cannot write there ({why}); pass a writable directory")
    return p


def validate_layer_subsets(upstreams: list[str], features: list[str], layers: list[str] | None,
                       ckpts: dict[str, Path | None]) -> None:
    """Every --layers subset within the real layer count of each DUET upstream's stream: the model is
    built once from its checkpoint (as run_downstream.py -k would) and its layers counted."""
    from upstream.expert_base import ExpertOptions, UpstreamConfigError
    from upstream.facts import parse_layers

    try:
        layer_sets = parse_layers_arg(layers)
    except ValueError as e:
        raise SweepError(str(e)) from e
    for u in upstreams:
        info = upstream_info(u)
        if not info.duet:
            continue
        todo = [(f, spec) for f in resolve_features(u, features) if f in info.layered
                for spec in dict.fromkeys(layer_sets.get(f, []) + layer_sets.get(None, [])) if spec != "all"]
        if not todo:
            continue
        from harness.features.store import load_upstream
        try:
            expert = load_upstream(u, str(ckpts[u]) if ckpts.get(u) else None)
        except (ValueError, OSError, RuntimeError) as e:
            raise SweepError(f"upstream {u} (-k {ckpts.get(u)}): {e}") from e
        for f, spec in todo:
            try:
                ExpertOptions.load({"layers": {f: spec}})
                parse_layers(spec, expert.num_layers[f], f, error=UpstreamConfigError)
            except UpstreamConfigError as e:
                raise SweepError(f"--layers {spec} for {u}:{f}: {e}") from e


def random_checkpoint(name: str, preset: str, root: Path, seed: int = 0) -> Path:
    """A seeded random-init model saved once as a real checkpoint dir (same seed -> same weights ->
    same hash): a baseline, and a stand-in before trained checkpoints exist. ``preset`` is a preset
    name, or a checkpoint directory of ``name``: then the random twin of that checkpoint, its own config
    (e.g. a Barlow Twins split by layer) with seeded random weights, the same weights as
    ``harness scorecard``'s twin of it at the same seed."""
    from upstream.checkpoint import CheckpointError, save_random_preset, save_twin
    from upstream.registry import get_spec

    src = Path(preset).expanduser()
    if (src / "config.json").is_file():
        try:
            return save_twin(name, src, Path(root).resolve(), seed)
        except CheckpointError as e:
            raise SweepError(f"--ckpt {name}=random:{preset}: {e}") from e
    try:
        presets = get_spec(name).presets
    except KeyError as e:
        raise SweepError(f"--ckpt {name}=random:{preset}: {e}") from e
    if preset not in presets:
        what = f"{src} has no config.json" if src.exists() else f"no preset and no checkpoint directory {preset!r}"
        raise SweepError(f"--ckpt {name}=random:{preset}: {what}; write random:PRESET ({', '.join(sorted(presets))}) "
                         f"or random:CHECKPOINT_DIR")
    try:
        return save_random_preset(name, preset, Path(root).resolve(), seed)
    except (KeyError, ValueError) as e:
        raise SweepError(f"--ckpt {name}=random:{preset}: {e}") from e


def resolve_checkpoints(upstreams: list[str], ckpt_args: list[str] | None,
                        random_dir: Path = Path("cache/random_checkpoints")) -> dict[str, Path | None]:
    """--ckpt DIR (model read from its config.json), NAME=DIR, NAME=random:PRESET or NAME=random:CKPT_DIR (a seeded
    random-init baseline), repeatable; defaults to the bundled checkpoints/<name>-compact.
    Returns name -> dir (None for upstreams without checkpoints)."""
    from upstream import importers
    from upstream.expert_base import BACKBONE_MODELS

    given: dict[str, Path | str] = {}
    for item in ckpt_args or []:
        for part in split_list(item):
            name, sep, path = part.partition("=")
            if not sep:
                path, name = name, None
            if name is not None:
                try:
                    info = upstream_info(name)
                except UnknownUpstream as e:
                    raise SweepError(f"--ckpt {part}: {e}") from e
                if name not in upstreams:
                    raise SweepError(f"--ckpt {part}: {name} is not in --upstreams ({', '.join(upstreams)}); add it")
            if path.startswith("random:"):
                if name is None or not info.duet:
                    raise SweepError(f"--ckpt {part}: write NAME=random:PRESET or NAME=random:CKPT_DIR with NAME a DUET upstream")
                given[name] = random_checkpoint(name, path.split(":", 1)[1], random_dir)
                continue
            if name is not None and not info.duet:   # s3prl's own upstream: -k passed through unchanged
                if path.startswith(("http://", "https://")):
                    given[name] = path
                    continue
                p = Path(path).expanduser().resolve()
                if not p.exists():
                    raise SweepError(f"--ckpt {part}: {p} does not exist; pass what `run_downstream.py -u {name} -k` "
                                     f"takes (a file, a directory or a URL)")
                given[name] = p
                continue
            p = Path(path).expanduser().resolve()
            imported = p.is_dir() and importers.is_hf_dir(p) or p.is_file() and p.suffix in (".pt", ".pth", ".ckpt")
            if imported and name is not None:
                if name not in BACKBONE_MODELS:
                    raise SweepError(f"--ckpt {part}: {name} takes a DUET checkpoint directory; a transformers "
                                     f"HuBERT/WavLM directory or a fairseq .pt works for {', '.join(BACKBONE_MODELS)}")
                if p.is_file():       # read it now as the expert will (tensors only: no allow_unpickle here)
                    try:
                        importers.read_fairseq_hubert(p)
                    except (ValueError, KeyError) as e:
                        raise SweepError(f"--ckpt {part}: {e}") from e
                given[name] = p
                continue
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
    out: dict[str, Path | str | None] = {}
    for u in upstreams:
        info = upstream_info(u)
        if not info.duet:
            out[u] = given.get(u)
            continue
        p = Path(given.get(u) or info.bundled_checkpoint())
        if p.is_file() or importers.is_hf_dir(p) or (p / "config.json").is_file() and (p / "model.safetensors").is_file():
            out[u] = p
            continue
        raise SweepError(f"no checkpoint for {u}: {p} (config.json + model.safetensors) does not exist. "
                         f"Pass --ckpt {u}=DIR (e.g. one trained with `harness pretrain`), or drop {u} from --upstreams")
    return out


def ckpt_hash_of(upstream: str, ckpt: Path | str | None) -> str:
    """The hash a cell records for its checkpoint ("-" for none; a URL's text hash)."""
    from upstream.importers import is_hf_dir

    if ckpt is None:
        return "-"
    p = Path(ckpt)
    try:
        if upstream_info(upstream).duet and p.is_dir() and not is_hf_dir(p):
            return checkpoint_hash(p)
        if p.exists():
            return ckpt_identity(p)
    except CheckpointMissing as e:
        raise SweepError(str(e)) from e
    return hashlib.sha1(str(ckpt).encode()).hexdigest()[:12]


def resolve_features(upstream: str, requested: list[str]) -> list[str]:
    info = upstream_info(upstream)
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
    """`tiny|small|medium|large` -> corpora_dir/<size> (generated on first use); else a corpus PATH."""
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
    if steps is None:
        return ""
    check_steps(steps)
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
                folds: int | None = None, per_task_defaults: bool = False) -> Sweep:
    """Every cell of tasks x upstreams x features x layer subsets; ``per_task_defaults`` (a bare
    `harness run`): each task gets only its own controls (upstreams.default_upstreams) among them."""
    from harness.superb.upstreams import default_upstreams
    check_feature_names(features)
    check_steps(steps)
    check_folds(folds, tasks)
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
            if per_task_defaults and u not in default_upstreams(t):
                continue
            info = upstream_info(u)
            h = ckpt_hash_of(u, ckpts[u])
            for f in resolve_features(u, features):
                specs = layer_sets.get(f, []) + layer_sets.get(None, [])
                if not info.duet or f not in info.layered:
                    specs = ["all"]
                for spec in dict.fromkeys(specs or ["all"]):
                    cells.append(Cell(task=t, upstream=u, ckpt=str(ckpts[u]) if ckpts[u] else None, ckpt_hash=h,
                                      feature=f, layers=spec, corpus=str(data.root), corpus_id=data.corpus_id,
                                      config_id=cfg_id, steps=steps, seed=seed))
    return Sweep(cells, data, ckpts, configs)
