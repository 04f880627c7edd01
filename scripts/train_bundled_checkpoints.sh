#!/bin/bash
# The exact commands that trained the bundled checkpoints and measured their model cards' numbers
# (CPU, 2 cores; see each checkpoints/*/MODEL_CARD.md). Run 2026-12-03 on the idle VM: hubert-compact
# alone with two threads (~0.18 s a step), then learn2diss-, jooci- and barlow-twins-compact side by
# side, one thread each (three jobs on two cores).
# Data: the `medium` corpus (500 voices, 13 h) minus every voice of the `small` demo corpus
# (data.exclude_speakers_of): 360 voices, 8,640 utterances, 7.5 h. So the SUPERB-mini speakers (small)
# and the scorecard's unseen voices are both unheard in pre-training. Until 2026-12-03 the checkpoints
# trained on small's own 80 training speakers (1.7 h), which SUPERB-mini's SID then classified.
# The cards' SUPERB-mini numbers come from the README's main command (results/superb_small_main.csv)
# and their scorecard from `harness scorecard` (results/scorecard_small.csv).
#   bash scripts/train_bundled_checkpoints.sh            # train, bundle, evaluate, write the cards
# Recipes as of the method-fidelity fixes (compact = log-mel front-end + pre-LN; hubert-compact's
# student input formant-warped with labels from clean audio; learn2diss: disjoint + perturbed
# InfoNCE views, CLUB weight 0.01; jooci: two stages, whitened teacher targets, stage 2's content encoder
# on a formant-warped copy and content layer 0 kept as hubert-compact's (jooci-compact retrained so on
# 2026-12-03 ~12:20-12:48 UTC, beside other jobs; its stage 1 is byte-identical to this one); barlow twins:
# utterance term over 200-ms windows of the other stream, two perturbed views of one crop; since
# 2026-12-03 ~13:10 UTC its encoder starts from hubert-compact, as JOOCI's and Learn2Diss's do, at lr 2e-4:
# from random weights its content stream was below its random twin on phone probe and ABX; since
# 2026-12-03 ~15:25 UTC its streams are split by layer: content = H_0..H_2 (layer 0 kept as
# hubert-compact's, layers 1-2 trained by the frame term alone: aligned frames of a crop and of its
# formant-warped copy), other = H_3..H_4 averaged to 5 Hz (the utterance term on two disjoint crops of
# one utterance, no gradient into the content layers); trials in results/bt_trials/, AMD EPYC 2-core VM,
# 14:48-15:09 UTC beside another Barlow Twins trial and a JOOCI trial, one thread each); since
# 2026-12-03 ~17:45 UTC the frame term's warped copy spans vocal tracts 0.7-1.4x (was 0.85-1.18x):
# content ABX across speaker 18.07 -> 15.17 % on the unseen voices (trial b10, 17:27-17:41 UTC beside
# another Barlow Twins trial and a JOOCI trial, one thread each); likewise JOOCI's stage-2 content input
# since 2026-12-03 ~18:15 UTC (warped 0.7-1.4x: content ABX across speaker 20.37 -> 18.85 %, trial j8,
# 17:28-17:52 UTC beside Barlow Twins trials and a hubert-compact trial, one thread each).
# Every other setting is the recipe default (`harness pretrain --recipe NAME --show-config`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CORPUS=${CORPUS:-corpora/small}          # evaluation (SUPERB-mini, scorecard)
TRAIN=${TRAIN:-corpora/medium}           # pre-training, without CORPUS's voices
export PYTHONPATH=$PWD MKL_NUM_THREADS=1
[ -e "$CORPUS/manifest.csv" ] || $PY -m harness.cli corpus make --size small --out "$CORPUS" --no-progress
[ -e "$TRAIN/manifest.csv" ] || $PY -m harness.cli corpus make --size medium --out "$TRAIN" --no-progress
pre() { $PY -m harness.cli pretrain --corpus "$TRAIN" --no-progress "$@" data.exclude_speakers_of="$CORPUS" \
  data.crop_s=2.0 data.batch_size=8; }

# 1. hubert-compact (the backbone / initialisation of the next two), alone, two threads
OMP_NUM_THREADS=2 pre --recipe hubert-compact --out runs/hubert-compact kmeans_frames=100000 \
  k_mfcc=50 k_layer=100 iter1.steps=3500 iter1.lr=1e-3 iter1.warmup_steps=150 iter1.ckpt_every=500 \
  iter2.steps=1500 iter2.lr=5e-4 iter2.warmup_steps=80 iter2.ckpt_every=500 speaker_perturb.prob=0.8
$PY scripts/bundle_checkpoint.py hubert-compact --budget-note "Trained alone on the 2 cores, two threads."

# 2. learn2diss-compact (frozen hubert-compact backbone), jooci-compact (initialised from it) and
#    barlow-twins-compact, side by side, one thread each
export OMP_NUM_THREADS=1
pre --recipe learn2diss-compact --out runs/learn2diss-compact backbone_ckpt=checkpoints/hubert-compact \
  k_frame=100 q_utt=50 kmeans_frames=100000 \
  stage1.steps=1200 stage1.lr=5e-4 stage1.warmup_steps=60 stage1.ckpt_every=200 \
  stage2.steps=400 stage2.lr=2e-4 stage2.warmup_steps=30 stage2.ckpt_every=100 stage2.aux_steps=5 \
  club_weight=0.01 data.disjoint_views=true &
pre --recipe jooci-compact --out runs/jooci-compact init_ckpt=checkpoints/hubert-compact teacher=resemblyzer \
  k=100 kmeans_frames=100000 \
  teacher_whiten=true content_perturb.prob=0.8 content_perturb.alpha=0.7,1.4 stage2_shared=frozen \
  stage1.steps=1200 stage1.lr=5e-4 stage1.warmup_steps=60 stage1.ckpt_every=200 \
  stage2.steps=800 stage2.lr=1e-4 stage2.warmup_steps=50 stage2.ckpt_every=200 &
pre --recipe barlow-twins-compact --out runs/barlow-twins-compact init_ckpt=checkpoints/hubert-compact \
  views_mode=split data.same_crop=false data.disjoint_views=true \
  content_layers=2 frame_layer=2 freeze_layers=1 detach_content=true \
  utt_rows=segments speaker_perturb.alpha=0.7,1.4 \
  train.steps=800 train.lr=2e-4 train.warmup_steps=40 train.ckpt_every=50 &
wait
for r in learn2diss-compact jooci-compact barlow-twins-compact; do
  $PY scripts/bundle_checkpoint.py $r --budget-note "Trained beside the two other second-stage recipes on the 2 cores, one thread each."
done

# 3. The cards' numbers: the README's main command (SID/ER/ASR of every stream with both fbank controls)
#    and the validity scorecard on the corpus's unseen voices (streams, random-init twins, fbank/MFCC)
$PY -m harness.cli run --tasks sid,asr,er --corpus "$CORPUS" --name superb_small_main --device cpu
$PY -m harness.cli scorecard --corpus "$CORPUS" --out results/scorecard_small
$PY scripts/bundle_checkpoint.py hubert-compact barlow-twins-compact learn2diss-compact jooci-compact \
  --results results/superb_small_main.csv --scorecard results/scorecard_small.csv
