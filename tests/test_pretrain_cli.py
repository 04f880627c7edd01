"""`harness pretrain` end to end on the tiny corpus: every recipe for 3 steps, resume after SIGKILL,
DDP with 2 gloo processes, and the bad-input errors (raised before any work)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env

TINY = ["--no-progress", "preset=tiny", "data.batch_size=2", "data.crop_s=1.0"]


def _log(run: Path, phase: str) -> list[dict]:
    with open(run / phase / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def cli(*args) -> None:
    """The CLI's own entry point, in this process (a subprocess per run would re-import torch)."""
    from harness.cli import main

    rc = main([str(a) for a in args])
    assert rc == 0, f"harness {' '.join(map(str, args))} exited {rc}"


@pytest.fixture(scope="module")
def hubert_tiny(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "hubert"
    cli("pretrain", "--recipe", "hubert-compact", "--corpus", tiny_corpus, "--out", out, "--steps", "3",
        *TINY, "k_mfcc=8", "k_layer=8", "label_layer=1")
    return out


def _check_final(run: Path, model: str, phases: list[str]):
    from upstream.checkpoint import load_checkpoint

    m, meta = load_checkpoint(run / "final", expected_model=model)
    prov = meta["provenance"]
    assert prov["steps"] == {p: 3 for p in phases}
    assert prov["seed"] == 0 and "machine" in prov and prov["corpus"]["path"]
    assert (run / "final" / "MODEL_CARD.md").read_text().count("|") > 10
    assert (run / "final" / "loss_curve.png").stat().st_size < 100_000
    for p in phases:
        rows = _log(run, p)
        assert [int(r["step"]) for r in rows] == [1, 2, 3]
        assert all(float(r["loss"]) == float(r["loss"]) for r in rows)        # finite, not NaN
    return m, meta


def test_hubert_compact_two_iterations(hubert_tiny):
    m, meta = _check_final(hubert_tiny, "hubert_compact", ["iter1", "iter2"])
    assert "k-means K=8 on MFCC" in meta["provenance"]["labels"]
    labels = json.loads((hubert_tiny / "cache" / "km_mfcc_8.json").read_text())
    assert labels["num_classes"] == 8 and sum(labels["lengths"]) > 100
    card = (hubert_tiny / "final" / "MODEL_CARD.md").read_text()
    assert "formant-warped" in card and "iteration(s) [2]" in card    # ContentVec-style student input
    assert m.frontend.__class__.__name__ == "LogMelFrontEnd"            # compact/tiny presets: log-mel


@pytest.mark.parametrize("recipe,model,phases,extra", [
    ("learn2diss-compact", "learn2diss", ["stage1", "stage2"], ["k_frame=8", "q_utt=4"]),
    ("jooci-compact", "jooci", ["stage1", "stage2"], ["label_layers=1,2", "predict_layers=1,2", "k=8"]),
    ("barlow-twins-compact", "barlow_twins", ["train"], []),
])
def test_recipe_three_steps(recipe, model, phases, extra, tiny_corpus, hubert_tiny, tmp_path):
    ck = [f"backbone_ckpt={hubert_tiny / 'final'}"] if recipe.startswith("learn2diss") else \
         [f"init_ckpt={hubert_tiny / 'final'}"] if recipe.startswith("jooci") else []
    out = tmp_path / recipe
    cli("pretrain", "--recipe", recipe, "--corpus", tiny_corpus, "--out", out, "--steps", "3", *TINY, *ck, *extra)
    m, meta = _check_final(out, model, phases)
    if recipe.startswith("learn2diss"):
        rows = _log(out, "stage2")
        assert "club_mi" in rows[0] and "aux_loss" in rows[0]          # CLUB + estimator steps in stage 2
        assert "club_mi" not in _log(out, "stage1")[0]
        import torch
        from upstream.checkpoint import load_checkpoint
        from upstream.registry import build_model
        hub, _ = load_checkpoint(hubert_tiny / "final")
        ref = build_model("learn2diss", meta["config"])
        ref.init_from_backbone(hub)
        for k, v in ref.backbone.state_dict().items():                 # the frozen part stayed frozen
            assert torch.equal(m.backbone.state_dict()[k], v), k
        changed = [k for k, v in ref.frame_encoder.state_dict().items()
                   if not torch.equal(m.frame_encoder.state_dict()[k], v)]
        assert changed                                                 # g (from the parent's top layers) trained
    if recipe.startswith("jooci"):
        assert "resemblyzer" in meta["provenance"]["teacher"]
        assert "whitened" in meta["provenance"]["teacher"]
        assert {"other_distill", "reg_decoder"} <= set(_log(out, "stage1")[0])   # content frozen in stage 1
        assert {"content", "other_distill", "reg_decoder"} <= set(_log(out, "stage2")[0])


def test_resume_after_sigkill_matches_uninterrupted(tiny_corpus, tmp_path):
    args = ["pretrain", "--recipe", "barlow-twins-compact", "--corpus", str(tiny_corpus), *TINY,
            "train.steps=24", "train.ckpt_every=4", "train.warmup_steps=4"]
    full = tmp_path / "full"
    cli(*args, "--out", full)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "--out", str(killed)], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "train" / "state" / "LATEST"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step_0000008":
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists()
    done_before = latest.read_text().strip()
    cli(*args, "--out", killed)                 # the same command resumes from the last checkpoint
    assert done_before < "step_0000024"
    a = [(r["step"], r["loss"], r["bt_frame"]) for r in _log(full, "train")]
    b = [(r["step"], r["loss"], r["bt_frame"]) for r in _log(killed, "train")]
    assert len(a) == 24 and a == b


