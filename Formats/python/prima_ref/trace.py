#!/usr/bin/env python3
"""Write PRIMA reference traces (``Formats/prima-trace.md``, version 1) from Hugging Face transformers.

A trace holds the inputs and the named activations of one component (image encoder, text encoder or
decoder) computed by transformers in float32 with eager attention. This module:

* loads a Hugging Face model directory of one of the four supported architectures
  (``config.json`` ``model_type`` = ``dinov3_vit`` | ``modernbert`` | ``bert`` | ``qwen3``) with
  ``attn_implementation="eager"`` and ``dtype=torch.float32`` (f16/bf16 checkpoints are upcast; the
  trace describes the float32 computation on the upcast weights), in eval mode, as the *base* model:
  ``AutoModel`` -> ``DINOv3ViTModel`` / ``ModernBertModel`` / ``BertModel``; for ``qwen3``
  ``AutoModelForCausalLM`` -> ``Qwen3ForCausalLM``, whose ``.model`` is the ``Qwen3Model`` that
  ``AutoModel`` would build and whose ``lm_head`` (tied or not, as the checkpoint says) gives ``logits``;
* captures the activations with forward hooks on the modules listed in ``HOOK_POINTS`` (not with
  ``output_hidden_states``: in transformers 5.x ModernBERT's and Qwen3's ``hidden_states[-1]`` is the
  output of the final norm, so the raw output of their last block is not in ``hidden_states`` at all,
  and DINOv3's ``hidden_states`` stop before its final norm);
* writes the HDF5 file deterministically (no timestamps, creation order tracked, temp file + rename).

Command line (run from ``Formats/python``, or put that directory on ``PYTHONPATH``)::

    python -m prima_ref.trace MODEL_DIR -o OUT.h5 [--text "..." ...] [--image-size H W] [--batch B]
                              [--seed S] [--threads N]

Text models: the texts (``--text``, repeatable; default ``DEFAULT_TEXTS``; with ``--batch B`` the list is
cycled to B entries) are encoded with the directory's own tokenizer (``AutoTokenizer``, i.e. its
``tokenizer.json``), special tokens added as the tokenizer's post-processor says, right-padded with
its pad token to the longest text. Image models: ``pixel_values`` are seeded standard-normal noise,
``torch.randn((B, C, H, W), generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)``
(default seed 0, B 2, H = W = ``config.image_size``); H and W must be multiples of ``patch_size``. No
image decoding or preprocessing happens here: the trace starts at ``pixel_values``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import h5py
import numpy as np

TRACE_VERSION = 1  # what write_trace writes: forward-only traces stay version 1
# The newest version read_trace reads: 2 adds gradient traces (Formats/prima-trace.md §11, prima_ref.grad).
READ_TRACE_VERSION = 2
INPUTS_GROUP = "inputs"
ACTIVATIONS_GROUP = "activations"

# "prima": the whole pipeline of one case (encoders, heads, decoder), Formats/prima-trace.md §10.
COMPONENTS = ("image_encoder", "text_encoder", "decoder", "prima")

COMPONENT_OF_MODEL_TYPE = {
    "dinov3_vit": "image_encoder",
    "modernbert": "text_encoder",
    "bert": "text_encoder",
    "qwen3": "decoder",
}
# The class of the traced base model, as AutoModel builds it.
BASE_CLASS_OF_MODEL_TYPE = {
    "dinov3_vit": "DINOv3ViTModel",
    "modernbert": "ModernBertModel",
    "bert": "BertModel",
    "qwen3": "Qwen3Model",
}

# Inputs used when the caller gives none: a short and a longer clinical sentence. With the fixture
# tokenizers they are 14 and 20 tokens ([CLS] ... [SEP]) for ModernBERT/BERT and 12 and 18 for Qwen3,
# so the first one is right-padded and both are longer than the fixtures' ModernBERT local window (9 keys).
DEFAULT_TEXTS = (
    "The lesion is elevated and bleeds.",
    "Family history of skin cancer; the lesion has grown and bleeds.",
)
DEFAULT_IMAGE_SEED = 0
DEFAULT_BATCH = 2

# HDF5 library-version bounds of the written files (the same as the PRIMA checkpoint format's).
LIBVER = ("v108", "v110")
PRODUCER = "prima_ref.trace"


# ---------------------------------------------------------------------------------------------------------------------
# Hook points
# ---------------------------------------------------------------------------------------------------------------------
def hook_points(model_type: str, num_layers: int, has_pooler: bool = False) -> List[Tuple[str, str]]:
    """(activation name, dotted module path) in forward order; the module's forward output is captured.

    Module paths are relative to the loaded top-level model: the base model for dinov3_vit / modernbert /
    bert, the ``Qwen3ForCausalLM`` for qwen3 (so its base-model modules start with ``model.``).
    """
    if model_type == "dinov3_vit":
        # DINOv3ViTModel: embeddings -> model (DINOv3ViTEncoder).layer[i] -> norm
        pts = [("embeddings", "embeddings")]
        pts += [(f"layers.{i}", f"model.layer.{i}") for i in range(num_layers)]
        pts += [("final_norm", "norm")]
    elif model_type == "modernbert":
        # ModernBertModel: embeddings (tok_embeddings -> norm -> drop) -> layers[i] -> final_norm
        pts = [("embeddings", "embeddings")]
        pts += [(f"layers.{i}", f"layers.{i}") for i in range(num_layers)]
        pts += [("final_norm", "final_norm")]
    elif model_type == "bert":
        # BertModel: embeddings (word + token_type + position -> LayerNorm -> dropout) -> encoder.layer[i];
        # the blocks end in their own LayerNorm, so final_norm IS the last block's output.
        pts = [("embeddings", "embeddings")]
        pts += [(f"layers.{i}", f"encoder.layer.{i}") for i in range(num_layers)]
        pts += [("final_norm", f"encoder.layer.{num_layers - 1}")]
        if has_pooler:
            pts += [("pooler", "pooler")]
    elif model_type == "qwen3":
        # Qwen3ForCausalLM: model.embed_tokens -> model.layers[i] -> model.norm -> lm_head
        pts = [("embeddings", "model.embed_tokens")]
        pts += [(f"layers.{i}", f"model.layers.{i}") for i in range(num_layers)]
        pts += [("final_norm", "model.norm"), ("logits", "lm_head")]
    else:
        raise ValueError(f"unsupported model_type {model_type!r} (expected one of {sorted(COMPONENT_OF_MODEL_TYPE)})")
    return pts


def _checkpoint_tensor_names(model_dir: Path) -> List[str]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted(json.loads(index.read_text())["weight_map"])
    single = model_dir / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="np") as f:
            return sorted(f.keys())
    raise FileNotFoundError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")


# ---------------------------------------------------------------------------------------------------------------------
# The reference model
# ---------------------------------------------------------------------------------------------------------------------
class ReferenceModel:
    """One Hugging Face model directory loaded for tracing (float32, eager attention, eval mode)."""

    def __init__(self, model_dir: os.PathLike | str):
        import torch
        from transformers import AutoModel, AutoModelForCausalLM

        self.model_dir = Path(model_dir)
        self.config_json = json.loads((self.model_dir / "config.json").read_text())
        self.model_type = self.config_json.get("model_type")
        if self.model_type not in COMPONENT_OF_MODEL_TYPE:
            raise ValueError(
                f"{self.model_dir}: model_type {self.model_type!r} is not one of {sorted(COMPONENT_OF_MODEL_TYPE)}"
            )
        self.component = COMPONENT_OF_MODEL_TYPE[self.model_type]
        self.checkpoint_dtype = str(self.config_json.get("dtype", self.config_json.get("torch_dtype", "unknown")))
        tensor_names = _checkpoint_tensor_names(self.model_dir)

        kwargs: Dict[str, Any] = dict(attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
        self.has_pooler = False
        if self.model_type == "bert":
            # BertModel gets a pooler only when the checkpoint has one; otherwise AutoModel would add a randomly
            # initialised pooler (MLM checkpoints such as Clinical ModernBERT have none).
            self.has_pooler = any(n in ("pooler.dense.weight", "bert.pooler.dense.weight") for n in tensor_names)
            kwargs["add_pooling_layer"] = self.has_pooler
        auto = AutoModelForCausalLM if self.model_type == "qwen3" else AutoModel
        top, info = auto.from_pretrained(str(self.model_dir), **kwargs)
        problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "mismatched_keys", "error_msgs") and v}
        if problems:
            raise RuntimeError(f"{self.model_dir}: the checkpoint does not fill the model: {problems}")
        top.eval()
        self.top = top
        self.base = top.model if self.model_type == "qwen3" else top
        if type(self.base).__name__ != BASE_CLASS_OF_MODEL_TYPE[self.model_type]:
            raise RuntimeError(
                f"{self.model_dir}: loaded {type(self.base).__name__}, expected {BASE_CLASS_OF_MODEL_TYPE[self.model_type]}"
            )
        if self.model_type == "qwen3" and type(top).__name__ != "Qwen3ForCausalLM":
            raise RuntimeError(f"{self.model_dir}: loaded {type(top).__name__}, expected Qwen3ForCausalLM")
        attn = getattr(top.config, "_attn_implementation", None)
        if attn != "eager":
            raise RuntimeError(f"{self.model_dir}: attention implementation is {attn!r}, not 'eager'")
        for name, p in top.named_parameters():
            if p.dtype != torch.float32:
                raise RuntimeError(f"{self.model_dir}: parameter {name} is {p.dtype}, not float32")
        self.config = top.config
        self.num_layers = int(self.config.num_hidden_layers)
        self.hf_class = type(self.base).__name__
        self.points = hook_points(self.model_type, self.num_layers, self.has_pooler)
        self.tied_lm_head = None
        if self.model_type == "qwen3":
            self.tied_lm_head = top.lm_head.weight.data_ptr() == top.model.embed_tokens.weight.data_ptr()

    @property
    def source(self) -> str:
        return self.model_dir.resolve().name

    @property
    def activation_names(self) -> List[str]:
        return [n for n, _ in self.points]

    def run(self, inputs: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        """Forward pass on validated inputs; returns the activations in forward order as float32 arrays."""
        import torch

        inputs = validate_inputs(self.component, inputs)
        by_module: "OrderedDict[str, List[str]]" = OrderedDict()
        for name, path in self.points:
            by_module.setdefault(path, []).append(name)
        captured: List[Tuple[str, "torch.Tensor"]] = []

        def make_hook(names):
            def hook(_module, _args, output):
                t = output if torch.is_tensor(output) else output[0]
                for n in names:
                    captured.append((n, t.detach().clone()))

            return hook

        handles = [self.top.get_submodule(path).register_forward_hook(make_hook(names)) for path, names in by_module.items()]
        try:
            with torch.inference_mode():
                if self.component == "image_encoder":
                    out = self.top(pixel_values=torch.from_numpy(inputs["pixel_values"]))
                else:
                    kw = dict(
                        input_ids=torch.from_numpy(inputs["input_ids"]),
                        attention_mask=torch.from_numpy(inputs["attention_mask"]),
                    )
                    if self.model_type == "qwen3":
                        kw["use_cache"] = False
                    out = self.top(**kw)
        finally:
            for h in handles:
                h.remove()

        got = [n for n, _ in captured]
        if got != self.activation_names:
            raise RuntimeError(f"hooks fired as {got}, expected {self.activation_names}")
        acts = OrderedDict((n, t) for n, t in captured)
        # The hooked tensors must be exactly what the model returns.
        if self.model_type == "qwen3":
            if not torch.equal(out.logits, acts["logits"]):
                raise RuntimeError("lm_head hook differs from the returned logits")
        else:
            if not torch.equal(out.last_hidden_state, acts["final_norm"]):
                raise RuntimeError("final_norm hook differs from the returned last_hidden_state")
            if "pooler" in acts and not torch.equal(out.pooler_output, acts["pooler"]):
                raise RuntimeError("pooler hook differs from the returned pooler_output")
        result: "OrderedDict[str, np.ndarray]" = OrderedDict()
        for n, t in acts.items():
            if t.dtype != torch.float32:
                raise RuntimeError(f"activation {n} is {t.dtype}, not float32")
            a = np.ascontiguousarray(t.numpy(), dtype="<f4")
            if not np.isfinite(a).all():
                raise RuntimeError(f"activation {n} has non-finite values")
            result[n] = a
        return result

    def module_path(self, name: str) -> str:
        return dict(self.points)[name]


# ---------------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------------
def validate_inputs(component: str, inputs: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """Check and normalise the inputs of a component (numpy arrays or torch tensors accepted)."""

    def as_np(x):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    if component == "image_encoder":
        if set(inputs) != {"pixel_values"}:
            raise ValueError(f"image_encoder inputs must be exactly {{'pixel_values'}}, got {sorted(inputs)}")
        pv = as_np(inputs["pixel_values"])
        if pv.dtype != np.float32 or pv.ndim != 4 or pv.shape[0] < 1:
            raise ValueError(f"pixel_values must be float32 (B, C, H, W), got {pv.dtype} {pv.shape}")
        if not np.isfinite(pv).all():
            raise ValueError("pixel_values has non-finite values")
        out["pixel_values"] = np.ascontiguousarray(pv, dtype="<f4")
        return out
    if "input_ids" not in inputs or not set(inputs) <= {"input_ids", "attention_mask"}:
        raise ValueError(f"{component} inputs must be input_ids and attention_mask, got {sorted(inputs)}")
    ids = as_np(inputs["input_ids"])
    mask = as_np(inputs["attention_mask"]) if "attention_mask" in inputs else np.ones_like(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer) or ids.shape[0] < 1 or ids.shape[1] < 1:
        raise ValueError(f"input_ids must be an integer (B, T) array, got {ids.dtype} {ids.shape}")
    if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
        raise ValueError("attention_mask must have the shape of input_ids and hold only 0 and 1")
    for b, row in enumerate(mask):
        n = int(row.sum())
        if n < 1 or not (row[:n] == 1).all():
            raise ValueError(f"attention_mask row {b} is not right-padded (1...1 0...0 with at least one 1)")
    out["input_ids"] = np.ascontiguousarray(ids, dtype="<i8")
    out["attention_mask"] = np.ascontiguousarray(mask, dtype="<i8")
    return out


def text_inputs(model_dir: os.PathLike | str, texts: Sequence[str]) -> "OrderedDict[str, np.ndarray]":
    """Encode texts with the directory's tokenizer: special tokens added, right padding to the longest."""
    from transformers import AutoTokenizer

    texts = list(texts)
    if not texts:
        raise ValueError("no texts")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "right"
    if tok.pad_token is None:
        raise ValueError(f"{model_dir}: the tokenizer has no pad token; cannot right-pad a batch")
    enc = tok(
        texts,
        padding="longest",
        truncation=False,
        return_attention_mask=True,
        return_token_type_ids=False,
        return_tensors="np",
    )
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    max_pos = cfg.get("max_position_embeddings")
    if max_pos is not None and enc["input_ids"].shape[1] > max_pos:
        raise ValueError(f"{enc['input_ids'].shape[1]} tokens exceed max_position_embeddings {max_pos}")
    out = OrderedDict(
        input_ids=np.ascontiguousarray(enc["input_ids"], dtype="<i8"),
        attention_mask=np.ascontiguousarray(enc["attention_mask"], dtype="<i8"),
    )
    return validate_inputs("text_encoder", out)


