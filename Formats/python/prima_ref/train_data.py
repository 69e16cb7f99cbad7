"""The data pipeline of prima-train in numpy (Formats/prima-training.md §1 and §3): the random streams, the folds,
the stage-2 views, the augmentation of a view, the soft targets and the masked-LM masking.

Written from the document, independently of the Swift PrimaTrain module, so that the Python reference trainer
draws exactly what the Swift trainer draws and the two can be checked against each other
(Fixtures/make_train_data_fixtures.py writes what PrimaTrainTests compares with). numpy only.

    stream = TrainingRandom(seed, PURPOSE_AUGMENTATION, epoch, index, view)
    d = draw_view(height, width, seed, epoch, index, view)
    pixels = apply_view(d, image_hwc, Preprocessing(height=224, width=224))   # float32 [3, H, W]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

MASK64 = (1 << 64) - 1

# §1: the purposes of the random streams.
PURPOSE_SHUFFLE = 1
PURPOSE_MASKING = 2
PURPOSE_AUGMENTATION = 3
PURPOSE_INITIALISATION = 4
PURPOSE_SPLIT = 5


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class TrainingRandom:
    """One stream of §1: SplitMix64 from key = mix(mix(mix(mix(mix(seed) ^ purpose) ^ epoch) ^ index) ^ part)."""

    def __init__(self, seed: int, purpose: int, epoch: int, index: int, part: int = 0):
        key = _mix(seed & MASK64)
        for value in (purpose, epoch, index, part):
            key = _mix(key ^ (value & MASK64))
        self.state = key

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        return _mix(self.state)

    def unit(self) -> float:
        return (self.next() >> 11) * 2.0 ** -53

    def below(self, bound: int) -> int:
        assert bound >= 1
        threshold = ((1 << 64) - bound) % bound
        while True:
            product = self.next() * bound
            if (product & MASK64) >= threshold:
                return product >> 64

    def permutation(self, count: int) -> List[int]:
        order = list(range(count))
        for i in range(count - 1, 0, -1):
            j = self.below(i + 1)
            order[i], order[j] = order[j], order[i]
        return order


# ---------------------------------------------------------------------------------------------------------------
# §3.4 Augmentation of one view.


@dataclass
class AugmentationSettings:
    min_scale: float = 0.6
    max_scale: float = 1.0
    min_ratio: float = 3.0 / 4.0
    max_ratio: float = 4.0 / 3.0
    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


@dataclass
class ViewDraw:
    top: int
    left: int
    height: int
    width: int
    flip: bool
    brightness: np.float32
    contrast: np.float32
    saturation: np.float32


CROP_ATTEMPTS = 10


def crop_box(height: int, width: int, s: AugmentationSettings, stream: TrainingRandom) -> Tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params with the stream's draws (§3.4). math.log/exp/sqrt are the C
    library's, as Swift's; round() is half to even, as .toNearestOrEven."""
    area = float(height * width)
    log_low, log_high = math.log(s.min_ratio), math.log(s.max_ratio)
    for _ in range(CROP_ATTEMPTS):
        target = area * (s.min_scale + (s.max_scale - s.min_scale) * stream.unit())
        ratio = math.exp(log_low + (log_high - log_low) * stream.unit())
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = stream.below(height - h + 1)
            left = stream.below(width - w + 1)
            return top, left, h, w
    in_ratio = float(width) / float(height)
    w, h = width, height
    if in_ratio < s.min_ratio:
        h = int(round(w / s.min_ratio))
    elif in_ratio > s.max_ratio:
        w = int(round(h * s.max_ratio))
    return (height - h) // 2, (width - w) // 2, h, w


