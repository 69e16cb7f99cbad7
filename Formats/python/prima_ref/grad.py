#!/usr/bin/env python3
"""Write PRIMA gradient traces (``Formats/prima-trace.md`` §11, ``prima_trace_version`` 2) with PyTorch autograd.

A gradient trace is a v1 trace (the inputs and the named activations of one forward pass of one component) plus
one objective's scalar ``/loss``, the gradient of the loss with respect to every activation
(``/activation_gradients``) and to every trainable tensor (``/gradients/ROLE/tensors/NAME`` and
``/gradients/ROLE/lora/ADAPTER/tensors/X.lora_a|lora_b``, named by their path in a PRIMA checkpoint). This module:

* loads the model directory in float32 with eager attention, in eval mode (dropout off): the base model
  (``AutoModel``; for qwen3 the ``Qwen3Model`` inside ``Qwen3ForCausalLM``) for ``dot``, ``*ForMaskedLM`` for
  ``mlm``, ``Qwen3ForCausalLM`` for ``causal_lm``; optionally applies a PEFT LoRA adapter unmerged
  (``PeftModel.from_pretrained(..., is_trainable=True)``, checked to hold the adapter file's tensors bit for bit);
* marks the trainable set (``full``: every parameter the loss depends on; ``lora``: the adapter's LoRA matrices;
  or an explicit list of checkpoint paths) and freezes everything else;
* runs the forward pass with the hooks of §5 (autograd on, ``retain_grad`` on every hooked tensor), computes the
  objective, runs ``backward`` once and writes the file deterministically (the v1 layout rules, no timestamps).

The same computation can be run in float64 (``compute_gradients(..., dtype=torch.float64)``): that is how the
tolerances of §11 were measured (``Fixtures/make_grad_fixtures.py``).

Command line (from ``Formats/python``)::

    python -m prima_ref.grad MODEL_DIR -o OUT.h5 --objective dot|mlm|causal_lm [--trainable full|lora]
                             [--adapter DIR [--adapter-name NAME]] [--text "..." ...] [--seed S] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from .names import ROLE_OF_MODEL_TYPE, TIED_ALIASES, checkpoint_path, parse_checkpoint_path
from .trace import (
    ACTIVATIONS_GROUP,
    BASE_CLASS_OF_MODEL_TYPE,
    COMPONENT_OF_MODEL_TYPE,
    DEFAULT_TEXTS,
    INPUTS_GROUP,
    _checkpoint_tensor_names,
    _write_h5,
    _write_named,
    hook_points,
    image_inputs,
    text_inputs,
    validate_inputs,
)

GRAD_TRACE_VERSION = 2
PRODUCER = "prima_ref.grad"
LOSS_DATASET = "loss"
LOSS_TERMS_GROUP = "loss_terms"
ACTIVATION_GRADIENTS_GROUP = "activation_gradients"
GRADIENTS_GROUP = "gradients"
OBJECTIVES = ("dot", "mlm", "causal_lm")
IGNORE_INDEX = -100
DEFAULT_OUTPUT_WEIGHTS_SEED = 0
DEFAULT_LABELS_SEED = 0
MLM_LABEL_FRACTION = 0.3

# Which architectures each objective applies to.
OBJECTIVE_MODEL_TYPES = {
    "dot": ("dinov3_vit", "modernbert", "bert", "qwen3"),
    "mlm": ("modernbert", "bert"),
    "causal_lm": ("qwen3",),
}
# The class loaded for each (objective, model_type) when it is not the base class.
LOADED_CLASS = {
    ("mlm", "modernbert"): "ModernBertForMaskedLM",
    ("mlm", "bert"): "BertForMaskedLM",
    ("causal_lm", "qwen3"): "Qwen3ForCausalLM",
    ("dot", "qwen3"): "Qwen3ForCausalLM",
}
# Body prefix of the base model inside the loaded class, and the module whose output is `logits`.
BASE_ATTRIBUTE = {"ModernBertForMaskedLM": "model", "BertForMaskedLM": "bert", "Qwen3ForCausalLM": "model"}
LOGITS_MODULE = {"ModernBertForMaskedLM": "decoder", "BertForMaskedLM": "cls", "Qwen3ForCausalLM": "lm_head"}


def gradient_input_names(component: str, objective: str) -> Tuple[str, ...]:
    """The datasets of /inputs of a gradient trace, in their order (§11.3)."""
    base = ("pixel_values",) if component == "image_encoder" else ("input_ids", "attention_mask")
    return base + (("output_weights",) if objective == "dot" else ("labels",))


# ---------------------------------------------------------------------------------------------------------------------
# Objective inputs
# ---------------------------------------------------------------------------------------------------------------------
def dot_output_weights(shape: Sequence[int], attention_mask: Optional[np.ndarray], seed: int) -> np.ndarray:
    """Seeded N(0, 1) weights of final_norm's shape (B, T, C), zero where attention_mask is 0:
    ``torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed), dtype=float32) * mask[..., None]``."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(int(seed))
    w = torch.randn(tuple(int(s) for s in shape), generator=g, dtype=torch.float32).numpy()
    if attention_mask is not None:
        w = w * attention_mask.astype(np.float32)[:, :, None]
    return np.ascontiguousarray(w, dtype="<f4")


def mlm_labels(input_ids: np.ndarray, attention_mask: np.ndarray, seed: int,
               fraction: float = MLM_LABEL_FRACTION) -> np.ndarray:
    """Labels for ``mlm``: a real position keeps its token id where a seeded uniform draw
    (``torch.rand((B, T), generator=Generator('cpu').manual_seed(seed))``) is below ``fraction``; every other
    position, padding included, is -100."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(int(seed))
    u = torch.rand(tuple(input_ids.shape), generator=g, dtype=torch.float32).numpy()
    keep = (u < fraction) & (attention_mask == 1)
    return np.ascontiguousarray(np.where(keep, input_ids, IGNORE_INDEX), dtype="<i8")


def causal_lm_labels(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Labels for ``causal_lm``: the input ids at real positions, -100 at padded ones (transformers shifts them)."""
    return np.ascontiguousarray(np.where(attention_mask == 1, input_ids, IGNORE_INDEX), dtype="<i8")


