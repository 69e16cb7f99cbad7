"""The PyTorch + PEFT reference trainer of prima-train's stages (Formats/prima-training.md §5), for parity.

It reads the same PRIMA checkpoint (.h5, through the independent reader ``Formats/python/prima_h5.py``) and the
same data as ``prima-train`` and computes the same optimiser steps with PyTorch's own parts:

- the model: each component exported from the checkpoint into a Hugging Face directory (its ``files/`` and its
  tensors under their ``hf_name``), the heads into a safetensors file, loaded with ``prima_ref.prima.PrimaReference``
  (transformers, float32, eager attention, eval mode: no dropout, as prima-train) — ``export_checkpoint``; stage 1
  loads the text encoder with its masked-LM head (``AutoModelForMaskedLM``);
- the adapter: PEFT's ``inject_adapter_in_model`` with a ``LoraConfig`` (rank, alpha, dropout 0, the stage's target
  modules, adapter name ``prima``), whose ``lora_A`` is then set to the values of §5's initialisation stream and
  ``lora_B`` to zero, exactly what ``StageAdapters.create`` draws;
- the data: ``prima_ref.train_data`` (the folds of §3.2, the stage-2 views of §3.3, the augmentation of §3.4, the
  soft targets of §3.5, the corpus and masking of §3.6-§3.7, the epoch order of §3.8);
- the optimiser: ``torch.optim.AdamW`` (single-tensor path) with two parameter groups (§2.3 ``matrices``: tensors
  of rank ≥ 2 decay, the others not), ``transformers.get_cosine_schedule_with_warmup`` with §2.4's warm-up steps
  (⌈0.1·T⌉, given as a number), ``torch.nn.utils.clip_grad_norm_``;
- the losses (§2.6): stage 1 the masked-LM cross-entropy summed over the step's masked tokens and divided by their
  count; stage 2 the weighted alignment terms of ``prima_grad.alignment_loss_terms`` (text encoder frozen);
  stage 2b the image classifier's mean cross-entropy over the step's images; stage 3 the restricted class
  cross-entropy of each case divided by the step's case count, the encoders frozen. With ``class_weights
  = "balanced"`` (§3.8) both are PyTorch's weighted cross-entropy (``weight=w``, w from
  ``train_data.class_weights`` of the training split's labels): stage 2b's ``reduction="mean"`` divides by the
  step's Σ w_y, and stage 3 divides each case's ``reduction="sum"`` loss (w_y · l) by the same sum.

One micro-batch per step (no gradient accumulation) and no balanced sampling: the settings the parity fixtures
use.

The trainable set is §5's and is named by gradient paths (Formats/prima-trace.md §11.6); the step's parameters are
handed to AdamW and to the clipping in path order, as ``Trainer`` sorts them. A run stops after ``max_steps``
steps of the stage's schedule (T = epochs × ⌈examples / batch⌉), like ``StageRunner`` interrupted after that step.

    from prima_ref.train import StageSettings, train_stage
    result = train_stage("tiny-prima.h5", "Fixtures/prima/cases", StageSettings(stage="stage2b", ...), max_steps=5)
    result.losses, result.learning_rates, result.gradient_norms, result.tensors   # {gradient path: np.float32}
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import png
from . import train_data as td
from .metadata import Schema, read_csv

ADAPTER = "prima"
ROLES = ("image_encoder", "text_encoder", "decoder")
# §5: the projections a default adapter targets (canonical layers.N.<part>.<proj>.weight).
DEFAULT_PROJECTIONS = {"attn.q", "attn.k", "attn.v", "attn.o", "attn.qkv", "mlp.up", "mlp.gate", "mlp.wi", "mlp.down"}
STAGE_ROLE = {"stage1": "text_encoder", "stage2": "image_encoder", "stage2b": "image_encoder", "stage3": "decoder"}


@dataclass
class StageSettings:
    """One stage's settings, as ``StageOptions`` of Sources/PrimaTrain/StageRunner.swift (the defaults are only
    the optimiser's; give the rest)."""
    stage: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    rank: int
    alpha: float
    seed: int = 0
    warmup_ratio: float = 0.1
    max_grad_norm: Optional[float] = 1.0
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    folds: int = 5
    fold: int = 0
    grouping: str = "lesion"
    augmentation: bool = True
    # Stage 2: the alignment losses (Docs/prima-model.md's defaults).
    tau: float = 0.07
    tau_label: float = 1.0
    loss_weights: Tuple[float, float, float, float] = (0.2, 0.3, 0.2, 0.3)
    loc_mode: str = "attention"
    soft_labels_only: bool = False
    # Stages 2b and 3: "none" or "balanced" (§3.8).
    class_weights: str = "none"
    # Stage 3: the decoder's input, "image+metadata" or "image" (--no-metadata; Docs/prima-model.md, "Decoder input").
    decoder_inputs: str = "image+metadata"

    def cli_flags(self) -> List[str]:
        """The prima-train options that give the same run."""
        flags = [self.stage, "--epochs", str(self.epochs), "--batch-size", str(self.batch_size), "--lr", repr(self.lr),
                 "--weight-decay", repr(self.weight_decay), "--rank", str(self.rank), "--alpha", repr(self.alpha),
                 "--seed", str(self.seed), "--max-grad-norm", repr(self.max_grad_norm)]
        if self.stage != "stage1":
            flags += ["--folds", str(self.folds), "--fold", str(self.fold)]
            flags += ["--patient-split"] if self.grouping == "patient" else []
            flags += [] if self.augmentation else ["--no-augment"]
            flags += [] if self.class_weights == "none" else ["--class-weights", self.class_weights]
            flags += ["--no-metadata"] if self.stage == "stage3" and self.decoder_inputs == "image" else []
        if self.stage == "stage2":
            flags += ["--tau", repr(self.tau), "--tau-label", repr(self.tau_label),
                      "--loss-weights", ",".join(repr(w) for w in self.loss_weights)]
            flags += ["--loc-direct"] if self.loc_mode == "direct" else []
            flags += ["--soft-labels-only"] if self.soft_labels_only else []
        return flags


@dataclass
class TrainResult:
    """Per step: the loss (float32, as prima-train logs it), the learning rate (double), the pre-clip global norm
    (float32); after the last step: every trained tensor by gradient path, float32."""
    losses: List[float] = field(default_factory=list)
    learning_rates: List[float] = field(default_factory=list)
    gradient_norms: List[float] = field(default_factory=list)
    tensors: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)
    # time.perf_counter() when each step's optimiser update finished (the benchmark's step times are their
    # differences; the first step also holds the setup).
    step_ends: List[float] = field(default_factory=list)
    total_steps: int = 0
    warmup_steps: int = 0
    # What imports back into a checkpoint (``save_outputs``): the adapter in PEFT's on-disk form (its LoraConfig
    # and {base_model.model.M.lora_A|B.weight: value}) and every head tensor, trained or not.
    lora_config: object = None
    adapter_state: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)
    heads: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)
    # Stage 1: the trained masked-LM head under the text encoder's Hugging Face names (for its model.safetensors).
    component_tensors: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)


