#!/usr/bin/env bash
# Continue training from existing weights on more synthetic rigs, at low priority (a background job).
#
#   scripts/train_continue.sh [RIGS_PER_STYLE]         data in runs/data, run in runs/continue-RIGS
#   scripts/train_continue.sh 16 --resume              continue an interrupted run where it stopped
#   INIT=path/to/weights.pt RUN=runs/x scripts/train_continue.sh 8
#   CONFIG=config/train_continue_fixed_weights.yaml RUN=runs/fixed-8 scripts/train_continue.sh 8
#
# Starts from INIT (default: the shipped models/crossi2p_default.pt) with CONFIG (default
# config/train_continue.yaml).
# Validation: the held-out suburban rig 9000 after every epoch; curves in RUN/metrics.jsonl and
# RUN/tensorboard. Safe to stop at any time: --resume continues from the last checkpoint exactly.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/install.sh > /dev/null
PER_STYLE="${1:-16}"
shift || true
DATA="${DATA:-runs/data}"
RUN="${RUN:-runs/continue-$PER_STYLE}"
INIT="${INIT:-models/crossi2p_default.pt}"
CONFIG="${CONFIG:-config/train_continue.yaml}"

echo "==> synthetic data in $DATA ($PER_STYLE rigs per style)"
mapfile -t dirs < <(nice -n 10 scripts/synth_training_data.sh "$DATA" "$PER_STYLE")
echo "==> training into $RUN (${#dirs[@]} rigs, from $INIT)"
exec nice -n 10 "$ROOT/.venv/bin/crossi2p" train --data "${dirs[@]}" --out "$RUN" \
  --config "$CONFIG" --init-weights "$INIT" "$@"
