"""Hugging Face -> canonical tensor names (Formats/prima-checkpoint.md §4), and checkpoint paths of parameters.

The tables are a port of §4.2-§4.6 (and of the Swift ``NameTable``s in ``Sources/PrimaModels/*/*Weights.swift``):
one table per architecture, body names that may carry one of the architecture's body prefixes (``model.`` for
DINOv3 (optional), ModernBERT and Qwen3; ``bert.`` for BERT) and head names that never do. ``N`` in a pattern is a
layer index: the first all-digit dot-separated component of a name.

``checkpoint_path`` maps the name of a parameter of a module that transformers (and possibly PEFT) built to the
path of that tensor inside a PRIMA checkpoint, without the leading slash, as gradient traces store it
(Formats/prima-trace.md §11): ``decoder/tensors/layers.0.attn.q.weight`` for a base weight,
``decoder/lora/default/tensors/layers.0.attn.q.lora_a`` for a LoRA matrix. Names it does not know raise
``UnknownNameError``; nothing is guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

ROLE_OF_MODEL_TYPE = {
    "dinov3_vit": "image_encoder",
    "modernbert": "text_encoder",
    "bert": "text_encoder",
    "qwen3": "decoder",
}


class UnknownNameError(ValueError):
    """A parameter name that is not in the architecture's table (or not a LoRA matrix PEFT would save)."""


@dataclass(frozen=True)
class NameTable:
    """One architecture's §4 table: body patterns (after an optional body prefix), head patterns (no prefix),
    dropped prefixes (§4.6) and second names of one parameter."""

    body_prefixes: Tuple[str, ...]
    body: Tuple[Tuple[str, str], ...]
    heads: Tuple[Tuple[str, str], ...] = ()
    dropped: Tuple[Tuple[str, str], ...] = ()
    duplicate_names: Dict[str, str] = field(default_factory=dict)

    @staticmethod
    def pattern_of(name: str) -> Tuple[str, Optional[str]]:
        """Replace the first all-digit component by ``N``: (pattern, index or None)."""
        parts = name.split(".")
        for i, p in enumerate(parts):
            if p and p.isascii() and p.isdigit():
                index = p
                parts[i] = "N"
                return ".".join(parts), index
        return name, None

    @staticmethod
    def substitute(pattern: str, index: Optional[str]) -> str:
        if index is None:
            return pattern
        return ".".join(index if p == "N" else p for p in pattern.split("."))

    def map(self, hf_name: str) -> Tuple[str, Optional[str]]:
        """(canonical name, body prefix or None for a head). Raises UnknownNameError for a name that the table
        does not store (unknown or dropped)."""
        if hf_name in self.duplicate_names:
            canonical, _ = self.map(self.duplicate_names[hf_name])
            return canonical, None
        heads = dict(self.heads)
        pattern, index = self.pattern_of(hf_name)
        if pattern in heads:
            return self.substitute(heads[pattern], index), None
        body = dict(self.body)
        for prefix in self.body_prefixes:
            if not hf_name.startswith(prefix):
                continue
            stripped = hf_name[len(prefix):]
            pattern, index = self.pattern_of(stripped)
            if pattern in body:
                return self.substitute(body[pattern], index), prefix
            for dropped_prefix, reason in self.dropped:
                if stripped.startswith(dropped_prefix):
                    raise UnknownNameError(f"{hf_name}: dropped on import ({reason}); it has no checkpoint path")
        raise UnknownNameError(f"{hf_name}: not a tensor name of this architecture (Formats/prima-checkpoint.md §4)")


def _layer(prefix: str, pairs: Sequence[Tuple[str, str]]) -> Tuple[Tuple[str, str], ...]:
    return tuple((f"{prefix}{hf}", canonical) for hf, canonical in pairs)


def _weight_bias(hf: str, canonical: str) -> List[Tuple[str, str]]:
    return [(f"{hf}.weight", f"{canonical}.weight"), (f"{hf}.bias", f"{canonical}.bias")]