def warmup_steps(ratio: float, total: int) -> int:
    """§2.4: ⌈ratio · T⌉, a product within 1e-9 (relative) of an integer counting as that integer."""
    product = total * ratio
    nearest = round(product)
    return int(nearest if abs(product - nearest) <= 1e-9 * max(1.0, product) else math.ceil(product))


# ---------------------------------------------------------------------------------------------------------------------
# The checkpoint
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Exported:
    """What ``export_checkpoint`` wrote: a Hugging Face directory per component, the heads file, and the /prima
    files (class codes, prompt, answer prefix, schema), plus each component's canonical name -> hf_name and the
    image preprocessing attributes."""
    dirs: Dict[str, Path]
    heads: Path
    class_codes: List[str]
    prompt: str
    answer_prefix: str
    schema_json: str
    class_token_ids: List[int]
    hf_names: Dict[str, Dict[str, str]]
    preprocessing: Dict[str, object]
    adapters: Dict[str, "StoredAdapter"] = field(default_factory=dict)


@dataclass
class StoredAdapter:
    """A component's adapter ``prima`` in the checkpoint (Formats/prima-checkpoint.md §6)."""
    rank: int
    alpha: float
    use_rslora: bool
    targets: List[str]
    values: Dict[str, np.ndarray]


def export_checkpoint(checkpoint: "os.PathLike | str", out_dir: "os.PathLike | str") -> Exported:
    """Each component of a PRIMA checkpoint as a Hugging Face directory (its stored files and model.safetensors
    with every stored tensor under its hf_name, tied aliases left to the config's tie), the /prima heads as a
    safetensors file of canonical names (task.class_token_ids apart), and each component's adapter ``prima``. Only
    float32 components are supported; another adapter is refused."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from prima_h5 import open_checkpoint
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    dirs, hf_names, adapters = {}, {}, {}
    with open_checkpoint(str(checkpoint)) as ckpt:
        for role in ROLES:
            comp = ckpt[role]
            d = out_dir / role
            d.mkdir(parents=True, exist_ok=True)
            for name, data in comp.files.items():
                (d / name).write_bytes(data)
            tensors = {}
            hf_names[role] = {}
            for name, t in comp.tensors.items():
                if t.hf_name is None:
                    raise ValueError(f"{checkpoint}: {role}/{name} has no hf_name")
                value = comp.read(name)
                if value.dtype != np.float32:
                    raise ValueError(f"{checkpoint}: {role}/{name} is {value.dtype}; export float32 checkpoints only")
                tensors[t.hf_name] = np.ascontiguousarray(value)
                hf_names[role][name] = t.hf_name
            save_file(tensors, str(d / "model.safetensors"))
            dirs[role] = d
            for name, adapter in getattr(comp, "lora", {}).items():
                if name != ADAPTER or adapter.attrs.get("merged"):
                    raise ValueError(f"{checkpoint}: {role}/lora/{name}: the reference trainer applies only the "
                                     f"unmerged adapters named {ADAPTER!r} that prima-train's stages write")
                a = adapter.attrs
                adapters[role] = StoredAdapter(rank=int(a["rank"]), alpha=float(a["alpha"]),
                                               use_rslora=bool(a.get("use_rslora", 0)), targets=list(a["targets"]),
                                               values={n: t.read() for n, t in adapter.tensors.items()})
        prima = ckpt.prima
        heads = {n: np.ascontiguousarray(prima.read(n)) for n in prima.tensors if n != "task.class_token_ids"}
        class_token_ids = [int(x) for x in prima.read("task.class_token_ids")]
        heads_path = out_dir / "heads.safetensors"
        save_file(heads, str(heads_path))
        files = prima.files
        pre = dict(ckpt.file["image_encoder/preprocessing"].attrs)
    labels = json.loads(files["labels.json"].decode("utf-8"))
    return Exported(dirs=dirs, heads=heads_path, class_codes=[x["code"] for x in labels],
                    prompt=files["prompt.txt"].decode("utf-8"), answer_prefix=files["answer_prefix.txt"].decode("utf-8"),
                    schema_json=files["metadata_schema.json"].decode("utf-8"), class_token_ids=class_token_ids,
                    hf_names=hf_names, preprocessing=pre, adapters=adapters)


def preprocessing(attrs: Dict[str, object]) -> td.Preprocessing:
    """train_data's Preprocessing from a component's preprocessing/ attributes (Formats/prima-checkpoint.md §3.4)."""
    return td.Preprocessing(height=int(attrs["height"]), width=int(attrs["width"]), resample=str(attrs["resample"]),
                            do_rescale=bool(attrs["do_rescale"]), do_normalize=bool(attrs["do_normalize"]),
                            rescale_factor=float(attrs["rescale_factor"]),
                            image_mean=[float(x) for x in attrs["image_mean"]],
                            image_std=[float(x) for x in attrs["image_std"]])


def is_default_target(name: str) -> bool:
    parts = name.split(".")
    return (len(parts) == 5 and parts[0] == "layers" and parts[1].isdigit() and parts[4] == "weight"
            and f"{parts[2]}.{parts[3]}" in DEFAULT_PROJECTIONS)


def attach_stage_adapter(top, role: str, stored: Sequence[str], names: "Dict[str, Tuple[str, Tuple[int, ...]]]",
                         rank: int, alpha: float, seed: int):
    """A new PEFT LoRA adapter on every default target of the component (in storage order), named ``prima``, with
    §5's initialisation: A [r, in] row by row float32((2·unit() − 1)/√in) from the stream (seed, initialisation, 0,
    index = the target's place, part = the component's place in ROLES), B zero. ``stored``: the component's
    canonical tensor names in storage order; ``names``: ``loaded_names`` of the module. Returns ({gradient path:
    parameter} of the A and B matrices, {PEFT key: parameter} of the same, the LoraConfig)."""
    part = ROLES.index(role)

    def initial(index: int, target: str, out_features: int, in_features: int):
        stream = td.TrainingRandom(seed, td.PURPOSE_INITIALISATION, 0, index, part)
        bound = 1 / math.sqrt(in_features)
        a = np.array([(2 * stream.unit() - 1) * bound for _ in range(rank * in_features)], dtype=np.float32)
        return a.reshape(rank, in_features), np.zeros((out_features, rank), dtype=np.float32)

    targets = [n for n in stored if is_default_target(n)]
    return _inject(top, role, targets, names, rank, alpha, False, initial)


def attach_stored_adapter(top, role: str, adapter: "StoredAdapter", names: "Dict[str, Tuple[str, Tuple[int, ...]]]"):
    """The checkpoint's adapter ``prima`` of the component as a PEFT adapter with its stored matrices (a stage
    continues it, or it runs frozen under another stage). Returns what ``attach_stage_adapter`` returns."""
    def stored(index: int, target: str, out_features: int, in_features: int):
        stem = target[: -len(".weight")]
        return adapter.values[f"{stem}.lora_a"], adapter.values[f"{stem}.lora_b"]

    return _inject(top, role, adapter.targets, names, adapter.rank, adapter.alpha, adapter.use_rslora, stored)


def _inject(top, role: str, targets: Sequence[str], names, rank: int, alpha: float, use_rslora: bool, values):
    """PEFT's ``inject_adapter_in_model`` (LoraConfig r, lora_alpha, dropout 0, use_rslora, the targets' modules)
    named ``prima``, then lora_A and lora_B of target i set to ``values(i, target, out, in)``."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    modules = [names[t][0][: -len(".weight")] for t in targets]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=modules, bias="none",
                        init_lora_weights=True, use_rslora=use_rslora)
    inject_adapter_in_model(config, top, adapter_name=ADAPTER)
    scale = alpha / math.sqrt(rank) if use_rslora else alpha / rank
    out: "OrderedDict[str, object]" = OrderedDict()
    peft_keys: "OrderedDict[str, object]" = OrderedDict()
    for index, (target, module) in enumerate(zip(targets, modules)):
        layer = top.get_submodule(module)
        a, b = values(index, target, *names[target][1])
        with torch.no_grad():
            layer.lora_A[ADAPTER].weight.copy_(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
            layer.lora_B[ADAPTER].weight.copy_(torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))
        if layer.scaling[ADAPTER] != scale:
            raise RuntimeError(f"{module}: PEFT's scaling {layer.scaling[ADAPTER]} is not {scale}")
        stem = target[: -len(".weight")]
        out[f"{role}/lora/{ADAPTER}/tensors/{stem}.lora_a"] = layer.lora_A[ADAPTER].weight
        out[f"{role}/lora/{ADAPTER}/tensors/{stem}.lora_b"] = layer.lora_B[ADAPTER].weight
        peft_keys[f"base_model.model.{module}.lora_A.weight"] = layer.lora_A[ADAPTER].weight
        peft_keys[f"base_model.model.{module}.lora_B.weight"] = layer.lora_B[ADAPTER].weight
    top.eval()
    return out, peft_keys, config


