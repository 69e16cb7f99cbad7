#!/usr/bin/python3
"""Writes a modified copy of a PRIMA checkpoint for the hostile-input tests (Tests/PrimaRuntimeTests/HostileConfigTests.swift).

    craft_checkpoint.py IN.h5 OUT.h5 OPERATION ARGS...

Operations (each changes one thing and keeps everything else valid, CRC-32s included, so that the test sees
exactly the refusal it is about):

    config ROLE KEY JSON_VALUE [both]   set config/KEY (typed as the stored attribute is); with "both", also
                                        files/config.json's KEY (a consistent but impossible configuration)
    reshape ROLE TENSOR                 replace tensors/TENSOR by a tensor one column wider (deterministic
                                        values from a seeded generator), same dtype attribute, its own CRC-32
    crc ROLE TENSOR VALUE|delete        set the crc32 attribute to VALUE (an int, e.g. -1 or 2**32 + crc) or
                                        delete it; "plus2^32" stores the true CRC-32 + 2**32
    nan ROLE TENSOR                     set element 7 of an f32 tensor to NaN, with a matching CRC-32
    huge ROLE TENSOR                    scale an f32 tensor so that its largest magnitude is 3e38 (finite, near
                                        float32's maximum), with a matching CRC-32
    attr GROUP KEY JSON_VALUE           set attribute KEY of GROUP (e.g. text_encoder, image_encoder/preprocessing):
                                        a JSON string as a string, a list as float64 [n], a number as float64 or int
    file GROUP NAME TEXT                replace GROUP/files/NAME by the UTF-8 bytes of TEXT
    addfile GROUP NAME SIZE             add GROUP/files/NAME holding SIZE zero bytes (1-D uint8)
    filegroup GROUP NAME                add an empty group GROUP/files/NAME
    delete PATH...                      delete each group, dataset or attribute (PATH@KEY) named
    preprocessing HEIGHT WIDTH          set image_encoder/preprocessing height and width (int64)
    vocab ROLE SIZE                     set ROLE's vocab_size to SIZE in config/ and files/config.json, and keep the
                                        first SIZE rows of every stored tensor that had vocab_size rows (CRC-32s
                                        renewed): a consistent component whose tokenizer emits larger ids
    classids START                      store task.class_token_ids as START, START + 1, ... (int64, CRC-32 renewed)
    schema_empty_category               give every category field of the metadata schema an empty value list
    retype GROUP KEY int32              store attribute KEY of GROUP, same value, as a 32-bit integer
    refattr GROUP KEY                   add attribute KEY holding an HDF5 object reference to GROUP
    nullattr GROUP KEY                  replace attribute KEY of GROUP by one with a null dataspace

Needs Debian's python3-h5py (h5py 3.7) and numpy. No randomness except numpy's generator seeded with 0.
"""
import json
import shutil
import sys
import zlib

import h5py
import numpy as np


def crc_of(array):
    return zlib.crc32(np.ascontiguousarray(array).tobytes())


