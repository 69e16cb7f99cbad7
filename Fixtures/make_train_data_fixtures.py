#!/usr/bin/env python3
"""Write Fixtures/train/draws.json and Fixtures/train/augmentation/.

draws.json: what the numpy reference (Formats/python/prima_ref/train_data.py) draws for the masked-LM masks of
two token sequences over several epochs, the epoch orders, the balanced sampler, the stage-2 view picks, the
class weights and the soft targets of the bundled case folder's rows (reference schema, full and labels only),
which MaskedLMMaskingTests, SamplingTests, ViewsTests and SoftTargetsTests compare with exactly.

augmentation/: augmented views computed by the numpy reference of the data pipeline
(Formats/python/prima_ref/train_data.py, Formats/prima-training.md §3.4), which AugmentationTests reproduces.

For each entry of VIEWS: the committed PNG is decoded (8-bit RGB or grey, non-interlaced, by the small decoder
below: the Swift decoder gives the same samples for these files), the view's draws are taken from the stream
(seed, augmentation, epoch, index, view), and the view's pixel values [3, H, W] are written as float32 little
endian to <name>.f32; augmentation.json lists, per view, the source, the stream numbers, the preprocessing, the
draws (so a failing test can say whether the draws or the pixels differ) and the file.

The views cover downscaling (320x240 and 48x40 crops to 32x32) and upscaling (to 56x64), bilinear and bicubic,
flipped and not, normalised and not, and torchvision's centre-crop fallback (a 300x16 strip, where no crop of
scale 0.6-1.0 and ratio 3/4-4/3 fits).

numpy only; rerun from the repository root (two runs give byte-identical files):

    /work/venv/bin/python Fixtures/make_train_data_fixtures.py
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from fixture_common import FIXTURES, REPO, check_versions

check_versions(Path(__file__).name, "training data fixtures")
sys.path.insert(0, str(REPO / "Formats" / "python"))
from prima_ref.train_data import (  # noqa: E402
    Preprocessing, apply_view, balanced_order, class_weights, draw_view, epoch_order, mask_tokens, pick_views,
    soft_target_blocks, soft_target_vector)
from prima_ref.metadata import Schema, read_csv  # noqa: E402
from prima_ref import png  # noqa: E402

OUT = FIXTURES / "train" / "augmentation"

SCENE = "Fixtures/images/preprocess/scene_rgb8.png"
CASE = "Fixtures/prima/cases/imgs/PAT_46_881_939.png"
STRIP = "Fixtures/images/preprocess/strip_grey8.png"

SMALL = dict(height=32, width=32)
VIEWS = [
    # name, source, seed, epoch, index, view, preprocessing
    ("scene_s7_e0_i0_v0", SCENE, 7, 0, 0, 0, SMALL),
    ("scene_s7_e0_i0_v1", SCENE, 7, 0, 0, 1, SMALL),
    ("scene_s7_e3_i12_v0", SCENE, 7, 3, 12, 0, SMALL),
    ("scene_s1_e1_i5_v1_bicubic", SCENE, 1, 1, 5, 1, dict(height=40, width=24, resample="bicubic")),
    ("case_s7_e0_i1_v0_up", CASE, 7, 0, 1, 0, dict(height=56, width=64)),
    ("case_s2_e4_i9_v1_raw", CASE, 2, 4, 9, 1, dict(height=32, width=32, do_normalize=False)),
    ("strip_s7_e0_i0_v0_fallback", STRIP, 7, 0, 0, 0, SMALL),
]


def decode_png(path: Path) -> np.ndarray:
    """8-bit RGB or grey, non-interlaced PNG -> [h, w, 3] uint8 (grey repeated into R, G, B)."""
    ihdr, idat = png.read_chunks(path)
    width, height, depth, colour, _, _, interlace = ihdr
    assert depth == 8 and colour in (0, 2) and interlace == 0, (path, ihdr)
    image = np.frombuffer(png.unfiltered(path, ihdr, idat), dtype=np.uint8).reshape(height, width, png.CHANNELS[colour])
    return np.repeat(image, 3, axis=2) if colour == 0 else image


# Two token sequences: [CLS]=2 … [SEP]=3 with a special token inside (position 5), vocabulary 50, [MASK] = 4.
SEQUENCES = [
    ([2, 11, 12, 13, 14, 1, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 3],
     [True, False, False, False, False, True] + [False] * 18 + [True]),
    ([2, 40, 3], [True, False, True]),
]
LABELS = [0, 0, 0, 1, 2, 2, 0, 4, 4, 0, 0, 2]


CLASSES = ["BCC", "SCC", "ACK", "SEK", "MEL", "NEV"]


def soft_targets():
    schema = Schema.pad_ufes_20()
    rows = read_csv(REPO / "Fixtures/prima/cases/metadata.csv")
    parsed = [schema.parse(row) for row in rows]
    out = {}
    for name, labels_only in (("full", False), ("labels_only", True)):
        blocks = soft_target_blocks(schema, CLASSES, parsed, labels_only=labels_only)
        out[name] = [[float(x) for x in soft_target_vector(blocks, p)] for p in parsed]
    return out


def draws():
    masks = []
    for index, (ids, special) in enumerate(SEQUENCES):
        for epoch in range(4):
            inputs, labels = mask_tokens(ids, special, 4, 50, 5, epoch, index)
            masks.append({"index": index, "epoch": epoch, "input_ids": inputs, "labels": labels})
    return {
        "sequences": [{"ids": ids, "special": special} for ids, special in SEQUENCES],
        "mask_token_id": 4, "vocabulary_size": 50, "seed": 5, "masks": masks,
        "epoch_orders": [{"count": 12, "seed": 5, "epoch": e, "order": epoch_order(12, 5, e)} for e in range(3)],
        "labels": LABELS,
        "balanced_orders": [{"seed": 5, "epoch": e, "order": balanced_order(LABELS, 5, e)} for e in range(3)],
        "class_weights": [float(w) for w in class_weights(LABELS, 6)],
        "view_picks": [{"images": [10, 11, 12, 13], "seed": 5, "epoch": e, "index": 3, "pick": list(pick_views([10, 11, 12, 13], 5, e, 3))}
                       for e in range(4)],
        "soft_targets": soft_targets(),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    draws_text = json.dumps(draws()) + "\n"
    (OUT.parent / "draws.json").write_text(draws_text)
    digest.update(draws_text.encode())
    entries = []
    for name, source, seed, epoch, index, view, settings in VIEWS:
        image = decode_png(REPO / source)
        height, width = image.shape[:2]
        d = draw_view(height, width, seed, epoch, index, view)
        p = Preprocessing(**settings)
        pixels = apply_view(d, image, p)
        assert pixels.shape == (3, p.height, p.width) and pixels.dtype == np.float32
        data = pixels.astype("<f4").tobytes()
        (OUT / f"{name}.f32").write_bytes(data)
        digest.update(data)
        entries.append({
            "name": name, "source": source, "seed": seed, "epoch": epoch, "index": index, "view": view,
            "preprocessing": {"height": p.height, "width": p.width, "resample": p.resample,
                              "do_normalize": p.do_normalize},
            "draw": {"top": d.top, "left": d.left, "height": d.height, "width": d.width, "flip": bool(d.flip),
                     "brightness": float(d.brightness), "contrast": float(d.contrast),
                     "saturation": float(d.saturation)},
            "file": f"{name}.f32", "shape": [3, p.height, p.width],
        })
    text = json.dumps({"views": entries}, indent=1) + "\n"
    (OUT / "augmentation.json").write_text(text)
    digest.update(text.encode())
    print(f"wrote Fixtures/train/draws.json and {len(entries)} views to {OUT.relative_to(REPO)}; sha256 of all {digest.hexdigest()}")


if __name__ == "__main__":
    main()
