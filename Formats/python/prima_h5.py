#!/usr/bin/env python3
"""Read and verify PRIMA checkpoints (``.h5``) with nothing but h5py and numpy.

A PRIMA checkpoint is one HDF5 file holding the components of a PRIMA model (``image_encoder``,
``text_encoder``, ``decoder``) and the optional ``prima`` heads group.  This module is an independent
reader written from the format specification alone -- ``Formats/prima-checkpoint.md``, version 2 -- and
follows it section by section (§ numbers in the comments refer to that document).  It accepts every
format_version up to 2 and refuses newer ones; version 2 adds the optional ``/training`` group of
``Formats/prima-training.md`` §4 (``ckpt.training``: its attributes, AdamW moments by gradient path and the
history curves).

Library use::

    from prima_h5 import open_checkpoint
    with open_checkpoint("model.h5") as ckpt:
        dec = ckpt["decoder"]
        dec.attrs["hf_architectures"]          # JSON attributes are decoded
        dec.config["hidden_size"]              # config/ attributes as a dict
        cfg = dec.files["config.json"]         # verbatim bytes
        w = dec.read("embed.tokens")           # logical dtype: bf16 -> float32 (exact)
        bits = dec.read("embed.tokens", raw=True)   # as stored: bf16 -> uint16 bit patterns
        dec.aliases                            # {"lm_head.weight": "embed.tokens"} (tied soft links)
        bad = ckpt.verify()                    # [] when every crc32 matches

Command line::

    python prima_h5.py CKPT [--verify] [--lenient]

prints the component tree (tensor name, dtype, shape; tied aliases as ``name -> target``).  With
``--verify`` every tensor's CRC-32 is recomputed over its stored bytes (and every ``files/`` entry is
checked against the size and SHA-256 recorded in ``source_files`` when that entry names it).
Exit status: 0 all good, 1 a checksum mismatch, 2 a malformed file (not HDF5, truncated, wrong
format or version, missing required attribute or group, dtype attribute not matching the HDF5 type,
chunked/filtered dataset, ...).  Every error is one line naming the file and the object.

``--lenient`` (``strict=False``) downgrades the absence of the component-level metadata of §3.1/§3.2
(attributes such as ``tensor_count``/``tied``, the ``config/`` group, ``files/config.json``) to warnings,
for inspecting minimal files such as test fixtures.  Type, dtype, layout, format and version rules are
always enforced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import h5py
import numpy as np
from h5py import h5d, h5t

FORMAT_NAME = "prima-checkpoint"
FORMAT_VERSION = 2  # newest version this reader implements (§11)
TRAINING_GROUP = "training"  # version 2: Formats/prima-training.md §4
TRAINING_VERSION = 1

# §3: component roles and their allowed architectures.
COMPONENT_ARCHITECTURES = {
    "image_encoder": ("dinov3_vit",),
    "text_encoder": ("modernbert", "bert"),
    "decoder": ("qwen3",),
}
PRIMA_GROUP = "prima"  # §8

# §3.1 attributes of a component group: name -> kind ("string" | "int" | "json").
COMPONENT_ATTRIBUTES = {
    "role": "string",
    "architecture": "string",
    "hf_model_type": "string",
    "hf_architectures": "json",
    "tensor_count": "int",
    "parameter_count": "int",
    "tied": "json",
    "dropped": "json",
    "source_files": "json",
    "source_directory": "string",
    "imported": "string",
}
# §8 attributes of /prima.
PRIMA_ATTRIBUTES = {
    "heads_trained": "int",
    "init_seed": "int",
    "initialised_tensors": "json",
    "d_align": "int",
    "d_image": "int",
    "d_text": "int",
    "d_llm": "int",
    "tensor_count": "int",
    "parameter_count": "int",
}
# §6 attributes of a LoRA adapter group.
LORA_ATTRIBUTES = {
    "rank": "int",
    "alpha": "float",
    "dropout": "float",
    "targets": "json",
    "merged": "int",
}
# Other attributes the spec declares as JSON; decoded wherever they appear.
JSON_ATTRIBUTES = {"hf_architectures", "tied", "dropped", "source_files", "targets", "quantization",
                   "initialised_tensors", "heads_file"}
# §3.3: config fields the spec declares as JSON lists.
CONFIG_JSON_FIELDS = {"layer_types"}
KNOWN_COMPONENT_CHILDREN = {"files", "config", "preprocessing", "tensors", "lora"}

# §5.2: dtype attribute -> (predefined HDF5 file type, numpy dtype of the stored data).
_F16LE = getattr(h5t, "IEEE_F16LE", None)
if _F16LE is None:  # older h5py: build it exactly as §5.2 describes
    _F16LE = h5t.IEEE_F32LE.copy()
    _F16LE.set_fields(15, 10, 5, 0, 10)
    _F16LE.set_size(2)
    _F16LE.set_ebias(15)
    _F16LE.set_precision(16)

STORAGE = {
    "f32": (h5t.IEEE_F32LE, np.dtype("<f4")),
    "f16": (_F16LE, np.dtype("<f2")),
    "bf16": (h5t.STD_U16LE, np.dtype("<u2")),
    "i8": (h5t.STD_I8LE, np.dtype("i1")),
    "f64": (h5t.IEEE_F64LE, np.dtype("<f8")),
    "i64": (h5t.STD_I64LE, np.dtype("<i8")),
    "i32": (h5t.STD_I32LE, np.dtype("<i4")),
    "i16": (h5t.STD_I16LE, np.dtype("<i2")),
    "u8": (h5t.STD_U8LE, np.dtype("u1")),
    "bool": (h5t.STD_U8LE, np.dtype("u1")),
}
# Logical numpy dtype returned by Tensor.read().
LOGICAL = {
    "f32": np.float32, "f16": np.float16, "bf16": np.float32, "i8": np.int8, "f64": np.float64,
    "i64": np.int64, "i32": np.int32, "i16": np.int16, "u8": np.uint8, "bool": np.bool_,
}

_CRC_SLAB_BYTES = 64 << 20  # read tensors in slabs of at most this size when checksumming


class CheckpointError(ValueError):
    """The file is not a valid PRIMA checkpoint (CLI exit 2). ``str()`` is one line: file: object: reason."""

    def __init__(self, path: str, obj: str, message: str):
        self.path, self.obj, self.reason = path, obj, message
        super().__init__(f"{path}: {obj}: {message}" if obj else f"{path}: {message}")


@dataclass
class Mismatch:
    """One integrity failure found by ``verify()`` (CLI exit 1)."""

    path: str
    obj: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.obj}: {self.message}"


# --------------------------------------------------------------------------------------------------
# attribute decoding helpers


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Decode bf16 bit patterns (uint16) to float32, exactly as §5.2 says."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"bf16 bit patterns must be uint16, got {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _is_string(v: Any) -> bool:
    return isinstance(v, (str, bytes, np.bytes_, np.str_))


def _as_str(v: Any) -> str:
    if isinstance(v, (bytes, np.bytes_)):  # fixed-length strings come back as bytes
        return bytes(v).rstrip(b"\x00").decode("utf-8")
    return str(v)


def _plain(v: Any) -> Any:
    """numpy attribute values -> plain Python values (arrays -> lists)."""
    if _is_string(v):
        return _as_str(v)
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SUO":
            return [_as_str(x) for x in v.ravel()]
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


# §3.3: the config/ fields of each architecture, derived from config.json with the defaults of the
# transformers configuration classes, as every reader must derive them to check config/ against the verbatim
# file. Kinds: int, float, bool (stored as int 0/1), str, json (a JSON list stored as text).
def _config_fields(arch: str, cfg: Dict[str, Any]) -> List[Tuple[str, str, Any]]:
    """[(key, kind, value)] in §3.3 order; raises ValueError naming the field when config.json cannot give it."""
    def get(key: str, kind: str, default: Any = None, source: Optional[Dict[str, Any]] = None) -> Any:
        obj = cfg if source is None else source
        v = obj.get(key)
        if v is None:
            if default is None:
                raise ValueError(f"required field {key} is missing")
            return default
        if kind == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
            raise ValueError(f"field {key} must be an integer")
        if kind == "float" and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
            raise ValueError(f"field {key} must be a number")
        if kind == "bool" and not isinstance(v, bool):
            raise ValueError(f"field {key} must be true or false")
        if kind == "str" and not isinstance(v, str):
            raise ValueError(f"field {key} must be a string")
        return float(v) if kind == "float" else v

    def obj(key: str) -> Optional[Dict[str, Any]]:
        v = cfg.get(key)
        if v is not None and not isinstance(v, dict):
            raise ValueError(f"field {key} must be an object")
        return v

    out: List[Tuple[str, str, Any]] = []
    def put(key: str, kind: str, value: Any) -> None:
        out.append((key, kind, value))

    if arch == "dinov3_vit":
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            put(key, "int", get(key, "int"))
        put("patch_size", "int", get("patch_size", "int", 16))
        put("num_channels", "int", get("num_channels", "int", 3))
        put("num_register_tokens", "int", get("num_register_tokens", "int", 0))
        put("hidden_act", "str", get("hidden_act", "str", "gelu"))
        put("use_gated_mlp", "bool", get("use_gated_mlp", "bool", False))
        put("layer_norm_eps", "float", get("layer_norm_eps", "float", 1e-5))
        theta = get("rope_theta", "float", 100.0)
        rope = obj("rope_parameters")
        if rope is not None and "rope_theta" in rope:
            theta = get("rope_theta", "float", None, rope)
        put("rope_theta", "float", theta)
        for key, default in (("query_bias", True), ("key_bias", False), ("value_bias", True), ("proj_bias", True),
                             ("mlp_bias", True)):
            put(key, "bool", get(key, "bool", default))
        put("image_size", "int", get("image_size", "int", 224))
    elif arch == "bert":
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            put(key, "int", get(key, "int"))
        put("hidden_act", "str", get("hidden_act", "str", "gelu"))
        put("layer_norm_eps", "float", get("layer_norm_eps", "float", 1e-12))
        put("max_position_embeddings", "int", get("max_position_embeddings", "int", 512))
        put("type_vocab_size", "int", get("type_vocab_size", "int", 2))
        put("pad_token_id", "int", get("pad_token_id", "int", 0))
        put("tie_word_embeddings", "bool", get("tie_word_embeddings", "bool", True))
    elif arch == "modernbert":
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            put(key, "int", get(key, "int"))
        layers = get("num_hidden_layers", "int")
        put("hidden_activation", "str", get("hidden_activation", "str", "gelu"))
        put("classifier_activation", "str", get("classifier_activation", "str", "gelu"))
        put("norm_eps", "float", get("norm_eps", "float", 1e-5))
        for key, default in (("norm_bias", False), ("attention_bias", False), ("mlp_bias", False),
                             ("decoder_bias", True), ("classifier_bias", False)):
            put(key, "bool", get(key, "bool", default))
        types = cfg.get("layer_types")
        if types is None:
            every = get("global_attn_every_n_layers", "int", 3)
            types = ["full_attention" if i % every == 0 else "sliding_attention" for i in range(layers)]
        elif not (isinstance(types, list) and len(types) == layers
                  and all(t in ("full_attention", "sliding_attention") for t in types)):
            raise ValueError("layer_types must list full_attention/sliding_attention for each layer")
        put("layer_types", "json", list(types))
        if cfg.get("sliding_window") is not None:
            put("sliding_window", "int", get("sliding_window", "int"))
        else:
            put("sliding_window", "int", get("local_attention", "int", 128) // 2)
        global_theta = get("global_rope_theta", "float", 160000.0)
        local_theta = get("local_rope_theta", "float", 10000.0)
        for key, params in (obj("rope_parameters") or {}).items():
            if not isinstance(params, dict):
                continue
            if key == "full_attention" and params.get("rope_theta") is not None:
                global_theta = get("rope_theta", "float", None, params)
            if key == "sliding_attention" and params.get("rope_theta") is not None:
                local_theta = get("rope_theta", "float", None, params)
        put("global_rope_theta", "float", global_theta)
        put("local_rope_theta", "float", local_theta)
        put("max_position_embeddings", "int", get("max_position_embeddings", "int", 8192))
        put("pad_token_id", "int", get("pad_token_id", "int", 50283))
        put("tie_word_embeddings", "bool", get("tie_word_embeddings", "bool", True))
    elif arch == "qwen3":
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            put(key, "int", get(key, "int"))
        heads = get("num_attention_heads", "int")
        put("num_key_value_heads", "int", get("num_key_value_heads", "int", heads))
        if cfg.get("head_dim") is not None:
            put("head_dim", "int", get("head_dim", "int"))
        else:
            put("head_dim", "int", get("hidden_size", "int") // heads)
        put("hidden_act", "str", get("hidden_act", "str", "silu"))
        put("rms_norm_eps", "float", get("rms_norm_eps", "float", 1e-6))
        theta = get("rope_theta", "float", 10000.0)
        for key in ("rope_parameters", "rope_scaling"):
            rope = obj(key)
            if rope is not None and rope.get("rope_theta") is not None:
                theta = get("rope_theta", "float", None, rope)
        put("rope_theta", "float", theta)
        put("max_position_embeddings", "int", get("max_position_embeddings", "int", 32768))
        put("attention_bias", "bool", get("attention_bias", "bool", False))
        put("tie_word_embeddings", "bool", get("tie_word_embeddings", "bool", False))
        put("use_sliding_window", "bool", get("use_sliding_window", "bool", False))
    else:
        raise ValueError(f"unknown architecture {arch}")
    return out


def _config_matches(kind: str, stored: Any, expected: Any) -> bool:
    """Whether a config/ attribute (already through _plain and JSON decoding) holds `expected` as §3.3 types it."""
    if kind == "bool":
        return isinstance(stored, int) and not isinstance(stored, bool) and stored in (0, 1) and bool(stored) == expected
    if kind == "int":
        return isinstance(stored, int) and not isinstance(stored, bool) and stored == expected
    if kind == "float":
        return isinstance(stored, float) and stored == expected
    if kind == "str":
        return isinstance(stored, str) and stored == expected
    return stored == expected  # json: the decoded list


class _Attrs:
    """Typed access to one object's attributes, raising CheckpointError with file and object."""

    def __init__(self, ckpt_path: str, obj: h5py.HLObject):
        self.path = ckpt_path
        self.obj = obj
        self.name = obj.name

    def err(self, msg: str) -> CheckpointError:
        return CheckpointError(self.path, self.name, msg)

    def has(self, key: str) -> bool:
        return key in self.obj.attrs

    def raw(self, key: str) -> Any:
        try:
            return self.obj.attrs[key]
        except KeyError:
            raise self.err(f"missing required attribute '{key}'") from None
        except Exception as e:  # unreadable attribute
            raise self.err(f"cannot read attribute '{key}': {e}") from None

    def string(self, key: str) -> str:
        v = self.raw(key)
        if not _is_string(v):
            raise self.err(f"attribute '{key}' must be a string, found {type(v).__name__} {v!r}")
        try:
            return _as_str(v)
        except UnicodeDecodeError:
            raise self.err(f"attribute '{key}' is not UTF-8") from None

    def integer(self, key: str) -> int:
        v = self.raw(key)
        if isinstance(v, np.ndarray) and v.shape == ():
            v = v[()]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise self.err(f"attribute '{key}' must be an integer, found {type(v).__name__} {v!r}")
        return int(v)

    def real(self, key: str) -> float:
        v = self.raw(key)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise self.err(f"attribute '{key}' must be a number, found {type(v).__name__} {v!r}")
        return float(v)

    def json(self, key: str) -> Any:
        s = self.string(key)
        try:
            return json.loads(s)
        except ValueError as e:
            raise self.err(f"attribute '{key}' is not valid JSON ({e})") from None

    def typed(self, key: str, kind: str) -> Any:
        return {"string": self.string, "int": self.integer, "float": self.real, "json": self.json}[kind](key)

    def all_decoded(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key in self.obj.attrs:
            if key in JSON_ATTRIBUTES:
                out[key] = self.json(key)
            else:
                out[key] = _plain(self.raw(key))
        return out


# --------------------------------------------------------------------------------------------------
# tensors


class Tensor:
    """One tensor dataset in a ``tensors/`` group (§5.1)."""

    def __init__(self, ckpt: "Checkpoint", ds: h5py.Dataset, name: str, strict: bool):
        self._ckpt = ckpt
        self._ds = ds
        self.name = name
        self.path = ds.name  # full HDF5 path
        a = _Attrs(ckpt.path, ds)
        self.dtype: str = a.string("dtype")
        if self.dtype not in STORAGE:
            raise a.err(f"unknown dtype attribute '{self.dtype}'")
        self.crc32: int = a.integer("crc32")
        if not 0 <= self.crc32 <= 0xFFFFFFFF:
            raise a.err(f"crc32 attribute {self.crc32} is not a 32-bit unsigned value")
        self.hf_name: Optional[str] = a.string("hf_name") if a.has("hf_name") else None
        # every attribute, decoded (quantisation attributes of §7 included)
        self.attrs: Dict[str, Any] = a.all_decoded()
        self._check_storage(a)
        space = ds.id.get_space()
        if space.get_simple_extent_type() == h5py.h5s.NULL:
            raise a.err("dataset has a null dataspace (a tensor needs a simple or scalar one)")
        self.shape: Tuple[int, ...] = tuple(int(d) for d in space.shape)  # () for a scalar dataspace
        self.size = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        self.storage_dtype: np.dtype = STORAGE[self.dtype][1]
        self.nbytes = self.size * self.storage_dtype.itemsize
        self.data_offset: Optional[int] = ds.id.get_offset()  # file offset of the data, None if unallocated

    def _check_storage(self, a: _Attrs) -> None:
        ds = self._ds
        want_type, _ = STORAGE[self.dtype]
        ftype = ds.id.get_type()
        if not ftype == want_type:  # H5Tequal: class, size, order, sign, bit fields, bias
            raise a.err(
                f"dtype attribute '{self.dtype}' does not match the HDF5 type of the data "
                f"({_describe_type(ftype)}); §5.2 requires {_describe_type(want_type)}")
        dcpl = ds.id.get_create_plist()
        if dcpl.get_layout() != h5d.CONTIGUOUS:
            layout = {h5d.CHUNKED: "chunked", h5d.COMPACT: "compact"}.get(dcpl.get_layout(), "non-contiguous")
            raise a.err(f"dataset layout is {layout}; §1 requires contiguous")
        if dcpl.get_nfilters() != 0:
            names = [dcpl.get_filter(i)[3].decode("ascii", "replace") for i in range(dcpl.get_nfilters())]
            raise a.err(f"dataset has filters {names}; §1 forbids filters")
        if dcpl.get_external_count() != 0:
            raise a.err("dataset uses external storage; §1 requires contiguous data in the file")

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.dtype}, {list(self.shape)})"

    def read_raw(self) -> np.ndarray:
        """The stored data exactly as in the file (bf16 -> uint16 patterns, bool -> uint8)."""
        out = np.empty(self.shape, dtype=self.storage_dtype)
        if self.size:
            try:
                self._ds.read_direct(out)
            except Exception as e:
                raise CheckpointError(self._ckpt.path, self.path, f"cannot read data: {e}") from None
        return out

    def read(self, raw: bool = False) -> np.ndarray:
        """The tensor in its logical dtype (bf16 decoded to float32 exactly, bool as numpy bool)."""
        a = self.read_raw()
        if raw:
            return a
        if self.dtype == "bf16":
            return bf16_to_float32(a)
        if self.dtype == "bool":
            if a.size and a.max() > 1:
                raise CheckpointError(self._ckpt.path, self.path, "bool tensor holds values other than 0/1")
            return a.astype(np.bool_)
        return a.astype(LOGICAL[self.dtype], copy=False)

    def compute_crc32(self) -> int:
        """zlib CRC-32 over the dataset's raw little-endian bytes in C order, read in slabs."""
        if self.size == 0:
            return zlib.crc32(b"")
        if not self.shape:
            return zlib.crc32(self.read_raw().tobytes())
        row_bytes = self.nbytes // self.shape[0] if self.shape[0] else 0
        step = max(1, _CRC_SLAB_BYTES // max(row_bytes, 1))
        crc = 0
        for start in range(0, self.shape[0], step):
            stop = min(start + step, self.shape[0])
            slab = np.empty((stop - start,) + self.shape[1:], dtype=self.storage_dtype)
            try:
                self._ds.read_direct(slab, np.s_[start:stop])
            except Exception as e:
                raise CheckpointError(self._ckpt.path, self.path, f"cannot read data: {e}") from None
            crc = zlib.crc32(memoryview(np.ascontiguousarray(slab)).cast("B"), crc)
        return crc & 0xFFFFFFFF

    def verify(self) -> Optional[Mismatch]:
        got = self.compute_crc32()
        if got != self.crc32:
            return Mismatch(self._ckpt.path, self.path,
                            f"crc32 mismatch: attribute 0x{self.crc32:08x}, data 0x{got:08x}")
        return None


def _describe_type(t: h5t.TypeID) -> str:
    cls = t.get_class()
    order = {h5t.ORDER_LE: "LE", h5t.ORDER_BE: "BE"}.get(t.get_order(), "?") if cls in (h5t.INTEGER, h5t.FLOAT) else ""
    if cls == h5t.FLOAT:
        sp, ep, es, mp, ms = t.get_fields()
        return (f"float{8 * t.get_size()}{order} (sign bit {sp}, exponent {ep}+{es} bias {t.get_ebias()}, "
                f"mantissa {mp}+{ms})")
    if cls == h5t.INTEGER:
        sign = "int" if t.get_sign() == h5t.SGN_2 else "uint"
        return f"{sign}{8 * t.get_size()}{order}"
    names = {h5t.STRING: "string", h5t.COMPOUND: "compound", h5t.ENUM: "enum", h5t.ARRAY: "array",
             h5t.OPAQUE: "opaque", h5t.VLEN: "vlen", h5t.REFERENCE: "reference", h5t.BITFIELD: "bitfield"}
    return names.get(cls, f"class {cls}")


class TensorGroup:
    """A ``tensors/`` group: datasets (creation order) plus soft-link aliases (§5.3)."""

    def __init__(self, ckpt: "Checkpoint", group: h5py.Group, strict: bool):
        self.path = group.name
        self.tensors: Dict[str, Tensor] = {}
        self.aliases: Dict[str, str] = {}  # alias name -> target tensor name
        for name in _names_in_creation_order(group):
            obj = f"{group.name}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                self.aliases[name] = self._link_target(ckpt, group, name, link.path)
            elif isinstance(link, h5py.HardLink):
                item = group.get(name)
                if not isinstance(item, h5py.Dataset):
                    raise CheckpointError(ckpt.path, obj, "tensors/ may hold only datasets and soft links")
                self.tensors[name] = Tensor(ckpt, item, name, strict)
            else:
                raise CheckpointError(ckpt.path, obj, f"unsupported link kind {type(link).__name__} in tensors/")
        for alias, target in self.aliases.items():
            if target not in self.tensors:
                raise CheckpointError(ckpt.path, f"{group.name}/{alias}",
                                      f"soft link target '{target}' is not a tensor dataset of {group.name}")
        # Two hard links to one dataset would be a tie that is neither stored once nor listed.
        seen: Dict[Any, str] = {}
        for name, t in self.tensors.items():
            try:
                addr = h5py.h5o.get_info(t._ds.id).addr
            except Exception:
                break
            if addr in seen:
                raise CheckpointError(ckpt.path, t.path,
                                      f"is a second hard link to '{seen[addr]}'; ties must be soft links (§5.3)")
            seen[addr] = name

    @staticmethod
    def _link_target(ckpt: "Checkpoint", group: h5py.Group, name: str, target: str) -> str:
        obj = f"{group.name}/{name}"
        if target.startswith("/"):
            prefix = group.name.rstrip("/") + "/"
            if not target.startswith(prefix):
                raise CheckpointError(ckpt.path, obj, f"soft link points outside {group.name}: {target}")
            target = target[len(prefix):]
        if not target or "/" in target:
            raise CheckpointError(ckpt.path, obj, f"soft link target '{target}' is not a tensor of {group.name}")
        return target

    def __contains__(self, name: str) -> bool:
        return name in self.tensors or name in self.aliases

    def get(self, name: str) -> Tensor:
        """The tensor called ``name``; an alias resolves to its target's dataset."""
        if name in self.aliases:
            name = self.aliases[name]
        return self.tensors[name]

    def parameter_count(self, floats_only: bool = False) -> int:
        """Elements of the stored datasets; of the float ones only for ``/prima`` (§8: its int64 token ids are
        configuration, not parameters)."""
        return sum(t.size for t in self.tensors.values() if not floats_only or t.dtype in ("f32", "f16", "bf16"))


def _names_in_creation_order(group: h5py.Group) -> List[str]:
    """Link names in creation order when the group tracks it (§1), else in name order."""
    try:
        if group.id.get_create_plist().get_link_creation_order() & h5py.h5p.CRT_ORDER_TRACKED:
            names: List[str] = []
            group.id.links.iterate(lambda n: names.append(n.decode("utf-8")) and None,
                                   idx_type=h5py.h5.INDEX_CRT_ORDER)
            return names
    except Exception:
        pass
    return list(group.keys())


# --------------------------------------------------------------------------------------------------
# components


class Component:
    """A component group (§3) or the ``/prima`` heads group (§8)."""

    def __init__(self, ckpt: "Checkpoint", group: h5py.Group, strict: bool):
        self._ckpt = ckpt
        self._group = group
        self.name = group.name.lstrip("/")
        self.is_prima = self.name == PRIMA_GROUP
        path = ckpt.path
        a = _Attrs(path, group)

        def need(ok: bool, obj: str, msg: str) -> None:
            """A §3 requirement: error when strict, warning when lenient."""
            if not ok:
                if strict:
                    raise CheckpointError(path, obj, msg)
                ckpt.warnings.append(f"{path}: {obj}: {msg}")

        # attributes (§3.1 / §8), decoded; required ones type-checked
        required = PRIMA_ATTRIBUTES if self.is_prima else COMPONENT_ATTRIBUTES
        missing = [key for key in required if not a.has(key)]
        for key, kind in required.items():
            if key not in missing:
                a.typed(key, kind)  # raises on a wrongly typed attribute
        need(not missing, group.name, f"missing required attribute{'s' * (len(missing) > 1)} "
                                      + ", ".join(f"'{k}'" for k in missing))
        self.attrs: Dict[str, Any] = a.all_decoded()

        if not self.is_prima:
            if "role" in self.attrs and self.attrs["role"] != self.name:
                raise a.err(f"attribute role='{self.attrs['role']}' differs from the group name")
            if "architecture" not in self.attrs:
                raise a.err("missing required attribute 'architecture'")  # needed to interpret anything
            if self.attrs["architecture"] not in COMPONENT_ARCHITECTURES[self.name]:
                raise a.err(f"architecture '{self.attrs['architecture']}' is not allowed for {self.name} "
                            f"(allowed: {', '.join(COMPONENT_ARCHITECTURES[self.name])})")
            self._check_json_shapes(a)

        for child in group:
            link = group.get(child, getlink=True)
            if not isinstance(link, h5py.HardLink) or not isinstance(group.get(child), h5py.Group):
                raise CheckpointError(path, f"{group.name}/{child}", "expected a group")
            known = {"files", "tensors"} if self.is_prima else KNOWN_COMPONENT_CHILDREN
            if child not in known:  # §3.2, §8: refused, not ignored
                raise CheckpointError(path, f"{group.name}/{child}", "not a child the format defines for this group")

        # tensors/ (§3.2, §5)
        if "tensors" not in group:
            raise CheckpointError(path, group.name, "missing required group 'tensors'")
        self.tensor_group = TensorGroup(ckpt, group["tensors"], strict)

        # tensor_count / parameter_count / tied must describe tensors/ (§3.1)
        if "tensor_count" in self.attrs and self.attrs["tensor_count"] != len(self.tensor_group.tensors):
            raise a.err(f"tensor_count={self.attrs['tensor_count']} but tensors/ holds "
                        f"{len(self.tensor_group.tensors)} datasets")
        counted = self.tensor_group.parameter_count(floats_only=self.is_prima)
        if "parameter_count" in self.attrs and self.attrs["parameter_count"] != counted:
            raise a.err(f"parameter_count={self.attrs['parameter_count']} but the datasets hold {counted} elements"
                        + (" in float tensors" if self.is_prima else ""))
        self.tied: List[Dict[str, Any]] = list(self.attrs.get("tied", []))
        listed = {t["name"]: t["target"] for t in self.tied}
        for alias, target in self.tensor_group.aliases.items():
            if alias not in listed:
                need(False, f"{group.name}/tensors/{alias}", "soft link is not listed in the 'tied' attribute")
            elif listed[alias] != target:
                raise CheckpointError(path, f"{group.name}/tensors/{alias}",
                                      f"soft link points at '{target}' but 'tied' says '{listed[alias]}'")
        for alias in listed:
            if alias not in self.tensor_group.aliases:
                raise CheckpointError(path, group.name, f"'tied' lists '{alias}' but tensors/ has no soft link of that name")

        # files/ (§3.2): verbatim 1-D uint8 datasets
        self.file_names: List[str] = []
        if "files" in group:
            fg = group["files"]
            for fname in _names_in_creation_order(fg):
                ds = fg.get(fname)
                obj = f"{fg.name}/{fname}"
                if not isinstance(ds, h5py.Dataset):
                    raise CheckpointError(path, obj, "files/ may hold only datasets")
                if ds.id.get_type() != h5t.STD_U8LE or len(ds.shape or ()) != 1:
                    raise CheckpointError(path, obj, f"a file must be a 1-D uint8 dataset, found "
                                                     f"{_describe_type(ds.id.get_type())} {ds.shape}")
                self.file_names.append(fname)
            if not self.is_prima:
                need("config.json" in self.file_names, f"{fg.name}", "missing required file 'config.json'")
        else:
            need(False, group.name, "missing required group 'files'")

        # config/ (§3.3)
        self.config: Dict[str, Any] = {}
        if "config" in group:
            ca = _Attrs(path, group["config"])
            for key in group["config"].attrs:
                v = _plain(ca.raw(key))
                if isinstance(v, str) and (key in CONFIG_JSON_FIELDS or v.startswith("[")):
                    try:
                        v = json.loads(v)  # "lists are JSON"
                    except ValueError:
                        if key in CONFIG_JSON_FIELDS:
                            raise ca.err(f"config field '{key}' is not valid JSON") from None
                self.config[key] = v
        elif not self.is_prima:  # §8: /prima's configuration is its own attributes
            need(False, group.name, "missing required group 'config'")
        if self.is_prima and "config" in group:
            raise CheckpointError(path, f"{group.name}/config", "/prima has no config/ group (§8)")
        self._check_config_against_file(group, need)

        # preprocessing/ (§3.4), image encoders only
        self.preprocessing: Optional[Dict[str, Any]] = None
        if "preprocessing" in group:
            self.preprocessing = _Attrs(path, group["preprocessing"]).all_decoded()
        elif self.name == "image_encoder":
            need(False, group.name, "missing required group 'preprocessing' (image encoders)")

        # lora/ (§6)
        self.lora: Dict[str, LoraAdapter] = {}
        if "lora" in group:
            for aname in _names_in_creation_order(group["lora"]):
                ag = group["lora"].get(aname)
                if not isinstance(ag, h5py.Group):
                    raise CheckpointError(path, f"{group.name}/lora/{aname}", "expected an adapter group")
                self.lora[aname] = LoraAdapter(ckpt, ag, strict)
            # §6: a merged adapter means the base weights include it; the component says so too
            if any(ad.attrs.get("merged") == 1 for ad in self.lora.values()):
                need(self.attrs.get("lora_merged") == 1, group.name,
                     "a LoRA adapter has merged=1 but the component lacks lora_merged=1")

    def _check_json_shapes(self, a: _Attrs) -> None:
        """The JSON attributes of §3.1 must have the documented structure."""
        spec = {"tied": ("name", "target", "hf_name"), "dropped": ("hf_name", "reason"),
                "source_files": ("name", "bytes", "sha256")}
        for key, fields in spec.items():
            if key not in self.attrs:
                continue
            v = self.attrs[key]
            if not isinstance(v, list) or not all(isinstance(x, dict) and all(k in x for k in fields) for x in v):
                raise a.err(f"attribute '{key}' must be a JSON list of {{{', '.join(fields)}}} objects")
        v = self.attrs.get("hf_architectures", [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise a.err("attribute 'hf_architectures' must be a JSON list of strings")

    def _check_config_against_file(self, group: h5py.Group, need) -> None:
        """§3.3: config/ must hold exactly the fields files/config.json gives, with the types §3.3 gives them."""
        if self.is_prima or "config" not in group or "config.json" not in self.file_names or not self.architecture:
            return
        where = f"{group.name}/config"
        raw = group["files"]["config.json"][()].tobytes()
        try:
            cfg = json.loads(raw.decode("utf-8"))
            if not isinstance(cfg, dict):
                raise ValueError("not a JSON object")
            fields = _config_fields(self.architecture, cfg)
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(self._ckpt.path, f"{group.name}/files/config.json", str(e)) from None
        known = set()
        for key, kind, expected in fields:
            known.add(key)
            if key not in self.config:
                need(False, where, f"config/{key} is missing (files/config.json gives {expected!r})")
            elif not _config_matches(kind, self.config[key], expected):
                raise CheckpointError(self._ckpt.path, where, f"config/{key} is {self.config[key]!r} but "
                                                              f"files/config.json gives {expected!r} ({kind})")
        for key in self.config:
            if key not in known:
                raise CheckpointError(self._ckpt.path, where, f"config/{key} is not a {self.architecture} field (§3.3)")

    # -- convenient access ------------------------------------------------------------------------

    @property
    def architecture(self) -> Optional[str]:
        return self.attrs.get("architecture")

    @property
    def tensors(self) -> Dict[str, Tensor]:
        """Stored tensors (datasets only, creation order). Aliases are in ``aliases``."""
        return self.tensor_group.tensors

    @property
    def aliases(self) -> Dict[str, str]:
        """Tied names (soft links) -> the stored tensor they alias."""
        return self.tensor_group.aliases

    @property
    def files(self) -> Dict[str, bytes]:
        """Every ``files/`` entry as bytes (read on access)."""
        return {n: self.file(n) for n in self.file_names}

    def file(self, name: str) -> bytes:
        return self._group["files"][name][()].tobytes()

    def tensor(self, name: str) -> Tensor:
        return self.tensor_group.get(name)

    def read(self, name: str, raw: bool = False) -> np.ndarray:
        """Read one tensor (aliases resolve) in its logical dtype, or as stored with ``raw=True``."""
        return self.tensor_group.get(name).read(raw=raw)

    def state_dict(self, raw: bool = False, include_aliases: bool = False) -> Dict[str, np.ndarray]:
        out = {n: t.read(raw=raw) for n, t in self.tensors.items()}
        if include_aliases:
            for alias, target in self.aliases.items():
                out[alias] = out[target]
        return out

    def dequantize(self, name: str) -> np.ndarray:
        """float32 ŵ = float32(q) * s for an int8 tensor (§7)."""
        t = self.tensor(name)
        if t.dtype != "i8":
            raise ValueError(f"{self._ckpt.path}: {t.path}: not an int8 tensor (dtype {t.dtype})")
        scheme = t.attrs.get("quant_scheme")
        scales_name = f"{t.name}.scales"
        if scheme not in ("int8-per-channel", "int8-block32") or scales_name not in self.tensors:
            raise ValueError(f"{self._ckpt.path}: {t.path}: no §7 quantisation attributes/scales")
        q = t.read().astype(np.float32)
        s = self.read(scales_name).astype(np.float32)
        if scheme == "int8-per-channel":
            return q * s.reshape(-1, 1)
        block = int(t.attrs.get("quant_block_size", 32))
        return q * np.repeat(s, block, axis=1)[:, : q.shape[1]]

    def verify(self) -> List[Mismatch]:
        bad = [m for t in self.tensors.values() if (m := t.verify()) is not None]
        for adapter in self.lora.values():
            bad += [m for t in adapter.tensors.values() if (m := t.verify()) is not None]
        # files/ against the sizes and SHA-256 recorded in source_files (§9), where recorded
        recorded = {os.path.basename(str(e.get("name", ""))): e for e in self.attrs.get("source_files", [])
                    if isinstance(e, dict)}
        for fname in self.file_names:
            e = recorded.get(fname)
            if e is None:
                continue
            data = self.file(fname)
            obj = f"/{self.name}/files/{fname}"
            if "bytes" in e and e["bytes"] != len(data):
                bad.append(Mismatch(self._ckpt.path, obj, f"size {len(data)} but source_files records {e['bytes']}"))
            elif "sha256" in e and str(e["sha256"]).lower() != hashlib.sha256(data).hexdigest():
                bad.append(Mismatch(self._ckpt.path, obj, "sha256 differs from the one recorded in source_files"))
        return bad


class LoraAdapter:
    """``/ROLE/lora/NAME`` (§6)."""

    def __init__(self, ckpt: "Checkpoint", group: h5py.Group, strict: bool):
        a = _Attrs(ckpt.path, group)
        self.name = group.name.rsplit("/", 1)[-1]
        for key, kind in LORA_ATTRIBUTES.items():
            a.typed(key, kind)
        self.attrs = a.all_decoded()
        if "tensors" not in group:
            raise CheckpointError(ckpt.path, group.name, "missing required group 'tensors'")
        self.tensor_group = TensorGroup(ckpt, group["tensors"], strict)

    @property
    def tensors(self) -> Dict[str, Tensor]:
        return self.tensor_group.tensors


# --------------------------------------------------------------------------------------------------
# the file


class Checkpoint:
    """An open PRIMA checkpoint. Use as a context manager or call ``close()``."""

    def __init__(self, path: str, strict: bool = True):
        self.path = path
        self.strict = strict
        self.warnings: List[str] = []
        if not os.path.exists(path):
            raise CheckpointError(path, "", "no such file")
        try:
            if not h5py.is_hdf5(path):
                raise CheckpointError(path, "", "not an HDF5 file")
            self.file = h5py.File(path, "r")
        except CheckpointError:
            raise
        except Exception as e:  # truncated, unreadable, locked ...
            raise CheckpointError(path, "", f"cannot open as HDF5 ({_one_line(e)})") from None
        try:
            self._validate()
        except Exception:
            self.file.close()
            raise

    def _validate(self) -> None:
        root = _Attrs(self.path, self.file)
        if not root.has("format"):
            raise root.err("missing required attribute 'format': not a PRIMA checkpoint")
        fmt = root.string("format")
        if fmt != FORMAT_NAME:
            raise root.err(f"format is '{fmt}', not '{FORMAT_NAME}'")
        if not root.has("format_version"):
            raise root.err("missing required attribute 'format_version'")
        version = root.integer("format_version")
        if version < 1:
            raise root.err(f"format_version {version} is not a valid version")
        if version > FORMAT_VERSION:
            raise root.err(f"format_version {version} was written by a newer toolkit "
                           f"(this reader knows versions up to {FORMAT_VERSION})")
        self.format_version = version
        self.tool = root.string("tool")
        self.created = root.string("created")
        self.attrs: Dict[str, Any] = root.all_decoded()

        self.components: Dict[str, Component] = {}
        self.prima: Optional[Component] = None
        for name in _names_in_creation_order(self.file):
            link = self.file.get(name, getlink=True)
            obj = self.file.get(name) if isinstance(link, h5py.HardLink) else None
            if name == TRAINING_GROUP and version >= 2:
                if not isinstance(obj, h5py.Group):
                    raise CheckpointError(self.path, f"/{name}", "expected a group")
                continue  # read after the components, whose tensors it refers to
            if name not in COMPONENT_ARCHITECTURES and name != PRIMA_GROUP:
                raise CheckpointError(self.path, f"/{name}", f"unknown child of / (not allowed in version {version})")
            if not isinstance(obj, h5py.Group):
                raise CheckpointError(self.path, f"/{name}", "expected a group")
            if name == PRIMA_GROUP:
                self.prima = Component(self, obj, self.strict)
            else:
                self.components[name] = Component(self, obj, self.strict)
        if not self.components:
            raise root.err("the file holds no component group (§2 requires at least one)")
        self.training: Optional[Dict[str, Any]] = None
        if TRAINING_GROUP in self.file and version >= 2:
            self.training = self._read_training(self.file[TRAINING_GROUP])

    def trainable_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Every tensor a run could train, by gradient path (Formats/prima-trace.md §11.6): stored tensors
        (aliases excluded) of every group and every matrix of every adapter."""
        out: Dict[str, Tuple[int, ...]] = {}
        for c in self.groups():
            for n, t in c.tensors.items():
                out[f"{c.name}/tensors/{n}"] = t.shape
            for aname, ad in getattr(c, "lora", {}).items():
                for n, t in ad.tensor_group.tensors.items():
                    out[f"{c.name}/lora/{aname}/tensors/{n}"] = t.shape
        return out

    def _read_training(self, group: "h5py.Group") -> Dict[str, Any]:
        """Formats/prima-training.md §4: attributes, optimizer/ moments (checked against the trainable tensors),
        history/ curves (lengths checked against step and the finished epochs)."""
        where = group.name

        def fail(what: str) -> CheckpointError:
            return CheckpointError(self.path, where, what)

        attrs = _Attrs(self.path, group)
        out: Dict[str, Any] = {}
        for key in ("training_version", "step", "total_steps", "epoch", "cursor", "seed", "threads"):
            if not attrs.has(key):
                raise fail(f"missing attribute {key}")
            out[key] = attrs.integer(key)
        if out["training_version"] < 1 or out["training_version"] > TRAINING_VERSION:
            raise fail(f"training_version {out['training_version']} is not supported")
        for key in ("stage", "status", "tool"):
            if not attrs.has(key):
                raise fail(f"missing attribute {key}")
            out[key] = attrs.string(key)
        if out["stage"] not in ("stage1", "stage2", "stage2b", "stage3"):
            raise fail(f"stage {out['stage']!r} is not stage1, stage2, stage2b or stage3")
        if out["status"] not in ("running", "complete"):
            raise fail(f"status {out['status']!r} is not running or complete")
        if not (1 <= out["total_steps"] and 0 <= out["step"] <= out["total_steps"]):
            raise fail("step must lie in 0..total_steps and total_steps be at least 1")
        if out["seed"] < 0 or out["threads"] < 1 or out["epoch"] < 0 or out["cursor"] < 0:
            raise fail("seed, epoch and cursor must be >= 0 and threads >= 1")
        for key, kind in (("hyperparameters", dict), ("data", dict), ("split", dict), ("best", dict), ("stages", list)):
            if not attrs.has(key):
                raise fail(f"missing attribute {key}")
            try:
                value = json.loads(attrs.string(key))
            except ValueError:
                raise fail(f"attribute {key} is not JSON") from None
            if not isinstance(value, kind):
                raise fail(f"attribute {key} is not a JSON {'object' if kind is dict else 'array'}")
            out[key] = value
        out["class_weights"] = None
        if attrs.has("class_weights"):  # §4.1: float64 list of K float32 values, stages 2b and 3 only
            if out["stage"] not in ("stage2b", "stage3"):
                raise fail(f"attribute class_weights belongs to stage2b or stage3, not {out['stage']}")
            raw = attrs.raw("class_weights")
            weights = np.asarray(raw)
            shapes = self.trainable_shapes()
            classes = shapes.get("prima/tensors/task.class_token_ids", (None,))[0]
            if weights.dtype != np.dtype("<f8") or weights.ndim != 1:
                raise fail("attribute class_weights is not a float64 list")
            if classes is None or weights.shape[0] != classes:
                raise fail(f"attribute class_weights has {weights.shape[0]} values for {classes or 'no'} classes")
            if (not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0)
                    or not np.array_equal(weights.astype(np.float32).astype(np.float64), weights)):
                raise fail("attribute class_weights must hold float32 values, each finite and >= 0, one at least positive")
            out["class_weights"] = weights.astype(np.float32)
        if set(group.keys()) != {"optimizer", "history"}:
            raise fail(f"children must be exactly optimizer and history, found {sorted(group.keys())}")
        opt = group["optimizer"]
        if "step" not in opt.attrs or set(opt.keys()) != {"exp_avg", "exp_avg_sq"}:
            raise fail("optimizer needs attribute step and exactly the groups exp_avg and exp_avg_sq")
        out["optimizer_step"] = int(opt.attrs["step"])
        shapes = self.trainable_shapes()
        moments: Dict[str, Dict[str, np.ndarray]] = {}
        for kind in ("exp_avg", "exp_avg_sq"):
            found: Dict[str, np.ndarray] = {}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    found[name] = obj

            opt[kind].visititems(visit)
            for path, ds in found.items():
                if path not in shapes:
                    raise fail(f"optimizer/{kind}/{path} names no trainable tensor of the checkpoint")
                if tuple(ds.shape) != tuple(shapes[path]) or ds.dtype != np.dtype("<f4"):
                    raise fail(f"optimizer/{kind}/{path} must be float32 of shape {tuple(shapes[path])}")
                moments.setdefault(path, {})[kind] = ds[()]
        if any(len(v) != 2 for v in moments.values()):
            raise fail("optimizer: exp_avg and exp_avg_sq hold different tensors")
        out["moments"] = moments
        hist = group["history"]
        expected = {"loss": "<f4", "lr": "<f8", "grad_norm": "<f4", "train_loss": "<f4", "val_loss": "<f4",
                    "val_macro_f1": "<f4", "val_accuracy": "<f4", "val_balanced_accuracy": "<f4"}
        if set(hist.keys()) != set(expected):
            raise fail(f"history must hold exactly {sorted(expected)}")
        epochs = hist["train_loss"].shape[0] if hist["train_loss"].ndim == 1 else -1
        curves = {}
        for name, dtype in expected.items():
            ds = hist[name]
            length = out["step"] if name in ("loss", "lr", "grad_norm") else epochs
            if ds.dtype != np.dtype(dtype) or ds.shape != (length,):
                raise fail(f"history/{name} must be {np.dtype(dtype).name} of shape ({length},)")
            curves[name] = ds[()]
        out["history"] = curves
        return out

    # -- access -----------------------------------------------------------------------------------

    def __getitem__(self, role: str) -> Component:
        if role == PRIMA_GROUP and self.prima is not None:
            return self.prima
        return self.components[role]

    def __contains__(self, role: str) -> bool:
        return role in self.components or (role == PRIMA_GROUP and self.prima is not None)

    def groups(self) -> Iterator[Component]:
        """Every component, then /prima if present."""
        yield from self.components.values()
        if self.prima is not None:
            yield self.prima

    def verify(self) -> List[Mismatch]:
        """Recompute every CRC-32 (and the recorded file hashes). Returns the mismatches."""
        out: List[Mismatch] = []
        for c in self.groups():
            out += c.verify()
        return out

    def alignment_warnings(self) -> List[str]:
        """§1: tensors of 4096 bytes or more should start at a multiple of 64 bytes (not a refusal rule)."""
        out = []
        for c in self.groups():
            for t in c.tensors.values():
                if t.nbytes >= 4096 and t.data_offset is not None and t.data_offset % 64:
                    out.append(f"{self.path}: {t.path}: data at offset {t.data_offset} is not 64-byte aligned")
        return out

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_checkpoint(path: str, strict: bool = True) -> Checkpoint:
    """Open and validate a PRIMA checkpoint; raises CheckpointError (a ValueError) naming the file.

    Validation covers the root attributes (format name, integer format_version ≤ 2), the allowed
    root children, every component's attributes and groups, and every tensor's dtype attribute
    against its HDF5 type and layout.  Tensor data is only read on demand (``read``, ``verify``).
    """
    return Checkpoint(os.fspath(path), strict=strict)


# --------------------------------------------------------------------------------------------------
# command line


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _fmt_shape(shape: Tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def print_tree(ckpt: Checkpoint, out=sys.stdout) -> None:
    print(f"{ckpt.path}: {FORMAT_NAME} v{ckpt.format_version}, {ckpt.tool}, created {ckpt.created}", file=out)
    if ckpt.training is not None:
        t = ckpt.training
        print(f"/training  {t['stage']} {t['status']}, step {t['step']} of {t['total_steps']}, epoch {t['epoch']}, "
              f"{len(t['moments'])} trainable tensors"
              + (f", class weights {[float(w) for w in t['class_weights']]}" if t["class_weights"] is not None else ""), file=out)
    for c in ckpt.groups():
        head = f"/{c.name}"
        if c.architecture:
            head += f"  ({c.architecture}"
            if c.attrs.get("hf_model_type") and c.attrs["hf_model_type"] != c.architecture:
                head += f", hf {c.attrs['hf_model_type']}"
            head += ")"
        print(f"{head}  {len(c.tensors)} tensor{'s' * (len(c.tensors) != 1)}, {c.tensor_group.parameter_count():,} parameters", file=out)
        if c.file_names:
            print("  files: " + ", ".join(f"{n} ({len(c._group['files'][n]):,} B)" for n in c.file_names), file=out)
        if c.config:
            print(f"  config: {len(c.config)} fields", file=out)
        if c.preprocessing is not None:
            print(f"  preprocessing: {len(c.preprocessing)} fields", file=out)
        width = max([len(n) for n in list(c.tensors) + list(c.aliases)] + [4])
        for t in c.tensors.values():
            extra = f"  {t.attrs['quant_scheme']}" if "quant_scheme" in t.attrs else ""
            print(f"  {t.name:<{width}}  {t.dtype:<4}  {_fmt_shape(t.shape)}{extra}", file=out)
        for alias, target in c.aliases.items():
            t = c.tensors[target]
            print(f"  {alias:<{width}}  {t.dtype:<4}  {_fmt_shape(t.shape)}  -> {target} (tied)", file=out)
        for a in c.lora.values():
            print(f"  lora/{a.name}: rank {a.attrs.get('rank')}, alpha {a.attrs.get('alpha')}, "
                  f"{len(a.tensors)} tensors, merged {a.attrs.get('merged')}", file=out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="List and verify a PRIMA checkpoint (Formats/prima-checkpoint.md v2).")
    ap.add_argument("checkpoint", help="path to the .h5 checkpoint")
    ap.add_argument("--verify", action="store_true", help="recompute every tensor's crc32 (exit 1 on a mismatch)")
    ap.add_argument("--lenient", action="store_true",
                    help="warn instead of failing when component metadata (§3.1 attributes, config/, "
                         "files/config.json, tied listing) is missing")
    args = ap.parse_args(argv)
    try:
        with open_checkpoint(args.checkpoint, strict=not args.lenient) as ckpt:
            for w in ckpt.warnings:
                print(f"warning: {w}", file=sys.stderr)
            print_tree(ckpt)
            if not args.verify:
                return 0
            for w in ckpt.alignment_warnings():
                print(f"warning: {w}", file=sys.stderr)
            bad = ckpt.verify()
            for m in bad:
                print(str(m), file=sys.stderr)
            n = sum(len(c.tensors) + sum(len(a.tensors) for a in c.lora.values()) for c in ckpt.groups())
            if bad:
                print(f"{ckpt.path}: {len(bad)} checksum mismatch(es)", file=sys.stderr)
                return 1
            print(f"verified: {n} tensors, all crc32 ok")
            return 0
    except CheckpointError as e:
        print(_one_line(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
