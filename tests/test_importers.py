"""upstream/importers.py: tiny random-initialised HuBERTs in the formats users have (transformers
directory, fairseq .pt, s3prl-converted .pt) load onto DUET's backbone and reproduce the source
model's hidden states."""
import argparse
import dataclasses
import warnings

import pytest
import torch

from upstream.importers import (BackboneImportError, load_backbone, load_fairseq_hubert, load_hf_backbone,
                                parse_conv_layers)

ATOL = 1e-4
CONV = "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2"


def duet_layers(model, wav):
    with torch.no_grad():
        return model(wav, torch.tensor([wav.shape[1]])).content


# ------------------------------------------------------------------------------ transformers

def _save_tiny(tmp_path, config_cls, model_cls, name: str, seed: int, stable: bool, **cfg):
    """A seeded, randomly initialised transformers model saved with save_pretrained; stable: the
    pre-LN 'large' variant (layer-norm feature extractor), else the post-LN 'base' one."""
    torch.manual_seed(seed)
    hf = model_cls(config_cls(do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group",
                              **cfg)).eval()
    d = tmp_path / name
    hf.save_pretrained(d)
    return hf, d


def make_hf_dir(tmp_path, stable: bool):
    from transformers import HubertConfig, HubertModel
    return _save_tiny(tmp_path, HubertConfig, HubertModel, f"hf-{'large' if stable else 'base'}", 1, stable,
                      hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                      conv_bias=stable)


@pytest.mark.parametrize("stable", [False, True], ids=["base-postLN", "large-preLN"])
def test_hf_directory_reproduces_transformers(tmp_path, stable):
    hf, d = make_hf_dir(tmp_path, stable)
    model = load_hf_backbone(d)
    wav = torch.randn(1, 7000)
    with torch.no_grad():
        ref = hf(wav, output_hidden_states=True)
    ours = duet_layers(model, wav)
    expect = list(ref.hidden_states[:-1]) + [ref.last_hidden_state]
    assert len(ours) == len(expect) == 3
    for a, b in zip(ours, expect):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)
    assert load_backbone(d).encoder.layer_norm_first == stable


# WavLM directories: tests/test_wavlm_backbone.py


def test_broken_hf_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneImportError, match="config.json is missing"):
        load_hf_backbone(tmp_path / "empty")
    _, d = make_hf_dir(tmp_path, False)
    (d / "model.safetensors").unlink()
    with pytest.raises(BackboneImportError, match="has no weights"):
        load_hf_backbone(d)


# ------------------------------------------------------------------------------ fairseq / s3prl

def make_fairseq_model(layer_norm_first=False, dim=32):
    """A HuBERT with fairseq's module names (s3prl's own torch port of fairseq's HubertModel)."""
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    torch.manual_seed(2)
    cfg = HubertConfig(label_rate=50, encoder_layers=2, encoder_embed_dim=dim, encoder_ffn_embed_dim=64,
                       encoder_attention_heads=4, conv_feature_layers=CONV, conv_pos=16, conv_pos_groups=4,
                       layer_norm_first=layer_norm_first,
                       extractor_mode="layer_norm" if layer_norm_first else "default")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = HubertModel(cfg, HubertPretrainingConfig(), [list("abcd")]).eval()
    return m, dataclasses.asdict(cfg), dataclasses.asdict(HubertPretrainingConfig())


def fairseq_layers(m, wav):
    """Hidden states as s3prl's hubert expert takes them: each layer's input, then the encoder output."""
    hs = []
    hooks = [l.register_forward_hook(lambda mod, inp, out: hs.append(inp[0].transpose(0, 1)))
             for l in m.encoder.layers]
    with torch.no_grad():
        x, _ = m.extract_features(wav, padding_mask=torch.zeros(wav.shape, dtype=torch.bool))
    for h in hooks:
        h.remove()
    hs = hs + [x]
    n = min(h.shape[1] for h in hs)  # fairseq pads layer inputs to a multiple of 2; s3prl trims likewise
    return [h[:, :n] for h in hs]


