"""Speaker teachers for JOOCI's distillation: one embedding per training utterance, computed once.

``teacher`` spec strings (recipe key ``teacher``):

- ``resemblyzer``: the pretrained GE2E d-vector model inside the PyPI ``resemblyzer`` wheel
  (Wan et al. 2018; 3-layer LSTM, 256-d, weights ship in the wheel, loads offline). Input is
  resemblyzer's own preprocessing (normalisation + webrtcvad silence trimming) of the 16 kHz
  utterance; the embedding is the L2-normalised mean over 1.6 s partials.
- ``learn2diss:<checkpoint dir>``: the utterance embedding (ECAPA-TDNN ``h``) of a DUET
  Learn2Diss checkpoint — a speaker model the project trains itself (InfoNCE + clustering).

The embedding is of the whole (clean) utterance; the student sees random (possibly augmented)
crops of it, so it learns crop- and noise-invariant speaker information.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from pretrain.data import AudioBank
from upstream.facts import SAMPLE_RATE, atomic_save_npy, progress_bar


class TeacherError(ValueError):
    pass


def embed_resemblyzer(wavs: Iterable[np.ndarray], n: int, progress: bool = True) -> np.ndarray:
    """(n, 256) d-vectors of ``n`` float 16 kHz waveforms (whole utterances)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder, preprocess_wav
    enc = VoiceEncoder("cpu", verbose=False)
    out = np.zeros((n, 256), dtype=np.float32)
    for i, w in enumerate(progress_bar(wavs, total=n, enabled=progress, desc="teacher (resemblyzer)", leave=False)):
        x = preprocess_wav(w, source_sr=SAMPLE_RATE)
        if len(x) < SAMPLE_RATE * 0.5:          # VAD removed (almost) everything: use the normalised signal
            x = untrimmed(w)
        out[i] = enc.embed_utterance(x)
    return out


def untrimmed(wav: np.ndarray) -> np.ndarray:
    """resemblyzer's preprocess_wav without its silence trimming (resemblyzer 0.1.4's preprocess_wav has
    no switch for it): resampled to the encoder's rate and volume-normalised as preprocess_wav does."""
    import librosa
    from resemblyzer.audio import audio_norm_target_dBFS, normalize_volume, sampling_rate

    x = librosa.resample(wav, orig_sr=SAMPLE_RATE, target_sr=sampling_rate) if sampling_rate != SAMPLE_RATE else wav
    return normalize_volume(x, audio_norm_target_dBFS, increase_only=True)


def embed_learn2diss(wavs: Iterable[np.ndarray], n: int, ckpt: str, progress: bool = True) -> np.ndarray:
    """(n, D) utterance embeddings (h) of a Learn2Diss checkpoint for ``n`` float 16 kHz waveforms."""
    from upstream.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt, expected_model="learn2diss")
    model.eval()
    embs = []
    with torch.no_grad():
        for w in progress_bar(wavs, total=n, enabled=progress, desc="teacher (learn2diss)", leave=False):
            w = torch.as_tensor(w, dtype=torch.float32)[None]
            embs.append(model(w, torch.tensor([w.shape[1]])).utterance[0].float().numpy())
    return np.stack(embs).astype(np.float32)


def parse_teacher(spec: str) -> tuple[str, str]:
    """``resemblyzer`` | ``learn2diss:<checkpoint dir>`` -> (kind, argument: the directory resolved as
    upstream.facts.resolve_path does, from the working directory, else the repo); TeacherError otherwise."""
    from upstream.facts import resolve_path

    kind, _, arg = spec.partition(":")
    if kind not in TEACHERS:
        raise TeacherError(f"unknown teacher {spec!r}; use one of: resemblyzer, learn2diss:<checkpoint dir>")
    if kind == "learn2diss":
        if not arg:
            raise TeacherError("teacher=learn2diss:<checkpoint dir> needs the directory of a learn2diss checkpoint")
        ck = resolve_path(arg)
        if not (ck / "config.json").exists():
            raise TeacherError(f"teacher checkpoint {ck}/config.json not found")
        arg = str(ck)
    return kind, arg


