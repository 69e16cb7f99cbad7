"""Writes the PNG test images, the corrupt files and the preprocessing goldens under Fixtures/images/.

    python Fixtures/images/make_images.py          # from the repository root, in a venv made from
                                                   # Fixtures/images/requirements.txt

Outputs (everything here is generated; do not edit by hand):

  decode/*.png             small images, one per PNG colour type / bit depth (+ tRNS, Adam7, several IDATs,
                           every row filter), random pixels from a seeded generator
  decode/expected.json     the RGB pixels each one must decode to (alpha discarded, grey replicated, palette
                           looked up, 1/2/4-bit grey scaled by 255/(2^bits-1); 16-bit files keep their 16-bit
                           samples, which the decoder turns into v/257 on the 0...255 scale)
  corrupt/*                files the decoder must refuse (what is wrong with each is in corrupt/README.md)
  preprocess/*.png         sources for the goldens
  goldens/*.f32            `pixel_values[0]` (float32, little endian, [3, H, W]) computed by transformers'
                           DINOv3ViTImageProcessor (torchvision backend: tvF.resize -> torch's
                           _upsample_bilinear2d_aa / _upsample_bicubic2d_aa on CPU), with torch's scalar
                           (ATEN_CPU_CAPABILITY=default) kernels, so that every machine writes the same bits
  goldens/goldens.json     for each golden: source image, parameters, shape

The PNG encoder below is written from the PNG specification with zlib and struct only, so the test images
do not depend on an image library. Pillow is used to check them: every 8-bit file must decode under
PIL's Image.open(...).convert("RGB") to exactly the pixels in expected.json. The goldens are fed the
PIL-decoded RGB image (8-bit sources), as a user of the processor would; the 16-bit source is fed as a
float32 tensor holding v/257, the same numbers the Swift decoder produces.

The script also checks that the processor output is bit-identical to the plain torch chain
(uint8 * (1/255) -> F.interpolate(antialias=True, align_corners=False) -> (x - mean) / std), i.e. that the
goldens are exactly the computation numerics.md §1.3 describes.
"""

import hashlib
import importlib.metadata as md
import json
import os
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
SEED = 20260514


def check_versions():
    problems = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, want = line.partition("==")
        try:
            have = md.version(name.strip())
        except md.PackageNotFoundError:
            problems.append(f"{name}: not installed (need {want})")
            continue
        if have.split("+")[0] != want.strip():
            problems.append(f"{name}: {have} installed, {want} pinned")
    if problems:
        sys.exit("make_images.py: the installed packages differ from Fixtures/images/requirements.txt:\n  "
                 + "\n  ".join(problems))


check_versions()
COMPARE_NATIVE = sys.argv[1:] == ["--compare-native"]
if not COMPARE_NATIVE:
    # torch picks its CPU kernels at start-up (DEFAULT, AVX2, AVX512). The vectorised builds of the antialiased
    # resize let the compiler fuse some multiply-adds (FMA), so their last bit depends on the machine. The goldens
    # come from the scalar DEFAULT build, the same on every machine; main() then reports how far this machine's
    # own kernels are from them.
    os.environ["ATEN_CPU_CAPABILITY"] = "default"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import DINOv3ViTImageProcessor  # noqa: E402

torch.set_num_threads(1)

