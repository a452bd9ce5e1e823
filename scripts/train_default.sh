#!/usr/bin/env bash
# Reproduce the shipped default weights: synthetic data from the generator, then training.
#
#   scripts/train_default.sh            data in runs/data, run in runs/default
#   RUN=runs/x DATA=runs/d scripts/train_default.sh --resume     (continue an interrupted run)
#
# Training rigs: 8 seeds for each of the urban, suburban and highway styles, 20 frames each.
# Held out (the validation tail, never trained on): one extra suburban rig, seed 9000.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/install.sh > /dev/null
DATA="${DATA:-runs/data}"
RUN="${RUN:-runs/default}"
CROSSI2P="$ROOT/.venv/bin/crossi2p"
mkdir -p "$DATA"

specs=()
for style in urban suburban highway; do
  for seed in 1 2 3 4 5 6 7 8; do specs+=("$style $((seed + 100 * ${#specs[@]})) 20"); done
done
specs+=("suburban 9000 16")  # held out: last, so it is the validation tail

echo "==> synthetic data in $DATA (${#specs[@]} rigs)"
printf '%s\n' "${specs[@]}" | OMP_NUM_THREADS=1 xargs -P 2 -L 1 bash -c '
  dir="'"$DATA"'/$0-$1"
  [[ -f "$dir/sequences/00/calib.txt" ]] || "'"$CROSSI2P"'" synth --out "$dir" --style "$0" --seed "$1" --frames "$2" > /dev/null
  echo "    $dir"'

dirs=()
for spec in "${specs[@]}"; do read -r style seed _ <<< "$spec"; dirs+=("$DATA/$style-$seed"); done
echo "==> training into $RUN"
exec "$CROSSI2P" train --data "${dirs[@]}" --out "$RUN" --config config/train_default.yaml "$@"