def adapters_of(top, role: str, exported: "Exported", stage_role: str, s: "StageSettings"):
    """The component's adapter as the stage runs it: for the stage's component its stored ``prima`` adapter
    (continued) or a new one (§5), trainable; for another component its stored ``prima`` adapter, frozen, or
    nothing. Returns (gradient paths → parameters, PEFT keys → parameters, LoraConfig), or None."""
    names = _loaded_by_type(top)
    stored = exported.adapters.get(role)
    if stored is not None:
        result = attach_stored_adapter(top, role, stored, names)
    elif role == stage_role:
        result = attach_stage_adapter(top, role, list(exported.hf_names[role]), names, s.rank, s.alpha, s.seed)
    else:
        return None
    for p in result[0].values():
        p.requires_grad_(role == stage_role)
    return result


# ---------------------------------------------------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------------------------------------------------
def decode_png(path: "os.PathLike | str") -> np.ndarray:
    """[h, w, 3] of a PNG, alpha discarded and grey replicated, as the Swift decoder gives them: float32 v / 257
    (the 0…255 scale) for 16 bits per sample; uint8 otherwise, through Pillow when it is installed, else by the
    plain reader of prima_ref.png (8-bit, non-interlaced grey / RGB / grey+alpha / RGBA; slow on large images)."""
    ihdr, idat = png.read_chunks(path)
    w, h, depth, ctype = ihdr[:4]
    channels = png.CHANNELS.get(ctype)
    if depth == 16 and channels is not None:
        from .prima import _read_png16

        samples = _read_png16(Path(path)).astype(np.float32)
        rgb = samples[..., :3] if channels >= 3 else np.repeat(samples[..., :1], 3, axis=2)
        return np.ascontiguousarray(rgb / np.float32(257))
    try:  # Pillow, when installed, decodes every other PNG to the same samples, faster (prima.load_image's rule)
        from PIL import Image

        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except ImportError:
        pass
    pixels = np.frombuffer(png.unfiltered(path, ihdr, idat), dtype=np.uint8).reshape(h, w, channels)
    rgb = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    return np.ascontiguousarray(rgb)


@dataclass
class Case:
    image: Path
    record: Dict[str, str]
    label: int
    patient: str
    lesion: str


def read_cases(folder: "os.PathLike | str", class_codes: Sequence[str], schema: Schema) -> List[Case]:
    """The folder's cases in metadata.csv order (every row usable: this trainer is for fixtures), each record kept
    to the schema's fields as TrainingCases keeps it."""
    folder = Path(folder)
    keys = {f.key for f in schema.fields}
    cases = []
    for line, row in enumerate(read_csv(folder / "metadata.csv"), start=2):
        missing = [k for k in ("img_id", "patient_id", "lesion_id", "diagnostic") if not row.get(k)]
        if missing:
            raise ValueError(f"{folder / 'metadata.csv'} line {line}: no {', '.join(missing)}")
        if row["diagnostic"] not in class_codes:
            raise ValueError(f"{folder / 'metadata.csv'} line {line}: diagnostic {row['diagnostic']!r} is not one of "
                             f"the checkpoint's classes {list(class_codes)}")
        record = {k: v for k, v in row.items() if k in keys}
        cases.append(Case(folder / "imgs" / row["img_id"], record, list(class_codes).index(row["diagnostic"]),
                          row["patient_id"], row["lesion_id"]))
    return cases


def split(cases: Sequence[Case], s: StageSettings, class_count: int) -> Tuple[List[int], List[int]]:
    """(training, validation) case positions of fold s.fold of s.folds (§3.2), ascending."""
    fold_of = td.folds([(c.patient, c.lesion, c.label) for c in cases], s.folds, s.grouping, s.seed, class_count)
    return [i for i, f in enumerate(fold_of) if f != s.fold], [i for i, f in enumerate(fold_of) if f == s.fold]


def alignment_examples(cases: Sequence[Case], positions: Sequence[int]) -> List[List[int]]:
    """Stage 2's examples (§3.3): one per lesion of `positions`, in order of the lesion's first position, each
    its images' positions ascending (the first gives the text and the soft target)."""
    order: "OrderedDict[Tuple[str, str], List[int]]" = OrderedDict()
    for position in sorted(positions):
        order.setdefault((cases[position].patient, cases[position].lesion), []).append(position)
    return list(order.values())


