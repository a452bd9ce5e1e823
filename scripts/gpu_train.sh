#!/usr/bin/env bash
# Training on a lent GPU machine, in two halves (the device has no registry access and no open3d,
# so the data is generated and cached here, and travels with the working tree, 64 MiB at most):
#
#   scripts/gpu_train.sh prepare [RIGS_PER_STYLE]   here: generate rigs, write .gpu_data/*.npz
#   scripts/gpu_train.sh run [MINUTES]              there: train, results into $OUT (default 8 min)
#
# The device call (the device tool's run, carry [".gpu_data"]):
#   bash scripts/gpu_train.sh run 8
# Back in $OUT: model.pt (weights), metrics.jsonl (train and validation curves), config.yaml, log.txt.
# Then here: benchmarks/validate_weights.py --weights <files_at>/model.pt, and the model card.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
case "${1:-}" in
  prepare)
    PER_STYLE="${2:-10}"
    ./scripts/install.sh > /dev/null
    grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
    mapfile -t dirs < <(scripts/synth_training_data.sh runs/data "$PER_STYLE")
    rm -rf .gpu_data
    .venv/bin/crossi2p cache --data "${dirs[@]}" --out .gpu_data --points 8192
    printf '%s\n' "${dirs[@]##*/}" > .gpu_data/order.txt   # training order; the held-out rig last
    du -sh .gpu_data ;;
  run)
    MINUTES="${2:-8}"
    : "${OUT:?run this on the device machine, where OUT is set}"
    mapfile -t caches < <(sed 's|^|.gpu_data/|; s|$|.npz|' .gpu_data/order.txt)
    export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee "$OUT/log.txt"
    rm -rf /tmp/run   # a second call on the same (warm) machine starts afresh: the trainer refuses a used run folder
    set +e
    timeout --signal=INT "$((MINUTES * 60))" python3 -m crossi2p_ros.cli train --data "${caches[@]}" \
      --out /tmp/run --config "${CONFIG:-config/train_gpu.yaml}" --device "${DEVICE:-cuda}" \
      --init-weights models/crossi2p_default.pt 2>&1 | tr '\r' '\n' | grep -v '^train: *[0-9]*%' | tee -a "$OUT/log.txt"
    set -e
    # stopped by the time limit: the last checkpoint becomes the weights
    if [[ ! -f /tmp/run/model.pt && ! -f /tmp/run/checkpoints/last.pt ]]; then
      echo "no checkpoint was reached in $MINUTES min: nothing to bring back" | tee -a "$OUT/log.txt"; exit 1
    fi
    if [[ ! -f /tmp/run/model.pt ]]; then
      python3 - <<'PY'
import sys; sys.path.insert(0, ".")
from crossi2p_ros.training.checkpoint import load_checkpoint
from crossi2p_ros.training.config import TrainConfig
from crossi2p_ros.model.crossi2p import CrossI2P
from crossi2p_ros.model.weights import save_weights
ckpt = load_checkpoint("/tmp/run/checkpoints/last.pt")
model = CrossI2P(TrainConfig.from_dict(ckpt["config"]).model)
model.load_state_dict(ckpt["model"])
save_weights("/tmp/run/model.pt", model, {"step": ckpt["step"], "note": "last checkpoint of a time-limited GPU run"})
PY
    fi
    cp /tmp/run/model.pt /tmp/run/metrics.jsonl /tmp/run/config.yaml "$OUT"/ ;;
  *) sed -n 2,12p "$0"; exit 2 ;;
esac
