#!/usr/bin/env bash
# One set-up step for a fresh machine: .venv with torch first, then the pinned stack under a
# constraints file (so nothing swaps torch), then DUET itself (editable).
#
#   scripts/setup.sh           CPU (the default, what CI runs): the CPU torch wheel, and the torchaudio
#                              fix (its CUDA-only C++ extension removed so it imports on CPU torch)
#   scripts/setup.sh --cuda    GPU: PyPI's torch==2.13.0 (the CUDA 13 build), torchaudio's extension kept
#   scripts/setup.sh --print   show the install commands without running them (with or without --cuda)
#
# Python 3.11 or 3.12 (PYTHON=/path/to/python to choose; default: python3.11, else python3.12, else python3).
# Re-running is cheap: a stamp of the requirement files (and the variant) skips the installs.
# See docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA=0
DRY=0
for arg in "$@"; do
  case "$arg" in
    --cuda) CUDA=1 ;;
    --print) DRY=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (usage: scripts/setup.sh [--cuda] [--print])" >&2; exit 2 ;;
  esac
done
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
else
  PY=python3
  for cand in python3.11 python3.12; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
"$PY" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12))' 2>/dev/null \
  || { echo "setup.sh: Python 3.11 or 3.12 is required, $PY is $("$PY" -V 2>&1 || echo 'not found') (set PYTHON=/path/to/python3.11 or python3.12)" >&2; exit 1; }
VPY=.venv/bin/python
run() { if [ "$DRY" = 1 ]; then echo "+ $*"; else "$@"; fi; }
if [ "$CUDA" = 1 ]; then variant=cuda; else variant=cpu; fi
if [ "$DRY" = 1 ]; then
  echo "setup.sh: would set up .venv with $PY ($("$PY" -V 2>&1)), variant $variant:"
else
  [ -x "$VPY" ] || "$PY" -m venv .venv
fi
stamp=.venv/.duet-setup-$( { cat scripts/constraints.txt scripts/requirements.txt pyproject.toml; [ "$CUDA" = 1 ] && echo cuda; true; } | sha256sum | cut -c1-16)
if [ "$DRY" = 1 ] || [ ! -f "$stamp" ]; then
  run $VPY -m pip install -q --upgrade "pip<26.2"
  if [ "$CUDA" = 1 ]; then
    # PyPI's torch==2.13.0 is the CUDA build. --isolated: ignore pip's find-links/extra-index config,
    # where a local CPU wheel (2.13.0+cpu) would otherwise win; DUET_TORCH_INDEX=URL picks a mirror.
    # A CPU torch / stripped torchaudio from an earlier default set-up is removed first (pip would
    # keep them: same versions).
    if [ "$DRY" = 1 ]; then
      echo "+ [only if .venv holds a +cpu torch or a stripped torchaudio] $VPY -m pip uninstall -q -y torch torchaudio"
    elif $VPY - <<'PYEOF' 2>/dev/null
import importlib.util, pathlib, sys
ta = importlib.util.find_spec("torchaudio")   # an earlier default set-up removed its extension
stripped = ta is not None and not list(pathlib.Path(ta.origin).parent.joinpath("lib").glob("*.so*"))
import torch
sys.exit(0 if stripped or torch.__version__.endswith("+cpu") else 1)
PYEOF
    then
      $VPY -m pip uninstall -q -y torch torchaudio
    fi
    run $VPY -m pip --isolated install -q --no-compile ${DUET_TORCH_INDEX:+--index-url "$DUET_TORCH_INDEX"} torch==2.13.0
  else
    run $VPY -m pip install -q --no-compile torch==2.13.0
  fi
  run $VPY -m pip install -q --no-compile -c scripts/constraints.txt -r scripts/requirements.txt
  run $VPY -m pip install -q --no-compile -c scripts/constraints.txt --no-deps --no-build-isolation -e .
  if [ "$CUDA" = 1 ]; then
    # torchaudio 2.11's extension uses torch's stable C ABI and CUDA 13: it loads on torch 2.13 cu13
    run $VPY -c 'import torch, torchaudio; print(f"setup.sh: torch {torch.__version__} (CUDA {torch.version.cuda}), torchaudio {torchaudio.__version__}, GPUs visible: {torch.cuda.device_count()}")'
  else
    run $VPY -m harness.s3prl.compat --fix-torchaudio
  fi
  if [ "$DRY" = 0 ]; then
    $VPY -m pip check || echo "setup.sh: pip check reported the issues above (not fatal)" >&2
    rm -f .venv/.duet-setup-*; touch "$stamp"
  fi
fi
# --no-compile above: byte-compiling every installed file was ~110 s of ~180 s. This checks that the
# stack imports (as `python -m harness.s3prl.compat --check` does) and writes the bytecode of just the
# modules DUET's processes import (harness/warm.py; quick when it exists)
run $VPY -m harness.warm
[ "$DRY" = 1 ] || echo "setup.sh: ready (.venv, $variant)"
