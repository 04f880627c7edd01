"""scripts/train_gpu.sh, the one-shot GPU script, end to end on CPU at `tiny` size (corpus generated,
four recipes trained 2 steps each, bundled), and its two Python helpers on their own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from scripts.train_gpu_helpers import bundle, finish_overrides
from upstream.pretrained import from_pretrained

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"hubert-compact": "hubert_compact", "barlow-twins-compact": "barlow_twins",
           "learn2diss-compact": "learn2diss", "jooci-compact": "jooci"}
MIB = 2 ** 20


@pytest.mark.slow   # ~2 min on 2 shared cores: a corpus and four pretrain processes
def test_tiny_run_bundles_four_loadable_checkpoints_within_the_file_limits(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "SIZE": "tiny", "PRESET": "tiny", "STEPS": "2",
           "WORK": str(tmp_path / "work"), "PYTHON": sys.executable, "SKIP_WHEELS": "1"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = [f for f in out.iterdir()]
    assert all(f.is_file() for f in files) and len(files) <= 8, files
    assert all(f.stat().st_size <= 16 * MIB for f in files)
    assert {f.name for f in files} >= {f"{r}.tar.gz" for r in RECIPES} | {"logs.tar.gz", "summary.json",
                                                                           "train_gpu.log"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 0 and summary["corpus_size"] == "tiny"
    assert sorted(summary["bundled"]) == sorted(RECIPES)
    runs = tmp_path / "unpacked"
    for recipe, model_name in RECIPES.items():
        with tarfile.open(out / f"{recipe}.tar.gz") as tar:
            tar.extractall(runs, filter="data")
        final = runs / recipe / "final"
        meta = json.loads((final / "config.json").read_text())
        assert meta["model"] == model_name
        assert meta["provenance"]["corpus"]["size"] == "tiny"
        assert all(v == 2 for v in meta["provenance"]["steps"].values()), meta["provenance"]["steps"]
        model = from_pretrained(final, expected_model=model_name)
        wav = torch.randn(1, 8000)
        with torch.no_grad():
            model(wav, torch.tensor([8000]))
        assert (runs / recipe / next(iter(meta["provenance"]["steps"])) / "log.csv").is_file()
    # learn2diss and jooci started from the hubert run of this script, not a bundled checkpoint
    for recipe, key in (("learn2diss-compact", "backbone_ckpt"), ("jooci-compact", "init_ckpt")):
        rc = json.loads((runs / recipe / "final" / "config.json").read_text())["provenance"]["recipe_config"]
        assert rc[key] == str(tmp_path / "work" / "runs" / "hubert-compact" / "final")


def test_missing_out_is_refused_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh")], env={**env, "WORK": str(tmp_path)},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "set OUT" in p.stderr
    assert not any(tmp_path.iterdir())


def _fake_phase(run: Path, phase: str, *, done: bool = False, step: int | None = None) -> None:
    d = run / phase
    d.mkdir(parents=True)
    if done:
        (d / "DONE.json").write_text(json.dumps({"steps": 5}))
        (d / "log.csv").write_text("step,loss\n5,1.0\n")
    if step is not None:
        sd = d / "state" / f"step-{step:08d}"
        sd.mkdir(parents=True)
        (sd / "state.json").write_text(json.dumps({"step": step}))
        (sd / "tensors.safetensors").write_bytes(b"")
        (d / "state" / "LATEST").write_text(sd.name)


def test_finish_stops_the_interrupted_phase_at_its_last_checkpoint_and_shortens_later_ones(tmp_path):
    run = tmp_path / "hubert-compact"
    _fake_phase(run, "iter1", step=75)
    assert finish_overrides("hubert-compact", run, 10) == [
        "iter1.steps=75", "iter2.steps=10", "iter2.warmup_steps=5", "iter2.ckpt_every=10"]
    _fake_phase(tmp_path / "l2d", "stage1", done=True)
    _fake_phase(tmp_path / "l2d", "stage2", step=25)
    assert finish_overrides("learn2diss-compact", tmp_path / "l2d", 10) == ["stage2.steps=25"]


def test_finish_refuses_a_phase_without_checkpoint_and_a_finished_run(tmp_path):
    with pytest.raises(ValueError, match="no saved checkpoint"):
        finish_overrides("barlow-twins-compact", tmp_path / "bt", 10)
    _fake_phase(tmp_path / "bt", "train", done=True)
    with pytest.raises(ValueError, match="every phase is done"):
        finish_overrides("barlow-twins-compact", tmp_path / "bt", 10)
    with pytest.raises(ValueError, match="unknown recipe"):
        finish_overrides("nope", tmp_path / "bt", 10)


def test_bundle_drops_files_over_the_limit_and_lists_unfinished_runs(tmp_path):
    runs = tmp_path / "runs"
    final = runs / "hubert-compact" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    (final / "model.safetensors").write_bytes(os.urandom(300_000))   # incompressible
    _fake_phase(runs / "barlow-twins-compact", "train", step=25)       # interrupted, never finished
    res = bundle(tmp_path / "out", runs, ["hubert-compact", "barlow-twins-compact"], None, max_mib=0.2)
    assert res["bundled"] == ["hubert-compact"] and res["missing"] == ["barlow-twins-compact"]
    assert res["too_big"] == ["hubert-compact.tar.gz"]
    assert not (tmp_path / "out" / "hubert-compact.tar.gz").exists()
    res = bundle(tmp_path / "out2", runs, ["hubert-compact"], None, max_mib=1.0)
    assert res["too_big"] == [] and (tmp_path / "out2" / "hubert-compact.tar.gz").is_file()
