#!/usr/bin/env bash
# CIAGAN on a lent GPU in one command: timed training on prepared faces with training recipe
# v2 (methods/ciagan/weights/MODEL_CARD.md) at batch $BATCH, bf16 autocast and channels_last
# (the trainer's CUDA defaults), the identity check (does the target change the face? a
# collapsed run prints "CIAGAN IDENTITY: COLLAPSED" and the script exits 3), the fp16 generator
# export (in pieces under 16 MiB, as files come back from the device machine), and, with time
# left, the speed benchmark and profiler tables. Everything lands in $OUT as soon as it exists, so a run cut
# short keeps what it finished. The GPU machine has no dlib: prepare the faces here first,
#   anonbench train ciagan --data celeba:../shared/data/celeba --split identity-train \
#       --export-data .devrun/celeba_train.npz
# then, on the device machine (repo root, no install needed):
#   OUT=dir DATA=.devrun/celeba_train.npz bash benchmarks/ciagan_device.sh
# (defaults: MINUTES=6.5 of GAN training after the identity net's pretraining, BATCH=64,
# BUDGET=570 s for the whole script, inside one 10-minute device command)
# A CPU rehearsal: DEVICE=cpu BATCH=4 TRAIN_EXTRA="--img-size 32 --gen-width 8 \
#   --critic-width 8 --id-width 8 --pnca-epochs 0.05" CHECK_EXTRA="--sources 8" \
#   BENCH_EXTRA="--batch 2 --infer-batch 4 --steps 1 --warmup 0 --img-size 32 --gen-width 8 \
#   --critic-width 8 --id-width 8 --threads 1" MINUTES=0.3 BUDGET=300 ...
# with DATA a small prepared file, e.g. synthetic faces written by save_prepared(
# learning.synthetic_faces(), FILE). Its log: benchmarks/results/ciagan_device_cpu_rehearsal_log.txt
# (25 steps: "CIAGAN IDENTITY: COLLAPSED", exit 3, as a run that short should).
set -u
T0=$SECONDS
OUT=${OUT:?set OUT}
DATA=${DATA:?set DATA to a prepared .npz}
MINUTES=${MINUTES:-6.5}   # GAN training time after the identity net's pretraining
BUDGET=${BUDGET:-570}     # seconds for the whole script
BATCH=${BATCH:-64}        # 4x the paper's 16; epochs (N / 12 B steps) scale with it
CHECK_EXTRA=${CHECK_EXTRA:-}
DEVICE=${DEVICE:-cuda}
TRAIN_EXTRA=${TRAIN_EXTRA:-}
BENCH_EXTRA=${BENCH_EXTRA:-}
# shellcheck source=benchmarks/device_common.sh
source "$(dirname "$0")/device_common.sh"

train() {
  timeout "$(limit 150)" python3 -m anonbench train ciagan --data "prepared:$DATA" \
    --out "$WORK/ciagan" --device "$DEVICE" --epochs 100000 --max-minutes "$MINUTES" \
    --save-minutes 1 --batch-size "$BATCH" --no-progress $TRAIN_EXTRA "$@"
}
stamp "training ($MINUTES min after the identity net)"
train
rc=$?
# GAN steps logged so far (last.pt exists right after the identity pretraining already)
steps_done() { tail -n +2 "$WORK/ciagan/losses.csv" 2>/dev/null | wc -l; }
if [ $rc -ne 0 ] && [ "$(steps_done)" -eq 0 ]; then
  stamp "training failed (rc $rc) before its first GAN step: again with --amp off"
  rm -rf "$WORK/ciagan"
  train --amp off
  rc=$?
fi
stamp "training ended, rc $rc"
collapsed=0
if [ -f "$WORK/ciagan/last.pt" ]; then
  stamp "identity check (before export)"
  timeout "$(limit 60)" python3 -m anonbench.methods.ciagan.learning "$WORK/ciagan/last.pt" \
    "$DATA" --device "$DEVICE" --json "$OUT/identity_check.json" $CHECK_EXTRA
  crc=$?
  [ $crc -eq 0 ] || collapsed=1
  [ $crc -eq 0 ] || [ $crc -eq 3 ] || echo "CIAGAN IDENTITY: CHECK FAILED (rc $crc)"
  python3 -c "
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = ['identity', 'critic', 'gen_gan', 'gen_identity', 'id_dist_same', 'id_dist_diff',
        'gen_same_frac', 'gen_id_dist', 'grad_g_onehot', 'grad_g_identity', 'grad_g_total']
for name, part in (('first 50', rows[:50]), ('last 50', rows[-50:])):
    have = [c for c in cols if part and c in part[0]]
    print('instrumentation,', name, 'steps:', ', '.join(
        f'{c} {sum(float(r[c]) for r in part) / len(part):.4g}' for c in have))
" "$WORK/ciagan/losses.csv" || true
  # losses.csv is cut to the checkpoint's step: a run killed by `timeout` logged past it
  python3 -c "
import csv, sys
from anonbench.methods.ciagan.checkpoint import export_generator, load
c = load(sys.argv[1])
print('step', c['step'], 'identities', c['num_identities'], 'config', c['config'])
export_generator(sys.argv[1], sys.argv[2])
with open(sys.argv[3], newline='') as f:
    rows = list(csv.reader(f))
with open(sys.argv[4], 'w', newline='') as f:
    csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= c['step']])
" "$WORK/ciagan/last.pt" "$WORK/ciagan_generator.pt" "$WORK/ciagan/losses.csv" "$OUT/losses.csv"
  sha256sum "$WORK/ciagan_generator.pt"
  split -b 15M -d -a 2 "$WORK/ciagan_generator.pt" "$OUT/ciagan_generator.pt.part"
  cp "$WORK/ciagan/samples/last.png" "$OUT/grid_last.png" 2>/dev/null || true
  echo "pnca pretraining loss, first and last rows:"
  head -3 "$WORK/ciagan/pnca_losses.csv" 2>/dev/null; tail -2 "$WORK/ciagan/pnca_losses.csv" 2>/dev/null
  echo "GAN losses, last rows:"; tail -3 "$WORK/ciagan/losses.csv"
fi

if [ "$(left)" -gt 60 ]; then
  stamp "speed benchmark ($(left) s left)"
  timeout "$(limit 5)" python3 "$REPO/benchmarks/ciagan_speed.py" --device "$DEVICE" \
    --steps 20 --half --profile "$OUT/profile.txt" --compile --out "$OUT/ciagan_speed.json" \
    $BENCH_EXTRA
  stamp "speed benchmark rc $?"
else
  stamp "speed benchmark skipped ($(left) s left)"
fi
ls -la "$OUT"
if [ ! -f "$WORK/ciagan/last.pt" ]; then
  stamp "FAILED: no checkpoint"
  exit 2
fi
if [ $collapsed -ne 0 ]; then
  stamp "FAILED: CIAGAN IDENTITY COLLAPSED or unchecked (see identity_check.json): the export is a collapsed generator"
  exit 3
fi
stamp "done: identity check passed"