# §4.2 dinov3_vit: source names have no prefix; a `model.` prefix is accepted (transformers 5 holds the blocks as
# `model.layer.N` in memory).
DINOV3 = NameTable(
    body_prefixes=("model.", ""),
    body=(
        ("embeddings.cls_token", "embed.cls_token"),
        ("embeddings.mask_token", "embed.mask_token"),
        ("embeddings.register_tokens", "embed.register_tokens"),
        *_weight_bias("embeddings.patch_embeddings", "embed.patch"),
        *_weight_bias("layer.N.norm1", "layers.N.attn_norm"),
        *_weight_bias("layer.N.attention.q_proj", "layers.N.attn.q"),
        *_weight_bias("layer.N.attention.k_proj", "layers.N.attn.k"),
        *_weight_bias("layer.N.attention.v_proj", "layers.N.attn.v"),
        *_weight_bias("layer.N.attention.o_proj", "layers.N.attn.o"),
        ("layer.N.layer_scale1.lambda1", "layers.N.ls1"),
        *_weight_bias("layer.N.norm2", "layers.N.mlp_norm"),
        *_weight_bias("layer.N.mlp.gate_proj", "layers.N.mlp.gate"),
        *_weight_bias("layer.N.mlp.up_proj", "layers.N.mlp.up"),
        *_weight_bias("layer.N.mlp.down_proj", "layers.N.mlp.down"),
        ("layer.N.layer_scale2.lambda1", "layers.N.ls2"),
        *_weight_bias("norm", "final_norm"),
    ),
)

# §4.3 modernbert: prefix `model.` on the encoder body (ModernBertForMaskedLM), none for ModernBertModel.
MODERNBERT = NameTable(
    body_prefixes=("model.", ""),
    body=(
        ("embeddings.tok_embeddings.weight", "embed.tokens"),
        *_weight_bias("embeddings.norm", "embed.norm"),
        *_weight_bias("layers.N.attn_norm", "layers.N.attn_norm"),
        *_weight_bias("layers.N.attn.Wqkv", "layers.N.attn.qkv"),
        *_weight_bias("layers.N.attn.Wo", "layers.N.attn.o"),
        *_weight_bias("layers.N.mlp_norm", "layers.N.mlp_norm"),
        *_weight_bias("layers.N.mlp.Wi", "layers.N.mlp.wi"),
        *_weight_bias("layers.N.mlp.Wo", "layers.N.mlp.down"),
        *_weight_bias("final_norm", "final_norm"),
    ),
    heads=(
        *_weight_bias("head.dense", "mlm.dense"),
        *_weight_bias("head.norm", "mlm.norm"),
        ("decoder.weight", "mlm.decoder.weight"),
        ("decoder.bias", "mlm.decoder.bias"),
    ),
    dropped=(("classifier.", "sequence-classification head (not used by PRIMA)"),),
)

