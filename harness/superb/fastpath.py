"""The fast path for SUPERB's utterance-level tasks (SID, ER): the same downstream s3prl trains,
on per-utterance pooled features, in-process, in seconds.

Why it is exact. s3prl's utterance-level downstream (``voxceleb1``, ``emotion``; see
s3prl/upstream/interfaces.py ``Featurizer`` and s3prl/downstream/model.py ``UtteranceLevel``) is

    frames h[l, t]  (L layers, T frames of one utterance, zero-padded to the batch's longest, Tb)
    x[t] = sum_l softmax(w)[l] * h[l, t]         Featurizer: weighted sum, per frame
    x    = x[:c],  c = min(round(samples / rate), Tb)   Featurizer.tolist: s3prl's own length rule
    y[t] = W x[t] + b                            projector (nn.Linear)
    p    = mean_t y[t]                            UtteranceLevel, MeanPooling
    logits = post_net(p)                          FrameLevel (linear)

Everything before the mean is linear in h, so p = W (sum_l softmax(w)[l] S[l]) / c + b with
S[l] = sum of layer l's first min(n, T) frames (padding frames are zeros and add only b). The
fast path stores S (L x D), T and n once per utterance (:class:`PooledFeatures`) and trains the
same head on them: same modules (s3prl's own ``UtteranceLevel``), same init and data order (the
RNG draws of ``run_downstream.py`` replayed, :func:`replay_runner_rng`), same optimizer, lr,
batch size, gradient clipping, total steps, ``eval_step``, dev-best selection by dev accuracy (a
strict improvement over s3prl's ``best_score``, which starts at 0), and the test split evaluated
in s3prl's eval batches (c depends on the batch's longest utterance, so batches matter). What
remains different is float rounding (sums in float64 once, instead of float32 frame by frame).
With ``--upstream_feature_normalize`` (per-frame layer norm, only with L > 1) the sums are of
normalised frames, which is as exact.

Where it is not the same as s3prl's runner (and what happens):

* SID's training crop (``datarc.max_timestep``): s3prl cuts a random window out of every training
  utterance longer than that, a new window each epoch. No per-utterance statistic reproduces
  that, so the fast path refuses (:func:`why_not`) and the cell runs s3prl's runner, with the
  reason printed. ``downstream_configs/mini/sid.yaml`` sets ``max_timestep: null`` (see there):
  the crop is a memory cap for real VoxCeleb1's minute-long utterances, not part of the protocol
  for the generated corpora's few-second ones. The real config keeps its 8 s crop, so on real
  VoxCeleb1 SID runs through s3prl unless no training utterance is longer than the crop.
* Init and data order are replayed exactly for ER (s3prl's emotion expert re-seeds with 0 before
  its split and head init) and for upstreams whose construction draws no random numbers (s3prl's
  baselines: fbank, mfcc, ...). A DUET upstream draws its random init (and ``duet_cached`` a
  verification forward) before s3prl builds the SID head, so for DUET SID cells the head's init
  and the data order are a different, still seeded, draw: the same experiment, another seed.
* Features: a DUET cell reads its frames from the feature cache (as ``duet_cached`` does, one file
  per forward); any other upstream runs once per file here. Both are what s3prl sees with the
  cache; without it, a DUET model run on padded batches gives slightly different padding frames.
* Anything else in the config the head does not reproduce (another pooling, a pre-net, a
  scheduler, SpecAugment, fp16, gradient accumulation is fine) is refused the same way.

Run a cell's fast path again (the row's ``command``)::

    python -m harness.superb.fastpath results/superb_small/runs/<cell>/fast_plan.json
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.superb.pooled import (FastPathError, FeatureSource, PooledFeatures, Utterances,  # noqa: F401
                                   all_paths, er_splits, pool_features, pooled_cache_name, sid_splits)
from upstream.facts import atomic_write_json, atomic_write_text

FAST_TASKS = ("sid", "er")
SID_CLASSES = 1251                      # s3prl's SpeakerClassifiDataset.speaker_num, whatever the corpus


# ----------------------------------------------------------------------------- config

def effective_config(config: Path, overrides: str) -> dict:
    """The downstream config with ``-o`` applied as s3prl's ``utility.helper.override`` does (items
    split on ``,,``, ``config.a.b=value``, the value read as a Python literal, else kept as a string;
    s3prl ``eval``s it, which agrees on every literal and costs a heavy import)."""
    import ast

    import yaml

    cfg = yaml.safe_load(Path(config).read_text()) or {}
    for option in (overrides or "").split(",,"):
        option = option.strip()
        if not option:
            continue
        key, value_str = (x.strip() for x in option.split("="))
        try:
            value = ast.literal_eval(value_str)
        except (ValueError, SyntaxError):
            value = value_str
        first, *fields = key.split(".")
        if first != "config" or not fields:
            raise FastPathError(f"-o item {option!r}: the fast path reads only config.* overrides")
        target = cfg
        for name in fields[:-1]:
            target = target.setdefault(name, {})
        target[fields[-1]] = value
    return cfg


def config_reason(task: str, cfg: dict) -> str | None:
    """Why the fast path cannot reproduce this config's downstream (None: it can), before any data is read."""
    if task not in FAST_TASKS:
        return f"task {task} is not an utterance-level task (fast path: {', '.join(FAST_TASKS)})"
    runner = cfg.get("runner") or {}
    model = (cfg.get("downstream_expert") or {}).get("modelrc") or {}
    opt = cfg.get("optimizer") or {}
    if model.get("select") != "UtteranceLevel":
        return f"modelrc.select is {model.get('select')!r}, not UtteranceLevel"
    conf = model.get("UtteranceLevel") or {}
    if conf.get("pooling", "MeanPooling") != "MeanPooling":
        return f"pooling {conf.get('pooling')!r} is not linear (only MeanPooling is)"
    if conf.get("pre_net") is not None:
        return "a pre_net before the pooling is not linear"
    post = conf.get("post_net") or {"select": "FrameLevel"}
    if post.get("select") != "FrameLevel":
        return f"post_net {post.get('select')!r} is not FrameLevel"
    if opt.get("name") != "TorchOptim":
        return f"optimizer {opt.get('name')!r} (only TorchOptim is reproduced)"
    for key, what in (("scheduler", "a learning-rate scheduler"), ("specaug", "SpecAugment")):
        if cfg.get(key):
            return f"{what} ({key}) is not reproduced"
    if runner.get("fp16"):
        return "fp16 training is not reproduced"
    if runner.get("eval_dataloaders", ["dev"]) != ["dev"]:
        return f"eval_dataloaders {runner.get('eval_dataloaders')} (the fast path selects on dev only)"
    return None


