#!/usr/bin/python3
"""Hostile HDF5 files for the untrusted-input tests (Formats/prima-checkpoint.md, "Untrusted files").

Usage: make_hdf5_cases.py CHECKPOINT TRACE OUTDIR

Each case is a copy of a valid checkpoint (CHECKPOINT, e.g. Fixtures/prima/tiny-prima.h5) or trace (TRACE, e.g.
Fixtures/traces/prima-tiny-bert.h5) with exactly one defect, written with Debian's h5py 3.7 / HDF5 1.10.8
(/usr/bin/python3). OUTDIR also gets the files outside the checkpoints that the defects point at
(outside.bin: the marker bytes b"OUTSIDE-SECRET!!" repeated; outside.h5; outside-config.json: a valid copy
of the component's config.json), an unmodified copy (control.h5), the trace rewritten with h5py's default
settings (trace-h5py-default.h5: superblock 0, no metadata checksums) with, edited in its layout message, an
activation whose storage runs past the end of the file (trace-past-eof.h5) or is twice what its shape needs
(trace-storage-size.h5), one on which libhdf5 never returns (trace-hang.h5), and metadata-ranges.json (for each of
control.h5 and trace-h5py-default.h5, the byte ranges that hold no dataset data, where the byte-flip test
flips bytes). The output is deterministic: nothing here is random, and no time is stored.

The tests (Tests/PrimaRuntimeTests/HostileHDF5Tests.swift) run this script at test time into a temporary
directory, since each case is a full copy of the checkpoint.
"""
import json
import os
import shutil
import struct
import sys
import zlib

import h5py
import numpy as np

MARKER = b"OUTSIDE-SECRET!!"
LIBVER = ("v108", "v110")  # the checkpoint format's bounds: edits keep checksummed metadata
TENSOR = "/decoder/tensors/embed.tokens"  # (640, 48) f32 in tiny-prima.h5
CONFIG = "/text_encoder/files/config.json"
ACTIVATION = "/activations/image_encoder.embeddings"


def copy(src, out, name):
    path = os.path.join(out, name)
    shutil.copyfile(src, path)
    return path


def replace_dataset(f, path, make):
    """Replaces dataset `path` by `make(group, name, data)`, keeping its attributes and storing the same
    crc32 that the defect's bytes would have (so only the defect is wrong)."""
    old = f[path]
    data, attrs = old[()], dict(old.attrs)
    group, name = f[os.path.dirname(path)], os.path.basename(path)
    del group[name]
    new = make(group, name, data)
    for key, value in attrs.items():
        new.attrs[key] = value
    return new


