#!/usr/bin/env bash
# Two lowbit binaries against each other, `lowbit bench` run by run (docs/perf.md): R rounds,
# who goes first alternating by round (odd rounds A first, even rounds B), because this machine's
# speed drifts within minutes and a fixed order credits the drift to one side. Prints each
# round's training and evaluation img/s and the B/A ratios, then the medians of the per-round
# ratios. With --profile among the bench arguments it also prints the conv2d row of the profile
# (forward and backward ms a step) of every run.
# Usage: bench/ab_binaries.sh ROUNDS BIN_A BIN_B [lowbit bench arguments]
#   e.g. bench/ab_binaries.sh 12 old/lowbit build/lowbit --model resnet20 --threads 2 --iters 6
set -euo pipefail
rounds=$1 a=$2 b=$3
shift 3
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--model resnet20 --threads 2 --iters 6 --warmup 2)

# One run: "train eval" img/s, then "conv2d fwd bwd" ms with --profile.
run() {
  local out
  out=$("$1" bench "${args[@]}" 2>&1)
  local train eval
  train=$(sed -n 's/.*train_img_per_s=\([0-9.]*\).*/\1/p' <<< "$out")
  eval=$(sed -n 's/.*eval_img_per_s=\([0-9.]*\).*/\1/p' <<< "$out")
  [ -n "$train" ] || { echo "ab_binaries: $1 bench printed no train_img_per_s:" >&2; echo "$out" >&2; exit 1; }
  local conv
  conv=$(awk '$1 == "conv2d" { print "conv2d fwd " $3 " bwd " $5 }' <<< "$out")
  echo "$train $eval${conv:+ | $conv}"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rt=() re=()
for i in $(seq "$rounds"); do
  if (( i % 2 )); then ra=$(run "$a"); rb=$(run "$b"); else rb=$(run "$b"); ra=$(run "$a"); fi
  read -r ta ea _ <<< "$ra"
  read -r tb eb _ <<< "$rb"
  rt+=("$(awk -v x="$tb" -v y="$ta" 'BEGIN { print x / y }')")
  re+=("$(awk -v x="$eb" -v y="$ea" 'BEGIN { print x / y }')")
  echo "round $i: A $ra || B $rb || B/A train ${rt[-1]} eval ${re[-1]}"
done
echo "median B/A per round: train $(printf '%s\n' "${rt[@]}" | median), eval $(printf '%s\n' "${re[@]}" | median) (A $a, B $b)"
