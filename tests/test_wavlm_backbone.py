"""WavLM on DUET's own modules: a seeded random transformers `WavLMModel` (12 layers, width 32)
saved with save_pretrained imports onto `HubertCompact(rel_pos="wavlm")` (upstream/nn/rel_pos_bias.py)
and reproduces every hidden state of transformers within 1e-5, in a padded batch, for both
layer-norm layouts; the same directory backs hubert_compact's s3prl expert, Learn2Diss (frozen
lower layers + g) and a JOOCI initialisation."""
import dataclasses

import pytest
import torch

from upstream.importers import build_with_backbone, hf_model_to_duet, load_backbone_and_config, load_hf_backbone
from upstream.models.hubert import HubertCompact, HubertConfig
from upstream.nn.rel_pos_bias import relative_position_buckets

ATOL = 1e-5
LENS = (16000, 11000)  # 49 and 34 frames: relative distances past max_bucket_distance (clamped buckets)


def make_wavlm_dir(tmp_path, stable: bool):
    """Seeded random WavLM with non-trivial position bias: the bucket table and the gates are drawn
    large enough that a wrong bucket or gate moves the hidden states far beyond ATOL."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(7)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=64,
                      conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                      num_buckets=16, max_bucket_distance=40, do_stable_layer_norm=stable,
                      feat_extract_norm="layer" if stable else "group", conv_bias=stable)
    hf = WavLMModel(cfg).eval()
    with torch.no_grad():
        hf.encoder.layers[0].attention.rel_attn_embed.weight.normal_(0.0, 2.0)
        for layer in hf.encoder.layers:
            layer.attention.gru_rel_pos_linear.weight.normal_(0.0, 1.0)
            layer.attention.gru_rel_pos_const.uniform_(0.0, 2.0)
    d = tmp_path / f"wavlm-{'large' if stable else 'base'}"
    hf.save_pretrained(d)
    return hf, d


def batch():
    g = torch.Generator().manual_seed(1)
    wav = torch.zeros(len(LENS), max(LENS))
    for i, n in enumerate(LENS):
        wav[i, :n] = 0.1 * torch.randn(n, generator=g)
    return wav, torch.tensor(LENS)


def transformers_layers(hf, wav, attention_mask=None) -> list:
    """transformers' hidden states, the last one after the final LayerNorm in the pre-LN layout
    (transformers 5 records the last layer's raw output there)."""
    ref = hf(wav, attention_mask=attention_mask, output_hidden_states=True)
    hs = list(ref.hidden_states)
    assert len(hs) == hf.config.num_hidden_layers + 1
    return hs[:-1] + [ref.last_hidden_state]


def max_diff_to_each_alone(layers, lengths, hf, wav) -> float:
    """Max |DUET batched - transformers on each waveform alone| over valid frames of every layer."""
    worst = 0.0
    for i, n in enumerate(LENS):
        expect = transformers_layers(hf, wav[i:i + 1, :n])
        t = int(lengths[i])
        assert len(layers) == len(expect) and expect[0].shape[1] == t
        worst = max(worst, max(float((a[i, :t] - b[0]).abs().max()) for a, b in zip(layers, expect)))
    return worst


@pytest.mark.parametrize("num_buckets,max_distance", [(320, 800), (16, 40), (8, 5)])
def test_buckets_equal_transformers(num_buckets, max_distance):
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    att = WavLMAttention(8, 2, num_buckets=num_buckets, max_distance=max_distance)
    rel = torch.arange(-3000, 3001)[None, :]
    ours = relative_position_buckets(rel, num_buckets, max_distance)
    assert torch.equal(ours, att._relative_positions_bucket(rel))
    assert int(ours.min()) == 0 and int(ours.max()) == num_buckets - 1  # every bucket reachable


@pytest.mark.parametrize("stable", [False, True], ids=["base-postLN-groupnorm", "large-preLN-layernorm"])
def test_wavlm_directory_reproduces_transformers(tmp_path, stable):
    hf, d = make_wavlm_dir(tmp_path, stable)
    model, cfg = load_backbone_and_config(d)
    assert isinstance(model, HubertCompact)
    assert (cfg.rel_pos, cfg.num_buckets, cfg.max_bucket_distance, cfg.layer_norm_first) == ("wavlm", 16, 40, stable)
    wav, wav_len = batch()
    with torch.no_grad():
        out = model(wav, wav_len)
        assert out.content_len.tolist() == [49, 34]
        # batched (padded) DUET == transformers on each waveform alone, in all 13 hidden states
        assert max_diff_to_each_alone(out.content, out.content_len, hf, wav) < ATOL
        assert all(float(h[1, 34:].abs().max()) == 0 for h in out.content)  # padded frames zeroed
        if stable:  # the layer-norm CNN has no statistic over time: transformers' own padded batch agrees too
            mask = (torch.arange(wav.shape[1])[None] < wav_len[:, None]).long()
            expect = transformers_layers(hf, wav, mask)
            for a, b in zip(out.content, expect):
                for i, t in enumerate(out.content_len.tolist()):
                    torch.testing.assert_close(a[i, :t], b[i, :t], atol=ATOL, rtol=0)
        # controls: the comparison sees the bias table and the gates
        table = model.encoder.rel_pos_bias.rel_attn_embed.weight
        table.copy_(table.roll(1, dims=0))
        assert max_diff_to_each_alone(model(wav, wav_len).content, out.content_len, hf, wav) > 1e-3
        table.copy_(table.roll(-1, dims=0))
        model.encoder.layers[5].attention.rel_pos_gate.gru_rel_pos_const.fill_(3.0)
        assert max_diff_to_each_alone(model(wav, wav_len).content, out.content_len, hf, wav) > 1e-3


def test_wavlm_backs_the_expert_learn2diss_and_jooci(tmp_path):
    from upstream.checkpoint import save_checkpoint
    from upstream.hub import UPSTREAMS
    from upstream.registry import build_model, preset_config

    hf, d = make_wavlm_dir(tmp_path, False)
    wav, wav_len = batch()
    wavs = [wav[i, :n] for i, n in enumerate(LENS)]
    lengths = torch.tensor([49, 34])
    with torch.no_grad():
        # s3prl expert: run_downstream.py -u hubert_compact -k WAVLM_DIR
        up = UPSTREAMS["hubert_compact"](ckpt=str(d)).eval()
        assert isinstance(up.model, HubertCompact)
        assert max_diff_to_each_alone(up(wavs)["content"], lengths, hf, wav) < ATOL
        # Learn2Diss: CNN + 11 frozen layers, g = the 12th layer, each part with the shared bias table
        l2d = build_with_backbone("learn2diss", d, preset="tiny")
        assert len(l2d.backbone.encoder.layers) == 11 and len(l2d.frame_encoder.layers) == 1
        assert torch.equal(l2d.frame_encoder.rel_pos_bias.rel_attn_embed.weight,
                           hf.encoder.layers[0].attention.rel_attn_embed.weight)
        assert max_diff_to_each_alone(l2d(wav, wav_len).content, lengths, hf, wav) < ATOL
        up = UPSTREAMS["learn2diss"](ckpt=str(d)).eval()
        assert max_diff_to_each_alone(up(wavs)["content"], lengths, hf, wav) < ATOL
        # saved as a DUET hubert_compact checkpoint (what JOOCI's init_ckpt reads) and back
        model, cfg = hf_model_to_duet(hf)
        save_checkpoint(model, tmp_path / "duet", name="hubert_compact", config=cfg)
        again, cfg2 = load_backbone_and_config(tmp_path / "duet")
        assert cfg2 == cfg
        assert max_diff_to_each_alone(again(wav, wav_len).content, lengths, hf, wav) < ATOL
        # JOOCI initialised from it (as pretrain/recipes/jooci_compact.py does): same content stream
        jcfg = dataclasses.replace(preset_config("jooci", "tiny"), encoder=cfg2)
        jooci = build_model("jooci", jcfg).eval()
        jooci.content_encoder.load_state_dict(again.state_dict())
        assert max_diff_to_each_alone(jooci(wav, wav_len).content, lengths, hf, wav) < ATOL
    # a Learn2Diss training step: g (its bias table and gates included) gets gradients, the backbone none
    l2d.train()
    l2d(wav, wav_len).content[-1].pow(2).mean().backward()
    assert float(l2d.frame_encoder.rel_pos_bias.rel_attn_embed.weight.grad.abs().sum()) > 0
    assert float(l2d.frame_encoder.layers[0].attention.rel_pos_gate.gru_rel_pos_linear.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in l2d.backbone.parameters())


def test_configs_without_rel_pos_are_unchanged():
    """Configs and checkpoints written before `rel_pos` existed build HuBERT exactly as before: no
    bias module, no gate parameters, the same state-dict keys."""
    from upstream.models.hubert import HUBERT_TINY

    old = {k: v for k, v in HUBERT_TINY.to_dict().items()
           if k not in ("rel_pos", "num_buckets", "max_bucket_distance")}
    cfg = HubertConfig.from_dict(old)
    assert cfg.rel_pos == "none" and cfg == HUBERT_TINY
    keys = list(HubertCompact.from_config(cfg).state_dict())
    assert not [k for k in keys if "rel_pos" in k or "gru_rel" in k]
    wavlm_keys = HubertCompact.from_config(dataclasses.replace(cfg, rel_pos="wavlm")).state_dict()
    assert set(wavlm_keys) - set(keys) == {"encoder.rel_pos_bias.rel_attn_embed.weight"} | {
        f"encoder.layers.{i}.attention.rel_pos_gate.{p}" for i in range(cfg.num_layers)
        for p in ("gru_rel_pos_const", "gru_rel_pos_linear.weight", "gru_rel_pos_linear.bias")}
    with pytest.raises(ValueError, match="rel_pos must be one of none, wavlm"):
        HubertCompact.from_config(dataclasses.replace(cfg, rel_pos="t5"))


def test_unsupported_wavlm_variants_are_refused(tmp_path):
    from transformers import WavLMConfig, WavLMModel

    from upstream.importers import BackboneImportError

    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    WavLMModel(WavLMConfig(add_adapter=True, **small)).save_pretrained(tmp_path / "adapter")
    with pytest.raises(BackboneImportError, match=r"adapter.*add_adapter=True"):
        load_hf_backbone(tmp_path / "adapter")
    WavLMModel(WavLMConfig(hidden_act="relu", **small)).save_pretrained(tmp_path / "relu")
    with pytest.raises(BackboneImportError, match=r"relu.*hidden_act='relu'"):
        load_hf_backbone(tmp_path / "relu")
    # a WavLM saved without masking (mask_time_prob=0: no masked_spec_embed) still imports
    WavLMModel(WavLMConfig(mask_time_prob=0.0, **small)).save_pretrained(tmp_path / "nomask")
    assert isinstance(load_hf_backbone(tmp_path / "nomask"), HubertCompact)