def outside_bytes(count):
    return (MARKER * (count // len(MARKER) + 1))[:count]


def main(checkpoint, trace, out):
    os.makedirs(out, exist_ok=True)
    with h5py.File(checkpoint, "r") as f:
        tensor_bytes = f[TENSOR].size * 4
        config_bytes = f[CONFIG][()].tobytes()
    outside = os.path.join(out, "outside.bin")
    with open(outside, "wb") as handle:
        handle.write(outside_bytes(max(tensor_bytes, 1 << 20)))
    outside_config = os.path.join(out, "outside-config.json")
    with open(outside_config, "wb") as handle:
        handle.write(config_bytes)
    outside_h5 = os.path.join(out, "outside.h5")
    with h5py.File(outside_h5, "w", libver=LIBVER) as f:
        f.create_dataset("secret", data=np.frombuffer(outside_bytes(tensor_bytes), dtype="<f4").reshape(640, 48))

    copy(checkpoint, out, "control.h5")

    def edit(name, change):
        with h5py.File(copy(checkpoint, out, name), "r+", libver=LIBVER) as f:
            change(f)

    def external_tensor(f):
        d = replace_dataset(f, TENSOR, lambda g, n, data: g.create_dataset(
            n, shape=data.shape, dtype="<f4", external=[(outside, 0, tensor_bytes)]))
        d.attrs["crc32"] = zlib.crc32(outside_bytes(tensor_bytes))  # the outside bytes would pass verify
    edit("external-tensor.h5", external_tensor)

    edit("external-config.h5", lambda f: replace_dataset(f, CONFIG, lambda g, n, data: g.create_dataset(
        n, shape=(len(config_bytes),), dtype="u1", external=[(outside_config, 0, len(config_bytes))])))

    def virtual_tensor(f):
        def make(g, n, data):
            layout = h5py.VirtualLayout(shape=data.shape, dtype="<f4")
            layout[:] = h5py.VirtualSource(outside_h5, "secret", shape=data.shape)
            return g.create_virtual_dataset(n, layout)
        replace_dataset(f, TENSOR, make)
    edit("virtual-tensor.h5", virtual_tensor)

    edit("chunked-tensor.h5", lambda f: replace_dataset(f, TENSOR, lambda g, n, data: g.create_dataset(
        n, data=data, chunks=(64, 48))))
    edit("compressed-tensor.h5", lambda f: replace_dataset(f, TENSOR, lambda g, n, data: g.create_dataset(
        n, data=data, chunks=(64, 48), compression="gzip")))
    # 3 TiB declared, nothing allocated (h5py allocates contiguous storage when data is first written).
    edit("huge-tensor.h5", lambda f: replace_dataset(f, TENSOR, lambda g, n, data: g.create_dataset(
        n, shape=(786432, 1048576), dtype="<f4")))

    # The right shape, but never written: no storage at all.
    edit("unallocated-tensor.h5", lambda f: replace_dataset(f, TENSOR, lambda g, n, data: g.create_dataset(
        n, shape=data.shape, dtype="<f4")))

    def hardlink_cycle(f):
        f["/decoder/config"]["loop"] = f["/decoder/config"]
    edit("hardlink-cycle.h5", hardlink_cycle)

    def second_hardlink(f):
        f["/decoder/files/second.json"] = f[CONFIG]  # one object under two names: not a tree
    edit("second-hardlink.h5", second_hardlink)

    def external_link(f):
        f["/decoder/tensors/extra.weight"] = h5py.ExternalLink(outside_h5, "/secret")
    edit("external-link.h5", external_link)

    def soft_link_outside(f):
        f["/decoder/tensors/extra.weight"] = h5py.SoftLink("/image_encoder/tensors/embed.cls_token")
    edit("softlink-outside.h5", soft_link_outside)

    def soft_link_in_files(f):
        del f[CONFIG]
        f[CONFIG] = h5py.SoftLink("/decoder/files/config.json")
    edit("softlink-files.h5", soft_link_in_files)

    with open(checkpoint, "rb") as handle:
        data = handle.read()
    with open(os.path.join(out, "truncated.h5"), "wb") as handle:
        handle.write(data[: len(data) * 9 // 10])

    # Traces: an activation stored outside the file, and the whole trace in h5py's default format.
    with h5py.File(copy(trace, out, "external-activation.h5"), "r+", libver=LIBVER) as f:
        count = f[ACTIVATION].size * 4
        replace_dataset(f, ACTIVATION, lambda g, n, data: g.create_dataset(
            n, shape=data.shape, dtype="<f4", external=[(outside, 0, count)]))
    default_trace = os.path.join(out, "trace-h5py-default.h5")
    with h5py.File(trace, "r") as src, h5py.File(default_trace, "w") as dst:
        # Rebuilt object by object (H5Ocopy would keep the source's checksummed object headers).
        def rebuild(source, target):
            for key, value in source.attrs.items():
                target.attrs[key] = value
            if isinstance(source, h5py.Dataset):
                return
            for name, item in source.items():
                if isinstance(item, h5py.Group):
                    rebuild(item, target.create_group(name))
                else:
                    rebuild(item, target.create_dataset(name, data=item[()]))
        rebuild(src, dst)

    # The h5py-default trace has no metadata checksums, so its layout message can be edited in place: version 3,
    # class 1 (contiguous), then the data's address and size, 8 bytes each, little-endian.
    with h5py.File(default_trace, "r") as f:
        address, size = f[ACTIVATION].id.get_offset(), f[ACTIVATION].id.get_storage_size()
    data = open(default_trace, "rb").read()
    at = data.find(b"\x03\x01" + struct.pack("<Q", address) + struct.pack("<Q", size))
    assert at > 0 and data.count(b"\x03\x01" + struct.pack("<Q", address)) == 1
    for name, field, value in [("trace-past-eof.h5", 2, len(data) - size // 2),  # storage runs past the end
                               ("trace-storage-size.h5", 10, size * 2)]:        # more storage than the shape
        edited = bytearray(data)
        edited[at + field:at + field + 8] = struct.pack("<Q", value)
        with open(os.path.join(out, name), "wb") as handle:
            handle.write(edited)

    # One flipped bit (found by the seeded flip search of the tests) on which libhdf5 1.10.8 never returns.
    hang = bytearray(data)
    hang[46711] ^= 1 << 5
    with open(os.path.join(out, "trace-hang.h5"), "wb") as handle:
        handle.write(hang)

    ranges = {}
    for name in ["control.h5", "trace-h5py-default.h5"]:
        path = os.path.join(out, name)
        data_ranges = []
        with h5py.File(path, "r") as f:
            def visit(_, obj):
                if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                    data_ranges.append((obj.id.get_offset(), obj.id.get_offset() + obj.id.get_storage_size()))
            f.visititems(visit)
        size, start, free = os.path.getsize(path), 0, []
        for begin, end in sorted(data_ranges):
            if begin > start:
                free.append([start, begin])
            start = max(start, end)
        if start < size:
            free.append([start, size])
        ranges[name] = free
    with open(os.path.join(out, "metadata-ranges.json"), "w") as handle:
        json.dump(ranges, handle, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
