"""A fake s3prl upstream shared by the feature-store tests (imported by test files; pytest puts tests/
on the path): ``n_layers`` layers of (B, T, dim) at 160 samples per frame, layer l = base + l, where
base's first three columns are the frame's mean sample, its index and the file's length; optionally an
``other`` key (base * 2, one layer). Counts forwards (one file per forward: it returns no lengths)."""
from __future__ import annotations

import torch


class CountingUpstream(torch.nn.Module):
    def __init__(self, n_layers: int = 3, dim: int = 4, other: bool = True):
        super().__init__()
        self.n_layers, self.dim, self.other = n_layers, dim, other
        self.calls = 0

    def get_downsample_rates(self, key):
        return 160

    def forward(self, wavs):
        self.calls += 1
        t = max(len(w) for w in wavs) // 160
        out = torch.zeros(len(wavs), t, self.dim)
        for b, w in enumerate(wavs):
            n = len(w) // 160
            out[b, :n, 0] = w[: n * 160].view(n, 160).mean(1)
            out[b, :n, 1] = torch.arange(n, dtype=torch.float32)
            out[b, :n, 2] = float(len(w))
        res = {"hidden_states": [out + layer for layer in range(self.n_layers)]}
        if self.other:
            res["other"] = [out * 2]
        return res


def write_wavs(root) -> dict:
    """Four seeded noise files (1, 0.5, 0.75 and 1.5 s at 16 kHz) under ``root/wav``: {file id: path}."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = {}
    for i, n in enumerate([16000, 8000, 12000, 24000]):
        p = root / "wav" / f"utt{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, rng.standard_normal(n).astype("float32") * 0.1, 16000)
        paths[f"utt{i}"] = p
    return paths
