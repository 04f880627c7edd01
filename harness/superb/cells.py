"""A cell of results: (upstream, checkpoint hash, feature key, layers, task, corpus) -> one metric row.

`expand_cells` turns the CLI's lists into cells; `Cell.id` is a readable, collision-free name
(task, upstream, feature, layers + a hash of everything that changes the number).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from upstream.facts import parse_layers

def check_layer_spec(spec: str) -> str:
    """`all`, `6`, `6-11`, `0,2,4-6` (inclusive, 0-based); anything else raises ValueError
    (the syntax of :func:`upstream.facts.parse_layers`; the range is checked once the model is known)."""
    spec = spec.strip()
    parse_layers(spec, None, "--layers")
    return spec


def parse_layers_arg(items: list[str] | None) -> dict[str | None, list[str]]:
    """`["6-11", "other=0-3"]` -> {None: ["6-11"], "other": ["0-3"]} (None = any feature).

    An item that is a YAML file (the model config `harness cca --suggest-layers` writes,
    `layers: {content: "6-11"}`) stands for its FEATURE=SPEC entries."""
    out: dict[str | None, list[str]] = {}
    expanded: list[str] = []
    for item in items or ["all"]:
        if item.endswith((".yaml", ".yml")):
            import yaml
            from pathlib import Path

            if not Path(item).is_file():
                raise ValueError(f"--layers {item}: no such file")
            layers = (yaml.safe_load(Path(item).read_text()) or {}).get("layers")
            if not isinstance(layers, dict) or not layers:
                raise ValueError(f"--layers {item}: expected a mapping 'layers: {{content: \"6-11\"}}'")
            expanded += [f"{k}={v}" for k, v in layers.items()]
        else:
            expanded.append(item)
    for item in expanded:
        feat, _, spec = item.rpartition("=")
        out.setdefault(feat or None, []).append(check_layer_spec(spec))
    return out


@dataclass(frozen=True)
class Cell:
    task: str
    upstream: str
    ckpt: str | None        # checkpoint dir (DUET) or None (fbank)
    ckpt_hash: str          # 12 hex, or "-" when the upstream has no checkpoint
    feature: str            # s3prl feature key (-s)
    layers: str             # "all" or a subset spec
    corpus: str             # corpus root (generated) or data-config path (real)
    corpus_id: str          # hash of the corpus spec / data paths
    config_id: str          # hash of the downstream config + overrides
    steps: int | None       # total_steps override (None = the config's)
    seed: int = 1337

    def key(self) -> dict:
        d = asdict(self)
        d.pop("ckpt")       # the hash identifies the weights, not where they lie
        d.pop("corpus")
        return d

    @property
    def id(self) -> str:
        h = hashlib.sha1(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:8]
        layers = self.layers.replace(",", "_")
        return f"{self.task}-{self.upstream}-{self.feature}-L{layers}-{h}"

    @property
    def model_config(self) -> dict | None:
        """The -g YAML content for this cell (layer subset), or None."""
        if self.layers == "all":
            return None
        return {"layers": {self.feature: self.layers}}


def sha_of_files(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:10]
