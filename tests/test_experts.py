"""DUET s3prl experts through s3prl's own Featurizer (the one run_downstream.py's runner builds)
and s3prl.nn.S3PRLUpstream: chosen keys and layer subsets are really used, downsample rates are
right, bad -g/-k/input give clear errors, checkpoints round-trip through -k."""
import math

import pytest
import torch

import harness.s3prl.compat

harness.s3prl.compat.install()

from upstream.checkpoint import CheckpointError, save_checkpoint  # noqa: E402
from upstream.expert_base import UpstreamConfigError, parse_layers  # noqa: E402
from upstream.hub import UPSTREAMS  # noqa: E402
from upstream.registry import MODELS, preset_config  # noqa: E402

NAMES = ["learn2diss", "jooci", "barlow_twins", "hubert_compact"]
AVAILABLE = [n for n in NAMES if n in MODELS]
TINY = {"random_init": "tiny", "seed": 0}


def expert(name, **opts):
    return UPSTREAMS[name](model_config={**TINY, **opts}).eval()


def featurizer(up, key, capsys):
    from s3prl.upstream.interfaces import Featurizer
    capsys.readouterr()
    f = Featurizer(up, feature_selection=key, upstream_device="cpu")
    err = capsys.readouterr().err
    assert "is not a supported" not in err, err  # s3prl's silent fallback to hidden_states
    assert f.feature_selection == key
    return f


def wavs(*lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=g) for n in lens]


def test_every_method_has_an_expert_and_is_on_the_hub():
    import s3prl.hub
    from upstream.hub import register
    assert sorted(UPSTREAMS) == sorted(NAMES)
    assert register(s3prl.hub) == list(UPSTREAMS)
    for n in NAMES:
        assert getattr(s3prl.hub, n) is UPSTREAMS[n]


@pytest.mark.parametrize("name", AVAILABLE)
def test_featurizer_uses_each_key_and_its_rate(name, capsys):
    up = expert(name)
    batch = wavs(16000, 12345, 7001)
    feats = up(batch)
    assert set(feats) == set(up.available_keys())
    outs = {}
    for key in up.available_keys():
        f = featurizer(up, key, capsys)
        n = len(feats[key])
        assert (f.weights.numel() if n > 1 else 0) == (n if n > 1 else 0)
        assert f.downsample_rate == up.get_downsample_rates(key)
        # s3prl's tolerance: output length within 5 frames of round(len / rate)
        for w, t in zip(batch, f(batch, feats)):
            assert abs(t.shape[0] - round(len(w) / f.downsample_rate)) < 5
        assert abs(feats[key][0].shape[1] - round(16000 / f.downsample_rate)) < 5
        outs[key] = feats[key]
    for a, b in [("content", "other"), ("content", "utterance"), ("other", "utterance")]:
        if a in outs and b in outs:
            assert outs[a][-1].shape != outs[b][-1].shape or not torch.allclose(outs[a][-1], outs[b][-1])


@pytest.mark.parametrize("name", AVAILABLE)
def test_layer_subsets_drive_the_weighted_sum(name, capsys, tmp_path):
    base = expert(name)
    nc, no = base.num_layers["content"], base.num_layers["other"]
    layers = {"content": f"1-{nc - 1}"}
    if no >= 2:
        layers["other"] = f"0-{no - 2}"
    cfg = tmp_path / "g.yaml"
    cfg.write_text("random_init: tiny\nseed: 0\nlayers:\n" + "".join(f"  {k}: \"{v}\"\n" for k, v in layers.items())
                   + "keys:\n  content_top: {stream: content, layers: \"" + f"{nc - 2}-{nc - 1}" + "\"}\n")
    up = UPSTREAMS[name](model_config=str(cfg)).eval()  # -g FILE.yaml, as run_downstream.py passes it
    assert featurizer(up, "content", capsys).weights.numel() == nc - 1
    assert featurizer(up, "content_top", capsys).weights.numel() == 2
    assert featurizer(base, "content", capsys).weights.numel() == nc
    if "other" in layers:
        assert featurizer(up, "other", capsys).weights.numel() == no - 1
    x = wavs(9000)
    full, sub = base(x), up(x)
    for i, layer in enumerate(sub["content"]):  # the subset is exactly layers 1..nc-1, same weights
        torch.testing.assert_close(layer, full["content"][i + 1])
    assert len(sub["hidden_states"]) == len(full["hidden_states"])  # hidden_states stays all layers
    # a weighted sum over the subset differs from one over all layers
    fs, ff = featurizer(up, "content", capsys), featurizer(base, "content", capsys)
    assert not torch.allclose(fs(x, sub)[0], ff(x, full)[0])


