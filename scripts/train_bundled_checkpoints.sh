#!/bin/bash
# The exact commands that trained the bundled checkpoints (CPU, shared 2 cores; see each MODEL_CARD.md).
# hubert-compact and barlow-twins-compact were first started with larger budgets, stopped at their step-5
# checkpoint and resumed with these (the cards say so). Then: PYTHONPATH=. python scripts/bundle_checkpoint.py <recipe>
set -e
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
nice -n 5 ${PYTHON:-.venv/bin/python} -m harness.cli pretrain --recipe hubert-compact --corpus ${CORPUS:-corpora/small} \
  --out runs/hubert-compact --no-progress data.crop_s=1.0 data.batch_size=4 data.max_utts=600 kmeans_frames=60000 \
  iter1.steps=10 iter1.lr=1e-3 iter1.warmup_steps=3 iter1.ckpt_every=5 \
  iter2.steps=3 iter2.lr=6e-4 iter2.warmup_steps=1 iter2.ckpt_every=3 iter2_utts=16 k_layer=50
nice -n 5 ${PYTHON:-.venv/bin/python} -m harness.cli pretrain --recipe barlow-twins-compact --corpus ${CORPUS:-corpora/small} \
  --out runs/barlow-twins-compact --no-progress data.crop_s=1.0 data.batch_size=4 data.max_utts=600 \
  train.steps=10 train.lr=1e-3 train.warmup_steps=3 train.ckpt_every=5
nice -n 5 ${PYTHON:-.venv/bin/python} -m harness.cli pretrain --recipe learn2diss-compact --corpus ${CORPUS:-corpora/small} \
  --out runs/learn2diss-compact --no-progress backbone_ckpt=runs/hubert-compact/final \
  data.crop_s=1.0 data.batch_size=4 data.max_utts=24 k_frame=50 q_utt=8 \
  stage1.steps=6 stage1.lr=1e-3 stage1.warmup_steps=2 stage1.ckpt_every=3 \
  stage2.steps=3 stage2.lr=5e-4 stage2.warmup_steps=1 stage2.ckpt_every=3 stage2.aux_steps=5
nice -n 5 ${PYTHON:-.venv/bin/python} -m harness.cli pretrain --recipe jooci-compact --corpus ${CORPUS:-corpora/small} \
  --out runs/jooci-compact --no-progress init_ckpt=runs/hubert-compact/final teacher=resemblyzer \
  data.crop_s=1.0 data.batch_size=4 data.max_utts=24 k=50 \
  train.steps=8 train.lr=5e-4 train.warmup_steps=2 train.ckpt_every=4
