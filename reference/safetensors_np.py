"""Reads safetensors files into numpy without the `safetensors` package (the torch venv has none):
`trainer step-dump`'s dumps for `step_check.py`, barlow checkpoints for `torch_knn.py --eval`."""
import json

import numpy as np

DTYPES = {"F32": np.float32, "U8": np.uint8, "I64": np.int64}


def read_safetensors(path):
    """(tensors as numpy arrays (memory-mapped), metadata) of a safetensors file."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    n = int.from_bytes(bytes(raw[:8]), "little")
    header = json.loads(bytes(raw[8:8 + n]))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, h in header.items():
        lo, hi = h["data_offsets"]
        out[name] = raw[base + lo:base + hi].view(DTYPES[h["dtype"]]).reshape(h["shape"])
    return out, meta