def case_pixels(case: Case, pre: td.Preprocessing, s: StageSettings, epoch: int, index: int, view: int = 0) -> np.ndarray:
    """[1, 3, H, W]: view `view` of the example `index` (its place among the training positions, or in the
    stage-2 example list) in `epoch`, augmented (§3.4)."""
    if not s.augmentation:
        raise NotImplementedError("the parity trainer augments, as prima-train's default")
    image = decode_png(case.image)
    draw = td.draw_view(image.shape[0], image.shape[1], s.seed, epoch, index, view)
    return td.apply_view(draw, image, pre)[None]


# ---------------------------------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------------------------------
def _load(exported: Exported, decoder_inputs: str = "image+metadata"):
    from .prima import PrimaReference

    ref = PrimaReference(exported.dirs["image_encoder"], exported.dirs["text_encoder"], exported.dirs["decoder"],
                         exported.heads, class_codes=exported.class_codes, prompt=exported.prompt,
                         answer_prefix=exported.answer_prefix, schema=Schema.from_json(exported.schema_json),
                         decoder_inputs=decoder_inputs)
    if list(ref.class_token_ids) != exported.class_token_ids:
        raise RuntimeError(f"class token ids {ref.class_token_ids} differ from the checkpoint's {exported.class_token_ids}")
    for module in (ref.image.top, ref.text.top, ref.decoder.top, ref.heads):
        for p in module.parameters():
            p.requires_grad_(False)
    return ref


def _loaded_by_type(top) -> "OrderedDict[str, Tuple[str, Tuple[int, ...]]]":
    """loaded_names of a loaded transformers module (its config's model_type names its tensors)."""
    class _Loaded:  # what loaded_names reads of a ReferenceModel
        pass

    loaded = _Loaded()
    loaded.top, loaded.model_type = top, top.config.model_type
    return loaded_names(loaded)


def loaded_names(ref_model) -> "OrderedDict[str, Tuple[str, Tuple[int, ...]]]":
    """Canonical name -> (parameter name in the loaded module, shape), through prima_ref.names (transformers may
    rename a checkpoint's keys on loading, e.g. DINOv3's ``layer.N`` to ``model.layer.N``)."""
    from .names import checkpoint_path

    out: "OrderedDict[str, Tuple[str, Tuple[int, ...]]]" = OrderedDict()
    for name, p in ref_model.top.named_parameters():
        canonical = checkpoint_path(ref_model.model_type, name).split("/tensors/", 1)[1]
        out[canonical] = (name, tuple(p.shape))
    return out


def _optimiser(trainable: "OrderedDict[str, object]", s: StageSettings, examples: int):
    """AdamW over the trainable tensors in path order, two groups (§2.3 `matrices`), and the schedule of §2.4:
    (optimizer, scheduler, total steps, warm-up steps)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    total = s.epochs * -(-examples // s.batch_size)
    warm = warmup_steps(s.warmup_ratio, total)
    decayed = [p for p in trainable.values() if p.dim() >= 2]
    plain = [p for p in trainable.values() if p.dim() < 2]
    optimizer = torch.optim.AdamW([dict(params=decayed, weight_decay=s.weight_decay), dict(params=plain, weight_decay=0.0)],
                                  lr=s.lr, betas=s.betas, eps=s.eps, foreach=False)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warm, num_training_steps=total), total, warm


def _optimiser_step(trainable, optimizer, scheduler, s: StageSettings, result: TrainResult, lr: float, loss: float) -> None:
    """Clipping (the pre-clip norm recorded), AdamW, the schedule's next rate, and the step's record."""
    import torch

    params = list(trainable.values())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=s.max_grad_norm) if s.max_grad_norm is not None else _norm(params)
    optimizer.step()
    scheduler.step()
    result.losses.append(float(np.float32(loss)))
    result.learning_rates.append(float(lr))
    result.gradient_norms.append(float(norm))
    result.step_ends.append(time.perf_counter())


def corpus_examples(path: "os.PathLike | str", tokenizer, max_length: int) -> List[Tuple[List[int], List[bool]]]:
    """(ids, special) of every corpus record (§3.6): its text encoded with special tokens, cut to max_length
    keeping the last id; special = added by the post-processor or an added token marked special."""
    special_ids = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip(" \t\r"):
            continue
        enc = tokenizer.encode(td.corpus_record_text(json.loads(line)), add_special_tokens=True)
        ids = list(enc.ids)
        special = [bool(m) or i in special_ids for m, i in zip(enc.special_tokens_mask, ids)]
        if len(ids) > max_length:
            ids, special = ids[:max_length - 1] + ids[-1:], special[:max_length - 1] + special[-1:]
        out.append((ids, special))
    return out


def _train_stage1(checkpoint, corpus, s: StageSettings, max_steps: Optional[int]) -> TrainResult:
    """Stage 1: the text encoder (BertForMaskedLM / ModernBertForMaskedLM from the checkpoint) with its LoRA and
    its masked-LM head (every stored mlm.* tensor but the tied decoder weight), the masked-LM cross-entropy summed
    over the step's masked tokens and divided by their count (§2.6)."""
    import torch
    import torch.nn.functional as F
    from safetensors.numpy import load_file
    from transformers import AutoModelForMaskedLM

    with tempfile.TemporaryDirectory(prefix="prima-train-ref-") as tmp:
        exported = export_checkpoint(checkpoint, tmp)
        top = AutoModelForMaskedLM.from_pretrained(str(exported.dirs["text_encoder"]), attn_implementation="eager",
                                                   dtype=torch.float32)
        tokenizer = _tokenizer(exported.dirs["text_encoder"])
        pad = _pad_id(exported.dirs)
        # The /prima heads, which stage 1 leaves as they are (save_outputs writes them for the import).
        prima_heads = OrderedDict((n, torch.from_numpy(v)) for n, v in sorted(load_file(str(exported.heads)).items()))
    top.eval()
    for p in top.parameters():
        p.requires_grad_(False)

    lora, peft_keys, config = adapters_of(top, "text_encoder", exported, "text_encoder", s)
    names = {n: h for n, (h, _) in _loaded_by_type(top).items()}
    params = dict(top.named_parameters())
    heads = OrderedDict((f"text_encoder/tensors/{n}", params[names[n]]) for n in exported.hf_names["text_encoder"]
                        if n.startswith("mlm.") and n in names)
    trainable = OrderedDict(sorted(list(lora.items()) + list(heads.items())))
    for p in trainable.values():
        p.requires_grad_(True)

    max_length = int(top.config.max_position_embeddings)
    examples = corpus_examples(corpus, tokenizer, max_length)
    vocabulary = tokenizer.get_vocab_size(with_added_tokens=True)
    mask_id = next(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special and t.content in ("[MASK]", "<mask>"))
    optimizer, scheduler, total, warm = _optimiser(trainable, s, len(examples))
    result = TrainResult(total_steps=total, warmup_steps=warm)
    steps = total if max_steps is None else min(max_steps, total)
    rank, world = _distributed()
    ddp = _distributed_masked_lm(top) if world > 1 else None
    for epoch in range(s.epochs):
        order = td.epoch_order(len(examples), s.seed, epoch)
        for start in range(0, len(order), s.batch_size):
            if len(result.losses) == steps:
                break
            batch = order[start:start + s.batch_size]
            masked = [td.mask_tokens(examples[i][0], examples[i][1], mask_id, vocabulary, s.seed, epoch, i) for i in batch]
            items = sum(sum(label != td.IGNORE_LABEL for label in m[1]) for m in masked)  # the step's masked tokens
            optimizer.zero_grad(set_to_none=False)
            lr = scheduler.get_last_lr()[0]
            if ddp is not None:
                step_loss = _distributed_masked_lm_step(ddp, masked, items, pad, rank, world)
            else:
                ids, attention, labels = _masked_lm_batch(masked, pad)
                logits = top(input_ids=ids, attention_mask=attention).logits  # (B, T, V)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                       ignore_index=td.IGNORE_LABEL, reduction="sum") / items
                loss.backward()
                step_loss = loss.detach().item()
            _optimiser_step(trainable, optimizer, scheduler, s, result, lr, step_loss)
    _finish(result, trainable, peft_keys, config, prima_heads)
    hf = exported.hf_names["text_encoder"]
    result.component_tensors = OrderedDict((hf[path.split("/tensors/", 1)[1]], result.tensors[path])
                                           for path in heads)
    return result


