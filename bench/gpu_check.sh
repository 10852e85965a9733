#!/usr/bin/env bash
# One pass of the GPU checks on a lent machine, for a build made elsewhere: BIN holds lowbit and
# lowbit_tests of a GPU build (make GPU=1), LIBS the shared libraries it needs that the machine
# lacks (OpenBLAS and its runtime). Prints the CUDA test cases' summary, per-op profiles of
# ResNet-20 at batch 512 (fp32, LSQ W4A4), then lowbit against PyTorch like bench/gpu_suite.sh.
# Usage: bench/gpu_check.sh BIN LIBS OUTDIR [ROUNDS]
set -uo pipefail
bin=$1 libs=$2 out=$3 rounds=${4:-1}
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
py=${PYTHON:-python3}
mkdir -p "$out"
nvidia-smi -L
"$bin/lowbit" --version
LOWBIT_BIN=$bin/lowbit "$bin/lowbit_tests" -tc='cuda: *,device option*' > "$out/cuda_tests.log" 2>&1
grep -E "^\[doctest\]|ERROR|FAILED|failed" "$out/cuda_tests.log" | head -40
for q in "" "--wq lsq:4 --aq lsq:4"; do
  "$bin/lowbit" bench --device cuda --model resnet20 --batch 512 --iters 20 --profile $q
done 2>&1 | tee "$out/profile.log"
for m in resnet20 resnet18; do for b in 128 512; do for ((r = 1; r <= rounds; ++r)); do
  for q in "" "--wq lsq:4 --aq lsq:4"; do
    "$bin/lowbit" bench --device cuda --model $m --batch $b --iters 50 $q
    $py bench/torch_bench.py --device cuda --model $m --batch $b --iters 50 $q
  done
done; done; done 2>&1 | grep -E "img_per_s|Error|error" | tee "$out/bench.log"
