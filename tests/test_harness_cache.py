"""The `duet_cached` s3prl upstream returns exactly what the real upstream returns: stored layers for
waveforms it has on disk, a live forward for any other waveform (random crops, effects, probes)."""
from __future__ import annotations

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
    spec = build_store(tmp / "store", "jooci", str(ckpt), ["content", "other"], paths)
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
        live = real(batch)
        got = cached(batch)
    assert (cached.hits, cached.misses) == (2, 1)
    for key in ("content", "other"):
        assert len(got[key]) == len(live[key])          # the -g subset is applied to cached layers too
        for a, b in zip(got[key], live[key]):
            t = min(a.shape[1], b.shape[1])
            assert abs(a.shape[1] - b.shape[1]) <= 1
            for i, w in enumerate(batch):               # valid frames of each item agree
                n = min(t, round(len(w) / cached.get_downsample_rates(key)))
                torch.testing.assert_close(a[i, :n], b[i, :n], atol=1e-4, rtol=1e-4)
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
