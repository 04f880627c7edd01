"""The bad-input table of the issue "Bad input never gives a wrong result", row by row, through the
real commands (in-process `harness.cli.main`): each input now stops before any work with exit 2 and
a message naming the file or the argument (or, where noted, gives a correct result).

Rows covered elsewhere: the pre-flight check's own decoding of every corruption (and the fuzz test)
in test_preflight.py; learn2diss/jooci BatchNorm on one short utterance in test_models_nn.py;
checkpoint bytes in test_checkpoint.py; ABX item checks inside analysis/abx.py in test_abx.py and
test_analysis_checks.py; the FeatureStore frame counts in test_features.py and the cache index in
test_harness_cache.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main

SID_FILE = "VoxCeleb1/dev/wav/id10001/4-60_oiHkj1/00001.wav"     # first line of the tiny iden_split.txt


@pytest.fixture(autouse=True)
def _own_preflight_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)                     # default cache/ and results/ land in tmp


@pytest.fixture
def corpus(tiny_corpus, tmp_path) -> Path:
    """A private copy of the tiny corpus, to break."""
    return Path(shutil.copytree(tiny_corpus, tmp_path / "tiny", symlinks=True))


def _replace(path: Path, write) -> None:
    path.unlink()                                   # never write through a hard link into another copy
    write(path)


def _rate(sr):
    return lambda p: sf.write(p, 0.1 * np.sin(np.arange(sr) / 7.0).astype("float32"), sr, subtype="PCM_16")


def _stereo(p):
    sf.write(p, np.zeros((16000, 2), dtype="float32") + 0.1, 16000, subtype="PCM_16")


def _nan(p, x=None):
    x = (0.1 * np.sin(np.arange(16000) / 7.0)).astype("float32") if x is None else x.astype("float32")
    x[100] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")


def _truncated_header(p):
    buf = Path(p).with_name("full.wav")
    _rate(16000)(buf)
    Path(p).write_bytes(buf.read_bytes()[:30])
    buf.unlink()


BAD_AUDIO = {   # row of the table -> how to break the first SID training file, and the word the report uses
    "8 kHz": (_rate(8000), "8000 Hz"),
    "44.1 kHz": (_rate(44100), "44100 Hz"),
    "stereo": (_stereo, "2 channels"),
    "empty": (lambda p: p.write_bytes(b""), "unreadable"),
    "truncated header": (_truncated_header, "unreadable"),
    "text file": (lambda p: p.write_text("this is not audio\n" * 50), "unreadable"),
    "one NaN": (_nan, "NaN"),
    "missing": (lambda p: None, "not on disk"),
}


def _run_sid(corpus, tmp_path, *extra):
    return main(["run", "--tasks", "sid", "--upstreams", "fbank", "--corpus", str(corpus), "--steps", "1",
                 "--results", str(tmp_path / "results"), "--name", "t", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache"), *extra])


@pytest.mark.parametrize("row", list(BAD_AUDIO))
def test_run_stops_on_bad_sid_audio_naming_the_file(row, corpus, tmp_path, capsys):
    write, word = BAD_AUDIO[row]
    _replace(corpus / SID_FILE, write)
    assert _run_sid(corpus, tmp_path) == 2
    err = capsys.readouterr().err
    assert SID_FILE.split("wav/", 1)[1] in err and word.lower() in err.lower() and "nothing was trained" in err
    assert "how to fix" in err and "iden_split.txt:1" in err            # the list line that names it
    assert not (tmp_path / "results" / "t.csv").exists() and not (tmp_path / "results" / "t").exists()


def test_run_dry_run_checks_the_audio_too(corpus, tmp_path, capsys):
    _replace(corpus / SID_FILE, _rate(8000))
    assert _run_sid(corpus, tmp_path, "--dry-run") == 2
    assert "8000 Hz" in capsys.readouterr().err


def test_run_no_preflight_skips_the_check(corpus, tmp_path, capsys):
    _replace(corpus / SID_FILE, _rate(8000))
    assert _run_sid(corpus, tmp_path, "--dry-run", "--no-preflight") == 0


def test_run_on_good_audio_passes_the_check(corpus, tmp_path, capsys):
    assert _run_sid(corpus, tmp_path, "--dry-run") == 0
    assert "todo" in capsys.readouterr().out


def test_run_truncated_checkpoint_exits_2_naming_it(corpus, tmp_path, capsys):
    """The checkpoint-hash row: a truncated copy is refused before any work, not hashed like the original."""
    from harness.superb.sweep import random_checkpoint

    ckpt = random_checkpoint("jooci", "tiny", tmp_path / "ckpts")
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    rc = main(["run", "--tasks", "sid", "--upstreams", "jooci", "--ckpt", f"jooci={ckpt}", "--corpus", str(corpus),
               "--results", str(tmp_path / "results"), "--dry-run"])
    assert rc == 2 and "model.safetensors" in capsys.readouterr().err


def test_run_cache_that_cannot_be_built_is_an_error_not_a_silent_fallback(corpus, tmp_path, capsys):
    """The old catch-all printed "feature cache unavailable ...; running without it" and went on."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    rc = main(["run", "--tasks", "sid", "--upstreams", "jooci", "--features", "content", "--ckpt",
               "jooci=random:tiny", "--corpus", str(corpus), "--steps", "1", "--results", str(tmp_path / "results"),
               "--name", "t", "--device", "cpu", "--cache-dir", str(blocker / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and "could not be built" in err and "--no-cache" in err and "not_a_dir" in err
    assert not list((tmp_path / "results").rglob("cells/*.json"))     # nothing trained


# ---------------------------------------------------------------------------------------------- abx

@pytest.fixture
def abx_dir(tiny_corpus, tmp_path):
    """The tiny dev ABX item file and its wavs, copied."""
    d = tmp_path / "abx"
    shutil.copytree(tiny_corpus / "abx" / "dev", d / "dev")
    shutil.copy(tiny_corpus / "abx" / "dev.item", d / "dev.item")
    return d


def _abx(item, *extra, out=None):
    return main(["abx", "--upstream", "fbank", "--item", str(item), "--quiet",
                 "--out", str(out or item.parent / "abx.csv"), *extra])


def test_abx_nan_audio_is_refused_naming_the_file(abx_dir, capsys):
    """Row "harness abx on features with a NaN file": exit 0 with a moved score before; now the
    pre-flight check names the file, and without it the features' finiteness check does."""
    victim = sorted((abx_dir / "dev").glob("*.wav"))[0]
    x, _ = sf.read(victim, dtype="float32")
    _replace(victim, lambda p: _nan(p, x))                          # same length, one NaN sample
    assert _abx(abx_dir / "dev.item", "--cache", str(abx_dir / "c1")) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "NaN" in err
    assert _abx(abx_dir / "dev.item", "--cache", str(abx_dir / "c2"), "--no-preflight") == 2
    err = capsys.readouterr().err
    assert victim.stem in err and "NaN" in err and not (abx_dir / "abx.csv").exists()


def _edit_item(item: Path, line_no: int, fn) -> None:
    lines = item.read_text().splitlines()
    cols = lines[line_no - 1].split()
    lines[line_no - 1] = " ".join(fn(cols))
    item.write_text("\n".join(lines) + "\n")


def test_abx_item_offset_past_the_end_names_the_line(abx_dir, capsys):
    _edit_item(abx_dir / "dev.item", 3, lambda c: [c[0], c[1], "999.0"] + c[3:])
    assert _abx(abx_dir / "dev.item", "--cache", str(abx_dir / "c")) == 2
    err = capsys.readouterr().err
    assert "dev.item:3" in err and "999" in err


def test_abx_item_path_leaving_the_audio_dir_is_refused(abx_dir, capsys):
    _edit_item(abx_dir / "dev.item", 2, lambda c: ["../../VoxCeleb1/dev/wav/x"] + c[1:])
    assert _abx(abx_dir / "dev.item", "--cache", str(abx_dir / "c")) == 2
    assert "dev.item:2" in capsys.readouterr().err


@pytest.mark.parametrize("args, word", [
    (["--layers", "2-1"], "--layers: range '2-1' is empty"),        # was "(no results)", a 1-byte CSV, exit 0
    (["--layers", "5"], "valid layers are 0-0"),                    # out of range: found before extraction
    (["--max-size-group", "0"], "--max-size-group 0"),
    (["--max-x-across", "-1"], "--max-x-across -1"),
    (["--bootstrap", "-1"], "--bootstrap -1"),
    (["--batch-seconds", "nan"], "--batch-seconds nan"),
])
def test_abx_bad_numbers_exit_2_before_any_work(abx_dir, args, word, capsys):
    assert _abx(abx_dir / "dev.item", "--cache", str(abx_dir / "c"), *args) == 2
    assert word in capsys.readouterr().err
    assert not (abx_dir / "c").exists()                            # nothing extracted


def test_analysis_results_dir_not_writable_is_found_first(abx_dir, tiny_corpus, capsys):
    """Row "results dir not writable": a PermissionError traceback after the work before."""
    blocker = abx_dir / "file"
    blocker.write_text("x")
    out = blocker / "sub" / "abx.csv"
    assert _abx(abx_dir / "dev.item", "--cache", str(abx_dir / "c"), out=out) == 2
    assert "cannot write" in capsys.readouterr().err and not (abx_dir / "c").exists()
    for cmd in ("cca", "probe"):
        rc = main([cmd, "--upstream", "fbank", "--corpus", str(tiny_corpus), "--quiet", "--cache",
                   str(abx_dir / "c"), "--out", str(out)])
        assert rc == 2 and "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("cmd, args, word", [
    ("cca", ["--trials", "0"], "--trials 0"),
    ("cca", ["--layers", "3-1"], "range '3-1' is empty"),
    ("cca", ["--suggest-frac", "1.5"], "--suggest-frac 1.5"),
    ("cca", ["--max-utts", "0"], "--max-utts 0"),
    ("probe", ["--max-frames", "0"], "--max-frames 0"),
    ("probe", ["--mi-steps", "-3"], "--mi-steps -3"),
    ("probe", ["--mi-layers", "last"], "--mi-layers"),
    ("probe", ["--layers", "9"], "valid layers are 0-0"),
])
def test_cca_probe_bad_numbers_exit_2_before_any_work(cmd, args, word, tiny_corpus, tmp_path, capsys):
    rc = main([cmd, "--upstream", "fbank", "--corpus", str(tiny_corpus), "--quiet", "--cache", str(tmp_path / "c"),
               "--out", str(tmp_path / "o.csv"), *args])
    assert rc == 2 and word in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "o.csv").exists()


