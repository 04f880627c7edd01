#!/bin/bash
# One shot on a lent GPU machine (the device tool's `run`; docs/gpu.md "One-shot training on a lent
# H200"): install the carried wheels, generate a corpus there, train all four DUET models, and leave
# them in $OUT as at most 8 files of at most 16 MiB. Everything is budgeted by wall clock.
#
#   OUT=/path bash scripts/train_gpu.sh                       # the GPU run (defaults below)
#   OUT=/tmp/x SIZE=tiny PRESET=tiny STEPS=2 SKIP_WHEELS=1 PYTHON=.venv/bin/python \
#     bash scripts/train_gpu.sh                               # CPU smoke run, ~2 min on 2 busy cores
#
# Settings (environment variables):
#   OUT            where the results go (required; the device tool sets it)
#   SIZE           corpus size: large (default) | small | tiny (harness/corpus/spec.py)
#   FALLBACK_SIZE  corpus made instead if SIZE's generation fails or outlives CORPUS_BUDGET (default
#                  small; "none": stop there)
#   CORPUS_BUDGET  seconds for generating SIZE (default 180; large is ~21 CPU-minutes of synthesis)
#   PRESET         model preset of every recipe (default compact; `base` checkpoints exceed 16 MiB)
#   STEPS          if set, every phase of every recipe trains this many steps (smoke runs); else the
#                  per-phase steps below, multiplied by STEP_SCALE (default 1)
#   BATCH, CROP_S  crops per step and their length (defaults 64 and 2.0 s; tiny: 2 and 1.0 s)
#   MAX_UTTS       training utterances per recipe, a seeded subset (default 4000; 0: all; tiny: 0).
#                  Each recipe decodes them and runs per-utterance label passes (MFCC, k-means
#                  features, the resemblyzer teacher on CPU) before training: this bounds that time.
#   DEADLINE       seconds from start to the end of this script (default 540: the device's 10-minute
#                  command limit less a margin); every stage's time share comes from what is left
#   THREADS        intra-op threads per training job in stage 2 (default: cores / 3; three jobs run at a
#                  time there; hubert-compact alone in stage 1 gets every core)
#   WORK           scratch folder (default /tmp/duet-gpu); corpus and run folders go there
#   PYTHON         interpreter (default python3: the one with torch on the device image)
#   SKIP_WHEELS=1  do not install .whl/*.whl (also skipped when .whl/ has no wheels)
# Time shares (no trainer option bounds wall time): the two stages (hubert-compact alone, then
# learn2diss-compact, jooci-compact and barlow-twins-compact side by side, all three from hubert's
# final/ as in scripts/train_bundled_checkpoints.sh) share what the corpus leaves (50/50), less
# COLLECT_S for bundling. A job still running at
# the end of its share is stopped and finished from its last checkpoint (every 25 steps;
# train_gpu_helpers.py finish, within FINISH_S): the phase it was in ends at its last saved step,
# later phases train a few steps. The default steps (below: about half the CPU recipes' steps at 8x
# their batch) assume ~0.2-0.3 s a step at batch 64 there, CPU-side augmentation dominating (speaker
# perturbation of 64 crops took 0.8 s on one loaded core here). Not measured on a GPU yet: each
# phase's log.csv (step_s) in logs.tar.gz says what to set next time (STEP_SCALE, MAX_UTTS).
# Output ($OUT): <recipe>.tar.gz for each finished model (<recipe>/final/ = model.safetensors,
# config.json, MODEL_CARD.md, loss curve; <recipe>/<phase>/log.csv), logs.tar.gz (every log),
# train_gpu.log (this script's output), summary.json. Partial results are written on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
: "${OUT:?set OUT to the folder for the results (the device tool sets it)}"
SIZE=${SIZE:-large}
FALLBACK_SIZE=${FALLBACK_SIZE:-small}
CORPUS_BUDGET=${CORPUS_BUDGET:-180}
PRESET=${PRESET:-compact}
STEPS=${STEPS:-}
STEP_SCALE=${STEP_SCALE:-1}
DEADLINE=${DEADLINE:-540}
COLLECT_S=${COLLECT_S:-30}
FINISH_S=${FINISH_S:-40}
WORK=${WORK:-/tmp/duet-gpu}
PY=${PYTHON:-python3}
CORES=$(nproc)
THREADS=${THREADS:-$(( CORES / 3 > 0 ? CORES / 3 : 1 ))}
if [ "$SIZE" = tiny ]; then
  BATCH=${BATCH:-2}; CROP_S=${CROP_S:-1.0}; MAX_UTTS=${MAX_UTTS:-0}