def main(argv):
    source, output, operation, *args = argv
    shutil.copyfile(source, output)
    with h5py.File(output, "r+") as f:
        if operation == "config":
            role, key, value = args[0], args[1], json.loads(args[2])
            group = f[role]["config"]
            old = group.attrs[key]
            if isinstance(old, (bytes, str)):
                group.attrs[key] = value if isinstance(value, str) else json.dumps(value)
            elif isinstance(old, (float, np.floating)):
                group.attrs.create(key, float(value), dtype="<f8")
            else:
                group.attrs.create(key, int(value), dtype="<i8")
            if len(args) > 3 and args[3] == "both":
                files = f[role]["files"]
                config = json.loads(bytes(files["config.json"][()]).decode())
                config[key] = value
                data = np.frombuffer(json.dumps(config, indent=2).encode(), dtype=np.uint8)
                del files["config.json"]
                files.create_dataset("config.json", data=data)
        elif operation == "reshape":
            role, name = args
            tensors = f[role]["tensors"]
            old = tensors[name]
            attrs = dict(old.attrs)
            shape = list(old.shape)
            shape[-1] += 1
            values = np.random.default_rng(0).standard_normal(shape).astype(old.dtype)
            del tensors[name]
            new = tensors.create_dataset(name, data=values)
            for key, value in attrs.items():
                new.attrs[key] = value
            new.attrs.create("crc32", crc_of(values), dtype="<i8")
        elif operation == "crc":
            role, name, value = args
            dataset = f[role]["tensors"][name]
            if value == "delete":
                del dataset.attrs["crc32"]
            elif value == "plus2^32":
                dataset.attrs.create("crc32", crc_of(dataset[()]) + 2**32, dtype="<i8")
            else:
                dataset.attrs.create("crc32", int(value), dtype="<i8")
        elif operation == "huge":
            role, name = args
            dataset = f[role]["tensors"][name]
            values = dataset[()].astype(np.float64)
            values = (values * (3e38 / np.abs(values).max())).astype(np.float32)
            assert np.isfinite(values).all()
            dataset[...] = values
            dataset.attrs.create("crc32", crc_of(values), dtype="<i8")
        elif operation == "nan":
            role, name = args
            dataset = f[role]["tensors"][name]
            values = dataset[()].astype(np.float32)
            values.reshape(-1)[7] = np.float32("nan")
            dataset[...] = values
            dataset.attrs.create("crc32", crc_of(values), dtype="<i8")
        elif operation == "attr":
            group, key, value = f[args[0]], args[1], json.loads(args[2])
            if isinstance(value, str):
                group.attrs[key] = value
            elif isinstance(value, list):
                group.attrs.create(key, np.array(value, dtype="<f8"))
            elif isinstance(value, float):
                group.attrs.create(key, value, dtype="<f8")
            else:
                group.attrs.create(key, int(value), dtype="<i8")
        elif operation == "file":
            files = f[args[0]]["files"]
            del files[args[1]]
            files.create_dataset(args[1], data=np.frombuffer(args[2].encode(), dtype=np.uint8))
        elif operation == "addfile":
            f[args[0]]["files"].create_dataset(args[1], data=np.zeros(int(args[2]), dtype=np.uint8))
        elif operation == "filegroup":
            f[args[0]]["files"].create_group(args[1])
        elif operation == "delete":
            for path in args:
                if "@" in path:
                    group, key = path.split("@")
                    del f[group].attrs[key]
                else:
                    del f[path]
        elif operation == "preprocessing":
            group = f["image_encoder/preprocessing"]
            group.attrs.create("height", int(args[0]), dtype="<i8")
            group.attrs.create("width", int(args[1]), dtype="<i8")
        elif operation == "vocab":
            role, size = args[0], int(args[1])
            files = f[role]["files"]
            config = json.loads(bytes(files["config.json"][()]).decode())
            old_size = config["vocab_size"]
            config["vocab_size"] = size
            del files["config.json"]
            files.create_dataset("config.json", data=np.frombuffer(json.dumps(config, indent=2).encode(), dtype=np.uint8))
            f[role]["config"].attrs.create("vocab_size", size, dtype="<i8")
            tensors = f[role]["tensors"]
            for name in list(tensors):
                if isinstance(tensors.get(name, getlink=True), h5py.SoftLink):
                    continue
                old = tensors[name]
                if old.shape and old.shape[0] == old_size:
                    attrs, values = dict(old.attrs), np.ascontiguousarray(old[()][:size])
                    del tensors[name]
                    new = tensors.create_dataset(name, data=values)
                    for key, value in attrs.items():
                        new.attrs[key] = value
                    new.attrs.create("crc32", crc_of(values), dtype="<i8")
            count = sum(tensors[n].size for n in tensors if not isinstance(tensors.get(n, getlink=True), h5py.SoftLink))
            f[role].attrs.create("parameter_count", count, dtype="<i8")
        elif operation == "classids":
            tensors = f["prima"]["tensors"]
            old = tensors["task.class_token_ids"]
            attrs, values = dict(old.attrs), np.arange(int(args[0]), int(args[0]) + old.shape[0], dtype="<i8")
            del tensors["task.class_token_ids"]
            new = tensors.create_dataset("task.class_token_ids", data=values)
            for key, value in attrs.items():
                new.attrs[key] = value
            new.attrs.create("crc32", crc_of(values), dtype="<i8")
        elif operation == "schema_empty_category":
            files = f["prima"]["files"]
            schema = json.loads(bytes(files["metadata_schema.json"][()]).decode())
            for field in schema["fields"]:
                if field["kind"] == "category":
                    field["values"] = []
                    field.pop("labels", None)
            del files["metadata_schema.json"]
            files.create_dataset("metadata_schema.json", data=np.frombuffer(json.dumps(schema).encode(), dtype=np.uint8))
        elif operation == "retype":
            group, key = f[args[0]], args[1]
            value = int(group.attrs[key])
            group.attrs.create(key, value, dtype="<i4")
        elif operation == "refattr":
            f[args[0]].attrs[args[1]] = f[args[0]].ref
        elif operation == "nullattr":
            f[args[0]].attrs.create(args[1], h5py.Empty("S1"))
        else:
            raise SystemExit(f"unknown operation {operation}")


if __name__ == "__main__":
    main(sys.argv[1:])
