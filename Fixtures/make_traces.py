#!/usr/bin/env python3
"""Write the PRIMA reference traces of the tiny fixture models (Formats/prima-trace.md, version 1).

For EVERY fixture of Fixtures/models/manifest.json this writes Fixtures/traces/<fixture>.h5: the inputs and the
named activations (embeddings, layers.N, final_norm, plus pooler for BERT checkpoints that have one and logits
for Qwen3) of the base model, computed by transformers in float32 with eager attention. f16/bf16 fixtures are
loaded upcast to float32, so their traces describe the float32 computation on the upcast weights.

Inputs (pinned here, not taken from the library defaults):
  * text fixtures (ModernBERT, BERT, Qwen3): the two texts of TEXTS, encoded with the fixture's own tokenizer
    and right-padded to the longest. That is 14 and 20 tokens with [CLS]/[SEP] for the modernbert tokenizer
    (ModernBERT and BERT fixtures) and 12 and 18 tokens for the qwen3 tokenizer: the first sequence is padded,
    and both are longer than the ModernBERT fixtures' local window (local_attention 8: |i - j| <= 4, 9 keys).
  * DINOv3 fixtures: B=2 square 32x32 pixel_values, torch.randn((2, 3, 32, 32), generator=
    torch.Generator("cpu").manual_seed(IMAGE_SEED), dtype=torch.float32); plus, for dinov3-mlp-reg4-f32, a second
    trace <fixture>-nonsquare.h5 at H x W = 32 x 48 (4 x 6 patches of 8), same recipe and seed.

Self-checks (the script stops on the first failure):
  1. each written file reads back (prima_ref.read_trace validates it) and equals what was computed;
  2. padding: every sequence (every image) is re-run alone, unpadded (attention_mask all ones), and its
     activations must match the batched ones at the real tokens within PADDING_TOLERANCE (max abs difference);
     the largest difference seen is printed;
  3. hidden_states mapping: a fresh AutoModel of the directory is run with output_hidden_states=True and its
     tensors must equal the hooked ones bit for bit, following the mapping documented in Formats/prima-trace.md
     (DINOv3/BERT: hidden_states = (embeddings, layers.0 .. layers.L-1); ModernBERT/Qwen3 in transformers 5:
     (embeddings, layers.0 .. layers.L-2, final_norm)); for Qwen3 this also shows that the Qwen3Model inside the
     Qwen3ForCausalLM used for the logits is the model AutoModel loads;
  4. the traces together stay under MAX_TOTAL_BYTES.

Rerun (from the repository root):

    /work/venv-ref/bin/python Fixtures/make_traces.py

or with the python of any venv made with `pip install -r Fixtures/requirements.txt`. Like make_fixtures.py, the
script first checks that the installed versions are exactly the pinned ones and exits otherwise. It runs torch
single-threaded with deterministic algorithms (the version check, the environment and the torch setup are shared
with make_fixtures.py in Fixtures/fixture_common.py); two runs give byte-identical files (HDF5 object timestamps are
off) and it prints one sha256 over all traces so that runs can be compared. *.h5 in Fixtures/traces is deleted and
rewritten on every run, except the pipeline traces prima-*.h5, which Fixtures/make_prima_fixtures.py writes (README.md
is kept too). It takes a few seconds on CPU.
"""

import sys
from pathlib import Path

from fixture_common import FIXTURES, MODELS_DIR, REPO, check_versions, set_environment, setup_torch

TRACES_DIR = FIXTURES / "traces"

set_environment()
check_versions(Path(__file__).name, "traces")

import hashlib  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402

sys.path.insert(0, str(REPO / "Formats" / "python"))
from prima_ref.trace import (  # noqa: E402
    ReferenceModel,
    image_inputs,
    masked_max_abs_diff,
    read_trace,
    text_inputs,
    write_trace,
)

setup_torch()