def validate_gradient_inputs(component: str, objective: str, inputs: Mapping[str, Any], vocab_size: Optional[int],
                             final_norm_width: Optional[int] = None) -> "OrderedDict[str, np.ndarray]":
    """Check the inputs of a gradient trace (§11.3) and return them in their canonical order and dtypes."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {list(OBJECTIVES)}")
    names = gradient_input_names(component, objective)
    if set(inputs) != set(names):
        raise ValueError(f"{component}/{objective} inputs must be exactly {list(names)}, got {sorted(inputs)}")
    out = validate_inputs(component, {k: inputs[k] for k in names[:-1]})
    mask = out.get("attention_mask")
    if component == "image_encoder":
        b = out["pixel_values"].shape[0]
    else:
        b, t = out["input_ids"].shape
    if objective == "dot":
        w = np.asarray(inputs["output_weights"])
        if w.dtype != np.float32 or w.ndim != 3 or w.shape[0] != b:
            raise ValueError(f"output_weights must be float32 (B, T, C) with B = {b}, got {w.dtype} {w.shape}")
        if mask is not None and w.shape[1] != mask.shape[1]:
            raise ValueError(f"output_weights has T = {w.shape[1]}, attention_mask T = {mask.shape[1]}")
        if final_norm_width is not None and w.shape[2] != final_norm_width:
            raise ValueError(f"output_weights has C = {w.shape[2]}, the model {final_norm_width}")
        if not np.isfinite(w).all():
            raise ValueError("output_weights has non-finite values")
        if mask is not None and np.any(w[mask == 0] != 0):
            raise ValueError("output_weights must be exactly 0 at padded positions (attention_mask 0)")
        out["output_weights"] = np.ascontiguousarray(w, dtype="<f4")
        return out
    labels = np.asarray(inputs["labels"])
    if labels.dtype != np.int64 or labels.shape != (b, t):
        raise ValueError(f"labels must be int64 (B, T) = {(b, t)}, got {labels.dtype} {labels.shape}")
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= (vocab_size if vocab_size is not None else 2**62)))
    if bad.any():
        b0, t0 = np.argwhere(bad)[0]
        raise ValueError(f"labels[{b0}, {t0}] = {labels[b0, t0]} is neither -100 nor a token id in 0..{vocab_size}-1")
    if np.any(labels[mask == 0] != IGNORE_INDEX):
        raise ValueError("labels must be -100 at padded positions (attention_mask 0)")
    counted = labels[:, 1:] if objective == "causal_lm" else labels
    if not np.any(counted != IGNORE_INDEX):
        raise ValueError(f"labels leave no position to predict for {objective} (the mean would be 0/0)")
    out["labels"] = np.ascontiguousarray(labels, dtype="<i8")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class GradientRun:
    """The result of one forward + backward (float32 or float64 numpy arrays)."""

    loss: float
    activations: "OrderedDict[str, np.ndarray]"
    activation_gradients: "OrderedDict[str, np.ndarray]"
    gradients: "OrderedDict[str, np.ndarray]"  # checkpoint path -> gradient, in parameter order
    hf_names: Dict[str, str]  # checkpoint path -> PyTorch parameter name
    origins: Dict[str, str]  # activation -> hooked module
    meta: Dict[str, Any] = field(default_factory=dict)
    # The unweighted terms of a composite loss (alignment, §11.11: img, glo, loc, soft), written as /loss_terms.
    loss_terms: Optional["OrderedDict[str, float]"] = None


class GradientModel:
    """A model directory loaded for one objective, optionally with a PEFT LoRA adapter, ready for backward."""

    def __init__(self, model_dir, objective: str, adapter_dir=None, adapter_name: str = "default", dtype=None):
        import torch
        import transformers
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

        dtype = torch.float32 if dtype is None else dtype
        self.dtype = dtype
        self.model_dir = Path(model_dir)
        self.objective = objective
        self.config_json = json.loads((self.model_dir / "config.json").read_text())
        self.model_type = self.config_json.get("model_type")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r} is not one of {list(OBJECTIVES)}")
        if self.model_type not in OBJECTIVE_MODEL_TYPES[objective]:
            raise ValueError(f"{self.model_dir}: objective {objective} does not apply to model_type {self.model_type!r}"
                             f" (it takes {list(OBJECTIVE_MODEL_TYPES[objective])})")
        self.component = COMPONENT_OF_MODEL_TYPE[self.model_type]
        self.role = ROLE_OF_MODEL_TYPE[self.model_type]
        self.checkpoint_dtype = str(self.config_json.get("dtype", self.config_json.get("torch_dtype", "unknown")))
        kwargs: Dict[str, Any] = dict(attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
        loaded_class = LOADED_CLASS.get((objective, self.model_type), BASE_CLASS_OF_MODEL_TYPE[self.model_type])
        if loaded_class == "Qwen3ForCausalLM":
            auto = AutoModelForCausalLM
        elif loaded_class.endswith("ForMaskedLM"):
            auto = AutoModelForMaskedLM
        else:
            auto = AutoModel
            if self.model_type == "bert":
                # `dot` needs no pooler: the loss does not depend on it.
                kwargs["add_pooling_layer"] = False
        with _quiet(transformers):
            top, info = auto.from_pretrained(str(self.model_dir), **kwargs)
        problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "mismatched_keys", "error_msgs") and v}
        if problems:
            raise RuntimeError(f"{self.model_dir}: the checkpoint does not fill the model: {problems}")
        if type(top).__name__ != loaded_class:
            raise RuntimeError(f"{self.model_dir}: loaded {type(top).__name__}, expected {loaded_class}")
        if getattr(top.config, "_attn_implementation", None) != "eager":
            raise RuntimeError(f"{self.model_dir}: attention implementation is not 'eager'")
        if objective == "mlm" and getattr(top.config, "sparse_prediction", False):
            # ModernBERT's sparse_prediction computes logits only at the labelled positions: not the (B, T, V)
            # logits of §11.4.
            raise ValueError(f"{self.model_dir}: sparse_prediction is true; §11 defines mlm on dense logits")
        self.top = top
        self.loaded_class = loaded_class
        base_attr = BASE_ATTRIBUTE.get(loaded_class)
        self.base = getattr(top, base_attr) if base_attr else top
        self.base_prefix = f"{base_attr}." if base_attr else ""
        if type(self.base).__name__ != BASE_CLASS_OF_MODEL_TYPE[self.model_type]:
            raise RuntimeError(f"{self.model_dir}: base is {type(self.base).__name__}")
        # The module whose forward the objective runs (its parameters are the candidates for training).
        self.run_module = self.base if objective == "dot" else top
        self.run_prefix = self.base_prefix if objective == "dot" else ""
        self.config = top.config
        self.num_layers = int(self.config.num_hidden_layers)
        self.vocab_size = int(self.config.vocab_size) if objective != "dot" else None
        self.hidden_size = int(self.config.hidden_size)

        points = hook_points(self.model_type, self.num_layers, has_pooler=False)
        points = [(n, p) for n, p in points if n != "logits"]  # re-added below when the objective uses it
        if self.model_type == "qwen3":
            points = [(n, p[len("model."):]) for n, p in points]  # hook_points are relative to Qwen3ForCausalLM
        points = [(n, self.base_prefix + p) for n, p in points]
        if objective != "dot":
            points.append(("logits", LOGITS_MODULE[loaded_class]))
        self.points = points

        self.adapter_name = None
        self.adapter_dir = None
        if adapter_dir is not None:
            self._apply_adapter(Path(adapter_dir), adapter_name)
        top.eval()
        if dtype != torch.float32:
            top.to(dtype)
        for name, p in top.named_parameters():
            if p.dtype != dtype:
                raise RuntimeError(f"{self.model_dir}: parameter {name} is {p.dtype}, not {dtype}")

    def _apply_adapter(self, adapter_dir: Path, adapter_name: str) -> None:
        apply_lora_adapter(self.top, self.base, self.base_prefix, adapter_dir, adapter_name)
        self.adapter_name = adapter_name
        self.adapter_dir = adapter_dir

    @property
    def source(self) -> str:
        return self.model_dir.resolve().name

    @property
    def activation_names(self) -> List[str]:
        return [n for n, _ in self.points]

    def parameter_paths(self) -> "OrderedDict[str, Tuple[Any, str]]":
        """checkpoint path -> (parameter, PyTorch name in the loaded transformers model) for every parameter of the
        run module, in named_parameters order; a parameter shared by several names (tied) appears once, under the
        stored name (the tie target, embed.tokens)."""
        names_by_id: "OrderedDict[int, List[str]]" = OrderedDict()
        param_by_id = {}
        for name, p in self.top.named_parameters(remove_duplicate=False):
            names_by_id.setdefault(id(p), []).append(name)
            param_by_id[id(p)] = p
        run_ids = {id(p) for p in self.run_module.parameters()}
        out: "OrderedDict[str, Tuple[Any, str]]" = OrderedDict()
        for pid, names in names_by_id.items():
            if pid not in run_ids:
                continue
            paths = [checkpoint_path(self.model_type, n) for n in names]
            stored = [q for q in paths if q.split("/")[-1] not in TIED_ALIASES]
            if len(set(paths)) > 1:
                # A tie: the names must be one stored tensor and its aliases.
                if len(set(stored)) != 1 or any(q.split("/")[-1] not in TIED_ALIASES for q in set(paths) - set(stored)):
                    raise RuntimeError(f"parameter shared by {names} maps to {sorted(set(paths))}")
            path = stored[0] if stored else paths[0]
            if path in out:
                raise RuntimeError(f"two parameters map to {path}")
            out[path] = (param_by_id[pid], names[0])
        return out


def apply_lora_adapter(top, base, base_prefix: str, adapter_dir, adapter_name: str = "default") -> None:
    """PeftModel.from_pretrained onto the module the adapter's keys fit (``top`` or its base model ``base``, whose
    parameter names in ``top`` start with ``base_prefix``), then check that every LoRA matrix of the file is in
    ``top`` bit for bit. PEFT injects the LoRA layers into the modules in place, so ``top`` keeps its module paths
    (no ``base_model.model.`` prefix) and its parameter names gain ``.base_layer.`` and ``.lora_A|B.<adapter>.``."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    stored = load_file(str(adapter_dir / "adapter_model.safetensors"))
    modules = set()
    for key in stored:
        if not key.startswith("base_model.model.") or not (key.endswith(".lora_A.weight") or key.endswith(".lora_B.weight")):
            raise ValueError(f"{adapter_dir}: key {key} is not a LoRA matrix (base_model.model.M.lora_A|B.weight)")
        modules.add(key[len("base_model.model."):-len(".lora_A.weight")])
    host = None
    for candidate in (top, base):
        names = dict(candidate.named_modules())
        if all(m in names for m in modules):
            host = candidate
            break
    if host is None:
        raise ValueError(f"{adapter_dir}: the adapter's modules are neither in {type(top).__name__} nor in its base")
    host_prefix = "" if host is top else base_prefix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes inside PEFT
        PeftModel.from_pretrained(host, str(adapter_dir), adapter_name=adapter_name, is_trainable=True)
    params = dict(top.named_parameters())
    for key, value in stored.items():
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        which = "lora_A" if key.endswith(".lora_A.weight") else "lora_B"
        name = f"{host_prefix}{module}.{which}.{adapter_name}.weight"
        if name not in params or not torch.equal(params[name].detach(), value.to(torch.float32)):
            raise RuntimeError(f"{adapter_dir}: {key} did not load into {name} unchanged")


