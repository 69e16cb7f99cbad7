#!/usr/bin/env python3
"""Generate the tiny PRIMA fixtures: seeded heads, a PAD-UFES-20-style case folder and two pipeline traces.

What it makes (paths relative to the repository root):

  Fixtures/prima/heads-bert.safetensors        every heads tensor of Formats/prima-checkpoint.md §8, canonical names,
                                               float32, for image dinov3-mlp-reg4-f32 (32 wide, 4 registers) + text
                                               bert-mlm-f32 (32) + decoder qwen3-prima-f32 (48), K = 6, d_align 256;
                                               includes fusion.special_tokens
  Fixtures/prima/heads-modernbert.safetensors  the same for dinov3-gated-noreg-f32 (no registers) + modernbert-mlm-f32
                                               + qwen3-prima-f32, WITHOUT fusion.special_tokens, so that the
                                               embedding-based initialisation (" image", " text") is exercised
  Fixtures/prima/cases/metadata.csv            PAD-UFES-20's 26 columns in its spellings, ten rows covering the six
                                               classes, blank rows (as PAD-UFES-20's non-biopsied lesions) and UNK
  Fixtures/prima/cases/imgs/<img_id>           synthetic lesion-like PNGs: RGB 8-bit of several sizes, one RGBA,
                                               one 16-bit RGB
  Fixtures/prima/cases/sample.png, sample.json one case for the README demo (JSON: the CSV's keys minus img_id,
                                               biopsed and diagnostic, with JSON booleans, numbers, null and "UNK")
  Fixtures/prima/cases/rendered.json           the metadata text of every case (Formats/metadata-schema.md), from
                                               prima_ref.metadata, for the Swift metadata tests
  Fixtures/traces/prima-tiny-bert.h5           prima trace (Formats/prima-trace.md §10) of sample.png/sample.json
                                               through heads-bert
  Fixtures/traces/prima-tiny-modernbert.h5     prima trace of the RGBA case of metadata.csv (a blank row) through
                                               heads-modernbert

The heads' values are prima_ref.prima.random_heads: one seeded torch.Generator per file, sorted-name order, Linear and
Conv weights N(0, 1/fan_in) (fan_in = in_features, or in_channels x kernel size), biases N(0, 0.05^2), special tokens
N(0, 0.5^2). That keeps every head output O(1).

Image preprocessing uses transformers' DINOv3 image processor, which needs torchvision and Pillow (pinned in
Fixtures/images/requirements.txt, not in Fixtures/requirements.txt). Give the directory that holds them with
PRIMA_IMAGE_SITE=DIR (it is put first on sys.path) or install them in the venv. torch runs single-threaded, with
deterministic algorithms and its scalar CPU kernels (ATEN_CPU_CAPABILITY=default, as Fixtures/images/make_images.py
does: the vectorised antialiased resize's last bits depend on the machine).

Rerun (from the repository root; two runs give byte-identical files and the same printed sha256):

    PRIMA_IMAGE_SITE=/work/scratch-img/site /work/venv-ref/bin/python Fixtures/make_prima_fixtures.py

Self-checks (the script stops on the first failure): the traces read back through prima_ref.read_trace and equal what
was computed; every head activation is recomputed from the safetensors tensors with numpy in float64 (patch grid,
conv as patch matmuls, erf GELU) and must agree within HEAD_TOLERANCE; the decoder run on the prompt ids alone must
give the trace's layers at the prompt positions (causal attention, default positions); the special tokens of
heads-modernbert are the mean embeddings of " image"/" text"; the class probabilities are clearly non-uniform and
equal those of the hook-free prima_ref.prima.diagnose (what the pipeline benchmark times); the metadata texts match
literal expectations; the reference refuses classes sharing a first token (the qwen3 fixture tokenizer) and heads
files with task.class_token_ids, unknown, missing, mis-shaped or non-float32 tensors; everything written stays under
MAX_TOTAL_BYTES.
"""

import os
import sys
from pathlib import Path

