"""FeatureStore: layers stored once, lookup by file id, resume, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from fake_upstreams import CountingUpstream, write_wavs
from harness.features.store import FeatureStore, FeatureStoreError




@pytest.fixture
def wavs(tmp_path):
    return write_wavs(tmp_path)


def test_extract_get_and_resume(tmp_path, wavs):
    up = CountingUpstream()
    store = FeatureStore(tmp_path / "store", dtype="float32").extract("fake", None, ["hidden_states"], wavs, upstream=up,
                                                     batch_seconds=2.0, shard_seconds=1.0, progress=False)
    assert store.num_layers("hidden_states") == 3 and store.dim("hidden_states") == 4
    assert store.rate("hidden_states") == 100.0
    for i, n in enumerate([16000, 8000, 12000, 24000]):
        x = store.get("hidden_states", 2, f"utt{i}")
        assert x.shape == (n // 160, 4)
        np.testing.assert_array_equal(x[:, 1], np.arange(n // 160) + 2)   # layer 2 = out + 2
        assert np.all(x[:, 2] == n + 2)                                   # no other file's frames
    assert json.loads((tmp_path / "store" / "index.json").read_text())["num_shards"] >= 2
    calls = up.calls
    again = FeatureStore(tmp_path / "store")
    again.extract("fake", None, ["hidden_states"], wavs, upstream=up, progress=False)
    assert up.calls == calls                                  # nothing re-run
    again.extract("fake", None, ["hidden_states", "other"], wavs, upstream=up, progress=False)
    assert up.calls > calls and again.num_layers("other") == 1
    np.testing.assert_array_equal(again.get("other", 0, "utt1")[:, 1], 2 * np.arange(50))


def test_errors(tmp_path, wavs):
    store = FeatureStore(tmp_path / "s").extract("fake", None, ["hidden_states"], wavs,
                                                 upstream=CountingUpstream(), progress=False)
    with pytest.raises(FeatureStoreError, match="valid layers are 0-2"):
        store.get("hidden_states", 3, "utt0")
    with pytest.raises(FeatureStoreError, match="nope"):
        store.get("hidden_states", 0, "nope")
    with pytest.raises(FeatureStoreError, match="holds: hidden_states"):
        store.get("content", 0, "utt0")
    with pytest.raises(FeatureStoreError, match="another directory"):
        store.extract("other_model", None, ["hidden_states"], wavs, upstream=CountingUpstream(), progress=False)
    with pytest.raises(FeatureStoreError, match="no feature key 'content'"):
        FeatureStore(tmp_path / "t").extract("fake", None, ["content"], wavs, upstream=CountingUpstream(),
                                             progress=False)


def test_checkpoint_identity_is_its_weights_not_its_path(tmp_path, wavs):
    """A copied checkpoint directory (same weights and config) reuses the store; other weights
    are refused with the fix in the message."""
    import shutil
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "model.safetensors").write_bytes(b"weights-A")
    (ck / "config.json").write_text(json.dumps({"model": "fake", "config": {"d": 4}}))
    up = CountingUpstream()
    store = FeatureStore(tmp_path / "s").extract("fake", str(ck), ["hidden_states"], wavs, upstream=up,
                                                 progress=False)
    calls = up.calls
    shutil.copytree(ck, tmp_path / "copy")
    store.extract("fake", str(tmp_path / "copy"), ["hidden_states"], wavs, upstream=up, progress=False)
    assert up.calls == calls                                  # same checkpoint: nothing re-run
    (tmp_path / "copy" / "model.safetensors").write_bytes(b"weights-B")
    with pytest.raises(FeatureStoreError, match="another directory"):
        store.extract("fake", str(tmp_path / "copy"), ["hidden_states"], wavs, upstream=up, progress=False)
    (tmp_path / "copy" / "model.safetensors").write_bytes(b"weights-A")
    (tmp_path / "copy" / "config.json").write_text(json.dumps({"model": "fake", "config": {"d": 8}}))
    with pytest.raises(FeatureStoreError, match="another directory"):
        store.extract("fake", str(tmp_path / "copy"), ["hidden_states"], wavs, upstream=up, progress=False)


def test_real_s3prl_fbank(tmp_path, wavs):
    store = FeatureStore(tmp_path / "fb").extract("fbank", None, ["hidden_states"], wavs, progress=False)
    assert store.rate("hidden_states") == 100.0 and store.num_layers("hidden_states") == 1
    x = store.get("hidden_states", 0, "utt0")
    assert x.shape[1] == store.dim("hidden_states") and abs(x.shape[0] - 100) <= 2
    assert np.isfinite(x).all() and x.std() > 0


def test_non_duet_upstreams_run_one_file_per_forward(tmp_path, wavs):
    """A generic s3prl upstream gives no lengths: each file gets its own forward (exact counts),
    whatever batch_seconds says."""
    up = CountingUpstream()
    FeatureStore(tmp_path / "s").extract("fake", None, ["hidden_states"], wavs, upstream=up,
                                         batch_seconds=1000.0, progress=False)
    assert up.calls == len(wavs) + 1          # one forward per file, plus the 1-s probe of the size estimate


@pytest.mark.parametrize("name", ["jooci", "barlow_twins"])
def test_duet_batched_equals_one_by_one(tmp_path, tiny_corpus, name):
    """The store of a DUET upstream cut from length-batched forwards (the model's own content_len /
    other_len) holds exactly what one file per forward holds: same frame counts, same values, for
    every file of the tiny corpus's dev split (the old round(len*T/S_max) estimate was off by a
    frame for 10 of 20 files)."""
    import csv

    from harness.features.store import load_upstream

    rows = [r for r in csv.DictReader(open(tiny_corpus / "manifest.csv")) if r["split"] == "dev"]
    files = {r["utt_id"]: tiny_corpus / r["librispeech"] for r in rows}
    cfg = tmp_path / "g.yaml"
    cfg.write_text("random_init: tiny\nseed: 0\n")
    up = load_upstream(name, None, str(cfg))
    keys = ["content", "other"]
    batched = FeatureStore(tmp_path / "b", dtype="float32").extract(name, None, keys, files, model_config=str(cfg), upstream=up,
                                                   batch_seconds=60.0, device="cpu", progress=False)
    single = FeatureStore(tmp_path / "s", dtype="float32").extract(name, None, keys, files, model_config=str(cfg), upstream=up,
                                                  batch_seconds=0.0, device="cpu", progress=False)
    assert len(json.loads((tmp_path / "b" / "index.json").read_text())["keys"]["content"]["groups"][0]["files"]) == len(files)
    for key in keys:
        for f in files:
            a, b = batched.get_all_layers(key, f), single.get_all_layers(key, f)
            assert a.shape == b.shape, (key, f)
            np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4, err_msg=f"{key} {f}")


@pytest.mark.parametrize("name", ["jooci", "learn2diss"])
def test_store_bytes_do_not_depend_on_what_was_extracted_before(tmp_path, tiny_corpus, name):
    """By default a file's stored features are a forward on that file alone: a store built in one call
    and one built in two calls (half the files, then the rest, as a resumed or task-by-task store
    grows) hold the same float16 bytes for every file. Length-batched extraction did not (the
    bundled JOOCI on 200 unseen-voice files: 132 differed), which moved SUPERB-mini cells by an
    utterance between runs with different cache histories."""
    import csv

    from harness.features.store import load_upstream

    rows = [r for r in csv.DictReader(open(tiny_corpus / "manifest.csv")) if r["split"] in ("dev", "test")]
    files = {r["utt_id"]: tiny_corpus / r["librispeech"] for r in rows}
    cfg = tmp_path / "g.yaml"
    cfg.write_text("random_init: tiny\nseed: 0\n")
    up = load_upstream(name, None, str(cfg))
    keys = ["content", "other"]
    extract = dict(model_config=str(cfg), upstream=up, device="cpu", progress=False)
    whole = FeatureStore(tmp_path / "whole").extract(name, None, keys, files, **extract)
    ids = sorted(files)
    FeatureStore(tmp_path / "grown").extract(name, None, keys, {f: files[f] for f in ids[::2]}, **extract)
    grown = FeatureStore(tmp_path / "grown").extract(name, None, keys, files, **extract)
    assert json.loads((tmp_path / "grown" / "index.json").read_text())["batch_seconds"] == [0.0]
    for key in keys:
        for f in ids:
            a, b = whole.get_all_layers(key, f), grown.get_all_layers(key, f)
            assert a.shape == b.shape and np.array_equal(a, b), f"{key} {f}: {np.abs(a - b).max()}"


def test_duet_store_rejects_stereo_and_other_rates(tmp_path, wavs):
    """The store never mixes channels or resamples silently: the file is named with the sox fix."""
    p = tmp_path / "stereo.wav"
    sf.write(p, np.zeros((16000, 2), dtype="float32"), 16000)
    with pytest.raises(FeatureStoreError, match=r"stereo\.wav: 16000 Hz, 2 channel.*sox"):
        FeatureStore(tmp_path / "st").extract("fake", None, ["hidden_states"], {"s": p}, upstream=CountingUpstream(),
                                              progress=False)
    q = tmp_path / "r8k.wav"
    sf.write(q, np.zeros(8000, dtype="float32"), 8000)
    with pytest.raises(FeatureStoreError, match=r"r8k\.wav: 8000 Hz"):
        FeatureStore(tmp_path / "r8").extract("fake", None, ["hidden_states"], {"s": q}, upstream=CountingUpstream(),
                                              progress=False)


def test_float16_by_default_read_as_float32_and_size_estimate(tmp_path, wavs):
    """New stores keep float16 (half the disk), readers get float32; a store estimated above the
    limit is refused before anything is extracted, naming the size and the fix."""
    up = CountingUpstream()
    half = FeatureStore(tmp_path / "h").extract("fake", None, ["hidden_states"], wavs, upstream=up, progress=False)
    full = FeatureStore(tmp_path / "f", dtype="float32").extract("fake", None, ["hidden_states"], wavs, upstream=up,
                                                                  progress=False)
    assert half.dtype == "float16" and FeatureStore(tmp_path / "h").dtype == "float16" and full.dtype == "float32"
    a, b = half.get("hidden_states", 1, "utt0"), full.get("hidden_states", 1, "utt0")
    assert a.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-3)
    size = lambda d: sum(p.stat().st_size for p in (tmp_path / d / "hidden_states").glob("*.npy"))
    assert size("h") < 0.6 * size("f")
    calls = up.calls
    with pytest.raises(FeatureStoreError, match=r"needs about .* GB \(float16\).*--cache-max-gb"):
        FeatureStore(tmp_path / "x").extract("fake", None, ["hidden_states"], wavs, upstream=up, progress=False,
                                             max_gb=1e-9)
    assert up.calls == calls + 1 and not (tmp_path / "x" / "hidden_states").exists()   # only the 1-s probe ran
