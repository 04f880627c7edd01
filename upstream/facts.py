"""The facts every part of DUET shares, each defined exactly once.

``upstream`` is the bottom layer (``pretrain``, ``analysis`` and ``harness`` all import it, it imports
none of them), so the shared facts live here:

* ``SAMPLE_RATE``: the one audio rate of every model, corpus and task (16 kHz).
* ``weights_hash``: a checkpoint's identity, the first ``HASH_LEN`` hex digits of the sha256 of its
  ``model.safetensors`` (``sha256_file`` for any file).
* ``atomic_open``, ``atomic_write_bytes / _text / _json``, ``atomic_save_npy``, ``atomic_dir``: write
  to a temporary file (folder) beside the target, fsync, rename; a crash leaves the old one or the new
  one, never half of one.
* ``parse_layers``: an inclusive 0-based layer subset ("6-11", "0,2,5-7", 3, [0, 1]), checked.
* ``git_commit`` / ``machine`` / ``machine_here``: where a result came from.
* ``progress_bar``: every tqdm bar, drawn on a terminal only (never into a log or a pipe).

    >>> parse_layers("0,2,4-5", 6)
    [0, 2, 4, 5]
    >>> parse_layers("all", 3)
    [0, 1, 2]
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

SAMPLE_RATE = 16000
WEIGHTS_FILE = "model.safetensors"
HASH_LEN = 12
ROOT = Path(__file__).resolve().parents[1]      # the checkout (for provenance and bundled files)


def resolve_path(p: str | os.PathLike) -> Path:
    """A path as given if absolute or existing from the working directory, else relative to the repo
    (recipe and config paths such as ``checkpoints/hubert-compact`` or ``corpora/small``)."""
    path = Path(p)
    return path if path.is_absolute() or path.exists() else ROOT / path


# ------------------------------------------------------------------------------------ progress
def progress_bar(iterable=None, *, enabled: bool = True, **kw):
    """A tqdm bar that is drawn only when stderr is a terminal (tqdm's ``disable=None``), so it never
    lands in a log or a pipe; ``enabled=False`` (``--quiet``, ``--no-progress``) hides it there too."""
    from tqdm import tqdm

    return tqdm(iterable, disable=None if enabled else True, **kw)


# ------------------------------------------------------------------------------------ hashing

def same_file_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What makes two paths one unchanged file: (device, inode, size, mtime). Hard links share it, so
    the generated corpus's VoxCeleb1/IEMOCAP views of a LibriSpeech file are read once."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Full hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def weights_hash(path: str | os.PathLike) -> str:
    """The checkpoint hash: first ``HASH_LEN`` hex digits of the sha256 of the weights file
    (``path`` is a checkpoint directory or the weights file itself). Raises FileNotFoundError."""
    p = Path(path)
    w = p / WEIGHTS_FILE if p.is_dir() else p
    if not w.is_file():
        raise FileNotFoundError(f"{w}: no checkpoint weights here; pass a checkpoint directory holding {WEIGHTS_FILE}")
    return sha256_file(w)[:HASH_LEN]


# ------------------------------------------------------------------------------ atomic writes

@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """``with atomic_open(p) as f: f.write(...)``: a temporary file in the same folder, fsynced and
    renamed onto ``path`` when the block ends; removed (``path`` untouched) if it raises.
    ``fsync=False`` skips the flush to disk (bulk data whose completion is recorded elsewhere)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_dir(d) as tmp: (tmp / "x").write_bytes(...)``: a temporary folder beside ``d``
    whose files are fsynced and which then replaces ``d`` whole (an old ``d`` is moved aside first and
    removed after); removed, ``d`` untouched, if the block raises."""
    import shutil

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.rename(dest, old)
        os.rename(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    with atomic_open(path, fsync=fsync) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text({path}): expected str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = True,
                      fsync: bool = True) -> None:
    """JSON with sorted keys and a final newline (the same object always gives the same bytes)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n", fsync=fsync)


def atomic_save_npy(path: str | os.PathLike, arr) -> None:
    """``np.save`` atomically (streamed to the temporary file, not buffered in memory)."""
    import numpy as np

    with atomic_open(path) as f:
        np.save(f, arr)


def unwritable_dir(path: str | os.PathLike, create: bool = True) -> str | None:
    """Why ``path`` cannot hold new files (the OS's reason: it cannot be made, is not a folder, or a
    file cannot be written in it), or None when it can. Commands call it before any work.
    ``create=False`` leaves the disk as it was: a missing folder is judged by its nearest existing
    parent (which must be a writable folder)."""
    p = Path(path)
    if not create:
        probe = p
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            return f"{probe} is not a folder"
        p = probe
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-check-"):
            pass
    except OSError as e:
        return str(e.strerror or e)
    return None


# ------------------------------------------------------------------------------ layer subsets

class LayerRangeError(ValueError):
    """A layer subset that cannot be parsed or does not fit the model; the message says what does."""


def parse_layers(spec: Any, num_layers: int | None, what: str = "content",
                 error: type[ValueError] = LayerRangeError, noun: str = "indices") -> list[int]:
    """Parse an inclusive 0-based layer subset: "all", "6-11", "0,2,5-7", 3, [0, 1, 2].

    ``num_layers=None`` checks the syntax only (and "all" returns []). A range whose end is before
    its start, a repeated layer, an empty subset or a layer out of range raises ``error`` (a caller
    may pass its own ValueError subclass, e.g. the experts' UpstreamConfigError; ``noun`` words the
    valid range: "valid indices are 0-12").
    """
    label = what if what.startswith("-") else f"layers.{what}"
    if num_layers is None:
        valid = "layers are 0-based and inclusive"
    elif num_layers:
        valid = f"{what} has {num_layers} layers: valid {noun} are 0-{num_layers - 1}"
    else:
        valid = f"this model has no {what} layers"
    if isinstance(spec, bool) or spec is None:
        raise error(f"{label}: {spec!r} is not a layer subset; write e.g. \"6-11\" ({valid})")
    if isinstance(spec, str) and spec.strip() == "all":
        return list(range(num_layers or 0))
    items: list[int] = []
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, (list, tuple)):
        for s in spec:
            items += parse_layers(s, num_layers, what, error, noun) if isinstance(s, str) else [s]
    elif isinstance(spec, str):
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise error(f"{label}: range {part!r} is empty (start > end); "
                                              f"write it as {hi}-{lo}")
                    items += list(range(lo, hi + 1))
                else:
                    items.append(int(part))
            except ValueError as e:
                if isinstance(e, error):
                    raise
                raise error(f"{label}: cannot parse {part!r}; write e.g. \"6-11\" or "
                                      f"\"0,2,4-6\" ({valid})") from None
    else:
        raise error(f"{label}: {spec!r} is not a layer subset; write e.g. \"6-11\"")
    if not items:
        raise error(f"{label}: the subset {spec!r} is empty ({valid})")
    for i in items:
        if not isinstance(i, int) or i < 0 or (num_layers is not None and i >= num_layers):
            raise error(f"{label}: layer {i!r} is out of range; {valid}")
    if len(set(items)) != len(items):
        raise error(f"{label}: {spec!r} names a layer twice")
    return sorted(items)


# --------------------------------------------------------------------------------- provenance

RESULTS_DIR = "results"     # what the project's commands write; not code, so never "dirty"


@functools.lru_cache(maxsize=4)
def git_commit(root: str | os.PathLike = ROOT) -> str:
    """`<sha12>` of HEAD, suffixed `-dirty` when tracked files outside ``results/`` differ (a run that
    rewrites a committed table, as every rerun does, does not make the next run's code dirty);
    `unknown` outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", f":(exclude){RESULTS_DIR}"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=4)
def machine(device: str = "cpu") -> str:
    """e.g. `host / AMD EPYC x2 cores / 24 GiB / cpu` (GPU name when device is cuda)."""
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError):
        mem = "? GiB"
    parts = [platform.node(), f"{_cpu_model()} x{os.cpu_count()} cores", mem]
    if device.startswith("cuda"):
        import torch

        parts.append(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda (not visible)")
    else:
        parts.append("cpu")
    return " / ".join(parts)


def machine_here() -> str:
    """:func:`machine` for the device this process would use (the GPU when one is visible)."""
    import torch

    return machine("cuda" if torch.cuda.is_available() else "cpu")