def _masked_lm_batch(masked, pad: int):
    """(ids, attention mask, labels) [B, T] int64 of masked examples (§3.9): right-padded with `pad`, labels −100."""
    import torch

    length = max(len(m[0]) for m in masked)
    ids = torch.tensor([m[0] + [pad] * (length - len(m[0])) for m in masked], dtype=torch.long)
    attention = torch.tensor([[1] * len(m[0]) + [0] * (length - len(m[0])) for m in masked], dtype=torch.long)
    labels = torch.tensor([m[1] + [td.IGNORE_LABEL] * (length - len(m[1])) for m in masked], dtype=torch.long)
    return ids, attention, labels


def _distributed_masked_lm(top):
    """Stage 1's masked-LM model (its LoRA and mlm.* head trainable) with the summed cross-entropy times a scale,
    in DistributedDataParallel (see ``_distributed_module``)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    class MaskedLMLoss(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids, attention, labels, scale: float):
            logits = self.model(input_ids=ids, attention_mask=attention).logits  # (B, T, V)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=td.IGNORE_LABEL, reduction="sum") * scale

    return DistributedDataParallel(MaskedLMLoss(top))


def _distributed_masked_lm_step(ddp, masked, items: int, pad: int, rank: int, world: int) -> float:
    """One step of stage 1: rank r takes the masked examples r, r + world, … (padded to its own longest), its
    summed cross-entropy times world / N (N the step's masked tokens, §2.6). Returns the step's loss."""
    import torch.distributed as dist

    mine = masked[rank::world]
    loss = ddp(*_masked_lm_batch(mine or masked[:1], pad), world / items if mine else 0.0)
    loss.backward()
    total = loss.detach().clone() / world
    dist.all_reduce(total)
    return total.item()


def _finish(result: TrainResult, trainable, peft_keys, config, heads) -> None:
    """The trained tensors by gradient path, the adapter in PEFT's form and the heads, as float32 arrays."""
    def values(p):
        return np.ascontiguousarray(p.detach().numpy(), dtype=np.float32)

    result.tensors = OrderedDict((path, values(p)) for path, p in trainable.items())
    result.adapter_state = OrderedDict((key, values(p)) for key, p in peft_keys.items())
    result.lora_config = config
    result.heads = OrderedDict((name, values(p)) for name, p in heads.items())


def save_outputs(result: TrainResult, out_dir: "os.PathLike | str") -> None:
    """OUT/adapter (PEFT's adapter_config.json and adapter_model.safetensors, for ``prima-convert lora-import``),
    OUT/heads.safetensors (every /prima head under its canonical name, trained or not, for ``prima-convert import
    --heads``), for stage 1 OUT/text_encoder.safetensors (the trained masked-LM head under its Hugging Face names,
    to replace in the exported text encoder's model.safetensors) and OUT/steps.json (the loss, learning rate and
    pre-clip norm of every step)."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    (out_dir / "adapter").mkdir(parents=True, exist_ok=True)
    result.lora_config.save_pretrained(str(out_dir / "adapter"))
    save_file(dict(result.adapter_state), str(out_dir / "adapter" / "adapter_model.safetensors"))
    if result.heads:
        save_file(dict(result.heads), str(out_dir / "heads.safetensors"))
    if result.component_tensors:
        save_file(dict(result.component_tensors), str(out_dir / "text_encoder.safetensors"))
    steps = dict(loss=result.losses, lr=result.learning_rates, grad_norm=result.gradient_norms,
                 total_steps=result.total_steps, warmup_steps=result.warmup_steps)
    (out_dir / "steps.json").write_text(json.dumps(steps, indent=1) + "\n", encoding="utf-8")


def train_stage(checkpoint: "os.PathLike | str", data: "os.PathLike | str", s: StageSettings,
                max_steps: Optional[int] = None) -> TrainResult:
    """Runs stage s.stage from `checkpoint` on `data` (the corpus for stage 1, a case folder for the others) for
    max_steps optimiser steps (None: all)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)  # nothing is drawn from torch; PEFT's own initialisation is overwritten
    if s.stage == "stage1":
        return _train_stage1(checkpoint, data, s, max_steps)
    with tempfile.TemporaryDirectory(prefix="prima-train-ref-") as tmp:
        exported = export_checkpoint(checkpoint, tmp)
        ref = _load(exported, s.decoder_inputs if s.stage == "stage3" else "image+metadata")
        text_tokenizer = _tokenizer(exported.dirs["text_encoder"])
        text_pad = _pad_id(exported.dirs)
    role = STAGE_ROLE[s.stage]
    for r, m in zip(ROLES, (ref.image, ref.text, ref.decoder)):
        attached = adapters_of(m.top, r, exported, role, s)
        if r == role:
            lora, peft_keys, config = attached
    prefix = {"stage2": "alignment.", "stage2b": "image_classifier.", "stage3": "fusion."}[s.stage]
    heads = OrderedDict((f"prima/tensors/{n}", p) for n, p in ref.heads.named_parameters() if n.startswith(prefix))
    trainable = OrderedDict(sorted(list(lora.items()) + list(heads.items())))  # Trainer's path order
    for p in trainable.values():
        p.requires_grad_(True)
    if not ref.uses_metadata:
        # The text projectors get no gradient from an image-only decoder; a zero one (kept by zero_grad(set_to_none=
        # False)) lets AdamW decay them as prima-train does, instead of skipping them.
        for p in trainable.values():
            p.grad = torch.zeros_like(p)

    schema = Schema.from_json(exported.schema_json)
    cases = read_cases(data, exported.class_codes, schema)
    training, _ = split(cases, s, len(exported.class_codes))
    weights = _class_weights(cases, training, s, len(exported.class_codes))
    examples_of_stage2 = alignment_examples(cases, training)
    count = len(examples_of_stage2) if s.stage == "stage2" else len(training)
    pre = preprocessing(exported.preprocessing)
    rank, world = _distributed()
    ddp = _distributed_module(s.stage, ref) if world > 1 else None
    optimizer, scheduler, total, warm = _optimiser(trainable, s, count)
    result = TrainResult(total_steps=total, warmup_steps=warm)
    max_length = int(ref.text.config.max_position_embeddings)
    steps = total if max_steps is None else min(max_steps, total)

    def case_text(case: Case) -> np.ndarray:
        return _text_ids(text_tokenizer, schema.render(case.record, str(case.image)), max_length)

    for epoch in range(s.epochs):
        order = td.epoch_order(count, s.seed, epoch)
        for start in range(0, len(order), s.batch_size):
            if len(result.losses) == steps:
                break
            examples = order[start:start + s.batch_size]
            optimizer.zero_grad(set_to_none=False)
            lr = scheduler.get_last_lr()[0]
            if s.stage == "stage2":
                batch = _alignment_batch(cases, examples_of_stage2, examples, pre, s, epoch, schema, exported,
                                         text_tokenizer, text_pad, max_length)
                if ddp is not None:
                    step_loss = _distributed_alignment(ddp, ref, batch, s, rank, world)
                else:
                    img = ref.image.top(pixel_values=torch.from_numpy(batch.pixels)).last_hidden_state  # (2N, 1+R+Np, Ci)
                    loss = _alignment_loss(ref, img, batch, s)
                    loss.backward()
                    step_loss = float(np.float32(loss.detach().item()))
            elif ddp is not None and s.stage == "stage2b":
                step_loss = _distributed_image_ce(ddp, cases, training, examples, pre, s, epoch, rank, world, weights)
            elif s.stage == "stage2b":
                pixels = np.concatenate([case_pixels(cases[training[i]], pre, s, epoch, i) for i in examples])
                labels = torch.tensor([cases[training[i]].label for i in examples], dtype=torch.long)
                img = ref.image.top(pixel_values=torch.from_numpy(pixels)).last_hidden_state  # (B, 1+R+Np, Ci)
                loss = F.cross_entropy(ref.heads.image_classifier(img[:, 0]), labels, weight=weights, reduction="mean")
                loss.backward()
                step_loss = float(np.float32(loss.detach().item()))
            elif ddp is not None:
                step_loss = _distributed_class_ce(ddp, cases, training, examples, pre, s, epoch, rank, world, weights, case_text)
            else:
                # The step's total weight: its case count, or Σ w_y (in double, as CaseObjective.lossWeight).
                total_weight = _weight_sum(cases, training, examples, weights)
                step_loss = 0.0
                for i in examples:
                    case = cases[training[i]]
                    logits = _class_logits(ref, case_pixels(case, pre, s, epoch, i), case_text(case))
                    ce = F.cross_entropy(logits, torch.tensor([case.label]), weight=weights, reduction="sum")  # w_y · l
                    (ce / total_weight).backward()
                    step_loss += float(np.float32(ce.detach().item())) / total_weight
            _optimiser_step(trainable, optimizer, scheduler, s, result, lr, step_loss)
    _finish(result, trainable, peft_keys, config, OrderedDict(ref.heads.named_parameters()))
    return result


