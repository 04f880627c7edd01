"""Batch source (pretrain/data.py): crops, views, label alignment."""
import numpy as np
import pytest
import torch

from pretrain.data import HOP, WIN, AudioBank, CropBatches, DataConfig, FrameLabels, frames


def fake_bank(lengths, seed=0):
    """An AudioBank over random int16 audio (no files): the attributes CropBatches reads."""
    rng = np.random.default_rng(seed)
    bank = object.__new__(AudioBank)
    bank.lengths = np.asarray(lengths, dtype=np.int64)
    bank.offsets = np.concatenate([[0], np.cumsum(bank.lengths)[:-1]]).astype(np.int64)
    bank.audio = rng.integers(-3000, 3000, int(bank.lengths.sum()), dtype=np.int16)
    bank.paths = [f"u{i}.flac" for i in range(len(lengths))]
    bank.fingerprint = "fake"
    return bank


LENGTHS = [1040, 1100, 5000, 16000, 31000, 32000, 32320, 64000, 90000, 200000]


def test_learn2diss_views_share_no_sample():
    """Default two-crop views (Learn2Diss's InfoNCE) never overlap, for short and long utterances."""
    bank = fake_bank(LENGTHS)
    lab = FrameLabels(np.arange(sum(frames(n) for n in LENGTHS)) % 7, [frames(n) for n in LENGTHS], 7, "k")
    src = CropBatches(bank, DataConfig(crop_s=2.0, batch_size=len(LENGTHS), views=2), seed=3, labels={"k": lab})
    for step in range(20):
        b = src.get(step, 0)
        for j, i in enumerate(b["utt"].tolist()):
            a0, a1 = int(b["start"][j]), int(b["start"][j] + b["wav_len"][j])
            b0, b1 = int(b["start_b"][j]), int(b["start_b"][j] + b["wav_b_len"][j])
            assert a1 <= b0 or b1 <= a0, (LENGTHS[i], (a0, a1), (b0, b1))
            assert min(a1 - a0, b1 - b0) >= WIN and a0 % HOP == 0 and b0 % HOP == 0
            assert 0 <= a0 and a1 <= LENGTHS[i] and b1 <= LENGTHS[i]
            # the audio really is the utterance's samples at those positions
            u = bank[i].astype(np.float32) / 32768.0
            np.testing.assert_array_equal(b["wav"][j, :a1 - a0].numpy(), u[a0:a1])
            np.testing.assert_array_equal(b["wav_b"][j, :b1 - b0].numpy(), u[b0:b1])
            # frame labels follow each view's own crop
            full = lab[i]
            nb = frames(b1 - b0)
            assert b["labels_b.k"][j, :nb].tolist() == full[b0 // HOP: b0 // HOP + nb].tolist()


def test_long_utterances_give_full_length_disjoint_crops():
    bank = fake_bank([64000] * 8)
    src = CropBatches(bank, DataConfig(crop_s=2.0, batch_size=8, views=2), seed=0)
    b = src.get(0, 0)
    assert b["wav_len"].tolist() == b["wav_b_len"].tolist() == [32000] * 8
    assert (b["start"] != b["start_b"]).all()


def test_same_crop_views_and_overlapping_option_still_available():
    bank = fake_bank([64000] * 4)
    same = CropBatches(bank, DataConfig(batch_size=4, views=2, same_crop=True), seed=0).get(0, 0)
    assert torch.equal(same["start"], same["start_b"]) and torch.equal(same["wav"], same["wav_b"])
    free = CropBatches(bank, DataConfig(batch_size=4, views=2, disjoint_views=False), seed=0).get(0, 0)
    assert free["wav_b"].shape == (4, 32000)


def test_formant_warp_moves_the_spectrum_and_keeps_length():
    from pretrain.augment import formant_warp
    t = torch.arange(16000) / 16000
    wav = 0.3 * torch.sin(2 * torch.pi * 500 * t) + 0.1 * torch.sin(2 * torch.pi * 1500 * t)
    same = formant_warp(wav, 1.0)
    assert same.shape == wav.shape and float((same - wav).abs().max()) < 1e-3
    up = formant_warp(wav, 1.2)
    assert up.shape == wav.shape
    f = torch.fft.rfftfreq(16000, 1 / 16000)
    peak = float(f[torch.fft.rfft(up).abs().argmax()])
    assert abs(peak - 600) <= 20                       # 500 Hz component moved by x1.2


def test_speaker_perturbed_student_input_keeps_clean_labels():
    """ContentVec-style: the batch's audio is perturbed, its frame labels are the clean audio's."""
    from pretrain.augment import SpeakerPerturb, SpeakerPerturbConfig
    bank = fake_bank([20000, 40000, 64000])
    lab = FrameLabels(np.arange(sum(frames(n) for n in bank.lengths)) % 5, [frames(n) for n in bank.lengths], 5, "k")
    cfg = DataConfig(crop_s=1.0, batch_size=3)
    pert = CropBatches(bank, cfg, seed=1, labels={"k": lab},
                       augment=SpeakerPerturb(SpeakerPerturbConfig(prob=1.0))).get(0, 0)
    for j, i in enumerate(pert["utt"].tolist()):
        s0, n = int(pert["start"][j]), int(pert["wav_len"][j])
        clean = bank[i][s0:s0 + n].astype(np.float32) / 32768.0
        assert not np.allclose(pert["wav"][j, :n].numpy(), clean, atol=1e-3)        # the voice changed
        assert pert["labels.k"][j, :frames(n)].tolist() == lab[i][s0 // HOP: s0 // HOP + frames(n)].tolist()


def test_aligned_view_is_a_perturbation_of_view_a_crop_and_changes_nothing_else():
    """``aligned_augment`` gets view A's clean crop (same samples, same length) and its output is
    ``wav_a2``; the other keys are those of a source without it (Barlow Twins' split mode)."""
    bank = fake_bank(LENGTHS)
    cfg = DataConfig(crop_s=2.0, batch_size=len(LENGTHS), views=2)
    seen = []

    def double(w, gen):
        seen.append(w.clone())
        return 2 * w

    plain = CropBatches(bank, cfg, seed=5).get(3, 0)
    b = CropBatches(bank, cfg, seed=5, aligned_augment=double).get(3, 0)
    assert b["wav_a2"].shape == b["wav"].shape
    torch.testing.assert_close(b["wav_a2"], 2 * b["wav"], rtol=0, atol=0)
    for j, w in enumerate(seen):
        assert torch.equal(w, b["wav"][j, :len(w)]) and len(w) == int(b["wav_len"][j])
    for k in ("wav", "wav_b", "start", "start_b", "wav_len", "wav_b_len", "utt"):
        assert torch.equal(plain[k], b[k]), k
    assert "wav_a2" not in plain


def _libri_tree(root, layout):
    """``{split: [speaker, ...]}`` -> empty ``LibriSpeech/<split>/<spk>/<chap>/<spk>-<chap>-0000.flac`` files."""
    for split, speakers in layout.items():
        for spk in speakers:
            d = root / "LibriSpeech" / split / spk / "10"
            d.mkdir(parents=True)
            (d / f"{spk}-10-0000.flac").write_bytes(b"")
    return root


def test_exclude_speakers_of_drops_every_voice_of_the_other_corpus(tmp_path):
    from pretrain.data import DataError, corpus_speakers, find_training_audio
    big = _libri_tree(tmp_path / "big", {"train-clean-100": ["100", "101", "250", "251"], "test-clean": ["300"]})
    small = _libri_tree(tmp_path / "small", {"train-clean-100": ["100"], "test-clean": ["101"]})
    assert corpus_speakers(small) == {"100", "101"}
    kept = find_training_audio(big, exclude_eval=False, exclude_speakers_of=small)
    assert [f.parent.parent.name for f in kept] == ["250", "251"]
    assert len(find_training_audio(big, exclude_eval=False)) == 4
    with pytest.raises(DataError, match="nothing left to train on"):
        find_training_audio(small, exclude_eval=False, exclude_speakers_of=big)
    with pytest.raises(DataError, match=r"exclude_speakers_of=.*nowhere.*not found"):
        find_training_audio(big, exclude_eval=False, exclude_speakers_of=tmp_path / "nowhere")


def test_pair_augment_gives_both_views_one_voice_and_leaves_the_aligned_copy_clean():
    """``pair_augment`` (Barlow Twins' voice_perturb) warps view A's and view B's crops with one draw,
    after ``wav_a2`` is taken from the clean crop; a second draw (another utterance) gets another voice."""
    from pretrain.augment import SpeakerPerturb, SpeakerPerturbConfig
    bank = fake_bank([64000] * 4)
    cfg = DataConfig(crop_s=1.0, batch_size=4, views=2, same_crop=True)
    voice = SpeakerPerturb(SpeakerPerturbConfig(prob=1.0, alpha=(0.7, 1.4), gain_db=0.0))
    b = CropBatches(bank, cfg, seed=2, aligned_augment=lambda w, g: w.clone(), pair_augment=voice.pair).get(0, 0)
    for j, i in enumerate(b["utt"].tolist()):
        s0, n = int(b["start"][j]), int(b["wav_len"][j])
        clean = torch.from_numpy(bank[i][s0:s0 + n].astype(np.float32) / 32768.0)
        assert torch.equal(b["wav_a2"][j, :n], clean)                  # the aligned copy: the clean crop
        assert not torch.allclose(b["wav"][j, :n], clean, atol=1e-3)   # the views: another voice
    assert torch.equal(b["wav"], b["wav_b"])                           # same crop, one warp for both views
    gen = torch.Generator().manual_seed(0)
    x = b["wav_a2"][0]
    a1, _ = voice.pair(x, x, gen)
    a2, _ = voice.pair(x, x, gen)
    assert not torch.allclose(a1, a2, atol=1e-3)                       # each draw is a new vocal tract
    with pytest.raises(ValueError, match="views=2"):
        CropBatches(bank, DataConfig(crop_s=1.0, batch_size=4), seed=2, pair_augment=voice.pair)
