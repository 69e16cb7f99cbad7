#!/usr/bin/env python3
"""Check that an exported Hugging Face directory is bit-identical to the one it was imported from.

    python compare_hf_dirs.py ORIGINAL_DIR EXPORTED_DIR [--tensors-only]

Used to test the round trip safetensors -> PRIMA checkpoint (Formats/prima-checkpoint.md) -> safetensors.
Three comparisons:

1. transformers: both directories are loaded with the Auto class that matches config.json's
   ``architectures`` (``*ForMaskedLM`` -> AutoModelForMaskedLM, ``*ForCausalLM`` -> AutoModelForCausalLM,
   anything else -> AutoModel), in the checkpoint's own dtype (``dtype="auto"``, no upcast), on CPU.
   The exported one must load with no missing, unexpected or mismatched keys.  Every state_dict entry
   must have the same dtype and shape and be bit-identical (``torch.equal`` on the bit patterns, so NaNs
   and -0.0 compare exactly).  The tie structure (which entries share storage) must be the same.
2. safetensors: the raw tensor sets of the two directories (``model.safetensors``, or the shards named by
   ``model.safetensors.index.json``) are read with ``safetensors.safe_open`` and must have the same names,
   dtypes, shapes and bytes.  The sharding itself may differ.
3. files (skipped with ``--tensors-only``): the auxiliary files that the checkpoint stores verbatim
   (config.json, tokenizer files, ...; §3.2 of the format) must be byte-identical where the original has them.

Exit status: 0 and ``identical: N tensors ...`` when everything matches; 1 with one line per difference
otherwise; 2 when the inputs cannot be used (missing directory, original not loadable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

# §3.2 of Formats/prima-checkpoint.md: the auxiliary files a checkpoint carries and export writes back.
AUX_FILES = [
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "preprocessor_config.json",
]
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class UsageError(Exception):
    pass


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --------------------------------------------------------------------------------------------------
# transformers


def auto_class_for(model_dir: str):
    import transformers

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    archs = config.get("architectures") or []
    arch = archs[0] if archs else ""
    if arch.endswith("ForMaskedLM"):
        return transformers.AutoModelForMaskedLM, arch
    if arch.endswith("ForCausalLM"):
        return transformers.AutoModelForCausalLM, arch
    return transformers.AutoModel, arch


def load(model_dir: str):
    import torch

    cls, arch = auto_class_for(model_dir)
    torch.manual_seed(0)  # anything left uninitialised is at least initialised the same way in both
    model, info = cls.from_pretrained(model_dir, dtype="auto", output_loading_info=True, local_files_only=True)
    model.eval()
    return model, info, cls.__name__, arch


_BITS = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def _bits(t):
    import torch

    if t.dtype == torch.bool or not (t.is_floating_point() or t.is_complex()):
        return t
    width = t.element_size()
    if width not in _BITS:
        return t.contiguous().view(torch.uint8)
    return t.view(getattr(torch, _BITS[width]))


def bit_equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def tie_groups(state: Dict[str, "torch.Tensor"]) -> List[Tuple[str, ...]]:
    """Groups of state_dict names that share the same storage (tied parameters)."""
    groups: Dict[Tuple[int, int, Tuple[int, ...]], List[str]] = {}
    for name, t in state.items():
        if t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr() + t.storage_offset() * t.element_size(), t.element_size(), tuple(t.shape))
        groups.setdefault(key, []).append(name)
    return sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)


def compare_models(original: str, exported: str, diffs: List[str], notes: List[str]) -> int:
    try:
        m_a, info_a, cls_a, arch_a = load(original)
    except Exception as e:
        raise UsageError(f"{original}: cannot load the original with transformers: {_one_line(e)}")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info_a.get(key):
            notes.append(f"original {key.replace('_', ' ')}: {', '.join(sorted(map(str, info_a[key])))}")
    try:
        m_b, info_b, cls_b, arch_b = load(exported)
    except Exception as e:
        diffs.append(f"exported: cannot load with transformers: {_one_line(e)}")
        return 0
    if arch_a != arch_b:
        diffs.append(f"config architectures: original {arch_a or '(none)'}, exported {arch_b or '(none)'}")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        for k in sorted(map(str, info_b.get(key) or ())):
            diffs.append(f"exported {key[:-1].replace('_', ' ')} ({cls_b}): {k}")
    for msg in info_b.get("error_msgs") or ():
        diffs.append(f"exported load error: {_one_line(Exception(msg))}")

    sa, sb = m_a.state_dict(), m_b.state_dict()
    for name in sa:
        if name not in sb:
            diffs.append(f"state_dict {name}: only in original")
    for name in sb:
        if name not in sa:
            diffs.append(f"state_dict {name}: only in exported")
    for name, a in sa.items():
        b = sb.get(name)
        if b is None:
            continue
        if a.dtype != b.dtype:
            diffs.append(f"state_dict {name}: dtype {a.dtype} vs {b.dtype}")
        elif tuple(a.shape) != tuple(b.shape):
            diffs.append(f"state_dict {name}: shape {list(a.shape)} vs {list(b.shape)}")
        elif not bit_equal(a, b):
            n = int((_bits(a) != _bits(b)).sum())
            diffs.append(f"state_dict {name}: values differ ({n} of {a.numel()} elements)")
    ta, tb = tie_groups(sa), tie_groups(sb)
    if ta != tb:
        diffs.append(f"tied parameters: original {ta or 'none'}, exported {tb or 'none'}")
    return len(sa)


# --------------------------------------------------------------------------------------------------
# raw safetensors


def safetensors_files(model_dir: str) -> Tuple[List[str], Optional[Dict[str, str]]]:
    """The weight files of a directory (shards in index order) and the index's weight_map, if sharded."""
    index_path = os.path.join(model_dir, INDEX_NAME)
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        shards = list(dict.fromkeys(weight_map.values()))
        return [os.path.join(model_dir, s) for s in shards], weight_map
    single = os.path.join(model_dir, SINGLE_NAME)
    if os.path.exists(single):
        return [single], None
    found = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    return [os.path.join(model_dir, n) for n in found], None


