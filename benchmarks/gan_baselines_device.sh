#!/usr/bin/env bash
# pix2pix and CycleGAN (landmark-only variants, the paper's Table 4 baselines) on a lent GPU in
# one command: each trained for $MINUTES on prepared faces of the celeba identity-train split,
# then its generator exported in fp16 and cut into pieces under 16 MiB (as files come back
# from the device machine). pix2pix trains at ngf $P2P_NGF (default 32: 10.5M parameters,
# ~21 MB fp16, shippable; ngf 64 is 41.8M, 84 MB); CycleGAN at ngf 64 (11.4M, ~23 MB fp16).
# Everything lands in $OUT as soon as it exists, so a run cut short keeps what it finished.
# The GPU machine has no dlib: prepare the faces here first,
#   anonbench train pix2pix --data celeba:../shared/data/celeba --split identity-train \
#       --export-data .devrun/celeba_train_baselines.npz
# then, on the device machine (repo root, no install needed):
#   OUT=dir DATA=.devrun/celeba_train_baselines.npz bash benchmarks/gan_baselines_device.sh
# Defaults: MINUTES=3.8 per model, BATCH=16 (the reference trains at batch 1; 16 is what
# fits the time; batch norm / instance norm statistics are per batch / per image), epochs
# P2P_EPOCHS / CG_EPOCHS (the lr decays linearly over the second half of them; --max-minutes
# may stop a run before it ends: the log's lr column says how far it got), VARIANT=landmarks.
# A CPU rehearsal: DEVICE=cpu P2P_NGF=4 CG_NGF=4 BATCH=2 MINUTES=0.1 BUDGET=200 (log:
# benchmarks/results/gan_baselines_device_cpu_rehearsal_log.txt).
set -u
T0=$SECONDS
OUT=${OUT:?set OUT}
DATA=${DATA:?set DATA to a prepared .npz}
MINUTES=${MINUTES:-3.8}
BUDGET=${BUDGET:-570}
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-cuda}
VARIANT=${VARIANT:-landmarks}
P2P_NGF=${P2P_NGF:-32}
CG_NGF=${CG_NGF:-64}
P2P_EPOCHS=${P2P_EPOCHS:-40}
CG_EPOCHS=${CG_EPOCHS:-10}
# shellcheck source=benchmarks/device_common.sh
source "$(dirname "$0")/device_common.sh"

# train FAMILY NGF EPOCHS KEEP: trains into $WORK/FAMILY, leaving KEEP seconds for the rest
train_one() {
  local fam=$1 ngf=$2 epochs=$3 keep=$4
  stamp "$fam: training ($MINUTES min, ngf $ngf, batch $BATCH, $epochs epochs planned)"
  timeout "$(limit "$keep")" python3 -m anonbench train "$fam" --data "prepared:$DATA" \
    --out "$WORK/$fam" --device "$DEVICE" --variant "$VARIANT" --ngf "$ngf" \
    --epochs "$epochs" --max-minutes "$MINUTES" --save-minutes 1 --batch-size "$BATCH" \
    --no-progress
  stamp "$fam: training rc $?"
  if [ ! -f "$WORK/$fam/last.pt" ]; then
    stamp "$fam: FAILED, no checkpoint"
    return 1
  fi
  # losses.csv cut to the checkpoint's step (a run killed by `timeout` logged past it)
  python3 - "$WORK/$fam/last.pt" "$WORK/${fam}_generator.pt" "$WORK/$fam/losses.csv" \
    "$OUT/${fam}_losses.csv" <<'PY'
import csv, sys
from anonbench.methods.gan_common import export_generator
out = export_generator(sys.argv[1], sys.argv[2])
print("step", out["step"], "config", out["config"], "training", out["training"])
with open(sys.argv[3], newline="") as f:
    rows = list(csv.reader(f))
with open(sys.argv[4], "w", newline="") as f:
    csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= out["step"]])
print("last rows:", *rows[-2:], sep="\n")
PY
  sha256sum "$WORK/${fam}_generator.pt"
  split -b 15M -d -a 2 "$WORK/${fam}_generator.pt" "$OUT/${fam}_generator.pt.part"
  cp "$WORK/$fam/samples/last.png" "$OUT/${fam}_grid_last.png" 2>/dev/null || true
}

# pix2pix first, leaving CycleGAN its minutes plus export time
train_one pix2pix "$P2P_NGF" "$P2P_EPOCHS" $((60 * ${MINUTES%.*} + 90))
p2p=$?
train_one cyclegan "$CG_NGF" "$CG_EPOCHS" 20
cg=$?
ls -la "$OUT"
stamp "done: pix2pix rc $p2p, cyclegan rc $cg"
exit $((p2p + cg))