os.environ["ATEN_CPU_CAPABILITY"] = "default"  # before torch is imported
from fixture_common import FIXTURES, MODELS_DIR, REPO, check_versions, chmod_outputs, set_environment, setup_torch

set_environment()
check_versions(Path(__file__).name, "PRIMA fixtures")
if os.environ.get("PRIMA_IMAGE_SITE"):
    sys.path.insert(0, os.environ["PRIMA_IMAGE_SITE"])

import csv  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata as md  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402

IMAGE_PINS = {}
for line in (FIXTURES / "images" / "requirements.txt").read_text().splitlines():
    name, sep, want = line.split("#", 1)[0].strip().partition("==")
    if sep and name in ("torchvision", "pillow"):
        IMAGE_PINS[name] = want
for name, want in IMAGE_PINS.items():
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(f"make_prima_fixtures.py: {name} is not importable; set PRIMA_IMAGE_SITE to a directory holding "
                 f"torchvision {IMAGE_PINS['torchvision']} and pillow {IMAGE_PINS['pillow']} (see the docstring)")
    if have.split("+", 1)[0] != want:
        sys.exit(f"make_prima_fixtures.py: {name} {have} installed, {want} pinned in Fixtures/images/requirements.txt")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(REPO / "Formats" / "python"))
from prima_ref.metadata import PAD_UFES_20_COLUMNS, Schema, read_csv  # noqa: E402
from prima_ref.prima import PrimaReference, class_token_ids, diagnose, load_heads, random_heads  # noqa: E402
from prima_ref.trace import read_trace  # noqa: E402

setup_torch()
assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"

PRIMA_DIR = FIXTURES / "prima"
CASES_DIR = PRIMA_DIR / "cases"
TRACES_DIR = FIXTURES / "traces"
K = 6
HEAD_TOLERANCE = 1e-4
MAX_TOTAL_BYTES = 2 * 1024 * 1024
SEED_HEADS = {"heads-bert": 501, "heads-modernbert": 502}
SEED_IMAGES = 601

# name -> (image encoder, text encoder, decoder, heads file stem, special tokens in the file)
MODELS = {
    "prima-tiny-bert": ("dinov3-mlp-reg4-f32", "bert-mlm-f32", "qwen3-prima-f32", "heads-bert", True),
    "prima-tiny-modernbert": ("dinov3-gated-noreg-f32", "modernbert-mlm-f32", "qwen3-prima-f32", "heads-modernbert",
                              False),
}


