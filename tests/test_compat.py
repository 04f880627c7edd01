"""harness.s3prl.compat: each shim that makes s3prl 0.4.18 run on this stack, checked on its own."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from harness.s3prl import compat

compat.install()

import torchaudio  # noqa: E402  (after install, as every DUET entry point does)

SR = 16000


def _tone(seconds: float, freq: float = 220.0, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_install_is_idempotent():
    before = list(sys.meta_path)
    compat.install()
    compat.install()
    assert sys.meta_path == before
    assert sum(isinstance(f, compat._PostImportPatcher) for f in sys.meta_path) == 1


def test_set_audio_backend_is_a_noop():
    assert torchaudio.set_audio_backend("sox_io") is None
    assert "soundfile" in torchaudio.list_audio_backends()


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_load_save_info_roundtrip(tmp_path, ext):
    x = np.stack([_tone(0.5), _tone(0.5, 440, 0.25)])  # (2, frames)
    path = tmp_path / f"a.{ext}"
    torchaudio.save(str(path), torch.from_numpy(x), SR)
    wav, sr = torchaudio.load(path)
    assert sr == SR and wav.dtype == torch.float32 and wav.shape == (2, 8000)
    assert torch.allclose(wav, torch.from_numpy(x), atol=1e-4)  # 16-bit flac / float wav
    part, _ = torchaudio.load(str(path), frame_offset=100, num_frames=50, channels_first=False)
    assert part.shape == (50, 2) and torch.allclose(part[:, 0], wav[0, 100:150])
    meta = torchaudio.info(str(path))
    assert (meta.sample_rate, meta.num_frames, meta.num_channels) == (SR, 8000, 2)
    assert meta.bits_per_sample == (32 if ext == "wav" else 16)


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(RuntimeError, match="nope.wav"):
        torchaudio.load(tmp_path / "nope.wav")


def test_sox_effects_module_channels_rate_gain(tmp_path):
    from torchaudio.sox_effects import apply_effects_file, apply_effects_tensor

    stereo = torch.from_numpy(np.stack([_tone(1.0), np.zeros(SR, np.float32)]))
    mono, sr = apply_effects_tensor(stereo, SR, [["channels", "1"]])
    assert mono.shape == (1, SR) and torch.allclose(mono[0], stereo[0] / 2)
    down, sr = apply_effects_tensor(mono, SR, [["rate", "8000"]])
    assert sr == 8000 and abs(down.shape[1] - 8000) <= 1
    quiet, _ = apply_effects_tensor(mono, SR, [["gain", "-6.0"]])
    assert torch.allclose(quiet, mono * 10 ** (-6 / 20), atol=1e-6)
    sf.write(tmp_path / "s.wav", stereo.T.numpy(), SR, subtype="FLOAT")
    from_file, sr2 = apply_effects_file(str(tmp_path / "s.wav"), [["channels", "1"], ["gain", "-6.0"]])
    assert sr2 == SR and torch.allclose(from_file, quiet, atol=1e-6)
    with pytest.raises(NotImplementedError, match="vad"):
        apply_effects_tensor(mono, SR, [["vad"]])


def test_sox_silence_trims_and_removes_long_pauses():
    """sv_voxceleb1's chain: leading silence trimmed; pauses >= 0.1 s cut, shorter ones kept."""
    from torchaudio.sox_effects import apply_effects_tensor

    def z(s):
        return np.zeros(int(s * SR), np.float32)

    x = np.concatenate([z(0.5), _tone(0.4), z(0.05), _tone(0.4), z(0.3), _tone(0.4), z(0.6)])
    effects = [["silence", "1", "0.1", "0.1%", "-1", "0.1", "0.1%"]]
    y, _ = apply_effects_tensor(torch.from_numpy(x)[None], SR, effects)
    kept = y.shape[1] / SR
    # speech 1.2 s + the 0.05 s gap (too short to cut); the 0.5/0.3/0.6 s silences go
    assert 1.2 <= kept <= 1.35, kept
    assert (y.abs() > 1e-3).float().mean() > 0.85
    # all-silent input: nothing survives (sox does the same)
    empty, _ = apply_effects_tensor(torch.zeros(1, SR), SR, effects)
    assert empty.shape[1] == 0


def test_huggingface_placeholders():
    from huggingface_hub import HfFolder, Repository  # what s3prl's runner imports

    with pytest.raises(RuntimeError, match="offline"):
        HfFolder.get_token()
    with pytest.raises(RuntimeError, match="not supported"):
        Repository(local_dir="x")


def test_namespace_checkpoints_load_with_default_torch_load(tmp_path):
    """s3prl's -e / resume: torch.load(weights_only default) of {'Args': Namespace(...)}."""
    torch.save({"Args": argparse.Namespace(mode="train", seed=3), "Step": 5}, tmp_path / "s.ckpt")
    ckpt = torch.load(tmp_path / "s.ckpt", map_location="cpu")
    assert ckpt["Args"].seed == 3 and ckpt["Step"] == 5


