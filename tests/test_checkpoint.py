"""upstream/checkpoint.py: atomic save, round trip, hash, and a clear CheckpointError for every
missing / truncated / corrupt / mismatched file."""
import json
import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from upstream.checkpoint import (CheckpointError, checkpoint_hash, is_checkpoint_dir, load_checkpoint,
                                 read_meta, save_checkpoint)


@dataclass
class TinyCfg:
    dim: int = 8
    layers: int = 2


class Tiny(nn.Module):
    def __init__(self, dim, layers):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


def build(name, cfg):
    if name != "tiny":
        raise KeyError(name)
    return Tiny(**cfg)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    m = Tiny(8, 2)
    m.norm.running_mean.normal_()
    d = save_checkpoint(m, tmp_path / "ck", name="tiny", config=TinyCfg(),
                        provenance={"recipe": "test", "seed": 0}, model_card="# tiny\n")
    return m, d


def test_round_trip(saved):
    m, d = saved
    assert sorted(os.listdir(d)) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    assert is_checkpoint_dir(d)
    m2, meta = load_checkpoint(d, build=build)
    assert meta["model"] == "tiny" and meta["config"] == {"dim": 8, "layers": 2}
    assert meta["provenance"]["recipe"] == "test"
    x = torch.randn(3, 8)
    m.eval()
    assert torch.equal(m(x), m2(x)) and not m2.training
    h = checkpoint_hash(d)
    assert len(h) == 12 and h == checkpoint_hash(d, verify=True)
    assert h == meta["sha256"]["model.safetensors"][:12]


def test_save_is_atomic_and_replaces(saved, tmp_path):
    m, d = saved
    old = checkpoint_hash(d)
    with torch.no_grad():
        m.blocks[0].weight.add_(1)
    save_checkpoint(m, d, name="tiny", config=TinyCfg())
    assert checkpoint_hash(d) != old
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp dirs left behind
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(m, d, name="tiny", config=TinyCfg(), overwrite=False)


def test_failed_save_leaves_old_checkpoint(saved, tmp_path):
    m, d = saved
    old = checkpoint_hash(d)
    with pytest.raises(TypeError):
        save_checkpoint(m, d, name="tiny", config={"bad": object()})
    assert checkpoint_hash(d, verify=True) == old
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_missing_dir_and_files(saved, tmp_path):
    _, d = saved
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "nope", build=build)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing.*re-copy"):
        load_checkpoint(d, build=build)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json is missing"):
        load_checkpoint(d, build=build)


def test_truncated_weights(saved):
    _, d = saved
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors is corrupt or truncated: sha256"):
        load_checkpoint(d, build=build)
    with pytest.raises(CheckpointError, match=r"cannot be read as safetensors"):
        load_checkpoint(d, build=build, verify=False)


def test_corrupt_weights_bitflip(saved):
    _, d = saved
    w = d / "model.safetensors"
    b = bytearray(w.read_bytes())
    b[-5] ^= 0xFF
    w.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(d, build=build)


def test_corrupt_config(saved):
    _, d = saved
    c = d / "config.json"
    c.write_text(c.read_text()[:40])
    with pytest.raises(CheckpointError, match=r"config.json is corrupt or truncated"):
        load_checkpoint(d, build=build)


def test_wrong_format_and_hf_config(saved):
    _, d = saved
    (d / "config.json").write_text(json.dumps({"model_type": "hubert", "hidden_size": 8}))
    with pytest.raises(CheckpointError, match=r"transformers hubert config.*load_hf_backbone"):
        read_meta(d)
    (d / "config.json").write_text(json.dumps({"format": "other/2"}))
    with pytest.raises(CheckpointError, match="format 'other/2'"):
        read_meta(d)


def test_wrong_model_name(saved):
    _, d = saved
    with pytest.raises(CheckpointError, match=r"holds a 'tiny' model, not 'jooci'.*-u tiny"):
        load_checkpoint(d, build=build, expected_model="jooci")
    meta = json.loads((d / "config.json").read_text())
    meta["model"] = "nosuchmodel"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="'nosuchmodel' is not a known DUET model"):
        load_checkpoint(d, build=build)


def test_shape_mismatch_and_missing_keys(saved):
    _, d = saved
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["dim"] = 4
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*blocks.0.weight: file \(8, 8\) vs model \(4, 4\)"):
        load_checkpoint(d, build=build)
    meta["config"] = {"dim": 8, "layers": 3}
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"2 missing keys \(e.g. blocks.2.weight, blocks.2.bias"):
        load_checkpoint(d, build=build)
    meta["config"] = {"dim": 8, "layers": 2, "bogus": 1}
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit the tiny model code"):
        load_checkpoint(d, build=build)


def test_pt_file_is_refused_without_unpickling(tmp_path):
    p = tmp_path / "x.pt"
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match=r"is a file.*fairseq"):
        load_checkpoint(p, build=build)