class RawTensors:
    """name -> (file, dtype, shape) over every safetensors file of a directory."""

    def __init__(self, model_dir: str, label: str, diffs: List[str]):
        self.entries: Dict[str, Tuple[str, str, Tuple[int, ...]]] = {}
        self.metadata: Dict[str, Optional[Dict[str, str]]] = {}
        files, weight_map = safetensors_files(model_dir)
        if not files:
            raise UsageError(f"{model_dir}: no safetensors files")
        from safetensors import safe_open

        for path in files:
            if not os.path.exists(path):
                diffs.append(f"{label}: shard {os.path.basename(path)} named by the index is missing")
                continue
            with safe_open(path, framework="pt") as f:
                self.metadata[os.path.basename(path)] = f.metadata()
                for name in f.keys():
                    sl = f.get_slice(name)
                    if name in self.entries:
                        diffs.append(f"{label}: tensor {name} is in both {os.path.basename(self.entries[name][0])} "
                                     f"and {os.path.basename(path)}")
                    self.entries[name] = (path, sl.get_dtype(), tuple(sl.get_shape()))
                    if weight_map is not None and weight_map.get(name) != os.path.basename(path):
                        diffs.append(f"{label}: tensor {name} is in {os.path.basename(path)} but the index says "
                                     f"{weight_map.get(name)}")
        if weight_map is not None:
            for name in weight_map:
                if name not in self.entries and os.path.exists(os.path.join(model_dir, weight_map[name])):
                    diffs.append(f"{label}: tensor {name} is in the index but in no shard")

    def read_bytes(self, name: str):
        import torch
        from safetensors import safe_open

        path = self.entries[name][0]
        with safe_open(path, framework="pt") as f:
            t = f.get_tensor(name)
        return t.contiguous().view(torch.uint8).reshape(-1) if t.numel() else torch.empty(0, dtype=torch.uint8)


def compare_raw(original: str, exported: str, diffs: List[str], notes: List[str]) -> int:
    import torch

    ra = RawTensors(original, "original", diffs)
    rb = RawTensors(exported, "exported", diffs)
    for name in ra.entries:
        if name not in rb.entries:
            diffs.append(f"safetensors {name}: only in original")
    for name in rb.entries:
        if name not in ra.entries:
            diffs.append(f"safetensors {name}: only in exported")
    for name, (_, dt_a, sh_a) in ra.entries.items():
        if name not in rb.entries:
            continue
        _, dt_b, sh_b = rb.entries[name]
        if dt_a != dt_b:
            diffs.append(f"safetensors {name}: dtype {dt_a} vs {dt_b}")
        elif sh_a != sh_b:
            diffs.append(f"safetensors {name}: shape {list(sh_a)} vs {list(sh_b)}")
        else:
            ba, bb = ra.read_bytes(name), rb.read_bytes(name)
            if not torch.equal(ba, bb):
                n = int((ba != bb).sum())
                diffs.append(f"safetensors {name}: bytes differ ({n} of {ba.numel()} bytes)")
    meta_a = {m and json.dumps(m, sort_keys=True) for m in ra.metadata.values()}
    meta_b = {m and json.dumps(m, sort_keys=True) for m in rb.metadata.values()}
    if meta_a != meta_b:
        notes.append(f"safetensors __metadata__ differs: original {sorted(map(str, meta_a))}, "
                     f"exported {sorted(map(str, meta_b))}")
    return len(ra.entries)


# --------------------------------------------------------------------------------------------------
# auxiliary files


def compare_files(original: str, exported: str, diffs: List[str]) -> int:
    n = 0
    for name in AUX_FILES:
        pa, pb = os.path.join(original, name), os.path.join(exported, name)
        if not os.path.exists(pa):
            if os.path.exists(pb):
                diffs.append(f"file {name}: only in exported")
            continue
        if not os.path.exists(pb):
            diffs.append(f"file {name}: missing from exported")
            continue
        with open(pa, "rb") as fa, open(pb, "rb") as fb:
            if fa.read() != fb.read():
                diffs.append(f"file {name}: contents differ")
                continue
        n += 1
    return n


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Compare an exported Hugging Face directory with its original, bit for bit.")
    ap.add_argument("original", help="the directory that was imported")
    ap.add_argument("exported", help="the directory written by export")
    ap.add_argument("--tensors-only", action="store_true", help="do not compare the auxiliary files (config, tokenizer, ...)")
    args = ap.parse_args(argv)

    for d in (args.original, args.exported):
        if not os.path.isdir(d):
            print(f"{d}: not a directory", file=sys.stderr)
            return 2
        if not os.path.exists(os.path.join(d, "config.json")):
            print(f"{d}: no config.json", file=sys.stderr)
            return 2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    diffs: List[str] = []
    notes: List[str] = []
    try:
        n_state = compare_models(args.original, args.exported, diffs, notes)
        n_raw = compare_raw(args.original, args.exported, diffs, notes)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    n_files = 0 if args.tensors_only else compare_files(args.original, args.exported, diffs)

    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if diffs:
        for d in diffs:
            print(d)
        return 1
    files = "" if args.tensors_only else f", {n_files} files"
    print(f"identical: {n_raw} tensors ({n_state} state_dict entries{files})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
