#!/usr/bin/env bash
# Evidence for issue 3 item 5: SID (s3prl voxceleb1) on the generated `small` corpus with
# run_downstream.py -u {learn2diss,jooci,barlow_twins} -s {content,other}, dev-best checkpoint
# tested. Uses the bundled checkpoints when present, else seeded random-init compact models.
# To fit 6 runs in ~20 min on 2 shared CPU cores it uses a fixed subset of the corpus's SID split
# (every TRAIN_EVERY-th train, DEV_EVERY-th dev, TEST_EVERY-th test line of iden_split.txt),
# 1 s training crops and batch 8; set TRAIN_EVERY=1 DEV_EVERY=1 TEST_EVERY=1 for the full split.
#   bash scripts/models_sid.sh [CORPUS_DIR] [OUT_DIR] [STEPS]
# Writes OUT_DIR/<upstream>-<key>/{train,test}.log and OUT_DIR/summary.tsv.
set -euo pipefail
CORPUS=${1:-corpora/small}
OUT=${2:-runs/models_sid}
STEPS=${3:-100}
PY=${PY:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT"
VOX="$CORPUS/VoxCeleb1"
SPLIT="$OUT/iden_split_subset.txt"
# SPEAKERS=N keeps only the first N speakers (sorted ids) of every split (0: all)
awk -v tr="${TRAIN_EVERY:-6}" -v dv="${DEV_EVERY:-6}" -v te="${TEST_EVERY:-3}" -v nspk="${SPEAKERS:-0}" \
  '{split($2, p, "/"); if (nspk > 0 && !(p[1] in spk)) { if (nid >= nspk) next; spk[p[1]] = 1; nid++ }
    n[$1]++; e = ($1 == 1 ? tr : ($1 == 2 ? dv : te)); if ((n[$1] - 1) % e == 0) print}' \
  <(sort -k2,2 -s "$VOX/iden_split.txt") > "$SPLIT"
echo "split subset: $(awk '{c[$1]++} END {printf "train %d dev %d test %d", c[1], c[2], c[3]}' "$SPLIT")"
OVR="config.downstream_expert.datarc.file_path=$VOX,,config.downstream_expert.datarc.meta_data=$SPLIT"
OVR="$OVR,,config.downstream_expert.datarc.max_timestep=16000,,config.downstream_expert.datarc.train_batch_size=8"
OVR="$OVR,,config.runner.total_steps=$STEPS,,config.runner.eval_step=$STEPS,,config.runner.save_step=$STEPS,,config.runner.log_step=$STEPS"
printf "upstream\tkey\tweights\tsteps\ttest_acc\ttrain_s\ttest_s\n" > "$OUT/summary.tsv"
for up in ${UPSTREAMS:-learn2diss jooci barlow_twins}; do
  ckdir="checkpoints/${up//_/-}-compact"
  if [ -d "$ckdir" ]; then G=(); weights="bundled $ckdir"
  else printf "random_init: compact\nseed: 0\n" > "$OUT/random_compact.yaml"; G=(-g "$OUT/random_compact.yaml"); weights="random_init compact seed 0"; fi
  for key in ${KEYS:-content other}; do
    exp="$OUT/$up-$key"; rm -rf "$exp"; mkdir -p "$exp"
    t0=$(date +%s)
    nice -n 10 $PY run_downstream.py -m train -u "$up" "${G[@]}" -s "$key" -d voxceleb1 \
      -c downstream_configs/mini/sid.yaml -o "$OVR" -p "$exp/exp" --device cpu > "$exp/train.log" 2>&1
    t1=$(date +%s)
    ck=$(ls "$exp"/exp/dev-best.ckpt 2>/dev/null || ls "$exp"/exp/states-*.ckpt | tail -1)
    nice -n 10 $PY run_downstream.py -m evaluate -e "$ck" > "$exp/test.log" 2>&1
    t2=$(date +%s)
    acc=$(grep -o "test acc: [0-9.]*" "$exp/test.log" | tail -1 | awk '{print $3}')
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$up" "$key" "$weights" "$STEPS" "${acc:-NA}" $((t1-t0)) $((t2-t1)) | tee -a "$OUT/summary.tsv"
  done
done