else
  BATCH=${BATCH:-64}; CROP_S=${CROP_S:-2.0}; MAX_UTTS=${MAX_UTTS:-4000}
fi
RECIPES=(hubert-compact barlow-twins-compact learn2diss-compact jooci-compact)
mkdir -p "$OUT" "$WORK/logs" "$WORK/runs"
OUT=$(cd "$OUT" && pwd)
LOGS=$WORK/logs
RUNS=$WORK/runs
exec > >(tee -a "$OUT/train_gpu.log") 2>&1
log() { printf '[%s +%4ds] %s\n' "$(date -u +%H:%M:%S)" "$SECONDS" "$*"; }
left() { echo $(( DEADLINE - SECONDS )); }

collect() {   # on every exit: bundle what finished, write the summary, check the file limits
  local rc=$?
  trap - EXIT
  set +e
  log "collect (exit status so far $rc): bundling into $OUT"
  "$PY" "$ROOT/scripts/train_gpu_helpers.py" bundle "$OUT" "$RUNS" "${RECIPES[@]}" --logs "$LOGS" --max-mib 16
  local brc=$? n
  "$PY" - "$OUT" "$rc" "$brc" "$SECONDS" "$SIZE_USED" "$PRESET" <<'EOF'
import json, sys
from pathlib import Path
out, rc, brc, wall, size, preset = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
recipes = ["hubert-compact", "barlow-twins-compact", "learn2diss-compact", "jooci-compact"]
json.dump({"exit_status": rc, "bundle_status": brc, "wall_s": wall, "corpus_size": size, "preset": preset,
           "bundled": [r for r in recipes if (out / f"{r}.tar.gz").is_file()],
           "files": {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file()}},
          open(out / "summary.json", "w"), indent=1)
EOF
  n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
  if [ "$n" -gt 8 ]; then log "ERROR: $n files in $OUT, the device tool brings back at most 8"; brc=1; fi
  log "done in ${SECONDS}s; $OUT: $(ls "$OUT" | tr '\n' ' ')"
  [ "$rc" -ne 0 ] && exit "$rc"
  [ "$brc" -ne 0 ] && exit 1
  missing=0
  for r in "${RECIPES[@]}"; do [ -f "$OUT/$r.tar.gz" ] || { log "ERROR: no checkpoint for $r"; missing=1; }; done
  exit "$missing"
}
SIZE_USED=none
trap collect EXIT
stop_jobs() {  # the training jobs of a stage: each job's `timeout` passes the signal on to its trainer
  local p
  for p in $(jobs -p); do pkill -TERM -P "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  return 0
}
trap 'log "stopped by a signal"; stop_jobs; exit 143' TERM INT HUP   # (a signal alone would skip the EXIT trap)

log "train_gpu.sh: SIZE=$SIZE PRESET=$PRESET STEPS=${STEPS:-recipe defaults x$STEP_SCALE} BATCH=$BATCH CROP_S=$CROP_S MAX_UTTS=$MAX_UTTS DEADLINE=${DEADLINE}s THREADS=$THREADS cores=$CORES WORK=$WORK"
git -C "$ROOT" rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /' || true