def draw_view(height: int, width: int, seed: int, epoch: int, index: int, view: int,
              s: AugmentationSettings = AugmentationSettings()) -> ViewDraw:
    stream = TrainingRandom(seed, PURPOSE_AUGMENTATION, epoch, index, view)
    top, left, h, w = crop_box(height, width, s, stream)
    flip = stream.unit() < s.flip_probability

    def factor(strength: float) -> np.float32:
        return np.float32(1 - strength + 2 * strength * stream.unit())

    brightness = factor(s.brightness)
    contrast = factor(s.contrast)
    saturation = factor(s.saturation)
    return ViewDraw(top, left, h, w, flip, brightness, contrast, saturation)


@dataclass
class Preprocessing:
    """The checkpoint's preprocessing/ attributes (Formats/prima-checkpoint.md §3.4); resize is required here."""
    height: int = 224
    width: int = 224
    resample: str = "bilinear"
    do_rescale: bool = True
    do_normalize: bool = True
    rescale_factor: float = 1.0 / 255.0
    image_mean: Sequence[float] = (0.485, 0.456, 0.406)
    image_std: Sequence[float] = (0.229, 0.224, 0.225)


F32 = np.float32


def _filter_weight(x: np.float32, resample: str) -> np.float32:
    x = F32(abs(x))
    if resample == "bilinear":
        return F32(F32(1) - x) if x < F32(1) else F32(0)
    a = F32(-0.5)
    if x < F32(1):
        return F32(F32(F32(F32(F32(a + F32(2)) * x) - F32(a + F32(3))) * x) * x) + F32(1)
    if x < F32(2):
        return F32(F32(F32(F32(F32(a * x) - F32(F32(5) * a)) * x) + F32(F32(8) * a)) * x) - F32(F32(4) * a)
    return F32(0)


def axis_weights(input_size: int, output_size: int, resample: str):
    """torch's antialiased-resize taps of one axis with scalar_t = float (Sources/PrimaImage/AntialiasedResize.swift
    documents each promotion to double)."""
    scale = F32(F32(input_size) / F32(output_size))
    half_support = (2 if resample == "bilinear" else 4) * 0.5
    support = F32(half_support * float(scale)) if scale >= 1 else F32(half_support)
    stride = int(math.ceil(float(support))) * 2 + 1
    inverse_scale = F32(1.0 / float(scale)) if scale >= 1 else F32(1)
    starts, counts, weights = [], [], np.zeros((output_size, stride), dtype=np.float32)
    for i in range(output_size):
        center = F32(float(scale) * (i + 0.5))
        xmin = max(int(float(F32(center - support)) + 0.5), 0)
        xsize = min(max(min(int(float(F32(center + support)) + 0.5), input_size) - xmin, 0), stride)
        total = F32(0)
        for j in range(xsize):
            distance = F32((float(F32(F32(j + xmin) - center)) + 0.5) * float(inverse_scale))
            w = _filter_weight(distance, resample)
            weights[i, j] = w
            total = F32(total + w)
        if total != 0:
            for j in range(xsize):
                weights[i, j] = F32(weights[i, j] / total)
        starts.append(xmin)
        counts.append(xsize)
    return starts, counts, weights


def _resize_last_axis(x: np.ndarray, output_size: int, resample: str) -> np.ndarray:
    """Resizes the last axis of a float32 array: out = t0*w0, then += tj*wj in order, each op in float32."""
    starts, counts, weights = axis_weights(x.shape[-1], output_size, resample)
    out = np.zeros(x.shape[:-1] + (output_size,), dtype=np.float32)
    for i in range(output_size):
        if counts[i] == 0:
            continue
        acc = x[..., starts[i]] * weights[i, 0]
        for j in range(1, counts[i]):
            acc = acc + x[..., starts[i] + j] * weights[i, j]
        out[..., i] = acc
    return out


def antialiased_resize(planes: np.ndarray, height: int, width: int, resample: str) -> np.ndarray:
    """[C, h, w] float32 -> [C, height, width]: the width first, then the height; an unchanged axis is skipped."""
    current = planes
    if width != current.shape[2]:
        current = _resize_last_axis(current, width, resample)
    if height != current.shape[1]:
        current = np.ascontiguousarray(_resize_last_axis(current.transpose(0, 2, 1), height, resample).transpose(0, 2, 1))
    return current


