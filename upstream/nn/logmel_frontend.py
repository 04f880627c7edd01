"""Log-mel front-end (MelHuBERT, Lin et al. 2023): 80 log-mel bins, 25 ms window, 10 ms hop,
two frames stacked to one 20 ms frame, then LayerNorm and a linear projection to the model width.

Output frames are exactly those of the wav2vec2/HuBERT CNN (`conv_frontend`): one frame per 320
samples, `floor((S - 400) / 320) + 1` frames for S samples, so the 50 Hz k-means label grid and
every output-length computation stay the same. Why: the mel frames number M = (S - 400) // 160 + 1
(window 400, hop 160, no centre padding) and ceil(M / 2) stacked frames equal (S - 400) // 320 + 1
for every S >= 400. When M is odd the last stacked frame repeats its one mel frame. In the
convolution arithmetic of `conv_output_lengths` this is kernels (400, 1), strides (160, 2).

Padding does not leak: mel frame j reads samples [160 j, 160 j + 400) only (no centre padding, no
dither, no statistic over time), and the stacking gathers mel frames below each item's own count.
Frames at or beyond the output length are zeroed.

Weights: LayerNorm(2 * n_mels) + Linear(2 * n_mels, out_dim) (~31 k parameters at 80 bins and
192 wide, against ~250 k and ~60 % of the forward MACs for the compact raw-waveform CNN).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .conv_frontend import checked_lengths, conv_output_lengths
from ..facts import SAMPLE_RATE
from .masking import lengths_to_mask, mask_time


WIN = SAMPLE_RATE // 40    # 25 ms
HOP = SAMPLE_RATE // 100   # 10 ms
STACK = 2       # 2 x 10 ms -> 20 ms


def logmel_output_lengths(wav_len: Tensor) -> Tensor:
    """Stacked log-mel frames of `wav_len` samples (= the HuBERT CNN's output lengths).

    >>> logmel_output_lengths(torch.tensor([399, 400, 719, 720, 16000])).tolist()
    [0, 1, 1, 2, 49]
    """
    return conv_output_lengths(wav_len, (WIN, 1), (HOP, STACK))


class LogMelFrontEnd(nn.Module):
    """Raw waveform -> stacked log-mel -> LayerNorm -> Linear.

    forward(wav (B, S) float, wav_len (B,) long) -> (features (B, T, D), lengths (B,) long);
    `conv_features(...)` also returns the stacked log-mel (B, T, 2 * n_mels) (the "CNN output" of
    the conv front-end's interface, for training targets / analysis).

    Example:
        >>> fe = LogMelFrontEnd(out_dim=16)
        >>> y, n = fe(torch.randn(2, 16000), torch.tensor([16000, 8000]))
        >>> tuple(y.shape), n.tolist()
        ((2, 49, 16), [49, 24])
    """

    kernels = (WIN, 1)         # the length arithmetic, in `conv_output_lengths` form
    strides = (HOP, STACK)

    def __init__(self, n_mels: int = 80, out_dim: int = 768, dropout: float = 0.0):
        super().__init__()
        import torchaudio.functional as AF

        self.n_mels = n_mels
        # torchaudio.transforms.MelSpectrogram's computation (hann window, HTK mel, power 2) with
        # non-persistent buffers, so checkpoints hold only learned weights
        self.register_buffer("window", torch.hann_window(WIN), persistent=False)
        fb = AF.melscale_fbanks(WIN // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE)
        self.register_buffer("mel_fb", fb, persistent=False)              # (n_freqs, n_mels)
        self.conv_out_dim = STACK * n_mels
        self.layer_norm = nn.LayerNorm(self.conv_out_dim)
        self.projection = nn.Linear(self.conv_out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = out_dim

    @property
    def rate(self) -> int:
        """Samples per output frame (320, as the HuBERT CNN)."""
        return HOP * STACK

    @property
    def receptive_field(self) -> int:
        """Samples needed for one output frame (400; a stacked frame reads up to 560)."""
        return WIN

    def output_lengths(self, wav_len: Tensor) -> Tensor:
        return logmel_output_lengths(wav_len)

    def log_mel(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        """-> (stacked log-mel (B, T, 2 * n_mels), lengths (B,)); padded frames zeroed."""
        wav_len, out_len = checked_lengths(self, wav, wav_len)
        t_out = int(out_len.max().item())
        need = (STACK * t_out - 1) * HOP + WIN        # samples for 2 * t_out mel frames
        if wav.shape[1] < need:
            wav = nn.functional.pad(wav, (0, need - wav.shape[1]))
        with torch.autocast(wav.device.type, enabled=False):
            spec = torch.stft(wav[:, :need].float(), WIN, HOP, WIN, self.window, center=False,
                              return_complex=True).abs().pow(2)          # (B, n_freqs, M)
            logmel = torch.log(spec.transpose(1, 2) @ self.mel_fb + 1e-6)  # (B, M, n_mels)
        n_mel = torch.div(wav_len - WIN, HOP, rounding_mode="floor") + 1   # valid mel frames
        idx = torch.arange(STACK * t_out, device=wav.device).unsqueeze(0)
        idx = torch.minimum(idx, (n_mel - 1).unsqueeze(1))              # odd count: repeat the last
        stacked = torch.gather(logmel, 1, idx.unsqueeze(-1).expand(-1, -1, self.n_mels))
        stacked = stacked.reshape(wav.shape[0], t_out, self.conv_out_dim)
        return mask_time(stacked, lengths_to_mask(out_len, t_out)), out_len

    def conv_features(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> (projected (B, T, D), stacked log-mel (B, T, 2 * n_mels), lengths (B,))."""
        feats, out_len = self.log_mel(wav, wav_len)
        mask = lengths_to_mask(out_len, feats.shape[1])
        proj = self.dropout(self.projection(self.layer_norm(feats)))
        return mask_time(proj, mask), feats, out_len

    def forward(self, wav: Tensor, wav_len: Tensor) -> tuple[Tensor, Tensor]:
        proj, _, out_len = self.conv_features(wav, wav_len)
        return proj, out_len