def test_parse_layers_and_bad_subsets():
    assert parse_layers("6-11", 13) == list(range(6, 12))
    assert parse_layers("0, 2,4-5", 6) == [0, 2, 4, 5]
    assert parse_layers([0, "2-3"], 4) == [0, 2, 3]
    for spec, msg in [("6-13", "layer 13 is out of range; content has 13 layers: valid indices are 0-12"),
                      ("x", "cannot parse 'x'"), ("5-3", "empty"), ("1,1", "twice"), (-1, "out of range")]:
        with pytest.raises(UpstreamConfigError, match=msg):
            parse_layers(spec, 13)


@pytest.mark.parametrize("name", AVAILABLE[:1])
def test_bad_model_config_and_ckpt(name, tmp_path, monkeypatch):
    with pytest.raises(UpstreamConfigError, match=r"valid indices are 0-\d+"):
        expert(name, layers={"content": "0-99"})
    with pytest.raises(UpstreamConfigError, match="unknown stream 'speaker'; valid streams: content, other"):
        expert(name, layers={"speaker": "0-1"})
    with pytest.raises(UpstreamConfigError, match=r"unknown entries \['layer'\]"):
        expert(name, layer={"content": "0-1"})
    with pytest.raises(UpstreamConfigError, match="seed: 'x' has the wrong type"):
        expert(name, seed="x")
    with pytest.raises(UpstreamConfigError, match="not a preset"):
        expert(name, random_init="huge")
    with pytest.raises(UpstreamConfigError, match="no such model config file"):
        UPSTREAMS[name](model_config=str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="resample"):
        expert(name, sample_rate=8000)
    monkeypatch.setenv("DUET_CHECKPOINTS", str(tmp_path))  # no bundled checkpoints there
    with pytest.raises(UpstreamConfigError, match=r"bundled checkpoint .* does not exist.*random_init: compact"):
        UPSTREAMS[name]()
    with pytest.raises(CheckpointError, match="no such file or directory"):
        UPSTREAMS[name](ckpt=str(tmp_path / "nope"))
    up = expert(name)
    with pytest.raises(KeyError, match="valid keys"):
        up.get_downsample_rates("PR")


@pytest.mark.parametrize("name", AVAILABLE[:1])
def test_bad_waveforms_are_refused(name):
    up = expert(name)
    for bad, msg in [([torch.zeros(0)], "empty"), ([torch.randn(300)], "at least 400"),
                     ([torch.full((800,), float("nan"))], "NaN"), ([torch.randn(2, 8000)], "mix down to mono"),
                     ([torch.zeros(8000, dtype=torch.int16)], "int16")]:
        with pytest.raises(ValueError, match=msg):
            up(bad)
    with pytest.raises(ValueError, match="resample"):
        up(wavs(8000), sample_rate=44100)


