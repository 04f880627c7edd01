"""upstream/validation.py: every bad waveform gets a ValueError naming the problem and the fix."""
import pytest
import torch

from upstream.validation import MIN_SAMPLES, check_wavs, pad_wavs


def test_good_input_passes_and_casts():
    wavs = check_wavs([torch.randn(16000, dtype=torch.float64), torch.randn(MIN_SAMPLES)])
    assert [w.dtype for w in wavs] == [torch.float32, torch.float32]
    batch, lens = pad_wavs(wavs)
    assert batch.shape == (2, 16000) and lens.tolist() == [16000, MIN_SAMPLES]
    assert torch.all(batch[1, MIN_SAMPLES:] == 0)


@pytest.mark.parametrize("wavs, words", [
    ([torch.zeros(0)], ["empty", "drop it"]),
    ([torch.randn(399)], ["399 samples", "at least 400", "pad"]),
    ([torch.randn(16000), torch.randn(100)], ["waveform 1", "100 samples"]),
    ([torch.tensor([0.0] * 500 + [float("nan")] * 3)], ["3 NaN", "first at sample 500", "nan_to_num"]),
    ([torch.tensor([0.1] * 500 + [float("inf")])], ["1 Inf", "nan_to_num"]),
    ([torch.randn(2, 16000)], ["2-channel", "mix down to mono", "wav.mean(dim=0)"]),
    ([torch.randn(16000, 2)], ["2-channel", "wav.mean(dim=1)"]),
    ([torch.randn(1, 16000)], ["(1, 16000)", "reshape(-1)"]),
    ([(torch.randn(16000) * 3000).to(torch.int16)], ["int16", "32768", "soundfile"]),
    ([torch.randint(0, 5, (16000,))], ["integer dtype torch.int64"]),
    (torch.randn(2, 16000), ["list of 1-D waveforms", "mono"]),
    (torch.randn(16000), ["pass [wav]"]),
    ([], ["empty list"]),
    ([[0.0] * 1000], ["list", "torch.as_tensor"]),
])
def test_bad_input_says_what_and_how(wavs, words):
    with pytest.raises(ValueError) as e:
        check_wavs(wavs)
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)


def test_declared_sample_rate():
    check_wavs([torch.randn(1000)], sample_rate=16000)
    with pytest.raises(ValueError, match=r"8000 Hz.*16000 Hz.*torchaudio.functional.resample\(wav, 8000, 16000\)"):
        check_wavs([torch.randn(1000)], sample_rate=8000)