def _class_weights(cases, training: Sequence[int], s: StageSettings, class_count: int):
    """§3.8's weights (float32 tensor [K]) of stages 2b and 3 with s.class_weights "balanced", else None."""
    import torch

    if s.class_weights == "none" or s.stage not in ("stage2b", "stage3"):
        return None
    if s.class_weights != "balanced":
        raise ValueError(f"class weights {s.class_weights!r} are not none or balanced")
    return torch.from_numpy(td.class_weights([cases[i].label for i in training], class_count))


def _weight_sum(cases, training, examples, weights) -> float:
    """A step's total loss weight (§2.6, §3.8): its case count, or Σ w_y in double in order (CaseObjective.lossWeight)."""
    if weights is None:
        return float(len(examples))
    return sum(float(weights[cases[training[i]].label]) for i in examples)


# ---------------------------------------------------------------------------------------------------------------------
# Beyond one machine: the stages under torchrun (DDP, gloo on CPU). N processes compute the single-process steps:
# every process builds the same model and draws the same data (every draw is keyed by example, §1), takes its share
# of each step's examples, and weights its loss so that DDP's average of the processes' gradients is the gradient of
# the whole step's loss (§2.6). A process left without an example (a short last step) runs the step's first one with
# weight 0, because every process must take part in every reduction.
# ---------------------------------------------------------------------------------------------------------------------
def _distributed() -> Tuple[int, int]:
    """(rank, world size) of a torch.distributed run (torchrun sets WORLD_SIZE; gloo, CPU), (0, 1) otherwise."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _distributed_module(stage: str, ref):
    """The stage's trained modules wrapped in DistributedDataParallel, which averages the gradients of the trainable
    parameters over the processes after backward (its initial broadcast from rank 0 changes nothing: every rank
    builds the same model). Stage 1 wraps the masked-LM model itself (``_train_stage1``); here: 2 the image encoder
    (whose hidden states the processes then all-gather), 2b the image encoder and classifier with the summed
    cross-entropy, 3 the fusion and the decoder with one case's cross-entropy."""
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    class AlignmentFeatures(torch.nn.Module):
        def __init__(self, image, alignment):
            # The projections are applied after the gather, outside forward; registered here so that DDP averages
            # their gradients too (the same on every rank: each computes the whole step's loss).
            super().__init__()
            self.image, self.alignment = image, alignment

        def forward(self, pixels):
            return self.image(pixel_values=pixels).last_hidden_state  # (B, 1+R+Np, Ci)

    class ImageClassifierLoss(torch.nn.Module):
        def __init__(self, image, classifier):
            super().__init__()
            self.image, self.classifier = image, classifier

        def forward(self, pixels, labels, scale: float, weight=None):
            img = self.image(pixel_values=pixels).last_hidden_state  # (B, 1+R+Np, Ci)
            return F.cross_entropy(self.classifier(img[:, 0]), labels, weight=weight, reduction="sum") * scale

    class ClassLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            fusion = ref.heads.fusion
            self.decoder = ref.decoder.top  # the trained parameters live here and in the fusion heads
            if ref.uses_metadata:
                self.fusion = fusion
            else:
                # An image-only decoder leaves the text projectors out of the loss. DDP refuses parameters that get
                # no gradient, so only the used heads are registered; the text projectors keep the zero gradient
                # ``_train`` gave them, the same on every rank, and AdamW decays them as prima-train does.
                self.image_cls_projector, self.image_seq_projector = fusion.image_cls_projector, fusion.image_seq_projector
                self.special_tokens = fusion.special_tokens

        def forward(self, pixels, ids, label, weight=None):
            logits = _class_logits(ref, pixels, ids)  # (1, K)
            return F.cross_entropy(logits, label, weight=weight, reduction="sum")  # w_y · l

    module = {"stage2": lambda: AlignmentFeatures(ref.image.top, ref.heads.alignment),
              "stage2b": lambda: ImageClassifierLoss(ref.image.top, ref.heads.image_classifier),
              "stage3": ClassLoss}[stage]()
    return DistributedDataParallel(module)


