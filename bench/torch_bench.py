#!/usr/bin/env python3
"""PyTorch side of the speed comparison: the same model, batch, thread count and (with --wq/--aq)
the same LSQ quantization-aware training step as `lowbit bench`. Prints train_img_per_s=...
eval_img_per_s=... (median over --iters after warm-up), like lowbit; --json for one JSON line.
Run with Debian's python3-torch:
  /usr/bin/python3 bench/torch_bench.py --model resnet20 --threads 2 [--wq lsq:4 --aq lsq:4]

LSQ uses PyTorch's own fused op, torch._fake_quantize_learnable_per_tensor_affine(x, scale,
zero_point, quant_min, quant_max, grad_factor) (torch >= 1.10; checked on 1.13), the fastest LSQ a
PyTorch user has. It mirrors lowbit (quant/quantize_model.cpp, METHODS.md "LSQ"):
  - weights: signed, -2^(b-1)..2^(b-1)-1, grad_factor 1/sqrt(numel(w)*Q_P);
  - inputs: unsigned 0..2^b-1 after a ReLU, signed where lowbit marks the layer act_signed (the
    image, BN outputs without ReLU: see signed_inputs below), grad_factor 1/sqrt(C*H*W*Q_P)
    (N = one example's elements, lowbit's and the paper's default);
  - learnable scale (an nn.Parameter, no weight decay as in lowbit's optimizer groups), zero_point
    fixed at 0; init s = 2*mean|x|/sqrt(Q_P) from the first batch, outside the timing;
  - --first-last 8 (the default, as lowbit's): the first conv and the last linear keep float
    inputs and 8-bit max-abs weights (scale max|w|/127, identity STE: the fused non-learnable
    torch.fake_quantize_per_tensor_affine, whose range never clips here); fp: both float; same:
    quantized like every other layer.
Caveat: PyTorch's learnable op tests the clip range on the *rounded* value, so x/s in [Q_P, Q_P+1/2)
counts as inside (dx = 1, ds = round(x/s)-x/s) where LSQ/lowbit clip first (dx = 0, ds = Q_P); the
forward is identical and the cost the same, so this does not affect the timing comparison.
Threads: torch.set_num_threads(T) and OpenBLAS limited to T threads (OPENBLAS_NUM_THREADS, set
before torch loads it); OPENBLAS_CORETYPE is left to the caller (bench/compare.sh passes lowbit's).
On a GPU: --device cuda (the clock is read after torch.cuda.synchronize(); TF32 off unless --tf32,
matching lowbit, whose cuBLAS/cuDNN calls run plain FP32).
"""
import argparse, ctypes, json, math, os, resource, statistics, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_spec(spec, flag):
    """'lsq:4' -> 4; '' -> None (full precision). Only LSQ per-tensor is mirrored here."""
    if not spec or spec == "fp":
        return None
    parts = spec.split(":")
    if len(parts) != 2 or parts[0] != "lsq" or not parts[1].isdigit() or not 2 <= int(parts[1]) <= 16:
        sys.exit("torch_bench: %s '%s': only lsq:BITS (2..16, per-tensor) is mirrored in PyTorch" % (flag, spec))
    return int(parts[1])


