"""`from upstream import load`: the same model and outputs as the s3prl expert, with lengths."""
from __future__ import annotations

import pytest
import torch

from upstream import load
from upstream.hub import UPSTREAMS


def test_load_extracts_what_the_expert_feeds_s3prl():
    model = load("jooci", random_init="tiny", seed=3)
    expert = UPSTREAMS["jooci"](model_config={"random_init": "tiny", "seed": 3}).eval()
    wavs = [torch.randn(16000) * 0.1, torch.randn(9000) * 0.1]
    out = model.extract(wavs)
    with torch.no_grad():
        ref = expert(wavs)
    assert model.streams == ("content", "other")
    assert len(out["content"]) == model.num_layers["content"] and len(out.other) == model.num_layers["other"]
    for a, b in zip(out.content, ref["content"]):
        torch.testing.assert_close(a, b)
    for a, b in zip(out.other, ref["other"]):
        torch.testing.assert_close(a, b)
    # valid frames: the short item has fewer, each stream at its own rate
    assert out.content_len[1] < out.content_len[0] == out.content[0].shape[1]
    assert out.other_len[1] <= out.other_len[0] == out.other[0].shape[1]
    assert model.samples_per_frame["content"] * int(out.content_len[0]) <= 16000


def test_load_bundled_and_errors(tmp_path):
    model = load("hubert_compact")
    assert model.source["source"] == "bundled" and model.streams == ("content",)
    with pytest.raises(KeyError, match="unknown DUET model 'joocy'"):
        load("joocy")
    with pytest.raises(ValueError, match="NaN"):
        model.extract([torch.full((16000,), float("nan"))], names=["bad.wav"])


def test_s3prl_upstream_reaches_every_stream():
    """s3prl.nn.S3PRLUpstream reads only hidden_states; `hidden_states: other` in the model config
    serves the other stream through it (harness.s3prl.hub.register does the compat install)."""
    from harness.s3prl.hub import register

    register()                      # compat shims first, then s3prl.hub with DUET's names
    from s3prl.nn import S3PRLUpstream

    conf = {"random_init": "tiny", "seed": 1}
    content = S3PRLUpstream("jooci", extra_conf={"model_config": conf}).eval()
    other = S3PRLUpstream("jooci", extra_conf={"model_config": {**conf, "hidden_states": "other"}}).eval()
    ref = load("jooci", random_init="tiny", seed=1)
    assert other.num_layers == ref.num_layers["other"] and content.num_layers == ref.num_layers["content"]
    assert set(other.downsample_rates) == {ref.samples_per_frame["other"]} != set(content.downsample_rates)
    wav = torch.randn(1, 32000) * 0.1
    hs, _ = other(wav, torch.tensor([32000]))
    torch.testing.assert_close(hs[-1], ref.extract([wav[0]]).other[-1])
    with pytest.raises(Exception, match="hidden_states: 'speaker' is not a key"):
        S3PRLUpstream("jooci", extra_conf={"model_config": {**conf, "hidden_states": "speaker"}})