TEXTS = (
    "The lesion is elevated and bleeds.",
    "Family history of skin cancer; the lesion has grown and bleeds.",
)
IMAGE_SEED = 0
IMAGE_BATCH = 2
SQUARE = (32, 32)
NONSQUARE = {"dinov3-mlp-reg4-f32": (32, 48)}  # fixture -> (H, W) of its extra "<fixture>-nonsquare.h5"
PADDING_TOLERANCE = 1e-5
MAX_TOTAL_BYTES = 3 * 1024 * 1024
# Traces of the whole PRIMA pipeline (component "prima"), written by make_prima_fixtures.py: not this script's.
PIPELINE_PREFIX = "prima-"


def own_traces():
    return sorted(p for p in TRACES_DIR.glob("*.h5") if not p.name.startswith(PIPELINE_PREFIX))


def text_recipe(texts):
    return {"kind": "text", "texts": list(texts), "tokenizer": "model directory, right padding"}


def image_recipe(inputs, seed):
    return {
        "kind": "image",
        "generator": "torch.randn(generator=torch.Generator('cpu').manual_seed(seed), dtype=float32)",
        "seed": seed,
        "shape": list(inputs["pixel_values"].shape),
    }


def check_text_inputs(name, ref, inputs):
    lengths = inputs["attention_mask"].sum(axis=1).tolist()
    if len(set(lengths)) != len(lengths) or min(lengths) == inputs["attention_mask"].shape[1]:
        sys.exit(f"{name}: the texts must have different lengths so that one is padded, got {lengths}")
    if ref.model_type == "modernbert":
        window = 2 * (int(ref.config.local_attention) // 2) + 1
        if min(lengths) <= window:
            sys.exit(f"{name}: every text must be longer than the local window ({window} keys), got {lengths}")
    return lengths


def padding_self_check(ref, inputs, acts):
    """Re-run each batch entry alone and unpadded; max |batched - single| over its real positions, per name."""
    worst = {}
    if ref.component == "image_encoder":
        pv = inputs["pixel_values"]
        for b in range(pv.shape[0]):
            single = ref.run({"pixel_values": pv[b : b + 1].copy()})
            for n, a in single.items():
                worst[n] = max(worst.get(n, 0.0), masked_max_abs_diff(acts[n][b : b + 1], a))
        return worst
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    for b in range(ids.shape[0]):
        length = int(mask[b].sum())
        single = ref.run(
            {"input_ids": ids[b : b + 1, :length].copy(), "attention_mask": np.ones((1, length), dtype=np.int64)}
        )
        for n, a in single.items():
            batched = acts[n][b : b + 1]
            if batched.ndim >= 3:  # (B, T, ...) -> the real tokens of entry b
                batched = batched[:, :length]
            worst[n] = max(worst.get(n, 0.0), masked_max_abs_diff(batched, a))
    return worst


def hidden_states_check(name, ref, inputs, acts):
    """A fresh AutoModel's output_hidden_states must equal the hooked tensors, bit for bit."""
    kwargs = dict(attn_implementation="eager", dtype=torch.float32)
    if ref.model_type == "bert":
        kwargs["add_pooling_layer"] = ref.has_pooler
    base = AutoModel.from_pretrained(str(ref.model_dir), **kwargs).eval()
    if type(base).__name__ != ref.hf_class:
        sys.exit(f"{name}: AutoModel built {type(base).__name__}, the trace says {ref.hf_class}")
    with torch.inference_mode():
        if ref.component == "image_encoder":
            out = base(pixel_values=torch.from_numpy(inputs["pixel_values"]), output_hidden_states=True)
        else:
            kw = dict(
                input_ids=torch.from_numpy(inputs["input_ids"]),
                attention_mask=torch.from_numpy(inputs["attention_mask"]),
                output_hidden_states=True,
            )
            if ref.model_type == "qwen3":
                kw["use_cache"] = False
            out = base(**kw)
    L = ref.num_layers
    if ref.model_type in ("dinov3_vit", "bert"):
        mapping = ["embeddings"] + [f"layers.{i}" for i in range(L)]
    else:  # modernbert, qwen3: transformers 5 replaces the last block's output by the final norm's
        mapping = ["embeddings"] + [f"layers.{i}" for i in range(L - 1)] + ["final_norm"]
    hs = out.hidden_states
    if len(hs) != len(mapping):
        sys.exit(f"{name}: {len(hs)} hidden_states, expected {len(mapping)} ({mapping})")
    for i, (t, n) in enumerate(zip(hs, mapping)):
        if not np.array_equal(t.numpy(), acts[n]):
            sys.exit(f"{name}: hidden_states[{i}] is not bit-identical to the hooked {n}")
    if not np.array_equal(out.last_hidden_state.numpy(), acts["final_norm"]):
        sys.exit(f"{name}: last_hidden_state is not bit-identical to the hooked final_norm")
    return mapping


def main():
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    TRACES_DIR.mkdir(exist_ok=True)
    for old in own_traces():
        old.unlink()

    jobs = []  # (trace file stem, fixture name, (H, W) for image fixtures)
    for entry in manifest:
        jobs.append((entry["name"], entry["name"], SQUARE))
        if entry["name"] in NONSQUARE:
            jobs.append((entry["name"] + "-nonsquare", entry["name"], NONSQUARE[entry["name"]]))
    names_in_manifest = {e["name"] for e in manifest}
    unknown = set(NONSQUARE) - names_in_manifest
    if unknown:
        sys.exit(f"NONSQUARE names fixtures not in the manifest: {sorted(unknown)}")

    loaded = {}
    overall_worst = 0.0
    rows = []
    for stem, fixture, hw in jobs:
        model_dir = MODELS_DIR / fixture
        ref = loaded.get(fixture) or ReferenceModel(model_dir)
        loaded = {fixture: ref}  # keep only the current model in memory
        if ref.component == "image_encoder":
            inputs = image_inputs(model_dir, IMAGE_BATCH, hw[0], hw[1], IMAGE_SEED)
            recipe = image_recipe(inputs, IMAGE_SEED)
            shape_note = f"pixel_values {tuple(inputs['pixel_values'].shape)}"
        else:
            inputs = text_inputs(model_dir, TEXTS)
            lengths = check_text_inputs(stem, ref, inputs)
            recipe = text_recipe(TEXTS)
            shape_note = f"input_ids {tuple(inputs['input_ids'].shape)}, real lengths {lengths}"
        if stem.startswith(PIPELINE_PREFIX):
            sys.exit(f"{stem}: fixture names starting with {PIPELINE_PREFIX!r} would clash with the pipeline traces")
        out = TRACES_DIR / f"{stem}.h5"
        trace = write_trace(model_dir, out, inputs, model=ref, input_recipe=recipe)

        back = read_trace(out)
        if list(back.activations) != list(trace.activations):
            sys.exit(f"{stem}: read back {list(back.activations)}, wrote {list(trace.activations)}")
        for k in trace.inputs:
            if not np.array_equal(back.inputs[k], trace.inputs[k]):
                sys.exit(f"{stem}: input {k} does not read back identically")
        for k in trace.activations:
            if not np.array_equal(back.activations[k], trace.activations[k]):
                sys.exit(f"{stem}: activation {k} does not read back identically")

        worst = padding_self_check(ref, trace.inputs, trace.activations)
        w = max(worst.values())
        w_name = max(worst, key=worst.get)
        if not w <= PADDING_TOLERANCE:
            sys.exit(f"{stem}: unpadded single runs differ from the batch by up to {w:.3g} > {PADDING_TOLERANCE}: {worst}")
        overall_worst = max(overall_worst, w)
        hidden_states_check(stem, ref, trace.inputs, trace.activations)

        size = out.stat().st_size
        rows.append((out.name, size, w))
        acts = ", ".join(f"{k}{tuple(v.shape)}" for k, v in trace.activations.items())
        print(f"{out.name}: {size} bytes; {shape_note}; max |batched - single| = {w:.3g} ({w_name})\n    {acts}")

    digest = hashlib.sha256()
    total = 0
    for path in own_traces():
        data = path.read_bytes()
        total += len(data)
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"traces total {total} bytes > {MAX_TOTAL_BYTES}")
    print(
        f"{len(rows)} traces, {total} bytes in all; largest padding-check difference {overall_worst:.3g} "
        f"(tolerance {PADDING_TOLERANCE}); sha256 over Fixtures/traces/*.h5 but prima-*.h5: {digest.hexdigest()}"
    )


if __name__ == "__main__":
    main()