def image_inputs(
    model_dir: os.PathLike | str,
    batch: int = DEFAULT_BATCH,
    height: Optional[int] = None,
    width: Optional[int] = None,
    seed: int = DEFAULT_IMAGE_SEED,
) -> "OrderedDict[str, np.ndarray]":
    """Seeded N(0, 1) pixel_values: torch.randn((B, C, H, W), generator=Generator('cpu').manual_seed(seed))."""
    import torch

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    patch = int(cfg["patch_size"])
    size = int(cfg.get("image_size", 224))
    channels = int(cfg.get("num_channels", 3))
    height = size if height is None else int(height)
    width = size if width is None else int(width)
    if batch < 1 or height < patch or width < patch or height % patch or width % patch:
        raise ValueError(f"need batch >= 1 and H, W positive multiples of patch_size {patch}, got {batch}x{height}x{width}")
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    pv = torch.randn((batch, channels, height, width), generator=g, dtype=torch.float32)
    return OrderedDict(pixel_values=np.ascontiguousarray(pv.numpy(), dtype="<f4"))


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------
def write_trace(
    model_dir: os.PathLike | str,
    out_path: os.PathLike | str,
    inputs: Mapping[str, Any],
    *,
    model: Optional[ReferenceModel] = None,
    input_recipe: Optional[Mapping[str, Any]] = None,
) -> "Trace":
    """Run MODEL_DIR on INPUTS and write the trace to OUT_PATH; returns the written trace.

    ``inputs``: ``{"pixel_values": (B, 3, H, W) float32}`` for dinov3_vit, or
    ``{"input_ids": (B, T) int, "attention_mask": (B, T) 0/1}`` (right-padded) for the text models.
    ``model``: an already loaded ReferenceModel of the same directory (to avoid reloading).
    ``input_recipe``: optional JSON-able description of how the inputs were made (root attribute).
    """
    import torch
    import transformers

    ref = model if model is not None else ReferenceModel(model_dir)
    if Path(model_dir).resolve() != ref.model_dir.resolve():
        raise ValueError(f"model was loaded from {ref.model_dir}, not {model_dir}")
    inputs = validate_inputs(ref.component, inputs)
    acts = ref.run(inputs)

    attrs: "OrderedDict[str, Any]" = OrderedDict()
    attrs["prima_trace_version"] = np.int64(TRACE_VERSION)
    attrs["component"] = ref.component
    attrs["source"] = ref.source
    attrs["torch_version"] = str(torch.__version__)
    attrs["transformers_version"] = str(transformers.__version__)
    attrs["attn_implementation"] = "eager"
    attrs["dtype"] = "float32"
    attrs["model_type"] = ref.model_type
    attrs["hf_class"] = ref.hf_class
    attrs["checkpoint_dtype"] = ref.checkpoint_dtype
    attrs["producer"] = PRODUCER
    if input_recipe is not None:
        attrs["input_recipe"] = json.dumps(input_recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    origins = {n: ref.module_path(n) for n in acts}
    _write_h5(Path(out_path), attrs, inputs, acts, origins)
    return Trace(attrs=dict(attrs), inputs=inputs, activations=acts, origins=origins)


def _write_named(parent, group_name: str, arrays, origins) -> None:
    """A group of float32 datasets in the given order, each with its `order` and `hf_module` (§4.2-§4.3)."""
    g = parent.create_group(group_name, track_order=True, track_times=False)
    for i, (name, arr) in enumerate(arrays.items()):
        d = g.create_dataset(name, data=np.ascontiguousarray(arr, dtype="<f4"), track_times=False, track_order=True)
        d.attrs["order"] = np.int64(i)
        d.attrs["hf_module"] = origins[name]


def _write_h5(path: Path, attrs, inputs, acts, origins, extra=None) -> None:
    """Writes a trace through a temporary beside `path`, renamed into place when complete: root attributes,
    /inputs, /activations, then whatever `extra(file)` adds (the gradient parts of §11)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", libver=LIBVER, track_order=True, track_times=False) as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            gi = f.create_group(INPUTS_GROUP, track_order=True, track_times=False)
            for name, arr in inputs.items():
                gi.create_dataset(name, data=arr, track_times=False)
            _write_named(f, ACTIVATIONS_GROUP, acts, origins)
            if extra is not None:
                extra(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------------------------------------
# Reading and comparing
# ---------------------------------------------------------------------------------------------------------------------
REQUIRED_ROOT_ATTRS = (
    "prima_trace_version",
    "component",
    "source",
    "torch_version",
    "transformers_version",
    "attn_implementation",
    "dtype",
)


@dataclass
class Trace:
    attrs: Dict[str, Any]
    inputs: "OrderedDict[str, np.ndarray]"
    activations: "OrderedDict[str, np.ndarray]"  # in `order`
    origins: Dict[str, str] = field(default_factory=dict)
    # Gradient traces (version 2, §11) only; None / empty for version 1.
    loss: Optional[float] = None
    activation_gradients: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)  # in `order`
    gradients: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)  # checkpoint path -> gradient
    gradient_hf_names: Dict[str, str] = field(default_factory=dict)
    loss_terms: "OrderedDict[str, float]" = field(default_factory=OrderedDict)  # alignment (§11.11) only

    @property
    def objective(self) -> Optional[str]:
        """The objective of a gradient trace, None for a forward-only (version 1) trace."""
        v = self.attrs.get("objective")
        return None if v is None else str(v)

    @property
    def component(self) -> str:
        return str(self.attrs["component"])

    @property
    def mask(self) -> Optional[np.ndarray]:
        """(B, T) boolean mask of the positions that are compared; None for images (everything is)."""
        m = self.inputs.get("attention_mask")
        return None if m is None else m.astype(bool)


def _attr(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_trace(path: os.PathLike | str) -> Trace:
    """Read and validate a trace written by any conforming writer (Python or Swift)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        for k in REQUIRED_ROOT_ATTRS:
            if k not in attrs:
                raise ValueError(f"{path}: missing root attribute {k!r}")
        version = attrs["prima_trace_version"]
        if not isinstance(version, int) or version < 1 or version > READ_TRACE_VERSION:
            raise ValueError(
                f"{path}: prima_trace_version {version!r} not supported (this reader knows 1..{READ_TRACE_VERSION})"
            )
        component = attrs["component"]
        if component not in COMPONENTS:
            raise ValueError(f"{path}: unknown component {component!r}")
        if version >= 2:
            from .grad import read_gradient_parts

            return read_gradient_parts(path, f, attrs)
        if set(f.keys()) != {INPUTS_GROUP, ACTIVATIONS_GROUP} or any(
            f.get(g, getclass=True) is not h5py.Group for g in (INPUTS_GROUP, ACTIVATIONS_GROUP)
        ):
            raise ValueError(f"{path}: / must hold exactly the groups {INPUTS_GROUP} and {ACTIVATIONS_GROUP}, has {sorted(f)}")
        for g in (INPUTS_GROUP, ACTIVATIONS_GROUP):
            for k in f[g]:
                if f[g].get(k, getclass=True) is not h5py.Dataset:
                    raise ValueError(f"{path}: /{g}/{k} is not a dataset")
        raw_inputs = OrderedDict((k, f[INPUTS_GROUP][k][()]) for k in f[INPUTS_GROUP])
        if component == "prima":
            expected = set(PRIMA_INPUTS)
        else:
            expected = {"pixel_values"} if component == "image_encoder" else {"input_ids", "attention_mask"}
        if set(raw_inputs) != expected:
            raise ValueError(f"{path}: /{INPUTS_GROUP} holds {sorted(raw_inputs)}, expected {sorted(expected)}")
        for k in raw_inputs:
            want = np.float32 if k == "pixel_values" else np.int64
            if raw_inputs[k].dtype != want:
                raise ValueError(f"{path}: /{INPUTS_GROUP}/{k} is {raw_inputs[k].dtype}, expected {np.dtype(want)}")
        inputs = validate_prima_inputs(raw_inputs) if component == "prima" else validate_inputs(component, raw_inputs)
        acts, origins = read_ordered_group(path, f[ACTIVATIONS_GROUP], "activation")
    check_activation_names(path, component, list(acts), decoder_inputs_of(path, attrs))
    return Trace(attrs=attrs, inputs=inputs, activations=acts, origins=origins)


def read_ordered_group(path, group, what: str) -> Tuple["OrderedDict[str, np.ndarray]", Dict[str, str]]:
    """The float32 datasets of an /activations-like group sorted by their `order` attribute (0..n-1), and their
    `hf_module` attributes."""
    entries = []
    origins = {}
    for name in group:
        d = group[name]
        if d.dtype != np.float32:
            raise ValueError(f"{path}: {what} {name} is {d.dtype}, expected float32")
        if "order" not in d.attrs:
            raise ValueError(f"{path}: {what} {name} has no 'order' attribute")
        entries.append((int(d.attrs["order"]), name, d[()]))
        if "hf_module" in d.attrs:
            origins[name] = _attr(d.attrs["hf_module"])
    entries.sort()
    orders = [o for o, _, _ in entries]
    if orders != list(range(len(entries))):
        raise ValueError(f"{path}: the 'order' attributes of {group.name} are {orders}, not 0..{len(entries) - 1}")
    acts = OrderedDict((n, a) for _, n, a in entries)
    for n in acts:
        if not NAME_RE.fullmatch(n):
            raise ValueError(f"{path}: {what} name {n!r} does not match {NAME_RE.pattern}")
    return acts, origins


DECODER_INPUTS = ("image+metadata", "image")


def decoder_inputs_of(path, attrs: Mapping[str, Any]) -> str:
    """A prima trace's root attribute decoder_inputs (§10.1; absent: "image+metadata"), checked."""
    value = attrs.get("decoder_inputs", DECODER_INPUTS[0])
    if value not in DECODER_INPUTS:
        raise ValueError(f"{path}: root attribute decoder_inputs is {value!r}, not one of {list(DECODER_INPUTS)}")
    return value


def check_activation_names(path, component: str, names: List[str], decoder_inputs: str = "image+metadata") -> None:
    """The required activations of §4 (§10 for component prima) are present and in their relative order."""
    if component == "prima":
        _check_prima_names(path, names, decoder_inputs)
        return
    missing = [n for n in required_names(names) if n not in names]
    if missing:
        raise ValueError(f"{path}: missing required activations {missing}")
    layer_order = [n for n in names if LAYER_RE.fullmatch(n)]
    if layer_order != sorted(layer_order, key=lambda n: int(n.split(".")[1])):
        raise ValueError(f"{path}: layers.N are not in increasing N order: {layer_order}")
    if names[0] != "embeddings" or names.index("final_norm") < names.index(layer_order[-1]):
        raise ValueError(f"{path}: order must start with embeddings and have final_norm after the last layer: {names}")


def _check_prima_names(path, names: List[str], decoder_inputs: str = "image+metadata") -> None:
    """A prima trace holds every name of prima_expected_names, in that relative order (Formats/prima-trace.md §10);
    an image-only one (decoder_inputs "image") holds none of the text activations."""
    expected = prima_expected_names(names, decoder_inputs)
    if decoder_inputs == "image":
        extra = [n for n in names if n.startswith(PRIMA_TEXT_PREFIXES)]
        if extra:
            raise ValueError(f"{path}: an image-only trace (decoder_inputs \"image\") has text activations {extra}")
    missing = [n for n in expected if n not in names]
    if missing:
        raise ValueError(f"{path}: missing required activations {missing}")
    present = [n for n in names if n in expected]
    if present != expected:
        raise ValueError(f"{path}: activations are not in the order of Formats/prima-trace.md §10: {present}")


NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
LAYER_RE = re.compile(r"layers\.(0|[1-9][0-9]*)")


def required_names(names: Iterable[str]) -> List[str]:
    """embeddings, layers.0 .. layers.L-1 (L = 1 + the largest N present, at least 1), final_norm."""
    ns = [int(LAYER_RE.fullmatch(n).group(1)) for n in names if LAYER_RE.fullmatch(n)]
    count = max(ns) + 1 if ns else 1
    return ["embeddings"] + [f"layers.{i}" for i in range(count)] + ["final_norm"]


def masked_max_abs_diff(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """max |a - b| over the compared positions (float64 arithmetic).

    With a (B, T) mask, an array whose first two axes are (B, T) is compared only where mask is true; an
    array without a token axis (e.g. ``pooler``, (B, C)) and image activations are compared everywhere.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape} != {b.shape}")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if mask is not None and a.ndim >= 3 and a.shape[:2] == mask.shape:
        a, b = a[mask], b[mask]
    if a.size == 0:
        return 0.0
    d = np.abs(a - b)
    if np.isnan(d).any():
        return math.inf
    return float(d.max())


def compare_traces(reference: os.PathLike | str | Trace, other: os.PathLike | str | Trace) -> "OrderedDict[str, float]":
    """Max abs difference per activation, over real positions only, in the reference's order.

    Both traces must be of the same component with bit-identical inputs, and the required activations
    (embeddings, layers.0 .. layers.L-1, final_norm) of both must be the same set. Optional activations
    (logits, pooler, ...) are compared when both traces have them and skipped otherwise. Shapes must agree.
    """
    ref = reference if isinstance(reference, Trace) else read_trace(reference)
    oth = other if isinstance(other, Trace) else read_trace(other)
    if ref.component != oth.component:
        raise ValueError(f"components differ: {ref.component} vs {oth.component}")
    for k, v in ref.inputs.items():
        if k in ("output_weights", "labels") and k not in oth.inputs:
            continue  # a gradient trace's objective input (§11.2): the forward passes compare without it
        if k not in oth.inputs or oth.inputs[k].shape != v.shape or not np.array_equal(oth.inputs[k], v):
            raise ValueError(f"input {k} differs between the traces")
    if ref.component == "prima":
            modes = decoder_inputs_of("reference", ref.attrs), decoder_inputs_of("other", oth.attrs)
            if modes[0] != modes[1]:
                raise ValueError(f"decoder_inputs differ: {modes[0]} vs {modes[1]}")
            required = lambda names: prima_expected_names(names, modes[0])  # noqa: E731
    else:
        required = required_names
    if required(list(ref.activations)) != required(list(oth.activations)):
        raise ValueError(
            f"required activations differ: {required(list(ref.activations))} vs {required(list(oth.activations))}"
        )
    out: "OrderedDict[str, float]" = OrderedDict()
    for name, a in ref.activations.items():
        if name in oth.activations:
            # In a prima trace only the text encoder's activations have the text's (B, T) token axes.
            # (alignment.text_local of §11.11 too, where it spans every position; the shape check decides.)
            masked = ref.component != "prima" or name.startswith(("text_encoder.", "alignment.text_local"))
            out[name] = masked_max_abs_diff(a, oth.activations[name], ref.mask if masked else None)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Validation of prima inputs and activation names (the prima trace of Formats/prima-trace.md §10)
# ---------------------------------------------------------------------------------------------------------------------
PRIMA_INPUTS = ("pixel_values", "input_ids", "attention_mask", "prompt_ids", "answer_prefix_ids", "class_token_ids")
PRIMA_HEAD_ACTIVATIONS = (
    "alignment.image_global", "alignment.text_global", "alignment.image_local", "alignment.text_local",
    "image_classifier.logits", "fusion.image_cls", "fusion.image_seq", "fusion.text_cls", "fusion.text_seq",
)


def validate_prima_inputs(inputs: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """The six inputs of a prima trace, checked (batch 1) and in their canonical order and dtypes."""
    if set(inputs) != set(PRIMA_INPUTS):
        raise ValueError(f"prima inputs must be exactly {list(PRIMA_INPUTS)}, got {sorted(inputs)}")
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    out.update(validate_inputs("image_encoder", {"pixel_values": inputs["pixel_values"]}))
    out.update(validate_inputs("text_encoder", {k: inputs[k] for k in ("input_ids", "attention_mask")}))
    if out["pixel_values"].shape[0] != 1 or out["input_ids"].shape[0] != 1:
        raise ValueError("a prima trace is one case: batch 1")
    for k in ("prompt_ids", "answer_prefix_ids"):
        a = np.asarray(inputs[k])
        if a.ndim != 2 or a.shape[0] != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise ValueError(f"{k} must be an integer (1, n) array, got {a.dtype} {a.shape}")
        out[k] = np.ascontiguousarray(a, dtype="<i8")
    c = np.asarray(inputs["class_token_ids"])
    if c.ndim != 1 or c.shape[0] < 1 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"class_token_ids must be an integer (K,) array, K >= 1, got {c.dtype} {c.shape}")
    if len(set(c.tolist())) != len(c):
        raise ValueError(f"class_token_ids {c.tolist()} are not distinct")
    out["class_token_ids"] = np.ascontiguousarray(c, dtype="<i8")
    return out


# The activations of the metadata path, absent from an image-only prima trace (decoder_inputs "image").
PRIMA_TEXT_PREFIXES = ("text_encoder.", "alignment.text_", "fusion.text_")


def prima_expected_names(names: Sequence[str], decoder_inputs: str = "image+metadata") -> List[str]:
    """The activation names a prima trace must hold, in order, given the names present (which fix each part's
    layer count: 1 + the largest N of its layers.N, at least 1) and whether the text encoder has a pooler. With
    decoder_inputs "image" the text encoder, alignment.text_* and fusion.text_* are left out (Formats/prima-trace.md
    §10.1)."""
    import re

    out: List[str] = []
    for part in ("image_encoder",) + (("text_encoder",) if decoder_inputs != "image" else ()):
        rx = re.compile(rf"{part}\.layers\.(0|[1-9][0-9]*)")
        ns = [int(m.group(1)) for m in map(rx.fullmatch, names) if m]
        out += [f"{part}.embeddings"] + [f"{part}.layers.{i}" for i in range(max(ns) + 1 if ns else 1)]
        out += [f"{part}.final_norm"]
        if part == "text_encoder" and "text_encoder.pooler" in names:
            out.append("text_encoder.pooler")
    out += [n for n in PRIMA_HEAD_ACTIVATIONS if decoder_inputs != "image" or not n.startswith(PRIMA_TEXT_PREFIXES)]
    rx = re.compile(r"decoder\.layers\.(0|[1-9][0-9]*)")
    ns = [int(m.group(1)) for m in map(rx.fullmatch, names) if m]
    out += ["decoder.embeddings"] + [f"decoder.layers.{i}" for i in range(max(ns) + 1 if ns else 1)]
    out += ["decoder.final_norm", "class_logits", "class_probs"]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def _cycle(items: Sequence[str], n: int) -> List[str]:
    return [items[i % len(items)] for i in range(n)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m prima_ref.trace",
        description="Write a PRIMA reference trace (Formats/prima-trace.md) of a Hugging Face model directory.",
    )
    p.add_argument("model_dir", help="Hugging Face model directory (dinov3_vit, modernbert, bert or qwen3)")
    p.add_argument("-o", "--output", required=True, help="trace file to write (.h5)")
    p.add_argument("--text", action="append", help="text to encode (repeatable; text models only)")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), help="image height and width (image models)")
    p.add_argument("--batch", type=int, help=f"batch size (default {DEFAULT_BATCH}; texts are cycled to fill it)")
    p.add_argument("--seed", type=int, default=DEFAULT_IMAGE_SEED, help="pixel_values seed (image models)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's; 1 for bit-reproducibility)")
    args = p.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)

    ref = ReferenceModel(args.model_dir)
    if ref.component == "image_encoder":
        if args.text:
            p.error("--text is for text models; this is an image model")
        h, w = args.image_size if args.image_size else (None, None)
        batch = args.batch or DEFAULT_BATCH
        inputs = image_inputs(args.model_dir, batch, h, w, args.seed)
        recipe = {
            "kind": "image",
            "generator": "torch.randn(generator=torch.Generator('cpu').manual_seed(seed), dtype=float32)",
            "seed": args.seed,
            "shape": list(inputs["pixel_values"].shape),
        }
    else:
        if args.image_size:
            p.error("--image-size is for image models; this is a text model")
        texts = list(args.text) if args.text else list(DEFAULT_TEXTS)
        if args.batch:
            texts = _cycle(texts, args.batch)
        inputs = text_inputs(args.model_dir, texts)
        recipe = {"kind": "text", "texts": texts, "tokenizer": "model directory, right padding"}
    trace = write_trace(args.model_dir, args.output, inputs, model=ref, input_recipe=recipe)
    print(f"{args.output}: {trace.component} ({ref.model_type}, {ref.hf_class}) from {ref.source}")
    for k, v in trace.inputs.items():
        print(f"  inputs/{k:<16} {str(v.dtype):<8} {tuple(v.shape)}")
    for k, v in trace.activations.items():
        print(f"  activations/{k:<11} {str(v.dtype):<8} {tuple(v.shape)}  <- {trace.origins[k]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
