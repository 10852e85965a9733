#!/usr/bin/env bash
# make demo: train a small model end to end. On CIFAR-10 when it is found (data/ under the
# repository or $LOWBIT_DATA), otherwise on the built-in synthetic set, saying which.
set -euo pipefail
bin=${1:-build/lowbit}
cd "$(dirname "$0")/.."
data=""
for cand in "${LOWBIT_DATA:-}" data/cifar-10-batches-bin data/cifar10 data/cifar10-jpg data; do
  [ -n "$cand" ] || continue
  if [ -e "$cand/data_batch_1.bin" ] || [ -e "$cand/cifar-10-batches-bin/data_batch_1.bin" ] || [ -d "$cand/train" ]; then
    data=$cand
    break
  fi
done
if [ -n "$data" ]; then
  echo "demo: CIFAR-10 found at $data: training smallcnn on 10,000 of its training images for 3 epochs"
  args=(--data "$data" --limit-train 10000 --epochs 3)
else
  echo "demo: no CIFAR-10 under data/ or \$LOWBIT_DATA: training smallcnn on the built-in synthetic set"
  args=(--data synthetic --epochs 4)
fi
"$bin" --version | head -2
"$bin" train --model smallcnn "${args[@]}" --batch 64 --lr 0.05 --sched cosine --wd 5e-4 \
  --seed 1 --out runs/demo
plot=$("$bin" plot runs/demo)
echo "demo: summary in runs/demo/summary.json, curves in $plot"
