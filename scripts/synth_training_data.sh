#!/usr/bin/env bash
# Generate the synthetic training rigs of the default recipe (idempotent: finished rigs are skipped).
#
#   scripts/synth_training_data.sh DATA_DIR [RIGS_PER_STYLE] [JOBS]
#
# Prints the rig folders in training order, the held-out validation rig last
# (suburban seed 9000: the trainer's validation tail), one per line on stdout.
# Rigs 1-8 of each style are those of the shipped weights (seeds seed + 100 * index);
# further rigs take seeds 3000 + 3 n + style, all below the 9000+ seeds that
# benchmarks hold out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${1:?usage: synth_training_data.sh DATA_DIR [RIGS_PER_STYLE] [JOBS]}"
PER_STYLE="${2:-8}"
JOBS="${3:-$(nproc)}"
CROSSI2P="${CROSSI2P:-$ROOT/.venv/bin/crossi2p}"
mkdir -p "$DATA"

styles=(urban suburban highway)
specs=()
for s in 0 1 2; do
  for seed in 1 2 3 4 5 6 7 8; do
    (( seed <= PER_STYLE )) && specs+=("${styles[$s]} $((seed + 100 * ${#specs[@]})) 20")
  done
done
shipped=${#specs[@]}
for (( n = 8; n < PER_STYLE; n++ )); do
  for s in 0 1 2; do specs+=("${styles[$s]} $((3000 + 3 * n + s)) 20"); done
done
held_out="suburban 9000 16"  # never trained on: listed last, so it is the trainer's validation tail
# generated in this order: the shipped recipe's rigs and the held-out one first, so a run on them can start early
gen=("${specs[@]:0:$shipped}" "$held_out" "${specs[@]:$shipped}")
specs+=("$held_out")

printf '%s\n' "${gen[@]}" | OMP_NUM_THREADS=1 xargs -P "$JOBS" -L 1 bash -c '
  dir="'"$DATA"'/$0-$1"
  if [[ ! -f "$dir/sequences/00/calib.txt" ]]; then
    rm -rf "$dir" "$dir.partial"   # a folder without calib.txt is an interrupted one
    "'"$CROSSI2P"'" synth --out "$dir.partial" --style "$0" --seed "$1" --frames "$2" > /dev/null 2>&1 \
      && mv "$dir.partial" "$dir"
  fi' >&2
for spec in "${specs[@]}"; do read -r style seed _ <<< "$spec"; echo "$DATA/$style-$seed"; done