def signed_inputs(name, model):
    """Paths of the Conv2d/Linear layers whose input can be negative: lowbit's act_signed flags
    (models/*.cpp) for the same model, written out per architecture."""
    import re
    paths = {p for p, _ in model.named_modules()}
    s = {"conv1"}  # the stem conv reads the normalised image, in every model
    if name == "mobilenetv2":  # blocks after the first read a linear bottleneck (BN, no ReLU)
        s |= {p for p in paths if re.fullmatch(r"layers\.([1-9]\d*)\.(conv1|shortcut\.0)", p)}
        s.add("conv2")  # the last block's linear-bottleneck output
    elif name.startswith("shufflenetv2"):  # 1x1 convs after a depthwise conv's BN (no ReLU)
        s |= {p for p in paths if re.fullmatch(r"layer\d\.0\.(conv2|conv5)", p)}
        s |= {p for p in paths if re.fullmatch(r"layer\d\.[1-9]\d*\.conv3", p)}
    return s & paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--wq", default="", help="weight quantizer lsq:BITS (default: full precision)")
    ap.add_argument("--aq", default="", help="input quantizer lsq:BITS")
    ap.add_argument("--first-last", default="8", choices=["fp", "8", "same"],
                    help="first conv / last linear: 8-bit max-abs weights and float inputs (8), fp, same")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in cuBLAS and cuDNN (cuda only)")
    a = ap.parse_args()
    wbits, abits = parse_spec(a.wq, "--wq"), parse_spec(a.aq, "--aq")
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)  # read when torch loads OpenBLAS, below
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch_models import build as make_model

    class LsqFakeQuant(nn.Module):
        """LSQ through torch's fused learnable fake-quantize op (per-tensor, zero_point 0)."""

        def __init__(self, bits, signed, is_weight):
            super().__init__()
            self.qmin, self.qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            self.is_weight = is_weight
            self.scale = nn.Parameter(torch.ones(1))
            self.register_buffer("zero_point", torch.zeros(1))
            self.initialized = False
            self.saw_negative = False

        def forward(self, x):
            if not self.initialized:  # LSQ init from the first batch (weights: the weights)
                with torch.no_grad():
                    self.scale.copy_(2 * x.abs().mean() / math.sqrt(self.qmax))
                    self.saw_negative = bool((x < 0).any())
                self.initialized = True
            n = x.numel() if self.is_weight else x[0].numel()
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, self.scale, self.zero_point, self.qmin, self.qmax, 1.0 / math.sqrt(n * self.qmax))

    class MaxAbs8(nn.Module):
        """lowbit's maxabs:8: s = max|w|/127, round to nearest, identity STE (nothing clips)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("zero_point", torch.zeros(1, dtype=torch.int32))

        def forward(self, w):
            s = (w.detach().abs().amax() / 127).clamp_min(1e-30).reshape(1)
            return torch.fake_quantize_per_tensor_affine(w, s, self.zero_point, -127, 127)

    class QuantWrap(nn.Module):
        """A Conv2d/Linear with its weight and input fake-quantized (either may be None)."""

        def __init__(self, layer, wq, aq):
            super().__init__()
            self.layer, self.wq, self.aq = layer, wq, aq

        def forward(self, x):
            if self.aq is not None:
                x = self.aq(x)
            w = self.layer.weight if self.wq is None else self.wq(self.layer.weight)
            if isinstance(self.layer, nn.Conv2d):
                return self.layer._conv_forward(x, w, self.layer.bias)
            return F.linear(x, w, self.layer.bias)

    def quantize(model):
        """lowbit's quantize_model for LSQ: every Conv2d/Linear; first = the first in model order,
        last = the last Linear. Returns the activation quantizers by path and the number of quantizers."""
        layers = [(p, m) for p, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        last = max(i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear))
        signed = signed_inputs(a.model, model)
        aqs, count = {}, 0
        for i, (path, m) in enumerate(layers):
            if (i == 0 or i == last) and a.first_last != "same":
                wq, aq = (MaxAbs8() if a.first_last == "8" else None), None
            else:
                wq = LsqFakeQuant(wbits, True, True) if wbits else None
                aq = LsqFakeQuant(abits, path in signed, False) if abits else None
            if aq is not None:
                aqs[path] = aq
            if wq is None and aq is None:
                continue
            count += (wq is not None) + (aq is not None)
            parent_path, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent_path), child, QuantWrap(m, wq, aq))
        return aqs, count

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cudnn.benchmark = True  # lowbit also times cuDNN's algorithms once per shape
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    m = make_model(a.model, 10)
    quantized = wbits is not None or abits is not None
    aqs, nquant = quantize(m) if quantized else ({}, 0)
    m = m.to(dev)
    x = torch.randn(a.batch, 3, 32, 32).to(dev)
    y = (torch.arange(a.batch) % 10).to(dev)
    # lowbit's optimizer: weight decay on the model's parameters, none on the quantizer steps.
    qparams = {id(p) for n, p in m.named_parameters() if n.endswith(".scale")}
    groups = [{"params": [p for p in m.parameters() if id(p) not in qparams], "weight_decay": 5e-4},
              {"params": [p for p in m.parameters() if id(p) in qparams], "weight_decay": 0.0}]
    opt = torch.optim.SGD([g for g in groups if g["params"]], lr=0.01, momentum=0.9, nesterov=True)
    m.train()
    if quantized:  # first-batch init, untimed, as lowbit bench does
        with torch.no_grad():
            m(x)
        # lowbit's signed/unsigned rule, checked on data: an unsigned input must never be negative.
        bad = [p for p, q in aqs.items() if q.qmin == 0 and q.saw_negative]
        if bad:
            sys.exit("torch_bench: unsigned activation quantizer sees negative inputs at %s: "
                     "signed_inputs() does not mirror lowbit's act_signed for %s" % (bad, a.model))
    tt, te = [], []
    for i in range(a.warmup + a.iters):
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if i >= a.warmup: tt.append(time.perf_counter() - t0)
    m.eval()
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            m(x)
            sync()
            if i >= a.warmup: te.append(time.perf_counter() - t0)
    r = {"model": a.model, "batch": a.batch, "threads": a.threads, "device": a.device, "iters": a.iters,
         "wq": a.wq or "fp", "aq": a.aq or "fp", "first_last": a.first_last if quantized else "fp",
         "quantizers": nquant,
         "train_img_per_s": a.batch / statistics.median(tt), "eval_img_per_s": a.batch / statistics.median(te),
         "train_step_ms": 1e3 * statistics.median(tt), "eval_step_ms": 1e3 * statistics.median(te),
         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
         "torch": torch.__version__, "openblas_core": openblas_core(),
         "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", "")}
    if a.json: print(json.dumps(r))
    else: print("train_img_per_s=%.1f eval_img_per_s=%.1f peak_rss_mb=%.0f (torch %s, model %s, wq %s, aq %s, "
                "first/last %s, batch %d, %s, threads %d, openblas core %s)" % (
        r["train_img_per_s"], r["eval_img_per_s"], r["peak_rss_mb"], torch.__version__, a.model, r["wq"],
        r["aq"], r["first_last"], a.batch, a.device, a.threads, r["openblas_core"]))


def openblas_core():
    """The kernel the OpenBLAS loaded in this process uses (torch's BLAS on Debian), or ''."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "libopenblas" in path:
            try:
                lib = ctypes.CDLL(path)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                return lib.openblas_get_corename().decode()
            except (OSError, AttributeError):
                return ""
    return ""


if __name__ == "__main__":
    main()
