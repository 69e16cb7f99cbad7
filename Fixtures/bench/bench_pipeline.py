"""End-to-end latency of one PRIMA diagnosis in PyTorch (fp32 and dynamic int8), and ours when it can be measured.

Usage (from the repository root, with the venv from Fixtures/requirements.txt):
    python Fixtures/bench/bench_pipeline.py [MODELS_DIR] [--work DIR] [--repeat N] [--threads T]
                                            [--checkpoint PRIMA.h5] [--no-int8]

MODELS_DIR (default /work/bench-models) holds the full-size random-weight directories of
Fixtures/bench/make_full_size.py; the pipeline is dinov3-vitb16 (ViT-B/16, 224x224) + clinical-bert (Clinical-
ModernBERT-shaped BERT, 22 layers) + qwen3-1.7b, with seeded random heads (prima_ref.prima.random_heads, seed 0,
K = 6, special tokens stored) written to WORK/heads.safetensors, so that our side can import the same heads.

One diagnosis = prima_ref.prima.diagnose (the math of Formats/prima-trace.md §10, no activation capture): image
encoder on pixel_values (1, 3, 224, 224), text encoder on TEXT_TOKENS ids, fusion heads + decoder-input assembly,
the decoder on the assembled embeddings with only the last position's logits (logits_to_keep=1), softmax over the
K class logits. Image decoding/preprocessing and tokenization are NOT timed (the bench directories have no
tokenizers): the inputs are seeded (random pixel_values; random ids of the lengths below, which are what the real
tokenizers give for the default prompt, answer prefix and a full PAD-UFES-20 record). Each stage is timed with
time.perf_counter inside the same run; the table shows the median of N runs (after one warm-up) per stage and of
the totals. torch.set_num_threads(T) (default 2), transformers eager attention, float32, inference_mode.

int8: torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8) on the three models and on the
heads (their Linear layers; the two convolutions and the special tokens stay float32), in place after the fp32 runs.

Ours: `prima-diagnose --checkpoint C --image I --metadata M --json --repeat N` (built with `swift build -c release
--product prima-diagnose` when it exists), whose JSON has "timings_ms": {"image_encoder", "text_encoder", "fusion",
"decoder", "total", ...} (medians over N). Give --checkpoint (a PRIMA checkpoint of the same three models and
WORK/heads.safetensors); the image and metadata it is fed are WORK/case.png (224x224) and WORK/case.json. See
`ours_timings` below: that is where our side is plugged in. Without --checkpoint or the tool, the "ours" rows are
left out. Note that our "total" may include preprocessing and tokenization, which the PyTorch rows do not.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import transformers

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Formats" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import cpu_name, run  # noqa: E402
from prima_ref.prima import DEFAULT_CLASS_CODES, diagnose, load_heads, random_heads  # noqa: E402

PARTS = {"image_encoder": "dinov3-vitb16", "text_encoder": "clinical-bert", "decoder": "qwen3-1.7b"}
TEXT_TOKENS = 64  # [CLS] + 62 + [SEP]: a full PAD-UFES-20 record with ModernBERT's tokenizer is about this long
PROMPT_TOKENS = 14  # Qwen3's tokenizer on the default prompt
ANSWER_TOKENS = 2  # " Diagnosis", ":"
STAGES = ("image_encoder", "text_encoder", "fusion", "decoder", "total")
HEADS_SEED = 0


def load(models: Path):
    """The three models, float32, eager attention, eval mode (the base encoders; the decoder with its LM head)."""
    kw = dict(attn_implementation="eager", dtype=torch.float32)
    image = transformers.AutoModel.from_pretrained(models / PARTS["image_encoder"], **kw).eval()
    text_kw = dict(kw, add_pooling_layer=False)  # Clinical-BERT-shaped: an MLM checkpoint, no pooler
    text = transformers.AutoModel.from_pretrained(models / PARTS["text_encoder"], **text_kw).eval()
    decoder = transformers.AutoModelForCausalLM.from_pretrained(models / PARTS["decoder"], **kw).eval()
    # transformers may leave the weights in the memory-mapped safetensors files. With the three models loaded
    # (7.4 GB) the page cache then evicts and re-reads them during the runs, which made fp32 10-60x slower here.
    # Copy them into process memory (in place on each Parameter, so tied weights stay tied).
    with torch.no_grad():
        for model in (image, text, decoder):
            for p in model.parameters():
                p.data = p.data.clone()
    return image, text, decoder


def seeded_inputs(image, decoder, k: int):
    g = torch.Generator("cpu").manual_seed(0)
    vocab = decoder.config.vocab_size
    size = image.config.image_size
    class_ids = torch.randperm(vocab, generator=g)[:k]
    return {
        "pixel_values": torch.randn((1, 3, size, size), generator=g, dtype=torch.float32),
        "input_ids": torch.randint(0, 50000, (1, TEXT_TOKENS), generator=g),
        "attention_mask": torch.ones((1, TEXT_TOKENS), dtype=torch.long),
        "prompt_ids": torch.randint(0, vocab, (1, PROMPT_TOKENS), generator=g),
        "answer_prefix_ids": torch.randint(0, vocab, (1, ANSWER_TOKENS), generator=g),
        "class_token_ids": class_ids,
    }


def torch_timings(image, text, decoder, heads, inputs, repeat: int) -> dict:
    """Median seconds per stage over `repeat` diagnoses after one warm-up; also the class probabilities."""
    registers = int(getattr(image.config, "num_register_tokens", 0) or 0)
    patch = int(image.config.patch_size)
    runs = []
    with torch.inference_mode():
        probs, _ = diagnose(image, text, decoder, heads, inputs, registers, patch)
        for _ in range(repeat):
            _, t = diagnose(image, text, decoder, heads, inputs, registers, patch)
            runs.append(t)
    out = {s: statistics.median(r[s] for r in runs) for s in STAGES}
    out["probs"] = probs[0].tolist()
    return out


def write_case(work: Path, size: int):
    """WORK/case.png (seeded RGB noise, size x size) and WORK/case.json (a full PAD-UFES-20 record) for our tool."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    (work / "case.png").write_bytes(png)
    sample = REPO / "Fixtures" / "prima" / "cases" / "sample.json"
    (work / "case.json").write_text(sample.read_text(encoding="utf-8"), encoding="utf-8")
    return work / "case.png", work / "case.json"