def crop_reason(cfg: dict, train: "Utterances") -> str | None:
    """SID's random training crop changes what s3prl pools whenever an utterance is longer than it."""
    cap = ((cfg.get("downstream_expert") or {}).get("datarc") or {}).get("max_timestep")
    if cap is None:
        return None
    long = int((train.samples > int(cap)).sum())
    if long == 0:
        return None
    return (f"SID crops training utterances longer than datarc.max_timestep={cap} samples at random "
            f"({long} of {len(train)} here), which pooled features cannot reproduce; set "
            f"max_timestep: null in the config for the exact fast path")


# ----------------------------------------------------------------------------- the head

def build_head(num_layers: int, dim: int, num_classes: int, modelrc: dict):
    """Featurizer weights (None for one layer, as s3prl) + the expert's projector and UtteranceLevel
    model, built in s3prl's order (so the same RNG state gives the same init)."""
    import torch
    from torch import nn
    from s3prl.downstream.model import UtteranceLevel

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = nn.Parameter(torch.zeros(num_layers)) if num_layers > 1 else None

        def build_downstream(self):
            self.projector = nn.Linear(dim, modelrc["projector_dim"])
            self.model = UtteranceLevel(input_dim=modelrc["projector_dim"], output_dim=num_classes,
                                        **(modelrc.get("UtteranceLevel") or {}))
            self.register_buffer("best_score", torch.zeros(1))

        def trainable(self) -> list:
            """In the runner's order: Featurizer, then Downstream."""
            return ([self.weights] if self.weights is not None else []) + \
                list(self.projector.parameters()) + list(self.model.parameters())

        def forward(self, sums, counts):
            """sums (B, L, D), counts (B,) -> logits (B, C)."""
            if self.weights is not None:
                x = (torch.softmax(self.weights, -1)[None, :, None] * sums).sum(1)
            else:
                x = sums[:, 0]
            pooled = self.projector(x / counts[:, None])
            logits, _ = self.model.post_net(pooled, None)
            return logits

        def s3prl_state(self) -> dict:
            """Tensors under s3prl's checkpoint names (Featurizer.weights, Downstream.projector.weight, ...)."""
            out = {f"Downstream.{k}": v.detach().clone() for k, v in self.state_dict().items() if k != "weights"}
            if self.weights is not None:
                out["Featurizer.weights"] = self.weights.detach().clone()
            return out

    return Head()


