"""A feature store holds only the layers cells read: the index says which, a later need extends it
with just the missing layers, readers map model layers to stored slots and refuse a layer that is
not stored (by name, with the fix), and a cell's metric does not depend on what else is stored."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from fake_upstreams import CountingUpstream, write_wavs
from harness.features.store import FeatureStore, FeatureStoreError


def FakeUpstream():
    """4 layers of (B, T, 3), layer l = base + l, no other key (tests/fake_upstreams.py)."""
    return CountingUpstream(n_layers=4, dim=3, other=False)


@pytest.fixture
def wavs(tmp_path):
    return write_wavs(tmp_path)


def _shards(root, key="hidden_states"):
    return sorted((root / key).glob("*.npy"))


def _digest(paths):
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest()) for p in paths}


def test_only_the_wanted_layers_are_stored_and_a_later_need_adds_only_the_missing(tmp_path, wavs):
    key = "hidden_states"
    up = FakeUpstream()
    full = FeatureStore(tmp_path / "full").extract("fake", None, [key], wavs, upstream=up, progress=False)
    part = FeatureStore(tmp_path / "part").extract("fake", None, [key], wavs, upstream=up, progress=False,
                                                   layers={key: "1-2"})
    index = json.loads((tmp_path / "part" / "index.json").read_text())["keys"][key]
    assert [g["layers"] for g in index["groups"]] == [[1, 2]] and index["model_layers"] == [0, 1, 2, 3]
    assert part.stored_layers(key) == [1, 2] and part.num_layers(key) == 4
    assert all(np.load(p, mmap_mode="r").shape[0] == 2 for p in _shards(tmp_path / "part"))
    size = lambda d: sum(p.stat().st_size for p in _shards(tmp_path / d))     # noqa: E731
    assert size("part") < 0.55 * size("full")                                 # 2 of 4 layers (+ npy headers)
    assert part.estimated_gb == pytest.approx(full.estimated_gb / 2)          # the estimate counts stored layers only
    for f in wavs:
        np.testing.assert_array_equal(part.get_layers(key, [1, 2], f), full.get_layers(key, [1, 2], f))
    with pytest.raises(FeatureStoreError, match=r"layer 0 of 'hidden_states' is not stored .* holds layers 1-2 "
                                                r".*--layers hidden_states=0"):
        part.get(key, 0, "utt0")
    with pytest.raises(FeatureStoreError, match=r"layers 0,3 of 'hidden_states' are not stored"):
        part.layer_positions(key, "all")
    assert part.layer_positions(key, "1-2") == [1, 2] and part.layer_positions(key, [2]) == [2]

    before = _digest(_shards(tmp_path / "part"))
    calls = up.calls
    part.extract("fake", None, [key], wavs, upstream=up, progress=False, layers={key: "1-2"})
    assert up.calls == calls                                                  # same needs: no work
    part.extract("fake", None, [key], wavs, upstream=up, progress=False)     # every layer: extend
    assert up.calls == calls + 1 + len(wavs)                                  # the size probe + one forward a file
    groups = json.loads((tmp_path / "part" / "index.json").read_text())["keys"][key]["groups"]
    assert [g["layers"] for g in groups] == [[1, 2], [0, 3]]
    assert {n: d for n, d in _digest(_shards(tmp_path / "part")).items() if n in before} == before   # untouched
    assert all(np.load(p, mmap_mode="r").shape[0] == 2 for p in _shards(tmp_path / "part") if "-g1" in p.name)
    assert part.estimated_gb == pytest.approx(full.estimated_gb / 2)          # only the 2 new layers
    reopened = FeatureStore(tmp_path / "part")
    for f in wavs:
        np.testing.assert_array_equal(reopened.get_all_layers(key, f), full.get_all_layers(key, f))
    calls = up.calls
    reopened.extract("fake", None, [key], wavs, upstream=up, progress=False)
    assert up.calls == calls


def test_the_size_limit_counts_only_the_layers_to_store(tmp_path, wavs):
    """A limit between the size of 1 and of 4 layers refuses the full store and accepts one layer."""
    key = "hidden_states"
    up = FakeUpstream()
    probe = FeatureStore(tmp_path / "probe").extract("fake", None, [key], wavs, upstream=up, progress=False)
    limit = probe.estimated_gb / 2
    with pytest.raises(FeatureStoreError, match=r"'hidden_states' layers 0-3 of 4 .*--cache-max-gb"):
        FeatureStore(tmp_path / "all").extract("fake", None, [key], wavs, upstream=up, progress=False, max_gb=limit)
    one = FeatureStore(tmp_path / "one").extract("fake", None, [key], wavs, upstream=up, progress=False,
                                                 max_gb=limit, layers={key: "3"})
    assert one.stored_layers(key) == [3] and one.estimated_gb == pytest.approx(probe.estimated_gb / 4)
    with pytest.raises(FeatureStoreError, match=r"--cache-max-gb"):           # extending is checked the same way
        one.extract("fake", None, [key], wavs, upstream=up, progress=False, max_gb=limit)
    assert one.stored_layers(key) == [3] and _shards(tmp_path / "one") and not any(
        "-g1" in p.name for p in _shards(tmp_path / "one"))
    with pytest.raises(FeatureStoreError, match=r"layer 4 is out of range; hidden_states has 4 layers: valid indices are 0-3"):
        one.extract("fake", None, [key], wavs, upstream=up, progress=False, layers={key: "4"})
    with pytest.raises(FeatureStoreError, match=r"empty list"):
        one.extract("fake", None, [key], wavs, upstream=up, progress=False, layers={key: []})
    with pytest.raises(FeatureStoreError, match=r"names key\(s\) content"):
        one.extract("fake", None, [key], wavs, upstream=up, progress=False, layers={"content": "0"})


def test_an_interrupted_extension_resumes(tmp_path, wavs, monkeypatch):
    """A new layer group killed after its first shard keeps that shard; the rerun extracts the rest."""
    key = "hidden_states"
    up = FakeUpstream()
    store = FeatureStore(tmp_path / "s").extract("fake", None, [key], wavs, upstream=up, progress=False,
                                                 layers={key: "0"})
    real_flush = FeatureStore._flush
    flushed = []

    def flush_once(self, pending):
        if flushed:
            raise KeyboardInterrupt("killed")
        flushed.append(sorted(pending))
        real_flush(self, pending)

    monkeypatch.setattr(FeatureStore, "_flush", flush_once)
    with pytest.raises(KeyboardInterrupt):
        FeatureStore(tmp_path / "s").extract("fake", None, [key], wavs, upstream=up, progress=False,
                                             layers={key: "2"}, shard_seconds=0.1)
    monkeypatch.setattr(FeatureStore, "_flush", real_flush)
    store = FeatureStore(tmp_path / "s")
    assert store.stored_layers(key) == [0, 2] and len(store.file_ids(key)) == 1   # one file has both layers
    calls = up.calls
    store.extract("fake", None, [key], wavs, upstream=up, progress=False, layers={key: "2"})
    assert up.calls == calls + 1 + len(wavs) - 1                              # probe + the 3 files left
    assert sorted(store.file_ids(key)) == sorted(wavs)
    for f in wavs:
        np.testing.assert_array_equal(store.get(key, 2, f)[:, 1], np.arange(store.num_frames(key, f)) + 2)


def test_a_version_1_store_reads_as_one_group_and_extends(tmp_path, wavs):
    """A store written before layer groups (format /1: every layer, one file table) still reads."""
    key = "hidden_states"
    up = FakeUpstream()
    store = FeatureStore(tmp_path / "s").extract("fake", None, [key], wavs, upstream=up, progress=False)
    idx = json.loads((tmp_path / "s" / "index.json").read_text())
    info = idx["keys"][key]
    old = {"format": "duet-features/1", "identity": idx["identity"], "num_shards": idx["num_shards"], "dtype": idx["dtype"],
           "keys": {key: {"num_layers": 4, "dim": 3, "downsample_rate": 160, "files": info["groups"][0]["files"]}}}
    (tmp_path / "s" / "index.json").write_text(json.dumps(old))
    v1 = FeatureStore(tmp_path / "s")
    assert v1.stored_layers(key) == [0, 1, 2, 3]
    np.testing.assert_array_equal(v1.get(key, 3, "utt1"), store.get(key, 3, "utt1"))
    calls = up.calls
    v1.extract("fake", None, [key], wavs, upstream=up, progress=False)
    assert up.calls == calls


# ------------------------------------------------------------------- the duet_cached expert (a real jooci)

def test_cached_expert_maps_layers_and_refuses_a_missing_one(tmp_path):
    """A store of content layers 1-2 serves `-g layers: {content: 1-2}` exactly as a store of every
    layer does (same layer count for s3prl's Featurizer, same values); asking for layer 0 fails at
    start-up, through s3prl's Featurizer, naming the layer and the fix."""
    import types

    from s3prl.upstream.interfaces import Featurizer

    from harness.features import cache
    from harness.s3prl.featurizer_guard import install_featurizer_guard
    from harness.superb.sweep import random_checkpoint

    ckpt = random_checkpoint("jooci", "tiny", tmp_path / "ckpts")
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate([16000, 23000]):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000, subtype="PCM_16")
        paths.append(p)
    full = cache.build_store(tmp_path / "full", "jooci", str(ckpt), ["content", "hidden_states"], paths,
                             dtype="float32")
    part = cache.build_store(tmp_path / "part", "jooci", str(ckpt), ["content"], paths, dtype="float32",
                             layers={"content": ["1-2", "2"]})
    assert FeatureStore(tmp_path / "part" / "store").stored_layers("content") == [1, 2]
    cfg = tmp_path / "layers.yaml"
    cfg.write_text("layers: {content: '1-2'}\n")
    wavs = [torch.from_numpy(sf.read(str(p), dtype="float32")[0]) for p in paths]
    with torch.no_grad():
        a = cache.CachedUpstream(str(full), str(cfg)).eval()(wavs)["content"]
        b = cache.CachedUpstream(str(part), str(cfg)).eval()(wavs)["content"]
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)

    install_featurizer_guard()
    cache.register(types.SimpleNamespace())
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: {content: '0-1'}\n")
    cached = cache.CachedUpstream(str(part), str(bad))
    with pytest.raises(FeatureStoreError, match=r"-s content: layer 0 of 'content' is not stored .*"
                                                r"rerun `harness run` with that layer in --layers"):
        Featurizer(upstream=cached, feature_selection="content", upstream_device="cpu")
    with pytest.raises(FeatureStoreError, match=r"-s content: layers? 0\S* of 'content' (is|are) not stored"):
        cache.CachedUpstream(str(part)).check_key("content")          # no -g: every layer wanted
    assert "content" not in cached(wavs)                              # never served from the wrong layers
    swap = tmp_path / "swap.yaml"                                     # hidden_states served from another stream
    swap.write_text("hidden_states: other\n")
    with pytest.raises(FeatureStoreError, match=r"makes 'hidden_states' the other layers, but the store .* holds the "
                                                r"content\S* layers"):
        cache.CachedUpstream(str(full), str(swap)).check_key("hidden_states")


