"""Backbones from what users have, offline: a transformers HuBERT or WavLM directory, a fairseq
HuBERT ``.pt`` or an s3prl-converted HuBERT ``.pt`` -> DUET's hubert backbone.

Every source is first brought to the transformers ``HubertModel`` / ``WavLMModel`` layout
(fairseq names are renamed here, the config translated), then mapped onto DUET's own modules
(WavLM: ``HubertConfig(rel_pos="wavlm")``, its gated relative position bias); the name mapping
lives here, not in the models. Nothing is unpickled unless the caller opts in with
``allow_unpickle=True`` (``allow_unpickle: true`` in an expert's ``-g`` YAML).

    >>> from upstream.importers import load_hf_backbone, load_fairseq_hubert   # doctest: +SKIP
    >>> hubert = load_hf_backbone("/models/hubert-base-ls960")                  # a local directory
    >>> hubert = load_fairseq_hubert("/models/hubert_base_ls960.pt")
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

HF_MODEL_TYPES = ("hubert", "wavlm")


class BackboneImportError(ValueError):
    """A backbone file that cannot be imported; the message names the file and the fix."""


# ----------------------------------------------------------------------------- transformers

def is_hf_dir(path: str | os.PathLike) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") in HF_MODEL_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def load_hf_source(path: str | os.PathLike) -> nn.Module:
    """``HubertModel/WavLMModel.from_pretrained(path)`` offline, in eval mode."""
    p = Path(path)
    cfg_file = p / "config.json"
    if not cfg_file.is_file():
        raise BackboneImportError(f"{cfg_file} is missing; pass a transformers model directory "
                                  f"(save_pretrained output: config.json + model.safetensors)")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except ValueError as e:
        raise BackboneImportError(f"{cfg_file} is not valid JSON ({e}); re-copy the model directory") from e
    if model_type not in HF_MODEL_TYPES:
        raise BackboneImportError(f"{cfg_file} has model_type {model_type!r}; DUET imports "
                                  f"{' and '.join(HF_MODEL_TYPES)} directories")
    if not any((p / f).is_file() for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        raise BackboneImportError(f"{p} has no weights (model.safetensors / pytorch_model.bin); re-copy the directory")
    if not (p / "model.safetensors").is_file() and not (p / "model.safetensors.index.json").is_file():
        warnings.warn(f"{p}: only pytorch_model.bin (a pickle) is present; transformers loads it with "
                      f"weights_only=True. Prefer model.safetensors (save_pretrained(..., safe_serialization=True))")
    from transformers import HubertModel, WavLMModel
    cls = HubertModel if model_type == "hubert" else WavLMModel
    try:
        model = cls.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # transformers raises OSError/ValueError/RuntimeError variants
        raise BackboneImportError(f"{p}: transformers could not load this {model_type} directory ({e})") from e
    return model.eval()


# ----------------------------------------------------------------------------- fairseq / s3prl

def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's ``conv_feature_layers`` string without eval():
    only list/tuple literals of ints joined by + and * are accepted.

    >>> parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")[-1]
    (512, 2, 2)
    """
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [ev(e) for e in node.elts]
            return vals if isinstance(node, ast.List) else tuple(vals)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported syntax {ast.dump(node)[:60]}")
    try:
        layers = ev(ast.parse(spec, mode="eval"))
        out = [tuple(int(v) for v in t) for t in layers]
        if not out or any(len(t) != 3 for t in out):
            raise ValueError("expected (dim, kernel, stride) triples")
        return out
    except (SyntaxError, ValueError, TypeError) as e:
        raise BackboneImportError(f"conv_feature_layers {spec!r} cannot be parsed ({e})") from e


