"""The `duet_cached` s3prl upstream returns exactly what the real upstream returns: stored layers for
waveforms it has on disk, a live forward for any other waveform (random crops, effects, probes)."""
from __future__ import annotations

from pathlib import Path
import json
import numpy as np
import pytest
import soundfile as sf
import torch

import upstream.hub  # noqa: E402,F401  (a broken import fails CI)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from harness.features.cache import build_store
    from harness.superb.sweep import random_checkpoint

    tmp = tmp_path_factory.mktemp("cache")
    ckpt = random_checkpoint("jooci", "tiny", tmp / "ckpts")
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate([16000, 23000, 31000]):
        p = tmp / f"u{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000, subtype="PCM_16")
        paths.append(p)
    spec = build_store(tmp / "store", "jooci", str(ckpt), ["content", "other"], paths, dtype="float32")  # exact
    return ckpt, spec, paths, tmp


def _wav(p):
    w, _ = sf.read(str(p), dtype="float32")
    return torch.from_numpy(w)


def test_cached_equals_live_and_counts_hits(setup):
    from harness.features.cache import CachedUpstream
    from harness.features.store import load_upstream

    ckpt, spec, paths, tmp = setup
    cfg = tmp / "layers.yaml"
    cfg.write_text("layers: {content: '1-2'}\n")
    real = load_upstream("jooci", str(ckpt), str(cfg)).eval()
    cached = CachedUpstream(str(spec), str(cfg)).eval()
    assert cached.get_downsample_rates("content") == real.get_downsample_rates("content")
    wavs = [_wav(p) for p in paths]
    crop = wavs[2][1000:20000].clone()                  # a random-crop-like waveform: not on disk
    batch = [wavs[1], crop, wavs[0]]
    with torch.no_grad():
        live, valid = real.forward_with_lengths(batch)
        got = cached(batch)
    assert (cached.hits, cached.misses) == (2, 1)
    for key in ("content", "other"):
        assert len(got[key]) == len(live[key])          # the -g subset is applied to cached layers too
        for a, b in zip(got[key], live[key]):
            assert a.shape == b.shape                   # exact frame counts: same padded length
            for i in range(len(batch)):                 # valid frames of each item agree, padding is zero
                n = int(valid[key][i])
                torch.testing.assert_close(a[i, :n], b[i, :n], atol=1e-4, rtol=1e-4)
                assert not a[i, n:].any()
    assert len(got["content"]) == 2


def test_stale_cache_is_refused(setup):
    from harness.features.cache import CachedUpstream
    from harness.features.store import FeatureStore

    ckpt, spec, paths, tmp = setup
    store = FeatureStore(tmp / "store" / "store")
    arr = store._shard("content", 0)
    path = tmp / "store" / "store" / "content" / "shard-00000.npy"
    bad = np.array(arr) + 1.0
    store._mmaps.clear()
    np.save(path, bad)
    with pytest.raises(RuntimeError, match="disagrees with the live upstream"):
        CachedUpstream(str(spec))


def test_hard_linked_paths_are_one_file_and_a_killed_build_resumes_without_rework(tmp_path, monkeypatch):
    """Two paths with the same samples (the generated corpus hard-links LibriSpeech files into its
    VoxCeleb1 and IEMOCAP views) name one stored file, whatever order they come in; the hash index
    is on disk before extraction, so a build killed mid-extraction re-hashes nothing and a rebuild
    extracts nothing already stored."""
    import json
    import os

    from harness.features import cache
    from harness.features.store import FeatureStore
    from harness.superb.sweep import random_checkpoint

    ckpt = random_checkpoint("jooci", "tiny", tmp_path / "ckpts")
    rng = np.random.default_rng(1)
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, (0.1 * rng.standard_normal(17000)).astype(np.float32), 16000, subtype="PCM_16")
    sf.write(b, (0.1 * rng.standard_normal(21000)).astype(np.float32), 16000, subtype="PCM_16")
    (tmp_path / "vox").mkdir()
    link = tmp_path / "vox" / "a.wav"
    os.link(a, link)
    root = tmp_path / "store"

    real_extract = FeatureStore.extract

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt("killed mid-extraction")

    monkeypatch.setattr(FeatureStore, "extract", killed)
    read = []
    real_read = cache.read_wav
    monkeypatch.setattr(cache, "read_wav", lambda p: read.append(Path(p).name) or real_read(p))
    with pytest.raises(KeyboardInterrupt):
        cache.build_store(root, "jooci", str(ckpt), ["content"], [a, link, b])
    index = json.loads((root / "wavhash.json").read_text())
    assert sorted(map(len, index.values())) == [2, 3]                # a and its link: one entry, two paths
    assert sorted(read) == ["a.wav", "b.wav"]                        # the link is not read again (same inode)
    monkeypatch.setattr(cache, "read_wav", real_read)
    monkeypatch.setattr(FeatureStore, "extract", real_extract)

    hashed = []
    real_hash = cache.wav_hash
    monkeypatch.setattr(cache, "wav_hash", lambda x: hashed.append(1) or real_hash(x))
    forwards = []
    real_forward = FeatureStore.extract

    def counting(self, name, ckpt, keys, wav_paths, **kw):
        todo = [f for f in wav_paths if not self.has(keys[0], f)]
        forwards.append(len(todo))
        return real_forward(self, name, ckpt, keys, wav_paths, **kw)

    monkeypatch.setattr(FeatureStore, "extract", counting)
    cache.build_store(root, "jooci", str(ckpt), ["content"], [a, link, b])
    assert hashed == [] and forwards == [2]                          # resumed: 2 distinct files extracted
    cache.build_store(root, "jooci", str(ckpt), ["content"], [link, b, a])   # other order, other first path
    assert hashed == [] and forwards == [2, 0]
    store = FeatureStore(root / "store")
    assert len(store.file_ids("content")) == 2