def _gray(x: np.ndarray) -> np.ndarray:
    return (F32(0.2989) * x[0] + F32(0.587) * x[1]) + F32(0.114) * x[2]


def apply_view(d: ViewDraw, image: np.ndarray, p: Preprocessing) -> np.ndarray:
    """One view's pixel values [3, H, W] float32 from an image [h, w, 3] (uint8, or float32 on the 0…255 scale)."""
    crop = image[d.top:d.top + d.height, d.left:d.left + d.width]
    if d.flip:
        crop = crop[:, ::-1]
    factor = F32(p.rescale_factor) if p.do_rescale else F32(1)
    x = crop.transpose(2, 0, 1).astype(np.float32)
    if p.do_rescale:
        x = x * factor
    x = antialiased_resize(np.ascontiguousarray(x), p.height, p.width, p.resample)
    bound = F32(F32(255) * factor)

    def clamp(v):
        return np.minimum(np.maximum(v, F32(0)), bound)

    x = clamp(d.brightness * x)
    mean = F32(np.cumsum(_gray(x).reshape(-1).astype(np.float64))[-1] / (p.height * p.width))
    x = clamp(d.contrast * x + F32(F32(1) - d.contrast) * mean)
    g = _gray(x)
    x = clamp(d.saturation * x + F32(F32(1) - d.saturation) * g[None])
    if p.do_normalize:
        mean_c = np.array(p.image_mean, dtype=np.float32)[:, None, None]
        std_c = np.array(p.image_std, dtype=np.float32)[:, None, None]
        x = (x - mean_c) / std_c
    return x.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# §3.2 Folds, §3.3 views, §3.7 masking, §3.8 orders and class weights.


def folds(cases: Sequence[Tuple[str, str, int]], count: int, grouping: str, seed: int, class_count: int) -> List[int]:
    """The fold of every case; cases are (patient_id, lesion_id, label index) in CSV order, grouping "lesion" or
    "patient"."""
    group_of, group_labels, case_groups = {}, [], []
    for patient, lesion, label in cases:
        key = (patient, lesion) if grouping == "lesion" else patient
        if key not in group_of:
            group_of[key] = len(group_labels)
            group_labels.append(label)
        case_groups.append(group_of[key])
    assert 2 <= count <= len(group_labels)
    permuted = TrainingRandom(seed, PURPOSE_SPLIT, 0, 0).permutation(len(group_labels))
    fold_of_group = [0] * len(group_labels)
    dealt = 0
    for label in range(class_count):
        for group in permuted:
            if group_labels[group] == label:
                fold_of_group[group] = dealt % count
                dealt += 1
    return [fold_of_group[g] for g in case_groups]


VIEW_PICK_PART = 2


def pick_views(images: Sequence[int], seed: int, epoch: int, index: int) -> Tuple[int, int]:
    """The two images (case positions) of a stage-2 example's views."""
    if len(images) < 2:
        return images[0], images[0]
    stream = TrainingRandom(seed, PURPOSE_AUGMENTATION, epoch, index, VIEW_PICK_PART)
    a = stream.below(len(images))
    b = stream.below(len(images) - 1)
    if b >= a:
        b += 1
    return images[a], images[b]


IGNORE_LABEL = -100


def mask_tokens(ids: Sequence[int], special: Sequence[bool], mask_token_id: int, vocabulary_size: int, seed: int,
                epoch: int, index: int, mlm_probability=0.15, mask_probability=0.8, random_probability=0.1):
    """(input ids, labels) of one masked-LM example."""
    stream = TrainingRandom(seed, PURPOSE_MASKING, epoch, index)
    selected = [False] * len(ids)
    smallest = None
    for t in range(len(ids)):
        if special[t]:
            continue
        u = stream.unit()
        selected[t] = u < mlm_probability
        if smallest is None or u < smallest[0]:
            smallest = (u, t)
    if not any(selected):
        selected[smallest[1]] = True
    inputs, labels = list(ids), [IGNORE_LABEL] * len(ids)
    for t in range(len(ids)):
        if not selected[t]:
            continue
        labels[t] = ids[t]
        u = stream.unit()
        if u < mask_probability:
            inputs[t] = mask_token_id
        elif u < mask_probability + random_probability:
            inputs[t] = stream.below(vocabulary_size)
    return inputs, labels