def _torch_load_safe(path: Path, allow_unpickle: bool) -> Any:
    try:
        # argparse.Namespace (legacy fairseq 'args') is a plain attribute holder: safe to allow.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as e:
        why = str(e).strip().splitlines()[0][:300]
        if not allow_unpickle:
            raise BackboneImportError(
                f"{path} cannot be loaded with torch.load(weights_only=True): {why}. The file holds pickled "
                f"Python objects besides tensors; unpickling them can execute arbitrary code from the file, so "
                f"DUET refuses by default. If you trust where the file came from, opt in with "
                f"allow_unpickle=True (in an expert's -g YAML: 'allow_unpickle: true'), or re-save it once as "
                f"tensors + plain dicts (e.g. s3prl's upstream/hubert/convert.py output)") from e
        warnings.warn(f"{path}: unpickling with weights_only=False because allow_unpickle=True was given; this "
                      f"runs any code embedded in the file — only do this for files you trust")
        return torch.load(path, map_location="cpu", weights_only=False)
    except (EOFError, OSError, ValueError) as e:
        raise BackboneImportError(f"{path} is truncated or not a torch checkpoint ({e}); re-copy it") from e


def _as_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, argparse.Namespace):
        return vars(cfg)
    if isinstance(cfg, dict):
        return dict(cfg)
    try:  # omegaconf DictConfig (only reachable after an explicit allow_unpickle)
        from omegaconf import OmegaConf
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:
        raise BackboneImportError(f"cannot read a config of type {type(cfg).__name__}") from e


def read_fairseq_hubert(path: str | os.PathLike, *, allow_unpickle: bool = False) -> tuple[dict, dict, dict]:
    """Read a fairseq or s3prl-converted HuBERT checkpoint -> (state_dict, model_cfg, task_cfg).

    Accepted layouts: s3prl's converted {task_cfg, model_cfg, model_weight, ...}; fairseq's
    {cfg: {model, task}, model}; legacy fairseq {args: Namespace, model}. Fine-tuned (CTC)
    checkpoints have their ``w2v_encoder.w2v_model.`` prefix stripped.
    """
    p = Path(path)
    if not p.is_file():
        raise BackboneImportError(f"{p}: no such file; pass a fairseq HuBERT .pt or an s3prl-converted one")
    obj = _torch_load_safe(p, allow_unpickle)
    if not isinstance(obj, dict):
        raise BackboneImportError(f"{p} holds a {type(obj).__name__}, not a fairseq checkpoint dict")
    if "model_weight" in obj and "model_cfg" in obj:
        state, model_cfg, task_cfg = obj["model_weight"], _as_dict(obj["model_cfg"]), _as_dict(obj.get("task_cfg"))
    elif "model" in obj and ("cfg" in obj or "args" in obj):
        state = obj["model"]
        if obj.get("cfg") is not None:
            cfg = _as_dict(obj["cfg"])
            model_cfg, task_cfg = _as_dict(cfg.get("model")), _as_dict(cfg.get("task"))
        else:
            model_cfg = task_cfg = _as_dict(obj["args"])
    else:
        raise BackboneImportError(f"{p} is not a fairseq/s3prl HuBERT checkpoint: found keys {sorted(obj)[:8]}; "
                                  f"expected 'cfg'+'model' (fairseq) or 'model_cfg'+'model_weight' (s3prl)")
    if "w2v_args" in model_cfg and model_cfg["w2v_args"]:  # fine-tuned: backbone config is nested
        inner = _as_dict(model_cfg["w2v_args"])
        model_cfg, task_cfg = _as_dict(inner.get("model", inner)), _as_dict(inner.get("task", task_cfg))
    prefix = "w2v_encoder.w2v_model."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneImportError(f"{p}: the model state holds non-tensor values; it is not a HuBERT checkpoint")
    return state, model_cfg, task_cfg


