#!/usr/bin/env python3
"""Compare a checkpoint trained elsewhere and imported back with the one prima-train wrote (h5py, numpy).

    python compare_trained.py ORIGINAL.h5 IMPORTED.h5 PRIMA_TRAIN_OUT.h5 --role image_encoder --heads image_classifier.
    python compare_trained.py ORIGINAL.h5 IMPORTED.h5 PRIMA_TRAIN_OUT.h5 --role text_encoder --tensors mlm.   # stage 1

IMPORTED must equal ORIGINAL in every component tensor not under the --tensors prefix of --role, every component
file and /prima file, every head not under the --heads prefix, and every LoRA adapter of the other components; its
adapter `prima` on --role, its heads under the --heads prefix and its --role tensors under the --tensors prefix
must agree with PRIMA_TRAIN_OUT's within the parity bounds of Formats/prima-training.md §5 (cosine ≥ 0.99999,
max_abs ≤ 1e-4 · max|ref|, the issue's), and its /prima decoder_inputs must be PRIMA_TRAIN_OUT's. Exit 0 when
they do, 1 otherwise (one line per difference), 2 for an unreadable file.
"""

import argparse
import sys

import numpy as np

from prima_h5 import CheckpointError, open_checkpoint

COSINE = 0.99999
MAX_ABS_RELATIVE = 1e-4


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("original")
    p.add_argument("imported")
    p.add_argument("reference", help="prima-train's output of the same run")
    p.add_argument("--role", required=True, help="the component whose adapter `prima` was trained")
    p.add_argument("--heads", help="the prefix of the trained heads, e.g. image_classifier. (none: no head trained)")
    p.add_argument("--tensors", help="the prefix of the trained tensors of --role, e.g. mlm. (stage 1's head)")
    args = p.parse_args(argv)
    try:
        orig, imp, ref = (open_checkpoint(path) for path in (args.original, args.imported, args.reference))
    except CheckpointError as e:
        print(e, file=sys.stderr)
        return 2
    problems = []
    worst = [0.0, 1.0]

    def compare(path, value, expected):
        value, expected = value.astype(np.float64), expected.astype(np.float64)
        if value.shape != expected.shape:
            problems.append(f"{path}: shape {value.shape}, prima-train's {expected.shape}")
            return
        scale = float(np.abs(expected).max())
        relative = float(np.abs(value - expected).max()) / scale if scale else float(np.abs(value).max())
        norms = np.linalg.norm(value) * np.linalg.norm(expected)
        cosine = float((value * expected).sum() / norms) if norms else 1.0
        worst[0], worst[1] = max(worst[0], relative), min(worst[1], cosine)
        if relative > MAX_ABS_RELATIVE or cosine < COSINE:
            problems.append(f"{path}: max_abs/max|ref| {relative:.3g}, cosine {cosine:.8f} against prima-train's")

    for role in ("image_encoder", "text_encoder", "decoder"):
        a, b = orig[role], imp[role]
        if list(a.tensors) != list(b.tensors) or a.files != b.files:
            problems.append(f"{role}: other tensors or files than the original's")
            continue
        for n in a.tensors:
            if role == args.role and args.tensors and n.startswith(args.tensors):
                compare(f"{role}/tensors/{n}", b.read(n), ref[role].read(n))
            elif not np.array_equal(a.read(n), b.read(n)):
                problems.append(f"{role}/tensors/{n}: differs from the original")
        if role != args.role:  # the other components' adapters (earlier stages) come back unchanged
            mine, theirs = (getattr(c, "lora", {}) for c in (b, a))
            if sorted(mine) != sorted(theirs):
                problems.append(f"{role}: adapters {sorted(mine)}, the original's {sorted(theirs)}")
            for name in sorted(set(mine) & set(theirs)):
                x, y = mine[name].tensor_group.tensors, theirs[name].tensor_group.tensors
                if sorted(x) != sorted(y) or any(not np.array_equal(x[t].read(), y[t].read()) for t in x if t in y):
                    problems.append(f"{role}/lora/{name}: differs from the original")
    if orig.prima.files != imp.prima.files or list(orig.prima.tensors) != list(imp.prima.tensors):
        problems.append("prima: other heads or files than the original's")
    inputs = [c.prima.attrs.get("decoder_inputs", "image+metadata") for c in (imp, ref)]
    if inputs[0] != inputs[1]:  # what the decoder reads travels with the heads (Formats §8)
        problems.append(f"prima: decoder_inputs {inputs[0]!r}, prima-train's {inputs[1]!r}")
    for name in orig.prima.tensors:
        if args.heads and name.startswith(args.heads):
            compare(f"prima/tensors/{name}", imp.prima.read(name), ref.prima.read(name))
        elif name in imp.prima.tensors and not np.array_equal(orig.prima.read(name), imp.prima.read(name)):
            problems.append(f"prima/tensors/{name}: differs from the original")
    adapters = [getattr(c[args.role], "lora", {}).get("prima") for c in (imp, ref)]
    if None in adapters:
        problems.append(f"{args.role}: no adapter 'prima' in {'the import' if adapters[0] is None else 'the reference'}")
    else:
        mine, theirs = (a.tensor_group.tensors for a in adapters)
        if sorted(mine) != sorted(theirs):
            problems.append(f"{args.role}/lora/prima: other matrices than prima-train's")
        for name in sorted(set(mine) & set(theirs)):
            compare(f"{args.role}/lora/prima/tensors/{name}", mine[name].read(), theirs[name].read())
    for line in problems:
        print(line)
    if not problems:
        print(f"the rest of the checkpoint is the original's; the trained tensors agree with prima-train's: worst "
              f"max_abs/max|ref| {worst[0]:.2e}, cosine {worst[1]:.10f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
