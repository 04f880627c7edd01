"""The one training loop: ``Trainer(cfg, objective, batches, run_dir).setup(); .train(); .cleanup()``.

Named stateful objects (all saved by ``pretrain/state.py`` as safetensors + JSON, no pickle):

    objective   nn.Module: the model being trained + training-only heads (``Objective`` below)
    optimizers  {"main": AdamW over the trainable non-auxiliary parameters,
                 "aux":  AdamW over ``objective.aux_parameters()`` (e.g. the CLUB estimator)}
    scheduler   ``WarmupCosine`` (linear warm-up, cosine decay; state = its step)
    sampler     the batch source's position (``batches.state_dict()``)
    rng         reseeded at every step from (seed, step, rank), so a resumed run draws the same
                numbers; the CPU (and CUDA) generator states are stored with each checkpoint too
    step        optimiser steps done

Each step: ``grad_accum`` micro-batches (bf16 autocast on CUDA), gradient clipping, one main
optimiser step with the auxiliary parameters frozen, then ``aux_steps`` steps of the auxiliary
optimiser on the detached tensors the objective cached (CLUB's alternation: encoders, then
estimator). A non-finite loss stops the run with ``NonFiniteLoss`` naming the last good
checkpoint, and nothing is written after it. Multi-process data parallelism: launch with
``torchrun --nproc_per_node N``; the main objective is wrapped in ``DistributedDataParallel``
(gloo on CPU, NCCL on CUDA); auxiliary gradients are all-reduced by hand.

The objective contract (duck-typed; see the recipes)::

    class Objective(nn.Module):
        def forward(self, batch: dict[str, Tensor]) -> LossOutput  # loss, parts, cache
        def aux_parameters(self) -> list[nn.Parameter]              # [] if none
        def aux_loss(self, cache: dict[str, Tensor]) -> Tensor      # only if aux params exist

Batches (duck-typed; ``pretrain/data.py``)::

    batches.get(step, micro, rank, world, accum) -> dict[str, Tensor]   # deterministic in its args
    batches.state_dict() / load_state_dict(d)
"""
from __future__ import annotations

import csv
import json
import math
import io
import os
import socket
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pretrain.state import latest_state, load_state, save_state
from upstream.facts import SAMPLE_RATE, atomic_write_bytes, atomic_write_text, progress_bar


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 5e-4
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 10.0
    grad_accum: int = 1
    aux_steps: int = 5          # auxiliary (estimator) updates after each main step
    aux_lr: float = 1e-3
    ckpt_every: int = 100       # training-state checkpoint every N steps (and at the end)
    keep_ckpts: int = 2
    log_every: int = 1          # CSV/TensorBoard row every N steps
    seed: int = 0
    bf16: bool = True           # autocast to bfloat16 on CUDA (ignored on CPU)
    device: str = "auto"        # auto | cpu | cuda
    progress: bool = True       # tqdm bar on rank 0


class NonFiniteLoss(RuntimeError):
    """Raised when a loss is NaN/Inf; the message names the last good checkpoint."""


