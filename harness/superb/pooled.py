"""Per-utterance pooled features for the SID/ER fast path (see harness/superb/fastpath.py): the
splits as s3prl's voxceleb1 / emotion datasets list them, and for each utterance the per-layer sum
of the frames s3prl pools, its stored frame count and s3prl's expected frame count, computed once
from the feature cache or the upstream and kept in an .npz beside the cache."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from upstream.facts import SAMPLE_RATE, atomic_open

POOLED_FORMAT = "duet-pooled/1"


class FastPathError(RuntimeError):
    """The fast path cannot run this cell (bad plan, missing audio or features); the message says why."""


# ----------------------------------------------------------------------------- data

@dataclass
class Utterances:
    """One split as the s3prl dataset lists it: audio paths, class labels, lengths in samples."""
    paths: list[str]
    labels: np.ndarray
    samples: np.ndarray
    class_names: list[str] | None = None    # ER: index -> emotion (SID: id1000N from the index)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx) -> "Utterances":
        idx = list(idx)
        return Utterances([self.paths[i] for i in idx], self.labels[idx], self.samples[idx], self.class_names)

    def predict_lines(self, preds: list[int]) -> list[str]:
        """``<name> <class>`` per utterance, as s3prl's experts write ``test[_foldN]_predict.txt``."""
        if self.class_names is None:                      # voxceleb1: path2name, label2speaker
            return [f"{Path('-'.join(Path(p).parts[-3:])).stem} id{k + 10001}\n" for p, k in zip(self.paths, preds)]
        return [f"{Path(p).stem} {self.class_names[k]}\n" for p, k in zip(self.paths, preds)]


_LENGTHS: dict[tuple[str, int, int], int] = {}     # (path, size, mtime_ns) -> samples, for this process


def _lengths(paths: list[str]) -> np.ndarray:
    import soundfile as sf

    out = []
    for p in paths:
        st = os.stat(p)
        key = (p, st.st_size, st.st_mtime_ns)
        if key not in _LENGTHS:
            try:
                info = sf.info(p)
            except RuntimeError as e:
                raise FastPathError(f"{p}: unreadable audio ({e})") from e
            if info.samplerate != SAMPLE_RATE:
                raise FastPathError(f"{p}: sample rate {info.samplerate}, expected {SAMPLE_RATE} (s3prl resamples "
                                    f"IEMOCAP on the fly; the fast path does not): resample the corpus")
            _LENGTHS[key] = info.frames
        out.append(_LENGTHS[key])
    return np.asarray(out, dtype=np.int64)


def _wav_index(root: Path) -> dict[str, str]:
    """'idN/video/n.wav' -> the first ROOT/*/wav/idN/video/n.wav, as s3prl's per-line glob finds it."""
    index: dict[str, str] = {}
    for top in sorted(root.iterdir()) if root.is_dir() else []:
        wav = top / "wav"
        for dirpath, _, files in os.walk(wav):
            for f in files:
                full = os.path.join(dirpath, f)
                index.setdefault(os.path.relpath(full, wav), full)
    return index


def sid_splits(datarc: dict) -> dict[str, Utterances]:
    """train/dev/test as s3prl's SpeakerClassifiDataset builds them from iden_split.txt (1/2/3)."""
    root, meta = Path(datarc["file_path"]), Path(datarc["meta_data"])
    if not meta.is_file():
        raise FastPathError(f"datarc.meta_data {meta}: no such file")
    lists: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    index = _wav_index(root)
    for line in meta.read_text().splitlines():
        pair = line.split()
        if not pair:
            continue
        split = {1: "train", 2: "dev", 3: "test"}.get(int(pair[0]))
        if split is None:
            continue
        found = index.get(os.path.normpath(pair[1]))
        if found is None:
            raise FastPathError(f"{meta}: {pair[1]} is not under {root}/*/wav/")
        lists[split].append(found)
    out = {}
    for split, paths in lists.items():
        labels = np.asarray([int(p.split(os.sep)[-3][2:]) - 10001 for p in paths], dtype=np.int64)
        out[split] = Utterances(paths, labels, _lengths(paths))
    return out