# --------------------------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------------------------
# PNG writer (PNG specification: signature, IHDR, one IDAT, IEND; filter 0 on every row; zlib level 9)
# --------------------------------------------------------------------------------------------------------------------
def png_bytes(samples, bit_depth):
    """samples: (H, W, C) uint8 or uint16 array, C = 3 (RGB) or 4 (RGBA)."""
    h, w, c = samples.shape
    ctype = {3: 2, 4: 6}[c]
    dt = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + samples[y].astype(dt).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, ctype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def lesion_image(rng, h, w, alpha=False, bit_depth=8):
    """Skin-toned background with mild shading, an irregular darker blob with a rim, and pixel noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    skin = np.array([0.87, 0.68, 0.56]) + rng.normal(0, 0.04, 3)
    shade = 1.0 - 0.15 * (yy / h) + 0.05 * np.sin(xx / w * math.pi)
    img = skin[None, None, :] * shade[..., None]
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    ry, rx = h * rng.uniform(0.18, 0.3), w * rng.uniform(0.18, 0.3)
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.08 * np.sin(5 * angle + rng.uniform(0, 6))
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) / wobble
    lesion = np.array([0.35, 0.2, 0.15]) + rng.normal(0, 0.06, 3)
    inside = np.clip(1.2 - r, 0, 1)[..., None]
    img = img * (1 - inside) + lesion[None, None, :] * inside
    img += rng.normal(0, 0.03, img.shape)
    img = np.clip(img, 0, 1)
    top = 65535 if bit_depth == 16 else 255
    out = np.round(img * top).astype(np.uint16 if bit_depth == 16 else np.uint8)
    if alpha:
        a = np.full((h, w, 1), top, dtype=out.dtype)
        a[: h // 4, : w // 4] = top // 2  # a translucent corner: the pipeline discards alpha, it does not composite
        out = np.concatenate([out, a], axis=2)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Cases (PAD-UFES-20 metadata.csv columns and spellings; blank = not recorded, UNK = unknown)
# --------------------------------------------------------------------------------------------------------------------
# img_id -> (height, width, alpha, bit depth)
IMAGE_FORMATS = {
    "PAT_46_881_939.png": (40, 48, False, 8),
    "PAT_1545_1867_547.png": (64, 64, True, 8),
    "PAT_1989_4061_934.png": (48, 40, False, 8),
    "PAT_684_1302_588.png": (36, 44, False, 16),
}
ROWS = [
    # patient_id lesion_id smoke drink bg_father bg_mother age pesticide gender skin_cancer_hist cancer_hist
    # piped_water sewage fitspatrick region diameter_1 diameter_2 diagnostic itch grew hurt changed bleed elevation
    # img_id biopsed
    ["PAT_46", "881", "False", "False", "POMERANIA", "POMERANIA", "55", "False", "FEMALE", "True", "True", "True",
     "True", "3.0", "NECK", "6.0", "5.0", "BCC", "True", "True", "False", "True", "True", "True",
     "PAT_46_881_939.png", "True"],
    ["PAT_1545", "1867", "", "", "", "", "77", "", "", "", "", "", "", "", "FACE", "", "", "ACK", "True", "UNK",
     "False", "UNK", "False", "False", "PAT_1545_1867_547.png", "False"],
    ["PAT_1989", "4061", "False", "True", "ITALY", "BRAZIL", "62", "UNK", "MALE", "True", "False", "True", "False",
     "2.0", "BACK", "12.0", "9.5", "SCC", "False", "True", "True", "True", "True", "True",
     "PAT_1989_4061_934.png", "True"],
    ["PAT_684", "1302", "False", "False", "GERMANY", "GERMANY", "71", "True", "FEMALE", "False", "True", "False",
     "False", "1.0", "FOREARM", "8.0", "7.0", "SEK", "False", "False", "False", "False", "False", "True",
     "PAT_684_1302_588.png", "True"],
    ["PAT_995", "1878", "True", "False", "NETHERLANDS", "POMERANIA", "47", "False", "MALE", "False", "False", "True",
     "True", "2.0", "CHEST", "10.0", "8.0", "MEL", "True", "True", "False", "True", "False", "True",
     "PAT_995_1878_112.png", "True"],
    ["PAT_1717", "2421", "", "", "", "", "23", "", "", "", "", "", "", "", "ARM", "", "", "NEV", "False", "False",
     "False", "False", "False", "False", "PAT_1717_2421_780.png", "False"],
    ["PAT_312", "662", "False", "UNK", "UNK", "BRAZIL", "80", "False", "MALE", "True", "UNK", "True", "True", "UNK",
     "NOSE", "4.0", "4.0", "BCC", "UNK", "True", "False", "UNK", "True", "True", "PAT_312_662_201.png", "True"],
    ["PAT_1260", "1103", "", "", "", "", "68", "", "", "", "", "", "", "", "HAND", "", "", "ACK", "True", "False",
     "True", "False", "False", "True", "PAT_1260_1103_421.png", "False"],
    ["PAT_2041", "4150", "False", "False", "POMERANIA", "GERMANY", "30", "False", "FEMALE", "False", "False", "True",
     "True", "3.0", "ABDOMEN", "5.0", "3.0", "NEV", "False", "False", "False", "False", "False", "True",
     "PAT_2041_4150_77.png", "True"],
    ["PAT_1402", "2013", "True", "True", "ITALY", "ITALY", "59", "True", "MALE", "False", "True", "False", "False",
     "4.0", "SCALP", "15.0", "11.0", "SEK", "True", "True", "False", "True", "True", "True",
     "PAT_1402_2013_95.png", "True"],
]
SAMPLE = {
    "patient_id": "PAT_7", "lesion_id": 7, "smoke": False, "drink": None, "background_father": "POMERANIA",
    "background_mother": "UNK", "age": 61, "pesticide": True, "gender": "FEMALE", "skin_cancer_history": True,
    "cancer_history": False, "has_piped_water": True, "has_sewage_system": "True", "fitspatrick": 2,
    "region": "FACE", "diameter_1": 7.5, "diameter_2": 6, "itch": True, "grew": "UNK", "hurt": False,
    "changed": True, "bleed": "False", "elevation": True,
}
SAMPLE_SIZE = (56, 48)  # height, width
# The RGBA case, a blank (non-biopsied) row whose text is short: 45 tokens, not truncated, an odd number (43) of
# text sequence tokens, so the Conv1d drops the last one (the sample's text is truncated to BERT's 64 positions).
MODERNBERT_CASE = "PAT_1545_1867_547.png"
EXPECTED_TEXTS = {
    "sample.json": "smokes: no; father's background: POMERANIA; age: 61 years; pesticide exposure: yes; "
                   "gender: female; skin cancer history: yes; cancer history: no; piped water: yes; "
                   "sewage system: yes; Fitzpatrick skin type: 2; region: face; diameter 1: 7.5 mm; "
                   "diameter 2: 6 mm; itches: yes; hurts: no; changed: yes; bleeds: no; elevated: yes",
    "PAT_1545_1867_547.png": "age: 77 years; region: face; itches: yes; hurts: no; bleeds: no; elevated: no",
}


def write_cases():
    if CASES_DIR.exists():
        shutil.rmtree(CASES_DIR)
    (CASES_DIR / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(SEED_IMAGES)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PAD_UFES_20_COLUMNS)
    sizes = [(40, 48), (64, 64), (48, 40), (36, 44), (48, 48), (32, 40), (44, 36), (40, 40), (64, 48), (52, 44)]
    for row, (h, w) in zip(ROWS, sizes):
        assert len(row) == len(PAD_UFES_20_COLUMNS)
        img_id = row[PAD_UFES_20_COLUMNS.index("img_id")]
        h2, w2, alpha, depth = IMAGE_FORMATS.get(img_id, (h, w, False, 8))
        (CASES_DIR / "imgs" / img_id).write_bytes(png_bytes(lesion_image(rng, h2, w2, alpha, depth), depth))
        writer.writerow(row)
    (CASES_DIR / "metadata.csv").write_text(buf.getvalue(), encoding="utf-8")
    (CASES_DIR / "sample.png").write_bytes(png_bytes(lesion_image(rng, *SAMPLE_SIZE), 8))
    (CASES_DIR / "sample.json").write_text(json.dumps(SAMPLE, indent=2) + "\n", encoding="utf-8")

    schema = Schema.pad_ufes_20()
    rows = read_csv(CASES_DIR / "metadata.csv")
    assert tuple(rows[0].keys()) == PAD_UFES_20_COLUMNS
    assert sorted({r["diagnostic"] for r in rows}) == sorted(["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"])
    rendered = {"sample.json": schema.render(SAMPLE, "sample.json")}
    for i, r in enumerate(rows):
        rendered[r["img_id"]] = schema.render(r, f"metadata.csv line {i + 2}")
    for key, want in EXPECTED_TEXTS.items():
        assert rendered[key] == want, (key, rendered[key], want)
    (CASES_DIR / "rendered.json").write_text(json.dumps(rendered, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    return rows, rendered


# --------------------------------------------------------------------------------------------------------------------
# Independent recomputation of the heads (numpy, float64) from the safetensors tensors
# --------------------------------------------------------------------------------------------------------------------
_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def numpy_heads(t, img, txt, n_real, registers, h, w):
    """The head activations of Formats/prima-trace.md §10 from the final hidden states (batch 1, float64)."""
    t = {k: v.double().numpy() for k, v in t.items()}

    def lin(x, name):
        return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]

    cls_i, patches = img[0, 0], img[0, 1 + registers:]
    cls_t, seq = txt[0, 0], txt[0, 1:n_real - 1]
    out = {
        "alignment.image_global": lin(cls_i, "alignment.image_proj")[None],
        "alignment.text_global": lin(cls_t, "alignment.text_proj")[None],
        "alignment.image_local": lin(patches, "alignment.image_proj")[None],
        "alignment.text_local": lin(seq, "alignment.text_proj")[None],
        "image_classifier.logits": lin(cls_i, "image_classifier")[None],
    }
    for kind, x in (("image", cls_i), ("text", cls_t)):
        p = f"fusion.{kind}_cls_projector"
        out[f"fusion.{kind}_cls"] = lin(gelu(lin(x, p + ".fc1")), p + ".fc2")[None, None]
    # Conv2d k2 s2 over the row-major grid: output (r, c) sees patches (2r+i, 2c+j), i, j in {0, 1}.
    grid = patches.reshape(h, w, -1)
    wc, bc = t["fusion.image_seq_projector.conv.weight"], t["fusion.image_seq_projector.conv.bias"]  # (D, Ci, 2, 2)
    rows = []
    for r in range(h // 2):
        for c in range(w // 2):
            acc = bc.copy()
            for i in range(2):
                for j in range(2):
                    acc = acc + wc[:, :, i, j] @ grid[2 * r + i, 2 * c + j]
            rows.append(acc)
    out["fusion.image_seq"] = lin(gelu(np.stack(rows)), "fusion.image_seq_projector.fc")[None]
    wt, bt = t["fusion.text_seq_projector.conv.weight"], t["fusion.text_seq_projector.conv.bias"]  # (D, Ct, 2)
    rows = [bt + wt[:, :, 0] @ seq[2 * m] + wt[:, :, 1] @ seq[2 * m + 1] for m in range(len(seq) // 2)]
    out["fusion.text_seq"] = lin(gelu(np.stack(rows)), "fusion.text_seq_projector.fc")[None]
    return out


# --------------------------------------------------------------------------------------------------------------------
def write_model_trace(name, image_path, record, source_name):
    image_dir, text_dir, decoder_dir, heads_stem, has_special = MODELS[name]
    heads_path = PRIMA_DIR / f"{heads_stem}.safetensors"
    ref = PrimaReference(MODELS_DIR / image_dir, MODELS_DIR / text_dir, MODELS_DIR / decoder_dir, heads_path)
    assert ref.special_tokens_in_file == has_special
    inputs, recipe = ref.case_inputs(image_path, record, source=source_name)
    out = TRACES_DIR / f"{name}.h5"
    trace = ref.write_trace(out, inputs, source=name, input_recipe=recipe)
    acts = trace.activations

    # 1. read back
    back = read_trace(out)
    assert back.component == "prima" and list(back.activations) == list(acts), list(back.activations)
    for k in inputs:
        assert np.array_equal(back.inputs[k], inputs[k]) and back.inputs[k].dtype == inputs[k].dtype, k
    for k in acts:
        assert np.array_equal(back.activations[k], acts[k]), k

    # 2. heads recomputed with numpy
    from safetensors.torch import load_file

    tensors = load_file(str(heads_path))
    p = ref.patch_size
    h, w = inputs["pixel_values"].shape[2] // p, inputs["pixel_values"].shape[3] // p
    n_real = int(inputs["attention_mask"].sum())
    expect = numpy_heads(tensors, acts["image_encoder.final_norm"].astype(np.float64),
                         acts["text_encoder.final_norm"].astype(np.float64), n_real, ref.num_registers, h, w)
    worst_heads = 0.0
    for k, v in expect.items():
        assert acts[k].shape == v.shape, (k, acts[k].shape, v.shape)
        d = float(np.abs(acts[k] - v).max())
        assert d <= HEAD_TOLERANCE, (name, k, d)
        worst_heads = max(worst_heads, d)

    # 3. decoder input assembly and causality
    emb = ref.decoder.top.get_input_embeddings().weight.detach().numpy()
    P, A = inputs["prompt_ids"].shape[1], inputs["answer_prefix_ids"].shape[1]
    de = acts["decoder.embeddings"][0]
    st = ref.heads.fusion.special_tokens.detach().numpy()
    n_img, n_txt = acts["fusion.image_seq"].shape[1], acts["fusion.text_seq"].shape[1]
    assert de.shape[0] == P + 1 + 1 + n_img + 1 + 1 + 1 + n_txt + 1 + A
    assert np.array_equal(de[:P], emb[inputs["prompt_ids"][0]])
    assert np.array_equal(de[-A:], emb[inputs["answer_prefix_ids"][0]])
    assert np.array_equal(de[P], st[0]) and np.array_equal(de[P + 2 + n_img], st[1])
    assert np.array_equal(de[P + 3 + n_img], st[2]) and np.array_equal(de[-A - 1], st[3])
    assert np.array_equal(de[P + 1], acts["fusion.image_cls"][0, 0])
    assert np.array_equal(de[P + 4 + n_img], acts["fusion.text_cls"][0, 0])
    if not has_special:
        tok = ref.decoder_tokenizer
        for row, word in zip(st, (" image", " image", " text", " text")):
            ids = tok.encode(word, add_special_tokens=False)
            assert np.allclose(row, emb[ids].astype(np.float64).mean(axis=0), rtol=0, atol=1e-7), word
    else:
        assert np.array_equal(st, tensors["fusion.special_tokens"].numpy())
    with torch.inference_mode():
        o = ref.decoder.top(input_ids=torch.from_numpy(inputs["prompt_ids"]), output_hidden_states=True,
                            use_cache=False)
    # hidden_states = (embeddings, layers.0 .. layers.L-2, final_norm) for Qwen3 in transformers 5
    L = ref.decoder.num_layers
    worst_causal = 0.0
    for i in range(L - 1):
        d = float(np.abs(o.hidden_states[i + 1][0].numpy() - acts[f"decoder.layers.{i}"][0, :P]).max())
        worst_causal = max(worst_causal, d)
    d = float(np.abs(o.hidden_states[L][0].numpy() - acts["decoder.final_norm"][0, :P]).max())
    worst_causal = max(worst_causal, d)
    assert worst_causal <= 1e-5, worst_causal

    # 4. outputs
    probs = acts["class_probs"][0].astype(np.float64)
    logits = acts["class_logits"][0].astype(np.float64)
    assert abs(probs.sum() - 1) < 1e-6
    assert np.allclose(probs, np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), atol=1e-6)
    assert probs.max() - probs.min() > 0.15, probs
    assert all(np.abs(a).max() < 50 for a in acts.values())
    # 5. the hook-free pipeline of the benchmarks (prima_ref.prima.diagnose) gives the same probabilities
    with torch.inference_mode():
        fast, _ = diagnose(ref.image.top, ref.text.top, ref.decoder.top, ref.heads,
                           {k: torch.from_numpy(v) for k, v in inputs.items()}, ref.num_registers, ref.patch_size)
    assert np.allclose(fast.numpy(), acts["class_probs"], rtol=0, atol=1e-6), (fast, acts["class_probs"])
    return trace, ref, worst_heads, worst_causal, recipe


def check_refusals():
    """The reference refuses what the contract forbids, with messages naming the problem."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    def refused(fn, *words):
        try:
            fn()
        except ValueError as e:
            assert all(w in str(e) for w in words), (str(e), words)
            return
        raise AssertionError(f"not refused: {words}")

    old_tok = AutoTokenizer.from_pretrained(str(MODELS_DIR / "qwen3-tied-f32"))  # " MEL"/" NEV" share "Ġ"
    refused(lambda: class_token_ids(old_tok, ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")), "'MEL' and 'NEV'")
    good = load_file(str(PRIMA_DIR / "heads-bert.safetensors"))
    scratch = PRIMA_DIR / "scratch.safetensors"
    try:
        for change, words in (
            (lambda t: t.update({"task.class_token_ids": torch.arange(K)}), ("task.class_token_ids",)),
            (lambda t: t.update({"fusion.extra": torch.zeros(1)}), ("unknown tensors", "fusion.extra")),
            (lambda t: t.pop("image_classifier.bias"), ("missing tensors", "image_classifier.bias")),
            (lambda t: t.update({"alignment.text_proj.bias": torch.zeros(128)}), ("alignment.text_proj.bias", "[256]")),
            (lambda t: t.update({"image_classifier.bias": torch.zeros(K, dtype=torch.float16)}), ("float32",)),
        ):
            t = dict(good)
            change(t)
            save_file(t, str(scratch))
            refused(lambda: load_heads(scratch, 32, 32, 48, K), *words)
    finally:
        scratch.unlink(missing_ok=True)


def main():
    PRIMA_DIR.mkdir(exist_ok=True)
    for stale in [PRIMA_DIR / f"{s}.safetensors" for s in SEED_HEADS] + sorted(TRACES_DIR.glob("prima-*.h5")):
        if stale.exists():
            stale.unlink()
    rows, rendered = write_cases()

    dims = {}
    for name, (image_dir, text_dir, decoder_dir, heads_stem, has_special) in MODELS.items():
        cfg = lambda d: json.loads((MODELS_DIR / d / "config.json").read_text())  # noqa: E731
        d_img, d_txt, d_llm = cfg(image_dir)["hidden_size"], cfg(text_dir)["hidden_size"], cfg(decoder_dir)["hidden_size"]
        dims[name] = (d_img, d_txt, d_llm)
        tensors = random_heads(d_img, d_txt, d_llm, K, SEED_HEADS[heads_stem], special_tokens=has_special)
        save_file(tensors, str(PRIMA_DIR / f"{heads_stem}.safetensors"), metadata={"format": "pt"})

    check_refusals()
    record_of = {r["img_id"]: r for r in rows}
    cases = {
        "prima-tiny-bert": (CASES_DIR / "sample.png", SAMPLE, "sample.json"),
        "prima-tiny-modernbert": (CASES_DIR / "imgs" / MODERNBERT_CASE, record_of[MODERNBERT_CASE],
                                  f"metadata.csv ({MODERNBERT_CASE})"),
    }
    for name, (image_path, record, source_name) in cases.items():
        trace, ref, worst_heads, worst_causal, recipe = write_model_trace(name, image_path, record, source_name)
        ins = trace.inputs
        print(f"{name}: {ref.image.source} + {ref.text.source} + {ref.decoder.source}, dims {dims[name]}")
        print(f"  text ({ins['input_ids'].shape[1]} tokens): {recipe['text']}")
        print(f"  pixel_values {ins['pixel_values'].shape}, prompt {ins['prompt_ids'].shape[1]}, answer prefix "
              f"{ins['answer_prefix_ids'].shape[1]}, class ids {ins['class_token_ids'].tolist()}")
        print("  " + ", ".join(f"{k}{tuple(v.shape)}" for k, v in trace.activations.items()
                               if not k.startswith(("image_encoder.", "text_encoder.", "decoder.layers"))))
        probs = " ".join(f"{c}={p:.3f}" for c, p in zip(ref.class_codes, trace.activations["class_probs"][0]))
        print(f"  class_probs {probs}; heads vs numpy {worst_heads:.2g}; decoder prompt-only run {worst_causal:.2g}")

    chmod_outputs(PRIMA_DIR)
    outputs = sorted(p for p in PRIMA_DIR.rglob("*") if p.is_file() and p.name != "README.md")
    outputs += sorted(TRACES_DIR.glob("prima-*.h5"))
    total = sum(p.stat().st_size for p in outputs)
    assert total < MAX_TOTAL_BYTES, total
    digest = hashlib.sha256()
    for p in outputs:
        digest.update(str(p.relative_to(FIXTURES)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    print(f"{len(outputs)} files, {total} bytes; sha256 over Fixtures/prima and Fixtures/traces/prima-*.h5: "
          f"{digest.hexdigest()}")


if __name__ == "__main__":
    main()
