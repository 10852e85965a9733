#!/usr/bin/python3
"""safetensors for PyTorch without the `safetensors` package, to exchange checkpoints with lowbit.
Format: u64 little-endian header length N, N bytes of JSON {"__metadata__": {str: str},
name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the raw little-endian data.

  /usr/bin/python3 bench/torch_interop.py --check FILE     # list a lowbit file's tensors, metadata
  /usr/bin/python3 bench/torch_interop.py --roundtrip OUT  # write a known file, read it back
  /usr/bin/python3 bench/torch_interop.py --eval-lowbit CKPT --data DIR [--json]
      # a lowbit model checkpoint loaded (strict) into bench/torch_models.py, evaluated on
      # DIR/x.npy, DIR/y.npy (from `lowbit export-data`): accuracy and mean cross-entropy
  /usr/bin/python3 bench/torch_interop.py --export-torch OUT --model NAME [--classes K] [--seed S]
      [--data DIR] [--json]   # a randomly initialised torch model saved as a lowbit checkpoint
      # (`lowbit eval --ckpt OUT` loads it); with --data, torch's own accuracy/loss there, and
      # its logits in OUT.logits.npy
  /usr/bin/python3 bench/torch_interop.py --bn-update BEFORE AFTER --data DIR
      # BN running stats after one train-mode batch (DIR) in lowbit (AFTER) and in torch
The --roundtrip file is the fixture tests/fixtures/torch_roundtrip.safetensors that
tests/test_safetensors.cpp reads, so both directions of the interop are checked.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402  (bench/torch_models.py)

# The dtypes lowbit has (core/dtype.h); anything else is refused rather than converted silently.
DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64,
          "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8}
CODES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100_000_000  # as lowbit and the reference implementation

if sys.byteorder != "little":
    raise SystemExit("torch_interop.py copies raw bytes: a little-endian host is assumed")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError(f"duplicate keys in the header: {sorted(dup)}")
    return dict(pairs)


def load_safetensors(path):
    """Returns (dict name -> torch.Tensor in data order, metadata dict). Raises ValueError on a
    file that does not follow the format (the checks lowbit's reader makes, in brief)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the header length")
    (n,) = struct.unpack_from("<Q", raw, 0)
    if n > len(raw) - 8 or n > MAX_HEADER:
        raise ValueError(f"{path}: header length {n} exceeds the file or the limit")
    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: __metadata__ is not a map of strings")
    data = memoryview(raw)[8 + n:]
    entries = []
    for name, info in header.items():
        if info.get("dtype") not in DTYPES:
            raise ValueError(f"{path}: tensor '{name}': unsupported dtype {info.get('dtype')!r}")
        dtype = DTYPES[info["dtype"]]
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(data) or end - begin != nbytes:
            raise ValueError(f"{path}: tensor '{name}': bad shape {shape} or offsets {[begin, end]}")
        entries.append((begin, end, name, dtype, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    pos = 0
    for begin, end, name, _, _ in entries:  # back to back: no overlap, no gap
        if begin != pos:
            raise ValueError(f"{path}: tensor '{name}' at {begin} overlaps or leaves a gap at {pos}")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} unused bytes at the end of the data")
    tensors = {}
    for begin, end, name, dtype, shape in entries:
        # A copy (bytearray) so the tensor owns writable memory, not a view of the file buffer.
        buf = bytearray(data[begin:end])
        flat = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(shape)
    return tensors, dict(metadata)


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} in the dict's order, atomically (temp file, fsync, rename), with the
    header padded to a multiple of 8 bytes as lowbit and the reference writer do."""
    header, blobs, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        if name == "__metadata__" or t.dtype not in CODES:
            raise ValueError(f"tensor '{name}': name reserved or dtype {t.dtype} not supported by lowbit")
        blob = t.detach().cpu().contiguous().numpy().tobytes()
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for blob in blobs:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def roundtrip_tensors():
    """The fixture's contents; tests/test_safetensors.cpp checks the same values."""
    return {
        "conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2) / 4 - 3,
        "bn.running_var": torch.arange(3, dtype=torch.float64) + 0.5,
        "bn.num_batches_tracked": torch.tensor(12345678901, dtype=torch.int64),
        "labels": torch.tensor([-5, 0, 7], dtype=torch.int32),
        "codes": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "pixels": torch.tensor([[0, 255], [16, 32]], dtype=torch.uint8),
        "empty": torch.empty((0, 4), dtype=torch.float32),
    }


def describe(tensors, metadata):
    for name, t in tensors.items():
        print(f"{name}\t{str(t.dtype).replace('torch.', '')}\t{tuple(t.shape)}")
    for k, v in sorted(metadata.items()):
        print(f"__metadata__\t{k}\t{v}")


# The metadata save_model_checkpoint (tools/trainer.cpp) writes; load_model_checkpoint needs
# "model" and "num_classes".
def checkpoint_metadata(model_name, num_classes, epoch=0):
    return {"format": "lowbit-model", "model": model_name, "num_classes": str(num_classes),
            "epoch": str(epoch)}


def load_npy_data(data_dir):
    x = torch.from_numpy(np.load(os.path.join(data_dir, "x.npy")))
    y = torch.from_numpy(np.load(os.path.join(data_dir, "y.npy")))
    if x.dtype != torch.float32 or x.dim() != 4 or y.dtype != torch.int64 or y.shape != x.shape[:1]:
        raise ValueError(f"{data_dir}: expected x.npy float32 (N,C,H,W) and y.npy int64 (N), got "
                         f"{x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}")
    return x, y


@torch.no_grad()
def evaluate(model, x, y, batch=256):
    """As lowbit's evaluate(): eval mode, top-1 accuracy (first maximum wins, as lowbit's arg-max)
    and mean softmax cross-entropy. Returns (acc, loss, logits, close) where close counts images
    whose top-2 logits are within 1e-4 (where float rounding could flip the prediction)."""
    model.eval()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    loss = F.cross_entropy(logits.double(), y, reduction="mean").item()
    acc = (logits.argmax(1) == y).double().mean().item()
    top2 = logits.topk(2, dim=1).values if logits.shape[1] > 1 else None
    close = int(((top2[:, 0] - top2[:, 1]) < 1e-4).sum()) if top2 is not None else 0
    return acc, loss, logits, close


def report(result, as_json):
    if as_json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} ({result['direction']}): accuracy {100 * result['acc']:.2f}%, "
              f"loss {result['loss']:.6f} on {result['images']} images ({result['close_calls']} "
              f"with top-2 logits within 1e-4)")


