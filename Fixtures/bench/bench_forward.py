"""Forward-latency benchmark: the Swift runtime (prima-verify --repeat) against PyTorch eager fp32, same machine,
same thread count, measured in one run, on full-size random-weight models.

Usage (from the repository root, with the venv from Fixtures/requirements.txt):
    python Fixtures/bench/bench_forward.py MODELS_DIR [--work DIR] [--repeat N] [--threads T] [--only NAME ...]
                                          [--emulate-avx2]

MODELS_DIR holds the directories written by Fixtures/bench/make_full_size.py (dinov3-vits16, dinov3-vitb16,
modernbert-base, clinical-bert, qwen3-0.6b, qwen3-1.7b). For each model this script
  1. imports it with `prima-convert import` (release build) into WORK/NAME.h5 (kept between runs),
  2. writes an inputs-only trace (batch 1: a seeded 224x224 image, or seeded token ids of the model's length),
  3. times PyTorch (transformers, attn_implementation="eager", float32, torch.set_num_threads(T), no_grad, after
     one warm-up) and the runtime (`prima-verify CKPT --trace INPUTS --repeat N --json`, the median of N after
     loading; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment so the runtime picks the
     kernels itself, as it does for users) — medians of N runs each,
  4. prints a Markdown table: seconds (median, and the fastest run beside it), time ratio (ours / PyTorch, of
     the medians and of the minima), achieved GFLOP/s and its share of the measured OpenBLAS sgemm peak
     (`prima-verify --system-info`), and the runtime's peak RSS against the fp32 weight bytes.
With --emulate-avx2 both sides run as on an AVX2-only CPU (Fixtures/bench/cpu_emulation.py); the machine line
names the CPU, its features and the emulation.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_emulation  # noqa: E402  (before torch: it sets PyTorch's ISA limits for --emulate-avx2)
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = {  # name: (component, tokens or None for images)
    "dinov3-vits16": ("image_encoder", None),
    "dinov3-vitb16": ("image_encoder", None),
    "modernbert-base": ("text_encoder", 64),
    "clinical-bert": ("text_encoder", 64),
    "qwen3-0.6b": ("decoder", 128),
    "qwen3-1.7b": ("decoder", 128),
}


def flops(config: dict, tokens: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one batch-1 forward pass, counting matrix products only."""
    kind = config["model_type"]
    c = config["hidden_size"]
    i = config["intermediate_size"]
    layers = config["num_hidden_layers"]
    if kind == "dinov3_vit":
        p = config.get("patch_size", 16)
        patches = (224 // p) ** 2
        t = 1 + config.get("num_register_tokens", 0) + patches
        mlp = (3 if config.get("use_gated_mlp") else 2) * 2 * t * c * i
        per_layer = 4 * 2 * t * c * c + mlp + 4 * t * t * c
        return 2 * patches * 3 * p * p * c + layers * per_layer
    t = tokens
    if kind == "qwen3":
        h, kv = config["num_attention_heads"], config["num_key_value_heads"]
        d = config.get("head_dim") or c // h
        per_layer = 2 * t * c * (2 * h * d + 2 * kv * d) + 3 * 2 * t * c * i + 4 * t * t * h * d
        return layers * per_layer + 2 * t * c * config["vocab_size"]
    if kind == "modernbert":
        per_layer = 2 * t * c * 4 * c + 2 * t * c * 2 * i + 2 * t * i * c + 4 * t * t * c
        return layers * per_layer
    if kind == "bert":
        per_layer = 4 * 2 * t * c * c + 2 * 2 * t * c * i + 4 * t * t * c
        return layers * per_layer
    raise ValueError(kind)


def run(command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"bench_forward.py: {' '.join(map(str, command))} failed:\n{result.stderr}")
    return result.stdout


def write_inputs(path: Path, component: str, tokens, vocab: int):
    generator = torch.Generator("cpu").manual_seed(0)
    with h5py.File(path, "w") as f:
        f.attrs["prima_trace_version"] = np.int64(1)
        f.attrs["component"] = component
        for key in ("source", "torch_version", "transformers_version"):
            f.attrs[key] = ""
        f.attrs["attn_implementation"] = "eager"
        f.attrs["dtype"] = "float32"
        inputs = f.create_group("inputs")
        f.create_group("activations")  # empty: a trace of inputs only (Formats/prima-trace.md §1)
        if tokens is None:
            pixels = torch.randn(1, 3, 224, 224, generator=generator, dtype=torch.float32)
            inputs["pixel_values"] = pixels.numpy()
            return {"pixel_values": pixels}
        ids = torch.randint(0, min(vocab, 50000), (1, tokens), generator=generator, dtype=torch.int64)
        mask = torch.ones_like(ids)
        inputs["input_ids"] = ids.numpy()
        inputs["attention_mask"] = mask.numpy()
        return {"input_ids": ids, "attention_mask": mask}


class Times(tuple):
    """The fastest and the median of several runs, in seconds."""
    def __new__(cls, runs):
        return super().__new__(cls, (min(runs), statistics.median(runs)))

    best = property(lambda self: self[0])
    median = property(lambda self: self[1])

    def __str__(self):
        return f"{self.median:.4f} ({self.best:.4f})"

    def ratio(self, other) -> str:
        """self / other, of the medians (of the minima)."""
        return f"{self.median / other.median:.2f} ({self.best / other.best:.2f})"


def torch_seconds(model_dir: Path, kind: str, inputs: dict, repeat: int, dynamic_int8: bool = False) -> Times:
    """Forward times of the transformers model (eager, fp32, no_grad) after a warm-up; with `dynamic_int8`,
    after `torch.ao.quantization.quantize_dynamic` on every nn.Linear (qint8)."""
    cls = transformers.AutoModelForCausalLM if kind == "qwen3" else transformers.AutoModel
    model = cls.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    if dynamic_int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    times = []
    with torch.no_grad():
        model(**inputs)
        for _ in range(repeat):
            start = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - start)
    del model
    return Times(times)