def test_ddp_two_gloo_processes(tiny_corpus, tmp_path):
    out = tmp_path / "ddp"
    env = cli_env()
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29500 + os.getpid() % 500), "-m", "harness.cli", "pretrain", "--recipe",
                           "barlow-twins-compact", "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "3",
                           *TINY], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    meta = json.loads((out / "final" / "config.json").read_text())
    assert meta["provenance"]["world_size"] == 2
    rows = _log(out, "train")
    assert len(rows) == 3
    # both ranks' audio is counted: 2 processes x 2 utterances x <= 1 s per step
    assert float(rows[0]["utt_s_per_s"]) > 0


# ----------------------------------------------------------------------------- bad input (in-process, fast)
def _main(args, capsys):
    from harness.cli import main

    rc = main(["pretrain", *map(str, args)])
    return rc, capsys.readouterr().err


def test_unknown_recipe(capsys, tmp_path):
    rc, err = _main(["--recipe", "wav2vec9", "--out", tmp_path], capsys)
    assert rc == 2 and "unknown recipe 'wav2vec9'" in err and "hubert-compact" in err


def test_unknown_override_key(capsys, tmp_path):
    rc, err = _main(["--recipe", "hubert-compact", "--out", tmp_path, "iter1.stepz=3"], capsys)
    assert rc == 2 and "unknown override key 'iter1.stepz'" in err and "iter1.steps" in err
    rc, err = _main(["--recipe", "hubert-compact", "--out", tmp_path, "iter1.steps=many"], capsys)
    assert rc == 2 and "iter1.steps" in err
    rc, err = _main(["--recipe", "hubert-compact", "--out", tmp_path, "nokeyvalue"], capsys)
    assert rc == 2 and "key=value" in err


def test_corpus_without_librispeech(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, err = _main(["--recipe", "barlow-twins-compact", "--corpus", tmp_path / "empty", "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "LibriSpeech/train-clean-100" in err and "harness corpus make" in err
    assert not (tmp_path / "o").exists()                       # nothing was started
    rc, err = _main(["--recipe", "barlow-twins-compact", "--corpus", tmp_path / "nope", "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "not found" in err


def test_unwritable_out(capsys, tmp_path, tiny_corpus):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _main(["--recipe", "barlow-twins-compact", "--corpus", tiny_corpus, "--out", blocker / "run"], capsys)
    assert rc == 2 and "cannot write to --out" in err


def test_missing_backbone_checkpoint(capsys, tmp_path, tiny_corpus):
    rc, err = _main(["--recipe", "learn2diss-compact", "--corpus", tiny_corpus, "--out", tmp_path,
                     f"backbone_ckpt={tmp_path / 'none'}"], capsys)
    assert rc == 2 and "hubert_compact backbone" in err and "--recipe hubert-compact" in err
    rc, err = _main(["--recipe", "jooci-compact", "--out", tmp_path, "teacher=rdino"], capsys)
    assert rc == 2 and "unknown teacher 'rdino'" in err


def test_list_and_show_config(capsys):
    from harness.cli import main

    assert main(["pretrain", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(r in out for r in ("hubert-compact", "learn2diss-compact", "jooci-compact", "barlow-twins-compact"))
    assert main(["pretrain", "--recipe", "jooci-compact", "--show-config", "stage1.steps=7", "init_ckpt="]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["stage1"]["steps"] == 7 and cfg["teacher"] == "resemblyzer"
