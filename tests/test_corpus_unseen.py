"""The unseen-voices evaluation set (``<corpus>/unseen/``): layout, disjointness from every training
split (voices and sentences), voice ranges at or beyond training's, resume, adding it to an older corpus."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.corpus import make_corpus
from harness.corpus.layout import CorpusError, CorpusLayout
from harness.corpus.plan import make_plan, make_unseen_plan, training_voices
from harness.corpus.spec import SIZES
from harness.corpus.text import load_sentences, load_unseen_sentences


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_unseen_layout(tiny_corpus):
    lay = CorpusLayout(tiny_corpus)
    info = lay.check_unseen()
    u = SIZES["tiny"].unseen
    rows = _rows(lay.unseen_manifest)
    assert info["counts"]["speakers"] == u.n_speakers and len(rows) == u.n_speakers * u.utts_per_speaker
    assert {r["speaker"] for r in rows} == set(info["speakers"])
    for r in rows:
        wav, ali = tiny_corpus / r["wav"], tiny_corpus / r["alignment"]
        assert wav == lay.unseen_wav(r["utt_id"]) and ali == lay.alignment("unseen", r["utt_id"])
        i = sf.info(str(wav))
        assert i.samplerate == 16000 and i.frames == int(r["num_samples"])
        segs = [ln.split() for ln in ali.read_text().splitlines()]
        assert float(segs[0][0]) == 0.0 and abs(float(segs[-1][1]) - i.frames / 16000) < 1e-6
        rec = lay.read_unseen_record(r["speaker"], r["utt_id"])
        assert [p for _, _, p in rec["phones"]] == [s[2] for s in segs]
    # the item file: the ABX layout of dev/test (abx_item/abx_wav_dir of split "unseen"), every speaker
    lines = lay.abx_item("unseen").read_text().splitlines()
    assert lines[0] == "#file onset offset #phone prev-phone next-phone speaker" and len(lines) > 200
    items = [ln.split() for ln in lines[1:]]
    assert {it[6] for it in items} == set(info["speakers"])
    assert all((lay.abx_wav_dir("unseen") / f"{it[0]}.wav").is_file() for it in items)
    voices = json.loads(lay.unseen_voices_json.read_text())["voices"]
    assert sorted(voices) == info["speakers"]


def test_unseen_set_is_in_no_training_split(tiny_corpus):
    """No unseen utterance, speaker id or sentence is in the corpus' manifest (every training and test
    split of every layout); no unseen voice is a near-duplicate of a training voice."""
    lay = CorpusLayout(tiny_corpus)
    main, unseen = _rows(lay.manifest), _rows(lay.unseen_manifest)
    assert not {r["utt_id"] for r in main} & {r["utt_id"] for r in unseen}
    assert not {r["speaker"] for r in main} & {r["speaker"] for r in unseen}
    assert not {r["sentence"].lower() for r in main} & {r["sentence"].lower() for r in unseen}
    # the corpus' own training voices (the plan's) vs the voice table written under unseen/
    spec = SIZES["tiny"]
    train = make_plan(spec, 0).voices
    table = json.loads(lay.unseen_voices_json.read_text())["voices"]
    tv = np.stack([v.formant_vector() for v in train])
    for name, v in table.items():
        f = np.array([x[0] for x in v["formants"][1:6]], dtype=float)
        assert np.linalg.norm(tv - f, axis=1).min() >= spec.min_voice_distance, name
        assert not any(t.variant_text().split("\n", 1)[1] == _variant_body(v) for t in train)


def _variant_body(v: dict) -> str:
    """A voice-table entry's variant text without its name line (to compare parameters only)."""
    from harness.corpus.voices import Voice

    voice = Voice(**{**v, "formants": tuple(tuple(f) for f in v["formants"])})
    return voice.variant_text().split("\n", 1)[1]


