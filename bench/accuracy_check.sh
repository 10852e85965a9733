#!/usr/bin/env bash
# Accuracy across a kernel change (docs/perf.md, "Correctness across the change"): the same short
# ResNet-20 run on the synthetic set (5,000 images, 4 epochs, batch 128, cosine lr 0.1) with two
# lowbit binaries, full precision and LSQ W4A4, at the seeds given. Logs and runs go to OUT.
# Usage: bench/accuracy_check.sh OLD_BIN NEW_BIN OUT [SEEDS...]   (default seeds: 1 2)
set -euo pipefail
old=$1 new=$2 out=$3
shift 3
seeds=("${@:-1 2}")
mkdir -p "$out"
for seed in ${seeds[@]}; do
  for bin in "$old" "$new"; do
    for q in fp w4a4; do
      extra=()
      [ "$q" = w4a4 ] && extra=(--wq lsq:4 --aq lsq:4)
      name="$(basename "$bin")-$q-seed$seed"
      "$bin" train --model resnet20 --data synthetic --limit-train 5000 --epochs 4 --batch 128 \
        --lr 0.1 --sched cosine --wd 5e-4 --seed "$seed" --threads 2 "${extra[@]}" \
        --out "$out/$name" > "$out/$name.log" 2>&1
      echo "$name: $(tail -n 1 "$out/$name.log")"
    done
  done
done
