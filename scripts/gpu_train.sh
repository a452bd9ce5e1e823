#!/usr/bin/env bash
# Training on a lent GPU machine, in two halves (the device has no registry access and no open3d,
# so the data is generated and cached here, and travels with the working tree, 64 MiB at most):
#
#   scripts/gpu_train.sh prepare [RIGS_PER_STYLE]   here: generate rigs, write .gpu_data/*.npz
#   scripts/gpu_train.sh run [MINUTES]              there: train, results into $OUT (default 8 min)
#
# The device call (the device tool's run, carry [".gpu_data"]):
#   bash scripts/gpu_train.sh run 8
# It trains every config of CONFIGS (default: config/train_gpu.yaml, GradNorm, and
# config/train_gpu_fixed_weights.yaml) from the shipped weights, side by side: first a probe of a few
# steps times them, then each gets as many epochs as the minutes hold (crossi2p_ros/training/budget.py).
# Back in $OUT: log.txt, fit.json, and per config NAME/model.pt (weights) and NAME/metrics.jsonl.
# Then here: benchmarks/validate_weights.py --weights <files_at>/NAME/model.pt, and the model card.
# A dry run on this CPU: OUT=$(mktemp -d) DEVICE=cpu CONFIGS="..." scripts/gpu_train.sh run 3
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
    read -r -a configs <<< "${CONFIGS:-config/train_gpu.yaml config/train_gpu_fixed_weights.yaml}"
    mapfile -t caches < <(sed 's|^|.gpu_data/|; s|$|.npz|' .gpu_data/order.txt)
    export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    t0=$(date +%s)
    { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee "$OUT/log.txt"
    rm -rf /tmp/probe /tmp/run   # a second call on the same (warm) machine starts afresh
    # every variant from the shipped weights, side by side on the one GPU (a 3 M-parameter network leaves
    # most of it idle); each line of the log names its variant
    train() {   # SECONDS_LIMIT (0: none) VARIANT_DIR CONFIG ARGS...
      timeout --signal=INT "$1" python3 -m crossi2p_ros.cli train --data "${caches[@]}" --out "$2" --config "$3" \
        --device "${DEVICE:-cuda}" --init-weights models/crossi2p_default.pt "${@:4}" 2>&1 | tr '\r' '\n' \
        | grep --line-buffered -v '^train: *[0-9]*%' | sed -u "s|^|[${2##*/}] |" | tee -a "$OUT/log.txt" || true
    }
    # 1. a probe of PROBE_STEPS steps and one validation of each variant, side by side, times the step
    for cfg in "${configs[@]}"; do train 0 "/tmp/probe/$(basename "$cfg" .yaml)" "$cfg" --epochs 1 \
      --steps-per-epoch "${PROBE_STEPS:-50}" & done
    wait
    # 2. as many epochs as the minutes left hold, so the cosine schedule ends inside them
    epochs=$(python3 -m crossi2p_ros.training.budget fit --minutes "$MINUTES" --started "$t0" --json "$OUT/fit.json" \
      --configs "${configs[@]}" --probes /tmp/probe/* | tee -a "$OUT/log.txt" | tail -n 1)
    left=$((MINUTES * 60 - $(date +%s) + t0 - 20))
    echo "training $epochs epochs a variant, stopped after $left s at the latest" | tee -a "$OUT/log.txt"
    for cfg in "${configs[@]}"; do train "$left" "/tmp/run/$(basename "$cfg" .yaml)" "$cfg" --epochs "$epochs" & done
    wait
    # 3. weights and curves back: a variant stopped by the time limit gives its last checkpoint as weights
    for run in /tmp/run/*; do
      name="${run##*/}"
      mkdir -p "$OUT/$name"
      if [[ ! -f "$run/model.pt" && -f "$run/checkpoints/last.pt" ]]; then
        python3 -m crossi2p_ros.training.budget weights "$run/checkpoints/last.pt" "$run/model.pt" \
          "last checkpoint of a time-limited GPU run" | tee -a "$OUT/log.txt"
      fi
      if [[ -f "$run/model.pt" ]]; then cp "$run/model.pt" "$run/metrics.jsonl" "$OUT/$name/"
      else echo "[$name] no checkpoint was reached: nothing to bring back" | tee -a "$OUT/log.txt"; fi
    done
    echo "done in $(($(date +%s) - t0)) s" | tee -a "$OUT/log.txt" ;;
  *) sed -n 2,15p "$0"; exit 2 ;;
esac
