#!/usr/bin/env bash
# bench/interop_check.sh: lowbit <-> PyTorch checkpoint interop, end to end. lowbit-trained
# checkpoints evaluated by `lowbit eval` and by PyTorch (bench/torch_models.py, strict load) on the
# same exported tensors, then PyTorch-made checkpoints evaluated by both; asserts equal accuracy
# and loss within 1e-4 relative; and lowbit's train-mode BN update against torch's.
# Usage: [ONLY="names synthetic reverse cifar bn"] bench/interop_check.sh [WORKDIR]
# (default WORKDIR /tmp/lowbit_interop; ONLY picks sections, default all)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/lowbit_interop}
PY=/usr/bin/python3          # Debian's python, which has torch
LB=build/lowbit
N="nice -n 15"
CIFAR=/work/main/data/cifar10-jpg  # read only
RTOL=1e-4
FAILS=0
mkdir -p "$W"

run() { echo "+ $*" >&2; "$@"; }
want() { [[ " ${ONLY:-names synthetic reverse cifar bn} " == *" $1 "* ]]; }

# compare LABEL LOWBIT_JSON TORCH_JSON: accuracy identical, loss within RTOL (relative).
compare() {
  if $PY - "$1" "$2" "$3" "$RTOL" <<'EOF'; then :; else FAILS=$((FAILS + 1)); fi
import json, sys
label, a, b, rtol = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
rel = abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-30)
ok = a["acc"] == b["acc"] and rel <= rtol
print(f"{'OK  ' if ok else 'FAIL'} {label:44s} lowbit acc {a['acc']:.4f} loss {a['loss']:.6f} | "
      f"torch acc {b['acc']:.4f} loss {b['loss']:.6f} | rel loss diff {rel:.1e} "
      f"(torch close calls {b.get('close_calls', '-')})")
sys.exit(0 if ok else 1)
EOF
}

# lowbit -> torch: DATA_SPEC DATA_DIR(exported) LIMIT CKPT LABEL
lowbit_to_torch() {
  local lb th
  lb=$(run $N $LB eval --ckpt "$4" --data "$1" --limit-test "$3" --threads 2 --json)
  th=$(run $N $PY bench/torch_interop.py --eval-lowbit "$4" --data "$2" --threads 2 --json)
  compare "$5" "$lb" "$th"
}

# torch -> lowbit: DATA_SPEC DATA_DIR(exported) LIMIT MODEL LABEL
torch_to_lowbit() {
  local ck="$W/torch_$4_$(basename "$2").safetensors" lb th
  th=$(run $N $PY bench/torch_interop.py --export-torch "$ck" --model "$4" --seed 7 --data "$2" \
       --threads 2 --json)
  lb=$(run $N $LB eval --ckpt "$ck" --data "$1" --limit-test "$3" --threads 2 --json)
  compare "$5" "$lb" "$th"
}

echo "== build"
run $N make -j2 build/lowbit >/dev/null
$LB --version | head -1

if want names; then
echo "== state_dict names: lowbit info --state-dict vs bench/torch_models.py"
for m in resnet20 resnet56b resnet18 shufflenetv2 shufflenetv2_0.5 shufflenetv2_1.5 mobilenetv2 \
         wrn-16-2 wrn-40-4 smallcnn; do
  if diff <($N $LB info --model $m --state-dict) <($N $PY bench/torch_models.py --model $m) >/dev/null; then
    echo "OK   $m: $($LB info --model $m --state-dict | grep -vc '^#') entries, same names/shapes/order"
  else
    echo "FAIL $m: state_dict differs"; FAILS=$((FAILS + 1))
  fi
done

fi

echo "== synthetic data (seed 1): export the first 500 test images"
# lowbit eval normalises synthetic / image-folder data with the statistics of ONE train image
# (tools/cmd_eval.cpp sets limit_train = 1); --norm-limit-train 1 reproduces that exactly.
run $N $LB export-data --data synthetic --limit 500 --norm-limit-train 1 --out "$W/syn_eval"