def epoch_order(count: int, seed: int, epoch: int) -> List[int]:
    return TrainingRandom(seed, PURPOSE_SHUFFLE, epoch, 0).permutation(count)


BALANCED_PART = 1


def balanced_order(labels: Sequence[int], seed: int, epoch: int) -> List[int]:
    members = {}
    for example, label in enumerate(labels):
        members.setdefault(label, []).append(example)
    present = sorted(members)
    stream = TrainingRandom(seed, PURPOSE_SHUFFLE, epoch, 0, BALANCED_PART)
    order = []
    for _ in labels:
        group = members[present[stream.below(len(present))]]
        order.append(group[stream.below(len(group))])
    return order


def class_weights(labels: Sequence[int], class_count: int) -> np.ndarray:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=class_count)
    present = int((counts > 0).sum())
    return np.array([0.0 if c == 0 else len(labels) / (present * c) for c in counts], dtype=np.float64).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# §3.5 Soft targets, §3.6 corpus text.

LABEL_KEY = "diagnostic"
LABEL_WEIGHT = 3.0
DEFAULT_EDGES_BY_UNIT = {"years": [30.0, 45.0, 60.0, 75.0], "mm": [5.0, 10.0, 15.0, 20.0]}


def soft_target_blocks(schema, class_codes: Sequence[str], parsed_records, labels_only: bool = False,
                       number_edges=None):
    """[(key, kind, codes)] of y: kind boolean/category/number/text/label; codes the values (category, text,
    label) or the bin edges (number). schema is a prima_ref.metadata.Schema, parsed_records Schema.parse outputs
    of the folder's usable rows."""
    number_edges = number_edges or {}
    blocks = []
    if not labels_only:
        for f in schema.fields:
            if not f.soft_target or f.key == LABEL_KEY:
                continue
            if f.kind == "boolean":
                blocks.append((f.key, "boolean", [False, True]))
            elif f.kind == "category":
                blocks.append((f.key, "category", list(f.values)))
            elif f.kind == "number":
                edges = number_edges.get(f.key, DEFAULT_EDGES_BY_UNIT.get(f.unit))
                if edges is None:
                    raise ValueError(f"field {f.key!r}: a soft-target number without bin edges")
                blocks.append((f.key, "number", list(edges)))
            else:
                values = {r[f.key] for r in parsed_records if f.key in r}
                blocks.append((f.key, "text", sorted(values, key=lambda s: s.encode("utf-8"))))
    blocks.append((LABEL_KEY, "label", list(class_codes)))
    return blocks


def soft_target_vector(blocks, parsed) -> np.ndarray:
    """y of one parsed record, float32 [D]."""
    parts = []
    for key, kind, codes in blocks:
        width = len(codes) + 1 if kind == "number" else len(codes)
        part = np.zeros(width, dtype=np.float32)
        value = parsed.get(key)
        code = None
        if value is not None:
            if kind == "number":
                code = sum(1 for e in codes if value >= e)
            elif value in codes:
                code = codes.index(value)
        if code is not None:
            part[code] = LABEL_WEIGHT if kind == "label" else 1.0
        parts.append(part)
    return np.concatenate(parts)


def corpus_record_text(record) -> str:
    """The masked LM's text of a corpus record {"name", "summary", "details"}."""
    name = record["name"].strip(" \t")
    body = " ".join(s for s in (record["summary"].strip(" \t"), record["details"].strip(" \t")) if s)
    return f"{name}: {body}" if body else f"{name}:"
