"""Everything DUET needs to make s3prl 0.4.18 run on this stack, in one place.

Import this module (``import harness.compat; harness.compat.install()``) before anything
from s3prl. Nothing in site-packages is edited, except ``--fix-torchaudio`` which removes
torchaudio's CUDA-only C++ extension after install (see docs / ../shared/notes/env.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


def torchaudio_lib_dir() -> Path | None:
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "lib"


def fix_torchaudio() -> list[Path]:
    """Remove torchaudio's compiled extension (a CUDA build that cannot load on CPU torch).

    torchaudio then imports as pure Python; resample, MelSpectrogram, MFCC, kaldi fbank etc. work.
    Returns the removed files.
    """
    lib = torchaudio_lib_dir()
    if lib is None:
        raise SystemExit("torchaudio is not installed in this environment: run scripts/setup.sh")
    removed = []
    for so in sorted(lib.glob("*.so*")):
        so.unlink()
        removed.append(so)
    return removed


def check() -> None:
    """Import the stack once; raise a clear error naming the fix if anything is broken."""
    try:
        import torch  # noqa: F401
        import torchaudio  # noqa: F401
    except OSError as e:  # the CUDA extension is still there
        raise SystemExit(f"torchaudio failed to import ({e}); run: python -m harness.compat --fix-torchaudio") from e


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.compat", description=__doc__)
    p.add_argument("--fix-torchaudio", action="store_true", help="remove torchaudio's CUDA-only .so files")
    p.add_argument("--check", action="store_true", help="check that torch/torchaudio/s3prl import")
    a = p.parse_args(argv)
    if a.fix_torchaudio:
        for f in fix_torchaudio():
            print(f"removed {f}")
    if a.check:
        check()
        print("compat: torch/torchaudio import OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
