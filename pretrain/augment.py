"""Waveform augmentation: an offline bank of noise, babble and room impulse responses.

``AugmentBank.build(bank_dir, audio, cfg)`` makes the bank once (seeded) and stores it as
safetensors + JSON; ``Augmenter(bank, cfg)(wav, gen)`` then perturbs a fraction ``prob`` of the
utterances it sees (JOOCI: 12.5 %, at high SNR), choosing noise / babble / reverb uniformly.

- noise: coloured Gaussian noise (white, pink 1/f, brown 1/f²), 4 s clips
- babble: sums of 3–6 training utterances (other speakers talking), 4 s clips
- reverb: synthetic RIRs — exponentially decaying noise with RT60 in [0.2, 0.8] s and a direct path

No real noise/RIR corpus (MUSAN, RIRS_NOISES) is reachable here; these are the documented stand-ins.
``TwoViews`` is the stronger perturbation for Barlow Twins' two views: random gain, band-limiting
filter, additive noise at a moderate SNR, reverb and time masking, each with its own probability.
``SpeakerPerturb`` changes the voice but not the words or their timing (random vocal-tract-length
warp of the spectral envelope, VTLP-style, + gain): the student of a content objective sees the
perturbed input while its targets come from the clean one (ContentVec, Qian et al. 2022; Spin,
Chang et al. 2023), so speaker-specific cues stop predicting the targets.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import Tensor
from upstream.facts import SAMPLE_RATE as SR
from upstream.facts import atomic_write_bytes, atomic_write_text



@dataclass
class AugmentConfig:
    prob: float = 0.125                 # fraction of utterances perturbed
    snr_db: tuple[float, float] = (15.0, 30.0)   # high SNR
    kinds: tuple[str, ...] = ("noise", "babble", "reverb")
    n_noise: int = 24
    n_babble: int = 24
    n_rir: int = 24
    clip_s: float = 4.0
    seed: int = 0


def _colored_noise(n: int, exponent: float, gen: torch.Generator) -> Tensor:
    white = torch.randn(n, generator=gen)
    if exponent == 0:
        return white
    spec = torch.fft.rfft(white)
    f = torch.arange(spec.shape[0], dtype=torch.float32).clamp_min(1.0)
    spec = spec / f.pow(exponent / 2)
    x = torch.fft.irfft(spec, n=n)
    return x / x.std().clamp_min(1e-8)


def _rir(rt60: float, gen: torch.Generator) -> Tensor:
    n = int(rt60 * SR)
    t = torch.arange(n, dtype=torch.float32) / SR
    decay = torch.exp(-6.9078 * t / rt60)                 # -60 dB at rt60
    h = torch.randn(n, generator=gen) * decay
    pre = int(0.002 * SR)
    h[:pre] = 0
    h[0] = 1.0                                            # direct path
    return h / h.norm()


class AugmentBank:
    def __init__(self, tensors: dict[str, Tensor], meta: dict):
        self.noise = [tensors[f"noise.{i}"] for i in range(meta["n_noise"])]
        self.babble = [tensors[f"babble.{i}"] for i in range(meta["n_babble"])]
        self.rir = [tensors[f"rir.{i}"] for i in range(meta["n_rir"])]
        self.meta = meta

    @classmethod
    def build(cls, out_dir: str | Path, audio, cfg: AugmentConfig) -> "AugmentBank":
        """``audio``: an ``AudioBank`` (babble is made from its utterances). Reuses an existing bank."""
        out_dir = Path(out_dir)
        f_t, f_j = out_dir / "augment.safetensors", out_dir / "augment.json"
        if f_t.exists() and f_j.exists():
            meta = json.loads(f_j.read_text())
            if meta.get("config") == json.loads(json.dumps(asdict(cfg))) and meta.get("audio") == audio.fingerprint:
                return cls(load_file(str(f_t)), meta)
        out_dir.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(cfg.seed + 4242)
        n = int(cfg.clip_s * SR)
        tensors: dict[str, Tensor] = {}
        for i in range(cfg.n_noise):
            tensors[f"noise.{i}"] = _colored_noise(n, [0.0, 1.0, 2.0][i % 3], gen)
        for i in range(cfg.n_babble):
            k = int(torch.randint(3, 7, (1,), generator=gen))
            mix = torch.zeros(n)
            for _ in range(k):
                u = int(torch.randint(len(audio), (1,), generator=gen))
                w = audio.wav(u)
                if len(w) > n:
                    s = int(torch.randint(len(w) - n, (1,), generator=gen))
                    w = w[s:s + n]
                w = w / w.std().clamp_min(1e-6)
                mix[:len(w)] += w
            tensors[f"babble.{i}"] = mix / mix.std().clamp_min(1e-6)
        for i in range(cfg.n_rir):
            rt = 0.2 + 0.6 * float(torch.rand(1, generator=gen))
            tensors[f"rir.{i}"] = _rir(rt, gen)
        meta = {"config": json.loads(json.dumps(asdict(cfg))), "audio": audio.fingerprint,
                "n_noise": cfg.n_noise, "n_babble": cfg.n_babble, "n_rir": cfg.n_rir}
        atomic_write_bytes(f_t, save({k: v.contiguous() for k, v in tensors.items()}))
        atomic_write_text(f_j, json.dumps(meta))
        return cls(tensors, meta)


def add_at_snr(wav: Tensor, noise: Tensor, snr_db: float, gen: torch.Generator) -> Tensor:
    n = wav.shape[0]
    if noise.shape[0] < n:
        noise = noise.repeat(math.ceil(n / noise.shape[0]))
    s = int(torch.randint(0, noise.shape[0] - n + 1, (1,), generator=gen))
    noise = noise[s:s + n]
    p_s = wav.pow(2).mean().clamp_min(1e-10)
    p_n = noise.pow(2).mean().clamp_min(1e-10)
    return wav + noise * torch.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))


def reverberate(wav: Tensor, rir: Tensor) -> Tensor:
    n = wav.shape[0]
    m = n + rir.shape[0] - 1
    L = 1 << (m - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(wav, L) * torch.fft.rfft(rir, L), L)[:n]
    return y * (wav.norm() / y.norm().clamp_min(1e-8))


def band_limit(wav: Tensor, low: float | None = None, high: float | None = None, order: int = 4) -> Tensor:
    """Zero-phase Butterworth-shaped low/high-pass in the frequency domain (one FFT each way)."""
    n = wav.shape[0]
    spec = torch.fft.rfft(wav)
    f = torch.fft.rfftfreq(n, 1.0 / SR)
    gain = torch.ones_like(f)
    if high is not None:
        gain = gain / torch.sqrt(1 + (f / high) ** (2 * order))
    if low is not None:
        gain = gain / torch.sqrt(1 + (low / f.clamp_min(1e-3)) ** (2 * order))
    return torch.fft.irfft(spec * gain, n=n)


def _pick(items: list[Tensor], gen: torch.Generator) -> Tensor:
    return items[int(torch.randint(len(items), (1,), generator=gen))]


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


class Augmenter:
    """Perturbs ``prob`` of the waveforms it is given (one kind each); the rest pass unchanged."""

    def __init__(self, bank: AugmentBank, cfg: AugmentConfig):
        self.bank, self.cfg = bank, cfg

    def __call__(self, wav: Tensor, gen: torch.Generator) -> Tensor:
        if float(torch.rand(1, generator=gen)) >= self.cfg.prob:
            return wav
        kind = self.cfg.kinds[int(torch.randint(len(self.cfg.kinds), (1,), generator=gen))]
        snr = _uniform(*self.cfg.snr_db, gen)
        if kind == "noise":
            return add_at_snr(wav, _pick(self.bank.noise, gen), snr, gen)
        if kind == "babble":
            return add_at_snr(wav, _pick(self.bank.babble, gen), snr, gen)
        if kind == "reverb":
            return reverberate(wav, _pick(self.bank.rir, gen))
        raise ValueError(f"unknown augmentation kind {kind!r}; choose from noise, babble, reverb")


@dataclass
class ViewConfig:
    p_gain: float = 0.8
    gain_db: float = 6.0
    p_filter: float = 0.5
    p_noise: float = 0.5
    snr_db: tuple[float, float] = (5.0, 20.0)
    p_reverb: float = 0.3
    p_mask: float = 0.5
    mask_frac: float = 0.1


class TwoViews:
    """Barlow Twins' view perturbation: gain, band-limiting, noise, reverb, time masking."""

    def __init__(self, bank: AugmentBank, cfg: ViewConfig):
        self.bank, self.cfg = bank, cfg

    def __call__(self, wav: Tensor, gen: torch.Generator) -> Tensor:
        c = self.cfg
        w = wav
        if float(torch.rand(1, generator=gen)) < c.p_filter:
            if float(torch.rand(1, generator=gen)) < 0.5:
                w = band_limit(w, high=_uniform(2000.0, 6000.0, gen))
            else:
                w = band_limit(w, low=_uniform(100.0, 600.0, gen))
        if float(torch.rand(1, generator=gen)) < c.p_reverb:
            w = reverberate(w, _pick(self.bank.rir, gen))
        if float(torch.rand(1, generator=gen)) < c.p_noise:
            pool = self.bank.noise if float(torch.rand(1, generator=gen)) < 0.5 else self.bank.babble
            w = add_at_snr(w, _pick(pool, gen), _uniform(*c.snr_db, gen), gen)
        if float(torch.rand(1, generator=gen)) < c.p_mask:
            L = int(w.shape[0] * c.mask_frac * float(torch.rand(1, generator=gen)))
            if L > 0:
                s = int(torch.randint(0, w.shape[0] - L + 1, (1,), generator=gen))
                w = w.clone()
                w[s:s + L] = 0
        if float(torch.rand(1, generator=gen)) < c.p_gain:
            w = w * 10 ** (_uniform(-c.gain_db, c.gain_db, gen) / 20)
        return w.clamp(-1.0, 1.0)