def _distributed_image_ce(ddp, cases, training, examples, pre, s: StageSettings, epoch: int, rank: int, world: int,
                          weights=None) -> float:
    """One step of stage 2b: rank r takes examples r, r + world, …; its loss is its summed (class-weighted)
    cross-entropy times world / N (N the step's examples, or their total class weight). Returns the step's loss,
    summed over the ranks."""
    import torch
    import torch.distributed as dist

    mine = examples[rank::world]
    scale = world / _weight_sum(cases, training, examples, weights) if mine else 0.0
    chosen = mine or examples[:1]
    pixels = np.concatenate([case_pixels(cases[training[i]], pre, s, epoch, i) for i in chosen])
    labels = torch.tensor([cases[training[i]].label for i in chosen], dtype=torch.long)
    loss = ddp(torch.from_numpy(pixels), labels, scale, weights)
    loss.backward()
    total = loss.detach().clone() / world
    dist.all_reduce(total)
    return float(np.float32(total.item()))


def _distributed_class_ce(ddp, cases, training, examples, pre, s: StageSettings, epoch: int, rank: int, world: int,
                          weights, case_text) -> float:
    """One step of stage 3: rank r takes cases r, r + world, … one at a time, each case's w_y · l times world / N
    (N the step's total weight); all but its last backward run under ``no_sync`` (the gradients add up locally),
    the last one reduces, so every rank reduces once per step. Returns the step's loss: each case's float32 loss
    · w_y / N, summed in double over the ranks."""
    import contextlib

    import torch
    import torch.distributed as dist

    mine = examples[rank::world]
    total_weight = _weight_sum(cases, training, examples, weights)
    scale = world / total_weight if mine else 0.0
    chosen = mine or examples[:1]
    local = 0.0
    for k, i in enumerate(chosen):
        case = cases[training[i]]
        with ddp.no_sync() if k < len(chosen) - 1 else contextlib.nullcontext():
            ce = ddp(case_pixels(case, pre, s, epoch, i), case_text(case), torch.tensor([case.label]), weights)
            (ce * scale).backward()
        local += float(np.float32(ce.detach().item())) / total_weight if mine else 0.0
    total = torch.tensor([local], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item())


def _distributed_alignment(ddp, ref, batch: "AlignmentBatch", s: StageSettings, rank: int, world: int) -> float:
    """One step of stage 2 with the features all-gathered, gradient included: rank r runs the image encoder on a
    contiguous chunk of the step's examples (both views), the ranks all-gather those hidden states
    (``torch.distributed.nn.functional.all_gather``, whose backward sums every rank's gradient of its copy back to
    the rank that computed it), and every rank computes the four alignment losses over the WHOLE step, with the
    frozen text encoder run on the whole step. So the contrastive negatives are the step's, as in one process:
    rank r's encoder gradient is world · ∂L/∂(its chunk), the projections' gradient ∂L/∂W on every rank, and DDP's
    average gives ∂L/∂θ exactly. Chunks are padded to the same size (all_gather needs equal shapes) and the padding
    dropped after the gather. Returns L (the same on every rank)."""
    import torch
    from torch.distributed.nn.functional import all_gather

    n = batch.count
    chunk = -(-n // world)
    counts = [max(0, min(chunk, n - r * chunk)) for r in range(world)]
    lo = rank * chunk
    mine = list(range(lo, lo + counts[rank]))
    views = [batch.pixels[v * n + i] for v in (0, 1) for i in (mine or [0])]  # view 0 of the chunk, then view 1
    hidden = ddp(torch.from_numpy(np.stack(views)))  # (2·n_r, 1+R+Np, Ci); without a chunk, none of it is used
    width = len(mine) or 1
    local = torch.stack([hidden[:width], hidden[width:]])[:, :counts[rank]]  # (2, n_r, T, Ci)
    pad = local.new_zeros((2, chunk - counts[rank]) + tuple(local.shape[2:]))
    gathered = all_gather(torch.cat([local, pad], dim=1))  # world × (2, chunk, T, Ci)
    img = torch.cat([torch.cat([g[v, :c] for g, c in zip(gathered, counts)]) for v in (0, 1)])  # (2N, T, Ci)
    loss = _alignment_loss(ref, img, batch, s)
    loss.backward()
    return float(np.float32(loss.detach().item()))


@dataclass
class AlignmentBatch:
    """Stage 2's inputs for the examples of a step (§3.3, §3.9): their views, texts and soft targets."""
    count: int
    pixels: np.ndarray  # (2N, 3, H, W): view 0 of every example, then view 1
    ids: np.ndarray  # (N, T) int64, padded with the text encoder's pad id
    mask: np.ndarray  # (N, T) int64
    soft_targets: np.ndarray  # (N, D) float32


def _alignment_batch(cases, stage_examples, indices, pre, s: StageSettings, epoch: int, schema: Schema,
                     exported: Exported, tokenizer, pad: int, max_length: int) -> AlignmentBatch:
    """Stage 2's batch of the examples `indices`: views picked (§3.3) and augmented (part = the view), view 0 of
    every example then view 1; the text and soft target of each example's first image."""
    picks = [td.pick_views(stage_examples[i], s.seed, epoch, i) for i in indices]
    pixels = np.concatenate([case_pixels(cases[pair[view]], pre, s, epoch, i, view)
                             for view in (0, 1) for i, pair in zip(indices, picks)])
    records = [cases[stage_examples[i][0]].record for i in indices]
    texts = [_text_ids(tokenizer, schema.render(r), max_length)[0] for r in records]
    length = max(len(t) for t in texts)
    ids = np.array([list(t) + [pad] * (length - len(t)) for t in texts], dtype=np.int64)
    mask = np.array([[1] * len(t) + [0] * (length - len(t)) for t in texts], dtype=np.int64)
    parsed = [schema.parse(c.record) for c in cases]
    blocks = td.soft_target_blocks(schema, exported.class_codes, parsed, labels_only=s.soft_labels_only)
    y = np.stack([td.soft_target_vector(blocks, schema.parse(r)) for r in records])
    return AlignmentBatch(count=len(indices), pixels=pixels, ids=ids, mask=mask, soft_targets=y)


def _alignment_loss(ref, img, batch: AlignmentBatch, s: StageSettings):
    """Stage 2's weighted sum of the four alignment terms (Formats/prima-trace.md §11.11) from the image encoder's
    hidden states `img` (2N, 1+R+Np, Ci) of the batch's views; the text encoder frozen."""
    import torch

    from .prima_grad import alignment_loss_terms

    with torch.no_grad():
        txt = ref.text.top(input_ids=torch.from_numpy(batch.ids), attention_mask=torch.from_numpy(batch.mask)).last_hidden_state
    al = ref.heads.alignment
    g, q = al.image_proj(img[:, 0]), al.text_proj(txt[:, 0])
    p, t = al.image_proj(img[:, 1 + ref.num_registers:]), al.text_proj(txt)
    terms = alignment_loss_terms(g, q, p, t, batch.mask.sum(axis=1), torch.from_numpy(batch.soft_targets), s.tau,
                                 s.tau_label, s.loc_mode)
    w = s.loss_weights
    return w[0] * terms["img"] + w[1] * terms["glo"] + w[2] * terms["loc"] + w[3] * terms["soft"]


def _pad_id(dirs: Dict[str, Path]) -> int:
    """The text encoder tokenizer's padding id (tokenizer.json's padding.pad_id), 0 without one, as CaseContext."""
    padding = json.loads((dirs["text_encoder"] / "tokenizer.json").read_text(encoding="utf-8")).get("padding")
    return int(padding["pad_id"]) if padding else 0


def _norm(params):
    import torch

    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))