def eval_lowbit(ckpt, data_dir, batch, as_json):
    tensors, meta = load_safetensors(ckpt)
    if "model" not in meta or "num_classes" not in meta:
        raise SystemExit(f"{ckpt}: metadata has no model/num_classes (not a lowbit model checkpoint?)")
    model = torch_models.build(meta["model"], int(meta["num_classes"]))
    model.load_state_dict(tensors, strict=True)
    x, y = load_npy_data(data_dir)
    acc, loss, _, close = evaluate(model, x, y, batch)
    report({"direction": "lowbit checkpoint in torch", "ckpt": ckpt, "model": meta["model"],
            "images": len(y), "acc": acc, "loss": loss, "close_calls": close}, as_json)


@torch.no_grad()
def export_torch(out, name, classes, seed, data_dir, batch, as_json):
    torch.manual_seed(seed)
    model = torch_models.build(name, classes)
    # torch's default init leaves BN at weight 1, bias 0, mean 0, var 1: make every BN tensor
    # non-trivial, so a loader that ignored (or swapped) one of them would show.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
    # torch's default Linear init gives logits of ~0.1, where the loss is ln(10) whatever the
    # network computes: scale the classifier so the logits are O(1) and the loss tests them.
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    classifier.weight.mul_(20)
    model.train()
    for _ in range(3):  # dummy batches: running_mean/var move, num_batches_tracked counts 3
        model(torch.randn(16, 3, 32, 32) * 1.5 + 0.2)
    model.eval()
    save_safetensors(out, model.state_dict(), checkpoint_metadata(name, classes, 0))
    result = {"direction": "torch model, torch eval", "ckpt": out, "model": name}
    if data_dir:
        x, y = load_npy_data(data_dir)
        acc, loss, logits, close = evaluate(model, x, y, batch)
        np.save(out + ".logits.npy", logits.numpy())
        result.update({"images": len(y), "acc": acc, "loss": loss, "close_calls": close})
        report(result, as_json)
    else:
        print(json.dumps(result) if as_json else f"wrote {out} ({name}, {classes} classes)")


