"""End-to-end latency of one PRIMA diagnosis, ours (prima-diagnose) against PyTorch, fp32 and int8, on identical
inputs, measured in one run.

Usage (from the repository root; the venv of Fixtures/requirements.txt, plus torchvision and Pillow for the DINOv3
image processor: the directory PRIMA_IMAGE_SITE, default /work/scratch-img/site, is put first on sys.path when it
exists, as Fixtures/make_prima_fixtures.py does):

    /work/venv-ref/bin/python Fixtures/bench/bench_pipeline.py [MODELS_DIR] [--work DIR] [--repeat N] [--threads T]
                                                               [--checkpoint PRIMA.h5] [--checkpoint-int8 PRIMA.h5]
                                                               [--no-int8] [--emulate-avx2]

That one command does everything: it builds the tools, imports the checkpoints, times both sides, checks that they
agree and prints the tables.

The model. MODELS_DIR (default /work/bench-models) holds the full-size random-weight directories of
Fixtures/bench/make_full_size.py: dinov3-vitb16 (ViT-B/16, 224x224) + clinical-bert (the Clinical-ModernBERT-shaped
BERT, 22 layers) + qwen3-1.7b (6.9 GB fp32). They have no tokenizers, so the script assembles
  WORK/text     = symlinks to clinical-bert's config.json and model.safetensors + Fixtures/tokenizers/modernbert/*
  WORK/decoder  = symlinks to qwen3-1.7b's files + Fixtures/tokenizers/qwen3-prima/* (the first tokens of
                  " ACK" ... " SEK" are distinct, as assembly requires)
and uses MODELS_DIR/dinov3-vitb16 as it is. The heads are seeded (prima_ref.prima.random_heads, seed 0, K = 6,
special tokens stored), written to WORK/heads.safetensors (rewritten only when their bytes change).

The case. WORK/case.png: a seeded synthetic 600x450 RGB photo-like PNG (skin-toned gradient, a darker lesion,
sensor noise), so that the resize to 224x224 is real work. WORK/case.json: a PAD-UFES-20 record (the keys of
Fixtures/prima/cases/sample.json; the patient-history columns blank, as in many PAD-UFES-20 rows) whose rendered
text (prima_ref.metadata, default schema) is 64 tokens with [CLS]/[SEP] under the fixture ModernBERT tokenizer:
about what the real ModernBERT tokenizer gives for a full record (the fixture tokenizer, 512 ids, splits words
into more pieces, so a shorter record reaches the same length). The script prints the lengths it measured.

Our side (run first, so the two pipelines are never in memory together). `swift build -c release` of prima-convert,
prima-quantize and prima-diagnose; unless --checkpoint / --checkpoint-int8 are given,
  prima-convert import --image-encoder MODELS_DIR/dinov3-vitb16 --text-encoder WORK/text --decoder WORK/decoder
      --labels ACK,BCC,MEL,NEV,SCC,SEK --heads WORK/heads.safetensors -o WORK/prima.h5
  prima-quantize --int8 WORK/prima.h5 -o WORK/prima-int8.h5   (default rules: embeddings, lm_head and the /prima heads float)
(each skipped when its output exists and is newer than the heads and, for int8, than prima.h5). Then
`prima-diagnose --checkpoint C --image WORK/case.png --metadata WORK/case.json --json --repeat N` under
/usr/bin/time, with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment (this machine presets them;
see bench_forward.py) and OPENBLAS_NUM_THREADS = T. Its JSON gives the median over the N runs of each stage and of
the per-run totals ("timings_ms"); the tool does no warm-up run, so its medians include the first run (with N = 1
our figures are a cold run; use N >= 5). Checkpoint loading is not timed. Peak RSS: GNU time's maximum RSS of the
whole process (loading included).

PyTorch side, in this process after ours: the three transformers models (float32, eager attention, eval mode,
inference_mode, weights copied into process memory), torch.set_num_threads(T), and one diagnosis =
  image:  prima_ref.prima.load_image (PIL) + the AutoImageProcessor of dinov3-vitb16 -> pixel_values (1, 3, 224, 224)
  text:   prima_ref.metadata rendering of the record + the `tokenizers` library's Tokenizer.from_file(
          WORK/text/tokenizer.json).encode (with [CLS]/[SEP], truncation to max_position_embeddings) -> input_ids
  image_encoder, text_encoder, fusion, decoder: prima_ref.prima.diagnose (the math of Formats/prima-trace.md §10:
          heads + decoder-input assembly in "fusion"; the decoder computes only the last position's logits, then
          softmax over the K class logits)
The prompt, answer-prefix and class-token ids are encoded once with WORK/decoder's tokenizer, as our tool does when
it loads the checkpoint. These are exactly the inputs prima_ref.prima.PrimaReference.case_inputs builds for the
traces (the script checks its token ids against transformers' AutoTokenizer, as PrimaReference uses). Stages are
timed with time.perf_counter; the table shows the median of N runs after one warm-up, per stage and of the per-run
totals (the sum of all six stages, as ours). Peak RSS: the process's VmHWM, reset after loading (transformers maps
the safetensors files and the copy out of them peaks near twice the weights; the script prints that figure and the
resident size after loading apart) and again before quantising, so the int8 figure is the peak from the fp32
models onwards (dynamic quantisation starts from them).

Identical inputs, checked: our rendered text (the JSON's "text") equals prima_ref's; `prima-convert tokenize` on
WORK/text/tokenizer.json and WORK/decoder/tokenizer.json gives the ids the PyTorch side feeds. Our image
preprocessing is checked against transformers' pixel_values by Tests/PrimaImageTests; here the class probabilities are compared:
fp32 max |ours - PyTorch| must be below FP32_PROB_TOLERANCE (exit status 1 otherwise).

int8: PyTorch is torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8) on the three models
and the heads, in place after the fp32 runs (every nn.Linear, the tied lm_head included; the convolutions, the
embeddings and the special tokens stay float32). Ours: prima-quantize --int8 with its default rules (int8 weights in the three models' linear layers; embeddings,
lm_head and the PRIMA heads stay float32). The two int8
schemes differ, so their probabilities are compared for information only (top-1 and max |difference|).
"""
import argparse
import json
import os
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_SITE = os.environ.get("PRIMA_IMAGE_SITE", "/work/scratch-img/site")
if Path(IMAGE_SITE).is_dir():
    sys.path.insert(0, IMAGE_SITE)
