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


def test_same_model_saved_twice_gives_identical_bytes(tmp_path):
    """safetensors writes its __metadata__ in hash-map order (two saves differed); the header is
    canonical now, so the bytes (and the checkpoint_hash) are the same on every save."""
    torch.manual_seed(0)
    m = Tiny(8, 2)
    dirs = [save_checkpoint(m, tmp_path / f"ck{i}", name="tiny", config=TinyCfg(), provenance={"seed": 0})
            for i in range(8)]
    for name in ("model.safetensors", "config.json"):
        blobs = {(d / name).read_bytes() for d in dirs}
        assert len(blobs) == 1, name
    assert len({checkpoint_hash(d) for d in dirs}) == 1


def test_safetensors_bytes_are_canonical_and_readable():
    from safetensors import safe_open
    from safetensors.torch import load

    from upstream.checkpoint import safetensors_bytes
    state = {"b": torch.arange(3, dtype=torch.int64), "a": torch.randn(2, 3), "c.x": torch.ones(5)}
    meta = {k: str(i) for i, k in enumerate("qwertyuiop")}  # 10 keys: many hash-map orders
    blobs = {safetensors_bytes(state, metadata=meta) for _ in range(6)}
    assert len(blobs) == 1
    blob = blobs.pop()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0 and list(json.loads(blob[8 : 8 + n])["__metadata__"]) == sorted(meta)
    back = load(blob)
    assert sorted(back) == sorted(state) and all(torch.equal(back[k], state[k]) for k in state)
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(blob)
        f.flush()
        with safe_open(f.name, "pt") as g:
            assert g.metadata() == meta


def test_hash_changes_when_any_weight_changes(saved, tmp_path):
    m, d = saved
    h0 = checkpoint_hash(d)
    with torch.no_grad():
        m.norm.running_var[3] += 1e-6  # one buffer element, one ulp-scale change
    d2 = save_checkpoint(m, tmp_path / "ck2", name="tiny", config=TinyCfg())
    assert checkpoint_hash(d2) != h0


def test_truncated_copy_never_reports_the_original_hash(saved, tmp_path):
    import shutil
    _, d = saved
    h0 = checkpoint_hash(d)
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    assert checkpoint_hash(copy) == h0
    w = copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"copy/model.safetensors is corrupt, truncated.*re-copy"):
        checkpoint_hash(copy)
    assert checkpoint_hash(copy, verify=False) == h0  # only when asked not to read the weights
    b = bytearray((d / "model.safetensors").read_bytes())
    b[-1] ^= 0x01  # same size, one bit: still caught
    w.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="does not match"):
        checkpoint_hash(copy)


def test_bundled_checkpoints_verify_and_load():
    from pathlib import Path

    from upstream.checkpoint import load_checkpoint as load
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    dirs = sorted(p for p in root.iterdir() if is_checkpoint_dir(p))
    assert len(dirs) == 4
    for d in dirs:
        assert checkpoint_hash(d) == read_meta(d)["sha256"]["model.safetensors"][:12]
    model, meta = load(dirs[0])
    assert not model.training
