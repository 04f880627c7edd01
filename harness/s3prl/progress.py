"""s3prl's training progress as data: inside a cell process, s3prl's runner gets a tqdm that draws
nothing (no `\\r` noise in the cell log) and writes its 'overall' bar to a small JSON file instead,
which the harness polls to move its own bar on the terminal.

    install_progress_file(run_dir / "progress.json")   # before s3prl's runner starts
    read_progress(run_dir / "progress.json")           # {"step": 120, "total": 600} or None
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from upstream.facts import atomic_write_json

_MIN_INTERVAL_S = 0.5


def install_progress_file(path: Path) -> None:
    """Swap ``s3prl.downstream.runner.tqdm`` (that module's reference only) for a silent bar whose
    'overall' position is written to ``path``. Idempotent; affects only s3prl's runner module."""
    import s3prl.downstream.runner as runner
    from tqdm import tqdm

    path = Path(path)

    class FileProgress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["file"] = open(os.devnull, "w")
            super().__init__(*args, **kwargs)
            self._written = 0.0
            self._report(force=True)

        def _report(self, force: bool = False) -> None:
            if self.desc != "overall":
                return
            now = time.monotonic()
            if force or now - self._written >= _MIN_INTERVAL_S or (self.total and self.n >= self.total):
                atomic_write_json(path, {"step": int(self.n), "total": int(self.total or 0)}, fsync=False)
                self._written = now

        def update(self, n=1):
            out = super().update(n)
            self._report()
            return out

    FileProgress.write = tqdm.write          # tqdm.write (the runner's messages) still prints
    runner.tqdm = FileProgress


def read_progress(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