# ----------------------------------------------------------------------------------------------------------------------
# OUR SIDE IS PLUGGED IN HERE
# ----------------------------------------------------------------------------------------------------------------------
def ours_timings(checkpoint, image: Path, metadata: Path, repeat: int, threads: int, extra_args=()):
    """Median seconds per stage of our runtime on the same case, or None when it cannot be measured.

    Runs `prima-diagnose --checkpoint C --image I --metadata M --json --repeat N` (release build) with
    OPENBLAS_NUM_THREADS = threads and reads "timings_ms" {"image_encoder", "text_encoder", "fusion", "decoder",
    "total", ...} (medians over N, milliseconds). Change this function if the tool's interface differs."""
    if checkpoint is None:
        return None
    if not (REPO / "Sources" / "Tools" / "prima-diagnose").exists():
        print("(prima-diagnose does not exist in this checkout yet: ours not measured)", file=sys.stderr)
        return None
    run(["swift", "build", "-c", "release", "--product", "prima-diagnose"])
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    out = run([REPO / ".build/release/prima-diagnose", "--checkpoint", checkpoint, "--image", image,
               "--metadata", metadata, "--json", "--repeat", str(repeat), *extra_args], env=env)
    report = json.loads(out)
    ms = report["timings_ms"]
    timings = {s: ms[s] / 1000 for s in STAGES if s in ms}
    timings["probs"] = report.get("probabilities") or report.get("class_probs")
    return timings


# ----------------------------------------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="?", default=Path("/work/bench-models"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/prima-bench-pipeline"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="our PRIMA checkpoint of the same models and heads (fp32)")
    parser.add_argument("--checkpoint-int8", type=Path, help="the same, quantised with prima-quantize --int8")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args.work.mkdir(parents=True, exist_ok=True)

    image, text, decoder = load(args.models)
    k = len(DEFAULT_CLASS_CODES)
    dims = (image.config.hidden_size, text.config.hidden_size, decoder.config.hidden_size)
    heads_path = args.work / "heads.safetensors"
    from safetensors.torch import save_file

    save_file(random_heads(*dims, k, HEADS_SEED), str(heads_path), metadata={"format": "pt"})
    heads, _ = load_heads(heads_path, *dims, k)
    inputs = seeded_inputs(image, decoder, k)
    png, meta = write_case(args.work, image.config.image_size)
    t_dec = (PROMPT_TOKENS + 7 + (image.config.image_size // image.config.patch_size // 2) ** 2
             + (TEXT_TOKENS - 2) // 2 + ANSWER_TOKENS)

    rows = []
    rows.append(("PyTorch fp32", torch_timings(image, text, decoder, heads, inputs, args.repeat)))
    ours = ours_timings(args.checkpoint, png, meta, args.repeat, args.threads)
    if ours:
        rows.append(("ours fp32", ours))
    if not args.no_int8:
        quantize = torch.ao.quantization.quantize_dynamic
        for m in (image, text, decoder, heads):
            quantize(m, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        rows.append(("PyTorch dynamic int8", torch_timings(image, text, decoder, heads, inputs, args.repeat)))
        ours = ours_timings(args.checkpoint_int8, png, meta, args.repeat, args.threads)
        if ours:
            rows.append(("ours int8", ours))

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; threads: {args.threads}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}; median of {args.repeat} runs after a warm-up")
    print(f"pipeline: {PARTS['image_encoder']} (224x224) + {PARTS['text_encoder']} ({TEXT_TOKENS} tokens) + "
          f"{PARTS['decoder']} ({t_dec} input embeddings, last-position logits), heads {heads_path}\n")
    print("| run | image encoder s | text encoder s | fusion s | decoder s | total s |")
    print("|---|---|---|---|---|---|")
    for label, t in rows:
        print(f"| {label} | " + " | ".join(f"{t[s]:.4f}" if s in t else "–" for s in STAGES) + " |")
    for label, t in rows:
        if t.get("probs"):
            print(f"{label} class_probs: " + " ".join(f"{p:.4f}" for p in t["probs"]))


if __name__ == "__main__":
    main()
