#!/usr/bin/env bash
# One set-up step for a fresh machine: .venv with CPU torch first, then the pinned stack
# under a constraints file (so nothing pulls a CUDA torch), then DUET itself (editable),
# then the torchaudio fix (its CUDA-only C++ extension removed so it imports on CPU torch).
# Re-running is cheap: a stamp of the requirement files skips the installs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"DUET needs Python 3.11, found {sys.version.split()[0]}"' \
  || { echo "setup.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
stamp=.venv/.duet-setup-$(cat scripts/constraints.txt scripts/requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  $VPY -m pip install -q --upgrade "pip<26.2"
  $VPY -m pip install -q torch==2.13.0
  $VPY -m pip install -q -c scripts/constraints.txt -r scripts/requirements.txt
  $VPY -m pip install -q -c scripts/constraints.txt --no-deps --no-build-isolation -e .
  $VPY -m harness.s3prl.compat --fix-torchaudio
  $VPY -m pip check || echo "setup.sh: pip check reported the issues above (not fatal)" >&2
  rm -f .venv/.duet-setup-*; touch "$stamp"
fi
$VPY -m harness.s3prl.compat --check
echo "setup.sh: ready (.venv)"