# ---------------------------------------------------------------------------------------------------------------
# PNG encoder (PNG spec, 2nd edition: chunks §5, filters §9, Adam7 §8.2)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(row, bit_depth):
    """row: 1-D array of samples (already interleaved channels). Returns the packed bytes of one scanline."""
    if bit_depth == 16:
        return row.astype(">u2").tobytes()
    if bit_depth == 8:
        return row.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    out = bytearray((len(row) + per_byte - 1) // per_byte)
    for i, v in enumerate(row):
        out[i // per_byte] |= int(v) << (8 - bit_depth * (i % per_byte + 1))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind, row, prev, bpp):
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out[i] = (x - predictor) & 0xFF
    return bytes([kind]) + bytes(out)


def best_filter_row(row, prev, bpp):
    """The usual heuristic (smallest sum of |signed residuals|), for the larger, compressible images."""
    candidates = [filter_row(k, row, prev, bpp) for k in range(5)]
    return min(candidates, key=lambda f: sum(v if v < 128 else 256 - v for v in f[1:]))


def encode_pass(samples, bit_depth, channels, filters):
    """samples: [h, w, channels] array. filters: "cycle" (row y uses filter y % 5) or "best"."""
    h, w = samples.shape[:2]
    if h == 0 or w == 0:
        return b""
    bpp = max(1, channels * bit_depth // 8)
    raw = b""
    prev = bytes(len(pack_row(samples[0].reshape(-1), bit_depth)))
    for y in range(h):
        row = pack_row(samples[y].reshape(-1), bit_depth)
        raw += filter_row(y % 5, row, prev, bpp) if filters == "cycle" else best_filter_row(row, prev, bpp)
        prev = row
    return raw


def encode_png(samples, bit_depth, color_type, palette=None, trns=None, interlace=False, filters="cycle",
               idat_pieces=1, extra_chunks=()):
    """samples: [h, w] or [h, w, c] integer array of the stored samples (palette indices for colour type 3)."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w, c = samples.shape
    assert c == CHANNELS[color_type]
    if interlace:
        raw = b"".join(encode_pass(samples[y0::dy, x0::dx], bit_depth, c, filters) for x0, y0, dx, dy in ADAM7)
    else:
        raw = encode_pass(samples, bit_depth, c, filters)
    data = zlib.compress(raw, 9)
    out = SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    for kind, payload in extra_chunks:
        out += chunk(kind, payload)
    if palette is not None:
        out += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    step = -(-len(data) // idat_pieces)
    for i in range(0, len(data), step):
        out += chunk(b"IDAT", data[i:i + step])
    return out + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------------------------
# Decode fixtures

rng = np.random.default_rng(SEED)
outputs = {}  # relative path -> bytes


def expected_rgb(samples, bit_depth, color_type, palette=None):
    """The RGB a decoder must produce: alpha dropped, grey replicated, palette looked up, low-bit grey scaled."""
    s = samples if samples.ndim == 3 else samples[:, :, None]
    if color_type == 3:
        return np.asarray(palette, dtype=np.uint8)[s[:, :, 0]]
    if color_type in (0, 4):
        g = s[:, :, :1]
        if bit_depth < 8:
            g = g * (255 // (2 ** bit_depth - 1))
        return np.repeat(g, 3, axis=2)
    return s[:, :, :3]


def random_samples(h, w, c, bit_depth):
    top = 2 ** bit_depth
    return rng.integers(0, top, size=(h, w, c), dtype=np.int64)


decode_cases = []  # (name, samples, bit_depth, color_type, kwargs)


def add_case(name, h, w, bit_depth, color_type, **kwargs):
    c = CHANNELS[color_type]
    if color_type == 3:
        n = kwargs.pop("palette_size")
        palette = rng.integers(0, 256, size=(n, 3), dtype=np.int64)
        samples = rng.integers(0, n, size=(h, w, 1), dtype=np.int64)
        kwargs["palette"] = palette
    else:
        samples = random_samples(h, w, c, bit_depth)
    decode_cases.append((name, samples, bit_depth, color_type, kwargs))


add_case("grey1", 11, 13, 1, 0)
add_case("grey2", 11, 13, 2, 0)
add_case("grey4", 11, 13, 4, 0)
add_case("grey8", 11, 13, 8, 0, extra_chunks=[(b"gAMA", struct.pack(">I", 45455)), (b"tEXt", b"Comment\x00seeded")])
add_case("grey8_trns", 11, 13, 8, 0, trns=struct.pack(">H", 7))
add_case("grey16", 11, 13, 16, 0)
add_case("greyalpha8", 11, 13, 8, 4)
add_case("greyalpha16", 11, 13, 16, 4)
add_case("rgb8", 11, 13, 8, 2, idat_pieces=3)
add_case("rgb8_trns", 11, 13, 8, 2, trns=struct.pack(">HHH", 1, 2, 3))
add_case("rgb16", 11, 13, 16, 2)
add_case("rgba8", 11, 13, 8, 6)
add_case("rgba16", 11, 13, 16, 6)
add_case("palette1", 11, 13, 1, 3, palette_size=2)
add_case("palette4_trns", 11, 13, 4, 3, palette_size=11, trns=bytes(range(0, 250, 50)))
add_case("palette8_trns", 11, 13, 8, 3, palette_size=37, trns=bytes(rng.integers(0, 256, size=10, dtype=np.int64)))
add_case("rgb8_adam7", 11, 13, 8, 2, interlace=True)
add_case("rgba16_adam7", 6, 5, 16, 6, interlace=True)
add_case("palette4_adam7", 1, 1, 4, 3, palette_size=9, interlace=True)

expected = {}
for name, samples, bit_depth, color_type, kwargs in decode_cases:
    png = encode_png(samples, bit_depth, color_type, **kwargs)
    outputs[f"decode/{name}.png"] = png
    rgb = expected_rgb(samples, bit_depth, color_type, kwargs.get("palette"))
    h, w = rgb.shape[:2]
    hex_samples = rgb.astype(">u2" if bit_depth == 16 else np.uint8).tobytes().hex()
    expected[name] = {"file": f"{name}.png", "width": w, "height": h, "color_type": color_type,
                      "bit_depth": bit_depth, "interlaced": bool(kwargs.get("interlace", False)),
                      "sample_bits": 16 if bit_depth == 16 else 8, "rgb_hex": hex_samples}

# ---------------------------------------------------------------------------------------------------------------
# Corrupt files. Each starts from a valid small RGB image.

valid = encode_png(random_samples(9, 7, 3, 8), 8, 2)
idat_at = valid.index(b"IDAT") - 4
idat_len = struct.unpack(">I", valid[idat_at:idat_at + 4])[0]
idat_crc_at = idat_at + 8 + idat_len


def with_ihdr(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", ihdr) + valid[33:]


flipped_crc = bytearray(valid)
flipped_crc[idat_crc_at] ^= 0x01
text_png = encode_png(random_samples(9, 7, 3, 8), 8, 2, extra_chunks=[(b"tEXt", b"Comment\x00hello")])
text_at = text_png.index(b"tEXt")
bad_text_crc = bytearray(text_png)
bad_text_crc[text_at + 4 + 13] ^= 0x80  # the last byte of the CRC of the 13-byte tEXt payload
bad_zlib = bytearray(valid)
bad_zlib[idat_at + 8 + idat_len - 1] ^= 0xFF  # last byte of the zlib stream (Adler-32), then fix the chunk CRC
bad_zlib[idat_crc_at:idat_crc_at + 4] = struct.pack(
    ">I", zlib.crc32(bytes(bad_zlib[idat_at + 4:idat_crc_at])) & 0xFFFFFFFF)
bad_signature = bytearray(valid)
bad_signature[1] = ord("Q")

corrupt = {
    "truncated.png": (valid[:idat_at + 8 + idat_len // 2], "cut in the middle of the IDAT chunk"),
    "no_iend.png": (valid[:idat_crc_at + 4], "ends after the last IDAT: no IEND chunk"),
    "bad_crc_idat.png": (bytes(flipped_crc), "one bit of the IDAT chunk's CRC flipped"),
    "bad_crc_text.png": (bytes(bad_text_crc), "one bit of an ancillary (tEXt) chunk's CRC flipped"),
    "bad_zlib.png": (bytes(bad_zlib), "the zlib stream's Adler-32 damaged, the chunk CRC recomputed"),
    "bad_signature.png": (bytes(bad_signature), "the second signature byte changed"),
    "huge_side.png": (with_ihdr(100000, 9), "IHDR says 100000x9 (valid CRC): a side above 16384"),
    "huge_area.png": (with_ihdr(12000, 12000), "IHDR says 12000x12000 (valid CRC): 144 Mpixel, above 100 Mpixel"),
    "zero_width.png": (with_ihdr(0, 9), "IHDR says 0x9 (valid CRC)"),
    "empty.png": (b"", "zero bytes"),
    "jpeg_header.png": (bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + bytes(20),
                        "a JPEG file's first bytes"),
    "text.png": (b"this is not an image\n", "plain text"),
}
for name, (data, _) in corrupt.items():
    outputs[f"corrupt/{name}"] = data
outputs["corrupt/README.md"] = (
    "# Corrupt files\n\nWritten by `../make_images.py`. The decoder must refuse each with a one-line error that "
    "names the file.\n\n| file | what is wrong |\n|---|---|\n"
    + "".join(f"| `{name}` | {why} |\n" for name, (_, why) in corrupt.items())).encode()

# ---------------------------------------------------------------------------------------------------------------
# Preprocessing sources


def scene(h, w):
    """Photo-like but compressible: gradients, flat shapes with hard edges, 1-pixel stripes (worst case for
    aliasing), a thin diagonal line."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.int64)
    img[..., 0] = (x * 255) // (w - 1)
    img[..., 1] = (y * 255) // (h - 1)
    img[..., 2] = 255 - ((x + y) * 255) // (w + h - 2)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
        bw, bh = rng.integers(10, 60), rng.integers(10, 60)
        img[y0:y0 + bh, x0:x0 + bw] = rng.integers(0, 256, size=3)
    for _ in range(3):
        cx, cy, r = rng.integers(20, w - 20), rng.integers(20, h - 20), rng.integers(8, 30)
        img[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = rng.integers(0, 256, size=3)
    img[20:80, 200:260] = np.where(((x[20:80, 200:260] // 1) % 2 == 0)[..., None], 255, 0)
    img[150:200, 30:90] = np.where(((y[150:200, 30:90]) % 2 == 0)[..., None], 0, 230)
    diag = np.abs(x - (y * w) // h) <= 0
    img[diag] = [255, 255, 0]
    return img


preprocess_sources = {
    "scene_rgb8.png": (scene(240, 320), 8, 2),                                       # 320x240: down both axes
    "small_rgb8.png": (random_samples(28, 20, 3, 8), 8, 2),                          # 20x28: up both axes
    "strip_grey8.png": (np.repeat(((np.arange(300) * 7) % 256)[None, :], 16, 0)
                        + rng.integers(0, 4, size=(16, 300)), 8, 0),                 # 300x16: w down, h up
    "rgb16.png": (random_samples(20, 24, 3, 16), 16, 2),                             # 24x20, 16-bit
    "same_rgba8.png": (random_samples(32, 32, 4, 8), 8, 6),                          # 32x32 RGBA: no resize
}
source_samples = {}
for name, (samples, bit_depth, color_type) in preprocess_sources.items():
    samples = np.clip(samples, 0, 2 ** bit_depth - 1)
    source_samples[name] = (samples, bit_depth, color_type)
    outputs[f"preprocess/{name}"] = encode_png(samples, bit_depth, color_type,
                                               filters="best" if name == "scene_rgb8.png" else "cycle")

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
goldens = [
    # name, source, height, width, extra processor arguments
    ("scene_224", "scene_rgb8.png", 224, 224, {}),
    ("scene_32", "scene_rgb8.png", 32, 32, {}),
    ("small_224", "small_rgb8.png", 224, 224, {}),
    ("small_32", "small_rgb8.png", 32, 32, {}),
    ("strip_32", "strip_grey8.png", 32, 32, {}),
    ("rgb16_32", "rgb16.png", 32, 32, {}),
    ("same_rgba8_32", "same_rgba8.png", 32, 32, {}),
    ("small_40x48_mean05", "small_rgb8.png", 40, 48, {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
    ("scene_32_bicubic", "scene_rgb8.png", 32, 32, {"resample": 3}),
    ("scene_32_nonormalize", "scene_rgb8.png", 32, 32, {"do_normalize": False}),
]


def load_for_processor(name):
    """What a user hands the processor: PIL's RGB image for 8-bit files; for the 16-bit file (which PIL would
    truncate to 8 bits) a float32 CHW tensor of v/257, the numbers the Swift decoder produces."""
    samples, bit_depth, _ = source_samples[name]
    if bit_depth == 16:
        return torch.from_numpy(samples.astype(np.float32)).permute(2, 0, 1).contiguous() / 257.0
    return Image.open(HERE / "preprocess" / name).convert("RGB")


def manual_chain(image, height, width, args):
    """numerics.md §1.3 written with torch ops directly; must equal the processor bit for bit."""
    if isinstance(image, Image.Image):
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].contiguous()
    else:
        x = image[None]
    x = x * (1 / 255)
    if (height, width) != tuple(x.shape[-2:]):
        mode = "bicubic" if args.get("resample") == 3 else "bilinear"
        x = F.interpolate(x, size=(height, width), mode=mode, align_corners=False, antialias=True)
    if args.get("do_normalize", True):
        mean = torch.tensor(args.get("image_mean", IMAGENET_MEAN), dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(args.get("image_std", IMAGENET_STD), dtype=torch.float32).view(-1, 1, 1)
        x = (x - mean) / std
    return x


def compute_golden(name, source, height, width, args):
    processor = DINOv3ViTImageProcessor(size={"height": height, "width": width}, **args)
    image = load_for_processor(source)
    values = processor(images=image, return_tensors="pt")["pixel_values"]
    assert values.dtype == torch.float32 and tuple(values.shape) == (1, 3, height, width), values.shape
    assert torch.equal(values, manual_chain(image, height, width, args)), f"{name}: processor != manual chain"
    return values[0].numpy().astype("<f4")


if COMPARE_NATIVE:
    # Child process (see the end of this file): this machine's kernels against the goldens on disk.
    report = {"capability": torch.backends.cpu.get_cpu_capability()}
    for name, source, height, width, args in goldens:
        disk = np.fromfile(HERE / "goldens" / f"{name}.f32", dtype="<f4").reshape(3, height, width)
        native = compute_golden(name, source, height, width, args)
        report[name] = float(np.abs(native - disk).max())
    print(json.dumps(report))
    sys.exit(0)

assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"

# Write the sources first so that PIL reads them from disk.
for rel, data in outputs.items():
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

golden_index = []
for name, source, height, width, args in goldens:
    outputs[f"goldens/{name}.f32"] = compute_golden(name, source, height, width, args).tobytes()
    golden_index.append({
        "name": name, "file": f"{name}.f32", "source": source, "shape": [1, 3, height, width],
        "height": height, "width": width,
        "resample": "bicubic" if args.get("resample") == 3 else "bilinear",
        "do_resize": True, "do_rescale": True, "do_normalize": args.get("do_normalize", True),
        "rescale_factor": 1 / 255,
        "image_mean": args.get("image_mean", IMAGENET_MEAN), "image_std": args.get("image_std", IMAGENET_STD),
    })

outputs["goldens/goldens.json"] = (json.dumps({
    "producer": "transformers DINOv3ViTImageProcessor (torchvision backend), torch CPU kernels of the DEFAULT "
                "(scalar) capability; see make_images.py",
    "versions": {p: md.version(p) for p in ["torch", "torchvision", "transformers", "pillow", "numpy"]},
    "layout": "float32 little endian, pixel_values[0] = [3, H, W] row-major",
    "goldens": golden_index}, indent=1) + "\n").encode()
outputs["decode/expected.json"] = (json.dumps(expected, indent=1) + "\n").encode()

# ---------------------------------------------------------------------------------------------------------------
# Checks of the fixtures themselves

for name, info in expected.items():
    if info["bit_depth"] == 16:
        continue  # PIL keeps only the high byte of 16-bit RGB and clips 16-bit grey: not a reference here
    pil = np.array(Image.open(HERE / "decode" / info["file"]).convert("RGB"))
    want = np.frombuffer(bytes.fromhex(info["rgb_hex"]), dtype=np.uint8).reshape(info["height"], info["width"], 3)
    assert np.array_equal(pil, want), f"PIL decodes {name} differently"
for name in corrupt:
    try:
        Image.open(HERE / "corrupt" / name).load()
    except Exception:
        pass  # PIL refuses it too (informational: PIL is lax about ancillary CRCs and trailing chunks)

for rel, data in outputs.items():
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

digest = hashlib.sha256()
for rel in sorted(outputs):
    digest.update(rel.encode() + b"\0" + outputs[rel])
sizes = {d: sum(len(v) for k, v in outputs.items() if k.startswith(d + "/")) for d in
         ["decode", "corrupt", "preprocess", "goldens"]}
print(f"make_images.py: {len(outputs)} files, bytes per folder {sizes}, sha256 {digest.hexdigest()}")

# This machine's own (vectorised) torch kernels against the goldens just written, in a fresh process because torch
# fixes its kernel choice at start-up. Informational: printed, not stored, since it depends on the CPU.
environment = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
import subprocess  # noqa: E402

child = subprocess.run([sys.executable, __file__, "--compare-native"], env=environment, capture_output=True, text=True)
if child.returncode != 0:
    sys.exit(f"make_images.py --compare-native failed:\n{child.stderr}")
native = json.loads(child.stdout.strip().splitlines()[-1])
print(f"this machine's {native.pop('capability')} torch kernels differ from the goldens by at most "
      f"{max(native.values()):.3g} ({', '.join(f'{k} {v:.2g}' for k, v in native.items())})")
