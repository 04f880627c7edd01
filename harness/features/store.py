"""FeatureStore: every layer of chosen keys of an s3prl upstream, extracted once, on disk.

Layout of a store directory ``ROOT``::

    ROOT/index.json                 identity of the upstream + per-key file index (written atomically)
    ROOT/<key>/shard-00000.npy      float16 array (L, F, D): L layers, F frames of the shard's files
                                    (float32 for stores made with dtype="float32" or before float16)
                                    concatenated, D dims (one array per key per shard, memory-mapped)

A store holds ONE upstream identity (name, checkpoint, model config; a checkpoint is its weights
hash and architecture, wherever the directory lies); asking an existing store to extract a
different upstream is an error naming the store and the fix (another root). Keys can be
added later: files missing for a requested key are extracted and only the missing keys stored.

Extraction is length-batched (files sorted by duration, batches of at most ``batch_seconds`` of
padded audio), sharded (a shard is flushed every ``shard_seconds`` of audio) and resumable: a shard's
arrays are written to a temporary name and renamed, then ``index.json`` is rewritten atomically, so
an interrupted run loses at most the shard in progress and the next ``extract`` continues.

Frame counts are exact: the store holds, for every file, what a forward on that file alone gives.
s3prl returns padded (B, T, D) tensors without lengths, so a batch of several files is cut back with
the model's own output-length arithmetic: DUET experts return their per-stream valid lengths
(``DuetUpstreamExpert.forward_with_lengths``: the models' ``content_len`` / ``other_len``). Every
other upstream (s3prl's fbank, mfcc, hubert, ...) runs one file per forward, whatever
``batch_seconds`` says (s3prl's kaldi front-ends extract file by file anyway).

Example::

    store = FeatureStore("cache/features/fbank")
    store.extract("fbank", None, ["hidden_states"], {"utt1": "a.wav"})
    x = store.get("hidden_states", 0, "utt1")      # (T, D) np.memmap slice
    store.rate("hidden_states")                    # 100.0 frames per second
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from upstream.facts import HASH_LEN, SAMPLE_RATE, atomic_save_npy, atomic_write_json, weights_hash

FORMAT = "duet-features/1"


class FeatureStoreError(RuntimeError):
    """Bad store directory, missing features or a wrong request; the message names the fix."""


# ----------------------------------------------------------------------------------------------
# upstream loading (s3prl built-ins and DUET's own names)

# s3prl built-ins that live in one light hubconf (importing all of s3prl.hub pulls transformers & co.)
_LIGHT_HUBCONFS = {n: "s3prl.upstream.baseline.hubconf"
                   for n in ("fbank", "fbank_no_cmvn", "mfcc", "mel", "linear", "spectrogram")}


def load_upstream(name: str, ckpt: str | None = None, model_config: str | None = None):
    """Build the s3prl upstream ``name`` exactly as ``run_downstream.py -u name -k ckpt -g cfg``.

    DUET names come from ``upstream.hub.UPSTREAMS`` and s3prl's baseline front-ends from their
    hubconf: the very factories ``s3prl.hub`` exposes, without importing all of it (seconds
    faster); anything else goes through ``s3prl.hub`` with DUET's names registered.
    """
    import importlib

    from harness.s3prl import compat
    from upstream import hub as duet_hub

    compat.install()
    if name in duet_hub.UPSTREAMS:
        factory = duet_hub.UPSTREAMS[name]
    elif name in _LIGHT_HUBCONFS:
        factory = getattr(importlib.import_module(_LIGHT_HUBCONFS[name]), name)
    else:
        import s3prl.hub as hub

        from harness.s3prl.hub import register

        register(hub)
        factory = getattr(hub, name, None)
        if factory is None or not callable(factory):
            import difflib

            names = [n for n in dir(hub) if not n.startswith("_") and callable(getattr(hub, n))]
            close = difflib.get_close_matches(name, names, n=5)
            raise FeatureStoreError(f"unknown upstream '{name}' on s3prl.hub"
                                    + (f"; did you mean: {', '.join(close)}?" if close else ""))
    kwargs = {}
    if ckpt is not None:
        kwargs["ckpt"] = str(ckpt)
    if model_config is not None:
        kwargs["model_config"] = str(model_config)
    return factory(**kwargs)


def upstream_identity(name: str, ckpt: str | None, model_config: str | None) -> dict:
    """What makes two extractions the same: name, checkpoint (weights hash + its config.json's model
    and config; the path is recorded but not compared), model config text."""
    ident = {"upstream": name, "ckpt": None, "ckpt_hash": None, "ckpt_config": None, "model_config": None}
    if ckpt is not None:
        p = Path(ckpt)
        ident["ckpt"] = str(p.resolve())
        w = p / "model.safetensors" if p.is_dir() else p
        if w.is_file():
            ident["ckpt_hash"] = weights_hash(w)
        cfg = p / "config.json" if p.is_dir() else None
        if cfg is not None and cfg.is_file():
            try:
                c = json.loads(cfg.read_text())
                ident["ckpt_config"] = json.dumps({"model": c.get("model"), "config": c.get("config")}, sort_keys=True)
            except json.JSONDecodeError:
                ident["ckpt_config"] = cfg.read_text()
    if model_config is not None:
        p = Path(model_config)
        ident["model_config"] = p.read_text() if p.is_file() else str(model_config)
    return ident


def store_name(upstream: str, ckpt_hash: str | None = None, corpus_id: str | None = None,
               model_config: str | os.PathLike | None = None) -> str:
    """The one naming rule for store directories: `<upstream>[-<ckpt hash>][-g<model config hash>][-<corpus id>]`."""
    parts = [upstream]
    if ckpt_hash:
        parts.append(ckpt_hash)
    if model_config:
        p = Path(model_config)
        text = p.read_bytes() if p.is_file() else str(model_config).encode()
        parts.append("g" + hashlib.sha256(text).hexdigest()[:HASH_LEN])
    if corpus_id:
        parts.append(corpus_id)
    return "-".join(parts)


def same_upstream(a: dict, b: dict) -> bool:
    """Two identities extract the same features: same upstream and model config, and the same
    checkpoint — by weights hash and architecture when both have one (a copied or moved checkpoint
    directory is the same checkpoint), else by path."""
    if a.get("upstream") != b.get("upstream") or a.get("model_config") != b.get("model_config"):
        return False
    if a.get("ckpt_hash") and b.get("ckpt_hash"):
        ca, cb = a.get("ckpt_config"), b.get("ckpt_config")      # None: a store written before it was recorded
        return a["ckpt_hash"] == b["ckpt_hash"] and (ca is None or cb is None or ca == cb)
    return a.get("ckpt") == b.get("ckpt") and a.get("ckpt_hash") == b.get("ckpt_hash")


# ----------------------------------------------------------------------------------------------

@dataclass
class _Entry:
    shard: int
    offset: int
    length: int


def normalize_wav_paths(wav_paths: Mapping[str, str | Path] | Iterable[str | Path]) -> dict[str, Path]:
    """{file_id: path}; a plain list uses each file's stem as its id (duplicates are an error)."""
    if isinstance(wav_paths, Mapping):
        return {str(k): Path(v) for k, v in wav_paths.items()}
    out: dict[str, Path] = {}
    for p in wav_paths:
        p = Path(p)
        if p.stem in out and out[p.stem] != p:
            raise FeatureStoreError(f"two audio files share the id '{p.stem}': {out[p.stem]} and {p}; "
                                    "pass a {file_id: path} mapping instead of a list")
        out[p.stem] = p
    return out


