#!/usr/bin/env python3
"""PyTorch side of the speed comparison: the same model, batch and thread count as `lowbit bench`.
Prints train_img_per_s=... eval_img_per_s=... (median over --iters after warm-up), like lowbit.
Run with Debian's python3-torch: /usr/bin/python3 bench/torch_bench.py --model resnet20 --threads 2
On a GPU: --device cuda (the clock is read after torch.cuda.synchronize(); TF32 off unless --tf32,
matching lowbit, whose cuBLAS/cuDNN calls run plain FP32).
"""
import argparse, json, statistics, sys, time, resource, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import torch.nn.functional as F
from torch_models import build as make_model

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in cuBLAS and cuDNN (cuda only)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cudnn.benchmark = True  # lowbit also times cuDNN's algorithms once per shape
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    m = make_model(a.model, 10).to(dev)
    x = torch.randn(a.batch, 3, 32, 32).to(dev)
    y = (torch.arange(a.batch) % 10).to(dev)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    tt, te = [], []
    m.train()
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
    r = {"model": a.model, "batch": a.batch, "threads": a.threads, "device": a.device,
         "train_img_per_s": a.batch / statistics.median(tt), "eval_img_per_s": a.batch / statistics.median(te),
         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if a.json: print(json.dumps(r))
    else: print("train_img_per_s=%.1f eval_img_per_s=%.1f peak_rss_mb=%.0f (torch %s, model %s, batch %d, %s, threads %d)" % (
        r["train_img_per_s"], r["eval_img_per_s"], r["peak_rss_mb"], torch.__version__, a.model, a.batch, a.device, a.threads))

if __name__ == "__main__":
    main()