def fairseq_to_hf_config(model_cfg: dict, where: str = "checkpoint"):
    """A transformers ``HubertConfig`` equivalent to a fairseq HuBERT model config."""
    from transformers import HubertConfig

    layer_type = model_cfg.get("layer_type", "transformer")
    pos = model_cfg.get("pos_enc_type", "abs")
    if layer_type != "transformer" or pos != "abs":
        raise BackboneImportError(f"{where}: layer_type={layer_type!r}, pos_enc_type={pos!r}; only plain "
                                  f"transformer HuBERT (absolute conv positions) can be imported")
    conv = parse_conv_layers(model_cfg.get("conv_feature_layers",
                                           "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"))
    mode = model_cfg.get("extractor_mode", "default")
    act = model_cfg.get("activation_fn", "gelu")
    if act not in ("gelu", "relu"):
        raise BackboneImportError(f"{where}: activation_fn={act!r} is not supported (gelu, relu)")
    return HubertConfig(
        conv_dim=[c[0] for c in conv], conv_kernel=[c[1] for c in conv], conv_stride=[c[2] for c in conv],
        conv_bias=bool(model_cfg.get("conv_bias", False)),
        feat_extract_norm="group" if mode == "default" else "layer",
        hidden_size=int(model_cfg.get("encoder_embed_dim", 768)),
        num_hidden_layers=int(model_cfg.get("encoder_layers", 12)),
        num_attention_heads=int(model_cfg.get("encoder_attention_heads", 12)),
        intermediate_size=int(model_cfg.get("encoder_ffn_embed_dim", 3072)),
        hidden_act=act,
        num_conv_pos_embeddings=int(model_cfg.get("conv_pos", 128)),
        num_conv_pos_embedding_groups=int(model_cfg.get("conv_pos_groups", 16)),
        do_stable_layer_norm=bool(model_cfg.get("layer_norm_first", False)),
        feat_proj_layer_norm=True, layer_norm_eps=1e-5,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        layerdrop=0.0, apply_spec_augment=False,
    )


_FAIRSEQ_TO_HF = [  # (fairseq regex, HF replacement), applied in order
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.parametrizations\.weight\.original([01])$",
     r"encoder.pos_conv_embed.conv.parametrizations.weight.original\1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.attention."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.feed_forward.intermediate_dense."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.feed_forward.output_dense."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"^mask_emb$", "masked_spec_embed"),
]
# pre-training heads with no place in a backbone
_FAIRSEQ_DROP = re.compile(r"^(final_proj|label_embs_concat|target_glu|proj|encoder\.proj)\b")


def fairseq_to_hf_state(state: dict, hf_config, where: str = "checkpoint") -> dict:
    """Rename a fairseq HuBERT state dict to transformers ``HubertModel`` names."""
    out, unknown = {}, []
    for k, v in state.items():
        if _FAIRSEQ_DROP.match(k):
            continue
        for pat, rep in _FAIRSEQ_TO_HF:
            new, n = re.subn(pat, rep, k)
            if n:
                out[new] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise BackboneImportError(f"{where}: {len(unknown)} parameters have no HuBERT counterpart "
                                  f"(e.g. {', '.join(unknown[:4])}); is this a HuBERT checkpoint?")
    proj = "feature_projection.projection.weight"
    if proj not in out:  # fairseq skips post_extract_proj when the CNN width equals the encoder width
        d = hf_config.hidden_size
        out[proj] = torch.eye(d)
        out["feature_projection.projection.bias"] = torch.zeros(d)
    return out


