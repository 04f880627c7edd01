"""`harness run` refuses bad arguments with exit 2 before a corpus is generated or anything trains."""
from __future__ import annotations

import pytest

from harness.superb import sweep as sw
from harness.superb.upstreams import UnknownUpstream, upstream_info


def _run_bad(run_cli, tmp_path, *args):
    corpus = tmp_path / "never-made"
    p = run_cli("run", *args, "--corpus", corpus, "--results", tmp_path / "res", "--device", "cpu", check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert not corpus.exists()                        # nothing was generated
    assert not (tmp_path / "res" / "superb_never-made").exists()
    return p.stderr


def test_steps_zero_negative_and_folds_out_of_range(run_cli, tmp_path):
    # one subprocess per bad argument would cost seconds each; the CLI is exercised once, the rest directly
    err = _run_bad(run_cli, tmp_path, "--tasks", "sid", "--upstreams", "fbank", "--steps", "0")
    assert "--steps 0: must be a positive number" in err
    for steps in (0, -5):
        with pytest.raises(sw.SweepError, match="positive number"):
            sw.check_steps(steps)
    assert sw.check_steps(None) is None and sw.check_steps(3) == 3
    for folds in (0, 6, -1):
        with pytest.raises(sw.SweepError, match="out of range; er has 5 folds"):
            sw.check_folds(folds, ["sid", "er"])
    with pytest.raises(sw.SweepError, match="none of the tasks sid, pr has folds"):
        sw.check_folds(1, ["sid", "pr"])
    assert sw.check_folds(5, ["er"]) == 5
    with pytest.raises(ValueError, match="positive"):
        sw.steps_overrides(sw.task_config("sid", False), 0)     # no silent "no cap" for 0


def test_layers_beyond_the_models_real_layer_count(run_cli, tmp_path):
    err = _run_bad(run_cli, tmp_path, "--tasks", "sid", "--upstreams", "jooci", "--ckpt", "jooci=random:tiny",
                   "--layers", "99", "--dry-run")
    assert "layer 99 is out of range" in err and "valid indices are 0-" in err
    ckpts = sw.resolve_checkpoints(["jooci"], ["jooci=random:tiny"], random_dir=tmp_path / "rnd")
    sw.validate_layer_subsets(["jooci"], ["content"], ["0-1"], ckpts)        # in range: fine
    with pytest.raises(sw.SweepError, match="other=5|layer 5 is out of range"):
        sw.validate_layer_subsets(["jooci"], ["content", "other"], ["other=5"], ckpts)


def test_results_dir_that_cannot_be_written(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    p = run_cli("run", "--tasks", "sid", "--upstreams", "fbank", "--results", blocker / "sub",
                "--corpus", tmp_path / "never", check=False)
    assert p.returncode == 2 and "cannot write there" in p.stderr and not (tmp_path / "never").exists()


def test_any_s3prl_upstream_name_and_did_you_mean(run_cli, tmp_path, tiny_corpus):
    assert not upstream_info("mfcc", hub_names=lambda: []).duet
    assert upstream_info("fbank_no_cmvn", hub_names=lambda: []).features == ("hidden_states",)
    assert upstream_info("hubert", hub_names=lambda: ["hubert", "wavlm"]).name == "hubert"
    with pytest.raises(UnknownUpstream, match="did you mean fbank_no_cmvn"):
        upstream_info("fbank_no_cmv", hub_names=lambda: ["hubert"])
    with pytest.raises(UnknownUpstream, match="did you mean wavlm"):
        upstream_info("wavlmm", hub_names=lambda: ["hubert", "wavlm"])
    ok = run_cli("run", "--tasks", "sid", "--upstreams", "fbank_no_cmvn,mfcc", "--corpus", tiny_corpus,
                 "--results", tmp_path, "--dry-run", "--device", "cpu")
    assert "sid-fbank_no_cmvn-hidden_states-Lall-" in ok.stdout and "sid-mfcc-hidden_states-Lall-" in ok.stdout


def test_ckpt_accepts_what_k_accepts(tmp_path):
    # s3prl upstream: passed through, but it must exist (or be a URL)
    with pytest.raises(sw.SweepError, match="does not exist"):
        sw.resolve_checkpoints(["mfcc"], [f"mfcc={tmp_path}/none.pt"])
    f = tmp_path / "w.pt"
    f.write_bytes(b"weights")
    assert sw.resolve_checkpoints(["mfcc"], [f"mfcc={f}"]) == {"mfcc": f}
    assert len(sw.ckpt_hash_of("mfcc", f)) == 12
    # a transformers HuBERT directory: for the models with a HuBERT backbone only
    from transformers import HubertConfig, HubertModel
    HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                             num_conv_pos_embedding_groups=4)).save_pretrained(tmp_path / "hf")
    got = sw.resolve_checkpoints(["hubert_compact"], [f"hubert_compact={tmp_path / 'hf'}"])
    assert got["hubert_compact"] == tmp_path / "hf" and len(sw.ckpt_hash_of("hubert_compact", tmp_path / "hf")) == 12
    with pytest.raises(sw.SweepError, match="works for hubert_compact, learn2diss"):
        sw.resolve_checkpoints(["jooci"], [f"jooci={tmp_path / 'hf'}"])
    # a fairseq .pt is read as the expert reads it (tensors only; pickled objects need the expert's
    # allow_unpickle opt-in): a file that is no torch checkpoint is refused before anything runs
    with pytest.raises(sw.SweepError, match="learn2diss=.*cannot be loaded with torch.load\\(weights_only=True\\).*allow_unpickle"):
        sw.resolve_checkpoints(["learn2diss"], [f"learn2diss={f}"])
    with pytest.raises(sw.SweepError, match="not in --upstreams"):
        sw.resolve_checkpoints(["fbank"], [f"mfcc={f}"])


