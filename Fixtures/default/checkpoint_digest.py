#!/usr/bin/env python3
"""A content digest of a PRIMA checkpoint that ignores its time stamps (make_default.sh prints it).

Usage: checkpoint_digest.py FILE.h5 [FILE.h5 ...]

Prints one line per file: the SHA-256 over every object of the HDF5 file in sorted path order — for a group its
path, for a dataset its path, dtype, shape and raw bytes — and every attribute (name, dtype, value bytes) in sorted
order, except the two time stamps the toolkit writes: `created` on the root (Formats/prima-checkpoint.md §2) and
`imported` on each component group. Everything training writes (tensors, adapters, heads, /training with its
optimiser moments, histories and record) is covered, so two runs of make_default.sh that print the same digest
trained the same bits. The file bytes themselves differ between runs only by those stamps.
"""

import hashlib
import sys

import h5py
import numpy as np

TIME_STAMPS = {"created", "imported"}


def attribute_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    array = np.asarray(value)
    if array.dtype.kind == "O":
        return repr(array.tolist()).encode("utf-8")
    return array.dtype.str.encode() + repr(array.shape).encode() + array.tobytes()


def digest(path):
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        names = ["/"]
        f.visit(lambda name: names.append("/" + name))
        for name in sorted(names):
            obj = f[name]
            h.update(b"\0" + name.encode("utf-8"))
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                array = np.asarray(data)
                h.update(array.dtype.str.encode() + repr(array.shape).encode())
                h.update(attribute_bytes(data) if array.dtype.kind == "O" else array.tobytes())
            for key in sorted(obj.attrs.keys()):
                if key in TIME_STAMPS:
                    continue
                h.update(b"\1" + key.encode("utf-8") + b"=" + attribute_bytes(obj.attrs[key]))
    return h.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: checkpoint_digest.py FILE.h5 [FILE.h5 ...]")
    for path in sys.argv[1:]:
        print(f"{digest(path)}  {path}")