def embed(spec: str, wavs: Iterable[np.ndarray], n: int, progress: bool = True) -> np.ndarray:
    """The teacher ``spec``'s embeddings of ``n`` float 16 kHz waveforms."""
    kind, arg = parse_teacher(spec)
    if kind == "resemblyzer":
        return embed_resemblyzer(wavs, n, progress)
    return embed_learn2diss(wavs, n, arg, progress)


def teacher_embeddings(spec: str, bank: AudioBank, cache_dir: Path, progress: bool = True) -> tuple[np.ndarray, str]:
    """-> ((N, D) embeddings, description). Cached as cache_dir/teacher_<kind>.npy + .json."""
    kind, arg = parse_teacher(spec)
    cache_dir = Path(cache_dir)
    f = cache_dir / f"teacher_{kind}.npy"
    fj = f.with_suffix(".json")
    desc = TEACHERS[kind] + (f" ({arg})" if arg else "")
    if f.exists() and fj.exists():
        meta = json.loads(fj.read_text())
        if meta.get("spec") == spec and meta.get("audio") == bank.fingerprint:
            return np.load(f, allow_pickle=False), desc
    emb = embed(spec, (bank.wav(i).numpy() for i in range(len(bank))), len(bank), progress)
    if not np.isfinite(emb).all():
        raise TeacherError(f"teacher {spec} produced non-finite embeddings")
    atomic_save_npy(f, emb)
    fj.write_text(json.dumps({"spec": spec, "audio": bank.fingerprint, "dim": int(emb.shape[1])}))
    return emb, desc


def whiten_targets(emb: np.ndarray, shrink: float = 0.1, dims: int = 0) -> tuple[np.ndarray, dict]:
    """Centre and whiten teacher embeddings, then L2-normalise: (N, D) -> (N, D), stats.

    Raw d-vectors share one large mean direction (resemblyzer on the small corpus: cosine 0.82 to
    their mean), so 1 - cos to them is small for any embedding near that mean and the student
    never has to tell speakers apart. Whitening: ZCA with the covariance shrunk towards its mean
    eigenvalue (``shrink``; stable when N is not much larger than D), so every direction weighs the
    same. ``dims`` > 0 whitens only the top ``dims`` principal components and drops the rest (output
    (N, dims)): with few training speakers most of the D directions vary *within* a speaker, and
    whitening all of them lets that noise dominate the target (resemblyzer on the small corpus, 80
    speakers: speakers explain 52 % of the centred targets' variance, 24 % after whitening all 256
    directions, 61 % after whitening the top 16). Returned stats: mean cosine to the mean before and
    after, and the share of variance kept by the ``dims`` components (1.0 when dims = 0).

    >>> rng = np.random.default_rng(0)
    >>> raw = 3.0 + rng.normal(size=(500, 16))
    >>> w, st = whiten_targets(raw)
    >>> st["cos_to_mean_before"] > 0.9, abs(st["cos_to_mean_after"]) < 0.1
    (True, True)
    """
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise TeacherError(f"teacher embeddings must be (N >= 2, D), got shape {x.shape}")

    def cos_to_mean(z: np.ndarray) -> float:
        m = z.mean(0)
        return float((z @ m / (np.linalg.norm(z, axis=1) * np.linalg.norm(m) + 1e-12)).mean())

    if not 0 <= dims <= x.shape[1]:
        raise TeacherError(f"teacher_pca={dims}: must be 0 (whiten all) or 1..{x.shape[1]} (the teacher's size)")
    mu = x.mean(0)
    xc = x - mu
    kept = 1.0
    if dims:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        kept = float((s[:dims] ** 2).sum() / (s ** 2).sum())
        xc = xc @ vt[:dims].T
    cov = xc.T @ xc / (x.shape[0] - 1)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    vals, vecs = np.linalg.eigh(cov)
    w = vecs @ np.diag(1.0 / np.sqrt(np.maximum(vals, 1e-12))) @ vecs.T
    out = xc @ w
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    return out.astype(np.float32), {"cos_to_mean_before": cos_to_mean(x), "cos_to_mean_after": cos_to_mean(out),
                                    "variance_kept": kept}


TEACHERS: dict[str, str] = {
    "resemblyzer": "resemblyzer GE2E d-vector (pretrained, PyPI wheel, 256-d)",
    "learn2diss": "DUET Learn2Diss utterance encoder (ECAPA-TDNN)",
}