class _quiet:
    """Silence transformers' loading messages and progress bars inside the block."""

    def __init__(self, transformers):
        self.t = transformers

    def __enter__(self):
        self.level = self.t.utils.logging.get_verbosity()
        self.t.utils.logging.set_verbosity_error()
        self.t.utils.logging.disable_progress_bar()

    def __exit__(self, *exc):
        self.t.utils.logging.set_verbosity(self.level)
        return False


# ---------------------------------------------------------------------------------------------------------------------
# Forward + backward
# ---------------------------------------------------------------------------------------------------------------------
Trainable = Union[str, Sequence[str]]
# Tensors whose gradient is exactly zero in exact arithmetic, left out of the `full` trainable set (§11.6): an
# attention key bias adds q·b_k to every score of a query's row, which the softmax cancels, so what PyTorch returns
# for it is float32 rounding noise (about 1e-7) with no reference value to compare with.
ZERO_GRADIENT_RE = re.compile(r"/tensors/layers\.[0-9]+\.attn\.k\.bias$")


def compute_gradients(model: GradientModel, inputs: Mapping[str, Any], trainable: Trainable = "full") -> GradientRun:
    """One forward pass with hooks, the objective, one backward pass; everything returned as numpy arrays in the
    model's dtype. ``trainable``: ``"full"``, ``"lora"`` or a list of checkpoint paths."""
    import torch

    inputs = validate_gradient_inputs(model.component, model.objective, inputs, model.vocab_size, model.hidden_size)
    paths = model.parameter_paths()
    # Trainable candidates.
    if trainable == "full":
        wanted = [p for p in paths if "/lora/" not in p and not ZERO_GRADIENT_RE.search(p)]
        kind = "full"
    elif trainable == "lora":
        if model.adapter_name is None:
            raise ValueError("trainable 'lora' needs an adapter")
        wanted = [p for p in paths if f"/lora/{model.adapter_name}/" in p]
        kind = "lora"
    else:
        wanted = list(trainable)
        unknown = [p for p in wanted if p not in paths]
        if unknown:
            raise ValueError(f"trainable paths not in the model: {unknown}")
        kind = "list"
    for p, (param, _) in paths.items():
        param.requires_grad_(p in wanted)
        param.grad = None

    by_module: "OrderedDict[str, List[str]]" = OrderedDict()
    for name, path in model.points:
        by_module.setdefault(path, []).append(name)
    captured: List[Tuple[str, "torch.Tensor"]] = []

    def make_hook(names):
        def hook(_module, _args, output):
            t = output if torch.is_tensor(output) else output[0]
            if t.requires_grad:
                t.retain_grad()
            else:
                # Nothing before this tensor is trainable (frozen embeddings): make it a leaf that receives dL/dt.
                t.requires_grad_(True)
            for n in names:
                captured.append((n, t))

        return hook

    handles = [model.top.get_submodule(path).register_forward_hook(make_hook(names)) for path, names in by_module.items()]
    dt = model.dtype
    widen = float64_everywhere() if dt == torch.float64 else contextlib.nullcontext()
    try:
        with torch.enable_grad(), widen:
            out, loss = run_objective(model, inputs)
            acts = OrderedDict()
            for n, t in captured:
                if n in acts:
                    raise RuntimeError(f"hook {n} fired twice")
                acts[n] = t
            if list(acts) != model.activation_names:
                raise RuntimeError(f"hooks fired as {list(acts)}, expected {model.activation_names}")
            if model.objective == "dot":
                if not torch.equal(out.last_hidden_state, acts["final_norm"]):
                    raise RuntimeError("final_norm hook differs from the returned last_hidden_state")
                w = torch.from_numpy(inputs["output_weights"]).to(dt)
                explicit = float((acts["final_norm"].detach().double() * w.double()).sum())
            else:
                if not torch.equal(out.logits, acts["logits"]):
                    raise RuntimeError("logits hook differs from the returned logits")
                explicit = explicit_cross_entropy(acts["logits"].detach().double().numpy(), inputs["labels"],
                                                  shift=model.objective == "causal_lm")
            # The loss transformers (or the product above) computed is the objective's formula (§11.4).
            if not abs(float(loss.detach()) - explicit) <= 1e-5 * max(abs(explicit), 1e-30):
                raise RuntimeError(f"loss {float(loss)!r} differs from the formula of §11.4 ({explicit!r})")
            loss.backward()
    finally:
        for h in handles:
            h.remove()

    np_dt = "<f4" if dt == torch.float32 else "<f8"
    activations = OrderedDict()
    activation_gradients = OrderedDict()
    for n, t in acts.items():
        activations[n] = np.ascontiguousarray(t.detach().numpy(), dtype=np_dt)
        if t.grad is None:
            raise RuntimeError(f"activation {n} received no gradient")
        activation_gradients[n] = np.ascontiguousarray(t.grad.numpy(), dtype=np_dt)
    gradients = OrderedDict()
    hf_names = {}
    excluded = []
    for p in wanted:
        param, hf_name = paths[p]
        if param.numel() == 0 or param.grad is None:
            excluded.append(p)  # an empty tensor, or one the loss does not depend on
            continue
        gradients[p] = np.ascontiguousarray(param.grad.numpy(), dtype=np_dt)
        hf_names[p] = hf_name
        param.grad = None
    for a in list(activations.values()) + list(activation_gradients.values()) + list(gradients.values()):
        if not np.isfinite(a).all():
            raise RuntimeError("non-finite activation or gradient")
    if not gradients:
        raise RuntimeError("no trainable tensor received a gradient")
    return GradientRun(
        loss=float(loss.detach()),
        activations=activations,
        activation_gradients=activation_gradients,
        gradients=gradients,
        hf_names=hf_names,
        origins=dict(model.points),
        meta={"trainable": kind, "excluded": excluded},
    )


