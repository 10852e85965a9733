#!/usr/bin/env bash
# The GPU checks of docs/perf.md in one go, on a machine with an NVIDIA GPU and a GPU build
# (`make GPU=1 && make GPU=1 build-gpu/lowbit_tests`): the CUDA test cases, then lowbit bench
# against PyTorch eager (float32, TF32 off on both sides) for ResNet-20 and ResNet-18, full
# precision and LSQ W4A4, batch 128 and 512, ROUNDS times each, one line per run.
# Usage: bench/gpu_suite.sh [OUTDIR] [ROUNDS]   (OUTDIR gets cuda_tests.log and bench.log)
set -uo pipefail
out=${1:-runs/gpu-suite}
rounds=${2:-2}
py=${PYTHON:-python3}
mkdir -p "$out"
[ -x build-gpu/lowbit ] && [ -x build-gpu/lowbit_tests ] || {
  echo "gpu_suite: build-gpu/lowbit and build-gpu/lowbit_tests are needed (make GPU=1 && make GPU=1 build-gpu/lowbit_tests)" >&2
  exit 2
}
LOWBIT_BIN=$PWD/build-gpu/lowbit ./build-gpu/lowbit_tests -tc='cuda: *' 2>&1 | tee "$out/cuda_tests.log" | tail -4
for m in resnet20 resnet18; do for b in 128 512; do for ((r = 1; r <= rounds; ++r)); do
  for q in "" "--wq lsq:4 --aq lsq:4"; do
    ./build-gpu/lowbit bench --device cuda --model $m --batch $b --iters 50 $q
    $py bench/torch_bench.py --device cuda --model $m --batch $b --iters 50 $q
  done
done; done; done 2>&1 | tee "$out/bench.log"
