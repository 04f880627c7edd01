"""Support files for the real corpora: everything s3prl's SUPERB tasks read besides audio.

The corpus generator writes these files for its synthetic corpus; ``prepare_*`` write the same
files, through the same writers, from a real corpus's own layout (``harness prepare``)::

    from harness.corpus.prepare import prepare_librispeech, prepare_voxceleb1, prepare_iemocap
    prepare_librispeech("/data/LibriSpeech", out="/data/duet_prep", lexicon="/data/librispeech-lexicon.txt")
    prepare_voxceleb1("/data/VoxCeleb1", out="/data/duet_prep")
    prepare_iemocap("/data/IEMOCAP_full_release", out="/data/duet_prep")
    # -> /data/duet_prep/datasets.yaml for `harness run --data-config`

What each writes under ``out`` (default: the corpus root itself; names as in ``layout.py``):

=========== ================================================ =========================================
corpus      expects under ``root``                           writes under ``out``
=========== ================================================ =========================================
librispeech ``train-clean-100/ dev-clean/ test-clean/``      ``len_for_bucket/<split>.csv`` (s3prl's
            (more LibriSpeech splits are used if present),   generate_len_for_bucket.py table, length
            ``SPK/CHAP/SPK-CHAP-NNNN.flac`` +                in samples, longest first), ``char.dict``,
            ``SPK-CHAP.trans.txt``                           ``lexicon.txt`` (``--lexicon`` entries,
                                                             espeak-ng for words it lacks),
                                                             ``phones.txt``, ``phones/<split>.txt``,
                                                             ``libriphone/<split>.csv``
voxceleb1   ``dev/wav/idNNNNN/<video>/<n>.wav``, ``test/wav/  ``dev_meta_data/dev_meta_data.txt`` (ASV
            ...``, ``iden_split.txt`` and ``veri_test2.txt``  dev trials over dev speakers; the
            (or ``veri_test.txt``) from the VoxCeleb site     official lists are checked, not made)
iemocap     ``SessionK/sentences/wav/<dialog>/<utt>.wav`` +   ``meta_data/SessionK/{train,test}_meta_
            ``SessionK/dialog/EmoEvaluation/<dialog>.txt``   data.json`` (s3prl's IEMOCAP_preprocess)
=========== ================================================ =========================================

and merges the corpus's keys into ``out/datasets.yaml`` (``harness.superb.real_data``'s keys, absolute
paths). Idempotent: every file is written atomically and only when its content changes, so a second
run changes nothing. A missing root or a wrong layout raises :class:`PrepareError` naming the path
and what was expected.

Where the result differs from the generator's own files (same corpus, support files deleted):
``phones/<split>.txt`` and the ``phones`` column of ``libriphone/<split>.csv`` are lexicon look-ups
(the generator writes the phones espeak actually spoke, which differ where a word was said in context
or merged with a neighbour); ``phones.txt`` holds the lexicon's phones only; ``dev_meta_data.txt``
draws its own trials (same rule, ``make_trials``; the generator's draw depends on its plan); the ER
meta data lists each session's utterances in path order (the generator: plan order; s3prl's own
script: directory-listing order). tests/test_prepare.py checks each of these.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from upstream.facts import progress_bar

from .fileio import atomic_write_text
from .iemocap import er_entry, write_er_meta
from .layout import ER_FOLDS, IEMOCAP_FILES, LIBRI_FILES, VOX_FILES
from .librispeech import (char_counts, espeak_lexicon, write_bucket_csv, write_char_dict,
                          write_libriphone_table, write_lexicon, write_phone_vocab)
from .transcripts import TranscriptError, chapter_transcript_path, read_chapter_transcripts, write_phone_transcripts
from .voxceleb import make_trials, write_trials

CORPORA = ("librispeech", "voxceleb1", "iemocap")
# LibriSpeech's splits in s3prl's order; the first three are the ones SUPERB's PR and ASR use
LIBRI_SUPERB_SPLITS = ("train-clean-100", "dev-clean", "test-clean")
LIBRI_ALL_SPLITS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                    "test-clean", "test-other")
DATASETS_YAML = "datasets.yaml"
VOX_META_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta"


class PrepareError(RuntimeError):
    """A missing corpus root, a wrong layout or a bad input file (``harness prepare`` exits 2)."""


def read_yaml_mapping(path: Path, error: type[Exception], fix: str) -> dict:
    """A YAML file that must hold a mapping ({} when empty); ``error`` names the file and ``fix`` otherwise."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise error(f"{path} is not valid YAML ({e}); {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a mapping; {fix}")
    return data


def _bar(it, progress: bool, **kw):
    return progress_bar(it, enabled=progress, **kw)


def _root(root, name: str, expected: str) -> Path:
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise PrepareError(f"{name} root {root} does not exist; expected {expected}")
    if not root.is_dir():
        raise PrepareError(f"{name} root {root} is not a directory; expected {expected}")
    return root


def _out(out, root: Path) -> Path:
    out = Path(out).expanduser().resolve() if out is not None else root
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepareError(f"cannot create --out {out} ({e.strerror}); choose a writable directory") from None
    if not os.access(out, os.W_OK):
        raise PrepareError(f"--out {out} is not writable (the corpus root may be read-only); pass "
                           f"--out DIR for the support files")
    return out


def update_datasets_yaml(out: Path, entries: dict[str, Path]) -> Path:
    """Merge ``entries`` (``harness.superb.real_data`` keys -> paths) into ``out/datasets.yaml``."""
    import yaml

    path = out / DATASETS_YAML
    old = {}
    if path.is_file():
        old = read_yaml_mapping(path, PrepareError, "it should map dataset keys to paths: fix or delete it and rerun")
    merged = {**old, **{k: str(v) for k, v in entries.items()}}
    atomic_write_text(path, "# written by `harness prepare`; use with `harness run --data-config` "
                            "(keys: harness/superb/real_data.py)\n" + yaml.safe_dump(merged, sort_keys=True))
    return path


# ------------------------------------------------------------------------------ LibriSpeech

def _libri_utts(root: Path, split: str) -> list[tuple[str, str, str]]:
    """[(utt_id, path relative to root, transcript)] for every flac of one split."""
    d = root / split
    trans: dict[str, str] = {}
    for tf in sorted(d.glob("*/*/*.trans.txt")):
        try:
            trans.update(read_chapter_transcripts(tf))
        except TranscriptError as e:
            raise PrepareError(str(e)) from None
    flacs = sorted(p for p in d.glob("*/*/*.flac") if not p.name.startswith("."))
    if not flacs:
        raise PrepareError(f"{d} holds no SPK/CHAP/SPK-CHAP-NNNN.flac files (LibriSpeech layout expected)")
    out = []
    for f in flacs:
        utt = f.name[:-len(".flac")]
        if utt not in trans:
            raise PrepareError(f"{f} has no transcript: expected a line '{utt} ...' in {chapter_transcript_path(f)}")
        out.append((utt, f"{split}/{f.relative_to(d).as_posix()}", trans[utt]))
    return out


def _num_samples(sf, path: Path) -> int:
    try:
        return sf.info(str(path)).frames
    except Exception as e:  # noqa: BLE001 - libsndfile's errors vary; name the file whatever it is
        raise PrepareError(f"{path}: cannot read its audio header ({e}); re-extract that file") from None


def load_lexicon(path) -> dict[str, list[str]]:
    """``WORD ph ph ...`` lines (tab or space separated; the first pronunciation of a word wins)."""
    from harness.corpus.lexicon import read_lexicon

    p = Path(path).expanduser()
    if not p.is_file():
        raise PrepareError(f"--lexicon {p}: no such file; pass a 'WORD PH PH ...' lexicon (e.g. SUPERB's "
                           f"librispeech-lexicon-200k-g2p.txt) or leave it out to use espeak-ng for every word")
    lex = read_lexicon([p])
    if not lex:
        raise PrepareError(f"--lexicon {p} holds no 'WORD PH PH ...' lines")
    return lex


def prepare_librispeech(root, out=None, lexicon=None, progress: bool = True) -> dict:
    """Bucket tables, ``char.dict``, lexicon, phone vocabulary and transcripts of a LibriSpeech tree.

    Returns a summary: splits and utterance counts, words from the lexicon / from espeak-ng, files.
    """
    import soundfile as sf

    expected = (f"a LibriSpeech root holding {', '.join(LIBRI_SUPERB_SPLITS)}/ "
                f"(SPK/CHAP/SPK-CHAP-NNNN.flac + SPK-CHAP.trans.txt)")
    root = _root(root, "LibriSpeech", expected)
    missing = [s for s in LIBRI_SUPERB_SPLITS if not (root / s).is_dir()]
    if missing:
        hint = f" (did you mean {root / 'LibriSpeech'}?)" if (root / "LibriSpeech" / missing[0]).is_dir() else ""
        raise PrepareError(f"LibriSpeech root {root} has no {missing[0]}/{hint}; expected {expected}")
    given = load_lexicon(lexicon) if lexicon is not None else {}
    out = _out(out, root)
    splits = [s for s in LIBRI_ALL_SPLITS if (root / s).is_dir()]
    utts = {s: _libri_utts(root, s) for s in splits}
    bucket_dir, table_dir = out / LIBRI_FILES["bucket_dir"], out / LIBRI_FILES["libriphone_dir"]
    for s in splits:
        lengths = [(_num_samples(sf, root / rel), rel)
                   for _, rel, _ in _bar(utts[s], progress, desc=f"lengths {s}", unit="file")]
        write_bucket_csv(bucket_dir / f"{s}.csv", lengths)
    words = {w for s in splits for _, _, text in utts[s] for w in text.split()}
    lex, g2p = {}, []
    for w in words:
        pron = given.get(w, given.get(w.upper()))
        if pron is None:
            g2p.append(w)
        else:
            lex[w] = pron
    lex.update(espeak_lexicon(g2p))
    for s in splits:
        seqs = [(u, [p for w in text.split() for p in lex[w]]) for u, _, text in utts[s]]
        write_phone_transcripts(out / LIBRI_FILES["phone_transcripts_dir"] / f"{s}.txt", seqs)
        write_libriphone_table(table_dir / f"{s}.csv",
                               [(u, os.path.relpath(root / rel, table_dir), text, ph)
                                for (u, rel, text), (_, ph) in zip(utts[s], seqs)])
    write_char_dict(out / LIBRI_FILES["char_dict"], char_counts(text for s in splits for _, _, text in utts[s]))
    write_lexicon(out / LIBRI_FILES["lexicon"], lex)
    write_phone_vocab(out / LIBRI_FILES["phone_vocab"], (p for ph in lex.values() for p in ph))
    yaml_path = update_datasets_yaml(out, {"librispeech": root, **{k: out / LIBRI_FILES[k] for k in
                                                                   ("bucket_dir", "char_dict", "lexicon", "phone_vocab")}})
    return {"corpus": "librispeech", "root": str(root), "out": str(out), "datasets_yaml": str(yaml_path),
            "splits": {s: len(utts[s]) for s in splits}, "words": len(words),
            "words_from_lexicon": len(words) - len(g2p), "words_from_espeak": len(g2p)}


# ------------------------------------------------------------------------------ VoxCeleb1

def _vox_lines(path: Path, n_fields: int, what: str) -> list[list[str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n_fields or parts[0] not in (("1", "2", "3") if n_fields == 2 else ("0", "1")):
            raise PrepareError(f"{path}:{n}: expected {what}, got {line[:80]!r}")
        rows.append(parts)
    if not rows:
        raise PrepareError(f"{path} is empty; expected lines of {what}")
    return rows


def _check_exist(paths: list[Path], source: Path, progress: bool) -> None:
    missing = [p for p in _bar(paths, progress, desc=f"check {source.name}", unit="file") if not p.is_file()]
    if missing:
        raise PrepareError(f"{source} names {len(missing)} files that do not exist, e.g. {missing[0]}; "
                           f"is this list for this VoxCeleb1 copy (dev/wav and test/wav complete)?")


def prepare_voxceleb1(root, out=None, seed: int = 0, dev_speakers: int = 40, trials_per_speaker: int = 40,
                      progress: bool = True) -> dict:
    """Check VoxCeleb1's official split and trial lists; write the ASV dev trials s3prl's
    ``sv_voxceleb1`` evaluates on (``make_trials`` over the last ``dev_speakers`` dev speakers,
    ``trials_per_speaker`` each, half target trials, seeded)."""
    expected = "a VoxCeleb1 root holding dev/wav/idNNNNN/<video>/<n>.wav and test/wav/idNNNNN/<video>/<n>.wav"
    root = _root(root, "VoxCeleb1", expected)
    for sub in ("dev/wav", "test/wav"):
        if not (root / sub).is_dir():
            raise PrepareError(f"VoxCeleb1 root {root} has no {sub}/; expected {expected} (the official zips "
                               f"unpack to wav/: move or link vox1_dev_wav/wav to dev/wav, vox1_test_wav/wav to test/wav)")
    if dev_speakers < 2 or trials_per_speaker < 2:
        raise PrepareError(f"--asv-dev-speakers ({dev_speakers}) and --asv-trials-per-speaker "
                           f"({trials_per_speaker}) must be at least 2")
    iden = root / VOX_FILES["iden_split"]
    if not iden.is_file():
        raise PrepareError(f"{iden} is missing: download {VOX_META_URL}/iden_split.txt (SUPERB SID's split) into {root}")
    veri = next((root / n for n in ("veri_test2.txt", VOX_FILES["veri_test"]) if (root / n).is_file()), None)
    if veri is None:
        raise PrepareError(f"{root / 'veri_test2.txt'} is missing: download {VOX_META_URL}/veri_test2.txt "
                           f"(SUPERB ASV's trial list; veri_test.txt is accepted too) into {root}")
    iden_rows = _vox_lines(iden, 2, "'1|2|3 idNNNNN/<video>/<n>.wav'")
    veri_rows = _vox_lines(veri, 3, "'1|0 idA/<video>/<n>.wav idB/<video>/<m>.wav'")
    sets = {s: root / s / "wav" for s in ("dev", "test")}
    dev_ids = {p.name for p in sets["dev"].iterdir()}   # SID reads both folders (s3prl: root/*/wav/PATH)
    _check_exist([sets["dev" if r[1].split("/")[0] in dev_ids else "test"] / r[1] for r in iden_rows], iden, progress)
    _check_exist([sets["test"] / p for r in veri_rows for p in r[1:]], veri, progress)
    files_by_spk: dict[str, list[str]] = defaultdict(list)
    for spk_dir in sorted(p for p in sets["dev"].iterdir() if p.is_dir()):
        files_by_spk[spk_dir.name] = sorted(f.relative_to(sets["dev"]).as_posix() for f in spk_dir.glob("*/*.wav"))
    spks = [s for s in sorted(files_by_spk) if files_by_spk[s]]
    if len(spks) < 2:
        raise PrepareError(f"{sets['dev']} holds {len(spks)} speakers with wav files; ASV needs at least 2")
    chosen = spks[-min(dev_speakers, len(spks)):]
    rng = np.random.default_rng([seed, 0xA5F])
    dev = make_trials({s: files_by_spk[s] for s in chosen}, trials_per_speaker, rng)
    out_dir = _out(out, root)
    veri_dev = out_dir / VOX_FILES["veri_dev"]
    write_trials(veri_dev, dev)
    yaml_path = update_datasets_yaml(out_dir, {"voxceleb1": root, "iden_split": iden, "veri_test": veri,
                                               "veri_dev": veri_dev})
    return {"corpus": "voxceleb1", "root": str(root), "out": str(out_dir), "datasets_yaml": str(yaml_path),
            "sid_files": len(iden_rows), "asv_test_trials": len(veri_rows), "veri_test": str(veri),
            "asv_dev_speakers": len(chosen), "asv_dev_trials": len(dev)}


# ------------------------------------------------------------------------------ IEMOCAP

def read_emo_evaluation(path: Path) -> list[tuple[str, str]]:
    """[(utterance name, emotion)] of an IEMOCAP ``dialog/EmoEvaluation/<dialog>.txt``, file order:
    the lines ``[START - END]<TAB>NAME<TAB>EMOTION<TAB>[V, A, D]`` (as s3prl's preprocess reads them)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.startswith("["):
            continue
        parts = [p for p in re.split("[\t\n]", line) if p]
        if len(parts) < 3:
            raise PrepareError(f"{path}:{n}: expected '[START - END]<TAB>NAME<TAB>EMOTION<TAB>[V, A, D]', "
                               f"got {line[:80]!r}")
        out.append((parts[1], parts[2]))
    return out


def prepare_iemocap(root, out=None, progress: bool = True) -> dict:
    """s3prl's ER meta data (5 folds: fold K tests on Session K) from IEMOCAP's label files."""
    expected = ("an IEMOCAP root (IEMOCAP_full_release) holding Session1..Session5/ with "
                "sentences/wav/<dialog>/<utt>.wav and dialog/EmoEvaluation/<dialog>.txt")
    root = _root(root, "IEMOCAP", expected)
    entries: dict[int, list[dict]] = {}
    skipped = 0
    for k in _bar(ER_FOLDS, progress, desc="sessions", unit="session"):
        sess = root / f"Session{k}"
        wav_dir, label_dir = sess / "sentences" / "wav", sess / "dialog" / "EmoEvaluation"
        for d in (wav_dir, label_dir):
            if not d.is_dir():
                raise PrepareError(f"IEMOCAP root {root}: {d} does not exist; expected {expected}")
        wavs = {p.stem: p.relative_to(root).as_posix() for p in wav_dir.glob("*/*.wav") if not p.name.startswith(".")}
        labels = sorted(p for p in label_dir.glob("*.txt") if not p.name.startswith("."))
        if not wavs or not labels:
            raise PrepareError(f"IEMOCAP {sess} has {len(wavs)} wav files under {wav_dir} and {len(labels)} label "
                               f"files under {label_dir}; expected {expected}")
        got = []
        for lf in labels:
            for name, emotion in read_emo_evaluation(lf):
                e = er_entry(wavs[name], emotion) if name in wavs else None
                if e is None:
                    skipped += name not in wavs
                    continue
                got.append(e)
        entries[k] = sorted(got, key=lambda e: e["path"])
    out = _out(out, root)
    meta = out / IEMOCAP_FILES["iemocap_meta"]
    counts = write_er_meta(meta, entries)
    yaml_path = update_datasets_yaml(out, {"iemocap": root, "iemocap_meta": meta})
    return {"corpus": "iemocap", "root": str(root), "out": str(out), "datasets_yaml": str(yaml_path),
            "labels_without_wav": skipped, **counts}


PREPARE = {"librispeech": prepare_librispeech, "voxceleb1": prepare_voxceleb1, "iemocap": prepare_iemocap}