def load_fairseq_as_hf(path: str | os.PathLike, *, allow_unpickle: bool = False) -> tuple[nn.Module, dict]:
    """A fairseq / s3prl HuBERT .pt as a transformers ``HubertModel`` (eval) + info dict
    (``normalize``: whether the original recipe layer-normalises the waveform)."""
    from transformers import HubertModel

    state, model_cfg, task_cfg = read_fairseq_hubert(path, allow_unpickle=allow_unpickle)
    hf_config = fairseq_to_hf_config(model_cfg, str(path))
    hf_state = fairseq_to_hf_state(state, hf_config, str(path))
    model = HubertModel(hf_config).eval()
    own = model.state_dict()
    missing = [k for k in own if k not in hf_state]
    shapes = [f"{k}: {tuple(hf_state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in hf_state and hf_state[k].shape != own[k].shape]
    if missing or shapes:
        raise BackboneImportError(f"{path}: weights do not fit the config it declares "
                                  f"(missing: {missing[:4]}, shape mismatches: {shapes[:3]})")
    model.load_state_dict(hf_state, strict=True)
    return model, {"normalize": bool(task_cfg.get("normalize", False)), "model_cfg": model_cfg}


# ----------------------------------------------------------------------------- onto DUET's modules

def hf_to_duet_config(hf_config, where: str = "model"):
    """DUET ``HubertConfig`` (upstream.models.hubert) with the shape of a transformers HubertConfig
    or WavLMConfig (WavLM: ``rel_pos="wavlm"`` with its buckets)."""
    from upstream.models.hubert import HubertConfig

    mt = getattr(hf_config, "model_type", "hubert")
    if mt not in HF_MODEL_TYPES:
        raise BackboneImportError(f"{where}: model_type {mt!r}; DUET's hubert backbone imports "
                                  f"{' and '.join(HF_MODEL_TYPES)} models")
    if hf_config.hidden_act != "gelu":
        raise BackboneImportError(f"{where}: hidden_act={hf_config.hidden_act!r}; DUET's backbone uses gelu")
    act = getattr(hf_config, "feat_extract_activation", "gelu")
    if act != "gelu":
        raise BackboneImportError(f"{where}: feat_extract_activation={act!r}; DUET's CNN front-end uses gelu")
    if getattr(hf_config, "conv_pos_batch_norm", False):
        raise BackboneImportError(f"{where}: conv_pos_batch_norm=True is not supported by DUET's backbone")
    if getattr(hf_config, "add_adapter", False):
        raise BackboneImportError(f"{where}: add_adapter=True (a convolutional adapter after the encoder, used "
                                  f"for fine-tuning) has no counterpart in DUET's backbone; import the "
                                  f"pre-trained model without it")
    wavlm = {}
    if mt == "wavlm":
        wavlm = dict(rel_pos="wavlm", num_buckets=int(hf_config.num_buckets),
                     max_bucket_distance=int(hf_config.max_bucket_distance))
    norm = hf_config.feat_extract_norm
    return HubertConfig(
        conv_dim=tuple(hf_config.conv_dim), conv_kernel=tuple(hf_config.conv_kernel),
        conv_stride=tuple(hf_config.conv_stride), conv_bias=bool(hf_config.conv_bias),
        conv_norm=norm, hidden_size=hf_config.hidden_size, num_layers=hf_config.num_hidden_layers,
        num_heads=hf_config.num_attention_heads, ffn_dim=hf_config.intermediate_size,
        layer_norm_first=bool(hf_config.do_stable_layer_norm),
        pos_conv_kernel=hf_config.num_conv_pos_embeddings,
        pos_conv_groups=hf_config.num_conv_pos_embedding_groups,
        feat_proj_layer_norm=bool(getattr(hf_config, "feat_proj_layer_norm", True)),
        layer_norm_eps=float(hf_config.layer_norm_eps), **wavlm,
    )


# transformers HubertModel / WavLMModel name -> DUET HubertCompact name (the rest is identical)
_HF_TO_DUET = [
    (r"^feature_extractor\.", "frontend."),
    (r"^feature_projection\.", "frontend."),
    (r"^encoder\.pos_conv_embed\.conv\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv_embed\.conv\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    # WavLM: the bias table lives in layer 0 in transformers, once per encoder in DUET; the gates per layer
    (r"^encoder\.layers\.0\.attention\.rel_attn_embed\.", "encoder.rel_pos_bias.rel_attn_embed."),
    (r"^(encoder\.layers\.\d+\.attention\.)gru_rel_pos_", r"\1rel_pos_gate.gru_rel_pos_"),
]


def hf_to_duet_state(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for pat, rep in _HF_TO_DUET:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def hf_model_to_duet(hf_model: nn.Module, where: str = "model"):
    """A transformers HubertModel / WavLMModel -> (DUET hubert_compact model with the same weights
    (eval), its config)."""
    from upstream.checkpoint import CheckpointError, check_state_dict
    from upstream.models.hubert import HubertCompact

    cfg = hf_to_duet_config(hf_model.config, where)
    model = HubertCompact.from_config(cfg)
    state = hf_to_duet_state(hf_model.state_dict())
    # transformers builds masked_spec_embed only when its config masks (mask_time_prob > 0); it is
    # unused at inference, so a model saved without it keeps DUET's own (uniform) initialisation
    state.setdefault("masked_spec_embed", model.masked_spec_embed.detach().clone())
    try:
        check_state_dict(model, state, where)
    except CheckpointError as e:
        raise BackboneImportError(str(e)) from None
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg


def load_hf_backbone(path: str | os.PathLike) -> nn.Module:
    """A transformers HuBERT or WavLM directory (``save_pretrained`` output) as DUET's hubert backbone."""
    return hf_model_to_duet(load_hf_source(path), str(path))[0]


def _fairseq_backbone(path, allow_unpickle: bool):
    hf, info = load_fairseq_as_hf(path, allow_unpickle=allow_unpickle)
    if info["normalize"]:
        warnings.warn(f"{path}: this HuBERT was trained on layer-normalised waveforms (task.normalize=True); "
                      f"normalise each waveform (F.layer_norm(wav, wav.shape)) before the DUET backbone")
    return hf_model_to_duet(hf, str(path))


def load_fairseq_hubert(path: str | os.PathLike, *, allow_unpickle: bool = False) -> nn.Module:
    """A fairseq or s3prl-converted HuBERT ``.pt`` as DUET's hubert backbone."""
    return _fairseq_backbone(path, allow_unpickle)[0]


def load_backbone_and_config(path: str | os.PathLike, *, allow_unpickle: bool = False):
    """(DUET hubert backbone, its HubertConfig) from a transformers directory, a fairseq/s3prl .pt
    or a DUET hubert_compact checkpoint directory."""
    from upstream.checkpoint import is_checkpoint_dir, load_checkpoint
    from upstream.models.hubert import HubertConfig

    p = Path(path)
    if p.is_dir() and is_checkpoint_dir(p):
        model, meta = load_checkpoint(p, expected_model="hubert_compact")
        return model, HubertConfig.from_dict(meta["config"])
    if p.is_dir() and is_hf_dir(p):
        return hf_model_to_duet(load_hf_source(p), str(p))
    if p.is_file():
        return _fairseq_backbone(p, allow_unpickle)
    raise BackboneImportError(f"{p}: not a transformers HuBERT/WavLM directory, a fairseq .pt or a DUET "
                              f"hubert_compact checkpoint directory")


def load_backbone(path: str | os.PathLike, *, allow_unpickle: bool = False) -> nn.Module:
    """DUET hubert backbone from any of the formats of :func:`load_backbone_and_config`."""
    return load_backbone_and_config(path, allow_unpickle=allow_unpickle)[0]


def build_with_backbone(name: str, path: str | os.PathLike, *, preset: str = "compact", seed: int = 0,
                        allow_unpickle: bool = False) -> nn.Module:
    """A DUET model ``name`` whose HuBERT backbone comes from ``path`` (any importable format).

    hubert_compact: the backbone itself. learn2diss: the imported model's CNN and lower layers
    as the frozen part, its top ``frame_layers`` (from the preset) as the frame encoder g, and
    the preset's utterance encoder, seeded random (``seed``), fed from the backbone's middle
    layer; train g and h with pretrain/ or use as a random-head baseline. A WavLM source keeps its
    gated relative position bias in both parts.
    """
    import dataclasses

    backbone, bcfg = load_backbone_and_config(path, allow_unpickle=allow_unpickle)
    if name == "hubert_compact":
        return backbone
    if name != "learn2diss":
        raise BackboneImportError(f"{name} has no separable HuBERT backbone; -k {path} needs a DUET {name} checkpoint")
    from upstream.registry import build_model, preset_config

    pcfg = preset_config(name, preset)
    frame_layers = min(pcfg.frame_layers, bcfg.num_layers)
    cfg = dataclasses.replace(pcfg, backbone=bcfg, frame_layers=frame_layers,
                              utt_input_layer=min(bcfg.num_layers // 2, bcfg.num_layers - frame_layers))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, cfg)
    # frozen part = CNN + lower layers; frame encoder g = the imported model's top layers
    model.init_from_backbone(backbone)
    return model.eval()