@pytest.mark.parametrize("name", AVAILABLE)
def test_batched_equals_one_by_one(name):
    up = expert(name)
    batch = wavs(16000, 9000, 4000, seed=3)
    feats = up(batch)
    for i, w in enumerate(batch):
        one = up([w])
        for key in ("content", "other"):
            if key not in one:
                continue
            rate = up.get_downsample_rates(key)
            for a, b in zip(one[key], feats[key]):
                n = min(a.shape[1], math.floor(len(w) / rate))
                torch.testing.assert_close(a[0, :n], b[i, :n], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", AVAILABLE)
def test_checkpoint_round_trip_through_k(name, tmp_path):
    up = expert(name)
    d = save_checkpoint(up.model, tmp_path / name, name=name, config=preset_config(name, "tiny"),
                        provenance={"recipe": "test"})
    again = UPSTREAMS[name](ckpt=str(d)).eval()
    x = wavs(8000)
    for a, b in zip(up(x)["hidden_states"], again(x)["hidden_states"]):
        torch.testing.assert_close(a, b)
    other = [n for n in AVAILABLE if n != name]
    if other:
        with pytest.raises(CheckpointError, match=f"holds a '{name}' model, not '{other[0]}'"):
            UPSTREAMS[other[0]](ckpt=str(d))


def test_s3prl_nn_upstream_sees_hidden_states():
    import s3prl.hub
    from s3prl.nn import S3PRLUpstream
    from upstream.hub import register
    register(s3prl.hub)
    for name in AVAILABLE:
        up = S3PRLUpstream(name, extra_conf={"model_config": TINY}).eval()
        direct = expert(name)
        assert up.num_layers == len(direct(wavs(16000))["hidden_states"])
        hs, lens = up(torch.randn(2, 16000), torch.tensor([16000, 9000]))
        assert len(hs) == up.num_layers and lens[0][1] == (9000 - 1) // 320 + 1


def test_streams_with_mixed_widths_need_one_width_per_key(capsys):
    up = expert("learn2diss")
    widths = [s[-1] for s in up._shapes["other"]]
    assert len(set(widths)) > 1  # ECAPA block outputs vs the wider MFA output
    assert len(up(wavs(8000))["other"]) == widths.count(widths[0])
    with pytest.raises(UpstreamConfigError, match="different widths"):
        expert("learn2diss", layers={"other": f"0-{len(widths) - 1}"})
    last = len(widths) - 1
    up = expert("learn2diss", keys={"other_mfa": {"stream": "other", "layers": str(last)}})
    f = featurizer(up, "other_mfa", capsys)
    assert f.output_dim == widths[last] and not hasattr(f, "weights")


@pytest.mark.parametrize("name", ["hubert_compact", "learn2diss"])
def test_k_accepts_a_transformers_hubert_directory(name, tmp_path):
    from transformers import HubertConfig, HubertModel
    torch.manual_seed(5)
    hf = HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                  num_conv_pos_embedding_groups=4)).eval()
    hf.save_pretrained(tmp_path / "hf")
    up = UPSTREAMS[name](ckpt=str(tmp_path / "hf"), model_config={"random_init": "tiny"}).eval()
    x = wavs(8000)
    with torch.no_grad():
        ref = hf(torch.stack(x), output_hidden_states=True).hidden_states
        ours = up(x)["content"]
    assert len(ours) >= len(ref)
    for a, b in zip(ours, ref):  # the backbone layers come first in the content stream
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert up.source["source"] == "imported"


def test_unknown_key_is_an_error_not_a_silent_fallback():
    import s3prl.hub
    from s3prl.upstream.interfaces import Featurizer
    from harness.s3prl.hub import register
    register(s3prl.hub)
    up = expert("hubert_compact")
    with pytest.raises(KeyError, match="hubert_compact has no feature key 'other'; valid keys"):
        Featurizer(up, feature_selection="other", upstream_device="cpu")
    with pytest.raises(KeyError, match="no feature key 'contnet'"):
        Featurizer(up, feature_selection="contnet", upstream_device="cpu")
    assert Featurizer(up, feature_selection="content", upstream_device="cpu").feature_selection == "content"