def run_objective(model: GradientModel, inputs: Mapping[str, np.ndarray]):
    """The forward pass of the objective on validated gradient-trace inputs: (model output, loss tensor). For dot
    the loss is sum(last_hidden_state * output_weights); for mlm / causal_lm it is the loss transformers computes
    from ``labels``. Autograd and any hooks are the caller's."""
    import torch

    dt = model.dtype
    if model.component == "image_encoder":
        out = model.run_module(pixel_values=torch.from_numpy(inputs["pixel_values"]).to(dt))
    else:
        kw = dict(input_ids=torch.from_numpy(inputs["input_ids"]),
                  attention_mask=torch.from_numpy(inputs["attention_mask"]))
        if model.model_type == "qwen3":
            kw["use_cache"] = False
        if model.objective != "dot":
            kw["labels"] = torch.from_numpy(inputs["labels"])
        out = model.run_module(**kw)
    if model.objective == "dot":
        return out, (out.last_hidden_state * torch.from_numpy(inputs["output_weights"]).to(dt)).sum()
    return out, out.loss


class float64_everywhere:
    """Inside the block, a float64 tensor is never narrowed to float32: ``Tensor.float()``, ``Tensor.to(float32)``
    and ``softmax(..., dtype=float32)`` of a float64 tensor stay float64. transformers pins some steps to float32
    whatever the model dtype (the attention softmax of Qwen3 and ModernBERT, Qwen3's RMSNorm, ModernBERT's RoPE
    products, the loss's ``logits.float()``); without this a "float64" run would round there to float32 (and a
    float64 mask minimum would become -inf, making fully masked rows NaN). Used for the float64 reference runs."""

    def __enter__(self):
        import torch
        import torch.nn.functional as F

        self.saved = (torch.Tensor.float, torch.Tensor.to, F.softmax)
        orig_float, orig_to, orig_softmax = self.saved

        def keep_float(t, *args, **kwargs):
            return t if t.dtype == torch.float64 else orig_float(t, *args, **kwargs)

        def keep_to(t, *args, **kwargs):
            if t.dtype == torch.float64:
                args = tuple(torch.float64 if a is torch.float32 else a for a in args)
                if kwargs.get("dtype") is torch.float32:
                    kwargs["dtype"] = torch.float64
            return orig_to(t, *args, **kwargs)

        def keep_softmax(t, *args, **kwargs):
            if t.dtype == torch.float64 and kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = torch.float64
            return orig_softmax(t, *args, **kwargs)

        torch.Tensor.float = keep_float
        torch.Tensor.to = keep_to
        F.softmax = keep_softmax
        return self

    def __exit__(self, *exc):
        import torch
        import torch.nn.functional as F

        torch.Tensor.float, torch.Tensor.to, F.softmax = self.saved
        return False


