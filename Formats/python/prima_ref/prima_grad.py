"""Gradient traces of the whole PRIMA pipeline (Formats/prima-trace.md §11.10, component ``prima``).

Objective ``class_ce`` (stage 3): the cross-entropy of the restricted class logits of §10 against a class index.
``compute_class_ce`` runs the §10 pipeline of a ``PrimaReference`` with autograd (the same arithmetic as
``PrimaReference._run``, written once more with gradients kept: encoders, heads, assembled decoder input, decoder,
class logits), and ``write_class_ce_trace`` writes the version-2 trace. Trainable tensors are named by their
checkpoint paths: ``prima/tensors/NAME`` for the heads (§8 canonical names), ``ROLE/tensors/NAME`` for the three
components' tensors.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .grad import (
    GRAD_TRACE_VERSION,
    GradientRun,
    _write_grad_h5,
    float64_everywhere,
)
from .names import checkpoint_path
from .trace import validate_prima_inputs

PRODUCER = "prima_ref.prima_grad"


def validate_class_ce_inputs(inputs: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """The six §10.2 inputs, then ``labels``: int64 (1,), the class index 0 <= y < K."""
    base = validate_prima_inputs({k: v for k, v in inputs.items() if k != "labels"})
    if "labels" not in inputs:
        raise ValueError("class_ce needs /inputs/labels")
    labels = np.asarray(inputs["labels"])
    k = base["class_token_ids"].shape[0]
    if labels.dtype != np.int64 or labels.shape != (base["pixel_values"].shape[0],):
        raise ValueError(f"labels must be int64 of shape (B,) = (1,), got {labels.dtype} {labels.shape}")
    if not ((labels >= 0) & (labels < k)).all():
        raise ValueError(f"labels {labels.tolist()} must be class indices in 0..{k - 1}")
    base["labels"] = np.ascontiguousarray(labels, dtype="<i8")
    return base


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


def compute_class_ce(ref, inputs: Mapping[str, Any], trainable: Sequence[str], dtype=None) -> GradientRun:
    """Forward + backward of class_ce on the pipeline of ``ref`` (a PrimaReference, modules converted to ``dtype``
    by the caller). ``trainable``: checkpoint paths. Activations off the loss path (alignment.*,
    image_classifier.logits, class_probs) get an all-zero gradient."""
    import torch
    import torch.nn.functional as F

    dtype = torch.float32 if dtype is None else dtype
    inputs = validate_class_ce_inputs(inputs)
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

    acts: "OrderedDict[str, Any]" = OrderedDict()
    origins: Dict[str, str] = {}

    def keep(name, t, origin):
        if t.requires_grad:
            t.retain_grad()
        else:
            t.requires_grad_(True)
        acts[name] = t
        origins[name] = origin
        return t

    def hooked_run(part, ref_model, call):
        by_module: "OrderedDict[str, List[str]]" = OrderedDict()
        for n, path in ref_model.points:
            by_module.setdefault(path, []).append(n)

        def make_hook(names):
            def hook(_m, _a, out):
                t = out if torch.is_tensor(out) else out[0]
                for n in names:
                    keep(f"{part}.{n}", t, f"{part}:{ref_model.module_path(n)}")

            return hook

        handles = [ref_model.top.get_submodule(p).register_forward_hook(make_hook(ns)) for p, ns in by_module.items()]
        try:
            return call()
        finally:
            for h in handles:
                h.remove()

    widen = float64_everywhere() if dtype == torch.float64 else contextlib.nullcontext()
    with torch.enable_grad(), widen:
        pv = torch.from_numpy(inputs["pixel_values"]).to(dtype)
        hooked_run("image_encoder", ref.image, lambda: ref.image.top(pixel_values=pv))
        ids = torch.from_numpy(inputs["input_ids"])
        mask = torch.from_numpy(inputs["attention_mask"])
        hooked_run("text_encoder", ref.text, lambda: ref.text.top(input_ids=ids, attention_mask=mask))
        img = acts["image_encoder.final_norm"]
        txt = acts["text_encoder.final_norm"]
        h, w = pv.shape[2] // ref.patch_size, pv.shape[3] // ref.patch_size
        n = int(inputs["attention_mask"][0].sum())
        cls_i, patches = img[:, 0], img[:, 1 + ref.num_registers:]
        cls_t, seq_t = txt[:, 0], txt[:, 1:max(1, n - 1)]
        hd = ref.heads
        keep("alignment.image_global", hd.alignment.image_proj(cls_i), "heads:alignment.image_proj(image CLS)")
        keep("alignment.text_global", hd.alignment.text_proj(cls_t), "heads:alignment.text_proj(text CLS)")
        keep("alignment.image_local", hd.alignment.image_proj(patches), "heads:alignment.image_proj(patches)")
        keep("alignment.text_local", hd.alignment.text_proj(seq_t), "heads:alignment.text_proj(text tokens)")
        keep("image_classifier.logits", hd.image_classifier(cls_i), "heads:image_classifier(image CLS)")
        f = hd.fusion
        image_cls = keep("fusion.image_cls", f.image_cls_projector(cls_i), "heads:fusion.image_cls_projector")
        image_seq = keep("fusion.image_seq", f.image_seq_projector(patches, h, w), "heads:fusion.image_seq_projector")
        text_cls = keep("fusion.text_cls", f.text_cls_projector(cls_t), "heads:fusion.text_cls_projector")
        text_seq = keep("fusion.text_seq", f.text_seq_projector(seq_t), "heads:fusion.text_seq_projector")
        top = ref.decoder.top
        emb = top.get_input_embeddings().weight
        st = f.special_tokens[:, None, :]
        prompt = emb[torch.from_numpy(inputs["prompt_ids"][0])][None]
        answer = emb[torch.from_numpy(inputs["answer_prefix_ids"][0])][None]
        embeds = torch.cat([prompt, st[0:1], image_cls, image_seq, st[1:2], st[2:3], text_cls, text_seq, st[3:4],
                            answer], dim=1)
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

    np_dt = "<f4" if dtype == torch.float32 else "<f8"
    activations, activation_gradients = OrderedDict(), OrderedDict()
    for name, t in acts.items():
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
                       gradients=gradients, hf_names=hf_names, origins=origins,
                       meta={"trainable": "list", "excluded": excluded, "inputs": inputs})


def stage3_trainable(ref, decoder: str = "full") -> List[str]:
    """Stage 3's trainable set without an adapter: the fusion heads (the four projectors and the special tokens)
    and, with decoder="full", every decoder tensor."""
    paths = [p for p in heads_paths(ref.heads) if p.startswith("prima/tensors/fusion.")]
    if decoder == "full":
        paths += list(component_paths(ref.decoder))
    return paths


def write_class_ce_trace(ref, out_path, inputs: Mapping[str, Any], trainable: Sequence[str], *, source: str,
                         input_recipe: Optional[Mapping[str, Any]] = None) -> GradientRun:
    """Run class_ce on the pipeline and write the version-2 prima trace."""
    import torch
    import transformers

    run = compute_class_ce(ref, inputs, trainable)
    attrs: "OrderedDict[str, Any]" = OrderedDict()
    attrs["prima_trace_version"] = np.int64(GRAD_TRACE_VERSION)
    attrs["component"] = "prima"
    attrs["source"] = source
    attrs["torch_version"] = str(torch.__version__)
    attrs["transformers_version"] = str(transformers.__version__)
    attrs["attn_implementation"] = "eager"
    attrs["dtype"] = "float32"
    attrs["objective"] = "class_ce"
    attrs["trainable"] = "list"
    attrs["image_encoder_source"] = ref.image.source
    attrs["text_encoder_source"] = ref.text.source
    attrs["decoder_source"] = ref.decoder.source
    attrs["heads_source"] = Path(ref.heads_path).name
    attrs["model_types"] = f"{ref.image.model_type},{ref.text.model_type},{ref.decoder.model_type}"
    attrs["producer"] = PRODUCER
    if input_recipe is not None:
        attrs["input_recipe"] = json.dumps(input_recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    _write_grad_h5(Path(out_path), attrs, run.meta["inputs"], run)
    run.meta["attrs"] = dict(attrs)
    return run
