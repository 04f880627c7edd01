"""The three DUET models + hubert_compact through the registry (tiny presets, CPU, fast)."""
import pytest
import torch

from upstream.models.output import StreamOutput
from upstream.nn.conv_frontend import conv_output_lengths
from upstream.registry import MODELS, build_model, config_to_dict, make_config

NAMES = ["hubert_compact", "learn2diss", "jooci", "barlow_twins"]
HUBERT_K, HUBERT_S = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)


def expected_lengths(name, wav_len):
    c = conv_output_lengths(wav_len, HUBERT_K, HUBERT_S)
    cfg = make_config(name, "tiny")
    if name == "jooci":
        df = cfg.downsample
        return c, (c + df - 1) // df
    if name == "barlow_twins":
        df = cfg.other_downsample
        return c, (c + df - 1) // df
    if name == "learn2diss":
        return c, c
    return c, torch.zeros_like(c)


def tiny(name, seed=0):
    torch.manual_seed(seed)
    return build_model(name, "tiny").eval()


def test_registry_names_and_presets():
    assert sorted(MODELS) == sorted(NAMES)
    for name in NAMES:
        assert set(MODELS[name].presets) == {"base", "compact", "tiny"}
    with pytest.raises(KeyError, match="unknown model"):
        build_model("wav2vec9", "tiny")
    with pytest.raises(KeyError, match="no preset"):
        build_model("jooci", "huge")


@pytest.mark.parametrize("name", NAMES)
def test_config_roundtrip_through_json(name):
    import json
    cfg = make_config(name, "tiny")
    again = make_config(name, json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg
    m1, m2 = build_model(name, cfg), build_model(name, again)
    assert m1.state_dict().keys() == m2.state_dict().keys()


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_lengths_over_random_lengths(name):
    m = tiny(name)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        lens = torch.randint(400, 9000, (3,), generator=g)
        wav = torch.randn(3, int(lens.max()), generator=g)
        with torch.no_grad():
            out = m(wav, lens)
        assert isinstance(out, StreamOutput)
        c_len, o_len = expected_lengths(name, lens)
        assert out.content_len.tolist() == c_len.tolist()
        assert out.other_len.tolist() == o_len.tolist()
        assert out.content_len.dtype == torch.long and out.other_len.dtype == torch.long
        for h in out.content:
            assert h.shape[:2] == (3, int(c_len.max())) and torch.isfinite(h).all()
        for h in out.other:
            assert h.shape[:2] == (3, int(o_len.max())) and torch.isfinite(h).all()
        if name == "hubert_compact":
            assert out.other == [] and out.utterance is None
        else:
            assert out.other and out.utterance.shape[0] == 3 and torch.isfinite(out.utterance).all()
        assert m.content_rate == 320
        assert m.other_rate == {"hubert_compact": 320, "learn2diss": 320,
                                "jooci": 320 * 4, "barlow_twins": 320 * 4}[name]


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_by_one(name):
    """Padding must not leak: item b's outputs depend only on wav[b, :wav_len[b]] (eval mode)."""
    m = tiny(name)
    torch.manual_seed(3)
    lens = torch.tensor([8321, 400, 5000, 1999])
    wav = torch.randn(4, 9000) * 0.3
    wav[1, 400:] = 100.0  # garbage in the padding must not matter
    with torch.no_grad():
        out = m(wav, lens)
        for b in range(4):
            one = m(wav[b : b + 1, : lens[b]], lens[b : b + 1])
            n, k = int(one.content_len[0]), int(one.other_len[0])
            assert n == out.content_len[b] and k == out.other_len[b]
            for a, c in zip(one.content, out.content):
                torch.testing.assert_close(a[0, :n], c[b, :n], atol=1e-4, rtol=1e-4)
                assert (c[b, n:] == 0).all()
            for a, c in zip(one.other, out.other):
                torch.testing.assert_close(a[0, :k], c[b, :k], atol=1e-4, rtol=1e-4)
            if one.utterance is not None:
                torch.testing.assert_close(one.utterance[0], out.utterance[b], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_fixed_seed_determinism(name):
    wav, lens = torch.randn(2, 6000, generator=torch.Generator().manual_seed(5)), torch.tensor([6000, 3000])
    with torch.no_grad():
        a, b = tiny(name, seed=7)(wav, lens), tiny(name, seed=7)(wav, lens)
        c = tiny(name, seed=8)(wav, lens)
    for x, y in zip(a.content + a.other, b.content + b.other):
        assert torch.equal(x, y)
    assert not torch.allclose(a.content[-1], c.content[-1])


def test_jooci_no_gradient_from_other_into_content():
    m = build_model("jooci", "tiny").train()
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 4000])
    t = m.forward_train(wav, lens)
    loss = t.streams.utterance.sum() + t.projected.sum() + t.streams.other[-1].sum() + t.decoder_logits.sum()
    loss.backward()
    content_grads = [p.grad for p in m.content_encoder.encoder.parameters()]
    assert all(g is None or g.abs().max() == 0 for g in content_grads)
    assert m.content_encoder.masked_spec_embed.grad is None
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.other_encoder.parameters())
    # the shared CNN is shared: it does receive the other encoder's gradient (as in the paper)
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.content_encoder.frontend.parameters())


