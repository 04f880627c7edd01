#!/usr/bin/env bash
# Layer analysis (ABX, CCA, probes + MI) of upstreams on a corpus, with combined plots.
#   bash scripts/run_analysis.sh CORPUS OUTDIR UPSTREAM[:CKPT_OR_-g_YAML] ...
# e.g. bash scripts/run_analysis.sh corpora/small results/analysis fbank mfcc jooci:checkpoints/jooci-compact
# An argument NAME:FILE.yaml passes FILE as -g (model config), NAME:DIR as --ckpt.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$1; out=$2; shift 2
PY=${PY:-python}
mkdir -p "$out"
for spec in "$@"; do
  name=${spec%%:*}; extra=(); tag=$name
  if [[ $spec == *:* ]]; then
    arg=${spec#*:}
    if [[ $arg == *.yaml ]]; then extra=(-g "$arg"); tag="$name-$(basename "${arg%.yaml}")"
    else extra=(--ckpt "$arg"); tag="$name-$(basename "$arg")"; fi
  fi
  cache=cache/features/analysis-$tag
  $PY -m harness.cli abx   -u "$name" "${extra[@]}" --corpus "$corpus" --split dev --cache "$cache" --out "$out/abx-$tag.csv" --quiet
  $PY -m harness.cli cca   -u "$name" "${extra[@]}" --corpus "$corpus" --split dev --cache "$cache" --out "$out/cca-$tag.csv" --quiet --suggest-layers
  $PY -m harness.cli probe -u "$name" "${extra[@]}" --corpus "$corpus" --split dev --cache "$cache" --out "$out/probe-$tag.csv" --quiet --mi
done
for kind in abx cca probe; do
  $PY -m harness.cli plot "$kind" "$out"/$kind-*.csv --out "$out/$kind.png"
done