def verify_seconds(verify: Path, checkpoint: Path, trace: Path, repeat: int, env: dict, rss: Path = None) -> Times:
    """Our forward times: `prima-verify CKPT --trace INPUTS --repeat N --json` (loading excluded), optionally under
    GNU time writing the peak RSS to `rss`."""
    command = [verify, checkpoint, "--trace", trace, "--json", "--repeat", str(repeat)]
    if rss is not None:
        command = ["/usr/bin/time", "-f", "%M", "-o", rss] + command
    return Times(json.loads(run(command, env=env))["forward_runs"])


def machine_line(verify: Path, env: dict, threads: int, repeat: int) -> tuple:
    """The line naming the machine, both sides' kernels and the run; and the measured sgemm peak."""
    info = run([verify, "--system-info"], env=env)
    core = re.search(r"openblas core: (\S+)", info).group(1)
    kernels = ", ".join(re.search(rf"{label}: (.+)", info).group(1) for label in ("f32 kernels", "int8 kernel"))
    peak = float(re.search(r"sgemm peak: ([0-9.]+) GFLOP/s", info).group(1))
    line = (f"machine: {cpu_emulation.describe()}; threads: {threads} for both; ours: OpenBLAS core {core}, sgemm "
            f"peak {peak:.0f} GFLOP/s, f32 / int8 kernels {kernels}; PyTorch {torch.__version__} (CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}), transformers {transformers.__version__}; median of {repeat} "
            f"runs after a warm-up, the fastest run in parentheses")
    return line, peak


def parse_arguments(description: str, products: list) -> tuple:
    """The options both benchmarks take, torch's thread count set, the release tools built; returns the
    arguments, the tool paths by name, and the runtime's environment (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
    removed so it picks its kernels itself, unless --emulate-avx2 sets them; OPENBLAS_NUM_THREADS = --threads)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("models", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/prima-bench-forward"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", nargs="*", default=list(MODELS))
    cpu_emulation.add_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    for product in products:
        run(["swift", "build", "-c", "release", "--product", product])
    tools = {name: REPO / ".build/release" / name for name in products}
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    env.update(cpu_emulation.RUNTIME_ENV)
    return args, tools, env


def cpu_name() -> str:
    return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))


def main():
    args, tools, env = parse_arguments(__doc__.split("\n")[0], ["prima-convert", "prima-verify"])
    convert, verify = tools["prima-convert"], tools["prima-verify"]
    line, peak = machine_line(verify, env, args.threads, args.repeat)
    print(line + "\n")
    print("| model | input | PyTorch s | ours s | ratio ours / PyTorch | ours GFLOP/s | % of sgemm peak | ours peak RSS | fp32 weights |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.only:
        component, tokens = MODELS[name]
        model_dir = args.models / name
        config = json.loads((model_dir / "config.json").read_text())
        checkpoint = args.work / f"{name}.h5"
        if not checkpoint.exists():
            run([convert, "import", model_dir, "-o", checkpoint, "--no-progress"])
        trace = args.work / f"{name}-inputs.h5"
        inputs = write_inputs(trace, component, tokens, config.get("vocab_size", 0))
        reference = torch_seconds(model_dir, config["model_type"], inputs, args.repeat)
        ours = verify_seconds(verify, checkpoint, trace, args.repeat, env, rss=args.work / "rss.txt")
        rss_mb = int((args.work / "rss.txt").read_text().split()[-1]) / 1024
        weights_mb = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 2**20  # fp32 models
        work = flops(config, tokens or 0)
        label = "224x224 image" if tokens is None else f"{tokens} tokens"
        print(f"| {name} | {label} | {reference} | {ours} | {ours.ratio(reference)} | {work / ours.median / 1e9:.0f} | "
              f"{100 * work / ours.median / 1e9 / peak:.0f}% | {rss_mb:.0f} MB | {weights_mb:.0f} MB |")


if __name__ == "__main__":
    main()