def _tokenizer(model_dir: Path):
    """The component's tokenizer.json as the `tokenizers` library reads it, its own padding and truncation off."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _text_ids(tokenizer, text: str, max_length: int) -> np.ndarray:
    """[1, T] int64: the text with special tokens, longer than max_length cut to its first max − 1 ids and the
    last (§3.6, as prima-diagnose)."""
    ids = tokenizer.encode(text, add_special_tokens=True).ids
    if len(ids) > max_length:
        ids = ids[:max_length - 1] + ids[-1:]
    return np.asarray([ids], dtype=np.int64)


def _class_logits(ref, pixels: np.ndarray, ids: np.ndarray):
    """(1, K): the §10 pipeline of one case (Formats/prima-trace.md), as PrimaReference runs it, with autograd; the
    text encoder and the text projectors only when ``ref.decoder_inputs`` reads the metadata."""
    import torch

    from .prima import decoder_sequence

    img = ref.image.top(pixel_values=torch.from_numpy(pixels)).last_hidden_state  # (1, 1+R+Np, Ci)
    h, w = pixels.shape[2] // ref.patch_size, pixels.shape[3] // ref.patch_size
    cls_i, patches = img[:, 0], img[:, 1 + ref.num_registers:]
    f = ref.heads.fusion
    text_cls = text_seq = None
    if ref.uses_metadata:
        t_ids = torch.from_numpy(ids)
        txt = ref.text.top(input_ids=t_ids, attention_mask=torch.ones_like(t_ids)).last_hidden_state  # (1, T, Ct)
        n = ids.shape[1]
        cls_t, seq_t = txt[:, 0], txt[:, 1:max(1, n - 1)]
        text_cls, text_seq = f.text_cls_projector(cls_t), f.text_seq_projector(seq_t)
    top = ref.decoder.top
    emb = top.get_input_embeddings().weight
    st = f.special_tokens[:, None, :]
    prompt = emb[torch.tensor(ref.prompt_ids, dtype=torch.long)][None]
    answer = emb[torch.tensor(ref.answer_prefix_ids, dtype=torch.long)][None]
    embeds = torch.cat(decoder_sequence(prompt, st, f.image_cls_projector(cls_i), f.image_seq_projector(patches, h, w),
                                        text_cls, text_seq, answer, ref.decoder_inputs), dim=1)
    out = top.model(inputs_embeds=embeds, attention_mask=torch.ones((1, embeds.shape[1]), dtype=torch.long),
                    use_cache=False)
    final = out.last_hidden_state[:, -1]  # (1, D), after the final norm
    return top.lm_head(final)[:, torch.tensor(ref.class_token_ids, dtype=torch.long)]


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m prima_ref.train STAGE --checkpoint IN.h5 --data DIR|CORPUS -o OUT_DIR …``, or under
    ``torchrun --nproc_per_node N -m prima_ref.train STAGE …`` (any stage; DDP on gloo, CPU): trains and writes
    ``save_outputs``'s files from rank 0."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m prima_ref.train", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=sorted(STAGE_ROLE))
    p.add_argument("--checkpoint", required=True, help="the PRIMA checkpoint (.h5, float32)")
    p.add_argument("--data", required=True, help="the case folder, or the corpus for stage1")
    p.add_argument("-o", "--output", required=True, help="the directory of the outputs")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--weight-decay", type=float, required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--alpha", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--patient-split", action="store_true")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                   help="class weights in the cross-entropy of stages 2b and 3 (§3.8)")
    p.add_argument("--no-metadata", action="store_true",
                   help="stage 3: leave the metadata out of the decoder's input (decoder_inputs \"image\")")
    p.add_argument("--max-steps", type=int, help="stop after this many steps of the stage's schedule")
    p.add_argument("--threads", type=int, default=1, help="torch's intra-op threads (default 1: the fixtures' setting)")
    args = p.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    s = StageSettings(stage=args.stage, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, rank=args.rank, alpha=args.alpha or 2.0 * args.rank,
                      seed=args.seed, max_grad_norm=args.max_grad_norm or None, folds=args.folds, fold=args.fold,
                      grouping="patient" if args.patient_split else "lesion", class_weights=args.class_weights,
                      decoder_inputs="image" if args.no_metadata else "image+metadata")
    try:
        result = train_stage(args.checkpoint, args.data, s, max_steps=args.max_steps)
    except (OSError, ValueError, KeyError) as e:
        print(f"python -m prima_ref.train: {e}", file=sys.stderr)
        return 2
    rank, _ = _distributed()
    if rank == 0:
        save_outputs(result, args.output)
        ends = result.step_ends
        for k, (loss, lr, norm) in enumerate(zip(result.losses, result.learning_rates, result.gradient_norms)):
            seconds = ends[k] - ends[k - 1] if k > 0 else float("nan")
            print(f"step {k + 1}/{result.total_steps}: loss {loss:.6f} lr {lr:.3e} grad_norm {norm:.4f} seconds {seconds:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
