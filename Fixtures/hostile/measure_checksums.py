#!/usr/bin/python3
"""How libhdf5 1.10.8 reacts to one flipped bit in a file's metadata (Formats/prima-checkpoint.md §10.1).

Usage: measure_checksums.py FILE.h5 [VARIANTS [SEED]]   (defaults: 150 variants, seed 2)

Flips one random bit (seeded) outside every dataset's data, then reads the copy with h5py in a child process
(every attribute and every dataset) and counts: checksum errors, other errors, no error, and deaths by signal.
Run with Debian's /usr/bin/python3 (h5py 3.7, HDF5 1.10.8). For Fixtures/prima/tiny-prima.h5 it printed
{'checksum error': 95, 'no error': 40, 'signal 11': 15}.
"""
import collections
import os
import random
import subprocess
import sys
import tempfile

import h5py

READ_ALL = """
import sys, h5py
def visit(name, obj):
    for key in obj.attrs.keys():
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        obj[()]
with h5py.File(sys.argv[1], "r") as f:
    for key in f.attrs.keys():
        f.attrs[key]
    f.visititems(visit)
"""


def main(path, variants=150, seed=2):
    data = open(path, "rb").read()
    ranges = []
    with h5py.File(path, "r") as f:
        def visit(_, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                ranges.append((obj.id.get_offset(), obj.id.get_offset() + obj.id.get_storage_size()))
        f.visititems(visit)
    metadata = [i for i in range(len(data)) if not any(a <= i < b for a, b in ranges)]
    rng, counts = random.Random(seed), collections.Counter()
    with tempfile.TemporaryDirectory() as directory:
        variant = os.path.join(directory, "variant.h5")
        for _ in range(variants):
            flipped = bytearray(data)
            flipped[rng.choice(metadata)] ^= 1 << rng.randrange(8)
            open(variant, "wb").write(flipped)
            run = subprocess.run([sys.executable, "-c", READ_ALL, variant], capture_output=True, timeout=120)
            if run.returncode < 0:
                counts["signal %d" % -run.returncode] += 1
            elif run.returncode == 0:
                counts["no error"] += 1
            else:
                counts["checksum error" if b"checksum" in run.stderr.lower() else "other error"] += 1
    print(f"{path}: {len(data)} bytes, {len(metadata)} outside dataset data; {variants} variants:", dict(counts))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *map(int, sys.argv[2:]))
