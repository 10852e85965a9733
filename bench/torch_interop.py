#!/usr/bin/python3
"""safetensors for PyTorch without the `safetensors` package, to exchange checkpoints with lowbit.
Format: u64 little-endian header length N, N bytes of JSON {"__metadata__": {str: str},
name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the raw little-endian data.

  /usr/bin/python3 bench/torch_interop.py --check FILE     # list a lowbit file's tensors, metadata
  /usr/bin/python3 bench/torch_interop.py --roundtrip OUT  # write a known file, read it back
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

import torch

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", metavar="FILE", help="load a safetensors file and list it")
    mode.add_argument("--roundtrip", metavar="OUT", help="write the fixture file and read it back")
    args = ap.parse_args()
    if args.check:
        describe(*load_safetensors(args.check))
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