@pytest.mark.parametrize("size", ["tiny", "small", "medium", "large"])
def test_unseen_plans_of_every_size(size):
    """For every size: sentences from a list that shares none with the training list; voices no
    near-duplicate of any training voice of any size (same seed), at or beyond the training ranges."""
    spec = SIZES[size]
    plan = make_unseen_plan(spec, 0)
    assert len(plan.utts) == spec.unseen.n_speakers * spec.unseen.utts_per_speaker
    train_text = {s.lower() for s in load_sentences()}
    assert not {u.sentence.lower() for u in plan.utts} & train_text
    assert len({u.sentence for u in plan.utts}) == min(len(plan.utts), len(load_unseen_sentences()))
    train = training_voices(spec, 0)
    assert train[:spec.n_speakers] == make_plan(spec, 0).voices if size != "large" else len(train) == spec.n_speakers
    tv = np.stack([v.formant_vector() for v in train])
    for v in plan.voices:
        assert np.linalg.norm(tv - v.formant_vector(), axis=1).min() >= spec.min_voice_distance
    for g in ("female", "male"):
        t = [v for v in train if v.gender == g]
        un = [v for v in plan.voices if v.gender == g]
        t_mean = np.array([v.formant_vector().mean() for v in t])
        t_pitch = np.array([v.pitch_base for v in t])
        lo, hi = np.percentile(t_mean, [5, 95])
        for v in un:  # the vocal tract outside the central 90 % of training's, the pitch at or past its edge
            m = v.formant_vector().mean()
            assert m > hi if g == "female" else m < lo, (v, lo, hi)
            assert v.pitch_base >= t_pitch.max() - 5 if g == "female" else v.pitch_base <= t_pitch.min() + 2


def test_unseen_sentence_list_is_checked(tmp_path, monkeypatch):
    import harness.corpus.text as text

    bad = tmp_path / "unseen.txt"
    bad.write_text("# header\n" + load_sentences()[5] + "\n")
    monkeypatch.setattr(text, "UNSEEN_SENTENCES_PATH", bad)
    with pytest.raises(ValueError, match="also in .*sentences.txt.*--unseen"):
        text.load_unseen_sentences()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("generation.json", ".lock")}


def test_unseen_resume_and_added_to_an_older_corpus(tiny_corpus, tmp_path):
    """A corpus made before the set existed (no unseen/) gets it added by `make`, every other byte and
    corpus.json's mtime unchanged; an interrupted set (a speaker's record gone, info.json gone) is
    finished to the same bytes."""
    old = tmp_path / "old"
    shutil.copytree(tiny_corpus, old, ignore=shutil.ignore_patterns("unseen"), copy_function=os.link)
    lay = CorpusLayout(old)
    with pytest.raises(CorpusError, match="no \\(complete\\) unseen-voices set.*harness corpus make"):
        lay.check_unseen()
    mtime = lay.corpus_json.stat().st_mtime_ns
    make_corpus(old, size="tiny", seed=0, workers=1, progress=False)
    assert lay.corpus_json.stat().st_mtime_ns == mtime
    want = _tree(tiny_corpus)
    assert _tree(old) == want
    # interrupted: info.json and one speaker's record gone, a wav truncated
    lay.unseen_info_json.unlink()
    lay.unseen_record("U001").unlink()
    wav = lay.unseen_wav("U001-0002")
    wav.write_bytes(wav.read_bytes()[:100])
    with pytest.raises(CorpusError, match="unseen-voices set"):
        lay.check_unseen()
    make_corpus(old, size="tiny", seed=0, workers=1, progress=False)
    assert _tree(old) == want
    # another set in the folder is not silently mixed
    lay.unseen_plan_json.write_text(json.dumps({"size": "tiny", "seed": 7}))
    lay.unseen_info_json.unlink()
    with pytest.raises(CorpusError, match="holds another unseen-voices set"):
        make_corpus(old, size="tiny", seed=0, workers=1, progress=False)
    assert os.path.isdir(lay.unseen)
