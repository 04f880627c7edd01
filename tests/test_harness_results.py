"""Results store, cell ids, locks, layer specs and early argument errors (no training)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness.superb.cells import Cell, check_layer_spec, parse_layers_arg
from harness.locks import CellLock
from harness.superb.results import ResultStore, atomic_write_text


def _cell(**kw):
    base = dict(task="sid", upstream="jooci", ckpt="/x", ckpt_hash="abc", feature="content", layers="all",
                corpus="/c", corpus_id="c1", config_id="k1", steps=10)
    base.update(kw)
    return Cell(**base)


def test_cell_id_depends_on_what_changes_the_number():
    a = _cell()
    assert a.id == _cell(ckpt="/elsewhere", corpus="/moved").id      # paths don't matter, hashes do
    assert a.id != _cell(ckpt_hash="def").id != _cell(steps=20).id
    assert a.id.startswith("sid-jooci-content-Lall-")
    assert _cell(layers="6-11").model_config == {"layers": {"content": "6-11"}}
    assert _cell().model_config is None


def test_layer_specs():
    assert check_layer_spec("6-11") == "6-11" and check_layer_spec("0,2,4-6") == "0,2,4-6"
    for bad in ("6-", "a", "11-6", "1;2"):
        with pytest.raises(ValueError):
            check_layer_spec(bad)
    assert parse_layers_arg(["all", "other=0-3"]) == {None: ["all"], "other": ["0-3"]}


def test_store_roundtrip_and_csv(tmp_path):
    s = ResultStore(tmp_path, "run")
    assert s.rows() == [] and len(s.frame()) == 0
    for i, t in enumerate(["sid", "er"]):
        s.put({"cell_id": f"c{i}", "task": t, "upstream": "fbank", "feature": "hidden_states", "layers": "all",
               "metric": "acc", "value": 0.5 + i / 10})
    assert s.has("c0") and not s.has("c9")
    csv = s.write_csv()
    import pandas as pd
    df = pd.read_csv(csv)
    # rows without a unit are old fraction rows: read back in percent, as every row now is
    assert list(df.task) == ["er", "sid"] and df.value.tolist() == [60.0, 50.0] and set(df.unit) == {"%"}
    assert not list(s.cells_dir.glob(".*tmp"))      # no temporary files left behind


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_text(p, "old")
    with pytest.raises(TypeError):
        atomic_write_text(p, 123)   # write fails mid-way
    assert p.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_lock_is_exclusive_across_processes_and_dies_with_holder(tmp_path):
    path = tmp_path / "c.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r); from harness.locks import CellLock; "
        "l = CellLock(%r); assert l.acquire(); print('held', flush=True); time.sleep(60)") %
        (str(__import__('harness').__path__[0] + '/..'), str(path))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    mine = CellLock(path)
    assert not mine.acquire(block=False)
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    assert mine.acquire(block=False)        # no stale lock after the holder was killed
    mine.release()


def test_unknown_names_fail_before_training(run_cli, tmp_path):
    for args, msg in ((["--tasks", "sid", "--upstreams", "nope"], "unknown upstream"),
                      (["--tasks", "sid", "--features", "colour"], "unknown feature"),
                      (["--tasks", "sid", "--layers", "3-1"], "start > end")):
        p = run_cli("run", *args, "--results", tmp_path, "--corpus", tmp_path / "none", check=False)
        assert p.returncode == 2, p.stderr
        assert msg in p.stderr, p.stderr
    assert not (tmp_path / "superb_none").exists()


def test_list_shows_tasks_upstreams_features(run_cli):
    out = run_cli("list").stdout
    for word in ("sid", "asv", "er", "pr", "asr", "voxceleb1", "fbank", "learn2diss", "jooci", "barlow_twins",
                 "content, other", "checkpoints"):
        assert word in out, word


def test_dry_run_lists_cells_without_training(run_cli, tiny_corpus, tmp_path):
    p = run_cli("run", "--tasks", "sid,pr", "--upstreams", "fbank,jooci", "--ckpt", "jooci=random:tiny",
                "--layers", "all", "content=1-2", "--corpus", tiny_corpus, "--results", tmp_path, "--dry-run",
                "--device", "cpu", cwd=tmp_path)
    # fbank: 1 feature; jooci: content x {all, 1-2} + other x {all}  -> 4 cells per task
    assert "8 cells (0 already done)" in p.stdout
    assert "sid-jooci-content-L1-2-" in p.stdout and "pr-fbank-hidden_states-Lall-" in p.stdout
    assert not (tmp_path / "superb_tiny" / "cells").exists()


def test_missing_checkpoint_is_an_error_before_training(run_cli, tmp_path):
    p = run_cli("run", "--tasks", "sid", "--upstreams", "jooci", "--ckpt", f"jooci={tmp_path}/nope",
                "--results", tmp_path, check=False)
    assert p.returncode == 2 and "config.json" in p.stderr


def test_real_data_yaml_is_checked_before_training(run_cli, tmp_path):
    vox = tmp_path / "VoxCeleb1"
    (vox / "dev" / "wav").mkdir(parents=True)
    (vox / "iden_split.txt").write_text("1 id10001/a/00001.wav\n")
    wav = vox / "dev" / "wav" / "id10001" / "a" / "00001.wav"      # the listed file exists (the audio
    wav.parent.mkdir(parents=True)                                  # pre-flight check reads it)
    import numpy as np
    import soundfile as sf
    sf.write(wav, np.zeros(16000, dtype="float32") + 0.01, 16000)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"voxceleb1: {vox}\n")
    ok = run_cli("run", "--tasks", "sid", "--upstreams", "fbank", "--data-config", cfg, "--results", tmp_path,
                 "--dry-run", "--device", "cpu")
    assert "1 cells" in ok.stdout and "corpus real:data" in ok.stdout
    bad = run_cli("run", "--tasks", "sid,er", "--upstreams", "fbank", "--data-config", cfg, "--results", tmp_path,
                  "--device", "cpu", check=False)
    assert bad.returncode == 2 and "task er needs 'iemocap:" in bad.stderr
    cfg.write_text(f"voxceleb1: {vox}\nlibrispeech: {tmp_path}/nowhere\n")
    bad = run_cli("run", "--tasks", "pr", "--upstreams", "fbank", "--data-config", cfg, "--results", tmp_path,
                  "--device", "cpu", check=False)
    assert bad.returncode == 2 and "nowhere is not a directory" in bad.stderr