class WarmupCosine:
    """lr(step) = base · min(1, (step+1)/warmup) · cosine decay to ``min_ratio`` at ``total``."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], warmup: int, total: int, min_ratio: float):
        self.optimizers, self.warmup, self.total, self.min_ratio = optimizers, warmup, total, min_ratio
        self.base = [[g["lr"] for g in o.param_groups] for o in optimizers]
        self.step_count = 0

    def factor(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        prog = min(1.0, (step - self.warmup) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))

    def set(self, step: int) -> float:
        self.step_count = step
        f = self.factor(step)
        for opt, base in zip(self.optimizers, self.base):
            for g, b in zip(opt.param_groups, base):
                g["lr"] = b * f
        return self.base[0][0] * f

    def state_dict(self) -> dict:
        return {"step": self.step_count, "warmup": self.warmup, "total": self.total, "min_ratio": self.min_ratio,
                "base": self.base}

    def load_state_dict(self, d: dict) -> None:
        self.step_count = int(d["step"])
        self.base = d["base"]


class _DDPAdapter(nn.Module):
    """Returns a plain tuple so DistributedDataParallel can find every output tensor."""

    def __init__(self, objective: nn.Module):
        super().__init__()
        self.objective = objective

    def forward(self, batch):
        out = self.objective(batch)
        return out.loss, out.parts, out.cache


@dataclass
class TrainResult:
    steps: int
    wall_s: float
    last_losses: dict[str, float] = field(default_factory=dict)
    utt_seconds: float = 0.0


class Trainer:
    def __init__(self, cfg: TrainConfig, objective: nn.Module, batches, run_dir: str | Path, *, name: str = "train"):
        self.cfg = cfg
        self.objective = objective
        self.batches = batches
        self.run_dir = Path(run_dir)
        self.name = name
        self.step = 0
        self.rank, self.world = 0, 1
        self._csv = None
        self._tb = None
        self._bar = None
        self._owns_pg = False
        self.wall_before = 0.0       # wall seconds spent before a resume (from the state)
        self.utt_seconds = 0.0

    # ------------------------------------------------------------------------------ setup
    def setup(self) -> "Trainer":
        cfg = self.cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device(f"cuda:{local_rank}" if want_cuda else "cpu")
        if want_cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
            self._owns_pg = True
        self.is_main = self.rank == 0
        torch.manual_seed(cfg.seed + 1000 * self.rank)

        self.objective.to(self.device)
        self.objective.train()
        aux = list(self.objective.aux_parameters()) if hasattr(self.objective, "aux_parameters") else []
        aux_ids = {id(p) for p in aux}
        main = [p for p in self.objective.parameters() if p.requires_grad and id(p) not in aux_ids]
        if not main:
            raise ValueError(f"{self.name}: the objective has no trainable parameters")
        self.main_params, self.aux_params = main, aux
        decay = [p for p in main if p.ndim >= 2]
        no_decay = [p for p in main if p.ndim < 2]
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "main": torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=tuple(cfg.betas))}
        if aux:
            self.optimizers["aux"] = torch.optim.AdamW(aux, lr=cfg.aux_lr)
        self.scheduler = WarmupCosine([self.optimizers["main"]], cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._resume()
        if self.world > 1:
            for p in self.objective.parameters():
                dist.broadcast(p.data, 0)
            for p in aux:
                p.requires_grad_(False)      # DDP must not see the estimator: it is trained by hand
            self.model = nn.parallel.DistributedDataParallel(
                _DDPAdapter(self.objective), device_ids=[self.device.index] if want_cuda else None,
                find_unused_parameters=True)
            for p in aux:
                p.requires_grad_(True)
        else:
            self.model = _DDPAdapter(self.objective)
        if self.is_main:
            self._open_logs()
        return self

    def _resume(self) -> None:
        sd = latest_state(self.run_dir)
        if sd is None:
            return
        st = load_state(sd)
        missing = self.objective.load_state_dict(st["model_state"], strict=True)
        del missing
        for name, opt in self.optimizers.items():
            if name not in st["optimizers"]:
                raise RuntimeError(f"{sd}: no state for optimiser {name!r}; the run's recipe changed — use a new --out")
            opt.load_state_dict(st["optimizers"][name])
        self.scheduler.load_state_dict(st["scheduler"])
        self.batches.load_state_dict(st["sampler"])
        torch.set_rng_state(st["rng"]["torch_cpu"])
        if torch.cuda.is_available() and "torch_cuda" in st["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(st["rng"]["torch_cuda"], self.device)
        self.step = st["step"]
        self.wall_before = float(st["extra"].get("wall_s", 0.0))
        self.utt_seconds = float(st["extra"].get("utt_seconds", 0.0))
        if self.rank == 0:
            print(f"[{self.name}] resumed from {sd} (step {self.step})", flush=True)

    def _open_logs(self) -> None:
        path = self.run_dir / "log.csv"
        rows: list[dict] = []
        if path.exists() and self.step > 0:      # keep the rows up to the resumed step only
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        self._csv_path = path
        self._csv_rows = rows
        self._csv_fields: list[str] | None = list(rows[0].keys()) if rows else None
        self._rewrite_csv()
        try:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step if self.step else None)
        except ImportError:  # pragma: no cover - tensorboardX is a pinned dependency
            self._tb = None
        if self.cfg.progress:
            self._bar = progress_bar(total=self.cfg.steps, initial=self.step, desc=self.name,
                                     dynamic_ncols=True)   # the log has the rows

    def _rewrite_csv(self) -> None:
        f = io.StringIO(newline="")
        if self._csv_fields:
            w = csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(self._csv_rows)
        atomic_write_text(self._csv_path, f.getvalue())

    # ------------------------------------------------------------------------------ train
    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def _all_finite(self, t: Tensor) -> bool:
        ok = torch.isfinite(t.detach()).all().to(torch.float32).reshape(1)
        if self.world > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    def _last_good(self) -> str:
        sd = latest_state(self.run_dir)
        return str(sd) if sd is not None else "none (no checkpoint had been written yet)"

    def _nonfinite(self, what: str, parts: dict) -> NonFiniteLoss:
        shown = ", ".join(f"{k}={float(v.detach() if torch.is_tensor(v) else v):.4g}" for k, v in parts.items())
        return NonFiniteLoss(f"[{self.name}] non-finite {what} at step {self.step + 1} ({shown}); stopped without "
                             f"writing a checkpoint. Last good checkpoint: {self._last_good()}. Lower the learning "
                             f"rate (lr=...) or check the inputs, then rerun the same command to resume from it.")

    def train(self) -> TrainResult:
        cfg = self.cfg
        t0 = time.time()
        last: dict[str, float] = {}
        main_opt = self.optimizers["main"]
        while self.step < cfg.steps:
            t_step = time.time()
            # RNG reseeded from (seed, step, rank): a resumed run draws exactly the same numbers
            torch.manual_seed(cfg.seed * 1_000_003 + self.step * 7919 + self.rank)
            lr = self.scheduler.set(self.step)
            main_opt.zero_grad(set_to_none=True)
            for p in self.aux_params:
                p.requires_grad_(False)
            sums: dict[str, float] = {}
            utt_s = 0.0
            cache: dict = {}
            for micro in range(cfg.grad_accum):
                batch = self._to_device(self.batches.get(self.step, micro, self.rank, self.world, cfg.grad_accum))
                if "wav_len" in batch:
                    utt_s += float(batch["wav_len"].sum()) / float(SAMPLE_RATE)
                sync_ctx = (self.model.no_sync() if self.world > 1 and micro < cfg.grad_accum - 1 else nullcontext())
                with sync_ctx:
                    with self._autocast():
                        loss, parts, cache = self.model(batch)
                    if not self._all_finite(loss):
                        raise self._nonfinite("loss", {"loss": loss, **parts})
                    (loss.float() / cfg.grad_accum).backward()
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / cfg.grad_accum
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
            for p in self.aux_params:
                p.requires_grad_(True)
            gnorm = torch.nn.utils.clip_grad_norm_(self.main_params, cfg.grad_clip) if cfg.grad_clip > 0 else None
            if gnorm is not None and not self._all_finite(gnorm):
                raise self._nonfinite("gradient norm", {"grad_norm": gnorm, **{k: torch.tensor(v) for k, v in sums.items()}})
            main_opt.step()
            if self.aux_params:
                sums.update(self._aux_updates(cache))
            self.step += 1
            if self.world > 1:
                t = torch.tensor([utt_s], dtype=torch.float64)
                dist.all_reduce(t)
                utt_s = float(t)
            self.utt_seconds += utt_s
            dt = time.time() - t_step
            last = sums
            self._log(sums, lr, dt, utt_s, gnorm)
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save(wall=self.wall_before + time.time() - t0)
        return TrainResult(self.step, self.wall_before + time.time() - t0, last, self.utt_seconds)

    def _aux_updates(self, cache: dict) -> dict[str, float]:
        opt = self.optimizers["aux"]
        val = 0.0
        for _ in range(self.cfg.aux_steps):
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                aux = self.objective.aux_loss(cache)
            if not self._all_finite(aux):
                raise self._nonfinite("auxiliary loss", {"aux_loss": aux})
            aux.float().backward()
            if self.world > 1:
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.aux_params]
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat)
                flat /= self.world
                off = 0
                for p, g in zip(self.aux_params, grads):
                    p.grad = flat[off:off + g.numel()].view_as(g).clone()
                    off += g.numel()
            opt.step()
            val = float(aux.detach())
        return {"aux_loss": val}

    def _log(self, sums: dict, lr: float, dt: float, utt_s: float, gnorm) -> None:
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{sums['loss']:.4f}", lr=f"{lr:.2e}")
        if self.step % self.cfg.log_every and self.step != self.cfg.steps:
            return
        row = {"step": self.step, **{k: f"{v:.6f}" for k, v in sums.items()}, "lr": f"{lr:.6e}",
               "grad_norm": f"{float(gnorm):.4f}" if gnorm is not None else "", "step_s": f"{dt:.4f}",
               "utt_s_per_s": f"{utt_s / max(dt, 1e-9):.3f}"}
        if self._csv_fields is None:
            self._csv_fields = list(row.keys())
            self._rewrite_csv()
        self._csv_rows.append(row)
        with open(self._csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in sums.items():
                self._tb.add_scalar(f"{self.name}/{k}", v, self.step)
            self._tb.add_scalar(f"{self.name}/lr", lr, self.step)

    # ------------------------------------------------------------------------------ save / cleanup
    def _average_buffers(self) -> None:
        if self.world == 1:
            return
        for b in self.objective.buffers():
            if b.dtype.is_floating_point:
                dist.all_reduce(b)
                b /= self.world

    def save(self, wall: float) -> None:
        self._average_buffers()
        if self.is_main:
            rng = {"torch_cpu": torch.get_rng_state()}
            if self.device.type == "cuda":
                rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
            save_state(self.run_dir, self.step, model_state=self.objective.state_dict(),
                       optimizers={n: o.state_dict() for n, o in self.optimizers.items()},
                       scheduler=self.scheduler.state_dict(), sampler=self.batches.state_dict(), rng=rng,
                       extra={"wall_s": wall, "utt_seconds": self.utt_seconds, "world": self.world,
                              "config": _jsonable(asdict(self.cfg))}, keep=self.cfg.keep_ckpts)
        if self.world > 1:
            dist.barrier()

    def cleanup(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if getattr(self, "is_main", False):
            plot_losses(self.run_dir / "log.csv", self.run_dir / "loss_curve.png", title=self.name)
        if self._owns_pg and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_pg = False


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))


def machine_description() -> str:
    if torch.cuda.is_available():
        return f"{socket.gethostname()}: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"{socket.gethostname()}: CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def plot_losses(csv_path: Path, png_path: Path, title: str = "") -> Path | None:
    """Loss curves (every numeric column except bookkeeping) from a trainer CSV, as a small PNG."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        return None
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {"step", "lr", "grad_norm", "step_s", "utt_s_per_s"}
    keys = [k for k in rows[0] if k not in skip]
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    for k in keys:
        vals = [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in rows]
        ax.plot(steps, vals, label=k, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())
    return Path(png_path)
