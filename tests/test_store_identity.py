"""Feature stores: which checkpoints extract the same features (harness/features/loading.py), and the
same batches in every run of the opt-in batched mode (``--batch-seconds``; harness/features/planning.py).
The default, one file a forward, needs no batch plan: tests/test_features.py checks its bytes."""
import json
import shutil

from harness.features.loading import same_upstream, upstream_identity
from upstream.checkpoint import save_checkpoint
from upstream.registry import build_model, preset_config


def _ckpt(tmp_path, name):
    import torch
    torch.manual_seed(0)
    d = tmp_path / name
    save_checkpoint(build_model("hubert_compact", "tiny"), d, name="hubert_compact",
                    config=preset_config("hubert_compact", "tiny"))
    return d


def test_a_config_written_before_a_field_existed_is_the_same_architecture(tmp_path):
    """A checkpoint whose config.json lacks fields added later (they load as their defaults) is the
    same upstream as a copy with them written out; a field that differs makes another upstream."""
    new = _ckpt(tmp_path, "new")
    old = tmp_path / "old"
    shutil.copytree(new, old)
    meta = json.loads((old / "config.json").read_text())
    for k in ("rel_pos", "num_buckets", "max_bucket_distance"):
        del meta["config"][k]
    (old / "config.json").write_text(json.dumps(meta))
    a, b = (upstream_identity("hubert_compact", str(p), None) for p in (new, old))
    assert a["ckpt_hash"] == b["ckpt_hash"] and a["ckpt_config"] != b["ckpt_config"]
    assert same_upstream(a, b)
    other = tmp_path / "other"
    shutil.copytree(new, other)
    meta["config"]["num_buckets"] = 64
    (other / "config.json").write_text(json.dumps(meta))
    assert not same_upstream(a, upstream_identity("hubert_compact", str(other), None))


def test_extraction_batches_do_not_depend_on_the_order_files_arrive_in():
    """Ties in length are broken by file id, so the batches (each file's padded neighbours, hence the
    last bits of its features) do not depend on the order the caller collected the files in."""
    import random

    from harness.features.planning import length_batches
    lengths = {f"/c/{i:03d}.flac": 16000 * (1 + i % 3) for i in range(30)}
    want = length_batches(lengths, 5 * 16000)
    assert [len(b) for b in want][:2] == [5, 5] and sum(map(len, want)) == 30
    assert all(a <= b for a, b in zip(sum(want, []), sum(want, [])[1:]) if lengths[a] == lengths[b])
    for seed in range(5):
        keys = list(lengths)
        random.Random(seed).shuffle(keys)
        assert length_batches({k: lengths[k] for k in keys}, 5 * 16000) == want
    assert length_batches(lengths, 0) == [[f] for f in sum(want, [])]
