#!/usr/bin/env bash
# Reproduce the shipped default weights' first stage: synthetic data from the generator, then training.
#
#   scripts/train_default.sh            data in runs/data, run in runs/default
#   RUN=runs/x DATA=runs/d scripts/train_default.sh --resume     (continue an interrupted run)
#
# Training rigs: 8 seeds for each of the urban, suburban and highway styles, 20 frames each
# (scripts/synth_training_data.sh). Held out (the validation tail, never trained on): one extra
# suburban rig, seed 9000. The shipped weights continue this run: scripts/train_continue.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/install.sh > /dev/null
DATA="${DATA:-runs/data}"
RUN="${RUN:-runs/default}"

echo "==> synthetic data in $DATA"
mapfile -t dirs < <(scripts/synth_training_data.sh "$DATA" 8)
echo "==> training into $RUN (${#dirs[@]} rigs)"
exec "$ROOT/.venv/bin/crossi2p" train --data "${dirs[@]}" --out "$RUN" --config config/train_default.yaml "$@"