# ------------------------------------------------------------------- harness run, end to end

def test_a_sweep_stores_its_layers_and_a_later_sweep_extends_the_store(run_cli, tiny_corpus, tmp_path):
    """`harness run --layers 1-2` stores content layers 1-2 only; its SID cell (fast path, seeded)
    equals the same cell on a store of every layer; a later `--layers all` sweep adds the other layers
    without rewriting the stored ones, and its cell equals the full store's."""
    def run(results, cache_dir, *layers):
        run_cli("run", "--tasks", "sid", "--upstreams", "jooci", "--features", "content", "--ckpt", "jooci=random:tiny",
                "--corpus", tiny_corpus, "--steps", "20", "--results", results, "--name", "c", "--device", "cpu",
                "--cache-dir", cache_dir, "--layers", *layers, cwd=tmp_path)
        return {r["layers"]: r for r in (json.loads(p.read_text()) for p in (results / "c" / "cells").glob("*.json"))}

    full = run(tmp_path / "rf", tmp_path / "cf", "all", "1-2")
    part = run(tmp_path / "rp", tmp_path / "cp", "1-2")
    root = next((tmp_path / "cp").rglob("index.json")).parent
    full_root = next((tmp_path / "cf").rglob("index.json")).parent
    n_layers = FeatureStore(full_root).num_layers("content")
    assert n_layers > 2 and FeatureStore(root).stored_layers("content") == [1, 2]
    assert all(np.load(p, mmap_mode="r").shape[0] == 2 for p in _shards(root, "content"))
    size = lambda r: sum(p.stat().st_size for p in _shards(r, "content"))    # noqa: E731
    assert size(root) < (2 / n_layers + 0.05) * size(full_root)
    assert set(part) == {"1-2"} and part["1-2"]["path"] == "fast" and part["1-2"]["cache"]
    assert part["1-2"]["value"] == full["1-2"]["value"]
    assert full["all"]["value"] != full["1-2"]["value"]                      # control: the layers change the number

    before = _digest(_shards(root, "content"))
    more = run(tmp_path / "rp", tmp_path / "cp", "all", "1-2")               # the 1-2 cell is done: not re-run
    groups = json.loads((root / "index.json").read_text())["keys"]["content"]["groups"]
    assert [g["layers"] for g in groups] == [[1, 2], [i for i in range(n_layers) if i not in (1, 2)]]
    assert {n: d for n, d in _digest(_shards(root, "content")).items() if n in before} == before
    assert more["all"]["value"] == full["all"]["value"]