def formant_warp(wav: Tensor, alpha: float, n_fft: int = 512, hop: int = 128) -> Tensor:
    """Warp the frequency axis of the magnitude spectrum by ``alpha`` (> 1: formants move up, as
    for a shorter vocal tract), keeping the phase, the length and the timing (STFT -> iSTFT).

    Magnitude at bin f becomes the original magnitude at f / alpha (linear interpolation; bins
    read beyond Nyquist are 0). ``alpha = 1`` returns the input up to STFT round-off.
    """
    n = wav.shape[0]
    if n < n_fft:
        return wav
    win = torch.hann_window(n_fft)
    spec = torch.stft(wav, n_fft, hop, n_fft, win, center=True, return_complex=True)   # (F, T)
    mag, phase = spec.abs(), torch.angle(spec)
    nb = mag.shape[0]
    src = torch.arange(nb, dtype=torch.float32) / alpha
    lo = src.floor().long().clamp(max=nb - 1)
    hi = (lo + 1).clamp(max=nb - 1)
    frac = (src - lo.float()).unsqueeze(1)
    warped = mag[lo] * (1 - frac) + mag[hi] * frac
    warped[src > nb - 1] = 0.0
    out = torch.istft(torch.polar(warped, phase), n_fft, hop, n_fft, win, center=True, length=n)
    return out * (wav.norm() / out.norm().clamp_min(1e-8))