def test_jooci_shared_from_content_only_keeps_other_gradients_out_of_the_shared_cnn():
    torch.manual_seed(0)
    m = build_model("jooci", "tiny").train()
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 4000])
    t = m.forward_train(wav, lens, shared_from_content_only=True)
    (t.projected.sum() + t.decoder_logits.sum()).backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.content_encoder.frontend.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.other_encoder.parameters())
    m.zero_grad()
    t = m.forward_train(wav, lens, shared_from_content_only=True)
    t.streams.content[-1].sum().backward()      # the content side still trains the shared CNN
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.content_encoder.frontend.parameters())


def test_jooci_content_wav_feeds_only_the_content_encoder():
    torch.manual_seed(0)
    m = build_model("jooci", "tiny").eval()       # no dropout: passes are comparable
    m.freeze_content(False)
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 4000])
    warped = torch.randn(2, 6000)
    with torch.no_grad():
        same = m.forward_train(wav, lens, content_wav=wav)
        plain = m.forward_train(wav, lens)
        t = m.forward_train(wav, lens, content_wav=warped)
        ref_c = m.forward_train(warped, lens).streams.content
    for a, b in zip(same.streams.content + same.streams.other, plain.streams.content + plain.streams.other):
        torch.testing.assert_close(a, b)
    for a, b in zip(t.streams.content, ref_c):                  # content: the warped copy's
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(t.features, plain.features)      # the other side: the clean crop's features
    torch.testing.assert_close(t.streams.other[0], plain.streams.other[0])   # O_0: the clean shared features
    with torch.no_grad():
        assert not torch.allclose(t.streams.other[-1], m.forward_train(warped, lens).streams.other[-1])
    with pytest.raises(ValueError, match="content_wav"):
        m.forward_train(wav, lens, content_wav=warped[:, :5000])
    m.freeze_content(True)                                       # stage 1 would ignore it: refused
    with pytest.raises(ValueError, match="frozen"):
        m.forward_train(wav, lens, content_wav=warped)


def test_jooci_gradient_reversal_scales_decoder_gradient():
    torch.manual_seed(0)
    m = build_model("jooci", "tiny").eval()
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 4000])
    param = m.other_encoder.blocks[-1].depthwise.weight

    def grad_with(scale):
        m.zero_grad()
        m.grl.scale = scale
        m.forward_train(wav, lens).decoder_logits.pow(2).mean().backward()
        return param.grad.clone()

    plain = grad_with(-1.0)  # -(-1) = identity gradient
    reversed_ = grad_with(0.1)
    assert plain.abs().max() > 0
    torch.testing.assert_close(reversed_, -0.1 * plain, atol=1e-7, rtol=1e-4)


def test_jooci_masked_training_pass():
    m = build_model("jooci", "tiny").train()
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 4000])
    feat, c_len = m.features(wav, lens)
    mask = torch.rand(feat.shape[:2], generator=torch.Generator().manual_seed(0)) < 0.5
    t = m.forward_train(wav, lens, mask)
    cfg = make_config("jooci", "tiny")
    assert len(t.streams.content) == cfg.encoder.num_layers + 1
    assert t.decoder_logits.shape == (2, int(c_len.max()), cfg.decoder_vocab)
    assert t.projected.shape == (2, cfg.fc_dim) and t.pooled.shape == (2, 2 * cfg.other_dim)
    assert not set(m.inference_state_dict()) & {k for k in m.state_dict() if k.startswith(("fc.", "decoder."))}


