#!/bin/bash
# The exact commands that trained the bundled checkpoints and measured their model cards' numbers
# (CPU, 2 cores; see each checkpoints/*/MODEL_CARD.md). hubert-, learn2diss- and jooci-compact: run
# 2026-12-03 with these commands, two jobs at a time, one thread each (that session started
# learn2diss-compact as soon as hubert-compact was bundled, and jooci-compact when the second job of
# the first pair ended); barlow-twins-compact: 2026-12-02. Each card has its own training minutes.
# A hubert-compact step takes 0.33-0.4 s on an idle Intel Xeon core; the 2026-12-02 checkpoints' 700 +
# 400 steps ran under load 4-8 at ~2 s a step, and this recipe gives each model ~4x their steps.
# The cards' SUPERB-mini numbers come from the README's main command (results/superb_small_main.csv)
# and their scorecard from `harness scorecard` (results/scorecard_small.csv).
#   bash scripts/train_bundled_checkpoints.sh            # train, bundle, evaluate, write the cards
# Jobs run two at a time with one thread each (on 2 cores that beats one job with two threads).
# Recipes as of the method-fidelity fixes (compact = log-mel front-end + pre-LN; hubert-compact's
# student input formant-warped with labels from clean audio; learn2diss: disjoint + perturbed
# InfoNCE views, CLUB weight 0.01; jooci: two stages, whitened teacher targets; barlow twins:
# utterance term over 200-ms windows of two disjoint crops, frame term against a formant-warped
# aligned copy on layer 2 (views_mode=split), 64-wide projector output). Every other setting is the
# recipe default (`harness pretrain --recipe NAME --show-config`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CORPUS=${CORPUS:-corpora/small}
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -e "$CORPUS/manifest.csv" ] || $PY -m harness.cli corpus make --size small --out "$CORPUS" --no-progress
pre() { $PY -m harness.cli pretrain --corpus "$CORPUS" --no-progress "$@"; }

# 1. hubert-compact (the backbone / initialisation of the next two) beside barlow-twins-compact
pre --recipe hubert-compact --out runs/hubert-compact data.crop_s=2.0 data.batch_size=8 kmeans_frames=100000 \
  k_mfcc=50 k_layer=100 iter1.steps=3500 iter1.lr=1e-3 iter1.warmup_steps=150 iter1.ckpt_every=500 \
  iter2.steps=1500 iter2.lr=5e-4 iter2.warmup_steps=80 iter2.ckpt_every=500 speaker_perturb.prob=0.8 &
# barlow-twins-compact: the 2026-12-02 run (commit 1cba629's recipe = today's views_mode=perturb default),
# kept: a 2000-step views_mode=split run on 2026-12-03 probed worse (pretrain/recipes/barlow_twins_compact.py)
pre --recipe barlow-twins-compact --out runs/barlow-twins-compact data.crop_s=2.0 data.batch_size=8 \
  utt_rows=segments train.steps=800 train.lr=1e-3 train.warmup_steps=40 train.ckpt_every=50 &
wait
$PY scripts/bundle_checkpoint.py hubert-compact --budget-note "Trained beside barlow-twins-compact on the 2 cores, one thread each."
$PY scripts/bundle_checkpoint.py barlow-twins-compact \
  --budget-note "Two training jobs shared the 2 cores, one thread each (hubert-compact beside barlow-twins-compact)."

# 2. learn2diss-compact (frozen hubert-compact backbone) beside jooci-compact (initialised from it)
pre --recipe learn2diss-compact --out runs/learn2diss-compact backbone_ckpt=checkpoints/hubert-compact \
  data.crop_s=2.0 data.batch_size=8 k_frame=100 q_utt=50 kmeans_frames=100000 \
  stage1.steps=1200 stage1.lr=5e-4 stage1.warmup_steps=60 stage1.ckpt_every=200 \
  stage2.steps=400 stage2.lr=2e-4 stage2.warmup_steps=30 stage2.ckpt_every=100 stage2.aux_steps=5 \
  club_weight=0.01 data.disjoint_views=true &
pre --recipe jooci-compact --out runs/jooci-compact init_ckpt=checkpoints/hubert-compact teacher=resemblyzer \
  data.crop_s=2.0 data.batch_size=8 k=100 kmeans_frames=100000 \
  teacher_whiten=true stage1.steps=1200 stage1.lr=5e-4 stage1.warmup_steps=60 stage1.ckpt_every=200 \
  stage2.steps=800 stage2.lr=1e-4 stage2.warmup_steps=50 stage2.ckpt_every=200 &
wait
$PY scripts/bundle_checkpoint.py learn2diss-compact --budget-note "Trained beside jooci-compact on the 2 cores, one thread each."
$PY scripts/bundle_checkpoint.py jooci-compact --budget-note "Trained beside learn2diss-compact on the 2 cores, one thread each."

# 3. The cards' numbers: the README's main command (SID/ER/ASR of every stream with both fbank controls)
#    and the validity scorecard on the corpus's unseen voices (streams, random-init twins, fbank/MFCC)
$PY -m harness.cli run --tasks sid,asr,er --corpus "$CORPUS" --name superb_small_main --device cpu
$PY -m harness.cli scorecard --corpus "$CORPUS" --out results/scorecard_small
$PY scripts/bundle_checkpoint.py hubert-compact barlow-twins-compact learn2diss-compact jooci-compact \
  --results results/superb_small_main.csv --scorecard results/scorecard_small.csv
