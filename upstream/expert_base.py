"""What the four DUET s3prl experts share: option parsing (``-g``), checkpoint resolution (``-k``),
input checks, and the mapping from a model's ``StreamOutput`` to s3prl feature keys.

Keys returned by ``forward(wavs)`` (each a list of (B, T, D) tensors of one shape):

``hidden_states``      every content layer, then every other layer when their shapes agree with
                       the content layers (else the content layers only)
``content``            the content/frame stream layers (restricted by ``layers.content``)
``other``              the other/utterance stream, frame by frame at its own rate (restricted by
                       ``layers.other``; absent for single-stream models)
``utterance``          the pooled utterance embedding repeated over the content frames (1 tensor)
``last_hidden_state``  the last content layer
named subsets          from ``keys:`` in the model config, e.g. ``content_words: {stream: content,
                       layers: "6-11"}``

Model config (``-g FILE.yaml``), every entry optional::

    layers: {content: "6-11", other: "0-3"}   # inclusive, 0-based; also "0,2,4-6" or a list
    keys: {content_words: {stream: content, layers: "6-11"}}
    random_init: compact      # without -k: a seeded random model of that preset (not the bundled one)
    seed: 0
    sample_rate: 16000        # the rate of your audio; anything but 16000 is an error (resample)
    allow_unpickle: false     # fairseq .pt that cannot be read with weights_only=True
    hidden_states: other      # serve another key as hidden_states (for s3prl.nn.S3PRLUpstream, which
                              # reads only hidden_states): content, other, utterance or a keys: name

s3prl's weighted sum then learns one weight per layer of exactly the chosen subset.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from upstream import facts
from upstream.facts import SAMPLE_RATE
from upstream.validation import check_sample_rate, check_wavs, pad_wavs

REPO_ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("content", "other")


class UpstreamConfigError(ValueError):
    """A bad ``-g`` model config or ``-k`` checkpoint for a DUET expert."""


# ----------------------------------------------------------------------------- layer subsets

# an inclusive 0-based layer subset ("6-11", "0,2,4-6", [0, 1]) of a stream, as UpstreamConfigError
parse_layers = functools.partial(facts.parse_layers, error=UpstreamConfigError)


# ----------------------------------------------------------------------------- options (-g)

@dataclasses.dataclass
class ExpertOptions:
    """The parsed ``-g`` model config of a DUET expert."""

    layers: dict = dataclasses.field(default_factory=dict)       # stream -> subset spec
    keys: dict = dataclasses.field(default_factory=dict)         # key -> {stream, layers}
    random_init: str | None = None                                # preset name
    seed: int = 0
    sample_rate: int | None = None
    allow_unpickle: bool = False
    hidden_states: str | None = None      # another key to serve as hidden_states (s3prl.nn.S3PRLUpstream reads only that)

    @classmethod
    def load(cls, model_config: Any) -> "ExpertOptions":
        """From None, a dict, or a YAML file path (what ``-g`` gives)."""
        if model_config is None or model_config == "":
            return cls()
        if isinstance(model_config, ExpertOptions):
            return model_config
        source = "model config"
        if isinstance(model_config, (str, os.PathLike)):
            path = Path(model_config)
            source = str(path)
            if not path.is_file():
                raise UpstreamConfigError(f"-g {path}: no such model config file; write a YAML file such as "
                                          f"'layers: {{content: \"6-11\"}}'")
            import yaml
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as e:
                raise UpstreamConfigError(f"{path}: not valid YAML ({e})") from e
        elif isinstance(model_config, dict):
            data = model_config
        else:
            raise UpstreamConfigError(f"model_config must be a YAML path or a dict, got {type(model_config).__name__}")
        if not isinstance(data, dict):
            raise UpstreamConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UpstreamConfigError(f"{source}: unknown entries {unknown}; valid entries: {sorted(names)}")
        opts = cls(**data)
        for field, types in (("random_init", (str, type(None))), ("seed", (int,)), ("hidden_states", (str, type(None))),
                             ("sample_rate", (int, type(None))), ("allow_unpickle", (bool,))):
            value = getattr(opts, field)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise UpstreamConfigError(f"{source}: {field}: {value!r} has the wrong type "
                                          f"(expected {' or '.join(t.__name__ for t in types)})")
        if not isinstance(opts.layers, dict):
            raise UpstreamConfigError(f"{source}: 'layers' must map a stream to a subset, e.g. "
                                      f"layers: {{content: \"6-11\", other: \"0-3\"}}")
        for s in opts.layers:
            if s not in STREAMS:
                raise UpstreamConfigError(f"{source}: layers.{s}: unknown stream {s!r}; valid streams: "
                                          f"{', '.join(STREAMS)}")
        if not isinstance(opts.keys, dict):
            raise UpstreamConfigError(f"{source}: 'keys' must map a key name to {{stream, layers}}")
        for k, v in opts.keys.items():
            if not isinstance(v, dict) or set(v) - {"stream", "layers"} or "stream" not in v:
                raise UpstreamConfigError(f"{source}: keys.{k} must be {{stream: content|other, layers: \"6-11\"}}")
            if v["stream"] not in STREAMS:
                raise UpstreamConfigError(f"{source}: keys.{k}: unknown stream {v['stream']!r}; valid streams: "
                                          f"{', '.join(STREAMS)}")
            if k in RESERVED_KEYS:
                raise UpstreamConfigError(f"{source}: keys.{k} would shadow a built-in key ({', '.join(RESERVED_KEYS)})")
        if opts.hidden_states is not None and opts.hidden_states not in ("content", "other", "utterance",
                                                                         "last_hidden_state", *opts.keys):
            raise UpstreamConfigError(f"{source}: hidden_states: {opts.hidden_states!r} is not a key of this "
                                      f"config; use content, other, utterance, last_hidden_state or a name under keys:")
        check_sample_rate(opts.sample_rate)
        return opts


RESERVED_KEYS = ("hidden_states", "content", "other", "utterance", "last_hidden_state")


# ----------------------------------------------------------------------------- checkpoints (-k)

def bundled_checkpoint(name: str) -> Path:
    """Where the bundled checkpoint of ``name`` lives: checkpoints/<name with - for _>-compact
    (or $DUET_CHECKPOINTS/...)."""
    root = Path(os.environ.get("DUET_CHECKPOINTS", REPO_ROOT / "checkpoints"))
    dash = name.replace("_", "-")
    candidates = [root / f"{dash}-compact"] + ([root / dash] if dash.endswith("-compact") else [])
    return next((c for c in candidates if c.exists()), candidates[0])


def build_random(name: str, preset: str, seed: int) -> nn.Module:
    from upstream.registry import MODELS, build_model
    presets = sorted(MODELS[name].presets)
    if preset not in presets:
        raise UpstreamConfigError(f"random_init: {preset!r} is not a preset of {name}; choose one of {presets}")
    with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = build_model(name, preset)
    return model.eval()


def resolve_model(name: str, ckpt: str | None, opts: ExpertOptions) -> tuple[nn.Module, dict]:
    """The model an expert wraps, and a description of where it came from."""
    from upstream.checkpoint import CheckpointError, is_checkpoint_dir, load_checkpoint

    if ckpt is None or ckpt == "":
        if opts.random_init:  # asked for explicitly: a random baseline even where a bundled one exists
            return build_random(name, opts.random_init, opts.seed), {
                "source": "random_init", "preset": opts.random_init, "seed": opts.seed}
        bundled = bundled_checkpoint(name)
        if bundled.exists():
            model, meta = load_checkpoint(bundled, expected_model=name)
            return model, {"source": "bundled", "path": str(bundled), "meta": meta}
        raise UpstreamConfigError(
            f"{name}: no checkpoint given (-k) and the bundled checkpoint {bundled} does not exist (yet). "
            f"Pass -k DIR (a DUET checkpoint directory"
            f"{', a transformers HuBERT directory or a fairseq / s3prl HuBERT .pt' if name in BACKBONE_MODELS else ''}"
            f"), or for a seeded random model a -g YAML with 'random_init: compact' (tiny|compact|base)")
    path = Path(ckpt)
    if path.is_dir() and is_checkpoint_dir(path):
        model, meta = load_checkpoint(path, expected_model=name)
        return model, {"source": "checkpoint", "path": str(path), "meta": meta}
    if name in BACKBONE_MODELS:
        from upstream import importers
        if path.is_dir() and importers.is_hf_dir(path) or path.is_file() and path.suffix in (".pt", ".pth", ".ckpt"):
            model = importers.build_with_backbone(name, path, preset=opts.random_init or "compact",
                                                  seed=opts.seed, allow_unpickle=opts.allow_unpickle)
            return model, {"source": "imported", "path": str(path)}
    if not path.exists():
        raise CheckpointError(f"-k {path}: no such file or directory")
    load_checkpoint(path, expected_model=name)  # raises the precise CheckpointError
    raise AssertionError("unreachable")


# Models whose backbone can come from a transformers / fairseq HuBERT.
BACKBONE_MODELS = ("hubert_compact", "learn2diss")


# ----------------------------------------------------------------------------- the expert

class DuetUpstreamExpert(nn.Module):
    """s3prl upstream expert around a DUET model (subclasses only set ``MODEL_NAME``)."""

    MODEL_NAME: str = ""

    def __init__(self, ckpt: str | None = None, model_config: Any = None, refresh: bool = False, **kwargs):
        super().__init__()
        self.name = f"[DUET {self.MODEL_NAME}]"
        self.options = ExpertOptions.load(model_config)
        model, self.source = resolve_model(self.MODEL_NAME, ckpt, self.options)
        self.model = model
        self.content_rate = int(model.content_rate)
        self.other_rate = int(getattr(model, "other_rate", 0) or 0)
        self._probe()

    # -- structure, from one probe forward on 1 s of silence
    def _probe(self) -> None:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(torch.zeros(1, SAMPLE_RATE), torch.tensor([SAMPLE_RATE]))
        self.model.train(was_training)
        self.num_layers = {"content": len(out.content), "other": len(out.other)}
        self.has_utterance = out.utterance is not None
        c_shapes = {tuple(t.shape) for t in out.content}
        o_shapes = {tuple(t.shape) for t in out.other}
        self._stack_other = bool(out.other) and len(c_shapes) == 1 and c_shapes == o_shapes
        self._shapes = {"content": [tuple(t.shape[2:]) for t in out.content],
                        "other": [tuple(t.shape[2:]) for t in out.other]}
        sel = {s: self._default_layers(s) for s in STREAMS}
        for stream, spec in self.options.layers.items():
            sel[stream] = self._subset(stream, spec, f"layers.{stream}")
        self.selection = sel
        self.named_keys = {k: (v["stream"], self._subset(v["stream"], v["layers"], f"keys.{k}") if "layers" in v
                               else self._default_layers(v["stream"]))
                           for k, v in self.options.keys.items()}

    def _default_layers(self, stream: str) -> list[int]:
        """All layers; if their widths differ (Learn2Diss's ECAPA blocks vs its MFA output), the
        largest group of equal-shaped layers (a weighted sum needs one shape)."""
        shapes = self._shapes[stream]
        if not shapes:
            return []
        common = max(set(shapes), key=lambda s: (shapes.count(s), -shapes.index(s)))
        return [i for i, s in enumerate(shapes) if s == common]

    def _subset(self, stream: str, spec: Any, where: str) -> list[int]:
        idx = parse_layers(spec, self.num_layers[stream], stream)
        shapes = {self._shapes[stream][i] for i in idx}
        if len(shapes) > 1:
            detail = ", ".join(f"{i}: {self._shapes[stream][i][-1]}" for i in idx)
            raise UpstreamConfigError(
                f"{where}: the {stream} layers {spec!r} have different widths ({detail}); s3prl's weighted "
                f"sum needs one shape: choose layers of one width (a single odd layer can be its own key, "
                f"e.g. keys: {{{stream}_{idx[-1]}: {{stream: {stream}, layers: \"{idx[-1]}\"}}}})")
        return idx

    def available_keys(self) -> list[str]:
        keys = ["hidden_states", "content", "last_hidden_state"]
        if self.num_layers["other"]:
            keys.append("other")
        if self.has_utterance:
            keys.append("utterance")
        return keys + list(self.named_keys)

    def check_key(self, key: str) -> None:
        """Raise (instead of s3prl's silent fallback to hidden_states) for a key this expert lacks."""
        if key not in self.available_keys():
            raise KeyError(f"{self.MODEL_NAME} has no feature key {key!r}; valid keys (-s): "
                           f"{', '.join(self.available_keys())}")

    def key_layers(self, key: str) -> tuple[str, list[int]]:
        """(stream, layer indices) a key's list is made of."""
        self.check_key(key)
        if key == "hidden_states" and self.options.hidden_states:
            return self.key_layers(self.options.hidden_states)
        if key == "hidden_states":
            return "content+other" if self._stack_other else "content", \
                list(range(self.num_layers["content"] + (self.num_layers["other"] if self._stack_other else 0)))
        if key == "last_hidden_state":
            return "content", [self.num_layers["content"] - 1]
        if key == "utterance":
            return "utterance", [0]
        if key in STREAMS:
            return key, self.selection[key]
        return self.named_keys[key]

    def get_downsample_rates(self, key: str) -> int:
        self.check_key(key)
        stream = self.key_layers(key)[0]
        return self.other_rate if stream == "other" else self.content_rate

    def forward(self, wavs: list[Tensor], sample_rate: int | None = None,
                names: list[str] | None = None) -> dict[str, list[Tensor]]:
        """``wavs``: list of 1-D float waveforms at 16 kHz (what s3prl hands over). ``names``: the
        file (or utterance id) of each, when the caller knows them; a bad waveform's error then
        names its file and the fix."""
        return self.forward_with_lengths(wavs, sample_rate, names)[0]

    def forward_with_lengths(self, wavs: list[Tensor], sample_rate: int | None = None,
                             names: list[str] | None = None) -> tuple[dict[str, list[Tensor]], dict[str, Tensor]]:
        """:meth:`forward`, plus the valid frames of every item of every key: {key: (B,) long}, from
        the model's own output-length arithmetic (``content_len`` / ``other_len``), so a batch of
        files of different lengths can be cut back to exactly what one-file forwards give."""
        wavs = check_wavs(wavs, sample_rate=sample_rate if sample_rate is not None else self.options.sample_rate,
                          names=names)
        wav, wav_len = pad_wavs(wavs)
        out = self.model(wav, wav_len)
        content, other = list(out.content), list(out.other)
        feats: dict[str, list[Tensor]] = {
            "hidden_states": content + other if self._stack_other else list(content),
            "content": [content[i] for i in self.selection["content"]],
            "last_hidden_state": [content[-1]],
        }
        if other:
            feats["other"] = [other[i] for i in self.selection["other"]]
        if out.utterance is not None:
            b, t = content[0].shape[:2]
            feats["utterance"] = [out.utterance[:, None, :].expand(b, t, out.utterance.shape[-1]).contiguous()]
        for key, (stream, idx) in self.named_keys.items():
            layers = content if stream == "content" else other
            feats[key] = [layers[i] for i in idx]
        if self.options.hidden_states:
            self.check_key(self.options.hidden_states)
            feats["hidden_states"] = feats[self.options.hidden_states]
        lengths = {k: (out.other_len if self.key_layers(k)[0] == "other" else out.content_len).detach().long().cpu()
                   for k in feats}
        return feats, lengths

    def extra_repr(self) -> str:
        return f"source={self.source.get('source')}, layers={ {s: len(v) for s, v in self.selection.items()} }"
