"""hubert_compact backbone + front-end / transformer blocks (tiny preset, CPU, fast)."""
import torch
import pytest

from upstream.models.hubert import HUBERT_TINY, HubertCompact, HubertConfig
from upstream.nn.conv_frontend import ConvFrontEnd, conv_output_lengths
from upstream.registry import build_model


def hf_lengths(lengths):
    """transformers' `_get_feat_extract_output_lengths`, computed by transformers itself."""
    from transformers import HubertConfig as HC, HubertModel
    hf = HubertModel(HC(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                        conv_dim=(4,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=1))
    return hf._get_feat_extract_output_lengths(lengths)


def test_output_lengths_match_transformers():
    lengths = torch.tensor([400, 401, 719, 720, 1000, 16000, 16319, 16320, 160001])
    ours = conv_output_lengths(lengths, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert ours.tolist() == hf_lengths(lengths).tolist()
    assert ours[0] == 1 and ours[5] == 49


def test_frontend_rate_and_receptive_field():
    fe = ConvFrontEnd(conv_dim=(4,) * 7, out_dim=8)
    assert fe.rate == 320 and fe.receptive_field == 400
    with pytest.raises(ValueError, match="400 samples"):
        fe(torch.randn(1, 399), torch.tensor([399]))


def test_shapes_random_lengths_and_padding_does_not_leak():
    torch.manual_seed(0)
    m = HubertCompact.from_config(HUBERT_TINY).eval()
    lens = torch.randint(400, 12000, (4,))
    wav = torch.randn(4, int(lens.max()))
    with torch.no_grad():
        out = m(wav, lens)
        expect = conv_output_lengths(lens, m.frontend.kernels, m.frontend.strides)
        assert out.content_len.tolist() == expect.tolist()
        assert len(out.content) == HUBERT_TINY.num_layers + 1 and out.other == []
        for h in out.content:
            assert h.shape == (4, int(expect.max()), HUBERT_TINY.hidden_size)
        for b in range(4):
            one = m(wav[b : b + 1, : lens[b]], lens[b : b + 1])
            n = int(one.content_len[0])
            for a, c in zip(one.content, out.content):
                torch.testing.assert_close(a[0], c[b, :n], atol=1e-5, rtol=1e-4)
                assert c[b, n:].abs().max() == 0 if c.shape[1] > n else True


@pytest.mark.parametrize("stable", [False, True])
def test_matches_transformers_hubert(stable):
    """Same module layout as transformers' HubertModel: its weights load 1:1 and reproduce it."""
    from transformers import HubertConfig as HC, HubertModel
    torch.manual_seed(0)
    hc = HC(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
            do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group",
            conv_bias=stable)
    hf = HubertModel(hc).eval()
    cfg = HubertConfig(conv_dim=(16,) * 7, hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64,
                       pos_conv_kernel=8, pos_conv_groups=4, layer_norm_first=stable,
                       conv_norm="layer" if stable else "group", conv_bias=stable)
    m = HubertCompact.from_config(cfg).eval()
    sd = {k.replace("feature_extractor.", "frontend.").replace("feature_projection.", "frontend."): v
          for k, v in hf.state_dict().items()}
    m.load_state_dict(sd, strict=True)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        ref = hf(wav, output_hidden_states=True)
        out = m(wav, torch.tensor([8000]))
    n = len(out.content)
    for i in range(n - 1):
        torch.testing.assert_close(out.content[i], ref.hidden_states[i], atol=1e-4, rtol=1e-4)
    last = ref.last_hidden_state if stable else ref.hidden_states[-1]
    torch.testing.assert_close(out.content[-1], last, atol=1e-4, rtol=1e-4)


def test_masked_encode_hook_uses_mask_embedding():
    torch.manual_seed(0)
    m = build_model("hubert_compact", "tiny").eval()
    wav, lens = torch.randn(2, 8000), torch.tensor([8000, 6000])
    feat, feat_len = m.features(wav, lens)
    mask = torch.zeros(feat.shape[:2], dtype=torch.bool)
    mask[:, 3:8] = True
    masked = m.apply_mask(feat, mask)
    assert torch.equal(masked[0, 4], m.masked_spec_embed.detach())
    assert torch.equal(masked[0, 0], feat[0, 0])
    hs_masked, hs = m.encode(feat, feat_len, mask), m.encode(feat, feat_len)
    assert len(hs_masked) == len(hs)
    assert not torch.allclose(hs_masked[-1], hs[-1])


def test_logmel_lengths_equal_the_conv_arithmetic():
    from upstream.nn.logmel_frontend import LogMelFrontEnd, logmel_output_lengths
    lengths = torch.arange(300, 20000)
    conv = conv_output_lengths(lengths, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert logmel_output_lengths(lengths).tolist() == conv.tolist()
    fe = LogMelFrontEnd(out_dim=8)
    assert fe.rate == 320 and fe.receptive_field == 400
    with pytest.raises(ValueError, match="400 samples"):
        fe(torch.randn(1, 399), torch.tensor([399]))


def test_logmel_is_torchaudio_melspectrogram_stacked_by_two():
    import torchaudio
    from upstream.nn.logmel_frontend import LogMelFrontEnd
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(2, 16000)
    feats, n = LogMelFrontEnd(out_dim=8).log_mel(wav, torch.tensor([16000, 8000]))
    ref = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, win_length=400, hop_length=160,
                                               n_mels=80, center=False)(wav)
    ref = torch.log(ref + 1e-6).transpose(1, 2)                   # (B, 98, 80) 10-ms frames
    assert feats.shape == (2, 49, 160) and n.tolist() == [49, 24]
    torch.testing.assert_close(feats[0].reshape(98, 80), ref[0], atol=1e-4, rtol=1e-4)
    # item 1: 8000 samples -> 48 mel frames -> 24 stacked frames, then zeros
    torch.testing.assert_close(feats[1, :24].reshape(48, 80), ref[1, :48], atol=1e-4, rtol=1e-4)
    assert (feats[1, 24:] == 0).all()


def test_logmel_padding_does_not_leak_and_odd_count_repeats_last_frame():
    from upstream.nn.logmel_frontend import LogMelFrontEnd
    fe = LogMelFrontEnd(out_dim=8).eval()
    torch.manual_seed(1)
    lens = torch.tensor([400, 559, 560, 7777])    # mel frames 1, 1, 2, 46
    wav = torch.randn(4, 8000) * 0.1
    for b, n in enumerate(lens):
        wav[b, n:] = 50.0                          # garbage in the padding
    with torch.no_grad():
        y, n_out = fe(wav, lens)
        raw, _ = fe.log_mel(wav, lens)
        for b in range(4):
            one, k = fe(wav[b:b + 1, :lens[b]], lens[b:b + 1])
            assert int(k) == n_out[b]
            torch.testing.assert_close(one[0], y[b, :int(k)], atol=1e-5, rtol=1e-5)
    assert torch.equal(raw[0, 0, :80], raw[0, 0, 80:])            # one mel frame: repeated
    assert not torch.equal(raw[2, 0, :80], raw[2, 0, 80:])        # two distinct frames


def test_frontend_field_presets_and_old_configs():
    from upstream.models.hubert import HUBERT_BASE, HUBERT_COMPACT
    from upstream.nn.logmel_frontend import LogMelFrontEnd
    assert HUBERT_COMPACT.frontend == HUBERT_TINY.frontend == "logmel"
    assert HUBERT_COMPACT.layer_norm_first and HUBERT_TINY.layer_norm_first   # pre-LN
    assert HUBERT_BASE.frontend == "conv" and not HUBERT_BASE.layer_norm_first  # HuBERT Base maps 1:1
    assert isinstance(HubertCompact.from_config(HUBERT_TINY).frontend, LogMelFrontEnd)
    old = HUBERT_TINY.to_dict()
    del old["frontend"], old["n_mels"]            # a config.json written before the field existed
    assert isinstance(HubertCompact.from_config(old).frontend, ConvFrontEnd)
    with pytest.raises(ValueError, match="frontend must be one of conv, logmel"):
        HubertCompact.from_config({**old, "frontend": "mfcc"})


@pytest.mark.parametrize("n", [1, 2, 3])
def test_freeze_bottom_keeps_exactly_the_lower_hidden_states(n):
    """freeze_bottom(n): after an optimiser step on a loss over every layer, hidden states 0..n-1 are
    unchanged and the states above them moved (n = 3 = every state of the tiny preset: nothing moves)."""
    torch.manual_seed(0)
    m = HubertCompact.from_config(HUBERT_TINY)
    m.freeze_bottom(n)
    wav, lens = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1)), torch.tensor([8000, 6000])
    m.eval()
    with torch.no_grad():
        before = m(wav, lens).content
    trainable = [p for p in m.parameters() if p.requires_grad]
    assert (trainable == [m.masked_spec_embed]) == (n == 3)     # the mask vector: a training input only
    if n < 3:
        opt = torch.optim.SGD(trainable, lr=0.5)
        sum(h.pow(2).mean() for h in m(wav, lens).content).backward()
        opt.step()
    with torch.no_grad():
        after = m(wav, lens).content
    assert len(after) == 3
    for i in range(3):
        assert torch.equal(after[i], before[i]) == (i < n), i
    with pytest.raises(ValueError, match="hidden states 0..2"):
        m.bottom_modules(4)
