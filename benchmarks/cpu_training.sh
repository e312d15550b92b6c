#!/usr/bin/env bash
# CPU trainings of the learned anonymizers as long background jobs (issue 19): start, resume
# after a restart, watch, pause while timing something, score and export. Training folders
# live outside the repo, in $ANONBENCH_TRAIN_HOME (default ~/anonbench-train); each run keeps
# the command that started it (RUN.cmd), so `resume` needs only its name.
#
#   bash benchmarks/cpu_training.sh prepare DATA_ROOT      # prepared faces (identity-train, seed 0)
#   bash benchmarks/cpu_training.sh start RUN FAMILY [trainer flags]   # --preset cpu added
#   bash benchmarks/cpu_training.sh resume RUN [RUN...]    # after a restart: continues exactly
#   (folder lost with its machine: `start` again with --init-generator COMMITTED_EXPORT.pt; every
#    family takes it, the generator starts from the export and the rest fresh)
#   bash benchmarks/cpu_training.sh status                 # step, CPU-hours, s/step, loss trend
#   bash benchmarks/cpu_training.sh pause | cont           # SIGSTOP / SIGCONT every training
#   bash benchmarks/cpu_training.sh stop RUN               # SIGTERM: saves a checkpoint, exits
#   bash benchmarks/cpu_training.sh score RUN DATA_ROOT [CKPT]   # anonbench quality, logged
#   bash benchmarks/cpu_training.sh export RUN DEST_DIR    # fp16 generator in < 16 MiB pieces
#
# Every training runs with one thread at nice 19 (the cpu preset), so two of them beside other
# work slow nothing down; a checkpoint is written at least every 5 minutes and a snapshot kept
# every 30 (snapshots/step_N.pt + .json with its CPU-hours), for the learning curve.
set -euo pipefail
HOME_DIR=${ANONBENCH_TRAIN_HOME:-$HOME/anonbench-train}
mkdir -p "$HOME_DIR/logs"
cmd=${1:-status}
shift || true

family_data() {  # the prepared file a family trains on
  case "$1" in
    ciagan) echo "$HOME_DIR/celeba_train.npz" ;;
    *) echo "$HOME_DIR/celeba_train_baselines.npz" ;;
  esac
}

launch() {  # RUN, then the full trainer argv
  local run=$1
  shift
  OMP_NUM_THREADS=1 nohup anonbench train "$@" > "$HOME_DIR/logs/$run.log" 2>&1 &
  echo "$!" > "$HOME_DIR/$run.pid"
  echo "$run: pid $! (log $HOME_DIR/logs/$run.log)"
}