def test_cells_folder_that_cannot_be_written_is_found_before_training(run_cli, tmp_path, tiny_corpus):
    """Issue row "cells/ not writable": the cell trained, then its metric was lost."""
    res = tmp_path / "res"
    (res / "n").mkdir(parents=True)
    (res / "n" / "cells").write_text("not a folder")
    p = run_cli("run", "--tasks", "sid", "--upstreams", "fbank", "--results", res, "--name", "n",
                "--corpus", tiny_corpus, "--steps", "2", "--no-preflight", check=False, cwd=tmp_path)
    assert p.returncode == 2 and "cells" in p.stderr and "row would be lost" in p.stderr
    assert not (res / "n" / "runs").exists() or not any((res / "n" / "runs").iterdir())


def test_bare_run_gives_each_task_its_own_controls(run_cli, tmp_path, tiny_corpus):
    """No --upstreams: DUET's models everywhere, fbank_no_cmvn (the SID/ER positive control) only where
    it is a control, not on ASR; naming it in --upstreams runs it on every task."""
    from harness.superb.tasks import TASKS
    from harness.superb.upstreams import DEFAULT_MODELS, TASK_CONTROLS, default_upstreams

    assert set(TASK_CONTROLS) == set(TASKS)
    assert default_upstreams("asr") == ("fbank", *DEFAULT_MODELS)
    bare = run_cli("run", "--tasks", "sid,asr", "--corpus", tiny_corpus, "--results", tmp_path, "--dry-run",
                   "--device", "cpu").stdout
    cells = [w for w in bare.split() if w.startswith(("sid-", "asr-"))]
    assert any(c.startswith("sid-fbank_no_cmvn-") for c in cells) and any(c.startswith("sid-fbank-") for c in cells)
    assert any(c.startswith("asr-fbank-") for c in cells)
    assert not any(c.startswith("asr-fbank_no_cmvn-") for c in cells)
    for model in DEFAULT_MODELS:
        assert any(c.startswith(f"asr-{model}-") for c in cells) and any(c.startswith(f"sid-{model}-") for c in cells)
    named = run_cli("run", "--tasks", "sid,asr", "--upstreams", "fbank_no_cmvn", "--corpus", tiny_corpus,
                    "--results", tmp_path, "--dry-run", "--device", "cpu").stdout
    assert "asr-fbank_no_cmvn-hidden_states-Lall-" in named and "sid-fbank_no_cmvn-hidden_states-Lall-" in named
