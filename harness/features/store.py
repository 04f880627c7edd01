"""FeatureStore: chosen layers of chosen keys of an s3prl upstream, extracted once, on disk.

Layout of a store directory ``ROOT``::

    ROOT/index.json                 identity of the upstream + per-key layer groups and file index
                                    (written atomically)
    ROOT/<key>/shard-00000.npy      float16 array (L, F, D): the L layers of the key's first layer
                                    group, F frames of the shard's files concatenated, D dims (one
                                    array per key per group per shard, memory-mapped; float32 for
                                    stores made with dtype="float32" or before float16)
    ROOT/<key>/shard-00007-g1.npy   the same for the key's layer group 1 (added by a later extraction)

Layers. A key's layers are numbered as the upstream returns them (``num_layers(key)`` of them, the
positions 0..L-1 of its list); ``model_layers(key)`` says which model layer each position is (for a
DUET expert the stream's layer index that ``-g layers:`` uses, e.g. content layer 6). A store need not
hold every layer: ``extract(..., layers={"content": "6-11"})`` stores only those, and a later call that
asks for more adds them as a new *layer group* (extracting only the new layers, for every file asked
for), so re-running with the same needs does no work. Each group holds its layers for every file it
lists; ``index.json`` records, per key, each group's layer positions and its files. Readers
(``get``, ``get_layers``, ``layer_positions``) refuse a layer that is not stored with an error that
names it and the fix (extract it: ``harness run`` with that layer in ``--layers``).

A store holds ONE upstream identity (name, checkpoint, model config; a checkpoint is its weights
hash and architecture, wherever the directory lies); asking an existing store to extract a
different upstream is an error naming the store and the fix (another root). Keys can be
added later: files missing for a requested key are extracted and only the missing keys stored.

Extraction runs one file per forward by default, so a file's stored features are what a forward on
that file alone gives, whichever other files this or an earlier call extracted: a store built in one
go, resumed, or grown task by task holds the same bytes (``harness/features/planning.py`` measures why
batching breaks that). ``batch_seconds > 0`` length-batches instead (files sorted by duration, then
by id, at most ``batch_seconds`` of padded audio a forward: ``length_batches``), faster on a GPU;
the index lists every ``batch_seconds`` a store was extracted with (``"batch_seconds"``). Extraction
is sharded (a shard is flushed every ``shard_seconds`` of audio) and resumable: a shard's arrays are
written to a temporary name and renamed, then ``index.json`` is rewritten atomically, so an
interrupted run loses at most the shard in progress and the next ``extract`` continues.

Frame counts are exact also when batched: s3prl returns padded (B, T, D) tensors without lengths,
so a batch of several files is cut back with the model's own output-length arithmetic: DUET experts return their per-stream valid lengths
(``DuetUpstreamExpert.forward_with_lengths``: the models' ``content_len`` / ``other_len``). Every
other upstream (s3prl's fbank, mfcc, hubert, ...) runs one file per forward, whatever
``batch_seconds`` says (s3prl's kaldi front-ends extract file by file anyway).

Example::

    store = FeatureStore("cache/features/fbank")
    store.extract("fbank", None, ["hidden_states"], {"utt1": "a.wav"})
    x = store.get("hidden_states", 0, "utt1")      # (T, D) np.memmap slice
    store.rate("hidden_states")                    # 100.0 frames per second
    store.extract("jooci", ck, ["content"], files, layers={"content": "6-11"})   # only 6 layers on disk
    store.layer_positions("content", "6-7")        # [6, 7]; a layer not stored raises FeatureStoreError
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from harness.features.loading import (FeatureStoreError, load_upstream,  # noqa: F401  (re-exported)
                                      same_upstream, upstream_identity)
from harness.features.planning import (estimate_bytes, layer_span, length_batches,  # noqa: F401  (re-exported)
                                       normalize_wav_paths)
from upstream.facts import (HASH_LEN, SAMPLE_RATE, LayerRangeError, atomic_save_npy, atomic_write_json, parse_layers,
                            progress_bar)

FORMAT = "duet-features/2"
# a /1 store holds every layer of each key in one group: read as such, rewritten as /2 by its next extraction
OLD_FORMATS = ("duet-features/1",)


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


# ----------------------------------------------------------------------------------------------

@dataclass
class _Entry:
    shard: int
    offset: int
    length: int




DTYPES = ("float16", "float32")
DEFAULT_MAX_GB = 50.0             # a store estimated larger is refused unless the caller raises the limit
EXTEND_FIX = "rerun `harness run` with that layer in --layers (e.g. --layers {key}={layer}), which extends the store"


def _upgrade_index(idx: dict) -> dict:
    """A ``duet-features/1`` index (one file table per key, every layer) as a /2 one: one group."""
    for info in idx["keys"].values():
        if "groups" not in info:
            n = int(info["num_layers"])
            info["groups"] = [{"layers": list(range(n)), "files": info.pop("files")}]
            info.setdefault("model_layers", list(range(n)))
            info.setdefault("stream_layers", n)
    idx["format"] = FORMAT
    return idx


class FeatureStore:
    """Chosen layers of chosen keys of one s3prl upstream, memory-mapped; see the module docstring.

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
        self._mmaps: dict[tuple[str, int, int], np.ndarray] = {}
        if self._index_path.exists():
            self._load_index()

    # -- index ----------------------------------------------------------------------------------
    def _load_index(self) -> None:
        try:
            idx = json.loads(self._index_path.read_text())
        except (json.JSONDecodeError, OSError) as e:
            raise FeatureStoreError(f"{self._index_path} is unreadable ({e}); delete {self.root} "
                                    "and extract again") from e
        if idx.get("format") in OLD_FORMATS:
            idx = _upgrade_index(idx)
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

    def _complete_files(self, key: str) -> set[str]:
        """Files that hold every stored layer of ``key`` (every group lists them)."""
        if self._index is None or key not in self._index["keys"]:
            return set()
        groups = self._index["keys"][key]["groups"]
        if not groups:
            return set()
        return set(groups[0]["files"]).intersection(*(g["files"] for g in groups[1:]))

    def file_ids(self, key: str) -> list[str]:
        """Files holding every stored layer of ``key``."""
        done = self._complete_files(key)
        groups = self._key(key)["groups"]
        return [f for f in (groups[0]["files"] if groups else []) if f in done]

    def has(self, key: str, file_id: str) -> bool:
        return file_id in self._complete_files(key)

    def num_layers(self, key: str) -> int:
        """Layers the key has (stored or not): positions 0..num_layers-1 of the upstream's list."""
        return int(self._key(key)["num_layers"])

    def stored_layers(self, key: str) -> list[int]:
        """Positions of the key's layers on disk (sorted)."""
        return sorted(i for g in self._key(key)["groups"] for i in g["layers"])

    def model_layers(self, key: str) -> list[int]:
        """The model layer each position is (a DUET stream's layer index, as ``-g layers:`` counts)."""
        return [int(i) for i in self._key(key)["model_layers"]]

    def stream(self, key: str) -> str | None:
        """The DUET stream the key's layers are ("content", "other", "content+other", ...; None: unknown)."""
        return self._key(key).get("stream")

    def dim(self, key: str) -> int:
        return int(self._key(key)["dim"])

    def downsample_rate(self, key: str) -> int:
        """Samples per frame (s3prl's ``get_downsample_rates``)."""
        return int(self._key(key)["downsample_rate"])

    def rate(self, key: str) -> float:
        """Frames per second."""
        return SAMPLE_RATE / self.downsample_rate(key)

    def num_frames(self, key: str, file_id: str) -> int:
        for g in self._key(key)["groups"]:
            if file_id in g["files"]:
                return int(g["files"][file_id][2])
        return int(self._entry(key, 0, file_id).length)           # raises, naming the file

    def _entry(self, key: str, group: int, file_id: str) -> _Entry:
        groups = self._key(key)["groups"]
        files = groups[group]["files"] if group < len(groups) else {}
        if file_id not in files:
            raise FeatureStoreError(f"no '{key}' features for file '{file_id}' in {self.root}: "
                                    "extract it (FeatureStore.extract / harness abx re-runs extraction)")
        return _Entry(*files[file_id])

    def _not_stored(self, key: str, positions: list[int]) -> FeatureStoreError:
        model = self.model_layers(key)
        names = [model[p] for p in positions]
        return FeatureStoreError(
            f"layer{'s' if len(names) > 1 else ''} {layer_span(names)} of '{key}' "
            f"{'are' if len(names) > 1 else 'is'} not stored in {self.root} (it holds layers "
            f"{layer_span(model[p] for p in self.stored_layers(key))} of '{key}'); "
            + EXTEND_FIX.format(key=key, layer=layer_span(names)))

    def _locate(self, key: str, layer: int) -> tuple[int, int]:
        """(group, row in that group's arrays) of a stored layer position."""
        self.check_layer(key, layer)
        for gi, g in enumerate(self._key(key)["groups"]):
            if layer in g["layers"]:
                return gi, g["layers"].index(layer)
        raise self._not_stored(key, [layer])

    def check_layer(self, key: str, layer: int) -> None:
        """``layer`` is a valid position of ``key`` and stored."""
        n = self.num_layers(key)
        if not 0 <= layer < n:
            raise FeatureStoreError(f"layer {layer} is out of range for key '{key}': valid layers are 0-{n - 1}")
        if layer not in self.stored_layers(key):
            raise self._not_stored(key, [layer])

    def layer_positions(self, key: str, spec=None) -> list[int]:
        """Positions of the model layers ``spec`` names (``-g layers:`` numbering: "6-11", [6, 7]; None
        or "all": every layer of the key), in that order, each checked to be stored: a layer the
        store lacks raises FeatureStoreError naming it and the fix (never another layer instead)."""
        self._key(key)
        pos = self._positions(key, spec)
        stored = set(self.stored_layers(key))
        missing = [p for p in pos if p not in stored]
        if missing:
            raise self._not_stored(key, missing)
        return pos

    def _shard_path(self, key: str, group: int, shard: int) -> Path:
        return self.root / key / (f"shard-{shard:05d}.npy" if group == 0 else f"shard-{shard:05d}-g{group}.npy")

    def _shard(self, key: str, shard: int, group: int = 0) -> np.ndarray:
        k = (key, group, shard)
        if k not in self._mmaps:
            path = self._shard_path(key, group, shard)
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
        """Features of one layer (a position, see the module docstring) of one file: (T, D) float32 (a
        read-only memory-mapped view of a float32 store; a float32 copy of a float16 one)."""
        group, row = self._locate(key, layer)
        e = self._entry(key, group, file_id)
        return self._as_float32(self._shard(key, e.shard, group)[row, e.offset:e.offset + e.length])

    def get_layers(self, key: str, layers: Iterable[int], file_id: str) -> np.ndarray:
        """(len(layers), T, D) float32: the given positions of one file, in that order."""
        layers = list(layers)
        if not layers:
            raise FeatureStoreError(f"get_layers('{key}', [], '{file_id}'): ask for at least one layer")
        return np.stack([self.get(key, i, file_id) for i in layers])

    def get_all_layers(self, key: str, file_id: str) -> np.ndarray:
        """(L, T, D) float32 for one file: every stored layer (``stored_layers(key)``, in that order)."""
        return self.get_layers(key, self.stored_layers(key), file_id)

    def missing(self, key: str, file_ids: Iterable[str]) -> list[str]:
        """Files that lack some stored layer of ``key`` (or the key)."""
        done = self._complete_files(key)
        return [f for f in file_ids if f not in done]

    # -- extraction -----------------------------------------------------------------------------
    def extract(self, upstream_name: str, ckpt: str | None, keys: Iterable[str],
                wav_paths: Mapping[str, str | Path] | Iterable[str | Path], model_config: str | None = None,
                batch_seconds: float = 0.0, shard_seconds: float = 1800.0, device: str | None = None,
                upstream=None, progress: bool = True, max_gb: float | None = DEFAULT_MAX_GB,
                layers: Mapping[str, object] | None = None) -> "FeatureStore":
        """Run the upstream once over every file not yet stored and store the wanted layers of ``keys``.

        ``layers``: key -> the model layers to store, as ``-g layers:`` names them ("6-11", [6, 7], a
        list of such subsets for their union, or "all"); a key not named: every layer. Layers already
        stored are kept; layers not yet stored become a new layer group, extracted for every file of
        ``wav_paths``; an existing group that holds some wanted layer is completed for files it lacks.
        ``upstream``: an already-built s3prl upstream module (else built by :func:`load_upstream`).
        ``max_gb``: refuse (before extracting anything) when the estimated size of what is still to
        store exceeds it; None: no limit. Returns self. Re-running with the same arguments does no work.
        """
        import soundfile as sf
        import torch

        keys = list(keys)
        files = normalize_wav_paths(wav_paths)
        wanted = {k: (layers or {}).get(k, "all") for k in keys}
        unknown = sorted(set(layers or {}) - set(keys))
        if unknown:
            raise FeatureStoreError(f"layers= names key(s) {', '.join(unknown)} that are not among the keys "
                                    f"to extract ({', '.join(keys)})")
        ident = upstream_identity(upstream_name, ckpt, model_config)
        if self._index is not None and not same_upstream(self._index["identity"], ident):
            raise FeatureStoreError(
                f"the store {self.root} holds features of {self._index['identity']['upstream']} "
                f"(ckpt {self._index['identity']['ckpt']}), not of {upstream_name} (ckpt {ckpt}) with this "
                "model config: use another directory per upstream/checkpoint, or delete it")
        if self._index is not None and all(k in self._index["keys"] for k in keys):
            new_groups, todo = self._plan(wanted, files)
            if not any(todo.values()):
                return self
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if upstream is None:
            upstream = load_upstream(upstream_name, ckpt, model_config)
        upstream = upstream.to(device).eval()
        if self._index is None:
            self._index = {"format": FORMAT, "identity": ident, "keys": {}, "num_shards": 0, "dtype": self.new_dtype}
        probe = self._probe(upstream, upstream_name, keys, device)
        new_groups, todo = self._plan(wanted, files)
        need = {f for per_group in todo.values() for fs in per_group.values() for f in fs}
        if not need:
            return self
        missing_audio = [str(files[f]) for f in need if not files[f].is_file()]
        if missing_audio:
            raise FeatureStoreError(f"{len(missing_audio)} audio file(s) not found, e.g. {missing_audio[:3]}")

        from upstream.expert_base import DuetUpstreamExpert

        with_lengths = isinstance(upstream, DuetUpstreamExpert)
        lengths = {f: sf.info(str(files[f])).frames for f in need}
        self._check_size(upstream_name, probe, new_groups, todo, lengths, max_gb)
        self.root.mkdir(parents=True, exist_ok=True)
        for k, pos in new_groups.items():
            if pos:
                self._index["keys"][k]["groups"].append({"layers": pos, "files": {}})
        group_layers = {(k, gi): self._index["keys"][k]["groups"][gi]["layers"] for k in todo for gi in todo[k]}
        todo_sets = {(k, gi): set(fs) for k in todo for gi, fs in todo[k].items()}
        batches = length_batches(lengths, batch_seconds * SAMPLE_RATE if with_lengths else 0)
        used = self._index.setdefault("batch_seconds", [])
        if float(batch_seconds if with_lengths else 0) not in used:
            used.append(float(batch_seconds if with_lengths else 0))

        pending: dict[str, dict[tuple[str, int], np.ndarray]] = {}   # file -> (key, group) -> (L_group, T, D)
        pending_samples = 0
        bar = progress_bar(total=sum(lengths.values()) / SAMPLE_RATE, enabled=progress, unit="s",
                           desc=f"features {upstream_name}", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
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
                    stacked = self._stack(out, key, upstream_name)        # (L, B, T, D)
                    self._note_key(key, upstream, stacked.shape[0], stacked.shape[3])
                    t_pad = stacked.shape[2]
                    arr = stacked.cpu().numpy()
                    for gi in todo.get(key, {}):
                        rows = group_layers[(key, gi)]
                        for b, f in enumerate(batch):
                            if f not in todo_sets[(key, gi)]:
                                continue
                            n = int(valid[key][b]) if key in valid else t_pad      # one file per forward: all of it
                            if not 0 <= n <= t_pad:
                                raise FeatureStoreError(f"{upstream_name} key '{key}': {n} valid frames of {t_pad} "
                                                        f"for {files[f]}")
                            pending.setdefault(f, {})[(key, gi)] = np.ascontiguousarray(arr[rows, b, :n])
                pending_samples += sum(len(w) for w in wavs)
                bar.update(sum(len(w) for w in wavs) / SAMPLE_RATE)
                if pending_samples >= shard_seconds * SAMPLE_RATE:
                    self._flush(pending)
                    pending, pending_samples = {}, 0
        if pending:
            self._flush(pending)
        bar.close()
        return self

    @staticmethod
    def _stack(out: dict, key: str, name: str):
        import torch

        if key not in out:
            raise FeatureStoreError(f"upstream {name} has no feature key '{key}' "
                                    f"(it returns: {', '.join(k for k in out if not str(k).startswith('_'))})")
        val = out[key]
        layers = list(val) if isinstance(val, (list, tuple)) else [val]
        stacked = torch.stack([h.float() for h in layers], 0)   # (L, B, T, D)
        if stacked.dim() != 4:
            raise FeatureStoreError(f"key '{key}' of {name} is not a list of (B, T, D)")
        return stacked

    def _probe(self, upstream, name: str, keys: list[str], device: str) -> dict[str, tuple[int, float]]:
        """One forward on 1 s of silence: each key's layers, width and rate recorded in the index
        (checked against what the store has); returns key -> (dims, frames per second)."""
        import torch

        with torch.no_grad():
            out = upstream([torch.zeros(SAMPLE_RATE, device=device)])
        probe = {}
        for k in keys:
            stacked = self._stack(out, k, name)
            self._note_key(k, upstream, stacked.shape[0], stacked.shape[3])
            probe[k] = (int(stacked.shape[3]), SAMPLE_RATE / int(upstream.get_downsample_rates(k)))
        return probe

    def _plan(self, wanted: dict[str, object], files: dict[str, Path]
              ) -> tuple[dict[str, list[int]], dict[str, dict[int, list[str]]]]:
        """What an extraction must do, from the index: per key, the positions of wanted layers not
        stored yet (a new group, index len(groups)), and per group that holds (or will hold) some
        wanted layer, the files of ``files`` it lacks."""
        new_groups: dict[str, list[int]] = {}
        todo: dict[str, dict[int, list[str]]] = {}
        for key, spec in wanted.items():
            info = self._index["keys"][key]
            specs = spec if isinstance(spec, (list, tuple)) and all(isinstance(s, str) for s in spec) else [spec]
            if not specs:
                raise FeatureStoreError(f"layers for '{key}': an empty list; name a subset such as \"6-11\" or \"all\"")
            need: set[int] = set()
            for s in specs:
                need |= set(self._positions(key, s))
            stored = {i for g in info["groups"] for i in g["layers"]}
            new = sorted(need - stored) if files else []
            groups = [g["layers"] for g in info["groups"]] + ([new] if new else [])
            new_groups[key] = new
            for gi, g_layers in enumerate(groups):
                if need & set(g_layers):
                    have = info["groups"][gi]["files"] if gi < len(info["groups"]) else {}
                    missing = [f for f in files if f not in have]
                    if missing:
                        todo.setdefault(key, {})[gi] = missing
        return new_groups, todo

    def _positions(self, key: str, spec) -> list[int]:
        """Positions of the model layers ``spec`` names (without checking they are stored)."""
        info = self._index["keys"][key]
        if spec is None or (isinstance(spec, str) and spec.strip() == "all"):
            return list(range(int(info["num_layers"])))
        try:
            wanted = parse_layers(spec, int(info["stream_layers"]), key)
        except LayerRangeError as e:
            raise FeatureStoreError(f"{e} (store {self.root})") from e
        model = [int(i) for i in info["model_layers"]]
        odd = [m for m in wanted if m not in model]
        if odd:
            raise FeatureStoreError(f"layer {layer_span(odd)} of '{key}' is not one of the key's layers "
                                    f"({layer_span(model)}: the layers of one width the upstream returns under "
                                    f"'{key}'); name it as its own key in the model config to cache it")
        return [model.index(m) for m in wanted]

    def _check_size(self, name: str, probe: dict[str, tuple[int, float]], new_groups: dict[str, list[int]],
                    todo: dict[str, dict[int, list[str]]], lengths: dict[str, int], max_gb: float | None) -> None:
        """Estimate the disk the new features need (only the layers to be stored); refuse above ``max_gb``."""
        parts, what = [], []
        for key, per_group in todo.items():
            groups = self._index["keys"][key]["groups"]
            for gi, fs in per_group.items():
                rows = groups[gi]["layers"] if gi < len(groups) else new_groups[key]
                dims, fps = probe[key]
                parts.append((len(rows), dims, fps, sum(lengths[f] for f in fs) / SAMPLE_RATE))
            stored = sorted({i for gi in per_group
                             for i in (groups[gi]["layers"] if gi < len(groups) else new_groups[key])})
            what.append(f"'{key}' layers {layer_span(stored)} of {self._index['keys'][key]['num_layers']}")
        need = estimate_bytes(parts, self.dtype)
        self.estimated_gb = need / 1e9
        seconds = sum(lengths.values())
        if max_gb is not None and need > max_gb * 1e9:
            raise FeatureStoreError(
                f"caching {'; '.join(what)} of {name} for {seconds / SAMPLE_RATE / 3600:.1f} h of audio needs about "
                f"{need / 1e9:.1f} GB ({self.dtype}) in {self.root}, above the {max_gb:g} GB limit: raise it with "
                f"--cache-max-gb {int(need / 1e9) + 1}, choose fewer --features / --layers / a smaller corpus, or "
                f"run without the cache (--no-cache)")

    def _note_key(self, key: str, upstream, num_layers: int, dim: int) -> None:
        keys = self._index["keys"]
        if key not in keys:
            model, stream_layers, stream = list(range(num_layers)), num_layers, None
            from upstream.expert_base import DuetUpstreamExpert

            if isinstance(upstream, DuetUpstreamExpert):                # which layers of which stream the key is
                stream, model = upstream.key_layers(key)
                stream_layers = int(getattr(upstream, "num_layers", {}).get(stream, len(model)))
            keys[key] = {"num_layers": num_layers, "dim": dim,
                         "downsample_rate": int(upstream.get_downsample_rates(key)),
                         "model_layers": [int(i) for i in model], "stream_layers": stream_layers, "stream": stream,
                         "groups": []}
        elif (keys[key]["num_layers"], keys[key]["dim"]) != (num_layers, dim):
            raise FeatureStoreError(f"key '{key}': {num_layers} layers x {dim} dims now, but the store {self.root} "
                                    f"has {keys[key]['num_layers']} x {keys[key]['dim']}; delete it and extract again")

    def _flush(self, pending: dict[str, dict[tuple[str, int], np.ndarray]]) -> None:
        shard = self._index["num_shards"]
        by_group: dict[tuple[str, int], list[tuple[str, np.ndarray]]] = {}
        for f, per_group in pending.items():
            for kg, arr in per_group.items():
                by_group.setdefault(kg, []).append((f, arr))
        for (key, gi), items in by_group.items():
            (self.root / key).mkdir(parents=True, exist_ok=True)
            bad = [f for f, a in items if not np.isfinite(a).all()]
            if bad:
                raise FeatureStoreError(f"key '{key}' is NaN/Inf for {len(bad)} file(s): {bad[:5]}; check that audio "
                                        f"(harness.preflight) and the model; nothing of this shard was stored")
            for f, a in items:
                n = next((g["files"][f][2] for g in self._index["keys"][key]["groups"] if f in g["files"]), None)
                if n is not None and n != a.shape[1]:
                    raise FeatureStoreError(f"key '{key}': {a.shape[1]} frames for '{f}' now, {n} in {self.root}; "
                                            f"the upstream changed: delete the store and extract again")
            stored = np.concatenate([a for _, a in items], axis=1).astype(self.dtype, copy=False)
            if not np.isfinite(stored).all():
                raise FeatureStoreError(f"key '{key}' has values beyond {self.dtype}'s range (largest |x| "
                                        f"{max(float(np.abs(a).max()) for _, a in items):.3g}); make the store with "
                                        f"dtype='float32' (harness run --cache-dtype float32)")
            atomic_save_npy(self._shard_path(key, gi, shard), stored)
        for (key, gi), items in by_group.items():
            off = 0
            for f, a in items:
                self._index["keys"][key]["groups"][gi]["files"][f] = [shard, off, int(a.shape[1])]
                off += int(a.shape[1])
        self._index["num_shards"] = shard + 1
        atomic_write_json(self._index_path, self._index, sort_keys=False)