def explicit_cross_entropy(logits: np.ndarray, labels: np.ndarray, shift: bool) -> float:
    """§11.4 in float64: mean over the counted positions of logsumexp(logits[b, t]) - logits[b, t, y]."""
    if shift:
        labels = np.concatenate([labels[:, 1:], np.full((labels.shape[0], 1), IGNORE_INDEX, dtype=labels.dtype)], 1)
    counted = labels != IGNORE_INDEX
    z = logits[counted]
    y = labels[counted]
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


# ---------------------------------------------------------------------------------------------------------------------
# Writing and reading
# ---------------------------------------------------------------------------------------------------------------------
def write_grad_trace(
    model_dir,
    out_path,
    inputs: Mapping[str, Any],
    objective: str,
    trainable: Trainable = "full",
    adapter_dir=None,
    adapter_name: str = "default",
    output_weights_seed: int = DEFAULT_OUTPUT_WEIGHTS_SEED,
    labels_seed: int = DEFAULT_LABELS_SEED,
    *,
    model: Optional[GradientModel] = None,
    input_recipe: Optional[Mapping[str, Any]] = None,
) -> GradientRun:
    """Run MODEL_DIR forward and backward on INPUTS for OBJECTIVE and write the v2 trace to OUT_PATH.

    ``inputs``: the v1 inputs (``pixel_values``, or ``input_ids`` + ``attention_mask``), optionally with the
    objective's own input (``output_weights`` for dot, ``labels`` for mlm / causal_lm); when it is missing it is
    made here: seeded output weights (``dot_output_weights``), seeded MLM labels (``mlm_labels``) or the input ids
    (``causal_lm_labels``). ``trainable``: ``full``, ``lora`` (needs ``adapter_dir``) or a list of checkpoint paths.
    """
    import torch
    import transformers

    gm = model if model is not None else GradientModel(model_dir, objective, adapter_dir, adapter_name)
    if gm.objective != objective or Path(model_dir).resolve() != gm.model_dir.resolve():
        raise ValueError("the given model was loaded for another directory or objective")
    inputs = dict(inputs)
    base = validate_inputs(gm.component, {k: v for k, v in inputs.items() if k in ("pixel_values", "input_ids", "attention_mask")})
    mask = base.get("attention_mask")
    recipe = dict(input_recipe) if input_recipe is not None else {}
    if objective == "dot" and "output_weights" not in inputs:
        shape = _final_norm_shape(gm, base)
        inputs["output_weights"] = dot_output_weights(shape, mask, output_weights_seed)
        recipe["output_weights"] = {"generator": "torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed),"
                                                 " dtype=float32) * attention_mask[..., None]", "seed": output_weights_seed}
    elif objective == "mlm" and "labels" not in inputs:
        inputs["labels"] = mlm_labels(base["input_ids"], mask, labels_seed)
        recipe["labels"] = {"generator": "torch.rand((B, T), generator=torch.Generator('cpu').manual_seed(seed)) < "
                                         f"{MLM_LABEL_FRACTION} at real positions keeps the token id, else -100",
                            "seed": labels_seed}
    elif objective == "causal_lm" and "labels" not in inputs:
        inputs["labels"] = causal_lm_labels(base["input_ids"], mask)
        recipe["labels"] = "input_ids at real positions, -100 at padded positions"
    inputs = validate_gradient_inputs(gm.component, objective, inputs, gm.vocab_size, gm.hidden_size)
    run = compute_gradients(gm, inputs, trainable)

    attrs: "OrderedDict[str, Any]" = OrderedDict()
    attrs["prima_trace_version"] = np.int64(GRAD_TRACE_VERSION)
    attrs["component"] = gm.component
    attrs["source"] = gm.source
    attrs["torch_version"] = str(torch.__version__)
    attrs["transformers_version"] = str(transformers.__version__)
    attrs["attn_implementation"] = "eager"
    attrs["dtype"] = "float32"
    attrs["objective"] = objective
    attrs["trainable"] = run.meta["trainable"]
    if gm.adapter_name is not None:
        attrs["adapter"] = gm.adapter_name
    attrs["model_type"] = gm.model_type
    attrs["hf_class"] = BASE_CLASS_OF_MODEL_TYPE[gm.model_type]
    attrs["hf_loaded_class"] = gm.loaded_class
    attrs["checkpoint_dtype"] = gm.checkpoint_dtype
    attrs["producer"] = PRODUCER
    try:
        import peft

        attrs["peft_version"] = str(peft.__version__) if gm.adapter_name is not None else ""
    except ImportError:
        attrs["peft_version"] = ""
    if recipe:
        attrs["input_recipe"] = json.dumps(recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    _write_grad_h5(Path(out_path), attrs, inputs, run)
    run.meta["inputs"] = inputs
    run.meta["attrs"] = dict(attrs)
    return run


def _final_norm_shape(gm: GradientModel, base) -> Tuple[int, int, int]:
    if gm.component == "image_encoder":
        b, _, h, w = base["pixel_values"].shape
        p = int(gm.config.patch_size)
        return b, 1 + int(getattr(gm.config, "num_register_tokens", 0)) + (h // p) * (w // p), gm.hidden_size
    b, t = base["input_ids"].shape
    return b, t, gm.hidden_size


def _write_grad_h5(path: Path, attrs, inputs, run: GradientRun) -> None:
    def gradient_parts(f) -> None:
        _write_named(f, ACTIVATION_GRADIENTS_GROUP, run.activation_gradients, run.origins)
        f.create_dataset(LOSS_DATASET, data=np.float32(run.loss), dtype="<f4", track_times=False)
        if run.loss_terms is not None:  # alignment (§11.11): right after /loss
            lt = f.create_group(LOSS_TERMS_GROUP, track_order=True, track_times=False)
            for name, value in run.loss_terms.items():
                lt.create_dataset(name, data=np.float32(value), dtype="<f4", track_times=False)
        gg = f.create_group(GRADIENTS_GROUP, track_order=True, track_times=False)
        for p, arr in run.gradients.items():
            parent = gg
            parts = p.split("/")
            for part in parts[:-1]:
                parent = parent[part] if part in parent else parent.create_group(part, track_order=True, track_times=False)
            d = parent.create_dataset(parts[-1], data=np.ascontiguousarray(arr, dtype="<f4"), track_times=False)
            d.attrs["hf_name"] = run.hf_names[p]

    _write_h5(path, attrs, inputs, run.activations, run.origins, extra=gradient_parts)


def gradient_paths(group: "h5py.Group", prefix: str = "") -> List[str]:
    """Every dataset path under a /gradients group (relative, in creation order); raises on anything that is not a
    group or a dataset."""
    out = []
    for k in group:
        kind = group.get(k, getclass=True, getlink=True)
        if kind is not h5py.HardLink:
            raise ValueError(f"/{GRADIENTS_GROUP}/{prefix}{k} is a {kind.__name__}, not a hard link")
        cls = group.get(k, getclass=True)
        if cls is h5py.Group:
            out += gradient_paths(group[k], f"{prefix}{k}/")
        elif cls is h5py.Dataset:
            out.append(f"{prefix}{k}")
        else:
            raise ValueError(f"/{GRADIENTS_GROUP}/{prefix}{k} is neither a group nor a dataset")
    return out


OBJECTIVE_COMPONENTS = {"dot": ("image_encoder", "text_encoder", "decoder"), "mlm": ("text_encoder",),
                        "causal_lm": ("decoder",), "class_ce": ("prima",), "image_ce": ("prima",),
                        "alignment": ("prima",)}
# Every objective a version-2 trace may name (class_ce, image_ce and alignment are the pipeline's,
# prima_ref.prima_grad; the last two run a batch of cases through the encoders and their heads, §11.11).
TRACE_OBJECTIVES = OBJECTIVES + ("class_ce", "image_ce", "alignment")
BATCH_OBJECTIVES = ("image_ce", "alignment")
GRADIENT_TRACE_CHILDREN = (INPUTS_GROUP, ACTIVATIONS_GROUP, ACTIVATION_GRADIENTS_GROUP, LOSS_DATASET, GRADIENTS_GROUP)
# An alignment trace also has /loss_terms (§11.11); the reference writes it right after /loss.
ALIGNMENT_TRACE_CHILDREN = (INPUTS_GROUP, ACTIVATIONS_GROUP, ACTIVATION_GRADIENTS_GROUP, LOSS_DATASET,
                            LOSS_TERMS_GROUP, GRADIENTS_GROUP)


def read_gradient_parts(path, f: "h5py.File", attrs: Dict[str, Any]):
    """read_trace for prima_trace_version 2 (§11): the v1 parts, then /loss, /activation_gradients, /gradients,
    each validated against the others. Called by prima_ref.trace.read_trace with the open file."""
    from .trace import Trace, check_activation_names, decoder_inputs_of, read_ordered_group

    component = attrs["component"]
    objective = attrs.get("objective")
    if objective not in TRACE_OBJECTIVES:
        raise ValueError(f"{path}: a version-2 trace needs the root attribute objective, one of "
                         f"{list(TRACE_OBJECTIVES)}; got {objective!r}")
    if component not in OBJECTIVE_COMPONENTS[objective]:
        raise ValueError(f"{path}: objective {objective} is not defined for component {component}")
    kinds = {k: f.get(k, getclass=True) for k in f.keys()}
    children = ALIGNMENT_TRACE_CHILDREN if objective == "alignment" else GRADIENT_TRACE_CHILDREN
    want = {k: (h5py.Dataset if k == LOSS_DATASET else h5py.Group) for k in children}
    if kinds != want:
        raise ValueError(f"{path}: / must hold exactly {list(children)} (loss a dataset, the others"
                         f" groups) for objective {objective}, has {sorted(kinds)}")
    for g in (INPUTS_GROUP, ACTIVATIONS_GROUP, ACTIVATION_GRADIENTS_GROUP):
        for k in f[g]:
            if f[g].get(k, getclass=True) is not h5py.Dataset:
                raise ValueError(f"{path}: /{g}/{k} is not a dataset")
    raw_inputs = OrderedDict((k, f[INPUTS_GROUP][k][()]) for k in f[INPUTS_GROUP])
    for k, a in raw_inputs.items():
        want_dtype = np.float32 if k in ("pixel_values", "output_weights", "soft_targets") else np.int64
        if a.dtype != want_dtype:
            raise ValueError(f"{path}: /{INPUTS_GROUP}/{k} is {a.dtype}, expected {np.dtype(want_dtype)}")
    acts, origins = read_ordered_group(path, f[ACTIVATIONS_GROUP], "activation")
    if objective in BATCH_OBJECTIVES:
        from .prima_grad import validate_batch_trace

        try:
            inputs = validate_batch_trace(objective, raw_inputs, acts, attrs)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    else:
        check_activation_names(path, component, list(acts), decoder_inputs_of(path, attrs))
    if objective == "class_ce":
        from .prima_grad import validate_class_ce_inputs

        try:
            inputs = validate_class_ce_inputs(raw_inputs)
        except ValueError as e:
            raise ValueError(f"{path}: /{INPUTS_GROUP}: {e}") from None
    elif objective in ("mlm", "causal_lm") and "logits" not in acts:
        raise ValueError(f"{path}: objective {objective} needs the activation logits")
    if objective in OBJECTIVES:
        vocab = acts["logits"].shape[-1] if "logits" in acts else None
        try:
            inputs = validate_gradient_inputs(component, objective, raw_inputs, vocab, acts["final_norm"].shape[-1])
        except ValueError as e:
            raise ValueError(f"{path}: /{INPUTS_GROUP}: {e}") from None
    if objective == "dot" and acts["final_norm"].shape != inputs["output_weights"].shape:
        raise ValueError(f"{path}: output_weights {inputs['output_weights'].shape} is not final_norm's shape "
                         f"{acts['final_norm'].shape}")
    if "logits" in acts and objective != "dot":
        b, t = inputs["input_ids"].shape
        if acts["logits"].ndim != 3 or acts["logits"].shape[:2] != (b, t):
            raise ValueError(f"{path}: logits has shape {acts['logits'].shape}, expected (B, T, V) with (B, T) = {(b, t)}")
    grads_of_acts, _ = read_ordered_group(path, f[ACTIVATION_GRADIENTS_GROUP], "activation gradient")
    if list(grads_of_acts) != list(acts):
        raise ValueError(f"{path}: /{ACTIVATION_GRADIENTS_GROUP} holds {list(grads_of_acts)} in order, "
                         f"/{ACTIVATIONS_GROUP} {list(acts)}")
    for n, g in grads_of_acts.items():
        if g.shape != acts[n].shape:
            raise ValueError(f"{path}: activation gradient {n} has shape {g.shape}, the activation {acts[n].shape}")
        if not np.isfinite(g).all():
            raise ValueError(f"{path}: activation gradient {n} has non-finite values")
    d = f[LOSS_DATASET]
    if d.dtype != np.float32 or d.shape != ():
        raise ValueError(f"{path}: /{LOSS_DATASET} must be a float32 scalar, is {d.dtype} {d.shape}")
    loss = float(d[()])
    if not math.isfinite(loss):
        raise ValueError(f"{path}: /{LOSS_DATASET} is not finite")
    loss_terms: "OrderedDict[str, float]" = OrderedDict()
    if objective == "alignment":
        loss_terms = read_loss_terms(path, f[LOSS_TERMS_GROUP])
    role = ROLE_OF_MODEL_TYPE_BY_COMPONENT[component]
    gradients: "OrderedDict[str, np.ndarray]" = OrderedDict()
    hf_names: Dict[str, str] = {}
    try:
        paths = gradient_paths(f[GRADIENTS_GROUP])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    for p in paths:
        try:
            r, _, _ = parse_checkpoint_path(p)
        except ValueError as e:
            raise ValueError(f"{path}: /{GRADIENTS_GROUP}/{p}: {e}") from None
        if r != role and component != "prima":  # a pipeline trace trains tensors of every part
            raise ValueError(f"{path}: /{GRADIENTS_GROUP}/{p}: role {r} in a {component} trace (expected {role})")
        ds = f[GRADIENTS_GROUP][p]
        if ds.dtype != np.float32:
            raise ValueError(f"{path}: /{GRADIENTS_GROUP}/{p} is {ds.dtype}, expected float32")
        a = ds[()]
        if a.size == 0 or not np.isfinite(a).all():
            raise ValueError(f"{path}: /{GRADIENTS_GROUP}/{p} is empty or has non-finite values")
        gradients[p] = a
        if "hf_name" in ds.attrs:
            hf_names[p] = str(_attr_str(ds.attrs["hf_name"]))
    if not gradients:
        raise ValueError(f"{path}: /{GRADIENTS_GROUP} holds no gradient (the trainable set is empty)")
    return Trace(attrs=attrs, inputs=inputs, activations=acts, origins=origins, loss=loss,
                 activation_gradients=grads_of_acts, gradients=gradients, gradient_hf_names=hf_names,
                 loss_terms=loss_terms)


LOSS_TERM_NAMES = ("img", "glo", "loc", "soft")


def read_loss_terms(path, group: "h5py.Group") -> "OrderedDict[str, float]":
    """/loss_terms of an alignment trace (§11.11): exactly img, glo, loc, soft, each a finite float32 scalar."""
    names = sorted(group.keys())
    if names != sorted(LOSS_TERM_NAMES):
        raise ValueError(f"{path}: /{LOSS_TERMS_GROUP} must hold exactly {list(LOSS_TERM_NAMES)}, has {names}")
    out: "OrderedDict[str, float]" = OrderedDict()
    for name in LOSS_TERM_NAMES:
        d = group[name]
        if not isinstance(d, h5py.Dataset) or d.dtype != np.float32 or d.shape != ():
            raise ValueError(f"{path}: /{LOSS_TERMS_GROUP}/{name} must be a float32 scalar dataset")
        value = float(d[()])
        if not math.isfinite(value):
            raise ValueError(f"{path}: /{LOSS_TERMS_GROUP}/{name} is not finite")
        out[name] = value
    return out


ROLE_OF_MODEL_TYPE_BY_COMPONENT = {"image_encoder": "image_encoder", "text_encoder": "text_encoder",
                                   "decoder": "decoder", "prima": None}


def _attr_str(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


# ---------------------------------------------------------------------------------------------------------------------
# Comparison (§11.8)
# ---------------------------------------------------------------------------------------------------------------------
LOSS_RELATIVE_TOLERANCE = 1e-5
COSINE_MINIMUM = 0.99999
MAX_ABS_RELATIVE_TOLERANCE = 1e-4


def tensor_errors(ref: np.ndarray, other: np.ndarray, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """cosine, max_abs, max|ref| and max_abs / max|ref| of two tensors (float64), over the real positions when a
    (B, T) mask is given and the arrays start with (B, T)."""
    if ref.shape != other.shape:
        raise ValueError(f"shape {ref.shape} != {other.shape}")
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if mask is not None and a.ndim >= 3 and a.shape[:2] == mask.shape:
        a, b = a[mask], b[mask]
    a, b = a.ravel(), b.ravel()
    max_ref = float(np.abs(a).max()) if a.size else 0.0
    max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        cosine = 1.0
    elif na == 0.0 or nb == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a, b) / (na * nb))
    ratio = max_abs / max_ref if max_ref > 0 else (0.0 if max_abs == 0 else math.inf)
    return {"cosine": cosine, "max_abs": max_abs, "max_ref": max_ref, "ratio": ratio}


def passes(errors: Mapping[str, float]) -> bool:
    """§11.8: cosine >= COSINE_MINIMUM and max_abs <= MAX_ABS_RELATIVE_TOLERANCE * max|ref|."""
    return errors["cosine"] >= COSINE_MINIMUM and errors["max_abs"] <= MAX_ABS_RELATIVE_TOLERANCE * errors["max_ref"]


# In a prima trace, the activations with the text's (B, T) axes: the text encoder's, and alignment.text_local of
# §11.11 (computed at every position; tensor_errors masks only an array whose first two axes are the mask's).
PRIMA_MASKED_PREFIXES = ("text_encoder.", "alignment.text_local")


def compare_runs(ref: GradientRun, other: GradientRun, mask: Optional[np.ndarray], prima: bool = False) -> Dict[str, Any]:
    """Loss relative error, and tensor_errors for every activation gradient (real positions) and gradient. With
    ``prima`` (a pipeline trace) only the text_encoder.* activations have the text's (B, T) axes (§10.4)."""
    loss_rel = abs(other.loss - ref.loss) / abs(ref.loss) if ref.loss != 0 else abs(other.loss)
    acts = OrderedDict((n, tensor_errors(a, other.activation_gradients[n],
                                         mask if not prima or n.startswith(PRIMA_MASKED_PREFIXES) else None))
                       for n, a in ref.activation_gradients.items())
    grads = OrderedDict((p, tensor_errors(a, other.gradients[p])) for p, a in ref.gradients.items())
    if set(grads) != set(other.gradients):
        raise ValueError(f"gradient sets differ: {sorted(set(ref.gradients) ^ set(other.gradients))}")
    return {"loss_relative_error": loss_rel, "activation_gradients": acts, "gradients": grads}


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prima_ref.grad",
                                description="Write a PRIMA gradient trace (Formats/prima-trace.md §11).")
    p.add_argument("model_dir")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--objective", required=True, choices=OBJECTIVES)
    p.add_argument("--trainable", default="full", choices=("full", "lora"))
    p.add_argument("--adapter", help="PEFT LoRA directory (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--adapter-name", default="default")
    p.add_argument("--text", action="append")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="pixel_values, output_weights and MLM labels seed")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    gm = GradientModel(args.model_dir, args.objective, args.adapter, args.adapter_name)
    if gm.component == "image_encoder":
        h, w = args.image_size if args.image_size else (None, None)
        inputs = image_inputs(args.model_dir, args.batch, h, w, args.seed)
    else:
        inputs = text_inputs(args.model_dir, list(args.text) if args.text else list(DEFAULT_TEXTS))
    run = write_grad_trace(args.model_dir, args.output, inputs, args.objective, args.trainable, args.adapter,
                           args.adapter_name, args.seed, args.seed, model=gm)
    print(f"{args.output}: {args.objective}, loss {run.loss:.6g}, {len(run.gradients)} trainable tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