@dataclass
class SpeakerPerturbConfig:
    prob: float = 0.8                           # fraction of student inputs perturbed
    alpha: tuple[float, float] = (0.85, 1.18)   # warp factor range (log-uniform)
    gain_db: float = 6.0


def perturb_error(option: str, cfg: SpeakerPerturbConfig) -> str | None:
    """Why ``cfg`` (the recipe option named ``option``: speaker_perturb, voice_perturb, content_perturb)
    is not a usable formant-warp setting, or None. Every recipe's check() asks this before any work."""
    if not 0 <= cfg.prob <= 1:
        return f"{option}.prob={cfg.prob}: use a fraction in [0, 1] (0: off)"
    if len(cfg.alpha) != 2 or not 0 < cfg.alpha[0] <= cfg.alpha[1]:
        return f"{option}.alpha={','.join(map(str, cfg.alpha))}: use LOW,HIGH with 0 < low <= high (e.g. 0.85,1.18)"
    return None


class SpeakerPerturb:
    """callable(wav (S,), gen) -> wav (S,): formant warp + gain on ``prob`` of the inputs."""

    def __init__(self, cfg: SpeakerPerturbConfig, option: str = "speaker_perturb"):
        if (err := perturb_error(option, cfg)) is not None:
            raise ValueError(err)
        self.cfg = cfg

    def _draw(self, gen: torch.Generator) -> tuple[float, float] | None:
        """(warp factor, gain) for one input, or None (left as it is) with probability 1 - prob."""
        c = self.cfg
        if float(torch.rand(1, generator=gen)) >= c.prob:
            return None
        alpha = math.exp(_uniform(math.log(c.alpha[0]), math.log(c.alpha[1]), gen))
        return alpha, 10 ** (_uniform(-c.gain_db, c.gain_db, gen) / 20)

    @staticmethod
    def _apply(wav: Tensor, draw: tuple[float, float] | None) -> Tensor:
        if draw is None:
            return wav
        return (formant_warp(wav, draw[0]) * draw[1]).clamp(-1.0, 1.0)

    def __call__(self, wav: Tensor, gen: torch.Generator) -> Tensor:
        return self._apply(wav, self._draw(gen))

    def pair(self, wav_a: Tensor, wav_b: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Both crops of one utterance through one draw: the same new vocal tract for the two (a new
        voice whose crops still share their speaker), on ``prob`` of the utterances."""
        draw = self._draw(gen)
        return self._apply(wav_a, draw), self._apply(wav_b, draw)