def test_cca_stops_on_bad_split_audio(corpus, tmp_path, capsys):
    import csv

    row = next(r for r in csv.DictReader(open(corpus / "manifest.csv")) if r["split"] == "dev")
    _replace(corpus / row["librispeech"], _stereo)
    rc = main(["cca", "--upstream", "fbank", "--corpus", str(corpus), "--quiet", "--cache", str(tmp_path / "c"),
               "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and Path(row["librispeech"]).name in err and "2 channels" in err


# ------------------------------------------------------------------------------------ pretrain, corpus

@pytest.mark.parametrize("override, word", [
    ("data.batch_size=0", "data.batch_size=0: must be > 0"),
    ("iter1.lr=nan", "iter1.lr=nan: must be a finite number"),
    ("iter1.lr=-1e-3", "iter1.lr=-0.001: must be > 0"),
    ("mask_prob=1.5", "mask_prob=1.5: must be in [0, 1]"),
    ("iter1.betas=0.9,inf", "must be a finite number"),
])
def test_pretrain_bad_override_values_exit_2_before_set_up(override, word, tmp_path, capsys):
    rc = main(["pretrain", "--recipe", "hubert-compact", "--out", str(tmp_path / "run"),
               "--corpus", str(tmp_path / "no_corpus"), override])
    assert rc == 2 and word in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pretrain_stops_on_bad_training_audio(corpus, tmp_path, capsys):
    from harness.preflight import files_for_pretrain

    victim = files_for_pretrain(corpus, "train-clean-100", True).files[0]     # a file it trains on
    _replace(victim, lambda p: p.write_bytes(b"RIFF\x00\x00"))
    rc = main(["pretrain", "--recipe", "hubert-compact", "--out", str(tmp_path / "run"), "--corpus", str(corpus),
               "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and victim.name in err and "unreadable" in err
    assert not list((tmp_path / "run").glob("**/*.safetensors"))


@pytest.mark.parametrize("args, word", [(["--workers", "0"], "--workers 0"), (["--seed", "-1"], "--seed -1")])
def test_corpus_make_bad_numbers(args, word, tmp_path, capsys):
    assert main(["corpus", "make", "--size", "tiny", "--out", str(tmp_path / "c"), *args]) == 2
    assert word in capsys.readouterr().err and not (tmp_path / "c").exists()