def test_start_up_check_compares_frame_counts(setup):
    """A stored file one frame short of what the live upstream gives is stale even though the
    frames it has agree (the old check compared the overlap only)."""
    import json

    from harness.features.cache import CachedUpstream

    ckpt, spec, paths, tmp = setup
    s = json.loads(open(spec).read())
    idx_path = tmp / "store" / "store" / "index.json"
    saved = idx_path.read_text()
    first = next(iter(json.loads(open(s["index"]).read()).values()))[0]
    idx = json.loads(saved)
    try:
        idx["keys"]["content"]["groups"][0]["files"][first][2] -= 1
        idx_path.write_text(json.dumps(idx))
        with pytest.raises(RuntimeError, match=r"disagrees with the live upstream.*frames"):
            CachedUpstream(str(spec))
    finally:
        idx_path.write_text(saved)


def test_float16_cache_leaves_the_downstream_metric_unchanged(run_cli, tiny_corpus, tmp_path):
    """The same SID and ER cells (a seeded random jooci, fast path) on a float16 and on a float32
    feature store give the same test accuracy."""
    values = {}
    for dtype in ("float16", "float32"):
        res = tmp_path / dtype
        run_cli("run", "--tasks", "sid,er", "--upstreams", "jooci", "--features", "content",
                "--ckpt", "jooci=random:tiny", "--corpus", tiny_corpus, "--steps", "40", "--folds", "1",
                "--results", res, "--name", "c", "--device", "cpu", "--cache-dir", tmp_path / f"cache-{dtype}",
                "--cache-dtype", dtype, cwd=tmp_path)
        rows = [json.loads(p.read_text()) for p in (res / "c" / "cells").glob("*.json")]
        assert len(rows) == 2 and all(r["cache"] for r in rows)
        values[dtype] = {r["task"]: r["value"] for r in rows}
    assert values["float16"] == values["float32"]
    stores = {d: next((tmp_path / f"cache-{d}").rglob("index.json")) for d in ("float16", "float32")}
    assert json.loads(stores["float16"].read_text())["dtype"] == "float16"


def test_random_twin_of_a_checkpoint_dir_is_the_scorecards_twin(tmp_path):
    """--ckpt NAME=random:CKPT_DIR: a seeded random model of that checkpoint's own config (Barlow Twins
    split by layer: content H_0..H_2, other H_3..H_4), with the very weights of `harness scorecard`'s twin
    of it; random:PRESET is the preset's layout; a directory of another model is refused."""
    import json

    import pytest
    import torch

    from harness.superb.sweep import SweepError, random_checkpoint
    from upstream.checkpoint import load_checkpoint, save_random_init
    from upstream.facts import weights_hash

    src = Path(__file__).resolve().parents[1] / "checkpoints" / "barlow-twins-compact"
    meta = json.loads((src / "config.json").read_text())
    assert meta["config"]["content_layers"] == 2
    twin = random_checkpoint("barlow_twins", str(src), tmp_path / "ckpts")
    assert json.loads((twin / "config.json").read_text())["config"] == meta["config"]
    h = weights_hash(src / "model.safetensors")
    ref = save_random_init("barlow_twins", meta["config"], tmp_path / "sc", 0, {})   # same config + seed, elsewhere
    assert weights_hash(twin / "model.safetensors") == weights_hash(ref / "model.safetensors")
    assert weights_hash(twin / "model.safetensors") != h
    model, _ = load_checkpoint(twin)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 16000), torch.tensor([16000]))
    assert (len(out.content), len(out.other)) == (3, 2)
    preset, _ = load_checkpoint(random_checkpoint("barlow_twins", "compact", tmp_path / "ckpts"))
    assert preset.content_layers == 0
    with pytest.raises(SweepError, match="is a 'barlow_twins' checkpoint"):
        random_checkpoint("jooci", str(src), tmp_path / "ckpts")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="empty has no config.json"):
        random_checkpoint("jooci", str(tmp_path / "empty"), tmp_path / "ckpts")
    for missing in (str(tmp_path / "nope"), "nope"):     # a path or a bare name: neither a preset nor a directory
        with pytest.raises(SweepError, match=r"no preset and no checkpoint directory .*nope.*base, compact, tiny"):
            random_checkpoint("jooci", missing, tmp_path / "ckpts")
