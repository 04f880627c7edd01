"""The corpus generator on the `tiny` corpus: layouts, s3prl readers, alignments, speakers,
determinism across worker counts, resume, bad input."""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.corpus import CorpusError, GenerationInterrupted, make_corpus
from harness.corpus.layout import ABX_SPLITS, ER_FOLDS, SPLITS, CorpusLayout
from harness.corpus.spec import SIZES


def manifest(root: Path) -> list[dict]:
    with open(CorpusLayout(root).manifest, newline="") as f:
        return list(csv.DictReader(f))


def read_alignment(path: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in path.read_text().splitlines():
        a, b, p = line.split()
        out.append((float(a), float(b), p))
    return out


# --- layouts ------------------------------------------------------------------------------

def test_layouts_complete_and_nonempty(tiny_corpus):
    lay = CorpusLayout(tiny_corpus)
    info = lay.check()
    c = info["counts"]
    assert info["size"] == "tiny" and c["utterances"] == len(manifest(tiny_corpus))
    for s in SPLITS:
        assert c[f"{s}_utterances"] > 0 and lay.bucket_csv(s).stat().st_size > 0
        assert list(lay.libri_split_dir(s).rglob("*.trans.txt")) and list(lay.libri_split_dir(s).rglob("*.flac"))
        assert len(lay.libriphone_csv(s).read_text().splitlines()) > 1
    assert min(c["sid_train"], c["sid_dev"], c["sid_test"]) > 0
    sid_lines = lay.iden_split.read_text().splitlines()
    assert {ln.split()[0] for ln in sid_lines} == {"1", "2", "3"}
    # ASV: test speakers unseen in training (dev/wav), both trial labels present
    train_spk = {p.name for p in lay.vox_dev_wav.iterdir()}
    test_spk = {p.name for p in lay.vox_test_wav.iterdir()}
    assert train_spk and test_spk and not train_spk & test_spk
    trials = [ln.split() for ln in lay.veri_test.read_text().splitlines()]
    assert {t[0] for t in trials} == {"0", "1"}
    for label, a, b in trials:
        assert (lay.vox_test_wav / a).is_file() and (lay.vox_test_wav / b).is_file()
        assert (a.split("/")[0] == b.split("/")[0]) == (label == "1")
    # ER: 5 folds, test = one session, all 4 classes in every training fold
    for k in ER_FOLDS:
        tr = json.loads(lay.iemocap_meta_json(k, "train").read_text())
        te = json.loads(lay.iemocap_meta_json(k, "test").read_text())
        assert tr["labels"] == {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
        assert te["meta_data"] and {m["label"] for m in tr["meta_data"]} == {"neu", "hap", "ang", "sad"}
        assert all(m["path"].startswith(f"Session{k}/") for m in te["meta_data"])
        assert not any(m["path"].startswith(f"Session{k}/") for m in tr["meta_data"])
        assert all((lay.iemocap / m["path"]).is_file() for m in te["meta_data"])
    # ABX: header, triphone rows whose files exist
    for s in ABX_SPLITS:
        lines = lay.abx_item(s).read_text().splitlines()
        assert lines[0] == "#file onset offset #phone prev-phone next-phone speaker" and len(lines) > 100
        f, on, off, ph, prev, nxt, spk = lines[1].split()
        assert float(off) > float(on) and (lay.abx_wav_dir(s) / f"{f}.wav").is_file()
    # every manifest path exists
    for row in manifest(tiny_corpus):
        for col in ("librispeech", "voxceleb1", "iemocap", "alignment", "abx"):
            if row[col]:
                assert (tiny_corpus / row[col]).is_file(), row[col]


def test_layout_files_are_hard_links(tiny_corpus):
    row = next(r for r in manifest(tiny_corpus) if r["iemocap"] and r["abx"]) if any(
        r["iemocap"] and r["abx"] for r in manifest(tiny_corpus)) else next(r for r in manifest(tiny_corpus) if r["abx"])
    vox = (tiny_corpus / row["voxceleb1"]).stat()
    other = (tiny_corpus / (row["iemocap"] or row["abx"])).stat()
    assert vox.st_ino == other.st_ino


# --- s3prl's own dataset code reads the layouts --------------------------------------------

@pytest.fixture(scope="module")
def s3prl_ready():
    import harness.s3prl.compat

    harness.s3prl.compat.install()


def test_s3prl_voxceleb1_sid_dataset(tiny_corpus, s3prl_ready):
    from s3prl.downstream.voxceleb1.dataset import SpeakerClassifiDataset

    lay = CorpusLayout(tiny_corpus)
    rows = manifest(tiny_corpus)
    for mode, k in (("train", "1"), ("dev", "2"), ("test", "3")):
        ds = SpeakerClassifiDataset(mode, lay.voxceleb1, str(lay.iden_split))
        assert len(ds) == sum(r["sid_split"] == k for r in rows)
        wav, label, name = ds[0]
        assert wav.ndim == 1 and len(wav) > 8000
        assert f"id{label + 10001}" == name.split("-")[0]
    assert max(ds.label) == SIZES["tiny"].n_speakers - 1


def test_s3prl_asr_dataset(tiny_corpus, s3prl_ready):
    from s3prl.downstream.asr.dataset import SequenceDataset
    from s3prl.downstream.asr.dictionary import Dictionary

    lay = CorpusLayout(tiny_corpus)
    dic = Dictionary.load(str(lay.char_dict))
    for split in SPLITS:
        name = lay.libri_split_dir(split).name
        ds = SequenceDataset(split, 2, dic, str(lay.librispeech), str(lay.bucket_dir), **{split: [name]})
        assert len(ds) > 0
        y = next(iter(ds.Y.values()))
        assert dic.unk() not in y.tolist()  # every character of the transcripts is in char.dict
    # transcripts round-trip through the dictionary
    text = dic.string(ds.Y[next(iter(ds.Y))])
    assert set(text.replace(" ", "")) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ'|")


def test_s3prl_emotion_and_sv_datasets(tiny_corpus, s3prl_ready):
    from s3prl.downstream.emotion.dataset import IEMOCAPDataset
    from s3prl.downstream.sv_voxceleb1.dataset import SpeakerVerifi_test

    lay = CorpusLayout(tiny_corpus)
    ds = IEMOCAPDataset(str(lay.iemocap), str(lay.iemocap_meta_json(2, "test")), pre_load=False)
    wav, label, name = ds[0]
    assert len(ds) > 0 and 0 <= label < 4 and name.startswith("Ses02")
    sv = SpeakerVerifi_test({"min_sec": 1}, str(lay.vox_test_wav), str(lay.veri_test))
    assert len(sv) > 0 and sv[0][0].ndim == 1


def test_libriphone_tables_and_lexicon(tiny_corpus, s3prl_ready):
    from s3prl.downstream.ctc.text import load_text_encoder

    from harness.s3prl.libriphone import LibriPhoneDataset

    lay = CorpusLayout(tiny_corpus)
    tok = load_text_encoder("word", str(lay.phone_vocab))
    ds = LibriPhoneDataset(lay.libriphone_csv("dev").name, tok, 1, [str(lay.lexicon)], str(lay.libriphone_dir))
    wav_path, ids = ds[0]
    assert Path(wav_path).is_file() and len(ids) > 3 and tok.unk_idx not in ids
    # the lexicon (one pronunciation a word) agrees with the exact phone transcripts almost everywhere
    lex = {ln.split()[0]: ln.split()[1:] for ln in lay.lexicon.read_text().splitlines()}
    same = total = 0
    with open(lay.libriphone_csv("train"), newline="") as f:
        for row in csv.DictReader(f):
            from_lex = [p for w in row["transcription"].split() for p in lex[w]]
            same += from_lex == row["phones"].split()
            total += 1
    assert same / total > 0.5


# --- alignments match the audio -------------------------------------------------------------

def test_alignments_tile_the_audio(tiny_corpus):
    lay = CorpusLayout(tiny_corpus)
    for row in manifest(tiny_corpus):
        segs = read_alignment(tiny_corpus / row["alignment"])
        info = sf.info(str(tiny_corpus / row["voxceleb1"]))
        assert info.samplerate == 16000 and info.frames == int(row["num_samples"])
        assert segs[0][0] == 0.0
        assert abs(segs[-1][1] - info.frames / 16000) < 1e-6, row["utt_id"]
        for (a0, b0, _), (a1, b1, _) in zip(segs, segs[1:]):
            assert b0 == a1 and b1 > a1
        assert sum(b - a for a, b, _ in segs) == pytest.approx(info.frames / 16000, abs=1e-5)
    # flac (LibriSpeech) and wav (VoxCeleb1) hold the same samples
    row = manifest(tiny_corpus)[0]
    a, _ = sf.read(str(tiny_corpus / row["librispeech"]), dtype="int16")
    b, _ = sf.read(str(tiny_corpus / row["voxceleb1"]), dtype="int16")
    assert np.array_equal(a, b)
    assert lay.check()["sample_rate"] == 16000


def test_alignment_boundaries_follow_the_signal(tiny_corpus):
    """Pauses are quiet and vowels loud: the phone times are where the sounds are."""
    sil, vow = [], []
    vowels = {"a", "aI", "aU", "eI", "i:", "oU", "u:", "A:", "O:", "3:", "E", "I", "V", "0", "@"}
    for row in manifest(tiny_corpus)[:40]:
        y, _ = sf.read(str(tiny_corpus / row["voxceleb1"]), dtype="float32")
        for a, b, p in read_alignment(tiny_corpus / row["alignment"]):
            seg = y[int(round(a * 16000)):int(round(b * 16000))]
            if len(seg) > 160:
                (sil if p == "sil" else vow if p in vowels else []).append(float(np.sqrt(np.mean(seg ** 2))))
    assert sil and vow and np.median(sil) < 0.2 * np.median(vow)


# --- speakers are distinct ------------------------------------------------------------------

def _mfcc_stats(path: Path) -> np.ndarray:
    from scipy.fft import dct

    y, _ = sf.read(str(path), dtype="float32")
    n_fft, sr = 512, 16000
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    pts = 700 * (10 ** (np.linspace(mel(50), mel(sr / 2), 42) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.stack([np.clip(np.minimum((bins - l) / (c - l), (r - bins) / (r - c)), 0, None)
                   for l, c, r in zip(pts, pts[1:], pts[2:])])
    frames = np.lib.stride_tricks.sliding_window_view(y, 400)[::160] * np.hanning(400)
    m = dct(np.log(np.abs(np.fft.rfft(frames, n_fft)) ** 2 @ fb.T + 1e-8), norm="ortho", axis=1)[:, 1:20]
    return np.concatenate([m.mean(0), m.std(0)])


def test_speakers_are_distinct(tiny_corpus):
    """Nearest-centroid speaker ID on MFCC mean/std: far above chance on held-out utterances."""
    rows = manifest(tiny_corpus)
    X = np.stack([_mfcc_stats(tiny_corpus / r["voxceleb1"]) for r in rows])
    spk = np.array([r["vox_id"] for r in rows])
    train = np.array([r["sid_split"] == "1" for r in rows])
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    Z = (X - mu) / sd
    labels = sorted(set(spk))
    C = np.stack([Z[train & (spk == s)].mean(0) for s in labels])
    pred = np.array(labels)[np.argmin(((Z[~train][:, None] - C[None]) ** 2).sum(-1), 1)]
    acc = float((pred == spk[~train]).mean())
    assert acc > 0.6, f"speaker ID accuracy {acc:.2f} (chance {1 / len(labels):.2f})"


def test_styles_differ_in_prosody(tiny_corpus):
    rows = manifest(tiny_corpus)
    rate = {}
    for st in ("sad", "excited"):
        r = [float(x["duration_s"]) / len(x["text"].split()) for x in rows if x["style"] == st]
        rate[st] = np.median(r)
    assert rate["sad"] > 1.2 * rate["excited"]  # sad speech is slower


# --- determinism, workers, resume -------------------------------------------------------------

def _tree_bytes(root: Path) -> dict[str, bytes]:
    skip = {"generation.json"}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}


def test_resume_and_workers_give_identical_bytes(tiny_corpus, tmp_path):
    out = tmp_path / "tiny2"
    with pytest.raises(GenerationInterrupted):
        make_corpus(out, size="tiny", seed=0, workers=2, progress=False, stop_after=30)
    with pytest.raises(CorpusError, match="half-written"):
        CorpusLayout(out).check()
    make_corpus(out, size="tiny", seed=0, workers=2, progress=False)
    gen = json.loads(CorpusLayout(out).generation_json.read_text())
    assert gen["reused"] >= 30 and gen["synthesized"] + gen["reused"] == SIZES["tiny"].n_speakers * SIZES["tiny"].utts_per_speaker
    a, b = _tree_bytes(tiny_corpus), _tree_bytes(out)
    assert a.keys() == b.keys()
    diff = [k for k in a if a[k] != b[k]]
    assert not diff, f"{len(diff)} files differ, e.g. {diff[:3]}"
    # a complete corpus is returned as is
    assert make_corpus(out, size="tiny", seed=0, workers=1, progress=False) == out.resolve()


def test_plan_depends_on_seed():
    from harness.corpus.plan import make_plan

    a, b, c = make_plan(SIZES["tiny"], 0), make_plan(SIZES["tiny"], 0), make_plan(SIZES["tiny"], 1)
    assert a.utts == b.utts and a.voices == b.voices
    assert a.utts != c.utts and a.voices != c.voices


def test_large_spec_scaled_down_run(tmp_path):
    """The large spec's code path, scaled down: same roles and writers, a few utterances."""
    import dataclasses

    from harness.corpus.voices import sample_voices

    spec = SIZES["large"]
    # 3.1 s a sentence on average (measured on small)
    assert spec.n_speakers >= 1000 and spec.n_speakers * spec.utts_per_speaker * 3.1 / 3600 > 100
    assert len(sample_voices(spec.n_speakers, 0, spec.min_voice_distance)) == spec.n_speakers
    from harness.corpus.spec import UnseenSpec

    small = dataclasses.replace(spec, name="large-scaled", n_speakers=20, utts_per_speaker=3, n_dev=2, n_test=2,
                                n_asv_test=3, n_iemocap=20, unseen=UnseenSpec(n_speakers=2, utts_per_speaker=2))
    root = make_corpus(tmp_path / "ls", size=small, seed=5, workers=1, progress=False)
    info = CorpusLayout(root).check()
    assert info["counts"]["utterances"] == 60 and info["spec"]["sid_test_frac"] == spec.sid_test_frac
    # two speaker pairs per session: 4 IEMOCAP speakers, distinct dialogs, in each session
    lay = CorpusLayout(root)
    for k in ER_FOLDS:
        dialogs = {p.name for p in (lay.iemocap_session(k) / "sentences" / "wav").iterdir()}
        assert len(dialogs) == 4, dialogs


@pytest.mark.slow
def test_large_spec_plan():
    """The large size plans 1200 distinct voices, >100 h, roles as specified."""
    from harness.corpus.plan import make_plan

    spec = SIZES["large"]
    plan = make_plan(spec, 0)
    assert len(plan.voices) == spec.n_speakers >= 1000
    assert len(plan.utts) * 3.1 / 3600 > 100  # 3.1 s a sentence (measured on small)
    assert len({u.utt_id for u in plan.utts}) == len(plan.utts)
    assert len({u.vox_rel for u in plan.utts}) == len(plan.utts)
    assert max(int(u.vox_id[2:]) for u in plan.utts) - 10001 < 1251
    roles = Counter(u.vox_set for u in plan.utts)
    assert roles["test"] == spec.n_asv_test * spec.utts_per_speaker


# --- bad input -------------------------------------------------------------------------------

def test_bad_input_errors(tmp_path, run_cli):
    missing = tmp_path / "nope"
    with pytest.raises(CorpusError, match="does not exist.*harness corpus make"):
        CorpusLayout(missing).check()
    p = run_cli("corpus", "info", missing, check=False)
    assert p.returncode == 2 and str(missing) in p.stderr and "harness corpus make" in p.stderr
    # half-written: plan.json but no corpus.json
    half = tmp_path / "half"
    half.mkdir()
    (half / "plan.json").write_text(json.dumps({"size": "tiny"}))
    with pytest.raises(CorpusError, match="half-written.*--size tiny"):
        CorpusLayout(half).check()
    p = run_cli("corpus", "make", "--size", "huge", "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "unknown corpus size 'huge'" in p.stderr and "tiny, small, medium, large" in p.stderr
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(CorpusError, match="cannot create corpus directory"):
        make_corpus(f / "sub", size="tiny")
    with pytest.raises(CorpusError, match="not empty and is not a DUET corpus"):
        make_corpus(tmp_path, size="tiny")
    # a corpus dir with another seed is not silently mixed
    with pytest.raises(CorpusError, match="holds another corpus"):
        make_corpus(half, size="tiny", seed=0)


def test_voice_near_duplicate_rule():
    import dataclasses

    from harness.corpus.voices import is_near_duplicate, sample_voices, voice_distance

    voices = sample_voices(60, seed=3, min_distance=8.0)
    assert voices == sample_voices(60, seed=3, min_distance=8.0)
    d = [voice_distance(a, b) for i, a in enumerate(voices) for b in voices[i + 1:]]
    assert min(d) >= 8.0
    v = voices[0]
    twin = dataclasses.replace(v, name="twin", formants=tuple((f + 2, h, w) for f, h, w in v.formants))
    assert is_near_duplicate(twin, voices, 8.0) and not is_near_duplicate(twin, voices[1:], 1.0)
    assert "flutter 0" in v.variant_text() and "roughness 0" in v.variant_text()


def test_read_record_matches_alignment(tiny_corpus):
    lay = CorpusLayout(tiny_corpus)
    row = manifest(tiny_corpus)[3]
    rec = lay.read_record(row["speaker"], row["utt_id"])
    assert rec["num_samples"] == int(row["num_samples"])
    segs = read_alignment(tiny_corpus / row["alignment"])
    assert [p for _, _, p in segs] == [p for _, _, p in rec["phones"]]
    assert [w for w, _, _ in rec["words"]] == row["text"].split()
    assert lay.read_record(row["speaker"], "nope") is None and lay.read_record("0", row["utt_id"]) is None


def test_first_utterance_of_a_speaker_is_history_free():
    """Regression: in the small plan, utterance 750 (a speaker's first) came out different after
    utterance 749 than after others, before the engine warmed up each new voice."""
    from harness.corpus.plan import make_plan
    from harness.corpus.synth import get_engine

    plan = make_plan(SIZES["small"], 0)
    eng = get_engine()
    syn = lambda u: eng.synthesize(u.sentence, plan.voices[u.speaker], u.rate, u.pitch, u.range,  # noqa: E731
                                   u.volume).audio.tobytes()
    syn(plan.utts[29])
    a = syn(plan.utts[750])
    syn(plan.utts[749])
    assert syn(plan.utts[750]) == a


def test_bench_runs(tmp_path):
    """bench/bench_corpus.py stays runnable (a few utterances)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "bench" / "bench_corpus.py"), "--utts", "24"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "x real time per core" in p.stdout and "goal 300x" in p.stdout


def test_cli_info_and_make_on_a_complete_corpus(tiny_corpus, run_cli):
    p = run_cli("corpus", "info", tiny_corpus)
    assert "DUET corpus 'tiny'" in p.stdout and "ER:" in p.stdout and "ABX items" in p.stdout
    before = CorpusLayout(tiny_corpus).corpus_json.stat().st_mtime_ns
    p = run_cli("corpus", "make", "--size", "tiny", "--out", tiny_corpus, "--no-progress")  # already complete
    assert "120 utterances" in p.stdout and CorpusLayout(tiny_corpus).corpus_json.stat().st_mtime_ns == before


def test_stale_espeak_folders_are_removed(tmp_path):
    import subprocess
    import sys

    from harness.corpus.synth import _remove_stale_homes

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"duet-espeak-{dead.pid}-abc").mkdir()
    (tmp_path / f"duet-espeak-{os.getpid()}-abc").mkdir()
    (tmp_path / "duet-espeak-other").mkdir()
    _remove_stale_homes(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"duet-espeak-{os.getpid()}-abc", "duet-espeak-other"]


def test_encode_wav16_matches_libsndfile():
    """The hand-written WAV header gives the bytes soundfile/libsndfile writes (odd and even lengths)."""
    import io

    import numpy as np
    import soundfile as sf

    from harness.corpus.fileio import encode_wav16

    rng = np.random.default_rng(0)
    for n in (0, 1, 4801, 16000):
        a = rng.integers(-32768, 32768, n).astype(np.int16)
        buf = io.BytesIO()
        sf.write(buf, a, 16000, subtype="PCM_16", format="WAV")
        assert encode_wav16(a, 16000) == buf.getvalue()
    with pytest.raises(ValueError):
        encode_wav16(np.zeros((4, 2), np.int16), 16000)


def test_record_and_json_readers_name_the_bad_file_and_the_fix(tmp_path):
    import json

    from harness.corpus.layout import CorpusError, read_json, read_records

    good, bad, odd = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    good.write_text(json.dumps({"speaker": "a", "utterances": {"a-1": {"n": 1}}}))
    bad.write_text("{not json")
    odd.write_text(json.dumps({"speaker": "c"}))
    assert read_records([good], "fix it") == {"a-1": {"n": 1}}
    for p in (bad, odd):
        with pytest.raises(CorpusError, match=rf"speaker record {p} is unreadable .*; delete it"):
            read_records([good, p], "delete it")
    with pytest.raises(CorpusError, match=rf"{tmp_path / 'none.json'} is unreadable .*; remove it"):
        read_json(tmp_path / "none.json", "remove it")


def test_yaml_mapping_reader_names_the_file_and_the_fix(tmp_path):
    from harness.corpus.prepare import read_yaml_mapping

    ok, bad, lst, empty = (tmp_path / f"{n}.yaml" for n in ("ok", "bad", "lst", "empty"))
    ok.write_text("voxceleb1: /data/VoxCeleb1\n")
    bad.write_text("a: [1\n")
    lst.write_text("- a\n- b\n")
    empty.write_text("")
    assert read_yaml_mapping(ok, ValueError, "fix") == {"voxceleb1": "/data/VoxCeleb1"}
    assert read_yaml_mapping(empty, ValueError, "fix") == {}
    with pytest.raises(ValueError, match=rf"(?s){bad} is not valid YAML .*; fix it"):
        read_yaml_mapping(bad, ValueError, "fix it")
    with pytest.raises(KeyError, match=rf"{lst} is not a mapping; fix it"):
        read_yaml_mapping(lst, KeyError, "fix it")
