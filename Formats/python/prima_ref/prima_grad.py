"""Gradient traces of the PRIMA pipeline (Formats/prima-trace.md §11.10-§11.11, component ``prima``).

Objective ``class_ce`` (stage 3): the cross-entropy of the restricted class logits of §10 against a class index.
``compute_class_ce`` runs the §10 pipeline of a ``PrimaReference`` with autograd (the same arithmetic as
``PrimaReference._run``, written once more with gradients kept: encoders, heads, assembled decoder input, decoder,
class logits), and ``write_class_ce_trace`` writes the version-2 trace.

Objectives ``image_ce`` (stage 2b) and ``alignment`` (stage 2), §11.11: a batch of cases through the encoders and
the heads that read them (the decoder is not run). ``compute_image_ce`` is the image classifier's mean cross-entropy
over B images; ``compute_alignment`` the weighted sum of L_img, L_glo, L_loc (attention or direct) and L_soft over
N cases with two views each (``alignment_loss_terms``, checked against ``explicit_alignment_terms`` in float64);
``write_batch_trace`` writes either (alignment with ``/loss_terms`` and the root attributes tau, tau_label,
loss_weights, loc_mode); ``validate_batch_trace`` is what ``prima_ref.read_trace`` checks of them. ``attach_lora``
puts a PEFT adapter on an encoder as prima_ref.grad does for component traces.

Trainable tensors are named by their checkpoint paths: ``prima/tensors/NAME`` for the heads (§8 canonical names),
``ROLE/tensors/NAME`` and ``ROLE/lora/ADAPTER/tensors/STEM.lora_a|lora_b`` for the three components' tensors.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .grad import (
    GRAD_TRACE_VERSION,
    ZERO_GRADIENT_RE,
    GradientRun,
    _write_grad_h5,
    apply_lora_adapter,
    explicit_cross_entropy,
    float64_everywhere,
)
from .names import checkpoint_path
from .trace import validate_inputs, validate_prima_inputs

PRODUCER = "prima_ref.prima_grad"


def validate_class_ce_inputs(inputs: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """The six §10.2 inputs, then ``labels``: int64 (1,), the class index 0 <= y < K."""
    base = validate_prima_inputs({k: v for k, v in inputs.items() if k != "labels"})
    if "labels" not in inputs:
        raise ValueError("class_ce needs /inputs/labels")
    base["labels"] = class_labels(inputs["labels"], base["pixel_values"].shape[0], base["class_token_ids"].shape[0])
    return base


def class_labels(labels, batch: int, k: Optional[int]) -> np.ndarray:
    """int64 (B,) class indices 0 <= y < K (K None: only y >= 0 is checked)."""
    labels = np.asarray(labels)
    if labels.dtype != np.int64 or labels.shape != (batch,):
        raise ValueError(f"labels must be int64 of shape (B,) = ({batch},), got {labels.dtype} {labels.shape}")
    if not ((labels >= 0) & (labels < (k if k is not None else 2**62))).all():
        raise ValueError(f"labels {labels.tolist()} must be class indices in 0..{k - 1 if k is not None else 'K-1'}")
    return np.ascontiguousarray(labels, dtype="<i8")


def heads_paths(heads) -> "OrderedDict[str, Any]":
    """prima/tensors/NAME -> parameter, for every head parameter (named_parameters names are §8's)."""
    return OrderedDict((f"prima/tensors/{n}", p) for n, p in heads.named_parameters())


def component_paths(ref_model) -> "OrderedDict[str, Any]":
    """ROLE/tensors/NAME -> parameter of a loaded ReferenceModel (ties under the stored name)."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    seen = {}
    for name, p in ref_model.top.named_parameters(remove_duplicate=False):
        path = checkpoint_path(ref_model.model_type, name)
        if id(p) in seen:
            if path.endswith(("/lm_head.weight", "/mlm.decoder.weight")):
                continue  # a tied alias: the gradient is the stored tensor's
            raise RuntimeError(f"{name} shares a parameter with {seen[id(p)]}")
        seen[id(p)] = path
        out[path] = p
    return out


class _Recorder:
    """The named activations of one autograd forward pass (trace name -> tensor, and its hf_module)."""

    def __init__(self):
        self.acts: "OrderedDict[str, Any]" = OrderedDict()
        self.origins: Dict[str, str] = {}

    def keep(self, name, t, origin):
        """Record t; it gets its gradient (retain_grad, or it becomes a leaf that requires grad when nothing before
        it trains, e.g. a frozen encoder's embeddings)."""
        if t.requires_grad:
            t.retain_grad()
        else:
            t.requires_grad_(True)
        self.acts[name] = t
        self.origins[name] = origin
        return t

    def hooked(self, part, ref_model, call):
        """call() (a forward of ref_model.top) with the §5 hook points of ref_model recorded as PART.NAME. A LoRA
        adapter injected by PEFT leaves the module paths unchanged (attach_lora)."""
        import torch

        by_module: "OrderedDict[str, List[str]]" = OrderedDict()
        for n, path in ref_model.points:
            by_module.setdefault(path, []).append(n)

        def make_hook(names):
            def hook(_m, _a, out):
                t = out if torch.is_tensor(out) else out[0]
                for n in names:
                    self.keep(f"{part}.{n}", t, f"{part}:{ref_model.module_path(n)}")

            return hook

        handles = [ref_model.top.get_submodule(p).register_forward_hook(make_hook(ns)) for p, ns in by_module.items()]
        try:
            return call()
        finally:
            for h in handles:
                h.remove()


def _trainable_parameters(ref, trainable: Sequence[str]):
    """(checkpoint path -> parameter, checkpoint path -> PyTorch name) over the three components and the heads;
    requires_grad set on exactly the trainable paths (unknown paths raise)."""
    paths = OrderedDict()
    paths.update(component_paths(ref.image))
    paths.update(component_paths(ref.text))
    paths.update(component_paths(ref.decoder))
    paths.update(heads_paths(ref.heads))
    param_names = {p: n for p, n in zip(heads_paths(ref.heads), (n for n, _ in ref.heads.named_parameters()))}
    for ref_model in (ref.image, ref.text, ref.decoder):
        by_id = {id(p): n for n, p in ref_model.top.named_parameters()}
        param_names.update({p: by_id[id(t)] for p, t in component_paths(ref_model).items()})
    unknown = [p for p in trainable if p not in paths]
    if unknown:
        raise ValueError(f"trainable paths not in the model: {unknown}")
    for p, param in paths.items():
        param.requires_grad_(p in trainable)
        param.grad = None
    return paths, param_names


def _gradient_run(rec: _Recorder, loss, paths, param_names, trainable: Sequence[str], dtype, inputs,
                  loss_terms=None) -> GradientRun:
    """After backward: the activations and their gradients (all zeros where the loss does not reach), the trainable
    tensors' gradients (an empty tensor or one without a gradient is listed in meta["excluded"]), as numpy."""
    import torch

    np_dt = "<f4" if dtype == torch.float32 else "<f8"
    activations, activation_gradients = OrderedDict(), OrderedDict()
    for name, t in rec.acts.items():
        a = np.ascontiguousarray(t.detach().numpy(), dtype=np_dt)
        activations[name] = a
        g = t.grad
        activation_gradients[name] = np.zeros_like(a) if g is None else np.ascontiguousarray(g.numpy(), dtype=np_dt)
    gradients, hf_names, excluded = OrderedDict(), {}, []
    for p in trainable:
        param = paths[p]
        if param.grad is None or param.numel() == 0:
            excluded.append(p)
            continue
        gradients[p] = np.ascontiguousarray(param.grad.numpy(), dtype=np_dt)
        hf_names[p] = param_names[p]
        param.grad = None
    for a in list(activations.values()) + list(activation_gradients.values()) + list(gradients.values()):
        if not np.isfinite(a).all():
            raise RuntimeError("non-finite activation or gradient")
    return GradientRun(loss=float(loss.detach()), activations=activations, activation_gradients=activation_gradients,
                       gradients=gradients, hf_names=hf_names, origins=rec.origins,
                       meta={"trainable": "list", "excluded": excluded, "inputs": inputs}, loss_terms=loss_terms)


def _run_encoders(rec: _Recorder, ref, inputs, dtype, text: bool = True):
    """Both encoders (the image encoder alone when not `text`) on the whole batch with their activations recorded:
    (pixel_values tensor, image final_norm, text final_norm or None)."""
    import torch

    pv = torch.from_numpy(inputs["pixel_values"]).to(dtype)
    rec.hooked("image_encoder", ref.image, lambda: ref.image.top(pixel_values=pv))
    if not text:
        return pv, rec.acts["image_encoder.final_norm"], None
    ids = torch.from_numpy(inputs["input_ids"])
    mask = torch.from_numpy(inputs["attention_mask"])
    rec.hooked("text_encoder", ref.text, lambda: ref.text.top(input_ids=ids, attention_mask=mask))
    return pv, rec.acts["image_encoder.final_norm"], rec.acts["text_encoder.final_norm"]


def _widened(dtype):
    import torch

    return float64_everywhere() if dtype == torch.float64 else contextlib.nullcontext()


def compute_class_ce(ref, inputs: Mapping[str, Any], trainable: Sequence[str], dtype=None) -> GradientRun:
    """Forward + backward of class_ce on the pipeline of ``ref`` (a PrimaReference, modules converted to ``dtype``
    by the caller). ``trainable``: checkpoint paths. Activations off the loss path (alignment.*,
    image_classifier.logits, class_probs) get an all-zero gradient. With ``ref.decoder_inputs`` "image" the text
    encoder and the text heads do not run (their activations are absent)."""
    import torch
    import torch.nn.functional as F

    dtype = torch.float32 if dtype is None else dtype
    inputs = validate_class_ce_inputs(inputs)
    paths, param_names = _trainable_parameters(ref, trainable)
    rec = _Recorder()
    acts, keep = rec.acts, rec.keep

    with torch.enable_grad(), _widened(dtype):
        from .prima import decoder_sequence

        text = ref.uses_metadata
        pv, img, txt = _run_encoders(rec, ref, inputs, dtype, text=text)
        h, w = pv.shape[2] // ref.patch_size, pv.shape[3] // ref.patch_size
        cls_i, patches = img[:, 0], img[:, 1 + ref.num_registers:]
        if text:
            n = int(inputs["attention_mask"][0].sum())
            cls_t, seq_t = txt[:, 0], txt[:, 1:max(1, n - 1)]
        hd = ref.heads
        keep("alignment.image_global", hd.alignment.image_proj(cls_i), "heads:alignment.image_proj(image CLS)")
        if text:
            keep("alignment.text_global", hd.alignment.text_proj(cls_t), "heads:alignment.text_proj(text CLS)")
        keep("alignment.image_local", hd.alignment.image_proj(patches), "heads:alignment.image_proj(patches)")
        if text:
            keep("alignment.text_local", hd.alignment.text_proj(seq_t), "heads:alignment.text_proj(text tokens)")
        keep("image_classifier.logits", hd.image_classifier(cls_i), "heads:image_classifier(image CLS)")
        f = hd.fusion
        image_cls = keep("fusion.image_cls", f.image_cls_projector(cls_i), "heads:fusion.image_cls_projector")
        image_seq = keep("fusion.image_seq", f.image_seq_projector(patches, h, w), "heads:fusion.image_seq_projector")
        text_cls = text_seq = None
        if text:
            text_cls = keep("fusion.text_cls", f.text_cls_projector(cls_t), "heads:fusion.text_cls_projector")
            text_seq = keep("fusion.text_seq", f.text_seq_projector(seq_t), "heads:fusion.text_seq_projector")
        top = ref.decoder.top
        emb = top.get_input_embeddings().weight
        st = f.special_tokens[:, None, :]
        prompt = emb[torch.from_numpy(inputs["prompt_ids"][0])][None]
        answer = emb[torch.from_numpy(inputs["answer_prefix_ids"][0])][None]
        embeds = torch.cat(decoder_sequence(prompt, st, image_cls, image_seq, text_cls, text_seq, answer,
                                            ref.decoder_inputs), dim=1)
        keep("decoder.embeddings", embeds, "decoder:inputs_embeds (assembled, Formats/prima-trace.md §10)")
        points = [(f"decoder.layers.{i}", f"model.layers.{i}") for i in range(ref.decoder.num_layers)]
        points.append(("decoder.final_norm", "model.norm"))

        def make_hook(name, path):
            def hook(_m, _a, out):
                keep(name, out if torch.is_tensor(out) else out[0], f"decoder:{path}")

            return hook

        handles = [top.get_submodule(p).register_forward_hook(make_hook(nm, p)) for nm, p in points]
        try:
            ones = torch.ones((1, embeds.shape[1]), dtype=torch.long)
            out = top(inputs_embeds=embeds, attention_mask=ones, use_cache=False)
        finally:
            for hnd in handles:
                hnd.remove()
        final = acts["decoder.final_norm"]
        cids = torch.from_numpy(inputs["class_token_ids"])
        class_logits = keep("class_logits", top.lm_head(final[:, -1])[:, cids],
                            "decoder:lm_head(final_norm[:, -1])[class_token_ids]")
        if not torch.allclose(class_logits, out.logits[:, -1, cids], rtol=0, atol=1e-5):
            raise RuntimeError("lm_head on the last position differs from the model's logits")
        keep("class_probs", F.softmax(class_logits, dim=-1), "softmax(class_logits)")
        labels = torch.from_numpy(inputs["labels"])
        loss = F.cross_entropy(class_logits, labels, reduction="mean")
        z = class_logits.detach().double().numpy()[0]
        y = int(inputs["labels"][0])
        explicit = float(np.log(np.exp(z - z.max()).sum()) + z.max() - z[y])
        if not abs(float(loss.detach()) - explicit) <= 1e-5 * abs(explicit):
            raise RuntimeError(f"loss {float(loss.detach())!r} differs from §11.10's formula ({explicit!r})")
        loss.backward()
    return _gradient_run(rec, loss, paths, param_names, trainable, dtype, inputs)


def stage3_trainable(ref, decoder: str = "full") -> List[str]:
    """Stage 3's trainable set without an adapter: the fusion heads (the four projectors and the special tokens;
    the two image projectors and the special tokens when ``ref.decoder_inputs`` is "image", the text projectors
    then getting no gradient) and, with decoder="full", every decoder tensor."""
    paths = [p for p in heads_paths(ref.heads) if p.startswith("prima/tensors/fusion.")
             and (ref.uses_metadata or not p.startswith("prima/tensors/fusion.text_"))]
    if decoder == "full":
        paths += list(component_paths(ref.decoder))
    return paths


def write_class_ce_trace(ref, out_path, inputs: Mapping[str, Any], trainable: Sequence[str], *, source: str,
                         input_recipe: Optional[Mapping[str, Any]] = None) -> GradientRun:
    """Run class_ce on the pipeline and write the version-2 prima trace."""
    run = compute_class_ce(ref, inputs, trainable)
    _write_pipeline_trace(ref, out_path, "class_ce", run, source, input_recipe, OrderedDict())
    return run


def _write_pipeline_trace(ref, out_path, objective: str, run: GradientRun, source: str,
                          input_recipe: Optional[Mapping[str, Any]], extra: Mapping[str, Any]) -> None:
    """The root attributes of a prima gradient trace (objective, trainable, then ``extra``), then the file."""
    head: "OrderedDict[str, Any]" = OrderedDict(objective=objective, trainable="list")
    head.update(extra)
    attrs = ref.trace_attrs(GRAD_TRACE_VERSION, source, PRODUCER, input_recipe, head)
    _write_grad_h5(Path(out_path), attrs, run.meta["inputs"], run)
    run.meta["attrs"] = dict(attrs)


# ---------------------------------------------------------------------------------------------------------------------
# Batches of cases: image_ce (stage 2b) and alignment (stage 2), Formats/prima-trace.md §11.11
# ---------------------------------------------------------------------------------------------------------------------
IMAGE_CE_INPUTS = ("pixel_values", "labels")
ALIGNMENT_INPUTS = ("pixel_values", "input_ids", "attention_mask", "soft_targets")
LOC_MODES = ("attention", "direct")
NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's default, the eps of n(x) in §11.11
# DINOv3's mask_token: no mask is applied, so the loss does not depend on it (§11.6's `full` rules).
UNUSED_TENSORS = ("/embed.mask_token",)


def attach_lora(ref_model, adapter_dir, adapter_name: str = "default") -> None:
    """Apply a PEFT LoRA adapter to a component of a PrimaReference as prima_ref.grad does for component traces
    (PeftModel.from_pretrained(..., is_trainable=True) on the module the adapter's keys fit, every LoRA matrix
    checked bit for bit). The layers are injected in place: the hook points keep their paths, and the matrices are
    named ROLE/lora/ADAPTER/tensors/STEM.lora_a|lora_b by component_paths."""
    base_prefix = "model." if ref_model.model_type == "qwen3" else ""
    apply_lora_adapter(ref_model.top, ref_model.base, base_prefix, adapter_dir, adapter_name)
    ref_model.top.eval()
    ref_model.adapter_dir, ref_model.adapter_name = Path(adapter_dir), adapter_name


def lora_trainable(ref_model, adapter_name: str = "default") -> List[str]:
    """The LoRA matrices of one component's adapter."""
    return [p for p in component_paths(ref_model) if f"/lora/{adapter_name}/" in p]


def full_trainable(ref_model) -> List[str]:
    """§11.6's `full` set of one component: every base tensor except empty ones, the attention key biases and the
    tensors the loss does not depend on."""
    return [p for p, t in component_paths(ref_model).items()
            if "/lora/" not in p and t.numel() > 0 and not ZERO_GRADIENT_RE.search(p) and not p.endswith(UNUSED_TENSORS)]


def validate_image_ce_inputs(inputs: Mapping[str, Any], num_classes: Optional[int] = None) -> "OrderedDict[str, np.ndarray]":
    """pixel_values (B, 3, H, W) float32, then labels int64 (B,), class indices 0 <= y < K."""
    if set(inputs) != set(IMAGE_CE_INPUTS):
        raise ValueError(f"image_ce inputs must be exactly {list(IMAGE_CE_INPUTS)}, got {sorted(inputs)}")
    out = validate_inputs("image_encoder", {"pixel_values": inputs["pixel_values"]})
    out["labels"] = class_labels(inputs["labels"], out["pixel_values"].shape[0], num_classes)
    return out


def validate_alignment_inputs(inputs: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """pixel_values (2N, 3, H, W) (view 1 of the N cases, then view 2), input_ids and attention_mask (N, T)
    right-padded with every n_i >= 3, soft_targets float32 (N, D) finite."""
    if set(inputs) != set(ALIGNMENT_INPUTS):
        raise ValueError(f"alignment inputs must be exactly {list(ALIGNMENT_INPUTS)}, got {sorted(inputs)}")
    out = validate_inputs("image_encoder", {"pixel_values": inputs["pixel_values"]})
    out.update(validate_inputs("text_encoder", {k: inputs[k] for k in ("input_ids", "attention_mask")}))
    n = out["input_ids"].shape[0]
    if out["pixel_values"].shape[0] != 2 * n:
        raise ValueError(f"pixel_values has {out['pixel_values'].shape[0]} images; alignment needs 2N = {2 * n} "
                         f"(two views of each of the N = {n} cases of input_ids)")
    lengths = out["attention_mask"].sum(axis=1)
    for i, length in enumerate(lengths.tolist()):
        if length < 3:
            raise ValueError(f"attention_mask row {i} has n = {length} real tokens; alignment needs n_i >= 3 "
                             "(at least one local token between [CLS] and the final [SEP])")
    y = inputs["soft_targets"]
    y = np.asarray(y.detach().numpy() if hasattr(y, "detach") else y)
    if y.dtype != np.float32 or y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
        raise ValueError(f"soft_targets must be float32 (N, D) with N = {n}, D >= 1, got {y.dtype} {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("soft_targets has non-finite values")
    out["soft_targets"] = np.ascontiguousarray(y, dtype="<f4")
    return out


def alignment_settings(attrs: Mapping[str, Any]) -> "OrderedDict[str, Any]":
    """The root attributes the alignment loss reads: tau, tau_label (> 0), loss_weights (4,) finite >= 0,
    loc_mode attention|direct; returned as written (float64, float64 (4,), str)."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    for name in ("tau", "tau_label"):
        if name not in attrs:
            raise ValueError(f"alignment needs the root attribute {name} (float64 > 0)")
        v = attrs[name]
        if isinstance(v, (bool, str, bytes)) or np.ndim(v) != 0 or not np.isfinite(float(v)) or not float(v) > 0:
            raise ValueError(f"root attribute {name} must be a finite float64 > 0, got {v!r}")
        out[name] = np.float64(v)
    if "loss_weights" not in attrs:
        raise ValueError("alignment needs the root attribute loss_weights (float64 (4,): img, glo, loc, soft)")
    w = np.asarray(attrs["loss_weights"])
    if w.shape != (4,) or not np.issubdtype(w.dtype, np.floating) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"root attribute loss_weights must be 4 finite float64 values >= 0, got {w.tolist()!r}")
    out["loss_weights"] = np.ascontiguousarray(w, dtype="<f8")
    mode = attrs.get("loc_mode")
    if isinstance(mode, bytes):
        mode = mode.decode("utf-8")
    if mode is None:
        raise ValueError(f"alignment needs the root attribute loc_mode ({' or '.join(LOC_MODES)})")
    if mode not in LOC_MODES:
        raise ValueError(f"root attribute loc_mode {mode!r} is not one of {list(LOC_MODES)}")
    out["loc_mode"] = str(mode)
    return out


def batch_activation_names(objective: str, names: Sequence[str]) -> List[str]:
    """The activations of an image_ce / alignment trace, in order (§11.11), with the layer counts (1 + the largest N
    of each part's layers.N) and the BERT pooler taken from the names present."""
    import re

    def part(p):
        rx = re.compile(rf"{p}\.layers\.(0|[1-9][0-9]*)")
        ns = [int(m.group(1)) for m in map(rx.fullmatch, names) if m]
        return [f"{p}.embeddings"] + [f"{p}.layers.{i}" for i in range(max(ns) + 1 if ns else 1)] + [f"{p}.final_norm"]

    if objective == "image_ce":
        return part("image_encoder") + ["image_classifier.logits"]
    out = part("image_encoder") + part("text_encoder")
    if "text_encoder.pooler" in names:
        out.append("text_encoder.pooler")
    return out + ["alignment.image_global", "alignment.text_global", "alignment.image_local", "alignment.text_local"]


def validate_batch_trace(objective: str, inputs: Mapping[str, Any], acts: Mapping[str, np.ndarray],
                         attrs: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """What prima_ref.read_trace checks of an image_ce / alignment trace beyond the common v2 parts: the inputs and
    their rules, the activation names, order and leading shapes, and (alignment) the loss's root attributes."""
    expected = batch_activation_names(objective, list(acts))
    if list(acts) != expected:
        raise ValueError(f"/activations of an {objective} trace must be {expected} in order, got {list(acts)}")
    if objective == "image_ce":
        logits = acts["image_classifier.logits"]
        out = validate_image_ce_inputs(inputs, logits.shape[-1] if logits.ndim == 2 else None)
        b = out["pixel_values"].shape[0]
        want = {"image_classifier.logits": (b, None)}
    else:
        out = validate_alignment_inputs(inputs)
        alignment_settings(attrs)
        n, t = out["input_ids"].shape
        want = {"alignment.image_global": (2 * n, None), "alignment.text_global": (n, None),
                "alignment.image_local": (2 * n, None, None), "alignment.text_local": (n, t, None)}
        for name in expected:
            if name == "text_encoder.pooler":
                want[name] = (n, None)
            elif name.startswith("text_encoder."):
                want[name] = (n, t, None)
    b = out["pixel_values"].shape[0]
    for name in expected:
        if name.startswith("image_encoder."):
            want[name] = (b, None, None)
    for name, shape in want.items():
        a = acts[name]
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            raise ValueError(f"activation {name} has shape {a.shape}, expected {tuple('*' if s is None else s for s in shape)}")
    return out


def _logsumexp_rows(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]


def explicit_alignment_terms(g, q, p, t, lengths, y, tau: float, tau_label: float, loc_mode: str) -> "OrderedDict[str, float]":
    """The four terms of §11.11 in float64 numpy, written out independently of the torch code (an explicit check):
    g image_global (2N, d), q text_global (N, d), p image_local (2N, Np, d), t text_local (N, T, d), lengths n_i,
    y soft_targets (N, D)."""
    g, q, p, t, y = (np.asarray(a, dtype=np.float64) for a in (g, q, p, t, y))
    n = q.shape[0]

    def unit(x):
        return x / np.maximum(np.sqrt((x * x).sum(axis=-1, keepdims=True)), NORMALIZE_EPS)

    def sim(a, b):
        return unit(a) @ unit(b).T / tau

    def log_softmax(z):
        return z - _logsumexp_rows(z)[..., None]

    def ce(z):  # the diagonal is the target
        r = np.arange(z.shape[0])
        return float(np.mean(_logsumexp_rows(z) - z[r, r]))

    views = (g[:n], g[n:])
    z = sim(views[0], np.concatenate([views[1], views[0]]))
    z[np.arange(n), n + np.arange(n)] = -np.inf
    img = ce(z)
    glo = sum(ce(sim(v, q)) + ce(sim(q, v)) for v in views) / 4
    e = y @ y.T / tau_label
    s = np.exp(e - e.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    soft = sum(-(s * log_softmax(sim(v, q))).sum() - (s.T * log_softmax(sim(q, v))).sum() for v in views) / (4 * n * n)
    local = [t[i, 1:int(lengths[i]) - 1] for i in range(n)]
    if loc_mode == "attention":
        total = 0.0
        for i in range(n):
            for j in range(2):
                pij = p[j * n + i]
                a = local[i] @ pij.T / np.sqrt(pij.shape[-1])
                a = np.exp(a - a.max(axis=1, keepdims=True))
                ctx = (a / a.sum(axis=1, keepdims=True)) @ pij
                total += ce(sim(local[i], ctx)) + ce(sim(ctx, local[i]))
        loc = total / (4 * n)
    else:
        qbar = np.stack([x.mean(axis=0) for x in local])
        loc = sum(ce(sim(p[j * n:(j + 1) * n].mean(axis=1), qbar)) + ce(sim(qbar, p[j * n:(j + 1) * n].mean(axis=1)))
                  for j in range(2)) / 4
    return OrderedDict(img=float(img), glo=float(glo), loc=float(loc), soft=float(soft))


def alignment_loss_terms(g, q, p, t, lengths: Sequence[int], y, tau: float, tau_label: float,
                         loc_mode: str) -> "OrderedDict[str, Any]":
    """The four unweighted terms of §11.11 as torch scalars, with the operations §11.11 names: g image_global
    (2N, d), q text_global (N, d), p image_local (2N, Np, d), t text_local (N, T, d), n_i = lengths[i], y the
    soft_targets (N, D), an input (the soft targets s are not differentiated)."""
    import math

    import torch
    import torch.nn.functional as F

    n = q.shape[0]

    def sim(a, b):  # S(A, B) = n(A) n(B)^T / tau
        return F.normalize(a, dim=-1, eps=NORMALIZE_EPS) @ F.normalize(b, dim=-1, eps=NORMALIZE_EPS).T / tau

    def ce(z):  # CE(Z): the diagonal is the target
        return F.cross_entropy(z, torch.arange(z.shape[0]), reduction="mean")

    def sce(z, target):  # SCE(Z, T): a sum, not a mean
        return -(target * F.log_softmax(z, dim=-1)).sum()

    views = (g[:n], g[n:])
    z = sim(views[0], torch.cat([views[1], views[0]]))  # (N, 2N): view 2 of every case, then view 1
    anchor = torch.zeros(z.shape, dtype=torch.bool)
    anchor[torch.arange(n), n + torch.arange(n)] = True
    img = ce(z.masked_fill(anchor, float("-inf")))  # never the anchor itself (Eq. 2)
    glo = sum(ce(sim(v, q)) + ce(sim(q, v)) for v in views) / 4
    s = F.softmax(y @ y.T / tau_label, dim=-1)
    soft = sum(sce(sim(v, q), s) + sce(sim(q, v), s.T) for v in views) / (4 * n * n)
    local = [t[i, 1:int(lengths[i]) - 1] for i in range(n)]  # [CLS], the final [SEP] and the padding dropped
    if loc_mode == "attention":
        total = 0
        for i in range(n):
            for j in range(2):
                pij = p[j * n + i]  # (Np, d)
                ctx = F.softmax(local[i] @ pij.T / math.sqrt(pij.shape[-1]), dim=-1) @ pij  # (L_i, d)
                total = total + ce(sim(local[i], ctx)) + ce(sim(ctx, local[i]))
        loc = total / (4 * n)
    elif loc_mode == "direct":
        qbar = torch.stack([x.mean(dim=0) for x in local])
        loc = sum(ce(sim(pj.mean(dim=1), qbar)) + ce(sim(qbar, pj.mean(dim=1))) for pj in (p[:n], p[n:])) / 4
    else:
        raise ValueError(f"loc_mode {loc_mode!r} is not one of {list(LOC_MODES)}")
    return OrderedDict(img=img, glo=glo, loc=loc, soft=soft)


def _check_formula(what: str, got: float, explicit: float) -> None:
    """§11.11's comparison of a loss or loss term: 1e-5 relative, 1e-6 absolute for a term that is 0."""
    if not abs(got - explicit) <= 1e-5 * abs(explicit) + (1e-6 if explicit == 0 else 0.0):
        raise RuntimeError(f"{what} {got!r} differs from §11.11's formula ({explicit!r})")


def compute_image_ce(ref, inputs: Mapping[str, Any], trainable: Sequence[str], dtype=None) -> GradientRun:
    """Forward + backward of image_ce (stage 2b, §11.11) on a batch of images: the image encoder on
    (B, 3, H, W), image_classifier on the CLS rows, the mean cross-entropy against labels (B,)."""
    import torch
    import torch.nn.functional as F

    dtype = torch.float32 if dtype is None else dtype
    inputs = validate_image_ce_inputs(inputs, ref.heads.k)
    paths, param_names = _trainable_parameters(ref, trainable)
    rec = _Recorder()
    with torch.enable_grad(), _widened(dtype):
        pv = torch.from_numpy(inputs["pixel_values"]).to(dtype)
        rec.hooked("image_encoder", ref.image, lambda: ref.image.top(pixel_values=pv))
        img = rec.acts["image_encoder.final_norm"]  # (B, 1+R+Np, Ci)
        logits = rec.keep("image_classifier.logits", ref.heads.image_classifier(img[:, 0]),
                          "heads:image_classifier(image CLS)")
        loss = F.cross_entropy(logits, torch.from_numpy(inputs["labels"]), reduction="mean")
        explicit = explicit_cross_entropy(logits.detach().double().numpy()[:, None, :], inputs["labels"][:, None],
                                          shift=False)
        _check_formula("loss", float(loss.detach()), explicit)
        loss.backward()
    return _gradient_run(rec, loss, paths, param_names, trainable, dtype, inputs)


def compute_alignment(ref, inputs: Mapping[str, Any], trainable: Sequence[str], *, tau: float, tau_label: float,
                      loss_weights: Sequence[float], loc_mode: str, dtype=None) -> GradientRun:
    """Forward + backward of alignment (stage 2, §11.11): the image encoder on the 2N views, the text encoder on
    the padded (N, T) batch, the alignment projections, the four terms (each checked against a float64 numpy
    recomputation from the activations) and loss = sum of weight * term. run.loss_terms holds the unweighted terms."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    inputs = validate_alignment_inputs(inputs)
    settings = alignment_settings(dict(tau=tau, tau_label=tau_label, loss_weights=np.asarray(loss_weights, "<f8"),
                                       loc_mode=loc_mode))
    tau, tau_label = float(settings["tau"]), float(settings["tau_label"])
    weights = [float(w) for w in settings["loss_weights"]]
    paths, param_names = _trainable_parameters(ref, trainable)
    rec = _Recorder()
    lengths = inputs["attention_mask"].sum(axis=1)
    with torch.enable_grad(), _widened(dtype):
        _, img, txt = _run_encoders(rec, ref, inputs, dtype)  # (2N, 1+R+Np, Ci), (N, T, Ct)
        al = ref.heads.alignment
        g = rec.keep("alignment.image_global", al.image_proj(img[:, 0]), "heads:alignment.image_proj(image CLS)")
        q = rec.keep("alignment.text_global", al.text_proj(txt[:, 0]), "heads:alignment.text_proj(text CLS)")
        p = rec.keep("alignment.image_local", al.image_proj(img[:, 1 + ref.num_registers:]),
                     "heads:alignment.image_proj(patches)")
        t = rec.keep("alignment.text_local", al.text_proj(txt), "heads:alignment.text_proj(every text position)")
        y = torch.from_numpy(inputs["soft_targets"]).to(dtype)
        terms = alignment_loss_terms(g, q, p, t, lengths, y, tau, tau_label, settings["loc_mode"])
        loss = weights[0] * terms["img"] + weights[1] * terms["glo"] + weights[2] * terms["loc"] + weights[3] * terms["soft"]
        explicit = explicit_alignment_terms(*(a.detach().double().numpy() for a in (g, q, p, t)), lengths,
                                            inputs["soft_targets"], tau, tau_label, settings["loc_mode"])
        for name, value in explicit.items():
            _check_formula(f"loss term {name}", float(terms[name].detach()), value)
        _check_formula("loss", float(loss.detach()), sum(w * v for w, v in zip(weights, explicit.values())))
        loss.backward()
    loss_terms = OrderedDict((k, float(v.detach())) for k, v in terms.items())
    run = _gradient_run(rec, loss, paths, param_names, trainable, dtype, inputs, loss_terms=loss_terms)
    run.meta["settings"] = settings
    return run


def write_batch_trace(ref, out_path, objective: str, inputs: Mapping[str, Any], trainable: Sequence[str], *,
                      source: str, input_recipe: Optional[Mapping[str, Any]] = None, tau: float = 0.07,
                      tau_label: float = 1.0, loss_weights: Sequence[float] = (0.2, 0.3, 0.2, 0.3),
                      loc_mode: str = "attention") -> GradientRun:
    """Run image_ce or alignment on a batch and write the version-2 prima trace (alignment: the root attributes
    tau, tau_label, loss_weights, loc_mode and /loss_terms). The defaults are Docs/prima-model.md's."""
    extra: "OrderedDict[str, Any]" = OrderedDict()
    if objective == "image_ce":
        run = compute_image_ce(ref, inputs, trainable)
    elif objective == "alignment":
        run = compute_alignment(ref, inputs, trainable, tau=tau, tau_label=tau_label, loss_weights=loss_weights,
                                loc_mode=loc_mode)
        extra.update(run.meta["settings"])
    else:
        raise ValueError(f"objective {objective!r} is not image_ce or alignment")
    adapters = [m for m in (ref.image, ref.text) if getattr(m, "adapter_dir", None) is not None]
    if adapters:
        import peft

        extra["peft_version"] = str(peft.__version__)
    _write_pipeline_trace(ref, out_path, objective, run, source, input_recipe, extra)
    return run
