"""What every recipe shares: the run context, ``key=value`` overrides, cached pseudo-labels,
phase execution (one ``Trainer`` per phase, resumable) and the final checkpoint + model card.

Run directory layout (``--out DIR``)::

    DIR/cache/            decoded audio, MFCC/k-means labels, teacher embeddings, augmentation bank
    DIR/<phase>/          a Trainer run: state/ (resumable), log.csv, tb/, loss_curve.png, model/, DONE.json
    DIR/final/            model.safetensors + config.json (provenance) + MODEL_CARD.md + loss_curve.png
"""
from __future__ import annotations

import dataclasses
import json
import time
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pretrain.data import AudioBank, DataConfig, FrameLabels, find_training_audio, frames, mfcc_features
from pretrain.kmeans import KMeans, KMeansConfig
from pretrain.trainer import TrainConfig, Trainer, machine_description, plot_losses
from upstream.facts import SAMPLE_RATE, atomic_write_json, git_commit, progress_bar, resolve_path  # noqa: F401  (re-exported)




def required_train_split(cfg) -> list[str]:
    """Corpus-relative paths every recipe reads: the LibriSpeech split it trains on."""
    return [f"LibriSpeech/{cfg.data.split}"]


class RecipeError(ValueError):
    """Bad recipe input (unknown key, missing corpus files or checkpoints); raised before any work."""


# ------------------------------------------------------------------------------------ overrides
def _parse_value(raw: str, typ, current):
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if type(None) in args:               # ``int | None``: "none" (or empty) -> None, else the other type
        if raw.strip().lower() in {"", "none", "null"}:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(raw, inner[0] if len(inner) == 1 else str, None)
    if typ is bool or isinstance(current, bool):
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true/false, got {raw!r}")
    if typ is int or (isinstance(current, int) and not isinstance(current, bool)):
        return int(raw)
    if typ is float or isinstance(current, float):
        return float(raw)
    if origin is tuple or isinstance(current, tuple):
        items = [s for s in raw.split(",") if s.strip()]
        args = typing.get_args(typ)
        elem = args[0] if args else (type(current[0]) if current else str)
        conv = {int: int, float: float, str: str}.get(elem, str)
        return tuple(conv(s.strip()) for s in items)
    return raw


