"""Where a result came from: git commit of the checkout and a one-line machine description."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """`<sha12>` of HEAD, suffixed `-dirty` when tracked files differ; `unknown` outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
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
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem = f"{mem_gib:.0f} GiB"
    except (ValueError, OSError):
        mem = "? GiB"
    parts = [platform.node(), f"{_cpu_model()} x{os.cpu_count()} cores", mem]
    if device.startswith("cuda"):
        try:
            import torch
            parts.append(torch.cuda.get_device_name(0))
        except Exception:  # noqa: BLE001 - description only
            parts.append("cuda")
    else:
        parts.append("cpu")
    return " / ".join(parts)


def machine_here() -> str:
    """:func:`machine` for the device this process would use (the GPU when one is visible)."""
    import torch

    return machine("cuda" if torch.cuda.is_available() else "cpu")