def build_runner_upstream(source: "FeatureSource"):
    """The upstream exactly as run_downstream.py builds it for the cell (``-u duet_cached -k SPEC`` when
    the cell reads the feature cache, else ``-u NAME [-k CKPT]``, with ``-g``): its construction draws
    random numbers (a model's init, the cache's check forward) that decide the head's init."""
    if source.cache_spec:
        from harness.features.cache import duet_cached
        return duet_cached(ckpt=source.cache_spec, model_config=source.model_config, refresh=False)
    from harness.features.store import load_upstream
    return load_upstream(source.upstream, source.ckpt, source.model_config)


def replay_runner_rng(seed: int, task: str, n_train: int, valid_ratio: float | None, source: "FeatureSource"):
    """The RNG draws run_downstream.py makes before the head's init: its seeds, the upstream's
    construction and s3prl's own Featurizer (which probes the upstream with 1 s of random audio), and
    for ER the expert's re-seeded train/dev split. Returns (train, dev) indices for ER, else None."""
    import torch
    from s3prl.upstream.interfaces import Featurizer

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if task != "er":                                          # ER re-seeds below: nothing before matters
        upstream = build_runner_upstream(source)
        with contextlib.redirect_stderr(io.StringIO()):
            Featurizer(upstream=upstream, feature_selection=source.key, upstream_device="cpu")
        return None
    torch.manual_seed(0)                                      # emotion/expert.py, before random_split
    trainlen = int((1 - valid_ratio) * n_train)
    train, dev = torch.utils.data.random_split(range(n_train), [trainlen, n_train - trainlen])
    return list(train.indices), list(dev.indices)


def _counts(frames, expected):
    """s3prl's per-utterance frame count in one batch: min(n, longest stored frames in the batch)."""
    return np.minimum(expected, frames.max())


@dataclass
class Split:
    sums: np.ndarray
    frames: np.ndarray
    expected: np.ndarray
    labels: np.ndarray

    def batch(self, idx):
        import torch
        idx = list(idx)
        c = _counts(self.frames[idx], self.expected[idx])
        return (torch.from_numpy(self.sums[idx].astype(np.float32)), torch.from_numpy(c.astype(np.float32)),
                torch.from_numpy(self.labels[idx]))


def evaluate(head, split: Split, batch_size: int, seed: int) -> tuple[float, list[int]]:
    """Accuracy as s3prl logs it (float32 mean of per-utterance hits) and the predictions, in
    s3prl's eval batches; re-seeds and iterates a DataLoader like Runner.evaluate (same RNG use)."""
    import torch
    from torch.utils.data import DataLoader

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    was = head.training
    head.eval()
    hits, preds = [], []
    with torch.no_grad():
        for idx in DataLoader(range(len(split.labels)), batch_size=batch_size, shuffle=False, collate_fn=list):
            x, c, y = split.batch(idx)
            p = head(x, c).max(dim=-1).indices
            hits += (p == y).float().tolist()
            preds += p.tolist()
    head.train(was)
    return torch.FloatTensor(hits).mean().item(), preds