# §4.4 bert: prefix `bert.` (BertForMaskedLM / BertForPreTraining), none for BertModel.
BERT = NameTable(
    body_prefixes=("bert.", ""),
    body=(
        ("embeddings.word_embeddings.weight", "embed.tokens"),
        ("embeddings.position_embeddings.weight", "embed.positions"),
        ("embeddings.token_type_embeddings.weight", "embed.token_types"),
        *_weight_bias("embeddings.LayerNorm", "embed.norm"),
        *_weight_bias("encoder.layer.N.attention.self.query", "layers.N.attn.q"),
        *_weight_bias("encoder.layer.N.attention.self.key", "layers.N.attn.k"),
        *_weight_bias("encoder.layer.N.attention.self.value", "layers.N.attn.v"),
        *_weight_bias("encoder.layer.N.attention.output.dense", "layers.N.attn.o"),
        *_weight_bias("encoder.layer.N.attention.output.LayerNorm", "layers.N.attn_out_norm"),
        *_weight_bias("encoder.layer.N.intermediate.dense", "layers.N.mlp.up"),
        *_weight_bias("encoder.layer.N.output.dense", "layers.N.mlp.down"),
        *_weight_bias("encoder.layer.N.output.LayerNorm", "layers.N.mlp_out_norm"),
        *_weight_bias("pooler.dense", "pooler.dense"),
    ),
    heads=(
        *_weight_bias("cls.predictions.transform.dense", "mlm.dense"),
        *_weight_bias("cls.predictions.transform.LayerNorm", "mlm.norm"),
        ("cls.predictions.decoder.weight", "mlm.decoder.weight"),
        ("cls.predictions.bias", "mlm.decoder.bias"),
    ),
    dropped=(
        ("embeddings.position_ids", "legacy position-id buffer (recomputed at run time)"),
        ("cls.seq_relationship.", "next-sentence-prediction head (not used by PRIMA)"),
        ("classifier.", "sequence-classification head (not used by PRIMA)"),
    ),
    # One parameter, two names in transformers (BertLMPredictionHead.bias is decoder.bias).
    duplicate_names={"cls.predictions.decoder.bias": "cls.predictions.bias"},
)

# §4.5 qwen3: prefix `model.` on the body (Qwen3ForCausalLM), none for Qwen3Model.
QWEN3 = NameTable(
    body_prefixes=("model.", ""),
    body=(
        ("embed_tokens.weight", "embed.tokens"),
        ("layers.N.input_layernorm.weight", "layers.N.attn_norm.weight"),
        *_weight_bias("layers.N.self_attn.q_proj", "layers.N.attn.q"),
        *_weight_bias("layers.N.self_attn.k_proj", "layers.N.attn.k"),
        *_weight_bias("layers.N.self_attn.v_proj", "layers.N.attn.v"),
        *_weight_bias("layers.N.self_attn.o_proj", "layers.N.attn.o"),
        ("layers.N.self_attn.q_norm.weight", "layers.N.attn.q_norm.weight"),
        ("layers.N.self_attn.k_norm.weight", "layers.N.attn.k_norm.weight"),
        ("layers.N.post_attention_layernorm.weight", "layers.N.mlp_norm.weight"),
        ("layers.N.mlp.gate_proj.weight", "layers.N.mlp.gate.weight"),
        ("layers.N.mlp.up_proj.weight", "layers.N.mlp.up.weight"),
        ("layers.N.mlp.down_proj.weight", "layers.N.mlp.down.weight"),
        ("norm.weight", "final_norm.weight"),
    ),
    heads=(("lm_head.weight", "lm_head.weight"),),
    dropped=(("score.", "sequence-classification head (not used by PRIMA)"),),
)

TABLES: Dict[str, NameTable] = {"dinov3_vit": DINOV3, "modernbert": MODERNBERT, "bert": BERT, "qwen3": QWEN3}

# Canonical names that are tied aliases of a stored tensor (§5.3): alias -> stored target.
TIED_ALIASES = {"lm_head.weight": "embed.tokens", "mlm.decoder.weight": "embed.tokens"}


def canonical_name(model_type: str, hf_name: str) -> str:
    """The §4 canonical name of a Hugging Face tensor name of architecture ``model_type``."""
    if model_type not in TABLES:
        raise UnknownNameError(f"unsupported model_type {model_type!r} (expected one of {sorted(TABLES)})")
    return TABLES[model_type].map(hf_name)[0]


# PEFT: `base_model.model.` in front of the wrapped module's names; an adapted Linear keeps its weight under
# `.base_layer.` and adds `.lora_A.<adapter>.weight` / `.lora_B.<adapter>.weight`.
PEFT_PREFIX = "base_model.model."
_LORA_RE = re.compile(r"(?P<module>.+)\.lora_(?P<which>[AB])\.(?P<adapter>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\.weight")
_ADAPTER_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_PEFT_OTHER = (".lora_embedding_A.", ".lora_embedding_B.", ".lora_magnitude_vector.", ".modules_to_save.",
               ".original_module.", ".lora_bias.")


