# Sourced by the GPU scripts (ciagan_device.sh, gan_baselines_device.sh) from the repo root,
# with OUT, DATA, BUDGET and T0 set: logs to $OUT/log.txt, defines the time helpers, and
# assembles the package without installing it (anonbench/ with methods/, protocols/,
# reports/ inside) on PYTHONPATH, then changes to a scratch folder $WORK.
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
DATA=$(realpath "$DATA")
REPO=$PWD
exec > >(tee -a "$OUT/log.txt") 2>&1
left() { echo $((BUDGET - (SECONDS - T0))); }
# seconds for a step that must leave `keep` seconds for what follows; at least 1 (a 0 would
# switch GNU timeout off, a negative number makes it fail)
limit() { local t=$(($(left) - $1)); echo $((t > 0 ? t : 1)); }
stamp() { echo "== [$((SECONDS - T0)) s] $*"; }

SITE=$(mktemp -d)
mkdir -p "$SITE/anonbench"
cp -r anonbench/. "$SITE/anonbench/"
for d in methods protocols reports; do cp -r "$d" "$SITE/anonbench/$d"; done
export PYTHONPATH=$SITE
WORK=$(mktemp -d)
# run from outside the checkout: with the repo root first on sys.path, its anonbench/ (which
# lacks methods/ etc.) would shadow the assembled package
cd "$WORK" || exit 1

stamp "setup"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>/dev/null || true
python3 -c "import torch, anonbench
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'anonbench', anonbench.__file__)"
git -C "$REPO" log -1 --format='commit %H %s' 2>/dev/null || true