case "$cmd" in
  prepare)
    root=${1:?DATA_ROOT}
    [ -f "$HOME_DIR/celeba_train.npz" ] || anonbench train ciagan --data "celeba:$root" \
      --split identity-train --export-data "$HOME_DIR/celeba_train.npz" --no-progress
    [ -f "$HOME_DIR/celeba_train_baselines.npz" ] || anonbench train pix2pix \
      --data "celeba:$root" --split identity-train \
      --export-data "$HOME_DIR/celeba_train_baselines.npz" --no-progress
    ;;
  start)
    run=${1:?RUN}
    fam=${2:?FAMILY}
    shift 2
    argv=("$fam" --preset cpu --data "prepared:$(family_data "$fam")" --out "$HOME_DIR/$run" "$@")
    printf '%q ' "${argv[@]}" > "$HOME_DIR/$run.cmd"
    launch "$run" "${argv[@]}"
    ;;
  resume)
    for run in "$@"; do
      if [ -f "$HOME_DIR/$run.pid" ] && kill -0 "$(cat "$HOME_DIR/$run.pid")" 2>/dev/null; then
        echo "$run: already running (pid $(cat "$HOME_DIR/$run.pid"))"
        continue
      fi
      eval "argv=($(cat "$HOME_DIR/$run.cmd"))"
      launch "$run" "${argv[@]}" --resume
    done
    ;;
  status)
    for s in "$HOME_DIR"/*/status.json; do
      [ -f "$s" ] || continue
      run=$(basename "$(dirname "$s")")
      alive=no
      if [ -f "$HOME_DIR/$run.pid" ] && kill -0 "$(cat "$HOME_DIR/$run.pid")" 2>/dev/null; then
        alive=yes
      fi
      python3 - "$s" "$run" "$alive" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
trend = ", ".join(
    f"{k} {v['last']} ({v['trend']})" for k, v in s["losses"].items() if v["last"] is not None
)
q = s.get("quality") or {}
qs = f" | quality@{q.get('step')}: id {q.get('identity_effect_heldout')}, det {q.get('det_retinaface')}/{q.get('det_dlib_hog')}, R@1 {q.get('recall1_dlib_resnet')}, KID {q.get('kid')}" if q else ""
print(f"{sys.argv[2]} [{s['family']}, {s['state']}, alive: {sys.argv[3]}] step {s['step']} "
      f"epoch {s['epoch']}, {s['cpu_hours']} CPU-h, {s['seconds_per_step']} s/step | {trend}{qs}")
EOF
    done
    ;;
  pause | cont)
    sig=$([ "$cmd" = pause ] && echo STOP || echo CONT)
    for p in "$HOME_DIR"/*.pid; do
      [ -f "$p" ] && kill "-$sig" "$(cat "$p")" 2>/dev/null && echo "$(basename "$p" .pid): SIG$sig"
    done
    ;;
  stop)
    kill -TERM "$(cat "$HOME_DIR/${1:?RUN}.pid")"
    ;;
  score)
    run=${1:?RUN}
    root=${2:?DATA_ROOT}
    ckpt=${3:-$HOME_DIR/$run/last.pt}
    fam=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['family'])" \
      "$HOME_DIR/$run/status.json")
    OMP_NUM_THREADS=1 anonbench quality --method "$fam" --checkpoint "$ckpt" --data-root "$root" \
      --out "$HOME_DIR/quality/$run" --log-to "$HOME_DIR/$run" --cache-dir "$HOME_DIR/cache"
    ;;
  export)
    run=${1:?RUN}
    dest=${2:?DEST_DIR}
    ckpt=${3:-$HOME_DIR/$run/last.pt}
    mkdir -p "$dest"
    python3 - "$ckpt" "$dest" <<'EOF'
import sys
from pathlib import Path

import torch

src, dest = sys.argv[1], Path(sys.argv[2])
head = torch.load(src, map_location="cpu", weights_only=True)
fam = head.get("family", "ciagan")
if head.get("format") == "anonbench-ciagan":  # pix2pix/CycleGAN files hold "models" too
    from anonbench.methods.ciagan.checkpoint import export_generator

    name = "ciagan_generator.pt"
else:
    from anonbench.methods.gan_common import export_generator

    name = f"{fam}_generator.pt"
export_generator(src, dest / name)
raw = (dest / name).read_bytes()
(dest / name).unlink()
piece = 15 * 2**20
for i in range(0, len(raw), piece):
    (dest / f"{name}.part{i // piece:02d}").write_bytes(raw[i : i + piece])
import hashlib
import json

from anonbench.quality import checkpoint_info

# the step and CPU-hours travel with the export (NAME.json beside it), so `score` on the
# export fills the quality table's step and CPU-h columns as it does for snapshots
step, cpu = checkpoint_info(Path(src))
if step is not None and cpu is not None:
    side = dest / Path(name).with_suffix(".json")
    side.write_text(json.dumps({"step": step, "cpu_hours": cpu, "source": str(src)}) + "\n")
print(f"{dest / name}: {len(raw)} bytes in {-(-len(raw) // piece)} pieces, sha256 {hashlib.sha256(raw).hexdigest()}, step {step}, CPU-h {cpu}")
EOF
    ;;
  *)
    echo "usage: $0 prepare|start|resume|status|pause|cont|stop|score|export ..." >&2
    exit 2
    ;;
esac