if want synthetic; then
echo "== lowbit-trained checkpoints -> PyTorch (1 epoch; train images per model below)"
for spec in resnet20:2000 smallcnn:2000 mobilenetv2:512 shufflenetv2:512; do
  m=${spec%%:*} ntrain=${spec##*:}
  run $N $LB train --model $m --data synthetic --epochs 1 --limit-train $ntrain --limit-test 500 \
      --batch 128 --threads 2 --no-progress --out "$W/run_$m" >/dev/null
  lowbit_to_torch synthetic "$W/syn_eval" 500 "$W/run_$m/model.safetensors" "$m synthetic, lowbit eval"
  # Training's own per-epoch eval (summary.json) normalised with its $ntrain train images'
  # statistics: export with those and compare torch with that eval too.
  run $N $LB export-data --data synthetic --limit 500 --norm-limit-train $ntrain --out "$W/syn_train$ntrain" >/dev/null
  sj=$($PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps({'acc': s['final_test_acc'], 'loss': s['final_test_loss']}))" "$W/run_$m/summary.json")
  th=$(run $N $PY bench/torch_interop.py --eval-lowbit "$W/run_$m/model.safetensors" \
       --data "$W/syn_train$ntrain" --threads 2 --json)
  compare "$m synthetic, lowbit train's own eval" "$sj" "$th"
done

fi

if want reverse; then
echo "== PyTorch checkpoints -> lowbit (random init, BN affine randomised, classifier x20, 3 BN updates)"
for m in resnet20 resnet20b smallcnn mobilenetv2 shufflenetv2 wrn-16-2 resnet18; do
  torch_to_lowbit synthetic "$W/syn_eval" 500 $m "$m synthetic, torch export"
done

fi

if want cifar && [ -d "$CIFAR/test" ]; then
  echo "== CIFAR-10 ($CIFAR, image folder): 1000 test images"
  run $N $LB export-data --data "$CIFAR" --limit 1000 --norm-limit-train 1 --out "$W/cifar_eval"
  run $N $LB train --model resnet20 --data "$CIFAR" --epochs 1 --limit-train 1000 --limit-test 1000 \
      --batch 128 --threads 2 --no-progress --out "$W/run_cifar_resnet20" >/dev/null
  lowbit_to_torch "$CIFAR" "$W/cifar_eval" 1000 "$W/run_cifar_resnet20/model.safetensors" \
      "resnet20 cifar10-jpg, lowbit eval"
  for m in resnet20 smallcnn mobilenetv2; do
    torch_to_lowbit "$CIFAR" "$W/cifar_eval" 1000 $m "$m cifar10-jpg, torch export"
  done
else
  want cifar && echo "== CIFAR-10 not found at $CIFAR: skipped"
fi

if want bn; then
  echo "== train-mode BN update: one batch of 128 synthetic train images through a torch-made"
  echo "   checkpoint, in lowbit (train --init, lr 1e-30, one step) and in torch"
  run $N $LB export-data --data synthetic --split train --limit 128 --norm-limit-train 128 \
      --out "$W/syn_train_batch"
  for m in resnet20 mobilenetv2; do
    before="$W/bn_${m}_before.safetensors"
    run $N $PY bench/torch_interop.py --export-torch "$before" --model $m --seed 11 >/dev/null
    run $N $LB train --model $m --data synthetic --init "$before" --epochs 1 --limit-train 128 \
        --limit-test 1 --batch 128 --lr 1e-30 --wd 0 --sched constant --no-augment --threads 2 \
        --no-progress --out "$W/bn_$m" >/dev/null
    if run $N $PY bench/torch_interop.py --bn-update "$before" "$W/bn_$m/model.safetensors" \
        --data "$W/syn_train_batch" --threads 2 --json; then
      echo "OK   $m BN update (running_mean within 1e-4 rel, running_var 1e-5, num_batches_tracked equal)"
    else
      echo "FAIL $m BN update"; FAILS=$((FAILS + 1))
    fi
  done
fi

echo "== $FAILS failure(s)"
[ "$FAILS" = 0 ]
