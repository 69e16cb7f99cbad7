"""The reference int8 quantiser of Formats/prima-checkpoint.md §7.3 in numpy, and a dequantised model directory.

A gradient trace of "LoRA on an int8 checkpoint" is PyTorch run on the dequantised weights ŵ = float32(q) · s: what
``prima-quantize --int8`` stores is fixed bit for bit by §7.3, so ŵ is too, and a runtime that multiplies by the
int8 weights must land within the trace tolerances of a float32 run on ŵ. ``dequantized_model_dir`` writes a copy
of a Hugging Face directory whose quantisable weights (§7.2 with the default rules) are replaced by their ŵ.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from .names import UnknownNameError, canonical_name

SCHEMES = ("int8-per-channel", "int8-block32")
BLOCK = 32
# §7.2's default keep-float patterns, in their order (searched anywhere in the canonical name).
DEFAULT_KEEP_FLOAT = (
    r"(^|\.)[a-z_]*norm\.(weight|bias)$",
    r"\.bias$",
    r"^layers\.[0-9]+\.ls[12]$",
    r"^embed\.(cls_token|register_tokens|mask_token)$",
    r"^embed\.patch\.",
    r"^embed\.",
    r"^(lm_head|mlm|pooler)\.",
)


def quantize(w: np.ndarray, scheme: str = "int8-per-channel") -> Tuple[np.ndarray, np.ndarray]:
    """(q int8 [N, K], scales float32 [N] or [N, ceil(K/32)]) of a float32 [N, K] weight, bit-exact per §7.3."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not one of {SCHEMES}")
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"a quantised weight is rank 2, got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("a weight with NaN or Inf has no scale")
    n, k = w.shape
    block = k if scheme == "int8-per-channel" else BLOCK
    groups = -(-k // block)
    padded = np.zeros((n, groups * block), dtype=np.float32)
    padded[:, :k] = w
    g = padded.reshape(n, groups, block)
    m = np.abs(g).max(axis=2)  # float32; padding zeros do not change a max of magnitudes
    s = (m / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (g / s[:, :, None]).astype(np.float32)
    q = np.clip(np.rint(ratio), -127, 127)
    q = np.where(s[:, :, None] == 0, 0, q).astype(np.int8).reshape(n, groups * block)[:, :k]
    scales = s[:, 0] if scheme == "int8-per-channel" else s
    return np.ascontiguousarray(q), np.ascontiguousarray(scales)


def dequantize(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """ŵ = float32(q) · s (float32 multiplication), §7.3."""
    n, k = q.shape
    if scales.ndim == 1:
        s = np.repeat(scales[:, None], k, axis=1)
    else:
        s = np.repeat(scales, BLOCK, axis=1)[:, :k]
    return (q.astype(np.float32) * s.astype(np.float32)).astype(np.float32)


def sqnr_db(w: np.ndarray, w_hat: np.ndarray) -> float:
    """§7.4: 10·log10(Σw² / Σ(w − ŵ)²), sums in float64."""
    w = w.astype(np.float64)
    e = ((w - w_hat.astype(np.float64)) ** 2).sum()
    return float("inf") if e == 0 else float(10 * np.log10((w ** 2).sum() / e))


def is_quantized_by_default(canonical: str, shape) -> bool:
    """§7.2: a rank-2 tensor that no default keep-float pattern matches."""
    return len(shape) == 2 and not any(re.search(p, canonical) for p in DEFAULT_KEEP_FLOAT)


def dequantized_model_dir(model_dir, out_dir, scheme: str = "int8-per-channel") -> Dict[str, float]:
    """Copy the f32 Hugging Face directory MODEL_DIR (single model.safetensors) to OUT_DIR with every weight that
    ``prima-quantize --int8`` quantises by default replaced by its dequantised ŵ. Returns {canonical name: SQNR dB}
    of the replaced tensors, in file order. The tied alias rule of §7.2 does not arise: tied heads are not stored
    in the file and embeddings stay float."""
    from safetensors.numpy import load_file, save_file

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config = json.loads((model_dir / "config.json").read_text())
    model_type = config["model_type"]
    src = model_dir / "model.safetensors"
    if not src.is_file():
        raise ValueError(f"{model_dir}: needs a single model.safetensors")
    tensors = load_file(str(src))
    out_dir.mkdir(parents=True, exist_ok=False)
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and f.name != "model.safetensors":
            shutil.copyfile(f, out_dir / f.name)
    replaced: "OrderedDict[str, float]" = OrderedDict()
    result = OrderedDict()
    for name, w in tensors.items():
        try:
            canonical = canonical_name(model_type, name)
        except UnknownNameError:
            result[name] = w
            continue
        if w.dtype == np.float32 and is_quantized_by_default(canonical, w.shape):
            q, s = quantize(w, scheme)
            w_hat = dequantize(q, s)
            replaced[canonical] = sqnr_db(w, w_hat)
            result[name] = w_hat
        else:
            result[name] = w
    save_file(result, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return replaced
