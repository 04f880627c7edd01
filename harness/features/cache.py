"""Feature cache: the SUPERB protocol freezes the upstream, so extract its hidden states once per
(upstream, checkpoint, corpus) and feed every task and epoch from disk.

How it plugs into s3prl without touching s3prl's dataset code: `run_downstream.py -u duet_cached
-k SPEC.json -s KEY [-g layers.yaml]`. The `duet_cached` expert (registered on s3prl.hub by
`register`) hashes each waveform it is given (blake2b of its float32 samples) and looks the hash up in
an index built from the very same files at extraction time:

* hit  -> every layer of KEY read from the memory-mapped FeatureStore (subset by `-g layers`);
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
from pathlib import Path

import numpy as np
import torch

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
                progress: bool = True) -> Path:
    """Extract every layer of `keys` for `audio` into `root` (resumable) and write the waveform-hash
    index + the spec file the `duet_cached` expert reads. Returns the spec path.

    ``wavhash.json`` maps a content hash to ``[file id, path, other paths with that content...]``:
    the first path seen names the features for good, and any later path with the same samples (a
    hard link, e.g. the generated corpus's VoxCeleb1 and IEMOCAP views of one LibriSpeech file) is
    recorded as an alias, never re-extracted. The index is written before extraction starts, so a
    killed build re-hashes nothing and re-extracts only the shard that was in progress.
    ``progress=False``: no bars (a build running beside others, whose bars would interleave)."""
    from tqdm import tqdm

    from harness.features.store import FeatureStore
    from harness.locks import CellLock
    from upstream.facts import atomic_write_text

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with CellLock(root / ".build.lock"):
        index_path = root / "wavhash.json"
        index: dict[str, list[str]] = json.loads(index_path.read_text()) if index_path.is_file() else {}
        known = {p for v in index.values() for p in v[1:]}
        new = [p for p in audio if str(p) not in known]
        for p in tqdm(new, desc=f"hash {upstream} audio", unit="file", disable=not progress or len(new) < 50):
            entry = index.setdefault(wav_hash(read_wav(p)), [str(p)])
            if str(p) not in entry[1:]:
                entry.append(str(p))
        if new:
            atomic_write_text(index_path, json.dumps(index))
        files = {v[0]: next((q for q in v[1:] if Path(q).is_file()), v[1]) for v in index.values()}
        store = FeatureStore(root / "store", dtype=dtype)
        store.extract(upstream, ckpt, keys, files, device=device, max_gb=max_gb, progress=progress)
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
        from harness.features.store import FeatureStore, load_upstream

        spec = read_spec(ckpt)
        self.spec = spec
        self.real = load_upstream(spec["upstream"], spec["ckpt"], model_config)
        self.store = FeatureStore(spec["store"])
        self.index = {h: v[0] for h, v in json.loads(Path(spec["index"]).read_text()).items()}
        self.keys = [k for k in spec["keys"] if k in self.store.keys()]
        self.selection = {k: self._layers_of(k, model_config) for k in self.keys}
        self.hits = self.misses = 0
        self._verify(json.loads(Path(spec["index"]).read_text()))

    def _layers_of(self, key: str, model_config) -> list[int]:
        n = self.store.num_layers(key)
        if key in ("content", "other") and model_config:
            from upstream.expert_base import ExpertOptions, parse_layers
            opts = ExpertOptions.load(model_config)
            if key in opts.layers:
                return parse_layers(opts.layers[key], n, key)
        return list(range(n))

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
        for key in self.keys:
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
        arr = self.store.get_all_layers(key, fid)                 # (L, T, D) memmap
        return torch.from_numpy(np.ascontiguousarray(arr[self.selection[key]]))

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
            return {k: out[k] for k in self.keys if k in out}
        device = wavs[0].device
        live = {}
        for i, f in enumerate(fids):
            if f is None:                         # exact per-item forward for the few misses
                o = self.real([wavs[i]])
                live[i] = {k: torch.stack([t[0] for t in o[k]]) for k in self.keys}
        feats = {}
        for key in self.keys:
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
    """Put `duet_cached` on s3prl.hub (called by run_downstream.py after upstream.hub.register)."""
    setattr(hub_module, "duet_cached", duet_cached)
    return ["duet_cached"]