def checkpoint_path(model_type: str, param_name: str, tied: bool = False) -> str:
    """The PRIMA-checkpoint path (no leading slash) of the tensor that parameter ``param_name`` holds.

    ``param_name`` is a name from ``named_parameters()`` of a transformers model of architecture ``model_type``
    (AutoModel, *ForMaskedLM, Qwen3ForCausalLM), possibly wrapped by PEFT. Base weights map to
    ``ROLE/tensors/CANONICAL`` -- with ``tied`` (the caller knows the parameter is shared with the embedding), a
    tied alias (``lm_head.weight``, ``mlm.decoder.weight``) to its stored target
    ``embed.tokens`` when ``tied`` -- and a LoRA matrix of target ``X.weight`` to ``ROLE/lora/ADAPTER/tensors/X.lora_a``
    (``lora_A``) or ``X.lora_b`` (``lora_B``). Anything else raises UnknownNameError.
    """
    if model_type not in ROLE_OF_MODEL_TYPE:
        raise UnknownNameError(f"unsupported model_type {model_type!r} (expected one of {sorted(TABLES)})")
    role = ROLE_OF_MODEL_TYPE[model_type]
    name = param_name[len(PEFT_PREFIX):] if param_name.startswith(PEFT_PREFIX) else param_name
    if any(marker in f".{name}." for marker in _PEFT_OTHER):
        raise UnknownNameError(f"{param_name}: a PEFT parameter that is not a LoRA matrix has no checkpoint path")
    m = _LORA_RE.fullmatch(name)
    if m:
        module = m.group("module").replace(".base_layer", "")
        target = canonical_name(model_type, module + ".weight")
        if not target.endswith(".weight"):
            raise UnknownNameError(f"{param_name}: LoRA target {target} is not a weight")
        stem = target[: -len(".weight")]
        suffix = "lora_a" if m.group("which") == "A" else "lora_b"
        return f"{role}/lora/{m.group('adapter')}/tensors/{stem}.{suffix}"
    if ".lora_" in name:
        raise UnknownNameError(f"{param_name}: not a LoRA matrix name PEFT writes (`M.lora_A.<adapter>.weight`)")
    parts = name.split(".")
    if "base_layer" in parts[:-1]:
        parts = [p for i, p in enumerate(parts) if not (p == "base_layer" and i == len(parts) - 2)]
        name = ".".join(parts)
    canonical = canonical_name(model_type, name)
    if tied and canonical in TIED_ALIASES:
        canonical = TIED_ALIASES[canonical]
    return f"{role}/tensors/{canonical}"


_PATH_RE = re.compile(
    r"(?P<role>image_encoder|text_encoder|decoder)/"
    r"(?:tensors/(?P<tensor>[^/]+)|lora/(?P<adapter>[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})/tensors/(?P<lora>[^/]+\.lora_[ab]))"
    r"|(?P<heads>prima)/tensors/(?P<head>[^/]+)"  # the PRIMA heads group (§8): no adapters
)


def parse_checkpoint_path(path: str) -> Tuple[str, Optional[str], str]:
    """(role, adapter or None, tensor name) of a gradient path ``ROLE/tensors/NAME``,
    ``ROLE/lora/ADAPTER/tensors/X.lora_a|lora_b`` or ``prima/tensors/NAME``; raises ValueError for anything else."""
    m = _PATH_RE.fullmatch(path)
    if not m:
        raise ValueError(f"{path!r} is not ROLE/tensors/NAME or ROLE/lora/ADAPTER/tensors/X.lora_a|X.lora_b")
    if m.group("heads") is not None:
        return "prima", None, m.group("head")
    if m.group("tensor") is not None:
        return m.group("role"), None, m.group("tensor")
    return m.group("role"), m.group("adapter"), m.group("lora")