DTYPES = ("float16", "float32")
DEFAULT_MAX_GB = 50.0             # a store estimated larger is refused unless the caller raises the limit


def estimate_bytes(probe: dict[str, tuple[int, int, float]], seconds: float, dtype: str) -> int:
    """Disk a store needs: ``probe`` key -> (layers, dims, frames per second), for ``seconds`` of audio."""
    size = np.dtype(dtype).itemsize
    return int(sum(L * D * fps * seconds * size for L, D, fps in probe.values()))


class FeatureStore:
    """Every layer of chosen keys of one s3prl upstream, memory-mapped; see the module docstring.

    ``dtype`` (a new store only; an existing one keeps what its index says): float16 by default,
    half the disk of float32; readers always get float32 arrays (tests/test_features.py checks that a
    downstream metric does not move)."""

    def __init__(self, root: str | Path, dtype: str = "float16"):
        if dtype not in DTYPES:
            raise FeatureStoreError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        self.new_dtype = dtype
        self.root = Path(root)
        self._index_path = self.root / "index.json"
        self._index: dict | None = None
        self._mmaps: dict[tuple[str, int], np.ndarray] = {}
        if self._index_path.exists():
            self._load_index()

    # -- index ----------------------------------------------------------------------------------
    def _load_index(self) -> None:
        try:
            idx = json.loads(self._index_path.read_text())
        except (json.JSONDecodeError, OSError) as e:
            raise FeatureStoreError(f"{self._index_path} is unreadable ({e}); delete {self.root} "
                                    "and extract again") from e
        if idx.get("format") != FORMAT:
            raise FeatureStoreError(f"{self._index_path}: format {idx.get('format')!r} is not {FORMAT!r}; "
                                    f"delete {self.root} and extract again")
        self._index = idx

    @property
    def identity(self) -> dict | None:
        return None if self._index is None else self._index["identity"]

    def _require(self) -> dict:
        if self._index is None:
            raise FeatureStoreError(f"no features at {self.root} (no index.json): run extract first")
        return self._index

    def keys(self) -> list[str]:
        return list(self._require()["keys"])

    def _key(self, key: str) -> dict:
        keys = self._require()["keys"]
        if key not in keys:
            raise FeatureStoreError(f"feature key '{key}' is not in the store {self.root} "
                                    f"(it holds: {', '.join(keys) or 'nothing'})")
        return keys[key]

    def file_ids(self, key: str) -> list[str]:
        return list(self._key(key)["files"])

    def has(self, key: str, file_id: str) -> bool:
        return self._index is not None and key in self._index["keys"] and file_id in self._index["keys"][key]["files"]

    def num_layers(self, key: str) -> int:
        return int(self._key(key)["num_layers"])

    def dim(self, key: str) -> int:
        return int(self._key(key)["dim"])

    def downsample_rate(self, key: str) -> int:
        """Samples per frame (s3prl's ``get_downsample_rates``)."""
        return int(self._key(key)["downsample_rate"])

    def rate(self, key: str) -> float:
        """Frames per second."""
        return SAMPLE_RATE / self.downsample_rate(key)

    def num_frames(self, key: str, file_id: str) -> int:
        return int(self._entry(key, file_id).length)

    def _entry(self, key: str, file_id: str) -> _Entry:
        files = self._key(key)["files"]
        if file_id not in files:
            raise FeatureStoreError(f"no '{key}' features for file '{file_id}' in {self.root}: "
                                    "extract it (FeatureStore.extract / harness abx re-runs extraction)")
        return _Entry(*files[file_id])

    def check_layer(self, key: str, layer: int) -> None:
        n = self.num_layers(key)
        if not 0 <= layer < n:
            raise FeatureStoreError(f"layer {layer} is out of range for key '{key}': valid layers are 0-{n - 1}")

    def _shard(self, key: str, shard: int) -> np.ndarray:
        k = (key, shard)
        if k not in self._mmaps:
            path = self.root / key / f"shard-{shard:05d}.npy"
            if not path.exists():
                raise FeatureStoreError(f"{path} is missing although {self._index_path} lists it; "
                                        f"delete {self.root} and extract again")
            self._mmaps[k] = np.load(path, mmap_mode="r")
        return self._mmaps[k]

    @property
    def dtype(self) -> str:
        """How the shards are stored (float16 or float32); reads are float32 either way."""
        return self._index.get("dtype", "float32") if self._index is not None else self.new_dtype

    @staticmethod
    def _as_float32(a: np.ndarray) -> np.ndarray:
        return a if a.dtype == np.float32 else a.astype(np.float32)

    def get(self, key: str, layer: int, file_id: str) -> np.ndarray:
        """Features of one layer of one file: (T, D) float32 (a read-only memory-mapped view of a
        float32 store; a float32 copy of a float16 one)."""
        self.check_layer(key, layer)
        e = self._entry(key, file_id)
        return self._as_float32(self._shard(key, e.shard)[layer, e.offset:e.offset + e.length])

    def get_all_layers(self, key: str, file_id: str) -> np.ndarray:
        """(L, T, D) float32 for one file."""
        e = self._entry(key, file_id)
        return self._as_float32(self._shard(key, e.shard)[:, e.offset:e.offset + e.length])

    def missing(self, key: str, file_ids: Iterable[str]) -> list[str]:
        files = self._index["keys"].get(key, {}).get("files", {}) if self._index else {}
        return [f for f in file_ids if f not in files]

    # -- extraction -----------------------------------------------------------------------------
    def extract(self, upstream_name: str, ckpt: str | None, keys: Iterable[str],
                wav_paths: Mapping[str, str | Path] | Iterable[str | Path], model_config: str | None = None,
                batch_seconds: float = 60.0, shard_seconds: float = 1800.0, device: str | None = None,
                upstream=None, progress: bool = True, max_gb: float | None = DEFAULT_MAX_GB) -> "FeatureStore":
        """Run the upstream once over every file not yet stored and store every layer of ``keys``.

        ``upstream``: an already-built s3prl upstream module (else built by :func:`load_upstream`).
        ``max_gb``: refuse (before extracting anything) when the estimated size of what is still to
        store exceeds it; None: no limit. Returns self. Re-running with the same arguments does no work.
        """
        import soundfile as sf
        import torch
        from tqdm import tqdm

        keys = list(keys)
        files = normalize_wav_paths(wav_paths)
        ident = upstream_identity(upstream_name, ckpt, model_config)
        if self._index is not None and not same_upstream(self._index["identity"], ident):
            raise FeatureStoreError(
                f"the store {self.root} holds features of {self._index['identity']['upstream']} "
                f"(ckpt {self._index['identity']['ckpt']}), not of {upstream_name} (ckpt {ckpt}) with this "
                "model config: use another directory per upstream/checkpoint, or delete it")
        todo = [f for f in files if any(f not in self._key_files(k) for k in keys)]
        if not todo:
            return self
        missing_audio = [str(files[f]) for f in todo if not files[f].is_file()]
        if missing_audio:
            raise FeatureStoreError(f"{len(missing_audio)} audio file(s) not found, e.g. {missing_audio[:3]}")
        self.root.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            self._index = {"format": FORMAT, "identity": ident, "keys": {}, "num_shards": 0, "dtype": self.new_dtype}
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if upstream is None:
            upstream = load_upstream(upstream_name, ckpt, model_config)
        upstream = upstream.to(device).eval()

        from upstream.expert_base import DuetUpstreamExpert

        with_lengths = isinstance(upstream, DuetUpstreamExpert)
        lengths = {f: sf.info(str(files[f])).frames for f in todo}
        self._check_size(upstream, upstream_name, keys, sum(lengths.values()) / SAMPLE_RATE, max_gb, device)
        todo.sort(key=lambda f: lengths[f])
        batches: list[list[str]] = []
        cur: list[str] = []
        for f in todo:
            if cur and (not with_lengths or (len(cur) + 1) * lengths[f] > batch_seconds * SAMPLE_RATE):
                batches.append(cur)
                cur = []
            cur.append(f)
        if cur:
            batches.append(cur)

        pending: dict[str, dict[str, np.ndarray]] = {}   # file -> key -> (L, T, D)
        pending_samples = 0
        bar = tqdm(total=sum(lengths.values()) / SAMPLE_RATE, unit="s", desc=f"features {upstream_name}",
                   disable=not progress, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
        with torch.no_grad():
            for batch in batches:
                wavs = []
                for f in batch:
                    w, sr = sf.read(str(files[f]), dtype="float32", always_2d=True)
                    if sr != SAMPLE_RATE or w.shape[1] != 1:
                        raise FeatureStoreError(
                            f"{files[f]}: {sr} Hz, {w.shape[1]} channel(s); expected {SAMPLE_RATE} Hz mono: "
                            f"sox in.wav -r {SAMPLE_RATE} -c 1 out.wav (or check it with harness.preflight)")
                    wavs.append(torch.from_numpy(w[:, 0]).to(device))
                if with_lengths:
                    out, valid = upstream.forward_with_lengths(wavs, names=[str(files[f]) for f in batch])
                else:
                    out, valid = upstream(wavs), {}
                for key in keys:
                    if key not in out:
                        raise FeatureStoreError(f"upstream {upstream_name} has no feature key '{key}' "
                                                f"(it returns: {', '.join(k for k in out if not k.startswith('_'))})")
                    val = out[key]
                    layers = list(val) if isinstance(val, (list, tuple)) else [val]
                    stacked = torch.stack([h.float() for h in layers], 0)   # (L, B, T, D)
                    if stacked.dim() != 4:
                        raise FeatureStoreError(f"key '{key}' of {upstream_name} is not a list of (B, T, D)")
                    t_pad = stacked.shape[2]
                    arr = stacked.cpu().numpy()
                    for b, f in enumerate(batch):
                        if f in self._key_files(key):
                            continue
                        n = int(valid[key][b]) if key in valid else t_pad      # one file per forward: all of it
                        if not 0 <= n <= t_pad:
                            raise FeatureStoreError(f"{upstream_name} key '{key}': {n} valid frames of {t_pad} "
                                                    f"for {files[f]}")
                        pending.setdefault(f, {})[key] = np.ascontiguousarray(arr[:, b, :n])
                    self._note_key(key, upstream, len(layers), stacked.shape[3])
                pending_samples += sum(len(w) for w in wavs)
                bar.update(sum(len(w) for w in wavs) / SAMPLE_RATE)
                if pending_samples >= shard_seconds * SAMPLE_RATE:
                    self._flush(pending)
                    pending, pending_samples = {}, 0
        if pending:
            self._flush(pending)
        bar.close()
        return self

    def _check_size(self, upstream, name: str, keys: list[str], seconds: float, max_gb: float | None,
                    device: str) -> None:
        """Estimate the disk the new features need from one 1-s forward; refuse above ``max_gb``."""
        import torch

        with torch.no_grad():
            out = upstream([torch.zeros(SAMPLE_RATE, device=device)])
        probe = {}
        for k in keys:
            layers = out.get(k)
            if layers is None:
                continue                       # reported precisely by the extraction loop
            layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
            probe[k] = (len(layers), int(layers[0].shape[-1]), SAMPLE_RATE / int(upstream.get_downsample_rates(k)))
        need = estimate_bytes(probe, seconds, self.dtype)
        self.estimated_gb = need / 1e9
        if max_gb is not None and need > max_gb * 1e9:
            raise FeatureStoreError(
                f"caching every layer of {', '.join(keys)} of {name} for {seconds / 3600:.1f} h of audio needs about "
                f"{need / 1e9:.1f} GB ({self.dtype}) in {self.root}, above the {max_gb:g} GB limit: raise it with "
                f"--cache-max-gb {int(need / 1e9) + 1}, choose fewer --features / a smaller corpus, or run without "
                f"the cache (--no-cache)")

    def _key_files(self, key: str) -> dict:
        if self._index is None or key not in self._index["keys"]:
            return {}
        return self._index["keys"][key]["files"]

    def _note_key(self, key: str, upstream, num_layers: int, dim: int) -> None:
        keys = self._index["keys"]
        if key not in keys:
            keys[key] = {"num_layers": num_layers, "dim": dim,
                         "downsample_rate": int(upstream.get_downsample_rates(key)), "files": {}}
        elif (keys[key]["num_layers"], keys[key]["dim"]) != (num_layers, dim):
            raise FeatureStoreError(f"key '{key}': {num_layers} layers x {dim} dims now, but the store {self.root} "
                                    f"has {keys[key]['num_layers']} x {keys[key]['dim']}; delete it and extract again")

    def _flush(self, pending: dict[str, dict[str, np.ndarray]]) -> None:
        shard = self._index["num_shards"]
        by_key: dict[str, list[tuple[str, np.ndarray]]] = {}
        for f, per_key in pending.items():
            for key, arr in per_key.items():
                by_key.setdefault(key, []).append((f, arr))
        for key, items in by_key.items():
            (self.root / key).mkdir(parents=True, exist_ok=True)
            bad = [f for f, a in items if not np.isfinite(a).all()]
            if bad:
                raise FeatureStoreError(f"key '{key}' is NaN/Inf for {len(bad)} file(s): {bad[:5]}; check that audio "
                                        f"(harness.preflight) and the model; nothing of this shard was stored")
            stored = np.concatenate([a for _, a in items], axis=1).astype(self.dtype, copy=False)
            if not np.isfinite(stored).all():
                raise FeatureStoreError(f"key '{key}' has values beyond {self.dtype}'s range (largest |x| "
                                        f"{max(float(np.abs(a).max()) for _, a in items):.3g}); make the store with "
                                        f"dtype='float32' (harness run --cache-dtype float32)")
            atomic_save_npy(self.root / key / f"shard-{shard:05d}.npy", stored)
        for key, items in by_key.items():
            off = 0
            for f, a in items:
                self._index["keys"][key]["files"][f] = [shard, off, int(a.shape[1])]
                off += int(a.shape[1])
        self._index["num_shards"] = shard + 1
        atomic_write_json(self._index_path, self._index, sort_keys=False)