# 1. the carried wheels (docs/gpu.md; scripts/gpu_wheels.sh makes .whl/)
export PYTHONPATH=$ROOT
if [ "${SKIP_WHEELS:-0}" != 1 ] && compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
  log "installing $(ls "$ROOT"/.whl/*.whl | wc -l) wheels into $WORK/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$ROOT"/.whl/*.whl
  export PYTHONPATH=$WORK/site:$ROOT
else
  log "no wheels installed (SKIP_WHEELS=${SKIP_WHEELS:-0}, .whl/ $(ls "$ROOT"/.whl/*.whl 2>/dev/null | wc -l) wheels)"
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
"$PY" -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda' if c else 'cpu', torch.cuda.get_device_name(0) if c else '')"
"$PY" -c "import soundfile, soxr, espeakng_loader, speechbrain, upstream.registry, pretrain.recipes, harness.corpus" \
  || { log "ERROR: a package the corpus generator or the trainer needs is missing (run scripts/gpu_wheels.sh here, carry .whl)"; exit 1; }
"$PY" -W ignore -c "import resemblyzer, webrtcvad, librosa" \
  || log "WARNING: resemblyzer does not import: jooci-compact (its teacher) will fail; the other three go on"

# 2. the corpus (capped; the fallback size keeps the run useful if the large one is too slow)
make_corpus() {  # SIZE SECONDS
  local dir=$WORK/corpora/$1
  log "corpus $1 -> $dir ($CORES workers, at most $2 s)"
  local rc=0
  timeout -k 10 "$2" "$PY" -m harness.cli corpus make --size "$1" --out "$dir" --workers "$CORES" --no-progress \
    > "$LOGS/corpus-$1.log" 2>&1 || rc=$?
  tail -3 "$LOGS/corpus-$1.log"
  return $rc
}
budget=$(( CORPUS_BUDGET < $(left) - 120 ? CORPUS_BUDGET : $(left) - 120 ))
if [ "$budget" -gt 0 ] && make_corpus "$SIZE" "$budget"; then
  SIZE_USED=$SIZE
elif [ "$FALLBACK_SIZE" != none ] && [ "$FALLBACK_SIZE" != "$SIZE" ]; then
  log "WARNING: corpus $SIZE not made in ${budget}s (see logs/corpus-$SIZE.log); falling back to $FALLBACK_SIZE"
  make_corpus "$FALLBACK_SIZE" $(( $(left) / 3 )) || { log "ERROR: corpus $FALLBACK_SIZE failed too"; exit 1; }
  SIZE_USED=$FALLBACK_SIZE
else
  log "ERROR: corpus $SIZE failed (see logs/corpus-$SIZE.log)"; exit 1
fi
CORPUS=$WORK/corpora/$SIZE_USED
log "corpus ready: $(du -sh "$CORPUS" | cut -f1)"

# 3. recipes: the CPU recipes of scripts/train_bundled_checkpoints.sh, at batch BATCH and GPU steps
steps() { awk -v s="$1" -v k="$STEP_SCALE" 'BEGIN { n = int(s * k + 0.5); print (n < 1 ? 1 : n) }'; }
phase() {  # NAME STEPS LR WARMUP: the overrides of one phase (none but lr when STEPS is set)
  if [ -n "$STEPS" ]; then echo "$1.lr=$3"; return; fi
  local n w
  n=$(steps "$2"); w=$(( $4 < n / 2 ? $4 : n / 2 ))
  echo "$1.steps=$n $1.lr=$3 $1.warmup_steps=$w $1.ckpt_every=25"
}
COMMON="preset=$PRESET data.crop_s=$CROP_S data.batch_size=$BATCH data.max_utts=$MAX_UTTS"
if [ "$SIZE_USED" = tiny ]; then   # a tiny corpus has too few frames for the recipes' cluster counts
  K_HUBERT="k_mfcc=8 k_layer=8 label_layer=1"; K_L2D="k_frame=8 q_utt=4"; K_JOOCI="k=8 label_layers=1,2 predict_layers=1,2"
else
  K_HUBERT="k_mfcc=50 k_layer=100 iter2_utts=2000"; K_L2D="k_frame=100 q_utt=50"; K_JOOCI="k=100"
fi
HUBERT="$COMMON $K_HUBERT kmeans_frames=100000 speaker_perturb.prob=0.8 $(phase iter1 400 1e-3 40) $(phase iter2 200 5e-4 20)"
if [ "$PRESET" = tiny ]; then BT_LAYERS="content_layers=1 frame_layer=1"; else BT_LAYERS="content_layers=2 frame_layer=2"; fi
BARLOW="$COMMON views_mode=split data.same_crop=false data.disjoint_views=true $BT_LAYERS freeze_layers=1 detach_content=true utt_rows=segments speaker_perturb.alpha=0.7,1.4 $(phase train 400 2e-4 20)"
L2D="$COMMON $K_L2D kmeans_frames=100000 club_weight=0.01 data.disjoint_views=true $(phase stage1 300 5e-4 30) $(phase stage2 150 2e-4 15) stage2.aux_steps=5"
JOOCI="$COMMON $K_JOOCI kmeans_frames=100000 teacher=resemblyzer teacher_whiten=true content_perturb.prob=0.8 content_perturb.alpha=0.7,1.4 stage2_shared=frozen $(phase stage1 200 5e-4 20) $(phase stage2 200 1e-4 20)"

pretrain() {  # RECIPE SECONDS THREADS OVERRIDES...: train, stop at SECONDS, then finish from the last checkpoint
  local recipe=$1 secs=$2 threads=$3; shift 3
  local out=$RUNS/$recipe lg=$LOGS/$recipe.log
  local cmd=("$PY" -m harness.cli pretrain --recipe "$recipe" --out "$out" --corpus "$CORPUS" --no-progress
             --no-preflight ${STEPS:+--steps "$STEPS"})
  log "$recipe: start (at most ${secs}s, then finish from its last checkpoint)"
  echo "+ ${cmd[*]} $*" >> "$lg"
  local rc=0
  OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads timeout -k 10 "$secs" "${cmd[@]}" "$@" >> "$lg" 2>&1 || rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    local extra
    if extra=$("$PY" "$ROOT/scripts/train_gpu_helpers.py" finish "$recipe" "$out" 2>>"$lg"); then
      log "$recipe: time share over; finishing with $extra"
      echo "+ finish: $extra" >> "$lg"
      rc=0
      OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads timeout -k 10 "$FINISH_S" "${cmd[@]}" "$@" $extra >> "$lg" 2>&1 || rc=$?
    else
      log "$recipe: time share over and nothing to finish from (see logs/$recipe.log)"
    fi
  fi
  if [ $rc -eq 0 ] && [ -f "$out/final/model.safetensors" ]; then
    log "$recipe: final checkpoint $(du -sh "$out/final/model.safetensors" | cut -f1) ($(grep -h '^\[' "$lg" | tail -1))"
  else
    log "ERROR: $recipe failed (status $rc); last lines of logs/$recipe.log:"; tail -5 "$lg"
  fi
  return $rc
}

stage() {  # SECONDS THREADS "RECIPE" "OVERRIDES" ["RECIPE" "OVERRIDES" ...]: the jobs side by side
  local secs=$1 threads=$2 pids=() p rc=0
  shift 2
  while [ $# -ge 2 ]; do
    pretrain "$1" "$secs" "$threads" $2 & pids+=($!)
    shift 2
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}
avail=$(( $(left) - COLLECT_S ))
share=$(( avail * 50 / 100 - FINISH_S ))   # two hubert iterations, two label passes
[ "$share" -gt 10 ] || { log "ERROR: only ${avail}s left for training; raise DEADLINE or lower CORPUS_BUDGET"; exit 1; }
log "stage 1: hubert-compact alone (${share}s + ${FINISH_S}s to finish, $CORES threads)"
stage "$share" "$CORES" hubert-compact "$HUBERT" || true
HUB=$RUNS/hubert-compact/final
if [ ! -f "$HUB/model.safetensors" ]; then
  log "ERROR: no hubert-compact checkpoint: learn2diss-compact, jooci-compact and barlow-twins-compact need it"
  exit 1
fi
for r in learn2diss-compact jooci-compact barlow-twins-compact; do   # the same utterance list: reuse hubert's decoded audio
  src=$RUNS/hubert-compact/cache/audio
  if [ -f "$src/audio.json" ] && [ ! -e "$RUNS/$r/cache/audio" ]; then
    mkdir -p "$RUNS/$r/cache" && cp -al "$src" "$RUNS/$r/cache/audio" || true   # rebuilt if the list differs
  fi
done
share=$(( $(left) - COLLECT_S - FINISH_S ))
[ "$share" -gt 10 ] || { log "ERROR: only ${share}s left for stage 2"; exit 1; }
log "stage 2: learn2diss-compact, jooci-compact and barlow-twins-compact from hubert-compact (${share}s each + ${FINISH_S}s to finish, $THREADS threads each)"
stage "$share" "$THREADS" learn2diss-compact "$L2D backbone_ckpt=$HUB" jooci-compact "$JOOCI init_ckpt=$HUB" \
  barlow-twins-compact "$BARLOW init_ckpt=$HUB" || true
log "training done"
