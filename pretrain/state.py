"""Training-state checkpoints: every named stateful object as safetensors (tensors) + JSON (the rest).

A state directory ``<run>/state/step_000123/`` holds

    tensors.safetensors   model.*, optim.<name>.state.<i>.<key>, rng.* (CPU/CUDA generator states)
    state.json            step, optimiser param groups, scheduler, sampler, metrics, and the
                          tensor-key layout needed to rebuild each optimiser's state_dict

Written to a temporary directory and renamed into place; ``<run>/state/LATEST`` (replaced
atomically) names the newest complete one. No pickle anywhere: a state directory is read with
``safetensors.torch.load_file`` and ``json.load`` only.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from upstream.facts import atomic_dir, atomic_write_text

FORMAT = "duet-train-state/1"


class StateError(RuntimeError):
    pass


def _flatten_optimizer(prefix: str, sd: dict, tensors: dict) -> dict:
    """Optimiser state_dict -> JSON-able dict; tensors moved into ``tensors``."""
    state_meta: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        entry = {}
        for key, val in st.items():
            if torch.is_tensor(val):
                name = f"{prefix}.state.{idx}.{key}"
                tensors[name] = val.detach().cpu().contiguous()
                entry[key] = {"tensor": name}
            else:
                entry[key] = {"value": val}
        state_meta[str(idx)] = entry
    return {"state": state_meta, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(meta: dict, tensors: dict) -> dict:
    state = {}
    for idx, entry in meta["state"].items():
        state[int(idx)] = {k: (tensors[v["tensor"]] if "tensor" in v else v["value"]) for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(run_dir: Path, step: int, *, model_state: dict, optimizers: dict, scheduler: dict,
               sampler: dict, rng: dict, extra: dict | None = None, keep: int = 2) -> Path:
    """Write one state directory atomically and point LATEST at it; keep the newest ``keep``."""
    root = Path(run_dir) / "state"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model_state.items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    optim_meta = {name: _flatten_optimizer(f"optim.{name}", opt, tensors) for name, opt in optimizers.items()}
    for k, v in rng.items():
        tensors[f"rng.{k}"] = v.detach().cpu().contiguous()
    meta = {"format": FORMAT, "step": step, "optimizers": optim_meta, "scheduler": scheduler,
            "sampler": sampler, "rng": sorted(rng), "extra": extra or {}}
    with atomic_dir(final) as tmp:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    atomic_write_text(root / "LATEST", final.name + "\n")
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_state(run_dir: Path) -> Path | None:
    """The newest complete state directory of a run, or None if the run has none."""
    pointer = Path(run_dir) / "state" / "LATEST"
    if not pointer.exists():
        return None
    d = pointer.parent / pointer.read_text().strip()
    if not (d / "state.json").exists() or not (d / "tensors.safetensors").exists():
        raise StateError(f"{pointer} names {d.name}, which is incomplete; delete {pointer.parent} to restart the phase")
    return d


def load_state(state_dir: Path) -> dict:
    """-> {step, model_state, optimizers{name: state_dict}, scheduler, sampler, rng{name: tensor}, extra}."""
    state_dir = Path(state_dir)
    try:
        meta = json.loads((state_dir / "state.json").read_text())
        tensors = load_file(str(state_dir / "tensors.safetensors"))
    except Exception as e:  # noqa: BLE001 - re-raised with the path and the fix
        raise StateError(f"cannot read training state {state_dir}: {e}; delete it to resume from an older one") from e
    if meta.get("format") != FORMAT:
        raise StateError(f"{state_dir}/state.json has format {meta.get('format')!r}, expected {FORMAT!r}")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return {"step": int(meta["step"]), "model_state": model_state,
            "optimizers": {n: _unflatten_optimizer(m, tensors) for n, m in meta["optimizers"].items()},
            "scheduler": meta["scheduler"], "sampler": meta["sampler"],
            "rng": {k: tensors[f"rng.{k}"] for k in meta["rng"]}, "extra": meta.get("extra", {})}
