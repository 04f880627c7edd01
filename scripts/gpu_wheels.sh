#!/bin/bash
# Download (here, with network) the Python packages that scripts/train_gpu.sh needs on the lent H200
# machine and that its image lacks (/work/.library/device/KINDS.md lists what it has: torch 2.11,
# torchaudio, transformers, safetensors, numpy, scipy, pandas, matplotlib, tqdm, yaml, numba,
# scikit-learn, joblib, lazy-loader, msgpack, requests, huggingface-hub, sentencepiece, ...).
#   bash scripts/gpu_wheels.sh            # -> .whl/*.whl (cp312, manylinux x86-64), ~11 MiB
# What needs them (read from the imports):
#   corpus generator (harness/corpus): espeakng-loader, soxr, soundfile (+ cffi, pycparser)
#   JOOCI teacher (pretrain/teachers.py): resemblyzer (+ webrtcvad as webrtcvad-wheels, librosa,
#     audioread, decorator, pooch, platformdirs; soxr, soundfile as above)
#   Learn2Diss / JOOCI ECAPA (upstream/nn/ecapa.py): speechbrain (+ hyperpyyaml, ruamel.yaml(.clib))
#   not carried: tensorboardX (the trainer runs without it), s3prl (not used for training)
# espeakng-loader and Resemblyzer are slimmed (scripts/gpu_wheels.py: English data only; the GE2E
# weights without their optimiser state) so that the tracked tree (~46 MiB, the bundled checkpoints)
# plus .whl/ stay under the device's 64 MiB; this script fails if they do not.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WHL=.whl
LIMIT_MIB=64
PKGS=(
  espeakng-loader==0.2.4 soxr==1.1.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
  Resemblyzer==0.1.4 webrtcvad-wheels==2.0.14.post1 librosa==0.11.0 audioread==3.1.0 decorator==5.3.1
  pooch==1.9.0 platformdirs==4.14.9
  speechbrain==1.1.2 hyperpyyaml==1.2.3 ruamel.yaml==0.18.17 ruamel.yaml.clib==0.2.15
)
git check-ignore -q "$WHL/x.whl" || { echo "gpu_wheels.sh: $WHL/ is not ignored by git (.gitignore lists it)" >&2; exit 1; }
rm -rf "$WHL"
mkdir -p "$WHL"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHL" "${PKGS[@]}"
n=$(ls "$WHL"/*.whl | wc -l)
[ "$n" -eq "${#PKGS[@]}" ] || { echo "gpu_wheels.sh: expected ${#PKGS[@]} wheels, got $n in $WHL" >&2; exit 1; }
"$PY" scripts/gpu_wheels.py slim "$WHL"
# what travels: tracked files + untracked-not-ignored files + the carried .whl/
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
whl=$(du -cb "$WHL"/*.whl | tail -1 | cut -f1)
total=$((tree + whl))
awk -v t="$tree" -v w="$whl" -v l="$LIMIT_MIB" 'BEGIN { printf "gpu_wheels.sh: tree %.1f MiB + .whl %.1f MiB = %.1f MiB (device limit %d MiB)\n", t/1048576, w/1048576, (t+w)/1048576, l }'
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu_wheels.sh: over the device's ${LIMIT_MIB} MiB working-tree limit; remove untracked files or carry fewer wheels" >&2
  exit 1
fi