@torch.no_grad()
def bn_update(before, after, data_dir, as_json):
    """lowbit's train-mode BN update against torch's: BEFORE is a checkpoint, AFTER the model
    `lowbit train --init BEFORE` saved after ONE batch (the images of DATA_DIR, lr ~0 so only the
    BN buffers move). torch runs that batch through BEFORE in train mode; the buffers must agree."""
    t0, meta = load_safetensors(before)
    t1, _ = load_safetensors(after)
    model = torch_models.build(meta["model"], int(meta["num_classes"]))
    model.load_state_dict(t0, strict=True)
    x, _ = load_npy_data(data_dir)
    model.train()
    model(x)
    worst = {"running_mean": 0.0, "running_var": 0.0, "params": 0.0}
    counts_ok = True
    for name, t in model.state_dict().items():
        kind = name.rsplit(".", 1)[-1]
        if kind == "num_batches_tracked":
            counts_ok &= int(t) == int(t1[name])
            continue
        key = kind if kind in worst else "params"
        rel = ((t - t1[name]).abs() / t1[name].abs().clamp_min(1e-3)).max().item()
        worst[key] = max(worst[key], rel)
    result = {"model": meta["model"], "images": len(x), "num_batches_tracked_equal": counts_ok,
              "max_rel_diff": worst}
    print(json.dumps(result) if as_json else result)
    # running_var within 1e-5: a biased batch variance (n instead of n-1, n = 128*4*4 at the
    # 4x4 layers) would be off by ~0.1/n = 5e-5 there.
    ok = (counts_ok and worst["running_mean"] <= 1e-4 and worst["running_var"] <= 1e-5
          and worst["params"] <= 1e-6)
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", metavar="FILE", help="load a safetensors file and list it")
    mode.add_argument("--roundtrip", metavar="OUT", help="write the fixture file and read it back")
    mode.add_argument("--eval-lowbit", metavar="CKPT", help="evaluate a lowbit model checkpoint in torch")
    mode.add_argument("--export-torch", metavar="OUT", help="save a torch model as a lowbit checkpoint")
    mode.add_argument("--bn-update", nargs=2, metavar=("BEFORE", "AFTER"),
                      help="compare lowbit's train-mode BN buffer update with torch's")
    ap.add_argument("--data", metavar="DIR", help="x.npy and y.npy from `lowbit export-data`")
    ap.add_argument("--model", help="--export-torch: model name (bench/torch_models.py build())")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.check:
        describe(*load_safetensors(args.check))
        return
    if args.eval_lowbit:
        if not args.data:
            ap.error("--eval-lowbit needs --data DIR")
        eval_lowbit(args.eval_lowbit, args.data, args.batch, args.json)
        return
    if args.bn_update:
        if not args.data:
            ap.error("--bn-update needs --data DIR")
        bn_update(*args.bn_update, args.data, args.json)
        return
    if args.export_torch:
        if not args.model:
            ap.error("--export-torch needs --model NAME")
        export_torch(args.export_torch, args.model, args.classes, args.seed, args.data, args.batch,
                     args.json)
        return
    want = roundtrip_tensors()
    meta = {"format": "pt", "producer": "bench/torch_interop.py"}
    save_safetensors(args.roundtrip, want, meta)
    got, got_meta = load_safetensors(args.roundtrip)
    ok = got_meta == meta and list(got) == list(want) and all(
        got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and torch.equal(got[k], want[k])
        for k in want)
    describe(got, got_meta)
    print("roundtrip:", "ok" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
