#!/usr/bin/env python3
"""PyTorch reference of the PRIMA heads and of the whole diagnosis pipeline, for one case (batch 1).

This is the contract the Swift runtime implements: Docs/prima-model.md fixes the model, Formats/prima-checkpoint.md
§8 the heads' tensor names and shapes, and Formats/prima-trace.md §10 (component ``prima``) every intermediate
tensor and the exact math below. The encoders and the decoder are Hugging Face transformers models loaded with
``prima_ref.trace.ReferenceModel`` (float32, eager attention, eval mode, strict loading); the heads are plain torch
modules whose ``state_dict`` names are exactly the canonical names.

One diagnosis (shapes with Ci, Ct, D the image-encoder, text-encoder and decoder widths, K classes, p patch size):

    img  = image_encoder(pixel_values).last_hidden_state          (1, 1+R+Np, Ci)   R registers, Np = h*w
    cls_i = img[:, 0]; patches = img[:, 1+R:]                      patches row-major over the h x w grid (h=H/p)
    txt  = text_encoder(input_ids, attention_mask).last_hidden_state   (1, T, Ct)
    cls_t = txt[:, 0]; seq_t = txt[:, 1:n-1]                       n = real length; drops [CLS], final [SEP], pads
    alignment.image_global = image_proj(cls_i)       (1, 256)      alignment.text_global = text_proj(cls_t)
    alignment.image_local  = image_proj(patches)     (1, Np, 256)  alignment.text_local  = text_proj(seq_t) (1, L, 256)
    image_classifier.logits = image_classifier(cls_i)  (1, K)
    fusion.image_cls = fc2(gelu(fc1(cls_i)))[:, None]  (1, 1, D)    exact (erf) GELU; text_cls likewise from cls_t
    fusion.image_seq = fc(gelu(conv2d(patches as (1, Ci, h, w), k 2, s 2) flattened row-major))  (1, (h//2)(w//2), D)
    fusion.text_seq  = fc(gelu(conv1d(seq_t as (1, Ct, L), k 2, s 2)))  (1, L//2, D); (1, 0, D) when L < 2
    decoder.embeddings = cat[E[prompt], st0, image_cls, image_seq, st1, st2, text_cls, text_seq, st3, E[answer]]
                         decoder_inputs "image": cat[E[prompt], st0, image_cls, image_seq, st1, E[answer]] (the
                         metadata part st2 … st3 left out; the text encoder and text heads not run)
    class_logits = lm_head(decoder.final_norm[:, -1])[class_token_ids]  (1, K);  class_probs = softmax(class_logits)

Library use::

    from prima_ref.prima import PrimaReference
    ref = PrimaReference(image_dir, text_dir, decoder_dir, "heads.safetensors")
    inputs, recipe = ref.case_inputs("lesion.png", {"age": "55", "region": "FACE"})
    acts = ref.run(inputs)                      # OrderedDict name -> float32 array, in trace order
    ref.write_trace("out.h5", inputs, source="my-model", input_recipe=recipe)

Command line (from ``Formats/python``)::

    python -m prima_ref.prima --image-encoder DIR --text-encoder DIR --decoder DIR --heads FILE \\
        --image PNG --metadata JSON [-o TRACE.h5] [--source NAME] [--classes ACK,BCC,...]

Image decoding and preprocessing need the DINOv3 image processor of transformers, i.e. torchvision and Pillow
(not in Fixtures/requirements.txt; Fixtures/images/requirements.txt pins them).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import png
from .metadata import Schema
from .trace import (  # trace.py holds the trace contract, prima inputs and names included; it never imports this module
    LIBVER,  # noqa: F401  (re-exported for callers that write traces themselves)
    PRIMA_HEAD_ACTIVATIONS,  # noqa: F401  (re-exported)
    PRIMA_INPUTS,  # noqa: F401  (re-exported)
    TRACE_VERSION,
    ReferenceModel,
    Trace,
    _write_h5,
    prima_expected_names,  # noqa: F401  (re-exported)
    DECODER_INPUTS,
    validate_inputs,
    validate_prima_inputs,
)

DEFAULT_CLASS_CODES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
DEFAULT_PROMPT = "Classify the lesion from the clinical image and the patient's risk factors."
DEFAULT_ANSWER_PREFIX = " Diagnosis:"
D_ALIGN = 256
SPECIAL_TOKENS = ("<|img_start|>", "<|img_end|>", "<|txt_start|>", "<|txt_end|>")
# Words whose decoder embeddings initialise the special-token rows when the heads file has none.
SPECIAL_TOKEN_INIT_WORDS = (" image", " image", " text", " text")
PRODUCER = "prima_ref.prima"
OPTIONAL_HEAD_TENSORS = ("fusion.special_tokens",)


# ---------------------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------------------
def head_shapes(d_img: int, d_txt: int, d_llm: int, k: int, d_align: int = D_ALIGN) -> "OrderedDict[str, tuple]":
    """Canonical name -> shape of every float32 heads tensor (Formats/prima-checkpoint.md §8)."""
    s: "OrderedDict[str, tuple]" = OrderedDict()
    s["alignment.image_proj.weight"], s["alignment.image_proj.bias"] = (d_align, d_img), (d_align,)
    s["alignment.text_proj.weight"], s["alignment.text_proj.bias"] = (d_align, d_txt), (d_align,)
    s["image_classifier.weight"], s["image_classifier.bias"] = (k, d_img), (k,)
    for proj, d in (("image_cls_projector", d_img), ("text_cls_projector", d_txt)):
        s[f"fusion.{proj}.fc1.weight"], s[f"fusion.{proj}.fc1.bias"] = (d_llm, d), (d_llm,)
        s[f"fusion.{proj}.fc2.weight"], s[f"fusion.{proj}.fc2.bias"] = (d_llm, d_llm), (d_llm,)
    s["fusion.image_seq_projector.conv.weight"] = (d_llm, d_img, 2, 2)
    s["fusion.image_seq_projector.conv.bias"] = (d_llm,)
    s["fusion.image_seq_projector.fc.weight"], s["fusion.image_seq_projector.fc.bias"] = (d_llm, d_llm), (d_llm,)
    s["fusion.text_seq_projector.conv.weight"] = (d_llm, d_txt, 2)
    s["fusion.text_seq_projector.conv.bias"] = (d_llm,)
    s["fusion.text_seq_projector.fc.weight"], s["fusion.text_seq_projector.fc.bias"] = (d_llm, d_llm), (d_llm,)
    s["fusion.special_tokens"] = (len(SPECIAL_TOKENS), d_llm)
    return s


def random_heads(d_img: int, d_txt: int, d_llm: int, k: int, seed: int, special_tokens: bool = True,
                 d_align: int = D_ALIGN) -> "Dict[str, Any]":
    """Seeded heads tensors {canonical name: float32 tensor}, drawn from one torch.Generator(seed) in sorted-name
    order: Linear and Conv weights N(0, 1/fan_in) (fan_in = in_features, or in_channels x kernel size), biases
    N(0, 0.05^2), special tokens N(0, 0.5^2), so that every head output is O(1). Without special_tokens the file
    leaves fusion.special_tokens out (the runtime then initialises it from the decoder embeddings)."""
    import math

    import torch

    shapes = head_shapes(d_img, d_txt, d_llm, k, d_align)
    if not special_tokens:
        del shapes["fusion.special_tokens"]
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name == "fusion.special_tokens":
            out[name] = 0.5 * noise
        elif name.endswith(".weight"):
            out[name] = noise * math.prod(shape[1:]) ** -0.5
        else:
            out[name] = 0.05 * noise
    return out


def _modules():
    import torch
    from torch import nn
    import torch.nn.functional as F

    class ClsProjector(nn.Module):
        """(1, d) -> (1, 1, D): fc2(gelu(fc1(x))), exact GELU."""

        def __init__(self, d, d_llm):
            super().__init__()
            self.fc1 = nn.Linear(d, d_llm)
            self.fc2 = nn.Linear(d_llm, d_llm)

        def forward(self, x):  # x (1, d)
            return self.fc2(F.gelu(self.fc1(x), approximate="none"))[:, None, :]

    class ImageSeqProjector(nn.Module):
        """(1, h*w, Ci) patch tokens, row-major grid -> (1, (h//2)*(w//2), D)."""

        def __init__(self, d_img, d_llm):
            super().__init__()
            self.conv = nn.Conv2d(d_img, d_llm, kernel_size=2, stride=2)
            self.fc = nn.Linear(d_llm, d_llm)

        def forward(self, patches, h, w):
            b, n, c = patches.shape
            assert n == h * w, (n, h, w)
            grid = patches.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (1, Ci, h, w)
            y = self.conv(grid)  # (1, D, h//2, w//2): an odd last row / column is dropped by the stride
            y = y.flatten(2).transpose(1, 2)  # (1, (h//2)*(w//2), D), row-major
            return self.fc(F.gelu(y, approximate="none"))

    class TextSeqProjector(nn.Module):
        """(1, L, Ct) text sequence tokens -> (1, L//2, D); (1, 0, D) when L < 2 (conv1d is not called)."""

        def __init__(self, d_txt, d_llm):
            super().__init__()
            self.conv = nn.Conv1d(d_txt, d_llm, kernel_size=2, stride=2)
            self.fc = nn.Linear(d_llm, d_llm)

        def forward(self, seq):
            b, n, _ = seq.shape
            if n < 2:
                return seq.new_zeros((b, 0, self.fc.out_features))
            y = self.conv(seq.transpose(1, 2)).transpose(1, 2)  # (1, L//2, D): an odd last token is dropped
            return self.fc(F.gelu(y, approximate="none"))

    class Alignment(nn.Module):
        def __init__(self, d_img, d_txt, d_align):
            super().__init__()
            self.image_proj = nn.Linear(d_img, d_align)
            self.text_proj = nn.Linear(d_txt, d_align)

    class Fusion(nn.Module):
        def __init__(self, d_img, d_txt, d_llm):
            super().__init__()
            self.image_cls_projector = ClsProjector(d_img, d_llm)
            self.text_cls_projector = ClsProjector(d_txt, d_llm)
            self.image_seq_projector = ImageSeqProjector(d_img, d_llm)
            self.text_seq_projector = TextSeqProjector(d_txt, d_llm)
            self.special_tokens = nn.Parameter(torch.zeros(len(SPECIAL_TOKENS), d_llm))

    class PrimaHeads(nn.Module):
        """The heads of Docs/prima-model.md; ``state_dict()`` keys are the canonical names of §8."""

        def __init__(self, d_img, d_txt, d_llm, k, d_align=D_ALIGN):
            super().__init__()
            self.d_img, self.d_txt, self.d_llm, self.k, self.d_align = d_img, d_txt, d_llm, k, d_align
            self.alignment = Alignment(d_img, d_txt, d_align)
            self.image_classifier = nn.Linear(d_img, k)
            self.fusion = Fusion(d_img, d_txt, d_llm)

    return PrimaHeads


def make_heads(d_img: int, d_txt: int, d_llm: int, k: int, d_align: int = D_ALIGN):
    """An uninitialised PrimaHeads module (float32, eval mode)."""
    heads = _modules()(d_img, d_txt, d_llm, k, d_align)
    heads.eval()
    return heads


def load_heads(path: "os.PathLike | str", d_img: int, d_txt: int, d_llm: int, k: int, d_align: int = D_ALIGN):
    """Load a heads safetensors file strictly: names exactly the canonical ones (``fusion.special_tokens`` may be
    absent), float32, shapes as §8. Returns (PrimaHeads, special_tokens_in_file)."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    tensors = load_file(str(path))
    want = head_shapes(d_img, d_txt, d_llm, k, d_align)
    if "task.class_token_ids" in tensors:
        raise ValueError(f"{path}: holds task.class_token_ids; a heads file never does (the class token ids come "
                         "from the decoder tokenizer and the class codes)")
    unknown = sorted(set(tensors) - set(want))
    if unknown:
        raise ValueError(f"{path}: unknown tensors {unknown} (expected the canonical names of "
                         "Formats/prima-checkpoint.md §8)")
    missing = sorted(n for n in want if n not in tensors and n not in OPTIONAL_HEAD_TENSORS)
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}")
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise ValueError(f"{path}: {name} is {t.dtype}, expected float32")
        if tuple(t.shape) != want[name]:
            raise ValueError(f"{path}: {name} has shape {list(t.shape)}, expected {list(want[name])} "
                             f"(d_img {d_img}, d_txt {d_txt}, d_llm {d_llm}, K {k}, d_align {d_align})")
    heads = make_heads(d_img, d_txt, d_llm, k, d_align)
    has_special = "fusion.special_tokens" in tensors
    result = heads.load_state_dict(tensors, strict=False)
    assert not result.unexpected_keys and list(result.missing_keys) == ([] if has_special else ["fusion.special_tokens"])
    return heads, has_special


# ---------------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------------
def png_info(path: "os.PathLike | str") -> Tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from a PNG's IHDR."""
    data = Path(path).read_bytes()[:33]
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def _read_png16(path: Path) -> np.ndarray:
    """(H, W, C) uint16 samples of a non-interlaced 16-bit PNG (grey, grey+alpha, RGB, RGBA)."""
    ihdr, idat = png.read_chunks(path)
    w, h, depth, ctype = ihdr[:4]
    if depth != 16:
        raise ValueError(f"{path}: only 16-bit PNGs are decoded here")
    return np.frombuffer(png.unfiltered(path, ihdr, idat), dtype=">u2").reshape(h, w, png.CHANNELS[ctype]).astype(np.uint16)


def load_image(path: "os.PathLike | str"):
    """What the image processor is fed: PIL's ``Image.open(path).convert("RGB")`` (alpha discarded, grey
    replicated) for PNGs of up to 8 bits per sample; for 16-bit PNGs (which PIL truncates to their high byte) a
    float32 (3, H, W) tensor of v / 257 (alpha discarded, grey replicated), the numbers the Swift decoder produces,
    as Fixtures/images/make_images.py does."""
    import torch

    path = Path(path)
    if path.suffix.lower() == ".png" and png_info(path)[2] == 16:
        s = _read_png16(path).astype(np.float32)
        rgb = s[..., :3] if s.shape[2] >= 3 else np.repeat(s[..., :1], 3, axis=2)
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous() / 257.0
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------------
def decoder_sequence(prompt, st, image_cls, image_seq, text_cls, text_seq, answer, decoder_inputs: str):
    """The parts of the decoder's input in order (Docs/prima-model.md, "Decoder input"): prompt, st0, image CLS,
    image sequence, st1, then the metadata part st2, text CLS, text sequence, st3 unless decoder_inputs is "image",
    then the answer prefix. st (4, 1, D); the others (1, n, D); text_cls and text_seq unused (may be None) for
    "image"."""
    parts = [prompt, st[0:1], image_cls, image_seq, st[1:2]]
    if decoder_inputs != "image":
        parts += [st[2:3], text_cls, text_seq, st[3:4]]
    return parts + [answer]


def class_token_ids(tokenizer, class_codes: Sequence[str]) -> List[int]:
    """Class k's decoder token: the first id of tokenizer.encode(" " + code, add_special_tokens=False). Refuses
    two classes sharing a first token (the decoder could not score them apart)."""
    ids: List[int] = []
    first_of: Dict[int, str] = {}
    for code in class_codes:
        enc = tokenizer.encode(" " + code, add_special_tokens=False)
        if not enc:
            raise ValueError(f"class {code!r}: ' {code}' encodes to no token")
        tid = int(enc[0])
        if tid in first_of:
            tok = tokenizer.convert_ids_to_tokens(tid)
            raise ValueError(f"classes {first_of[tid]!r} and {code!r} share their first decoder token {tid} "
                             f"({tok!r}); the decoder cannot score them apart")
        first_of[tid] = code
        ids.append(tid)
    return ids


class PrimaReference:
    """The three Hugging Face directories + a heads file, with the class codes, prompt and answer prefix."""

    def __init__(
        self,
        image_encoder_dir: "os.PathLike | str",
        text_encoder_dir: "os.PathLike | str",
        decoder_dir: "os.PathLike | str",
        heads_path: "os.PathLike | str",
        class_codes: Sequence[str] = DEFAULT_CLASS_CODES,
        prompt: str = DEFAULT_PROMPT,
        answer_prefix: str = DEFAULT_ANSWER_PREFIX,
        schema: Optional[Schema] = None,
        decoder_inputs: str = DECODER_INPUTS[0],
    ):
        import torch
        from transformers import AutoTokenizer

        self.image = ReferenceModel(image_encoder_dir)
        self.text = ReferenceModel(text_encoder_dir)
        self.decoder = ReferenceModel(decoder_dir)
        for ref, comp in ((self.image, "image_encoder"), (self.text, "text_encoder"), (self.decoder, "decoder")):
            if ref.component != comp:
                raise ValueError(f"{ref.model_dir}: is a {ref.component} ({ref.model_type}), expected a {comp}")
        self.text_tokenizer = AutoTokenizer.from_pretrained(str(self.text.model_dir))
        self.decoder_tokenizer = AutoTokenizer.from_pretrained(str(self.decoder.model_dir))
        self.class_codes = tuple(class_codes)
        self.prompt, self.answer_prefix = prompt, answer_prefix
        self.schema = schema or Schema.pad_ufes_20()
        self.heads_path = Path(heads_path)
        if decoder_inputs not in DECODER_INPUTS:
            raise ValueError(f"decoder_inputs {decoder_inputs!r} is not one of {list(DECODER_INPUTS)}")
        self.decoder_inputs = decoder_inputs
        self.uses_metadata = decoder_inputs != "image"

        self.d_img = int(self.image.config.hidden_size)
        self.d_txt = int(self.text.config.hidden_size)
        self.d_llm = int(self.decoder.config.hidden_size)
        self.patch_size = int(self.image.config.patch_size)
        self.num_registers = int(getattr(self.image.config, "num_register_tokens", 0) or 0)
        self.heads, self.special_tokens_in_file = load_heads(
            self.heads_path, self.d_img, self.d_txt, self.d_llm, len(self.class_codes))

        enc = lambda s: list(self.decoder_tokenizer.encode(s, add_special_tokens=False))  # noqa: E731
        self.prompt_ids = enc(prompt)
        self.answer_prefix_ids = enc(answer_prefix)
        self.class_token_ids = class_token_ids(self.decoder_tokenizer, self.class_codes)
        if not self.special_tokens_in_file:
            with torch.no_grad():
                self.heads.fusion.special_tokens.copy_(self.initial_special_tokens())

    def initial_special_tokens(self):
        """(4, D): rows 0, 1 the mean of the decoder input-embedding rows of encode(" image"), rows 2, 3 that of
        encode(" text") (decoder tokenizer, no special tokens; float32 sum in token order, divided by the count)."""
        import torch

        emb = self.decoder.top.get_input_embeddings().weight.detach()
        rows = []
        for word in SPECIAL_TOKEN_INIT_WORDS:
            ids = self.decoder_tokenizer.encode(word, add_special_tokens=False)
            if not ids:
                raise ValueError(f"{word!r} encodes to no decoder token")
            rows.append(emb[torch.tensor(ids)].mean(dim=0))
        return torch.stack(rows)

    # -- inputs --------------------------------------------------------------------------------------------------
    def pixel_values(self, image_path: "os.PathLike | str") -> np.ndarray:
        """(1, 3, H, W) float32: the image encoder directory's image processor (AutoImageProcessor) on the image."""
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(str(self.image.model_dir))
        pv = processor(images=load_image(image_path), return_tensors="pt")["pixel_values"]
        return np.ascontiguousarray(pv.numpy(), dtype="<f4")

    def text_ids(self, text: str) -> "OrderedDict[str, np.ndarray]":
        """The text encoder's tokenizer with its special tokens, truncated to max_position_embeddings."""
        max_len = int(self.text.config.max_position_embeddings)
        enc = self.text_tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_len,
                                  return_attention_mask=True, return_token_type_ids=False)
        ids = np.asarray([enc["input_ids"]], dtype="<i8")
        mask = np.asarray([enc["attention_mask"]], dtype="<i8")
        return OrderedDict(input_ids=ids, attention_mask=mask)

    def case_inputs(self, image_path: "os.PathLike | str", record: Mapping[str, Any], source: str = "record"):
        """(inputs, input_recipe) of one case: the six /inputs of a prima trace, and how they were made."""
        text = self.schema.render(record, source)
        inputs = OrderedDict(pixel_values=self.pixel_values(image_path))
        inputs.update(self.text_ids(text))
        inputs["prompt_ids"] = np.asarray([self.prompt_ids], dtype="<i8").reshape(1, -1)
        inputs["answer_prefix_ids"] = np.asarray([self.answer_prefix_ids], dtype="<i8").reshape(1, -1)
        inputs["class_token_ids"] = np.asarray(self.class_token_ids, dtype="<i8")
        recipe = OrderedDict(
            kind="prima",
            image=Path(image_path).name,
            image_processor="AutoImageProcessor of the image encoder directory",
            record=dict(record),
            text=text,
            text_tokenizer="text encoder directory, special tokens, truncation to max_position_embeddings",
            prompt=self.prompt,
            answer_prefix=self.answer_prefix,
            class_codes=list(self.class_codes),
            heads=self.heads_path.name,
            special_tokens="heads file" if self.special_tokens_in_file else "decoder embeddings of ' image', ' text'",
        )
        return validate_prima_inputs(inputs), recipe

    # -- forward -------------------------------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        """Every activation of the prima trace, in order, as float32 arrays (batch 1)."""
        acts, _ = self._run(validate_prima_inputs(inputs))
        return acts

    def _run(self, inputs):
        import torch
        import torch.nn.functional as F

        acts: "OrderedDict[str, np.ndarray]" = OrderedDict()
        origins: Dict[str, str] = {}

        def put(name, t, origin):
            a = t.detach().numpy() if hasattr(t, "detach") else t
            a = np.ascontiguousarray(a, dtype="<f4")
            if not np.isfinite(a).all():
                raise RuntimeError(f"activation {name} has non-finite values")
            acts[name] = a
            origins[name] = origin

        pv = inputs["pixel_values"]
        img_acts = self.image.run(OrderedDict(pixel_values=pv))
        for n, a in img_acts.items():
            put(f"image_encoder.{n}", a, f"image_encoder:{self.image.module_path(n)}")
        if self.uses_metadata:
            text_in = OrderedDict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            txt_acts = self.text.run(text_in)
            for n, a in txt_acts.items():
                put(f"text_encoder.{n}", a, f"text_encoder:{self.text.module_path(n)}")

        h, w = pv.shape[2] // self.patch_size, pv.shape[3] // self.patch_size
        img = torch.from_numpy(img_acts["final_norm"])  # (1, 1+R+Np, Ci)
        if img.shape[1] != 1 + self.num_registers + h * w:
            raise RuntimeError(f"image encoder gave {img.shape[1]} tokens, expected 1+{self.num_registers}+{h}*{w}")
        cls_i, patches = img[:, 0], img[:, 1 + self.num_registers :]
        if self.uses_metadata:
            txt = torch.from_numpy(txt_acts["final_norm"])  # (1, T, Ct)
            n = int(inputs["attention_mask"][0].sum())
            cls_t, seq_t = txt[:, 0], txt[:, 1 : max(1, n - 1)]  # drops [CLS], the final [SEP] and padding

        hd = self.heads
        with torch.inference_mode():
            put("alignment.image_global", hd.alignment.image_proj(cls_i), "heads:alignment.image_proj(image CLS)")
            if self.uses_metadata:
                put("alignment.text_global", hd.alignment.text_proj(cls_t), "heads:alignment.text_proj(text CLS)")
            put("alignment.image_local", hd.alignment.image_proj(patches), "heads:alignment.image_proj(patches)")
            if self.uses_metadata:
                put("alignment.text_local", hd.alignment.text_proj(seq_t), "heads:alignment.text_proj(text tokens)")
            put("image_classifier.logits", hd.image_classifier(cls_i), "heads:image_classifier(image CLS)")
            f = hd.fusion
            image_cls = f.image_cls_projector(cls_i)
            image_seq = f.image_seq_projector(patches, h, w)
            put("fusion.image_cls", image_cls, "heads:fusion.image_cls_projector")
            put("fusion.image_seq", image_seq, "heads:fusion.image_seq_projector")
            text_cls = text_seq = None
            if self.uses_metadata:
                text_cls = f.text_cls_projector(cls_t)
                text_seq = f.text_seq_projector(seq_t)
                put("fusion.text_cls", text_cls, "heads:fusion.text_cls_projector")
                put("fusion.text_seq", text_seq, "heads:fusion.text_seq_projector")

            emb = self.decoder.top.get_input_embeddings().weight
            st = f.special_tokens[:, None, :]  # (4, 1, D)
            prompt = emb[torch.from_numpy(inputs["prompt_ids"][0])][None]  # (1, P, D)
            answer = emb[torch.from_numpy(inputs["answer_prefix_ids"][0])][None]  # (1, A, D)
            parts = decoder_sequence(prompt, st, image_cls, image_seq, text_cls, text_seq, answer, self.decoder_inputs)
            embeds = torch.cat(parts, dim=1)  # (1, T_dec, D)
            put("decoder.embeddings", embeds, "decoder:inputs_embeds (assembled, Formats/prima-trace.md §10)")

            top = self.decoder.top
            L = self.decoder.num_layers
            points = [(f"decoder.layers.{i}", f"model.layers.{i}") for i in range(L)]
            points.append(("decoder.final_norm", "model.norm"))
            captured: List[Tuple[str, Any]] = []

            def make_hook(name):
                def hook(_m, _a, out):
                    captured.append((name, (out if torch.is_tensor(out) else out[0]).detach().clone()))

                return hook

            handles = [top.get_submodule(p).register_forward_hook(make_hook(nm)) for nm, p in points]
            try:
                mask = torch.ones((1, embeds.shape[1]), dtype=torch.long)
                out = top(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
            finally:
                for hnd in handles:
                    hnd.remove()
            if [nm for nm, _ in captured] != [nm for nm, _ in points]:
                raise RuntimeError(f"decoder hooks fired as {[nm for nm, _ in captured]}")
            for nm, t in captured:
                put(nm, t, f"decoder:{dict(points)[nm]}")
            final = captured[-1][1]
            ids = torch.from_numpy(inputs["class_token_ids"])
            class_logits = top.lm_head(final[:, -1])[:, ids]  # (1, K)
            check = out.logits[:, -1, ids]
            if not torch.allclose(class_logits, check, rtol=0, atol=1e-5):
                raise RuntimeError("lm_head on the last position differs from the model's logits")
            put("class_logits", class_logits, "decoder:lm_head(final_norm[:, -1])[class_token_ids]")
            put("class_probs", F.softmax(class_logits, dim=-1), "softmax(class_logits)")
        return acts, origins

    # -- trace ---------------------------------------------------------------------------------------------------
    def write_trace(self, out_path, inputs, *, source: str, input_recipe: Optional[Mapping[str, Any]] = None) -> Trace:
        inputs = validate_prima_inputs(inputs)
        acts, origins = self._run(inputs)
        attrs = self.trace_attrs(TRACE_VERSION, source, PRODUCER, input_recipe)
        _write_h5(Path(out_path), attrs, inputs, acts, origins)
        return Trace(attrs=dict(attrs), inputs=inputs, activations=acts, origins=origins)

    def trace_attrs(self, version: int, source: str, producer: str, input_recipe: Optional[Mapping[str, Any]] = None,
                    extra: Optional[Mapping[str, Any]] = None) -> "OrderedDict[str, Any]":
        """The root attributes of a prima trace (§10.1), in the order the reference writes them; ``extra`` (a
        gradient trace's objective and its settings, §11) goes after ``dtype``."""
        import torch
        import transformers

        attrs: "OrderedDict[str, Any]" = OrderedDict()
        attrs["prima_trace_version"] = np.int64(version)
        attrs["component"] = "prima"
        attrs["source"] = source
        attrs["torch_version"] = str(torch.__version__)
        attrs["transformers_version"] = str(transformers.__version__)
        attrs["attn_implementation"] = "eager"
        attrs["dtype"] = "float32"
        attrs.update(extra or {})
        if not self.uses_metadata:
            attrs["decoder_inputs"] = self.decoder_inputs  # §10.1: written only when not the default
        attrs["image_encoder_source"] = self.image.source
        attrs["text_encoder_source"] = self.text.source
        attrs["decoder_source"] = self.decoder.source
        attrs["heads_source"] = self.heads_path.name
        attrs["model_types"] = f"{self.image.model_type},{self.text.model_type},{self.decoder.model_type}"
        attrs["producer"] = producer
        if input_recipe is not None:
            attrs["input_recipe"] = json.dumps(input_recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return attrs


# ---------------------------------------------------------------------------------------------------------------------
# The same pipeline without hooks or copies, timed by stage (benchmarks)
# ---------------------------------------------------------------------------------------------------------------------
def diagnose(image_model, text_model, decoder, heads, inputs, num_registers: int, patch_size: int,
             clock=None) -> Tuple[Any, Dict[str, float]]:
    """class_probs (1, K) of one case and the seconds spent per stage ({"image_encoder", "text_encoder", "fusion",
    "decoder", "total"}), with the math of Formats/prima-trace.md §10 and no activation capture.

    image_model / text_model: the base encoders (DINOv3ViTModel, BertModel/ModernBertModel); decoder: a
    Qwen3ForCausalLM (only the last position's logits are computed: logits_to_keep=1); heads: PrimaHeads (or any
    module with the same submodules, e.g. after torch dynamic quantisation); inputs: torch tensors of the six
    prima inputs. Call under torch.inference_mode()."""
    import time

    import torch

    clock = clock or time.perf_counter
    t0 = clock()
    pv = inputs["pixel_values"]
    img = image_model(pixel_values=pv).last_hidden_state  # (1, 1+R+Np, Ci)
    t1 = clock()
    mask = inputs["attention_mask"]
    txt = text_model(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state  # (1, T, Ct)
    t2 = clock()
    n = int(mask[0].sum())
    h, w = pv.shape[2] // patch_size, pv.shape[3] // patch_size
    cls_i, patches = img[:, 0], img[:, 1 + num_registers:]
    cls_t, seq_t = txt[:, 0], txt[:, 1:max(1, n - 1)]
    f = heads.fusion
    st = f.special_tokens[:, None, :]
    emb = decoder.get_input_embeddings()
    parts = [emb(inputs["prompt_ids"]), st[0:1], f.image_cls_projector(cls_i), f.image_seq_projector(patches, h, w),
             st[1:2], st[2:3], f.text_cls_projector(cls_t), f.text_seq_projector(seq_t), st[3:4],
             emb(inputs["answer_prefix_ids"])]
    embeds = torch.cat(parts, dim=1)  # (1, T_dec, D)
    t3 = clock()
    ones = torch.ones((1, embeds.shape[1]), dtype=torch.long)
    logits = decoder(inputs_embeds=embeds, attention_mask=ones, use_cache=False, logits_to_keep=1).logits
    probs = torch.softmax(logits[:, -1, inputs["class_token_ids"]], dim=-1)
    t4 = clock()
    return probs, {"image_encoder": t1 - t0, "text_encoder": t2 - t1, "fusion": t3 - t2, "decoder": t4 - t3,
                   "total": t4 - t0}


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prima_ref.prima",
                                description="Run the PRIMA reference pipeline on one case (and write a prima trace).")
    p.add_argument("--image-encoder", required=True)
    p.add_argument("--text-encoder", required=True)
    p.add_argument("--decoder", required=True)
    p.add_argument("--heads", required=True, help="heads safetensors file (canonical names)")
    p.add_argument("--image", required=True, help="PNG image of the lesion")
    p.add_argument("--metadata", required=True, help="JSON object with the patient's metadata")
    p.add_argument("--classes", default=",".join(DEFAULT_CLASS_CODES), help="class codes, comma-separated")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--answer-prefix", default=DEFAULT_ANSWER_PREFIX)
    p.add_argument("-o", "--output", help="write a prima trace here (.h5)")
    p.add_argument("--source", default="prima", help="the trace's source attribute")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    ref = PrimaReference(args.image_encoder, args.text_encoder, args.decoder, args.heads,
                         class_codes=[c.strip() for c in args.classes.split(",")], prompt=args.prompt,
                         answer_prefix=args.answer_prefix)
    record = json.loads(Path(args.metadata).read_text(encoding="utf-8"))
    inputs, recipe = ref.case_inputs(args.image, record, source=args.metadata)
    if args.output:
        trace = ref.write_trace(args.output, inputs, source=args.source, input_recipe=recipe)
        acts = trace.activations
    else:
        acts = ref.run(inputs)
    print(f"text: {recipe['text']}")
    for code, prob in zip(ref.class_codes, acts["class_probs"][0]):
        print(f"  {code}: {prob:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
