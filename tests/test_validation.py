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


@pytest.mark.parametrize("wav, words", [
    (torch.zeros(0), ["waveform 1 (spk2/b.wav)", "empty", "re-create the file"]),
    (torch.tensor([0.1] * 500 + [float("nan")]), ["waveform 1 (spk2/b.wav)", "1 NaN", "invalid", "re-create"]),
    (torch.tensor([0.1] * 500 + [float("-inf")] * 2), ["(spk2/b.wav)", "2 Inf", "first at sample 500"]),
    (torch.randn(2, 16000), ["waveform 1 (spk2/b.wav)", "2-channel", "sox spk2/b.wav -r 16000 -c 1 spk2/b-16k.wav"]),
    (torch.randn(100), ["waveform 1 (spk2/b.wav)", "100 samples"]),
])
def test_bad_input_names_the_file(wav, words):
    """A caller that knows the files (names=) gets them in every message, with the fix."""
    with pytest.raises(ValueError) as e:
        check_wavs([torch.randn(16000), wav], names=["spk1/a.wav", "spk2/b.wav"])
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert "spk1/a.wav" not in msg  # the good file is not blamed


def test_wrong_rate_names_the_files_and_the_sox_fix():
    with pytest.raises(ValueError) as e:
        check_wavs([torch.randn(1000)], sample_rate=44100, names=["spk1/a.wav"])
    msg = str(e.value)
    assert "44100 Hz (spk1/a.wav)" in msg and "sox spk1/a.wav -r 16000 -c 1 spk1/a-16k.wav" in msg, msg
    with pytest.raises(ValueError) as e:
        check_wavs([torch.randn(1000)] * 5, sample_rate=8000, names=[f"u{i}.wav" for i in range(5)])
    msg = str(e.value)
    assert "(u0.wav, u1.wav, u2.wav and 2 more)" in msg and "sox in.wav -r 16000 -c 1 out.wav" in msg, msg


def test_names_must_match_the_waveforms():
    with pytest.raises(ValueError, match="2 names for 1 waveforms"):
        check_wavs([torch.randn(1000)], names=["a.wav", "b.wav"])
    with pytest.raises(ValueError, match="one file name per waveform"):
        check_wavs([torch.randn(1000)], names="a.wav")
    assert len(check_wavs([torch.randn(1000)], names=["a.wav"])) == 1