sys.path.insert(0, str(REPO / "Formats" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_emulation  # noqa: E402  (before torch: it sets PyTorch's ISA limits for --emulate-avx2)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from prima_ref.metadata import Schema  # noqa: E402
from prima_ref.prima import (  # noqa: E402
    DEFAULT_ANSWER_PREFIX, DEFAULT_CLASS_CODES, DEFAULT_PROMPT, class_token_ids, diagnose, load_heads, load_image,
    random_heads,
)

PARTS = {"image_encoder": "dinov3-vitb16", "text_encoder": "clinical-bert", "decoder": "qwen3-1.7b"}
TOKENIZERS = {"text": REPO / "Fixtures/tokenizers/modernbert", "decoder": REPO / "Fixtures/tokenizers/qwen3-prima"}
CLASS_CODES = DEFAULT_CLASS_CODES  # ACK,BCC,MEL,NEV,SCC,SEK
STAGES = ("image", "text", "image_encoder", "text_encoder", "fusion", "decoder", "total")
STAGE_NAMES = {"image": "image (decode + preprocess)", "text": "text (render + tokenize)",
               "image_encoder": "image encoder", "text_encoder": "text encoder",
               "fusion": "fusion (heads + decoder input)", "decoder": "decoder (+ class softmax)", "total": "total"}
HEADS_SEED = 0
CASE_WIDTH, CASE_HEIGHT = 600, 450
# A PAD-UFES-20 record with the keys of Fixtures/prima/cases/sample.json. Its text is 64 tokens with [CLS]/[SEP]
# under the fixture ModernBERT tokenizer (the script prints the measured length).
CASE_RECORD = {
    "patient_id": "PAT_1546", "lesion_id": 1215, "smoke": None, "drink": None, "background_father": "UNK",
    "background_mother": "UNK", "age": 67, "pesticide": None, "gender": "MALE", "skin_cancer_history": None,
    "cancer_history": None, "has_piped_water": None, "has_sewage_system": None, "fitspatrick": None,
    "region": "FACE", "diameter_1": 12, "diameter_2": None, "itch": True, "grew": "UNK", "hurt": False,
    "changed": "UNK", "bleed": False, "elevation": True,
}
FP32_PROB_TOLERANCE = 1e-4  # max |ours - PyTorch| of the fp32 class probabilities (expected ~1e-5)


def run(command, env=None, cwd=None) -> str:
    """stdout of `command`; exits with its stderr when it fails."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != 0:
        sys.exit(f"bench_pipeline.py: {' '.join(map(str, command))} failed:\n{result.stderr}")
    return result.stdout


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------
def link_dir(directory: Path, files) -> Path:
    """`directory` holding a symlink to each of `files` (existing links replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in files:
        link = directory / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source.resolve())
    return directory


def model_dirs(models: Path, work: Path) -> dict:
    """The three model directories with tokenizers: dinov3-vitb16 as is, WORK/text, WORK/decoder."""
    text = models / PARTS["text_encoder"]
    decoder = models / PARTS["decoder"]
    return {
        "image_encoder": models / PARTS["image_encoder"],
        "text_encoder": link_dir(work / "text", [text / "config.json", text / "model.safetensors",
                                                 *sorted(TOKENIZERS["text"].iterdir())]),
        "decoder": link_dir(work / "decoder", [*sorted(p for p in decoder.iterdir() if p.is_file()),
                                               *sorted(TOKENIZERS["decoder"].iterdir())]),
    }


def write_if_changed(path: Path, data: bytes) -> Path:
    """Writes `data` unless the file already holds it (keeps its mtime, so the checkpoints stay up to date)."""
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def write_heads(dirs: dict, work: Path) -> Path:
    from safetensors.torch import save

    dims = [json.loads((dirs[part] / "config.json").read_text())["hidden_size"] for part in PARTS]
    tensors = random_heads(*dims, len(CLASS_CODES), HEADS_SEED)
    return write_if_changed(work / "heads.safetensors", save(tensors, metadata={"format": "pt"}))


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of pixels (H, W, 3) uint8, filter 0, zlib level 6."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_case(work: Path):
    """WORK/case.png (seeded synthetic lesion photo, CASE_WIDTH x CASE_HEIGHT) and WORK/case.json (CASE_RECORD)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:CASE_HEIGHT, 0:CASE_WIDTH].astype(np.float32)
    skin = np.array([214, 170, 140], np.float32) * (0.85 + 0.15 * (x / CASE_WIDTH))[..., None]
    r2 = ((x - 0.55 * CASE_WIDTH) / 90) ** 2 + ((y - 0.45 * CASE_HEIGHT) / 70) ** 2
    lesion = np.exp(-r2 ** 2)[..., None] * np.array([120, 95, 85], np.float32)
    pixels = skin - lesion + rng.normal(0, 6, (CASE_HEIGHT, CASE_WIDTH, 3)).astype(np.float32)
    png = write_if_changed(work / "case.png", png_bytes(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)))
    meta = write_if_changed(work / "case.json", (json.dumps(CASE_RECORD, indent=2) + "\n").encode())
    return png, meta


# ----------------------------------------------------------------------------------------------------------------------
# Our side
# ----------------------------------------------------------------------------------------------------------------------
def build_tools() -> dict:
    products = ("prima-convert", "prima-quantize", "prima-diagnose")
    for product in products:
        run(["swift", "build", "-c", "release", "--product", product], cwd=REPO)
    return {p: REPO / ".build/release" / p for p in products}


def up_to_date(output: Path, *inputs: Path) -> bool:
    return output.exists() and all(output.stat().st_mtime > i.stat().st_mtime for i in inputs)


def make_checkpoints(tools: dict, dirs: dict, heads: Path, work: Path):
    """WORK/prima.h5 and WORK/prima-int8.h5, each made only when missing or older than the heads."""
    fp32, int8 = work / "prima.h5", work / "prima-int8.h5"
    if not up_to_date(fp32, heads):
        print(f"importing {fp32} ...", file=sys.stderr)
        run([tools["prima-convert"], "import", "--image-encoder", dirs["image_encoder"], "--text-encoder",
             dirs["text_encoder"], "--decoder", dirs["decoder"], "--labels", ",".join(CLASS_CODES), "--heads", heads,
             "-o", fp32, "--force", "--no-progress"])
    if not up_to_date(int8, fp32, heads):
        print(f"quantising {int8} ...", file=sys.stderr)
        run([tools["prima-quantize"], "--int8", fp32, "-o", int8, "--force"])
    return fp32, int8


def ours_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env.update(cpu_emulation.RUNTIME_ENV)
    return env


def ours_timings(tool: Path, checkpoint: Path, image: Path, metadata: Path, repeat: int, threads: int) -> dict:
    """Our stage medians (seconds), class probabilities in CLASS_CODES order, rendered text and peak RSS (bytes)."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as rss:
        out = run(["/usr/bin/time", "-f", "%M", "-o", rss.name, tool, "--checkpoint", checkpoint, "--image", image,
                   "--metadata", metadata, "--json", "--repeat", str(repeat)], env=ours_env(threads))
        peak = int(Path(rss.name).read_text().split()[-1]) * 1024
    report = json.loads(out)
    ms = report["timings_ms"]
    missing = [s for s in STAGES if s not in ms]
    if missing:
        sys.exit(f"bench_pipeline.py: prima-diagnose's timings_ms lacks {missing}")
    by_code = {c["code"]: c["probability"] for c in report["classes"]}
    timings = {s: ms[s] / 1000 for s in STAGES}
    return dict(timings=timings, probs=[by_code[c] for c in CLASS_CODES], text=report["text"], peak_rss=peak)


def swift_token_ids(convert: Path, tokenizer_json: Path, text: str, special: bool) -> list:
    """`prima-convert tokenize` of one line: the ids our tool's tokenizer gives."""
    command = [convert, "tokenize", tokenizer_json] + ([] if special else ["--no-special"])
    result = subprocess.run(command, input=text + "\n", capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench_pipeline.py: {' '.join(map(str, command))} failed:\n{result.stderr}")
    return json.loads(result.stdout)


# ----------------------------------------------------------------------------------------------------------------------
# PyTorch side
# ----------------------------------------------------------------------------------------------------------------------
def load_models(dirs: dict):
    """The three models, float32, eager attention, eval mode (the base encoders; the decoder with its LM head)."""
    kw = dict(attn_implementation="eager", dtype=torch.float32)
    image = transformers.AutoModel.from_pretrained(dirs["image_encoder"], **kw).eval()
    text_kw = dict(kw, add_pooling_layer=False)  # Clinical-BERT-shaped: an MLM checkpoint, no pooler
    text = transformers.AutoModel.from_pretrained(dirs["text_encoder"], **text_kw).eval()
    decoder = transformers.AutoModelForCausalLM.from_pretrained(dirs["decoder"], **kw).eval()
    # transformers may leave the weights in the memory-mapped safetensors files. With the three models loaded
    # (7.4 GB) the page cache then evicts and re-reads them during the runs, which made fp32 10-60x slower here.
    # Copy them into process memory (in place on each Parameter, so tied weights stay tied).
    with torch.no_grad():
        for model in (image, text, decoder):
            for p in model.parameters():
                p.data = p.data.clone()
    return image, text, decoder


class TorchPipeline:
    """One diagnosis in PyTorch from the PNG and the record, the way prima_ref.prima.PrimaReference builds the
    trace inputs, timed by stage."""

    def __init__(self, dirs: dict, heads_path: Path, image, text, decoder):
        self.image, self.text, self.decoder = image, text, decoder
        d = (image.config.hidden_size, text.config.hidden_size, decoder.config.hidden_size)
        self.heads, _ = load_heads(heads_path, *d, len(CLASS_CODES))
        self.registers = int(getattr(image.config, "num_register_tokens", 0) or 0)
        self.patch = int(image.config.patch_size)
        self.processor = transformers.AutoImageProcessor.from_pretrained(str(dirs["image_encoder"]))
        self.schema = Schema.pad_ufes_20()
        self.tokenizer = Tokenizer.from_file(str(dirs["text_encoder"] / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(text.config.max_position_embeddings))
        dec_tok = transformers.AutoTokenizer.from_pretrained(str(dirs["decoder"]))
        ids = lambda s: torch.tensor([dec_tok.encode(s, add_special_tokens=False)], dtype=torch.long)  # noqa: E731
        self.prompt_ids, self.answer_ids = ids(DEFAULT_PROMPT), ids(DEFAULT_ANSWER_PREFIX)
        self.class_ids = torch.tensor(class_token_ids(dec_tok, CLASS_CODES), dtype=torch.long)
        self.text_auto_tokenizer = transformers.AutoTokenizer.from_pretrained(str(dirs["text_encoder"]))

    def text_ids(self, record: dict):
        text = self.schema.render(record, "case.json")
        ids = torch.tensor([self.tokenizer.encode(text).ids], dtype=torch.long)
        return text, ids

    def check_text_ids(self, record: dict) -> list:
        """Our `tokenizers` ids equal those of transformers' AutoTokenizer called as PrimaReference.text_ids does."""
        text, ids = self.text_ids(record)
        max_len = int(self.text.config.max_position_embeddings)
        auto = self.text_auto_tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"]
        if ids[0].tolist() != list(auto):
            sys.exit(f"bench_pipeline.py: tokenizers ids {ids[0].tolist()} differ from AutoTokenizer's {auto}")
        return ids[0].tolist()

    def diagnose(self, image_path: Path, record: dict):
        clock = time.perf_counter
        t0 = clock()
        pv = self.processor(images=load_image(image_path), return_tensors="pt")["pixel_values"]
        t1 = clock()
        _, ids = self.text_ids(record)
        t2 = clock()
        inputs = {"pixel_values": pv, "input_ids": ids, "attention_mask": torch.ones_like(ids),
                  "prompt_ids": self.prompt_ids, "answer_prefix_ids": self.answer_ids,
                  "class_token_ids": self.class_ids}
        probs, t = diagnose(self.image, self.text, self.decoder, self.heads, inputs, self.registers, self.patch,
                            clock=clock)
        t = dict(t, image=t1 - t0, text=t2 - t1)
        t["total"] = sum(t[s] for s in STAGES if s != "total")
        return probs[0].tolist(), t, inputs

    def timings(self, image_path: Path, record: dict, repeat: int) -> dict:
        """Median seconds per stage over `repeat` diagnoses after one warm-up, and the class probabilities."""
        runs = []
        with torch.inference_mode():
            probs, _, _ = self.diagnose(image_path, record)
            for _ in range(repeat):
                _, t, _ = self.diagnose(image_path, record)
                runs.append(t)
        return dict(timings={s: statistics.median(r[s] for r in runs) for s in STAGES}, probs=probs)

    def decoder_length(self, image_path: Path, record: dict):
        """(T_dec as the decoder sees it, i.e. inputs_embeds.shape[1], the inputs), from one hooked diagnosis."""
        seen = []
        hook = self.decoder.register_forward_pre_hook(
            lambda _m, _a, kw: seen.append(kw["inputs_embeds"].shape[1]), with_kwargs=True)
        try:
            with torch.inference_mode():
                _, _, inputs = self.diagnose(image_path, record)
        finally:
            hook.remove()
        return seen[0], inputs


def vm_status(key: str) -> int:
    """A /proc/self/status size in bytes: VmHWM (peak RSS) or VmRSS (current RSS)."""
    line = next(line for line in open("/proc/self/status") if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def reset_vm_hwm() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------------
def table(title: str, ours, theirs) -> str:
    lines = [f"**{title}** (median ms; ratio = ours / PyTorch, lower is better)", "",
             "| stage | ours ms | PyTorch ms | ratio |", "|---|---|---|---|"]
    for s in STAGES:
        a, b = ours["timings"][s] * 1000 if ours else None, theirs["timings"][s] * 1000
        cells = [f"{a:.1f}" if a is not None else "–", f"{b:.1f}", f"{a / b:.2f}" if a is not None and b > 0 else "–"]
        name = f"**{STAGE_NAMES[s]}**" if s == "total" else STAGE_NAMES[s]
        lines.append(f"| {name} | " + " | ".join(f"**{c}**" if s == "total" else c for c in cells) + " |")
    a, b = (ours["peak_rss"] if ours else None), theirs["peak_rss"]
    lines.append(f"| peak RSS (note below) | {a / 2**20:.0f} MB | {b / 2**20:.0f} MB | {a / b:.2f} |" if a else
                 f"| peak RSS (note below) | – | {b / 2**20:.0f} MB | – |")
    return "\n".join(lines)


def agreement(label: str, ours, theirs):
    diff = max(abs(a - b) for a, b in zip(ours["probs"], theirs["probs"]))
    top = lambda p: CLASS_CODES[int(np.argmax(p))]  # noqa: E731
    print(f"{label}: max |ours - PyTorch| of the class probabilities {diff:.2e}; top-1 ours {top(ours['probs'])}, "
          f"PyTorch {top(theirs['probs'])}")
    for name, t in (("ours", ours), ("PyTorch", theirs)):
        print(f"  {name:8s}" + " ".join(f"{c} {p:.6f}" for c, p in zip(CLASS_CODES, t["probs"])))
    return diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="?", default=Path("/work/bench-models"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/prima-bench-pipeline"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="our fp32 PRIMA checkpoint of the same models and heads "
                                                        "(default: WORK/prima.h5, imported when stale)")
    parser.add_argument("--checkpoint-int8", type=Path, help="the same, quantised with prima-quantize --int8 "
                                                             "(default: WORK/prima-int8.h5)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 runs")
    cpu_emulation.add_argument(parser)
    args = parser.parse_args()
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    for module in ("PIL", "torchvision"):
        try:
            __import__(module)
        except ImportError:
            sys.exit(f"bench_pipeline.py: {module} is not importable; set PRIMA_IMAGE_SITE to a directory holding "
                     "torchvision and Pillow (Fixtures/images/requirements.txt)")
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    dirs = model_dirs(args.models, work)
    heads = write_heads(dirs, work)
    png, meta = write_case(work)
    tools = build_tools()
    if args.checkpoint is None or (args.checkpoint_int8 is None and not args.no_int8):
        fp32, int8 = make_checkpoints(tools, dirs, heads, work)
        args.checkpoint = args.checkpoint or fp32
        args.checkpoint_int8 = args.checkpoint_int8 or int8

    # Ours first: its process has exited before PyTorch loads the models.
    print("running prima-diagnose ...", file=sys.stderr)
    ours = {"fp32": ours_timings(tools["prima-diagnose"], args.checkpoint, png, meta, args.repeat, args.threads)}
    if not args.no_int8:
        ours["int8"] = ours_timings(tools["prima-diagnose"], args.checkpoint_int8, png, meta, args.repeat, args.threads)

    print("loading the PyTorch models ...", file=sys.stderr)
    image, text, decoder = load_models(dirs)
    pipe = TorchPipeline(dirs, heads, image, text, decoder)
    record = json.loads(meta.read_text())
    text_ids = pipe.check_text_ids(record)
    # transformers maps the safetensors files and load_models copies every tensor out of them, so loading peaks far
    # above the resident weights; that is this script's loading, not the diagnosis: reset the peak after it.
    load_peak, loaded_rss = vm_status("VmHWM"), vm_status("VmRSS")
    reset = reset_vm_hwm()
    t_dec, inputs = pipe.decoder_length(png, record)

    # Identical inputs on both sides.
    rendered = pipe.schema.render(record, "case.json")
    for precision, o in ours.items():
        if o["text"] != rendered:
            sys.exit(f"bench_pipeline.py: our rendered text ({precision}) differs from prima_ref's:\n"
                     f"  ours:     {o['text']}\n  prima_ref: {rendered}")
    convert = tools["prima-convert"]
    checks = [("text", dirs["text_encoder"], rendered, True, text_ids),
              ("prompt", dirs["decoder"], DEFAULT_PROMPT, False, inputs["prompt_ids"][0].tolist()),
              ("answer prefix", dirs["decoder"], DEFAULT_ANSWER_PREFIX, False, inputs["answer_prefix_ids"][0].tolist())]
    for name, directory, line, special, want in checks:
        got = swift_token_ids(convert, directory / "tokenizer.json", line, special)
        if got != want:
            sys.exit(f"bench_pipeline.py: {name}: our tokenizer gives {got}, PyTorch side feeds {want}")

    print("timing PyTorch fp32 ...", file=sys.stderr)
    theirs = {"fp32": pipe.timings(png, record, args.repeat)}
    theirs["fp32"]["peak_rss"] = vm_status("VmHWM")
    if not args.no_int8:
        reset = reset_vm_hwm() and reset
        quantize = torch.ao.quantization.quantize_dynamic
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
            warnings.simplefilter("ignore")
            for m in (image, text, decoder, pipe.heads):
                quantize(m, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        print("timing PyTorch dynamic int8 ...", file=sys.stderr)
        theirs["int8"] = pipe.timings(png, record, args.repeat)
        theirs["int8"]["peak_rss"] = vm_status("VmHWM")

    cfg = image.config
    grid = (inputs["pixel_values"].shape[2] // cfg.patch_size, inputs["pixel_values"].shape[3] // cfg.patch_size)
    n, p, a = len(text_ids), inputs["prompt_ids"].shape[1], inputs["answer_prefix_ids"].shape[1]
    formula = p + 6 + (grid[0] // 2) * (grid[1] // 2) + (n - 2) // 2 + a  # Formats/prima-trace.md §10.3
    assert t_dec == formula, (t_dec, formula)

    print(f"\ncommand: {command}")
    print(f"machine: {cpu_emulation.describe()}; threads: {args.threads} for both (torch.set_num_threads, "
          f"OPENBLAS_NUM_THREADS); torch {torch.__version__}, transformers {transformers.__version__}; image "
          f"processor {type(pipe.processor).__name__}; median of {args.repeat} runs (PyTorch after a warm-up)")
    print(f"pipeline: {PARTS['image_encoder']} + {PARTS['text_encoder']} + {PARTS['decoder']}, heads {heads}; "
          f"checkpoints {args.checkpoint}" + ("" if args.no_int8 else f", {args.checkpoint_int8}"))
    print(f"case: {png} ({CASE_WIDTH}x{CASE_HEIGHT} -> {tuple(inputs['pixel_values'].shape[2:])}), {meta}")
    print(f"text: {rendered!r}")
    print(f"lengths: text {n} tokens ([CLS] + {n - 2} + [SEP]), prompt {p}, answer prefix {a}, image "
          f"{grid[0]}x{grid[1]} patches -> {(grid[0] // 2) * (grid[1] // 2)} decoder tokens, text -> "
          f"{(n - 2) // 2}; decoder sequence {t_dec}\n")

    fp32_diff = agreement("fp32", ours["fp32"], theirs["fp32"])
    ok = fp32_diff <= FP32_PROB_TOLERANCE
    print(f"  fp32 agreement {'OK' if ok else 'FAILED'} (tolerance {FP32_PROB_TOLERANCE:g})")
    if "int8" in ours:
        agreement("int8 (informative: different quantisation schemes)", ours["int8"], theirs["int8"])
    print()
    print(table("fp32", ours["fp32"], theirs["fp32"]))
    if "int8" in ours:
        print()
        print(table("int8 (ours: prima-quantize --int8; PyTorch: quantize_dynamic qint8)", ours["int8"],
                    theirs["int8"]))
    if reset:
        print(f"\nPeak RSS: ours is GNU time's maximum RSS of the prima-diagnose process (checkpoint load included). "
              f"PyTorch's is this process's VmHWM from after loading (the models resident: {loaded_rss / 2**20:.0f} "
              f"MB; loading itself peaked at {load_peak / 2**20:.0f} MB) through the fp32 runs"
              + ("" if args.no_int8 else "; for int8, from the fp32 models through quantize_dynamic and the int8 runs")
              + ".")
    else:
        print("\nPeak RSS: ours is GNU time's maximum RSS of prima-diagnose; PyTorch's is this process's VmHWM, "
              "loading included (/proc/self/clear_refs could not reset it).")
    if not ok:
        sys.exit(f"bench_pipeline.py: fp32 probabilities differ by {fp32_diff:.2e} > {FP32_PROB_TOLERANCE:g}")


if __name__ == "__main__":
    main()