def test_bundled_checkpoint_is_the_default(tmp_path, monkeypatch):
    up = expert("hubert_compact", seed=7)
    save_checkpoint(up.model, tmp_path / "hubert-compact-compact", name="hubert_compact",
                    config=preset_config("hubert_compact", "tiny"))
    monkeypatch.setenv("DUET_CHECKPOINTS", str(tmp_path))
    bundled = UPSTREAMS["hubert_compact"]().eval()  # no -k, no -g
    assert bundled.source["source"] == "bundled"
    x = wavs(6000)
    torch.testing.assert_close(bundled(x)["content"][-1], up(x)["content"][-1])
    random = expert("hubert_compact")  # explicit random_init wins over the bundled checkpoint
    assert random.source["source"] == "random_init"
    assert not torch.allclose(random(x)["content"][-1], up(x)["content"][-1])


def test_expert_folders_drop_into_an_s3prl_shaped_tree(tmp_path, monkeypatch):
    """upstream/<name>/ copied as s3prl/upstream/<name>/ (package-relative imports only)."""
    import importlib
    import shutil
    from pathlib import Path
    src = Path(__file__).resolve().parents[1] / "upstream"
    tree = tmp_path / "fake_s3prl" / "upstream"
    tree.mkdir(parents=True)
    for p in (tree.parent, tree):
        (p / "__init__.py").write_text("")
    for name in NAMES:
        shutil.copytree(src / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in NAMES:
        hubconf = importlib.import_module(f"fake_s3prl.upstream.{name}.hubconf")
        up = getattr(hubconf, name)(model_config=TINY)
        assert "content" in up(wavs(4000))


@pytest.mark.parametrize("name", AVAILABLE)
def test_training_mode_on_one_short_utterance(name):
    """s3prl's upstream fine-tuning (-f) runs the expert in training mode; one 0.05 s utterance
    gives some BatchNorms a single value per channel (learn2diss's ECAPA pooling, jooci's other
    stream and pooling). It must train, not raise "Expected more than 1 value per channel"; those
    BatchNorms normalise with their running statistics and leave them unchanged."""
    up = expert(name)
    seen = {}  # BatchNorm name -> (values per channel in its valid input, its state before)

    def hook(mod_name):
        def f(mod, args):
            x, mask = args[0], (args[1] if len(args) > 1 else None)
            n = int(mask.sum()) if mask is not None and x.dim() == 3 else x.numel() // x.shape[1]
            seen[mod_name] = (n, {k: v.clone() for k, v in mod.state_dict().items()})
        return f
    for mod_name, mod in up.named_modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.register_forward_pre_hook(hook(mod_name))
    up.train()
    feats = up(wavs(800, seed=5))
    loss = sum(t.float().pow(2).mean() for key in ("content", "other", "utterance") if key in feats
               for t in feats[key])
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in up.parameters())
    single = [m for m, (n, _) in seen.items() if n <= 1]
    if name in ("learn2diss", "jooci"):
        assert single, "0.05 s no longer reaches a single-value BatchNorm: the test lost its point"
    mods = dict(up.named_modules())
    for m in single:
        after = mods[m].state_dict()
        for k, v in seen[m][1].items():
            assert torch.equal(v, after[k]), f"{m}.{k} changed on a single-value batch"


def test_bad_waveform_names_the_file():
    up = expert(AVAILABLE[0])
    with pytest.raises(ValueError, match=r"waveform 1 \(spk2/b.wav\) contains 1 NaN"):
        up(wavs(8000, 900) [:1] + [torch.tensor([0.0] * 800 + [float("nan")])], names=["spk1/a.wav", "spk2/b.wav"])
    with pytest.raises(ValueError, match=r"waveform 0 \(spk1/a.wav\) has shape \(2, 8000\).*sox spk1/a.wav -r 16000"):
        up([torch.randn(2, 8000)], names=["spk1/a.wav"])