def _fake_voxceleb(root: Path, speakers: list[str], n: int = 2) -> Path:
    lines = []
    for s in speakers:
        for i in range(n):
            p = root / "dev" / "wav" / s / "vid" / f"{i:05d}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, _tone(0.3 + 0.1 * i), SR)
            lines.append(f"1 {s}/vid/{i:05d}.wav")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    return root


def test_voxceleb1_cache_is_per_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("DUET_S3PRL_CACHE", str(tmp_path / "cache"))
    from s3prl.downstream.voxceleb1 import dataset as vox

    a = _fake_voxceleb(tmp_path / "a", ["id10001"])
    b = _fake_voxceleb(tmp_path / "b", ["id10001", "id10002"])
    da = vox.SpeakerClassifiDataset("train", a, str(a / "iden_split.txt"))
    db = vox.SpeakerClassifiDataset("train", b, str(b / "iden_split.txt"))
    assert len(da) == 2 and len(db) == 4  # without the fix b would reuse a's cached list
    assert all(str(b) in p for p in db.dataset)
    assert Path(vox.CACHE_PATH).is_relative_to(tmp_path / "cache")


def test_sv_voxceleb1_length_cache_threads_and_cpu_forward(tmp_path, monkeypatch):
    monkeypatch.setenv("DUET_S3PRL_CACHE", str(tmp_path / "cache"))
    from s3prl.downstream.sv_voxceleb1 import dataset as svd
    from s3prl.downstream.sv_voxceleb1 import expert as sve

    root = _fake_voxceleb(tmp_path / "v", ["id10001", "id10002"], n=3)
    ds = svd.SpeakerVerifi_train({"min_sec": 1000}, ["Voxceleb1"], [root / "dev" / "wav"], None)
    assert len(ds) == 6 and ds.speaker_num == 2
    assert list((tmp_path / "cache" / "sv_voxceleb1").glob("*/.wav_lengths/Voxceleb1_length.pt"))
    assert svd.__file__.endswith("sv_voxceleb1/dataset.py")  # restored after the call
    # the forward's attention_mask.cuda() must follow the (CPU) features
    calls = []
    exp = object.__new__(sve.DownstreamExpert)
    torch.nn.Module.__init__(exp)
    exp.modelrc = {"module": "Identity"}
    exp.connector = torch.nn.Identity()

    def model(x, mask):
        calls.append(mask.device)
        return x.mean(1)

    exp.model = model
    exp.objective = lambda v, y: v.sum()
    feats = [torch.randn(7, 4), torch.randn(5, 4)]
    loss = exp.forward("train", feats, ["u1", "u2"], labels=[0, 1], records={"loss": []})
    assert torch.isfinite(loss) and calls == [torch.device("cpu")]
    assert torch.Tensor.cuda is not None and getattr(sve.DownstreamExpert.forward, compat._MARK)


def test_libriphone_module_registered(tmp_path):
    from s3prl.downstream.ctc.corpus.libriphone import LibriPhoneDataset
    from s3prl.downstream.ctc.text import load_text_encoder

    (tmp_path / "phones.txt").write_text("AH\nB\nK\nT\n")
    (tmp_path / "lex.txt").write_text("CAT K AH T\nTUB T AH B\n")
    for i, words in enumerate(["CAT", "TUB CAT", "CAT CAT TUB"]):
        sf.write(tmp_path / f"{i}.flac", _tone(0.2), SR)
    (tmp_path / "train.csv").write_text("wav_path,transcription\n0.flac,CAT\n1.flac,TUB CAT\n2.flac,CAT CAT TUB\n")
    tok = load_text_encoder("word", str(tmp_path / "phones.txt"))
    ds = LibriPhoneDataset("train.csv", tok, 2, [str(tmp_path / "lex.txt")], str(tmp_path))
    assert len(ds) == 3
    batch = ds[2]  # clamped to the last full bucket
    assert len(batch) == 2 and batch[0][0].endswith(".flac") and Path(batch[0][0]).is_file()
    assert tok.decode(ds[0][0][1]) == "K AH T K AH T T AH B"  # longest first
    (tmp_path / "bad.csv").write_text("wav_path,transcription\n0.flac,DOG\n")
    with pytest.raises(KeyError, match="DOG"):
        LibriPhoneDataset("bad.csv", tok, 1, [str(tmp_path / "lex.txt")], str(tmp_path))

    # s3prl's ctc load_dataset pops num_workers from the shared config: without the fix the
    # second dataloader (dev) silently gets 12 workers
    from s3prl.downstream.ctc import expert

    corpus = {"name": "libriphone", "csv_dir": str(tmp_path), "lexicon": [str(tmp_path / "lex.txt")],
              "train": "train.csv", "dev": "train.csv", "bucketing": True, "batch_size": 2, "num_workers": 0}
    loaders = [expert.load_dataset(split, tok, corpus) for split in ("train", "dev")]
    assert [dl.num_workers for dl in loaders] == [0, 0] and corpus["num_workers"] == 0
    wavs, labels, names = next(iter(loaders[0]))
    assert len(wavs) == 2 and len(labels) == 2
