"""The trainer's machinery on a small hand-made objective: determinism, resume, NaN stop, aux steps."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrain.losses.base import LossOutput
from pretrain.state import latest_state, load_state
from pretrain.trainer import NonFiniteLoss, TrainConfig, Trainer


class ToyBatches:
    """Regression data, a pure function of (step, micro, rank)."""

    def __init__(self):
        self.position = 0

    def get(self, step, micro, rank=0, world=1, accum=1):
        g = torch.Generator().manual_seed(1000 + (step * accum + micro) * world + rank)
        x = torch.randn(8, 4, generator=g)
        self.position = (step * accum + micro) * world + rank + 1
        return {"x": x, "y": x.sum(1, keepdim=True)}

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, d):
        self.position = d["position"]


class _Crash(Exception):
    pass


class ToyObjective(nn.Module):
    def __init__(self, nan_at: int | None = None, with_aux: bool = False, crash_at: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))
        self.est = nn.Linear(1, 1) if with_aux else None
        self.nan_at = nan_at
        self.crash_at = crash_at
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            raise _Crash()
        pred = self.net(batch["x"])
        loss = ((pred - batch["y"]) ** 2).mean()
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return LossOutput(loss, {"mse": loss.detach()}, {"pred": pred.detach()})

    def aux_parameters(self):
        return list(self.est.parameters()) if self.est is not None else []

    def aux_loss(self, cache):
        return ((self.est(cache["pred"]) - 1.0) ** 2).mean()


def _losses(run: Path) -> list[tuple[int, str]]:
    with open(run / "log.csv", newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def _run(run: Path, steps: int, **kw):
    torch.manual_seed(0)
    obj = ToyObjective(**kw)
    cfg = TrainConfig(steps=steps, lr=1e-2, warmup_steps=2, ckpt_every=3, progress=False, grad_accum=2)
    tr = Trainer(cfg, obj, ToyBatches(), run, name="toy").setup()
    try:
        res = tr.train()
    finally:
        tr.cleanup()
    return res, obj


def test_resume_continues_with_identical_losses(tmp_path):
    full, _ = _run(tmp_path / "full", 9, with_aux=True)
    assert full.steps == 9
    # an interrupted run: crashes in step 8 (after the step-6 checkpoint), resumed by a fresh Trainer
    with pytest.raises(_Crash):
        _run(tmp_path / "part", 9, with_aux=True, crash_at=15)
    part_losses = _losses(tmp_path / "part")
    resumed, _ = _run(tmp_path / "part", 9, with_aux=True)
    assert resumed.steps == 9
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full")
    assert len(part_losses) == 7          # step 7 was logged, then rolled back to the checkpoint
    st = load_state(latest_state(tmp_path / "full"))
    assert st["step"] == 9 and set(st["optimizers"]) == {"main", "aux"}
    assert (tmp_path / "full" / "loss_curve.png").stat().st_size < 100_000
    # only the newest two checkpoints are kept
    assert len(list((tmp_path / "full" / "state").glob("step_*"))) == 2


def test_changed_config_is_a_real_difference(tmp_path):
    a, _ = _run(tmp_path / "a", 4)
    torch.manual_seed(0)
    cfg = TrainConfig(steps=4, lr=1e-2, warmup_steps=2, ckpt_every=3, progress=False, grad_accum=2, seed=1)
    tr = Trainer(cfg, ToyObjective(), ToyBatches(), tmp_path / "b", name="toy").setup()
    tr.train()
    tr.cleanup()
    assert _losses(tmp_path / "a") != _losses(tmp_path / "b")   # the seed reaches dropout


def test_nan_loss_stops_and_names_last_good_checkpoint(tmp_path):
    # 2 micro-batches per step: call 9 is step 5's first micro-batch; checkpoints every 3 steps
    with pytest.raises(NonFiniteLoss) as e:
        _run(tmp_path / "nan", 9, nan_at=9)
    msg = str(e.value)
    assert "step 5" in msg and "step_0000003" in msg and "Last good checkpoint" in msg
    assert latest_state(tmp_path / "nan").name == "step_0000003"      # nothing written after the NaN
