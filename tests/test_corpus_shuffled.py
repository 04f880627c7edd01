"""The label-shuffled corpus view (harness/corpus/shuffled.py), the PR/ASR negative control: training
transcripts permuted across utterances, dev/test untouched, audio shared, its own corpus id."""
from __future__ import annotations

import os
from pathlib import Path

from harness.corpus.layout import CorpusLayout
from harness.corpus.shuffled import make_label_shuffled, shuffled_root
from harness.superb.sweep import corpus_id_of


def _trans(root: Path, split: str) -> dict[str, str]:
    out = {}
    for t in sorted((root / "LibriSpeech" / split).rglob("*.trans.txt")):
        for line in t.read_text().splitlines():
            utt, _, words = line.partition(" ")
            out[utt] = words
    return out


def _phones(root: Path, split: str) -> dict[str, str]:
    lines = (root / "LibriSpeech" / "phones" / f"{split}.txt").read_text().splitlines()
    return {ln.partition(" ")[0]: ln.partition(" ")[2] for ln in lines if ln.strip()}


def test_training_transcripts_are_permuted_and_nothing_else_changes(tiny_corpus, tmp_path):
    before = _trans(tiny_corpus, "train-clean-100")
    dst = make_label_shuffled(tiny_corpus, shuffled_root(tiny_corpus, tmp_path, seed=0), seed=0)
    assert dst.name == "tiny-shuffled-labels0"
    CorpusLayout(dst).check()
    assert corpus_id_of(dst) != corpus_id_of(tiny_corpus)

    src_train, dst_train = _trans(tiny_corpus, "train-clean-100"), _trans(dst, "train-clean-100")
    assert src_train == before                                              # the source is untouched
    assert dst_train.keys() == src_train.keys() and len(src_train) > 10
    assert sorted(dst_train.values()) == sorted(src_train.values())        # the same transcripts ...
    assert all(dst_train[u] != src_train[u] for u in src_train if list(src_train.values()).count(src_train[u]) == 1)
    for split in ("dev-clean", "test-clean"):                                # ... moved in training only
        assert _trans(dst, split) == _trans(tiny_corpus, split)
        assert _phones(dst, split) == _phones(tiny_corpus, split)
    # phones follow the words: an utterance's new phones are those of the utterance whose words it got
    src_ph, dst_ph = _phones(tiny_corpus, "train-clean-100"), _phones(dst, "train-clean-100")
    by_words = {src_train[u]: src_ph[u] for u in src_train}
    assert all(dst_ph[u] == by_words[dst_train[u]] for u in dst_train)

    flac = next((tiny_corpus / "LibriSpeech" / "train-clean-100").rglob("*.flac"))
    assert os.stat(flac).st_ino == os.stat(dst / flac.relative_to(tiny_corpus)).st_ino    # audio: hard links

    stamp = (dst / "corpus.json").stat().st_mtime_ns
    assert make_label_shuffled(tiny_corpus, dst, seed=0) == dst                           # reused, not redone
    assert (dst / "corpus.json").stat().st_mtime_ns == stamp
    other = make_label_shuffled(tiny_corpus, shuffled_root(tiny_corpus, tmp_path, seed=1), seed=1)
    assert _trans(other, "train-clean-100") != dst_train                                  # the seed matters


def test_speaker_shuffled_view_moves_training_utterances_between_speakers(tiny_corpus, tmp_path):
    from collections import Counter

    from harness.corpus.shuffled import make_speaker_shuffled, speaker_shuffled_root

    dst = make_speaker_shuffled(tiny_corpus, speaker_shuffled_root(tiny_corpus, tmp_path, 0), seed=0)
    lay, src_lay = CorpusLayout(dst), CorpusLayout(tiny_corpus)
    lay.check()
    assert corpus_id_of(dst) != corpus_id_of(tiny_corpus)
    src_files = sorted(src_lay.vox_wav_dir("dev").rglob("*.wav"))
    new_files = sorted(lay.vox_wav_dir("dev").rglob("*.wav"))
    assert len(new_files) == len(src_files) > 10
    spk = lambda root, files: [f.relative_to(root).parts[0] for f in files]        # noqa: E731
    new_spk, src_spk = spk(lay.vox_wav_dir("dev"), new_files), spk(src_lay.vox_wav_dir("dev"), src_files)
    assert Counter(new_spk) == Counter(src_spk)                                 # same speakers, same counts
    old_of = [f.relative_to(lay.vox_wav_dir("dev")).parts[1].split("-")[0] for f in new_files]
    moved = sum(a != b for a, b in zip(new_spk, old_of))
    assert moved > len(new_files) // 2                                          # most now under another speaker
    inodes = {os.stat(f).st_ino for f in src_files}
    assert all(os.stat(f).st_ino in inodes for f in new_files)                  # the same audio, linked
    test_rel = lambda root: sorted(p.relative_to(root) for p in root.rglob("*.wav"))   # noqa: E731
    assert test_rel(lay.vox_wav_dir("test")) == test_rel(src_lay.vox_wav_dir("test"))   # ASV test untouched
    assert lay.veri_test.read_text() == src_lay.veri_test.read_text()
    for line in lay.iden_split.read_text().splitlines():                      # every listed path exists
        rel = line.split()[1]
        assert (lay.vox_wav_dir("dev") / rel).is_file() or (lay.vox_wav_dir("test") / rel).is_file(), rel
    for line in lay.veri_dev.read_text().splitlines():
        _, a, b = line.split()
        assert (lay.vox_wav_dir("dev") / a).is_file() and (lay.vox_wav_dir("dev") / b).is_file()