def config_keys(cfg, prefix: str = "") -> list[str]:
    out = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if is_dataclass(v):
            out += config_keys(v, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def apply_overrides(cfg, overrides: list[str]):
    """``["iter1.steps=3", "data.batch_size=2"]`` -> a new config; unknown keys raise RecipeError."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value (e.g. data.batch_size=4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            cfg = _set(cfg, key.split("."), raw, key)
        except KeyError:
            raise RecipeError(f"unknown override key {key!r}; valid keys: {', '.join(config_keys(cfg))}") from None
    return cfg


def _set(obj, path: list[str], raw: str, full: str):
    names = {f.name: f for f in fields(obj)}
    if path[0] not in names:
        raise KeyError(full)
    cur = getattr(obj, path[0])
    if len(path) > 1:
        if not is_dataclass(cur):
            raise KeyError(full)
        return dataclasses.replace(obj, **{path[0]: _set(cur, path[1:], raw, full)})
    if is_dataclass(cur):
        raise RecipeError(f"override {full!r} names a group; set one of its keys, e.g. {full}.{fields(cur)[0].name}=...")
    hints = typing.get_type_hints(type(obj))
    try:
        val = _parse_value(raw, hints.get(path[0], type(cur)), cur)
    except ValueError as e:
        raise RecipeError(f"override {full}={raw!r}: {e}") from None
    return dataclasses.replace(obj, **{path[0]: val})


def train_phases(cfg) -> list[str]:
    return [f.name for f in fields(cfg) if isinstance(getattr(cfg, f.name), TrainConfig)]


def set_all_steps(cfg, steps: int):
    """``--steps N``: every phase trains N steps (checkpoints/warm-up scaled down to fit)."""
    for name in train_phases(cfg):
        tc = getattr(cfg, name)
        tc = dataclasses.replace(tc, steps=steps, ckpt_every=min(tc.ckpt_every, max(1, steps)),
                                 warmup_steps=min(tc.warmup_steps, max(0, steps // 2)))
        cfg = dataclasses.replace(cfg, **{name: tc})
    return cfg


# ------------------------------------------------------------------------------------ context
@dataclass
class RunContext:
    recipe: str
    out: Path
    corpus: Path
    seed: int = 0
    rank: int = 0
    world: int = 1
    progress: bool = True
    started: float = field(default_factory=time.time)
    phase_walls: dict[str, float] = field(default_factory=dict)
    phase_steps: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.barrier()

    def main_first(self, exists, make, load):
        """Rank 0 makes a cached artefact if missing; every rank then loads it."""
        if self.is_main and not exists():
            make()
        self.barrier()
        return load()

    def log(self, msg: str) -> None:
        if self.is_main:
            print(f"[{self.recipe}] {msg}", flush=True)


def audio_bank(ctx: RunContext, data: DataConfig) -> AudioBank:
    files = find_training_audio(ctx.corpus, data.split, data.exclude_eval, data.max_utts, ctx.seed,
                                exclude_speakers_of=data.exclude_speakers_of)
    d = ctx.cache / "audio"
    if ctx.is_main:
        AudioBank.build(files, d, progress=ctx.progress)
    ctx.barrier()
    bank = AudioBank(d)
    if bank.fingerprint != AudioBank.fingerprint_of(files):
        raise RecipeError(f"{d} holds audio of another file list; delete it or use a new --out")
    return bank


def corpus_spec(corpus: Path) -> dict:
    p = Path(corpus) / "corpus.json"
    if not p.exists():
        return {"path": str(corpus)}
    meta = json.loads(p.read_text())
    keep = {k: meta[k] for k in ("spec", "seed", "version", "counts", "hours", "size") if k in meta}
    return {"path": str(corpus), **keep}


# ------------------------------------------------------------------------------------ labels
def _sample_rows(n_total: int, n_keep: int, seed: int) -> np.ndarray:
    if n_total <= n_keep:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n_keep, replace=False))


def kmeans_labels(ctx: RunContext, specs: dict[str, int], bank: AudioBank, featurize, fit_frames: int, seed: int,
                  unaligned: tuple[str, ...] = ()) -> dict[str, FrameLabels]:
    """Labels for every utterance from one pass of ``featurize(i) -> {name: (T_i, D) tensor}``.

    For each ``name -> K`` in ``specs``: k-means (K clusters) fitted on ``fit_frames`` sampled rows,
    then every row labelled. Rows must be the model's frames (T_i = frames(len_i)) except for the names in
    ``unaligned`` (e.g. one row per utterance for utterance clusters). Cached in DIR/cache/<name>.
    """
    paths = {name: ctx.cache / name for name in specs}

    def make():
        todo = [n for n in specs if not (FrameLabels.exists(paths[n]) and FrameLabels.load(paths[n]).audio == bank.fingerprint)]
        feats: dict[str, list] = {n: [] for n in todo}
        for i in progress_bar(range(len(bank)), enabled=ctx.progress, desc=f"features for {', '.join(todo)}",
                              leave=False):
            out = featurize(i)
            for n in todo:
                f = out[n]
                if n not in unaligned and f.shape[0] != frames(int(bank.lengths[i])):
                    raise RuntimeError(f"{n}: utterance {i} has {f.shape[0]} feature frames, "
                                       f"expected {frames(int(bank.lengths[i]))}")
                feats[n].append(f.to(torch.float16) if f.shape[0] > 1 else f.float())
        for n in todo:
            lens = np.array([f.shape[0] for f in feats[n]])
            allf = torch.cat(feats[n])
            del feats[n]
            rows = _sample_rows(allf.shape[0], fit_frames, seed)
            t = time.time()
            km = KMeans(KMeansConfig(k=specs[n], seed=seed)).fit(allf[rows].float(), progress=ctx.progress)
            labels = np.concatenate([km.predict(allf[s:s + 200_000].float()).numpy()
                                     for s in range(0, allf.shape[0], 200_000)]).astype(np.int32)
            ctx.log(f"k-means {n}: K={specs[n]} on {len(rows)} of {allf.shape[0]} rows, {km.n_iter} iterations, "
                    f"{time.time() - t:.1f} s, inertia/row {km.inertia_ / len(rows):.3f}")
            FrameLabels(labels, lens, specs[n], n, audio=bank.fingerprint).save(paths[n])

    def exists() -> bool:
        return all(FrameLabels.exists(p) and FrameLabels.load(p).audio == bank.fingerprint for p in paths.values())

    labels = ctx.main_first(exists, make, lambda: {n: FrameLabels.load(p) for n, p in paths.items()})
    for n, lab in labels.items():
        if lab.audio != bank.fingerprint or len(lab.lengths) != len(bank):
            raise RecipeError(f"{paths[n]} holds labels of another audio list; delete it or use a new --out")
    return labels


def kmeans_frame_labels(ctx: RunContext, name: str, bank: AudioBank, featurize, k: int, fit_frames: int,
                        seed: int) -> FrameLabels:
    """One label set; ``featurize(i) -> (frames(len_i), D)``."""
    return kmeans_labels(ctx, {name: k}, bank, lambda i: {name: featurize(i)}, fit_frames, seed)[name]


def mfcc_labels(ctx: RunContext, bank: AudioBank, k: int, fit_frames: int, seed: int) -> FrameLabels:
    return kmeans_frame_labels(ctx, f"km_mfcc_{k}", bank, lambda i: mfcc_features(bank.wav(i)), k, fit_frames, seed)


def model_featurizer(fn, bank: AudioBank, max_s: float = 20.0, aligned: tuple[str, ...] | None = None):
    """featurize(i) for ``kmeans_labels``: ``fn(wav (1, S), len (1,)) -> {name: (1, T, D)}`` on utterance i.

    Frame-aligned outputs (all, or those named in ``aligned``) are cut/padded to frames(len_i);
    utterances longer than ``max_s`` are truncated and their last frame repeated.
    """

    @torch.no_grad()
    def featurize(i: int) -> dict[str, torch.Tensor]:
        w = bank.wav(i)[: int(max_s * SAMPLE_RATE)]
        outs = fn(w[None], torch.tensor([w.shape[0]]))
        want = frames(int(bank.lengths[i]))
        res = {}
        for name, t in outs.items():
            t = t[0].float().cpu()
            if aligned is None or name in aligned:
                if t.shape[0] < want:
                    t = torch.cat([t, t[-1:].expand(want - t.shape[0], -1)])
                t = t[:want]
            res[name] = t
        return res

    return featurize


# ------------------------------------------------------------------------------------ phases
def run_phase(ctx: RunContext, name: str, tcfg: TrainConfig, objective, batches) -> dict:
    """Train one phase (resuming if interrupted); returns its DONE record. Skips a finished phase."""
    pdir = ctx.out / name
    done = pdir / "DONE.json"
    if done.exists():
        rec = json.loads(done.read_text())
        if rec.get("steps") == tcfg.steps:
            ctx.log(f"phase {name}: already done ({rec['steps']} steps), skipping")
            _load_phase_weights(objective, pdir)
            ctx.phase_walls[name] = rec["wall_s"]
            ctx.phase_steps[name] = rec["steps"]
            return rec
        raise RecipeError(f"{pdir} finished with {rec.get('steps')} steps but the config asks for {tcfg.steps}; "
                          f"use a new --out (or delete {pdir})")
    tcfg = dataclasses.replace(tcfg, seed=ctx.seed, progress=tcfg.progress and ctx.progress)
    trainer = Trainer(tcfg, objective, batches, pdir, name=f"{ctx.recipe}/{name}")
    trainer.setup()
    try:
        res = trainer.train()
    finally:
        trainer.cleanup()
    rec = {"steps": res.steps, "wall_s": res.wall_s, "utt_seconds": res.utt_seconds, "last": res.last_losses,
           "world": ctx.world}
    if ctx.is_main:
        atomic_write_json(done, rec, sort_keys=False)
    ctx.barrier()
    ctx.phase_walls[name] = res.wall_s
    ctx.phase_steps[name] = res.steps
    return rec


def _load_phase_weights(objective, pdir: Path) -> None:
    from pretrain.state import latest_state, load_state

    sd = latest_state(pdir)
    if sd is None:
        raise RecipeError(f"{pdir}/DONE.json exists but the phase has no saved state; delete {pdir} and rerun")
    objective.load_state_dict(load_state(sd)["model_state"], strict=True)


# ------------------------------------------------------------------------------------ export
def merged_curve(ctx: RunContext, phases: list[str], png: Path) -> Path | None:
    """One CSV/PNG over all phases (steps offset so the phases follow each other)."""
    import csv

    rows, offset, keys = [], 0, []
    for p in phases:
        f = ctx.out / p / "log.csv"
        if not f.exists():
            continue
        with open(f, newline="") as fh:
            part = list(csv.DictReader(fh))
        for r in part:
            row = {"step": int(r["step"]) + offset}
            for k, v in r.items():
                if k in ("step", "lr", "grad_norm", "step_s", "utt_s_per_s") or v in (None, ""):
                    continue
                row[f"{p}/{k}"] = v
                if f"{p}/{k}" not in keys:
                    keys.append(f"{p}/{k}")
            rows.append(row)
        offset += int(part[-1]["step"]) if part else 0
    if not rows:
        return None
    out_csv = png.with_suffix(".csv")
    with open(out_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step"] + keys, restval="")
        w.writeheader()
        w.writerows(rows)
    return plot_losses(out_csv, png, title=ctx.recipe)


def export_final(ctx: RunContext, model, model_name: str, model_cfg, recipe_cfg, phases: list[str],
                 extra_card: str = "") -> Path | None:
    """Write DIR/final: checkpoint (upstream.checkpoint format) + loss curve + MODEL_CARD.md."""
    if not ctx.is_main:
        return None
    from upstream.checkpoint import save_checkpoint
    from upstream.registry import config_to_dict

    final = ctx.out / "final"
    wall = sum(ctx.phase_walls.values())
    prov = {
        "recipe": ctx.recipe,
        "recipe_config": json.loads(json.dumps(dataclasses.asdict(recipe_cfg), default=str)),
        "corpus": corpus_spec(ctx.corpus),
        "seed": ctx.seed,
        "steps": dict(ctx.phase_steps),
        "wall_s": round(wall, 1),
        "phase_wall_s": {k: round(v, 1) for k, v in ctx.phase_walls.items()},
        "machine": machine_description(),
        "world_size": ctx.world,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        **ctx.notes,
    }
    cfg_dict = config_to_dict(model_cfg)
    model = model.cpu().eval()
    n_params = sum(p.numel() for p in model.parameters())
    card = model_card(ctx, model_name, cfg_dict, prov, n_params, extra_card)
    save_checkpoint(model, final, name=model_name, config=cfg_dict, provenance=prov, model_card=card)
    merged_curve(ctx, phases, final / "loss_curve.png")
    ctx.log(f"final checkpoint: {final} ({n_params / 1e6:.2f} M parameters, {wall / 60:.1f} min of training)")
    return final


def model_card(ctx: RunContext, model_name: str, cfg_dict: dict, prov: dict, n_params: int, extra: str) -> str:
    steps = ", ".join(f"{k}: {v}" for k, v in prov["steps"].items())
    walls = ", ".join(f"{k}: {v / 60:.1f} min" for k, v in prov["phase_wall_s"].items())
    corpus = prov["corpus"]
    return f"""# {ctx.recipe}

DUET `{model_name}` model trained with `harness pretrain --recipe {ctx.recipe}`.

| | |
|---|---|
| recipe | `{ctx.recipe}` (full config in `config.json` → `provenance.recipe_config`) |
| parameters | {n_params / 1e6:.2f} M (state_dict incl. pre-training-only heads) |
| corpus | `{corpus.get('path')}` — spec/seed: `{json.dumps({k: corpus[k] for k in corpus if k in ('spec', 'seed', 'size')}, default=str)[:300]}` |
| seed | {prov['seed']} |
| steps | {steps} |
| wall time | {prov['wall_s'] / 60:.1f} min ({walls}) |
| machine | {prov['machine']}, {prov['world_size']} process(es) |
| commit | `{prov['git_commit']}` |
| date | {prov['date_utc']} UTC |

Loss curves: `loss_curve.png` (per phase, steps concatenated).

{extra}
"""
