"""harness/preflight.py: every kind of bad audio is found before training, named by path with its
fix; the cache skips unchanged files; a fuzz of 200 corruptions never gives a traceback; the task
file lists find what s3prl would read (and name listed files that are missing)."""
import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf

from harness.preflight import (FIXES, SHOW, FileList, PreflightError, check_audio, files_for_abx, files_for_pretrain,
                               files_for_split, files_for_task, files_for_tasks, preflight)


def _wav(path, n=8000, rate=16000, channels=1, subtype="PCM_16", fmt=None, data=None, seed=0):
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((n, channels))).astype(np.float32) if data is None else data
    sf.write(str(path), x, rate, subtype=subtype, format=fmt)
    return path


def _bad_files(d):
    """{kind: path} for every kind of bad audio, plus a good file."""
    good = _wav(d / "good.wav")
    nan = np.full((8000, 1), 0.1, np.float32)
    nan[100, 0] = np.nan
    inf = np.full((8000, 1), 0.1, np.float32)
    inf[5, 0] = -np.inf
    files = {
        "good": good,
        "rate": _wav(d / "r44k.wav", n=22050, rate=44100),
        "rate8k": _wav(d / "r8k.wav", rate=8000),
        "channels": _wav(d / "stereo.wav", channels=2),
        "empty": _wav(d / "empty.wav", n=0),
        "short": _wav(d / "short.wav", n=100),
        "nonfinite": _wav(d / "nan.wav", subtype="FLOAT", data=nan),
        "nonfinite_inf": _wav(d / "inf.wav", subtype="DOUBLE", data=inf),
        "range": _wav(d / "int_as_float.wav", subtype="FLOAT", data=np.full((8000, 1), 3000.0, np.float32)),
    }
    b = good.read_bytes()
    (d / "hdr.wav").write_bytes(b[:30])
    files["unreadable_hdr"] = d / "hdr.wav"
    (d / "text.wav").write_text("this is not audio\n")
    files["unreadable_text"] = d / "text.wav"
    (d / "zero.wav").write_bytes(b"")
    files["unreadable_zero"] = d / "zero.wav"
    (d / "cut.wav").write_bytes(b[: len(b) // 2])
    files["truncated"] = d / "cut.wav"
    flac = _wav(d / "good.flac")
    (d / "cut.flac").write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    files["unreadable_flac"] = d / "cut.flac"
    files["missing"] = d / "nope.wav"
    return files


def test_each_bad_kind_is_found_with_its_path_and_fix(tmp_path):
    files = _bad_files(tmp_path)
    report = check_audio(list(files.values()), progress=False)
    by_path = {}
    for p in report.problems:
        by_path.setdefault(p.path, set()).add(p.kind)
    assert str(files["good"]) not in by_path
    assert report.checked == len(files)
    for label, path in files.items():
        if label == "good":
            continue
        kind = label.split("_")[0].replace("8k", "")
        assert kind in by_path.get(str(path), set()), (label, by_path.get(str(path)))
    text = report.format()
    assert f"{len(report.problems)} problem(s) in {len(files)} files" in text
    assert "sox in.wav -r 16000 -c 1 out.wav" in text
    for kind in ("rate", "channels", "empty", "nonfinite", "unreadable", "truncated", "missing", "short", "range"):
        assert FIXES[kind] in text, kind
    assert "44100 Hz, expected 16000 Hz" in text and "2 channels, expected 1" in text
    assert "1 NaN/Inf samples" in text and "peak 3e+03" in text
    with pytest.raises(PreflightError) as e:
        preflight(list(files.values()), progress=False)
    assert e.value.report.problems == report.problems and str(files["rate"]) in str(e.value)


def test_good_files_pass(tmp_path):
    paths = [_wav(tmp_path / f"{i}.wav", n=400 + i, seed=i) for i in range(5)]
    paths.append(_wav(tmp_path / "f.flac"))
    paths.append(_wav(tmp_path / "float.wav", subtype="FLOAT"))
    report = preflight(paths, progress=False)
    assert report.ok and report.checked == 7 and report.decoded == 7
    assert "7 files OK" in report.format()


def test_report_lists_first_20_then_a_count(tmp_path):
    paths = [_wav(tmp_path / f"{i:02d}.wav", n=1000, rate=8000) for i in range(SHOW + 5)]
    text = check_audio(paths, progress=False).format()
    assert all(str(p) in text for p in paths[:SHOW]) and str(paths[SHOW]) not in text
    assert "... and 5 more" in text and f"rate ({SHOW + 5})" in text


def test_cache_skips_unchanged_files_and_sees_changes(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    paths = [_wav(d / f"{i}.wav", seed=i) for i in range(4)]
    cache = tmp_path / "cache" / "preflight.json"
    r1 = check_audio(paths, cache_path=cache, progress=False)
    assert r1.ok and r1.decoded == 4 and json.loads(cache.read_text())["format"] == "duet-preflight/1"
    r2 = check_audio(paths, cache_path=cache, progress=False)
    assert r2.ok and r2.decoded == 0
    _wav(paths[1], rate=22050)  # rewritten in place: new size/mtime
    r3 = check_audio(paths, cache_path=cache, progress=False)
    assert r3.decoded == 1 and [(p.path, p.kind) for p in r3.problems] == [(str(paths[1]), "rate")]
    # the cache keeps facts, not verdicts: another expected rate is judged from the cache
    r4 = check_audio(paths, cache_path=cache, progress=False, expected_rate=22050)
    assert r4.decoded == 0 and len(r4.problems) == 3
    cache.write_text("{not json")  # a damaged cache is ignored and rewritten
    r5 = check_audio(paths, cache_path=cache, progress=False)
    assert r5.decoded == 4 and json.loads(cache.read_text())["format"] == "duet-preflight/1"
    assert [p.name for p in cache.parent.iterdir()] == ["preflight.json"]  # no temp file left


def test_hard_links_are_decoded_once(tmp_path):
    a = _wav(tmp_path / "a.wav")
    os.link(a, tmp_path / "b.wav")
    report = check_audio([a, tmp_path / "b.wav"], progress=False)
    assert report.ok and report.checked == 2 and report.decoded == 1


# ------------------------------------------------------------------------------- the fuzz

RATES = (8000, 11025, 16000, 22050, 44100, 48000)
SUBTYPES = {"WAV": ("PCM_16", "PCM_24", "PCM_U8", "FLOAT", "DOUBLE"), "FLAC": ("PCM_16", "PCM_24")}


def _corrupt(path, rng):
    """Write one randomly made (and often corrupted) audio file at ``path``; returns a label."""
    fmt = "WAV" if rng.random() < 0.7 else "FLAC"
    subtype = SUBTYPES[fmt][rng.integers(len(SUBTYPES[fmt]))]
    rate = int(RATES[rng.integers(len(RATES))]) if rng.random() < 0.5 else 16000
    channels = int((1, 2, 6)[rng.integers(3)]) if rng.random() < 0.4 else 1
    n = int(rng.integers(0, 3000))
    x = (0.3 * rng.standard_normal((n, channels))).astype(np.float64)
    content = rng.integers(5)
    is_float = subtype in ("FLOAT", "DOUBLE")
    if n and content == 1 and is_float:
        x[rng.integers(n), 0] = np.nan
    elif n and content == 2 and is_float:
        x[rng.integers(n), 0] = np.inf * rng.choice([-1, 1])
    elif content == 3:
        x = x * 10.0 ** rng.integers(1, 30) if is_float else np.sign(x)       # extreme / full-scale values
    sf.write(str(path), x, rate, subtype=subtype, format=fmt)
    b = bytearray(path.read_bytes())
    op = rng.integers(8)
    if op == 1 and len(b) > 1:
        b = b[: rng.integers(0, len(b))]                                   # truncation
    elif op == 2:
        for i in rng.integers(0, len(b), size=rng.integers(1, 20)):       # random bytes anywhere
            b[i] = rng.integers(256)
    elif op == 3:
        k = min(len(b), 44)                                                 # a random header
        b[:k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
    elif op == 4 and fmt == "WAV" and len(b) >= 44:                        # wrong header fields
        field = rng.integers(4)
        if field == 0:
            b[24:28] = int(rng.choice([0, 1, 8000, 44100, 2**31 - 1])).to_bytes(4, "little")   # sample rate
        elif field == 1:
            b[22:24] = int(rng.choice([0, 3, 255, 65535])).to_bytes(2, "little")              # channels
        elif field == 2:
            b[40:44] = int(rng.choice([0, 1, 2**31, 2**32 - 1])).to_bytes(4, "little")        # data size
        else:
            b[0:4] = b"RIFX"
    elif op == 5:
        b = bytearray(rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes())  # noise
    elif op == 6:
        b = bytearray(b"#!text, not audio\n" * int(rng.integers(0, 5)))
    path.write_bytes(bytes(b))
    return f"{fmt}/{subtype}/{rate}Hz/{channels}ch/n={n}/content={content}/op={op}"


def test_fuzz_200_corruptions_accepted_and_decodable_or_rejected_by_path(tmp_path):
    rng = np.random.default_rng(1234)
    paths, labels = [], {}
    for i in range(200):
        p = tmp_path / f"f{i:03d}.{'wav' if rng.random() < 0.8 else 'flac'}"
        labels[str(p)] = _corrupt(p, rng)
        paths.append(p)
    report = check_audio(paths, progress=False, workers=2)   # must not raise
    bad = {}
    for prob in report.problems:
        bad.setdefault(prob.path, []).append(prob)
        assert prob.kind in FIXES and "Traceback" not in prob.detail
    assert set(bad) <= set(labels)
    text = report.format(show=10**6)
    accepted = 0
    for p in paths:
        if str(p) in bad:
            assert str(p) in text
            continue
        accepted += 1   # accepted: it must decode to what the models expect
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
        assert rate == 16000 and data.shape[1] == 1 and len(data) >= 400, labels[str(p)]
        assert np.isfinite(data).all() and np.abs(data).max() <= 2.0, labels[str(p)]
    # both outcomes are exercised (the generator is seeded, so these counts are fixed)
    assert 20 < accepted < 180 and report.checked == 200


# ------------------------------------------------------------------------------- file lists

def test_files_for_every_task_of_a_corpus(tiny_corpus):
    from harness.corpus.layout import CorpusLayout

    lay = CorpusLayout(tiny_corpus)
    lists = {t: files_for_task(t, tiny_corpus) for t in ("sid", "asv", "er", "pr", "asr")}
    for t, fl in lists.items():
        assert fl.files and not fl.problems, (t, fl.problems[:3])
        assert all(p.is_file() for p in fl.files)
    n_iden = sum(1 for line in lay.iden_split.read_text().splitlines() if line.strip())
    assert len(lists["sid"]) == n_iden
    assert all(str(p).startswith(str(lay.voxceleb1)) for p in lists["sid"])
    assert all(p.suffix == ".flac" for p in lists["asr"]) and lists["pr"].files == lists["asr"].files
    assert all("IEMOCAP" in str(p) for p in lists["er"])
    union = files_for_tasks(["sid", "asv", "er", "pr", "asr"], tiny_corpus)
    assert len(union) == len(set(union.files)) >= len(lists["sid"])
    report = check_audio(union, progress=False)
    assert report.ok, report.format()
    split = files_for_split(tiny_corpus, "dev")
    assert split.files and not split.problems and all(p.suffix == ".flac" for p in split.files)
    pre = files_for_pretrain(tiny_corpus)
    assert pre.files and not pre.problems


def test_listed_but_missing_files_are_problems_with_the_list_line(tiny_corpus, tmp_path):
    """A wav in iden_split.txt but not on disk was an IndexError inside s3prl's dataset."""
    from harness.corpus.layout import CorpusLayout

    lay = CorpusLayout(tiny_corpus)
    lay.iden_split = tmp_path / "iden_split.txt"   # a copy with one extra line (the corpus is shared)
    lines = (tiny_corpus / "VoxCeleb1" / "iden_split.txt").read_text().splitlines()
    lay.iden_split.write_text("\n".join(lines + ["1 id10001/nosuchvideo/00001.wav", "garbage line here"]) + "\n")
    fl = files_for_task("sid", lay)
    assert [p.kind for p in fl.problems] == ["missing", "list"]
    assert fl.problems[0].path.endswith("VoxCeleb1/dev/wav/id10001/nosuchvideo/00001.wav")
    assert fl.problems[0].where == f"{lay.iden_split}:{len(lines) + 1}"
    assert fl.problems[1].path == f"{lay.iden_split}:{len(lines) + 2}"
    report = check_audio(fl, progress=False)
    assert "id10001/nosuchvideo/00001.wav: is listed but not on disk (listed in" in report.format()
    lay.bucket_dir = tmp_path / "bucket"                # ASR/PR: a bucket table row without its flac
    shutil.copytree(tiny_corpus / "LibriSpeech" / "len_for_bucket", lay.bucket_dir)
    with open(lay.bucket_dir / "dev-clean.csv", "a") as f:
        f.write("99,dev-clean/1/2/1-2-0003.flac,16000,\n")
    fl = files_for_task("asr", lay)
    assert [p.path for p in fl.problems] == [str(tiny_corpus / "LibriSpeech" / "dev-clean/1/2/1-2-0003.flac")]
    assert fl.problems[0].where.startswith(str(lay.bucket_dir / "dev-clean.csv") + ":")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        files_for_task("nope", tiny_corpus)


def test_bad_audio_in_a_task_names_the_list_line(tiny_corpus, tmp_path):
    from harness.corpus.layout import CorpusLayout

    lay = CorpusLayout(tiny_corpus)
    root = tmp_path / "vox"
    (root / "dev" / "wav" / "id1" / "v").mkdir(parents=True)
    _wav(root / "dev" / "wav" / "id1" / "v" / "00001.wav", rate=44100)
    lay.voxceleb1 = root
    lay.iden_split = tmp_path / "iden.txt"
    lay.iden_split.write_text("1 id1/v/00001.wav\n")
    report = check_audio(files_for_task("sid", lay), progress=False)
    assert [p.kind for p in report.problems] == ["rate"]
    assert report.problems[0].where == f"{lay.iden_split}:1"


def test_abx_item_files(tmp_path):
    audio = tmp_path / "dev"
    audio.mkdir()
    _wav(audio / "u1.wav")
    _wav(audio / "u2.flac")
    item = tmp_path / "dev.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n"
                    "u1 0.1 0.2 a sil b s1\nu2 0.1 0.2 a sil b s1\nu3 0.1 0.2 a sil b s2\nu1 0.2 0.3 b a sil s1\n")
    fl = files_for_abx(item, audio)
    assert fl.files == [audio / "u1.wav", audio / "u2.flac"]
    assert [(p.path, p.where) for p in fl.problems] == [(str(audio / "u3.wav"), f"{item}:4")]
    from analysis.abx import ItemFileError
    item.write_text("#h\nu1 0.1 0.2 a sil b s1\n../../VoxCeleb1/x 0.1 0.2 a sil b s1\n")
    with pytest.raises(ItemFileError, match=r"dev.item:3: file '../../VoxCeleb1/x' leaves the audio directory"):
        files_for_abx(item, audio)


def test_filelist_union_keeps_order_and_problems(tmp_path):
    a, b = _wav(tmp_path / "a.wav"), _wav(tmp_path / "b.wav")
    u = FileList([a, b], where={str(a): "x:1"}) + FileList([b, a, tmp_path / "c.wav"])
    assert u.files == [a, b, tmp_path / "c.wav"] and u.where == {str(a): "x:1"}


def test_default_cache_path(tmp_path, monkeypatch):
    from harness.preflight import default_cache_path
    monkeypatch.delenv("DUET_PREFLIGHT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = default_cache_path("corpora/small"), default_cache_path("corpora/tiny")
    assert a.parent == tmp_path / "duet" and a != b and a == default_cache_path(os.path.abspath("corpora/small"))
    monkeypatch.setenv("DUET_PREFLIGHT_CACHE", str(tmp_path / "x.json"))
    assert default_cache_path("anything") == tmp_path / "x.json"


def test_unwritable_cache_is_reported_and_the_check_still_runs(tmp_path, capsys):
    a = _wav(tmp_path / "a.wav")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    report = check_audio([a], cache_path=blocker / "sub" / "cache.json", progress=False)  # parent is a file
    assert report.ok and report.decoded == 1
    assert "cannot write its cache" in capsys.readouterr().err


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    paths = [_wav(tmp_path / f"{i}.wav", seed=i) for i in range(3)]
    assert check_audio(paths).ok                      # a bar only on a terminal, never into a log
    check_audio([_wav(tmp_path / "x.wav", seed=9)], progress=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)     # now stderr is a terminal
    check_audio([_wav(tmp_path / "y.wav", seed=8)], progress=False)
    assert capsys.readouterr().err == ""
    check_audio([_wav(tmp_path / "z.wav", seed=7)])
    assert "pre-flight audio check" in capsys.readouterr().err