@dataclass
class TrainResult:
    state: dict                 # s3prl-named tensors of the selected checkpoint
    step: int                   # its step
    selected: str               # "dev-best" | "last" (no dev improvement: s3prl's last states-N.ckpt)
    dev_curve: list[tuple[int, float]] = field(default_factory=list)


def train_head(head, train: Split, dev: Split, runner: dict, optimizer: dict, datarc: dict, seed: int,
               log=None, foreach: bool = True) -> TrainResult:
    """s3prl's Runner.train loop (no upstream): shuffled batches, clip, step, dev every eval_step.

    ``foreach``: the optimizer's multi-tensor update where it has one (Adam, AdamW, SGD, ...). It is
    the same arithmetic as the per-tensor loop s3prl's runner gets on CPU (bitwise equal states,
    tests/test_superb_fastpath.py) and about 40 % faster on SID's 1251-class head."""
    import inspect

    import torch
    from torch.utils.data import DataLoader

    params = head.trainable()
    opt_kwargs = {k: v for k, v in optimizer.items() if k not in ("name", "torch_optim_name")}
    opt_cls = getattr(torch.optim, optimizer["torch_optim_name"])
    if foreach and "foreach" in inspect.signature(opt_cls).parameters and "foreach" not in opt_kwargs:
        opt_kwargs["foreach"] = True
    opt = opt_cls(params, **opt_kwargs)
    total, accumulate = int(runner["total_steps"]), int(runner.get("gradient_accumulate_steps") or 1)
    clip, eval_step, save_step = runner["gradient_clipping"], int(runner["eval_step"]), int(runner["save_step"])
    objective = torch.nn.CrossEntropyLoss()
    head.train()
    step = backward_steps = 0
    best = last = None
    curve = []
    while step < total:
        for idx in DataLoader(range(len(train.labels)), batch_size=datarc["train_batch_size"], shuffle=True,
                              num_workers=0, collate_fn=list):
            if step >= total:
                break
            global_step = step + 1
            x, c, y = train.batch(idx)
            loss = objective(head(x, c), y) / accumulate
            loss.backward()
            backward_steps += 1
            if backward_steps % accumulate > 0:
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            if not math.isnan(grad_norm):
                opt.step()
            opt.zero_grad()
            if global_step % eval_step == 0:
                acc, _ = evaluate(head, dev, datarc["eval_batch_size"], seed)
                curve.append((global_step, acc))
                if log:
                    log(f"dev at step {global_step}: {acc}")
                if acc > head.best_score:
                    head.best_score = torch.ones(1) * acc
                    best = TrainResult(head.s3prl_state(), global_step, "dev-best")
                    if log:
                        log(f"New best on dev at step {global_step}: {acc}")
            if global_step % save_step == 0:
                last = TrainResult(head.s3prl_state(), global_step, "last")
            step += 1
    chosen = best or last
    if chosen is None:
        raise FastPathError(f"no checkpoint: total_steps {total} < save_step {save_step} and no dev improvement "
                            f"(s3prl's runner would leave none either); raise total_steps")
    chosen.dev_curve = curve
    return chosen


def load_state(head, state: dict) -> None:
    import torch
    with torch.no_grad():
        if head.weights is not None:
            head.weights.copy_(state["Featurizer.weights"])
        head.load_state_dict({k[len("Downstream."):]: v for k, v in state.items() if k.startswith("Downstream.")},
                             strict=False)


# ----------------------------------------------------------------------------- one cell

@dataclass
class FastPlan:
    """Everything one fast cell needs; written as RUN_DIR/fast_plan.json (the row's command re-runs it)."""
    cell_id: str
    task: str
    config: str
    runs: list[tuple[str, str]]         # (run name, -o overrides): one, or one per ER fold
    seed: int
    source: dict                        # FeatureSource fields
    run_dir: str
    pooled_cache: str | None = None
    upstream_yaml: dict | None = None   # the -g content (layer subset) for a live DUET upstream
    normalize: bool = False             # s3prl's --upstream_feature_normalize (the harness never sets it)

    @classmethod
    def load(cls, path: Path) -> "FastPlan":
        d = json.loads(Path(path).read_text())
        d["runs"] = [tuple(r) for r in d["runs"]]
        return cls(**d)


