"""Pre-training data: a corpus's training audio -> fixed-length crops with lengths and frame labels.

Pieces (each a small stateful object the trainer or a recipe names):

- ``find_training_audio(corpus, split)``: the LibriSpeech ``<split>`` flacs of a DUET corpus (or a
  real LibriSpeech root), minus utterances an evaluation split uses (DUET corpora: ``manifest.csv``
  rows whose SID split is dev/test), and optionally minus every speaker of another corpus
  (``exclude_speakers_of``: pre-train on a bigger corpus without hearing the evaluation corpus's
  voices), sorted.
- ``AudioBank``: every training utterance decoded once into one int16 file (``audio.int16`` +
  ``audio.json``), memory-mapped; written atomically, reused while the file list is unchanged.
- ``FrameLabels``: one integer label per 20 ms frame per utterance (k-means ids), the frame grid of a
  conv front-end with receptive field 400 and stride 320 samples: ``frames(n) = (n - 400)//320 + 1``.
- ``mfcc_features``: 13 MFCC + Δ + ΔΔ (39-d) on that grid, per-utterance mean/variance normalised
  (HuBERT iteration-1 features, at the model's 50 Hz frame rate).
- ``CropBatches``: the batch source. ``get(step, micro, rank, world)`` is a pure function of its
  arguments and the seed (epoch permutations + per-batch generators), so a resumed or multi-process
  run sees exactly the batches an uninterrupted single run would.

Batch keys: ``wav`` (B, S) float32, ``wav_len`` (B,) long, ``utt`` (B,) long index into the bank,
``labels.<name>`` (B, T) long (-100 = padding), ``utt_labels.<name>`` (B,) long,
``teacher`` (B, D) float, ``start`` (B,) long (crop start in the utterance, samples), and with two
views ``wav_b``/``wav_b_len``/``start_b`` (+ ``labels_b.<name>``). With an ``aligned_augment``,
``wav_a2`` (B, S): a second perturbation of view A's crop, sample-aligned with it (same start and
length ``wav_len``), e.g. a formant-warped copy whose frames pair with A's frame by frame. A
``pair_augment`` perturbs the two views' clean crops together (one random draw for both, e.g. one
formant warp: a new voice that both views share), after ``wav_a2`` is taken and before the
per-view ``view_augment``.

Two views (``views=2``): the same crop (``same_crop``, then perturbed: Barlow Twins), or two crops
that share no sample of the utterance (``disjoint_views``, Learn2Diss's InfoNCE: otherwise the
utterance encoder can match audio instead of speakers). Utterances shorter than two crops are
split in two (each part >= 400 samples, starts on the 320-sample frame grid); only those under
1040 samples, which cannot be split, give both views the whole utterance (then the view
perturbation alone makes them differ).
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from upstream.facts import SAMPLE_RATE, atomic_open, atomic_save_npy, atomic_write_text, progress_bar, resolve_path

HOP = 320
WIN = 400


class DataError(ValueError):
    """A corpus lacks what a recipe needs; the message names the path and the fix."""


def frames(n_samples: int | Tensor):
    """Frames of a 400-sample-receptive-field, 320-stride front-end (HuBERT/wav2vec2 CNN)."""
    if torch.is_tensor(n_samples):
        return torch.clamp(torch.div(n_samples - WIN, HOP, rounding_mode="floor") + 1, min=0)
    return max(0, (int(n_samples) - WIN) // HOP + 1)


# ------------------------------------------------------------------------------------- corpus
def _eval_audio(corpus: Path) -> set[Path]:
    """LibriSpeech files of a DUET corpus whose utterance is in SID dev/test (manifest.csv), else empty.

    The generated corpora put one utterance in several layouts (LibriSpeech, VoxCeleb1, ...), so
    SID's dev/test audio would otherwise be seen in pre-training.
    """
    man = corpus / "manifest.csv"
    if not man.exists():
        return set()
    with open(man, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "sid_split" not in rows[0] or "librispeech" not in rows[0]:
        return set()
    return {(corpus / r["librispeech"]).resolve() for r in rows
            if r["librispeech"] and str(r["sid_split"]).strip().lower() in {"2", "3", "dev", "test"}}


def corpus_speakers(corpus: str | Path) -> set[str]:
    """The LibriSpeech speaker ids of a corpus (``LibriSpeech/<split>/<speaker>/`` folders, every
    split). A DUET corpus speaks every voice of its VoxCeleb1 and IEMOCAP layouts in LibriSpeech too,
    under the same id in every corpus of one seed (voice i is speaker 100 + i), so these are all its
    voices."""
    root = Path(corpus) / "LibriSpeech"
    if not root.is_dir():
        raise DataError(f"exclude_speakers_of={corpus}: {root} not found; give a corpus directory (the one "
                        f"`harness corpus make --out` wrote, or a LibriSpeech root's parent)")
    return {d.name for split in root.iterdir() if split.is_dir() for d in split.iterdir() if d.is_dir()}


def find_training_audio(corpus: str | Path, split: str = "train-clean-100", exclude_eval: bool = True,
                        max_utts: int = 0, seed: int = 0, exclude_speakers_of: str | Path = "") -> list[Path]:
    corpus = Path(corpus)
    banned = corpus_speakers(resolve_path(exclude_speakers_of)) if str(exclude_speakers_of) else set()
    root = corpus / "LibriSpeech" / split
    if not root.is_dir():
        alt = corpus / split   # a real LibriSpeech root given directly
        if alt.is_dir():
            root = alt
        else:
            raise DataError(f"{root} not found: the recipe trains on LibriSpeech/{split}. Generate a corpus with "
                            f"`harness corpus make --size small --out DIR` and pass --corpus DIR, or set data.split=...")
    files = sorted(root.rglob("*.flac")) + sorted(root.rglob("*.wav"))
    if exclude_eval:
        drop = _eval_audio(corpus)
        files = [f for f in files if f.resolve() not in drop]
    if not files:
        raise DataError(f"{root} contains no .flac/.wav files; the corpus is empty or half-written — regenerate it")
    if banned:
        files = [f for f in files if f.parent.parent.name not in banned]   # <split>/<speaker>/<chapter>/<file>
        if not files:
            raise DataError(f"every speaker of {root} is a speaker of {exclude_speakers_of}: nothing left to train "
                            f"on; drop data.exclude_speakers_of or train on a bigger corpus")
    if 0 < max_utts < len(files):
        keep = np.sort(np.random.default_rng([seed, 11]).choice(len(files), max_utts, replace=False))
        files = [files[i] for i in keep]
    return files


class AudioBank:
    """All training utterances as one memory-mapped int16 array. ``bank[i]`` -> int16 ndarray."""

    def __init__(self, cache_dir: Path):
        meta = json.loads((cache_dir / "audio.json").read_text())
        self.paths: list[str] = meta["paths"]
        self.offsets = np.asarray(meta["offsets"], dtype=np.int64)
        self.lengths = np.asarray(meta["lengths"], dtype=np.int64)
        self.audio = np.memmap(cache_dir / "audio.int16", dtype=np.int16, mode="r")
        self.fingerprint = meta["fingerprint"]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        o = self.offsets[i]
        return self.audio[o:o + self.lengths[i]]

    def wav(self, i: int) -> Tensor:
        return torch.from_numpy(np.asarray(self[i], dtype=np.float32) / 32768.0)

    def subset(self, n: int) -> "AudioBank":
        """The first ``n`` utterances (the bank is already in a seeded order when max_utts is used)."""
        if n <= 0 or n >= len(self):
            return self
        sub = object.__new__(AudioBank)
        sub.paths, sub.offsets, sub.lengths = self.paths[:n], self.offsets[:n], self.lengths[:n]
        sub.audio, sub.fingerprint = self.audio, f"{self.fingerprint}:first{n}"
        return sub

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / SAMPLE_RATE

    @staticmethod
    def fingerprint_of(files: list[Path]) -> str:
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{int(st.st_mtime)}\n".encode())
        return h.hexdigest()[:16]

    @classmethod
    def build(cls, files: list[Path], cache_dir: str | Path, progress: bool = True) -> "AudioBank":
        """Decode ``files`` once into ``cache_dir`` (atomic); reuse a cache with the same fingerprint."""
        import soundfile as sf

        cache_dir = Path(cache_dir)
        fp = cls.fingerprint_of(files)
        if (cache_dir / "audio.json").exists():
            bank = cls(cache_dir)
            if bank.fingerprint == fp:
                return bank
        cache_dir.mkdir(parents=True, exist_ok=True)
        offsets, lengths = [], []
        it = files
        if progress:
            it = progress_bar(files, desc="decode audio", leave=False)
        off = 0
        with atomic_open(cache_dir / "audio.int16") as out:
            for f in it:
                data, sr = sf.read(str(f), dtype="int16", always_2d=True)
                if sr != SAMPLE_RATE:
                    raise DataError(f"{f}: sample rate {sr}, expected {SAMPLE_RATE} Hz; resample the corpus")
                data = np.ascontiguousarray(data[:, 0])
                out.write(data.tobytes())
                offsets.append(off)
                lengths.append(len(data))
                off += len(data)
        meta = {"paths": [str(f) for f in files], "offsets": offsets, "lengths": lengths, "fingerprint": fp,
                "sample_rate": SAMPLE_RATE}
        atomic_write_text(cache_dir / "audio.json", json.dumps(meta))
        return cls(cache_dir)


# ------------------------------------------------------------------------------------- features
def mfcc_features(wav: Tensor) -> Tensor:
    """wav (S,) float in [-1, 1] -> (frames(S), 39): 13 MFCC + Δ + ΔΔ, 25 ms window, 20 ms hop, CMVN."""
    import torchaudio.compliance.kaldi as kaldi
    import torchaudio.functional as AF

    n = frames(wav.shape[0])
    if n == 0:
        return torch.zeros(0, 39)
    m = kaldi.mfcc(wav[None] * 32768.0, sample_frequency=SAMPLE_RATE, frame_length=25.0, frame_shift=20.0,
                   num_ceps=13, snip_edges=True, dither=0.0, use_energy=False)   # (T, 13)
    m = m[:n]
    d = m.t()[None]
    d1 = AF.compute_deltas(d)
    d2 = AF.compute_deltas(d1)
    f = torch.cat([d, d1, d2], dim=1)[0].t()
    return (f - f.mean(0)) / (f.std(0, unbiased=False) + 1e-5)


class FrameLabels:
    """Per-utterance frame labels, concatenated: ``labels[i]`` -> (frames(len_i),) int16/int32 ndarray."""

    def __init__(self, values: np.ndarray, lengths: np.ndarray, num_classes: int, name: str, audio: str = ""):
        self.values = values
        self.audio = audio            # fingerprint of the AudioBank the labels belong to
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.num_classes = int(num_classes)
        self.name = name

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i] + self.lengths[i]]

    def save(self, path: Path) -> None:
        """``<path>.npy`` values + ``<path>.json`` lengths/K, both replaced atomically."""
        path = Path(path)
        atomic_save_npy(path.with_suffix(".npy"), self.values.astype(np.int32))
        atomic_write_text(path.with_suffix(".json"), json.dumps({"lengths": self.lengths.tolist(), "num_classes": self.num_classes,
                                                                 "name": self.name, "audio": self.audio}))

    @classmethod
    def load(cls, path: Path) -> "FrameLabels":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        return cls(np.load(path.with_suffix(".npy"), allow_pickle=False), np.asarray(meta["lengths"]),
                   meta["num_classes"], meta["name"], meta.get("audio", ""))

    @staticmethod
    def exists(path: Path) -> bool:
        path = Path(path)
        return path.with_suffix(".json").exists() and path.with_suffix(".npy").exists()


# ------------------------------------------------------------------------------------- batches
@dataclass
class DataConfig:
    split: str = "train-clean-100"
    crop_s: float = 2.0          # crop length (seconds); shorter utterances are zero-padded
    batch_size: int = 8          # utterances per micro-batch per process
    views: int = 1               # 2 -> a second crop (``wav_b``) of the same utterance
    same_crop: bool = False      # views=2: the second view is the same crop (then augmented)
    disjoint_views: bool = True  # views=2, not same_crop: the two crops share no sample
    exclude_eval: bool = True    # drop SID dev/test utterances (manifest.csv) from pre-training
    exclude_speakers_of: str = ""  # a corpus dir: drop every speaker it has (pre-train without its voices)
    max_utts: int = 0            # > 0: a seeded random subset of this many training utterances


class CropBatches:
    """Deterministic batch source over an ``AudioBank`` (see module docstring)."""

    def __init__(self, bank: AudioBank, cfg: DataConfig, seed: int, *, labels: dict[str, FrameLabels] | None = None,
                 utt_labels: dict[str, np.ndarray] | None = None, teacher: np.ndarray | None = None,
                 augment=None, view_augment=None, aligned_augment=None, pair_augment=None):
        self.bank, self.cfg, self.seed = bank, cfg, int(seed)
        self.labels = labels or {}
        self.utt_labels = utt_labels or {}
        self.teacher = teacher
        self.augment = augment            # callable(wav (S,), gen) -> wav, applied to every view (prob inside)
        self.view_augment = view_augment  # callable(wav, gen) -> wav, the two-view perturbation (BT)
        self.aligned_augment = aligned_augment  # callable(wav, gen) -> wav: ``wav_a2`` from view A's clean crop
        self.pair_augment = pair_augment  # callable(wav_a, wav_b, gen) -> (wav_a, wav_b): both views, one draw
        if pair_augment is not None and cfg.views != 2:
            raise ValueError("pair_augment perturbs the two views together: it needs views=2")
        self.crop = max(WIN, int(round(cfg.crop_s * SAMPLE_RATE / HOP)) * HOP)
        self.position = 0
        self._perm_cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            rng = np.random.default_rng([self.seed, epoch, 7])
            self._perm_cache = {epoch: rng.permutation(len(self.bank))}
        return self._perm_cache[epoch]

    def _crop(self, i: int, gen: torch.Generator) -> tuple[Tensor, int, int]:
        n = int(self.bank.lengths[i])
        if n > self.crop:
            start = int(torch.randint(0, (n - self.crop) // HOP + 1, (1,), generator=gen)) * HOP
        else:
            start = 0
        seg = np.asarray(self.bank[i][start:start + self.crop], dtype=np.float32) / 32768.0
        return torch.from_numpy(seg), start, len(seg)

    def _read(self, i: int, start: int, length: int) -> Tensor:
        seg = np.asarray(self.bank[i][start:start + length], dtype=np.float32) / 32768.0
        return torch.from_numpy(seg)

    def _disjoint_crops(self, i: int, gen: torch.Generator) -> tuple[tuple[Tensor, int, int], tuple[Tensor, int, int]]:
        """Two crops of utterance i with no common sample, starts on the frame grid (HOP)."""
        n, c = int(self.bank.lengths[i]), self.crop

        def rand(lo: int, hi: int) -> int:            # uniform multiple of HOP in [lo, hi] (lo, hi multiples)
            return lo + HOP * int(torch.randint(0, (hi - lo) // HOP + 1, (1,), generator=gen))

        lo_cut = -(-WIN // HOP) * HOP                # first grid point leaving >= WIN samples before it
        if n >= 2 * c:
            cut = rand(c, ((n - c) // HOP) * HOP)    # first crop in [0, cut), second in [cut, n)
            a = rand(0, cut - c)
            b = rand(cut, cut + ((n - c - cut) // HOP) * HOP)
            la, lb = c, c
        elif n - lo_cut >= WIN:
            hi_cut = ((n - WIN) // HOP) * HOP
            cut = min(max(HOP * round(n / 2 / HOP), lo_cut), hi_cut)
            a = max(0, cut - c)                      # on the grid: cut and c are multiples of HOP
            la, b, lb = cut - a, cut, min(n - cut, c)
        else:                                        # too short to split: both views see it all
            return (self._read(i, 0, n), 0, n), (self._read(i, 0, n), 0, n)
        views = [(self._read(i, a, la), a, la), (self._read(i, b, lb), b, lb)]
        if float(torch.rand(1, generator=gen)) < 0.5:   # which part is view A: random
            views.reverse()
        return views[0], views[1]

    def _frame_labels(self, name: str, i: int, start: int, length: int, T: int) -> Tensor:
        lab = self.labels[name][i]
        f0 = start // HOP
        nf = frames(length)
        out = torch.full((T,), -100, dtype=torch.long)
        seg = torch.from_numpy(np.asarray(lab[f0:f0 + nf], dtype=np.int64))
        out[:len(seg)] = seg
        return out

    def get(self, step: int, micro: int, rank: int = 0, world: int = 1, accum: int | None = None) -> dict[str, Tensor]:
        accum = accum or getattr(self, "accum", 1)
        g = (step * accum + micro) * world + rank       # global micro-batch number
        B, N = self.cfg.batch_size, len(self.bank)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + g)
        idx = []
        for k in range(g * B, g * B + B):
            idx.append(int(self._perm(k // N)[k % N]))
        T = frames(self.crop)
        wavs, lens, starts = [], [], []
        wavs_b, lens_b, starts_b = [], [], []
        wavs_a2: list[Tensor] = []
        for i in idx:
            if self.cfg.views == 2 and not self.cfg.same_crop and self.cfg.disjoint_views:
                (w, s, n), (wb, sb, nb) = self._disjoint_crops(i, gen)
            else:
                w, s, n = self._crop(i, gen)
            if self.aligned_augment is not None:
                wavs_a2.append(self.aligned_augment(w, gen))
            if self.cfg.views == 2:
                if self.cfg.same_crop:
                    wb, sb, nb = w.clone(), s, n
                elif not self.cfg.disjoint_views:
                    wb, sb, nb = self._crop(i, gen)
                if self.pair_augment is not None:
                    w, wb = self.pair_augment(w, wb, gen)
                if self.view_augment is not None:
                    w, wb = self.view_augment(w, gen), self.view_augment(wb, gen)
                if self.augment is not None:
                    wb = self.augment(wb, gen)
                wavs_b.append(wb), lens_b.append(nb), starts_b.append(sb)
            if self.augment is not None:
                w = self.augment(w, gen)
            wavs.append(w), lens.append(n), starts.append(s)
        batch: dict[str, Tensor] = {"wav": _pad(wavs, self.crop), "wav_len": torch.tensor(lens, dtype=torch.long),
                                    "utt": torch.tensor(idx, dtype=torch.long),
                                    "start": torch.tensor(starts, dtype=torch.long)}
        for name in self.labels:
            batch[f"labels.{name}"] = torch.stack([self._frame_labels(name, i, s, n, T)
                                                   for i, s, n in zip(idx, starts, lens)])
        for name, arr in self.utt_labels.items():
            batch[f"utt_labels.{name}"] = torch.as_tensor(arr[idx], dtype=torch.long)
        if self.teacher is not None:
            batch["teacher"] = torch.as_tensor(self.teacher[idx], dtype=torch.float32)
        if self.aligned_augment is not None:
            batch["wav_a2"] = _pad(wavs_a2, self.crop)
        if self.cfg.views == 2:
            batch["wav_b"] = _pad(wavs_b, self.crop)
            batch["wav_b_len"] = torch.tensor(lens_b, dtype=torch.long)
            batch["start_b"] = torch.tensor(starts_b, dtype=torch.long)
            for name in self.labels:
                batch[f"labels_b.{name}"] = torch.stack([self._frame_labels(name, i, s, n, T)
                                                         for i, s, n in zip(idx, starts_b, lens_b)])
        self.position = g + 1
        return batch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "position": self.position, "num_utts": len(self.bank),
                "fingerprint": self.bank.fingerprint, "crop": self.crop, "batch_size": self.cfg.batch_size}

    def load_state_dict(self, d: dict) -> None:
        if d.get("fingerprint") != self.bank.fingerprint or d.get("seed") != self.seed:
            raise DataError("the saved run used a different corpus or seed (sampler fingerprint mismatch); "
                            "resume with the same --corpus and seed, or use a new --out")
        self.position = int(d["position"])


def _pad(wavs: list[Tensor], length: int) -> Tensor:
    out = torch.zeros(len(wavs), length)
    for b, w in enumerate(wavs):
        out[b, :len(w)] = w[:length]
    return out