def er_splits(datarc: dict) -> tuple[Utterances, Utterances, int]:
    """(train json's utterances, test json's, number of classes) as s3prl's IEMOCAPDataset reads them."""
    root, meta = datarc["root"], datarc["meta_data"]
    fold = datarc.get("test_fold") or "fold1"
    out = []
    for which in ("train", "test"):
        path = Path(meta) / fold.replace("fold", "Session") / f"{which}_meta_data.json"
        if not path.is_file():
            raise FastPathError(f"{path}: no such IEMOCAP metadata file")
        data = json.loads(path.read_text())
        classes = data["labels"]
        paths = [os.path.join(root, m["path"]) for m in data["meta_data"]]
        labels = np.asarray([classes[m["label"]] for m in data["meta_data"]], dtype=np.int64)
        names = [name for name, _ in sorted(classes.items(), key=lambda kv: kv[1])]
        out.append((Utterances(paths, labels, _lengths(paths), names), len(classes)))
    return out[0][0], out[1][0], out[0][1]


# ----------------------------------------------------------------------------- pooled features

@dataclass(frozen=True)
class FeatureSource:
    """Where a cell's frames come from: a FeatureStore (``store`` set; what duet_cached reads) or the
    upstream itself, one file per forward."""
    upstream: str
    key: str
    ckpt: str | None = None
    model_config: str | None = None     # -g file (live upstream only; a store holds the layers cells read)
    store: str | None = None
    layers: str = "all"                 # the cell's -g layers subset of the key (s3prl sees only those)
    cache_spec: str | None = None       # the duet_cached spec s3prl's runner would read (its -k)

    def ident(self) -> str:
        if self.store:
            from harness.features.store import FeatureStore
            store = FeatureStore(self.store)
            ident = dict(store.identity, stored_layers=store.stored_layers(self.key))   # a store extended later re-pools
        else:
            from harness.features.store import upstream_identity
            ident = upstream_identity(self.upstream, self.ckpt, self.model_config)
            ident.pop("ckpt", None)
        return json.dumps({"identity": ident, "key": self.key}, sort_keys=True)


@dataclass
class PooledFeatures:
    """Per utterance: S (L, D) = sum of each layer's first min(n, T) frames, T stored frames,
    n = round(samples / downsample_rate), s3prl's length for it."""
    index: dict[str, int]
    sums: np.ndarray            # (N, L, D) float64
    frames: np.ndarray          # (N,) int64
    expected: np.ndarray        # (N,) int64
    rate: int
    layers: list[int] | None = None    # the store's layer position of each of the L rows (None: no store)

    def rows(self, positions: list[int]) -> list[int]:
        """Rows of ``sums`` holding the given store layer positions."""
        if self.layers is None:
            return list(positions)
        missing = [p for p in positions if p not in self.layers]
        if missing:
            raise FastPathError(f"pooled features hold store layers {self.layers}, not {missing}: delete the "
                                f"pooled cache file and rerun")
        return [self.layers.index(p) for p in positions]

    def take(self, paths: list[str], layers: list[int] | None = None):
        try:
            idx = [self.index[str(Path(p).resolve())] for p in paths]
        except KeyError as e:
            raise FastPathError(f"no pooled features for {e.args[0]}") from e
        sums = self.sums[idx]
        if layers is not None:
            sums = sums[:, layers]
        return sums, self.frames[idx], self.expected[idx]


def _layer_norm(x: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5)


