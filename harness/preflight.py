"""Pre-flight audio check: decode every file a run will read once, before any training, and stop
with a list of what is wrong with which file and how to fix it.

A file passes when libsndfile decodes all of it and it is ``expected_rate`` Hz, mono, at least
``MIN_SAMPLES`` samples long, not cut off (a WAV whose header promises more data than the file
holds), and its float samples are finite and within ``MAX_PEAK``. Everything else is a
:class:`Problem` of one of the kinds in ``FIXES``; a file that a task's list names but that is not
on disk is a ``missing`` problem (with the list file and line).

Files are decoded in ``workers`` threads (libsndfile and numpy release the GIL), hard links of one
file once, with a tqdm bar when stderr is a terminal. With ``cache_path`` each file's decoded facts
are kept in a JSON file keyed by (path, size, mtime_ns), written atomically, so a second check of an
unchanged corpus only stats the files.

Which files a command reads (each returns a :class:`FileList`: the files, plus the problems of
listed files that are not on disk and of unreadable list lines):

* ``files_for_task(task, corpus)`` for ``sid``, ``asv``, ``er``, ``pr``, ``asr`` (what s3prl's
  dataset of the task opens when pointed at the corpus as ``harness.superb.tasks`` points it: the same
  layout attributes as its ``_sid_paths`` ... ``_asr_paths``);
* ``files_for_abx(item_file, audio_dir)``: the ``<file>.wav`` / ``.flac`` an ABX item file names;
* ``files_for_split(corpus, split)``: the LibriSpeech files of a split (``harness cca|probe``);
* ``files_for_pretrain(corpus, split, exclude_eval)``: what ``harness pretrain`` trains on.

Example::

    files = files_for_task("sid", "corpora/small")
    report = check_audio(files, cache_path="corpora/small/.preflight.json")
    report.raise_for_problems()          # PreflightError(report) listing the files and the fixes
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from upstream.facts import SAMPLE_RATE, atomic_write_json, progress_bar, same_file_key
from upstream.validation import MIN_SAMPLES, SOX_FIX

CACHE_FORMAT = "duet-preflight/1"
MAX_PEAK = 2.0          # float samples beyond +-2 (6 dB over full scale) are mis-scaled, not clipped
SHOW = 20               # problems listed in a report before "... and N more"
AUDIO_EXTS = ("aac", "au", "flac", "m4a", "mp3", "ogg", "wav")   # librosa.util.find_files' default

FIXES = {
    "missing": "restore the file, remove its line from the list, or regenerate the corpus "
               "(`harness corpus make` resumes)",
    "list": "fix the line of the list file (the format is given in the message)",
    "unreadable": "not audio that libsndfile can decode (empty, text, a cut-off header or corrupt data): "
                  "re-copy or re-create the file",
    "truncated": "the audio data is cut off (an interrupted copy or download): re-copy the file",
    "empty": "no samples: re-create the file or remove it from the list",
    "short": f"shorter than {MIN_SAMPLES} samples ({1000 * MIN_SAMPLES // SAMPLE_RATE} ms), less than the "
             f"models' first frame: remove it from the list",
    "rate": f"resample to {SAMPLE_RATE // 1000} kHz mono: {SOX_FIX}",
    "channels": f"mix down to mono: {SOX_FIX}",
    "nonfinite": "NaN/Inf float samples: re-create the file from its source, or remove it from the list",
    "range": f"float samples far outside [-1, 1] (integer PCM stored as float?): rescale with "
             f"sox in.wav -r {SAMPLE_RATE} -c 1 -b 16 out.wav norm -1",
}


@dataclass(frozen=True)
class Problem:
    """What is wrong with one file: ``kind`` (a key of FIXES), ``detail``, and ``where`` it is listed."""

    path: str
    kind: str
    detail: str
    where: str = ""

    def line(self) -> str:
        return f"{self.path}: {self.detail}" + (f" (listed in {self.where})" if self.where else "")


@dataclass
class FileList:
    """The audio files a command will read, in order; ``problems``: listed files that are not on
    disk and unreadable lines of the list files; ``where``: file -> "list-file:line" naming it."""

    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        return iter(self.files)

    def __add__(self, other: "FileList") -> "FileList":
        seen = set(self.files)
        return FileList(self.files + [f for f in other.files if f not in seen], self.problems + other.problems,
                        {**other.where, **self.where})


@dataclass
class PreflightReport:
    """The result of :func:`check_audio`."""

    checked: int                       # files looked at (missing ones included)
    problems: list[Problem]
    decoded: int = 0                   # files decoded this time (the rest came from the cache)
    seconds: float = 0.0
    cache_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, show: int = SHOW) -> str:
        if self.ok:
            return f"pre-flight audio check: {self.checked} files OK ({self.decoded} decoded, {self.seconds:.1f} s)"
        n = len(self.problems)
        lines = [f"pre-flight audio check: {n} problem(s) in {self.checked} files; nothing was trained:"]
        lines += [f"  {p.line()}" for p in self.problems[:show]]
        if n > show:
            lines.append(f"  ... and {n - show} more")
        kinds = list(dict.fromkeys(p.kind for p in self.problems))
        lines.append("how to fix:")
        lines += [f"  {k} ({sum(p.kind == k for p in self.problems)}): {FIXES[k]}" for k in kinds]
        return "\n".join(lines)

    def raise_for_problems(self) -> "PreflightReport":
        if self.problems:
            raise PreflightError(self)
        return self


class PreflightError(Exception):
    """Audio that would give a wrong result or fail mid-run; ``.report`` lists every problem."""

    def __init__(self, report: PreflightReport):
        super().__init__(report.format())
        self.report = report


# ----------------------------------------------------------------------------------- decoding

_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)   # streamed WAVs: size unknown when the header was written


def _decode(path: str) -> dict:
    """Decode one file fully; the facts the verdict needs (never raises)."""
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            facts = {"rate": int(f.samplerate), "channels": int(f.channels), "subtype": str(f.subtype),
                     "format": str(f.format), "header_frames": int(f.frames)}
            m = _TRUNCATED.search(f.extra_info or "")
            if m and int(m.group(1)) > int(m.group(2)) and int(m.group(1)) not in _PLACEHOLDER_SIZES:
                facts["truncated"] = [int(m.group(1)), int(m.group(2))]
            is_float = f.subtype in ("FLOAT", "DOUBLE") or not f.subtype.startswith(("PCM", "ULAW", "ALAW"))
            frames, nonfinite, peak = 0, 0, 0.0
            for block in f.blocks(blocksize=1 << 16, dtype="float32" if is_float else "int16", always_2d=True):
                frames += len(block)
                if is_float and len(block):
                    finite = np.isfinite(block)
                    if not finite.all():
                        nonfinite += int(block.size - finite.sum())
                        block = np.where(finite, block, 0.0)
                    peak = max(peak, float(np.abs(block).max()))
            facts.update(frames=frames, nonfinite=nonfinite, peak=peak)
            return facts
    except Exception as e:  # noqa: BLE001 - any decoder failure is this file's problem, reported with its path
        msg = str(e).replace(f"'{path}'", "the file").replace(str(path), "the file") or "no message"
        return {"error": f"{type(e).__name__}: {msg}"}


def verdict(path: str, facts: dict, expected_rate: int = SAMPLE_RATE, where: str = "") -> list[Problem]:
    """The problems of one decoded file (empty list: fine)."""
    if "error" in facts:
        return [Problem(path, "unreadable", f"cannot be decoded ({facts['error']})", where)]
    out = []
    if facts.get("truncated"):
        said, has = facts["truncated"]
        out.append(Problem(path, "truncated", f"cut off: its header declares {said} bytes of audio, the file "
                                              f"holds {has}", where))
    if facts["frames"] == 0:
        return out + [Problem(path, "empty", "has no samples", where)]
    if facts["rate"] != expected_rate:
        out.append(Problem(path, "rate", f"{facts['rate']} Hz, expected {expected_rate} Hz", where))
    if facts["channels"] != 1:
        out.append(Problem(path, "channels", f"{facts['channels']} channels, expected 1 (mono)", where))
    if facts["frames"] < MIN_SAMPLES and facts["rate"] == expected_rate:
        out.append(Problem(path, "short", f"only {facts['frames']} samples", where))
    if facts["nonfinite"]:
        out.append(Problem(path, "nonfinite", f"{facts['nonfinite']} NaN/Inf samples", where))
    if facts["peak"] > MAX_PEAK:
        out.append(Problem(path, "range", f"peak {facts['peak']:.3g}, expected samples in [-1, 1]", where))
    return out


# ----------------------------------------------------------------------------------- the cache

def _load_cache(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache is only lost time: everything is decoded again and it is rewritten
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _save_cache(path: Path, files: dict) -> None:
    """Write the cache atomically; a cache that cannot be written costs only time, so say so and go on."""
    try:
        atomic_write_json(path, {"format": CACHE_FORMAT, "files": files}, indent=None)
    except OSError as e:
        print(f"pre-flight audio check: cannot write its cache {path} ({e.strerror or e}); the next check "
              f"decodes every file again (set DUET_PREFLIGHT_CACHE to a writable file)", file=sys.stderr)


# ----------------------------------------------------------------------------------- the check

def check_audio(paths: Iterable[str | os.PathLike] | FileList, *, expected_rate: int = SAMPLE_RATE,
                workers: int = 2, cache_path: str | os.PathLike | None = None,
                progress: bool | None = None, where: dict[str, str] | None = None) -> PreflightReport:
    """Decode every file of ``paths`` once and report what is wrong with each.

    ``paths``: file paths, or a :class:`FileList` (its problems, e.g. missing files, are reported
    first). ``workers``: decoding threads. ``cache_path``: JSON cache of decoded facts by (path,
    size, mtime_ns); None: no cache. ``progress``: a tqdm bar when stderr is a terminal (False: never).
    ``where``: {path: "list-file:line"} to name where a file is listed in its problems (a
    FileList brings its own). Never raises for bad audio; call ``report.raise_for_problems()``.
    """
    t0 = time.perf_counter()
    listed = paths if isinstance(paths, FileList) else FileList()
    problems: list[Problem] = list(listed.problems)
    where = {**listed.where, **(where or {})}
    names = list(dict.fromkeys(os.fspath(p) for p in paths))
    cache_file = Path(cache_path) if cache_path is not None else None
    cache = _load_cache(cache_file)
    facts: dict[str, dict] = {}
    todo: dict[tuple, list[str]] = {}       # (dev, inode, size, mtime) -> paths (hard links decoded once)
    stats: dict[str, tuple[int, int]] = {}
    for name in names:
        key = os.path.abspath(name)
        try:
            st = os.stat(name)
        except OSError as e:
            problems.append(Problem(name, "missing", f"cannot be opened ({e.strerror or e})", where.get(name, "")))
            continue
        if not os.path.isfile(name):
            problems.append(Problem(name, "unreadable", "is not a regular file", where.get(name, "")))
            continue
        stats[name] = (st.st_size, st.st_mtime_ns)
        hit = cache.get(key)
        if hit is not None and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            facts[name] = hit
        else:
            todo.setdefault(same_file_key(st), []).append(name)
    decoded = 0
    if todo:
        groups = list(todo.values())
        with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool, \
                progress_bar(total=len(groups), enabled=progress is not False, desc="pre-flight audio check",
                             unit="file", leave=False) as bar:
            for group, result in zip(groups, pool.map(_decode, [g[0] for g in groups])):
                for name in group:
                    size, mtime = stats[name]
                    facts[name] = dict(result, size=size, mtime_ns=mtime)
                bar.update(1)
        decoded = len(groups)
        if cache_file is not None:
            for name, f in facts.items():
                cache[os.path.abspath(name)] = f
            _save_cache(cache_file, cache)
    for name in names:
        if name in facts:
            problems += verdict(name, facts[name], expected_rate, where.get(name, ""))
    return PreflightReport(checked=len(names) + sum(p.kind == "missing" for p in listed.problems),
                           problems=problems, decoded=decoded, seconds=time.perf_counter() - t0,
                           cache_path=None if cache_file is None else str(cache_file))


def preflight(paths: Iterable[str | os.PathLike] | FileList, **kwargs) -> PreflightReport:
    """:func:`check_audio`, then raise :class:`PreflightError` if anything is wrong."""
    return check_audio(paths, **kwargs).raise_for_problems()


def default_cache_path(corpus: str | os.PathLike) -> Path:
    """Where a corpus's pre-flight cache goes: ``$DUET_PREFLIGHT_CACHE`` if set, else
    ``~/.cache/duet/preflight-<hash of the corpus's absolute path>.json`` (outside the corpus,
    which may be read-only; one file per corpus keeps each load small)."""
    import hashlib

    env = os.environ.get("DUET_PREFLIGHT_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "duet"
    tag = hashlib.sha1(os.path.abspath(os.fspath(corpus)).encode()).hexdigest()[:12]
    return base / f"preflight-{tag}.json"


# ----------------------------------------------------------------------------------- file lists

def _layout(corpus):
    from harness.corpus.layout import CorpusLayout

    return CorpusLayout(corpus) if isinstance(corpus, (str, os.PathLike)) else corpus


def _list_problem(path: Path, n: int | None, msg: str) -> Problem:
    return Problem(str(path) + (f":{n}" if n else ""), "list", msg)


def _add(out: FileList, seen: set, p: Path, where: str, exists: bool | None = None) -> None:
    """Append ``p`` (once) to ``out.files``, or a ``missing`` problem if it is not a file."""
    if p in seen:
        return
    seen.add(p)
    if p.is_file() if exists is None else exists:
        out.files.append(p)
        if where:
            out.where[str(p)] = where
    else:
        out.problems.append(Problem(str(p), "missing", "is listed but not on disk", where))


def _read_lines(path: Path, out: FileList) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        out.problems.append(Problem(str(path), "missing", "list file is not on disk"))
        return []
    except (OSError, UnicodeDecodeError) as e:
        out.problems.append(_list_problem(path, None, f"cannot be read as a text list ({e})"))
        return []
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _sid_files(c) -> FileList:
    """s3prl voxceleb1: every ``k path`` of iden_split.txt, found as ``file_path/*/wav/path``."""
    out, seen = FileList(), set()
    root = Path(c.voxceleb1)
    wav_dirs = sorted(d / "wav" for d in root.iterdir() if (d / "wav").is_dir()) if root.is_dir() else []
    for n, cols in _read_lines(Path(c.iden_split), out):
        if len(cols) != 2 or cols[0] not in ("1", "2", "3"):
            out.problems.append(_list_problem(Path(c.iden_split), n, f"expected '1|2|3 idNNNNN/video/nnnnn.wav', "
                                                                    f"got {' '.join(cols)!r}"))
            continue
        found = next((d / cols[1] for d in wav_dirs if (d / cols[1]).is_file()), None)
        _add(out, seen, found or root / "dev" / "wav" / cols[1], f"{c.iden_split}:{n}", exists=found is not None)
    return out


def _trial_files(list_file: Path, wav_dir: Path, out: FileList, seen: set) -> None:
    for n, cols in _read_lines(list_file, out):
        if len(cols) != 3:
            out.problems.append(_list_problem(list_file, n, f"expected '1|0 path1 path2', got {' '.join(cols)!r}"))
            continue
        for rel in cols[1:]:
            _add(out, seen, wav_dir / rel, f"{list_file}:{n}")


def _asv_files(c) -> FileList:
    """s3prl sv_voxceleb1: every audio file under file_path/dev/wav (training), the dev trials
    (relative to dev/wav) and the test trials (relative to test/wav)."""
    out, seen = FileList(), set()
    dev = Path(c.voxceleb1) / "dev" / "wav"
    if not dev.is_dir():
        out.problems.append(Problem(str(dev), "missing", "ASV training folder is not on disk"))
    else:
        for p in sorted(dev.rglob("*")):
            if p.suffix[1:].lower() in AUDIO_EXTS and p.is_file():
                _add(out, seen, p, "", exists=True)
    _trial_files(Path(c.veri_dev), dev, out, seen)
    _trial_files(Path(c.veri_test), Path(c.voxceleb1) / "test" / "wav", out, seen)
    return out


def _er_files(c, folds: Sequence[int] = (1, 2, 3, 4, 5)) -> FileList:
    """s3prl emotion: the ``path`` of every entry of meta_data/SessionK/{train,test}_meta_data.json."""
    out, seen = FileList(), set()
    root, meta = Path(c.iemocap), Path(c.iemocap_meta)
    for k in folds:
        for part in ("train", "test"):
            j = meta / f"Session{k}" / f"{part}_meta_data.json"
            try:
                entries = json.loads(j.read_text())["meta_data"]
                rels = [e["path"] for e in entries]
            except FileNotFoundError:
                out.problems.append(Problem(str(j), "missing", "ER fold list is not on disk"))
                continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                out.problems.append(_list_problem(j, None, f"not s3prl's emotion meta data "
                                                          f"{{'meta_data': [{{'path', 'label'}}]}} ({e!r})"))
                continue
            for i, rel in enumerate(rels):
                _add(out, seen, root / rel, f"{j} entry {i}")
    return out


def _bucket_files(table: Path, base: Path, csv_dir: Path, out: FileList, seen: set) -> None:
    """Rows of an s3prl bucket table (``file_path`` relative to ``base``) or a SUPERB PR table
    (``wav_path``, absolute or relative to ``csv_dir``)."""
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            col = "file_path" if "file_path" in fields else "wav_path" if "wav_path" in fields else None
            if col is None:
                out.problems.append(_list_problem(table, 1, f"needs a file_path or wav_path column, has {fields}"))
                return
            for n, row in enumerate(reader, 2):
                rel = (row.get(col) or "").strip()
                if not rel:
                    out.problems.append(_list_problem(table, n, f"empty {col}"))
                    continue
                p = Path(rel) if os.path.isabs(rel) else (base if col == "file_path" else csv_dir) / rel
                _add(out, seen, p, f"{table}:{n}")
    except FileNotFoundError:
        out.problems.append(Problem(str(table), "missing", "split table is not on disk"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        out.problems.append(_list_problem(table, None, f"cannot be read as CSV ({e})"))


def _libri_files(c) -> FileList:
    """s3prl asr and harness.s3prl.libriphone (pr): the rows of len_for_bucket/<split>.csv of
    train-clean-100, dev-clean and test-clean, relative to the LibriSpeech root."""
    from harness.corpus.layout import LIBRI_SPLITS

    out, seen = FileList(), set()
    for split in LIBRI_SPLITS.values():
        _bucket_files(Path(c.bucket_dir) / f"{split}.csv", Path(c.librispeech), Path(c.bucket_dir), out, seen)
    return out


TASK_FILES = {"sid": _sid_files, "asv": _asv_files, "er": _er_files, "pr": _libri_files, "asr": _libri_files}


def files_for_task(task: str, corpus, *, folds: Sequence[int] | None = None) -> FileList:
    """Every audio file s3prl reads for ``task`` (sid, asv, er, pr, asr) of ``corpus``: a generated
    corpus root, or a CorpusLayout (also what ``harness.superb.real_data.RealData.layout()`` returns).
    ``folds`` (er only): the sessions whose train/test lists are read (default all five)."""
    if task not in TASK_FILES:
        raise ValueError(f"files_for_task: unknown task {task!r}; known: {', '.join(TASK_FILES)}")
    c = _layout(corpus)
    if folds is not None:
        if task != "er":
            raise ValueError(f"files_for_task: task {task} has no folds")
        return _er_files(c, folds)
    return TASK_FILES[task](c)


def files_for_tasks(tasks: Iterable[str], corpus) -> FileList:
    """The union of :func:`files_for_task` over ``tasks`` (each file once)."""
    out = FileList()
    for t in tasks:
        out = out + files_for_task(t, corpus)
    return out


def files_for_abx(item_file: str | os.PathLike, audio_dir: str | os.PathLike) -> FileList:
    """The audio an ABX item file names: ``audio_dir/<file>.wav`` (else ``.flac``), as ``harness abx``
    finds it. A malformed item file (bad line, a path leaving ``audio_dir``) raises
    ``analysis.abx.ItemFileError`` with its line number."""
    from analysis.abx import read_item_file

    table = read_item_file(item_file)
    first_line: dict[str, int] = {}
    for f, n in zip(table.file, table.line):
        first_line.setdefault(f, int(n))
    out, seen = FileList(), set()
    root = Path(audio_dir)
    for f, n in first_line.items():
        p = root / f"{f}.wav"
        exists = p.is_file()
        if not exists and (root / f"{f}.flac").is_file():
            p, exists = root / f"{f}.flac", True
        _add(out, seen, p, f"{item_file}:{n}", exists=exists)
    return out


def files_for_split(corpus, split: str) -> FileList:
    """The LibriSpeech files of the utterances of ``split`` in a generated corpus's manifest.csv
    (what ``harness cca|probe`` read, see ``analysis_io.corpus_utterances``)."""
    c = _layout(corpus)
    out, seen = FileList(), set()
    try:
        with open(c.manifest, newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), 2):
                if row.get("split") == split:
                    _add(out, seen, Path(c.root) / row["librispeech"], f"{c.manifest}:{n}")
    except FileNotFoundError:
        out.problems.append(Problem(str(c.manifest), "missing", "corpus manifest is not on disk"))
    except (OSError, KeyError, csv.Error) as e:
        out.problems.append(_list_problem(Path(c.manifest), None, f"not a corpus manifest ({e!r})"))
    return out


def files_for_pretrain(corpus, split: str = "train-clean-100", exclude_eval: bool = True,
                       exclude_speakers_of: str = "") -> FileList:
    """What ``harness pretrain`` trains on: ``pretrain.data.find_training_audio`` (the files found
    on disk, so nothing can be missing)."""
    from pretrain.data import find_training_audio

    return FileList([Path(p) for p in find_training_audio(corpus, split, exclude_eval=exclude_eval,
                                                          exclude_speakers_of=exclude_speakers_of)])