@pytest.mark.parametrize("layout", ["fairseq", "s3prl", "legacy-args"])
@pytest.mark.parametrize("lnf", [False, True], ids=["postLN", "preLN"])
def test_fairseq_checkpoint_reproduces_source(tmp_path, layout, lnf):
    m, model_cfg, task_cfg = make_fairseq_model(lnf)
    sd = m.state_dict()
    path = tmp_path / "hubert.pt"
    if layout == "fairseq":
        torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": sd, "optimizer_history": []}, path)
    elif layout == "s3prl":
        torch.save({"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": sd,
                    "dictionaries_symbols": [list("abcd")]}, path)
    else:
        torch.save({"args": argparse.Namespace(**model_cfg), "model": sd}, path)
    model = load_fairseq_hubert(path)
    wav = torch.randn(1, 6000)
    ours, ref = duet_layers(model, wav), fairseq_layers(m, wav)
    assert len(ours) == len(ref) == 3
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)


def test_fairseq_without_post_extract_proj(tmp_path):
    m, model_cfg, task_cfg = make_fairseq_model(dim=16)  # CNN width == encoder width: no projection
    assert m.post_extract_proj is None
    path = tmp_path / "h.pt"
    torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": m.state_dict()}, path)
    wav = torch.randn(1, 5000)
    for a, b in zip(duet_layers(load_fairseq_hubert(path), wav), fairseq_layers(m, wav)):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)


@dataclasses.dataclass
class Opaque:  # a pickled object torch.load(weights_only=True) refuses
    x: int = 1


def test_pickled_objects_need_explicit_opt_in(tmp_path):
    m, model_cfg, task_cfg = make_fairseq_model()
    path = tmp_path / "pickled.pt"
    torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": m.state_dict(), "extra": Opaque()}, path)
    with pytest.raises(BackboneImportError, match=r"weights_only=True.*execute arbitrary code.*allow_unpickle=True"):
        load_fairseq_hubert(path)
    with pytest.warns(UserWarning, match="only do this for files you trust"):
        model = load_fairseq_hubert(path, allow_unpickle=True)
    wav = torch.randn(1, 5000)
    torch.testing.assert_close(duet_layers(model, wav)[-1], fairseq_layers(m, wav)[-1], atol=ATOL, rtol=1e-4)


def test_bad_fairseq_files(tmp_path):
    m, model_cfg, task_cfg = make_fairseq_model()
    path = tmp_path / "t.pt"
    torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": m.state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackboneImportError, match=str(path)):
        load_fairseq_hubert(path)
    torch.save({"weights": {}}, path)
    with pytest.raises(BackboneImportError, match="not a fairseq/s3prl HuBERT checkpoint"):
        load_fairseq_hubert(path)
    sd = m.state_dict()
    sd["encoder.extra.weight"] = torch.zeros(1)
    torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": sd}, path)
    with pytest.raises(BackboneImportError, match="encoder.extra.weight"):
        load_fairseq_hubert(path)
    with pytest.raises(BackboneImportError, match="no such file"):
        load_fairseq_hubert(tmp_path / "missing.pt")


def test_conv_layer_spec_is_parsed_without_eval():
    assert parse_conv_layers(CONV) == [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    with pytest.raises(BackboneImportError):
        parse_conv_layers("__import__('os').system('true')")


def test_from_pretrained_dispatches_on_format(tmp_path):
    from upstream.checkpoint import CheckpointError, save_checkpoint
    from upstream.pretrained import from_pretrained
    from upstream.models.hubert import HubertCompact
    from upstream.registry import build_model, preset_config
    hf, d = make_hf_dir(tmp_path, False)
    assert isinstance(from_pretrained(d), HubertCompact)
    m, model_cfg, task_cfg = make_fairseq_model()
    torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": m.state_dict()}, tmp_path / "f.pt")
    assert isinstance(from_pretrained(tmp_path / "f.pt"), HubertCompact)
    torch.manual_seed(0)
    ours = build_model("hubert_compact", "tiny")
    save_checkpoint(ours, tmp_path / "duet", name="hubert_compact", config=preset_config("hubert_compact", "tiny"))
    loaded = from_pretrained(tmp_path / "duet")
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        from_pretrained(tmp_path / "nothing")
