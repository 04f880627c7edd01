"""run_downstream.py / harness.superb.bridge: s3prl's flags, DUET names on s3prl.hub, clear bad-input errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.superb import bridge

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "downstream_configs" / "mini"


def _fail(argv) -> str:
    with pytest.raises(SystemExit) as e:
        bridge.prepare(argv)
    assert isinstance(e.value, bridge.BridgeError) or e.value.code not in (0, None)
    return str(e.value)


@pytest.fixture(scope="module")
def vox(tmp_path_factory) -> Path:
    """A minimal VoxCeleb1 layout: enough for the path checks (no audio needed)."""
    root = tmp_path_factory.mktemp("vox") / "VoxCeleb1"
    (root / "dev" / "wav" / "id10001").mkdir(parents=True)
    (root / "test" / "wav").mkdir(parents=True)
    (root / "iden_split.txt").write_text("1 id10001/v/00000.wav\n")
    return root


def _sid(vox: Path, *more: str) -> list[str]:
    return ["-m", "train", "-u", "fbank", "-d", "voxceleb1", "-c", str(MINI / "sid.yaml"), "-p", "/tmp/unused",
            "-o", f"config.downstream_expert.datarc.file_path={vox},,config.downstream_expert.datarc.meta_data="
                  f"{vox / 'iden_split.txt'}", *more]


def test_valid_sid_command_passes_and_defaults_to_cpu(vox):
    args, argv = bridge.prepare(_sid(vox))
    assert args.upstream == "fbank" and args.downstream == "voxceleb1"
    import torch

    if not torch.cuda.is_available():  # s3prl's default is cuda: without a GPU the bridge says cpu
        assert argv[-2:] == ["--device", "cpu"] and args.device == "cpu"
    args, argv = bridge.prepare(_sid(vox, "--device", "cuda:1"))  # an explicit --device is kept
    assert args.device == "cuda:1" and argv.count("--device") == 1


def test_duet_upstreams_are_registered_next_to_s3prl_builtins():
    import s3prl.hub as hub

    names = bridge.register_upstreams(hub)
    assert {"learn2diss", "jooci", "barlow_twins", "hubert_compact"} <= set(names)
    for name in ("fbank", "mfcc", "fbank_no_cmvn", *names):
        assert callable(getattr(hub, name))
    parser = bridge.s3prl_parser()  # s3prl's own parser: its flags, exactly
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"-m", "-u", "-k", "-g", "-d", "-c", "-o", "-n", "-p", "-e", "-i", "-s", "-l", "-f", "-t",
            "--upstream_feature_normalize", "--device"} <= flags


def test_missing_config_file(vox):
    msg = _fail(["-m", "train", "-u", "fbank", "-d", "voxceleb1", "-c", "/nope/sid.yaml"])
    assert "/nope/sid.yaml does not exist" in msg and "-c" in msg


def test_not_an_s3prl_config(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("just: [a, list]\n")
    assert "not an s3prl downstream config" in _fail(["-m", "train", "-u", "fbank", "-d", "voxceleb1", "-c", str(bad)])


def test_unknown_downstream_and_upstream(vox):
    assert "unknown downstream -d 'voxceleb'" in _fail(_sid(vox)[:5] + ["voxceleb"] + _sid(vox)[6:])
    argv = _sid(vox)
    argv[argv.index("-u") + 1] = "fbnak"
    msg = _fail(argv)
    assert "unknown upstream -u 'fbnak'" in msg and "fbank" in msg


def test_bad_override_syntax(vox):
    assert "exactly one '='" in _fail(_sid(vox)[:-1] + ["config.runner.total_steps"])
    assert "must start with 'config.'" in _fail(_sid(vox)[:-1] + ["runner.total_steps=3"])


def test_missing_data_paths_name_the_key_and_the_fix(tmp_path):
    # both paths overridden: the config's defaults (corpora/small/...) exist once the small corpus is made
    msg = _fail(["-m", "train", "-u", "fbank", "-d", "voxceleb1", "-c", str(MINI / "sid.yaml"),
                 "-o", f"config.downstream_expert.datarc.file_path={tmp_path / 'nothing'},,"
                       f"config.downstream_expert.datarc.meta_data={tmp_path / 'nothing' / 'iden_split.txt'}"])
    assert f"datarc.file_path = '{tmp_path / 'nothing'}': directory does not exist" in msg
    assert "datarc.meta_data" in msg and "-o" in msg and "harness corpus make" in msg


def test_emotion_fold_meta_checked(tmp_path):
    (tmp_path / "meta" / "Session1").mkdir(parents=True)
    (tmp_path / "meta" / "Session1" / "train_meta_data.json").write_text(json.dumps({"labels": {}, "meta_data": []}))
    msg = _fail(["-m", "train", "-u", "fbank", "-d", "emotion", "-c", str(MINI / "er.yaml"),
                 "-o", f"config.downstream_expert.datarc.root={tmp_path},,config.downstream_expert.datarc.meta_data="
                       f"{tmp_path / 'meta'}"])
    assert "Session1/test_meta_data.json" in msg and "fold1" in msg


def test_missing_evaluate_checkpoint(tmp_path):
    assert "checkpoint not found" in _fail(["-m", "evaluate", "-e", str(tmp_path / "dev-best.ckpt")])
    assert "holds no states-*.ckpt" in _fail(["-m", "evaluate", "-e", str(tmp_path)])

# the real entry point's exit status on bad input is checked in test_bridge_e2e.py (same process as
# the e2e runs, to import s3prl once)


@pytest.mark.parametrize("task", ["sid", "asv", "er", "pr", "asr"])
def test_task_overrides_satisfy_the_path_checks_on_a_generated_corpus(tiny_corpus, task, tmp_path):
    """harness.superb.tasks' -o for the tiny corpus names only paths that exist (what s3prl will open)."""
    from harness.superb.tasks import TASKS

    args, _ = bridge.prepare(TASKS[task].train_argv("fbank", tmp_path / "exp", tiny_corpus))
    assert args.downstream == TASKS[task].downstream and args.override
