"""Feature cache: the SUPERB protocol freezes the upstream, so extract its hidden states once per
(upstream, checkpoint, corpus) and feed every task and epoch from disk.

How it plugs into s3prl without touching s3prl's dataset code: `run_downstream.py -u duet_cached
-k SPEC.json -s KEY [-g layers.yaml]`. The `duet_cached` expert (registered on s3prl.hub by
`register`) hashes each waveform it is given (blake2b of its float32 samples) and looks the hash up in
an index built from the very same files at extraction time:

* hit  -> the layers of KEY the real upstream would return (its `-g layers` subset, else all) read
  from the memory-mapped FeatureStore, mapped from model layer to stored slot by the store's index;
  a layer the store lacks is an error naming it and the fix (`check_key`, which s3prl's Featurizer
  calls through the guard), never another layer;
* miss -> the waveform differs from every file on disk (a random crop, sox effects / silence
  trimming, the Featurizer's 1 s random probe): the real upstream runs on it, exactly as plain s3prl.

So the cache can only change *speed*, never *which* audio a downstream sees; a float16 store (the
default, half the disk) also rounds each feature to about 5e-4 relative, which
tests/test_harness_cache.py checks does not move a downstream metric (`--cache-dtype float32` is exact). Hits/misses are counted
per expert and in ``COUNTS`` (the process); the cell process writes those into its result file, from
which the harness records the hit rate.
At start-up the expert checks one cached file against a live forward (stale caches fail loudly).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from upstream.facts import progress_bar

SPEC_FORMAT = "duet-cache-spec/1"
# hits and misses of every `duet_cached` expert in this process (a cell process reads them at its end)
COUNTS = {"hits": 0, "misses": 0}


def hit_rate(counts: dict) -> float | None:
    """Fraction of waveforms served from the store, or None when the cache was never asked."""
    total = counts.get("hits", 0) + counts.get("misses", 0)
    return round(counts["hits"] / total, 4) if total else None


def wav_hash(samples: np.ndarray) -> str:
    """Identity of a waveform as s3prl feeds it (float32 samples)."""
    return hashlib.blake2b(np.ascontiguousarray(samples, dtype=np.float32).tobytes(), digest_size=12).hexdigest()


def read_wav(path: Path) -> np.ndarray:
    import soundfile as sf
    w, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return w.mean(axis=1) if w.shape[1] > 1 else w[:, 0]


# ----------------------------------------------------------------------------- building

def store_root(cache_dir: Path, upstream: str, ckpt_hash: str, corpus_id: str) -> Path:
    from harness.features.store import store_name

    return Path(cache_dir) / store_name(upstream, ckpt_hash, corpus_id)


def build_store(root: Path, upstream: str, ckpt: str | None, keys: list[str], audio: list[Path],
                device: str = "cpu", max_gb: float | None = None, dtype: str = "float16",
                layers: dict[str, object] | None = None, progress: bool = True) -> Path:
    """Extract the layers of `keys` the cells use (``layers``: key -> a `-g layers:` subset such as
    "6-11", or a list of them for their union; a key not named: every layer) for `audio` into `root`
    (resumable; a store missing some wanted layer extracts just those, see FeatureStore.extract) and
    write the waveform-hash index + the spec file the `duet_cached` expert reads. Returns the spec path.

    ``wavhash.json`` maps a content hash to ``[file id, path, other paths with that content...]``:
    the first path seen names the features for good, and any later path with the same samples (a
    hard link, e.g. the generated corpus's VoxCeleb1 and IEMOCAP views of one LibriSpeech file) is
    recorded as an alias, never re-extracted. The index is written before extraction starts, so a
    killed build re-hashes nothing and re-extracts only the shard that was in progress.
    ``progress=False``: no bars (a build running beside others, whose bars would interleave)."""

    from harness.features.store import FeatureStore
    from harness.locks import CellLock
    from upstream.facts import atomic_write_text, same_file_key

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with CellLock(root / ".build.lock"):
        index_path = root / "wavhash.json"
        index: dict[str, list[str]] = json.loads(index_path.read_text()) if index_path.is_file() else {}
        known = {p for v in index.values() for p in v[1:]}
        new = [p for p in audio if str(p) not in known]
        by_inode: dict[tuple, str] = {}     # hard links (the corpus's VoxCeleb1/IEMOCAP views) are read once
        for p in progress_bar(new, enabled=progress and len(new) >= 50, desc=f"hash {upstream} audio", unit="file"):
            inode = same_file_key(os.stat(p))
            if inode not in by_inode:
                by_inode[inode] = wav_hash(read_wav(p))
            entry = index.setdefault(by_inode[inode], [str(p)])
            if str(p) not in entry[1:]:
                entry.append(str(p))
        if new:
            atomic_write_text(index_path, json.dumps(index))
        files = {v[0]: next((q for q in v[1:] if Path(q).is_file()), v[1]) for v in index.values()}
        store = FeatureStore(root / "store", dtype=dtype)
        store.extract(upstream, ckpt, keys, files, device=device, max_gb=max_gb, layers=layers, progress=progress)
        spec = {"format": SPEC_FORMAT, "upstream": upstream, "ckpt": ckpt, "store": str((root / "store").resolve()),
                "index": str(index_path.resolve()), "keys": sorted(set(keys) | set(store.keys()))}
        spec_path = root / "spec.json"
        atomic_write_text(spec_path, json.dumps(spec, indent=1))
    return spec_path


def read_spec(path: str | Path) -> dict:
    """A cache spec written by :func:`build_store` (``store``, ``index``, ``upstream``, ``ckpt``, ``keys``)."""
    spec_path = Path(path)
    if not spec_path.is_file():
        raise FileNotFoundError(f"-u duet_cached -k {path}: no such cache spec; run `harness run --cache` "
                                f"to build it, or use the real upstream name")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{spec_path}: not a {SPEC_FORMAT} file")
    return spec


# ----------------------------------------------------------------------------- the s3prl expert

class CachedUpstream(torch.nn.Module):
    """s3prl upstream `duet_cached`: features from a FeatureStore, the real upstream on misses."""

    def __init__(self, ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs):
        super().__init__()
        from harness.features.store import FeatureStore, FeatureStoreError, load_upstream

        spec = read_spec(ckpt)
        self.spec = spec
        self.real = load_upstream(spec["upstream"], spec["ckpt"], model_config)
        self.store = FeatureStore(spec["store"])
        self.index = {h: v[0] for h, v in json.loads(Path(spec["index"]).read_text()).items()}
        self.keys = [k for k in spec["keys"] if k in self.store.keys()]
        self.selection: dict[str, list[int]] = {}    # key -> stored positions served, in the real upstream's order
        self.unavailable: dict[str, str] = {}        # key -> why it cannot be served (a layer not stored)
        for k in self.keys:
            try:
                self.selection[k] = self.store.layer_positions(k, self._model_layers(k))
            except FeatureStoreError as e:
                self.unavailable[k] = str(e)
        self.hits = self.misses = 0
        self._verify(json.loads(Path(spec["index"]).read_text()))

    def _model_layers(self, key: str) -> list[int] | None:
        """The model layers the real upstream returns under ``key`` (its `-g layers:` subset), in its
        order; None (every layer) for an upstream that has no layer subsets."""
        from harness.features.store import FeatureStoreError
        from upstream.expert_base import DuetUpstreamExpert

        if not isinstance(self.real, DuetUpstreamExpert):
            return None
        stream, layers = self.real.key_layers(key)
        stored = self.store.stream(key)
        if stored is not None and stream != stored:         # e.g. `-g hidden_states: other`
            raise FeatureStoreError(f"this model config makes '{key}' the {stream} layers, but the store "
                                    f"{self.spec['store']} holds the {stored} layers under '{key}': use -s {stream} "
                                    f"or run this cell without the cache (--no-cache)")
        return layers

    def check_key(self, key: str) -> None:
        """Raise unless ``key`` can be served (called by s3prl's Featurizer through the guard): a key
        whose wanted layers are not all stored names them and the fix."""
        if key in self.unavailable:
            from harness.features.store import FeatureStoreError

            raise FeatureStoreError(f"-u duet_cached -s {key}: {self.unavailable[key]}")
        if key not in self.selection:
            raise KeyError(f"duet_cached ({self.spec['upstream']}) has no feature key {key!r} in the store "
                           f"{self.spec['store']}; valid keys (-s): {', '.join(self.selection) or 'none'}")

    def _verify(self, index: dict) -> None:
        """One stored file against a live forward: a stale or mismatched cache fails here."""
        if not index:
            return
        h, (fid, *paths) = next(iter(index.items()))
        path = next((p for p in paths if Path(p).is_file()), None)
        if path is None:
            return
        dev = next(self.real.parameters(), torch.zeros(())).device
        with torch.no_grad():
            live = self.real([torch.from_numpy(read_wav(Path(path))).to(dev)])
        for key in self.selection:
            cached = self._cached_item(key, fid)
            ref = torch.stack([t[0].float().cpu() for t in live[key]])
            if ref.shape != cached.shape:
                raise RuntimeError(f"feature cache {self.spec['store']} disagrees with the live upstream on {path} "
                                   f"(key {key}: {tuple(cached.shape)} (layers, frames, dims) stored, "
                                   f"{tuple(ref.shape)} live): delete that cache dir and re-run")
            err = (ref - cached).abs().max().item() if ref.numel() else 0.0
            scale = ref.abs().max().item() + 1e-6
            if err > 1e-3 * max(1.0, scale):
                raise RuntimeError(f"feature cache {self.spec['store']} disagrees with the live upstream on {path} "
                                   f"(key {key}, max |diff| {err:.3g}): delete that cache dir and re-run")

    def get_downsample_rates(self, key: str) -> int:
        return self.real.get_downsample_rates(key)

    def _cached_item(self, key: str, fid: str):
        return torch.from_numpy(self.store.get_layers(key, self.selection[key], fid))   # (L, T, D)

    def forward(self, wavs):
        hashes = [wav_hash(w.detach().float().cpu().numpy()) for w in wavs]
        fids = [self.index.get(h) for h in hashes]
        n_hit = sum(f is not None for f in fids)
        self.hits += n_hit
        self.misses += len(wavs) - n_hit
        COUNTS["hits"] += n_hit
        COUNTS["misses"] += len(wavs) - n_hit
        if n_hit == 0:                            # e.g. random crops: plain s3prl behaviour
            out = self.real(wavs)
            return {k: out[k] for k in self.selection if k in out}
        device = wavs[0].device
        live = {}
        for i, f in enumerate(fids):
            if f is None:                         # exact per-item forward for the few misses
                o = self.real([wavs[i]])
                live[i] = {k: torch.stack([t[0] for t in o[k]]) for k in self.selection}
        feats = {}
        for key in self.selection:
            items = [live[i][key].float().cpu() if f is None else self._cached_item(key, f) for i, f in enumerate(fids)]
            t_max = max(x.shape[1] for x in items)
            L, D = items[0].shape[0], items[0].shape[2]
            batch = torch.zeros(L, len(items), t_max, D)
            for b, x in enumerate(items):
                batch[:, b, :x.shape[1]] = x
            batch = batch.to(device)
            feats[key] = [batch[i] for i in range(L)]
        return feats


def duet_cached(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs):
    """s3prl factory: `-u duet_cached -k CACHE/spec.json -s KEY [-g layers.yaml]`."""
    return CachedUpstream(ckpt, model_config, refresh, **kwargs)


def register(hub_module) -> list[str]:
    """Put `duet_cached` on s3prl.hub (called by run_downstream.py after upstream.hub.register), with
    the Featurizer guard calling its `check_key` (a missing layer or key fails at start-up, by name)."""
    from harness.s3prl.featurizer_guard import guard_upstream_class

    setattr(hub_module, "duet_cached", duet_cached)
    guard_upstream_class(CachedUpstream)
    return ["duet_cached"]