def test_learn2diss_backbone_frozen_and_hooks_agree():
    m = build_model("learn2diss", "tiny").train()
    assert not m.backbone.training and all(not p.requires_grad for p in m.backbone.parameters())
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 4000])
    layers, n = m.backbone_hidden(wav, lens)
    out = m.streams_from_backbone(layers, n)
    (out.content[-1].sum() + out.utterance.sum()).backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    assert any(p.grad is not None for p in m.frame_encoder.parameters())
    assert any(p.grad is not None for p in m.utterance_encoder.parameters())
    club = m.build_club(hidden=16)
    mask = torch.arange(out.content[-1].shape[1])[None] < n[:, None]
    assert torch.isfinite(club(out.utterance, out.content[-1], mask))
    m.eval()
    with torch.no_grad():
        a = m(wav, lens)
        b = m.streams_from_backbone(*m.backbone_hidden(wav, lens))
    torch.testing.assert_close(a.utterance, b.utterance)


def test_barlow_twins_projector_and_embedding():
    m = build_model("barlow_twins", "tiny").train()
    z, out = m.embed(torch.randn(4, 6000), torch.tensor([6000, 5000, 4000, 3000]))
    p = m.project(z)
    assert z.shape == (4, make_config("barlow_twins", "tiny").encoder.hidden_size)
    assert p.shape == (4, make_config("barlow_twins", "tiny").projector_dims[-1])
    p.sum().backward()
    assert m.encoder.encoder.layers[-1].final_layer_norm.weight.grad is not None


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_param_counts_of_presets():
    from transformers import HubertConfig as HC, HubertModel
    with torch.device("meta"):  # shapes only: no memory, no init time
        hf_base = n_params(HubertModel(HC()))
        base = {name: build_model(name, "base") for name in NAMES}
    assert n_params(base["hubert_compact"]) == hf_base  # HuBERT-Base shaped
    jooci = base["jooci"]
    # JOOCI paper, Table 8: 109M in pre-training, 97.82M at inference
    assert 105e6 < n_params(jooci) < 112e6
    assert 96e6 < sum(v.numel() for v in jooci.inference_state_dict().values()) < 100e6
    assert 2.5e6 < n_params(jooci.other_encoder) + n_params(jooci.pool) < 4.5e6  # paper: 3.12M
    l2d = base["learn2diss"]  # HuBERT Base + 2 layers + ECAPA
    assert hf_base < n_params(l2d) < 130e6
    assert 90e6 < n_params(base["barlow_twins"]) < 115e6
    for name in NAMES:
        assert n_params(build_model(name, "compact")) <= 3.0e6, name  # <= 12 MB of float32
        assert n_params(build_model(name, "tiny")) < 200e3, name


@pytest.mark.parametrize("pre_ln", [False, True])
def test_learn2diss_init_from_backbone_reproduces_parent(pre_ln):
    """Frozen lower layers + g (the parent's top layers) compose to the parent model exactly."""
    import dataclasses
    from upstream.models.hubert import HubertCompact
    from upstream.models.learn2diss import Learn2Diss
    cfg = make_config("learn2diss", "tiny")
    bb = dataclasses.replace(cfg.backbone, num_layers=3, layer_norm_first=pre_ln)
    cfg = dataclasses.replace(cfg, backbone=bb, frame_layers=2, utt_input_layer=1)
    torch.manual_seed(0)
    parent = HubertCompact.from_config(bb).eval()
    l2d = Learn2Diss.from_config(cfg).eval()
    l2d.init_from_backbone(parent)
    wav, lens = torch.randn(2, 7000), torch.tensor([7000, 3000])
    with torch.no_grad():
        a, b = parent(wav, lens), l2d(wav, lens)
    assert len(a.content) == len(b.content) == 4
    for x, y in zip(a.content, b.content):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        l2d.init_from_backbone(HubertCompact.from_config(dataclasses.replace(bb, num_layers=2)))