def pool_features(source: FeatureSource, paths: list[str], cache: Path | None = None,
                  normalize: bool = False) -> PooledFeatures:
    """Pooled sums for every path (each resolved), from ``cache`` (an .npz) when it holds them all."""
    import torch

    want = sorted({str(Path(p).resolve()) for p in paths})
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["format"]) == POOLED_FORMAT and str(z["ident"]) == source.ident() and bool(z["normalize"]) == normalize:
                have = [str(p) for p in z["paths"]]
                if set(want) <= set(have):
                    layers = [int(i) for i in z["layers"]] if "layers" in z.files else None
                    return PooledFeatures({p: i for i, p in enumerate(have)}, z["sums"], z["frames"], z["expected"],
                                          int(z["rate"]), layers)
    if source.store:
        from harness.features.store import FeatureStore
        store = FeatureStore(source.store)
        by_path = {str(Path(f).resolve()): f for f in store.file_ids(source.key)}
        if source.cache_spec:                # every path with the same samples (hard links) -> its file id
            from harness.features.cache import read_spec
            index = json.loads(Path(read_spec(source.cache_spec)["index"]).read_text())
            for fid, *paths in index.values():
                for q in paths:
                    by_path.setdefault(str(Path(q).resolve()), fid)
        rate = store.downsample_rate(source.key)
        layers = store.stored_layers(source.key)          # every stored layer, once for all the cells

        def frames_of(path: str) -> np.ndarray:
            if path not in by_path:
                raise FastPathError(f"{path} is not in the feature store {source.store}: rebuild the cache")
            return np.asarray(store.get_all_layers(source.key, by_path[path]), dtype=np.float64)
    else:
        from harness.features.cache import read_wav
        from harness.features.store import load_upstream
        up = load_upstream(source.upstream, source.ckpt, source.model_config).eval()
        rate = int(up.get_downsample_rates(source.key))
        layers = None

        def frames_of(path: str) -> np.ndarray:
            with torch.no_grad():
                out = up([torch.from_numpy(read_wav(Path(path)))])
            if source.key not in out:
                raise FastPathError(f"upstream {source.upstream} returns no key {source.key!r}")
            val = out[source.key]
            val = list(val.values()) if isinstance(val, dict) else val
            layers = list(val) if isinstance(val, (list, tuple)) else [val]
            return torch.stack([h[0].double() for h in layers]).numpy()
    samples = _lengths(want)
    sums, frames, expected = [], [], []
    for path, n_samples in zip(want, samples):
        h = frames_of(path)                                  # (L, T, D)
        n = round(int(n_samples) / rate)
        if normalize and h.shape[0] > 1:
            h = _layer_norm(h)
        sums.append(h[:, :min(n, h.shape[1])].sum(1))
        frames.append(h.shape[1])
        expected.append(n)
    pooled = PooledFeatures({p: i for i, p in enumerate(want)}, np.stack(sums), np.asarray(frames, np.int64),
                            np.asarray(expected, np.int64), rate, layers)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if layers is None else {"layers": np.asarray(layers, np.int64)}
        with atomic_open(cache, fsync=False) as f:
            np.savez(f, format=POOLED_FORMAT, ident=source.ident(), normalize=normalize, paths=np.asarray(want),
                     sums=pooled.sums, frames=pooled.frames, expected=pooled.expected, rate=rate, **extra)
    return pooled


def all_paths(task: str, datarc: dict) -> list[str]:
    """Every audio file the task reads (ER: every session, so all folds share one pooled file)."""
    if task == "sid":
        return [p for u in sid_splits(datarc).values() for p in u.paths]
    paths = []
    for k in range(1, 6):                         # every session, so all folds share one pooled file
        d = dict(datarc, test_fold=f"fold{k}")
        try:
            train, test, _ = er_splits(d)
        except FastPathError:
            continue
        paths += train.paths + test.paths
    return sorted(set(paths))


def pooled_cache_name(source: FeatureSource, task: str, corpus_id: str) -> str:
    h = hashlib.sha1(source.ident().encode()).hexdigest()[:12]
    return f"{source.upstream}-{source.key}-{task}-{corpus_id}-{h}.npz"