def check_plan(plan: FastPlan) -> str | None:
    """Why the fast path would not reproduce s3prl's runner for this plan (None: it would)."""
    for _, overrides in plan.runs:
        cfg = effective_config(Path(plan.config), overrides)
        reason = config_reason(plan.task, cfg)
        if reason:
            return reason
        if plan.task == "sid":
            reason = crop_reason(cfg, sid_splits(cfg["downstream_expert"]["datarc"])["train"])
            if reason:
                return reason
    return None


def _splits(task: str, cfg: dict, seed: int, source: FeatureSource):
    """(train, dev, test Utterances, classes) and the RNG left where the runner's head init finds it."""
    datarc = cfg["downstream_expert"]["datarc"]
    if task == "sid":
        s = sid_splits(datarc)
        replay_runner_rng(seed, task, len(s["train"]), None, source)
        return s["train"], s["dev"], s["test"], SID_CLASSES
    full, test, classes = er_splits(datarc)
    train_idx, dev_idx = replay_runner_rng(seed, task, len(full), float(datarc["valid_ratio"]), source)
    return full.subset(train_idx), full.subset(dev_idx), test, classes


def run_fast_cell(plan: FastPlan, progress=None):
    """Train + test every run of the plan in this process; returns a runner.CellOutcome."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from harness.superb.runner import CellOutcome

    t0 = time.time()
    run_dir = Path(plan.run_dir)
    plan_path = run_dir / "fast_plan.json"
    if run_dir.exists() and not (plan_path.is_file() and FastPlan.load(plan_path) == plan):
        shutil.rmtree(run_dir)                      # a half-finished earlier attempt: start clean
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan.upstream_yaml is not None:
        import yaml
        atomic_write_text(run_dir / "upstream.yaml", yaml.safe_dump(plan.upstream_yaml))
    atomic_write_json(plan_path, asdict(plan), sort_keys=False)
    log_path = run_dir / "fast.log"
    lines: list[str] = []

    def log(msg: str) -> None:
        lines.append(msg)

    source = FeatureSource(**plan.source)
    pooled = None
    values, ckpts, weights = [], [], None
    with torch.random.fork_rng(devices=[]):
        state_py, state_np = random.getstate(), np.random.get_state()
        try:
            for k, (name, overrides) in enumerate(plan.runs):
                cfg = effective_config(Path(plan.config), overrides)
                datarc, modelrc = cfg["downstream_expert"]["datarc"], cfg["downstream_expert"]["modelrc"]
                if pooled is None:                      # the folds share one pooled set
                    paths = all_paths(plan.task, datarc)
                    pooled = pool_features(source, paths, Path(plan.pooled_cache) if plan.pooled_cache else None,
                                           plan.normalize)
                layers = _layer_selection(source, pooled)
                train_u, dev_u, test_u, classes = _splits(plan.task, cfg, plan.seed, source)
                parts = {}
                for split, u in (("train", train_u), ("dev", dev_u), ("test", test_u)):
                    sums, frames, expected = pooled.take(u.paths, layers)
                    parts[split] = Split(sums, frames, expected, u.labels)
                n_layers, dim = parts["train"].sums.shape[1:]
                head = build_head(n_layers, dim, classes, modelrc)
                head.build_downstream()                 # draws the init from the replayed RNG
                log(f"[fast] run={name} train={len(train_u)} dev={len(dev_u)} test={len(test_u)} "
                    f"layers={n_layers} dim={dim} classes={classes}")
                result = train_head(head, parts["train"], parts["dev"], cfg["runner"], cfg["optimizer"], datarc,
                                    plan.seed, log)
                load_state(head, result.state)
                acc, preds = evaluate(head, parts["test"], datarc["eval_batch_size"], plan.seed)
                atomic_write_text(run_dir / f"fast-{name}-test_predict.txt", "".join(test_u.predict_lines(preds)))
                log(f"[fast] run={name} {result.selected} step={result.step} test acc: {acc}")
                values.append(acc)
                ckpt = run_dir / f"fast-{name}.safetensors"
                save_file({k2: v.contiguous() for k2, v in result.state.items()}, str(ckpt),
                          metadata={"task": plan.task, "run": name, "step": str(result.step),
                                    "selected": result.selected, "test_acc": repr(acc),
                                    "format": "duet-fast-ckpt/1 (s3prl checkpoint names)"})
                ckpts.append(str(ckpt))
                if k == 0 and "Featurizer.weights" in result.state:
                    weights = torch.softmax(result.state["Featurizer.weights"].float(), -1).tolist()
                if progress is not None:
                    progress(k + 1, len(plan.runs))
        finally:
            random.setstate(state_py)
            np.random.set_state(state_np)
            atomic_write_text(log_path, "\n".join(lines) + "\n")
    command = f"{sys.executable} -m harness.superb.fastpath {plan_path}"
    return CellOutcome(value=sum(values) / len(values), run_values=values, runs=[r[0] for r in plan.runs],
                       wall_s=round(time.time() - t0, 1), eval_ckpt=ckpts[0], layer_weights=weights,
                       command=command, log=str(log_path), cache_hit_rate=1.0 if source.store else None)


def _layer_selection(source: FeatureSource, pooled: PooledFeatures) -> list[int] | None:
    """Rows of the pooled sums that the cell's layers are (None: all rows): the store maps the cell's
    `-g layers` subset (model layers; "all": every layer of the key) to stored positions and refuses a
    layer it does not hold, naming it and the fix."""
    if not source.store:
        return None
    from harness.features.store import FeatureStore
    rows = pooled.rows(FeatureStore(source.store).layer_positions(source.key, source.layers))
    return None if rows == list(range(pooled.sums.shape[1])) else rows


def plan_for_cell(cell, cell_plan, cache_spec: Path | None, pooled_dir: Path | None) -> FastPlan:
    """The fast plan of a harness cell: the s3prl plan's config, runs (-o per fold) and seed; frames
    from the cell's feature cache when it has one, else from its upstream."""
    model_config = str(cell_plan.run_dir / "upstream.yaml") if cell.model_config is not None else None
    if cache_spec is not None:
        from harness.features.cache import read_spec
        source = FeatureSource(cell.upstream, cell.feature, ckpt=cell.ckpt, model_config=model_config,
                               store=read_spec(cache_spec)["store"], layers=cell.layers, cache_spec=str(cache_spec))
    else:
        source = FeatureSource(cell.upstream, cell.feature, ckpt=cell.ckpt, model_config=model_config)
    pooled = Path(pooled_dir) / pooled_cache_name(source, cell.task, cell.corpus_id) if pooled_dir else None
    return FastPlan(cell_id=cell.id, task=cell.task, config=str(cell_plan.config), runs=list(cell_plan.runs),
                    seed=cell.seed, source=asdict(source), run_dir=str(cell_plan.run_dir),
                    pooled_cache=str(pooled) if pooled else None,
                    upstream_yaml=cell.model_config)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.superb.fastpath FAST_PLAN.json``: re-run a fast cell, print its test accuracy."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python -m harness.superb.fastpath RUN_DIR/fast_plan.json (written by `harness run`)",
              file=sys.stderr)
        return 2
    plan = FastPlan.load(Path(argv[0]))
    reason = check_plan(plan)
    if reason:
        print(f"fast path refused: {reason}", file=sys.stderr)
        return 3
    outcome = run_fast_cell(plan)
    for name, v in zip(outcome.runs, outcome.run_values):
        print(f"{name} test acc: {v}")
    print(f"mean test acc: {outcome.value}  ({outcome.wall_s} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
