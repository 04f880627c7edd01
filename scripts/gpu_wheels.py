"""Slim two downloaded wheels so that `.whl/` plus the tracked tree fit the device's 64 MiB transfer.

    python scripts/gpu_wheels.py slim .whl          # called by scripts/gpu_wheels.sh
    python scripts/gpu_wheels.py check .whl         # list the wheels and their sizes

Two wheels hold most of the bytes and most of those are not needed on the device:

- ``espeakng_loader``: espeak-ng's data for ~100 languages (``ru_dict`` alone is 8.5 MB); the
  corpus generator speaks only ``en-us`` (``harness/corpus/synth.py``), so every ``*_dict`` except
  ``en_dict`` is dropped. The library, phoneme tables, ``lang/`` and ``voices/`` stay.
- ``Resemblyzer``: ``pretrained.pt`` holds the GE2E model's weights *and* its Adam optimiser state
  (17 MB); ``VoiceEncoder`` reads only ``checkpoint["model_state"]``, so the file is rewritten with
  ``step`` and ``model_state`` alone (about a third of the size). The rewrite is checked: every tensor
  equal to the original's, or this script fails.

Each slimmed wheel is rewritten in place with a correct ``RECORD`` (sha256 and size of every file),
so ``pip install --no-index --no-deps`` installs it like the original.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def rewrite_wheel(path: Path, keep, transform=None) -> tuple[int, int]:
    """Rewrite wheel ``path`` with only the members ``keep(name)`` accepts, each passed through
    ``transform(name, data) -> data`` if given, and a fresh RECORD. -> (bytes before, bytes after)."""
    before = path.stat().st_size
    with zipfile.ZipFile(path) as zin:
        names = zin.namelist()
        record = [n for n in names if n.endswith(".dist-info/RECORD")]
        if len(record) != 1:
            raise SystemExit(f"{path}: expected one .dist-info/RECORD, found {record}")
        members = {n: zin.read(n) for n in names if n != record[0] and keep(n)}
    if transform is not None:
        members = {n: transform(n, d) for n, d in members.items()}
    lines = [_record_line(n, d) for n, d in members.items()] + [f"{record[0]},,"]
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for n, d in members.items():
            zout.writestr(n, d)
        zout.writestr(record[0], "\n".join(lines) + "\n")
    tmp.replace(path)
    return before, path.stat().st_size


def slim_espeak(path: Path) -> tuple[int, int]:
    def keep(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return not (base.endswith("_dict") and base != "en_dict")

    with zipfile.ZipFile(path) as z:
        if "espeakng_loader/espeak-ng-data/en_dict" not in z.namelist():
            raise SystemExit(f"{path}: no espeak-ng-data/en_dict in the wheel; is this espeakng-loader?")
    return rewrite_wheel(path, keep)


def slim_resemblyzer(path: Path) -> tuple[int, int]:
    import torch

    member = "resemblyzer/pretrained.pt"

    def transform(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        full = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        if "model_state" not in full:
            raise SystemExit(f"{path}: {member} has no 'model_state' (keys {sorted(full)}); not the expected file")
        buf = io.BytesIO()
        torch.save({"step": full.get("step", 0), "model_state": full["model_state"]}, buf)
        out = buf.getvalue()
        back = torch.load(io.BytesIO(out), map_location="cpu")   # weights_only: what resemblyzer's load gets
        a, b = full["model_state"], back["model_state"]
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            raise SystemExit(f"{path}: the slimmed {member} differs from the original; not writing it")
        return out

    with zipfile.ZipFile(path) as z:
        if member not in z.namelist():
            raise SystemExit(f"{path}: no {member} in the wheel; is this Resemblyzer?")
    return rewrite_wheel(path, lambda n: True, transform)


SLIMMERS = {"espeakng_loader": slim_espeak, "resemblyzer": slim_resemblyzer}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["slim", "check"])
    p.add_argument("dir", type=Path, help="the wheel folder (.whl)")
    args = p.parse_args(argv)
    wheels = sorted(args.dir.glob("*.whl"))
    if not wheels:
        print(f"gpu_wheels.py: no wheels in {args.dir}; run scripts/gpu_wheels.sh first", file=sys.stderr)
        return 2
    if args.action == "slim":
        for w in wheels:
            key = w.name.split("-")[0].lower()
            if key in SLIMMERS:
                before, after = SLIMMERS[key](w)
                print(f"slimmed {w.name}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
    total = 0
    for w in wheels:
        total += w.stat().st_size
        print(f"  {w.stat().st_size / 2**20:6.2f} MiB  {w.name}")
    print(f"  {total / 2**20:6.2f} MiB  in {len(wheels)} wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
