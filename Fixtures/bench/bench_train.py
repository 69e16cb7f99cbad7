"""Training-step benchmark: one LoRA forward + backward of the Swift runtime (prima-verify on a gradient trace,
--repeat) against PyTorch + PEFT eager fp32, same machine, same thread count, measured in one run, on full-size
random-weight models.

Usage (from the repository root, with the venv from Fixtures/requirements.txt, which has torch, transformers, peft):
    python Fixtures/bench/bench_train.py MODELS_DIR [--work DIR] [--repeat N] [--threads T] [--only NAME ...]

The cases (issue 10, "Performance"):
  dinov3-vitb16  LoRA r32 (alpha 64) on q/k/v/o and up/down, objective `dot`, batch 8 at 224x224
  clinical-bert  LoRA r8 (alpha 16) on query/key/value, attention output, intermediate and output dense of every
                 layer (not the MLM head's dense), objective `mlm`, batch 8 x 128 tokens
  qwen3-0.6b     LoRA r16 (alpha 32) on q/k/v/o/gate/up/down, objective `causal_lm`, batch 1 x 256 tokens

For each case this script
  1. writes the full-size model with Fixtures/bench/make_full_size.py into MODELS_DIR (outside the repository;
     reused when MODELS_DIR/NAME/config.json exists),
  2. writes a PEFT adapter with every LoRA matrix drawn from a seeded N(0, 0.02) into WORK/NAME-lora (PEFT's own
     init leaves B = 0; Fixtures/make_lora_fixtures.py does the same with a larger spread),
  3. writes one gradient trace (Formats/prima-trace.md §11, prima_ref.grad.write_grad_trace, the LoRA matrices
     trainable) for seeded inputs, and times PyTorch's step in a fresh subprocess: the same GradientModel loaded with
     the adapter (eager attention, fp32, eval mode, torch.set_num_threads(T)), only the LoRA matrices requiring
     grad, forward of the objective + loss.backward() with the gradients reset before each step; median of N after
     one warm-up step, then the median of N forwards under no_grad; the subprocess reports its peak RSS (ru_maxrss),
  4. imports the model (`prima-convert import`, then `prima-convert lora-import --role ROLE --adapter DIR`,
     release build) into WORK/NAME.h5 (kept between runs),
  5. runs `prima-verify CKPT --trace GRAD.h5 --repeat N --json` under GNU time (peak RSS): step_seconds is the
     median forward + backward (the fastest step is shown beside it, as is PyTorch's), `pass` whether the last step's loss, activation gradients and LoRA gradients match
     PyTorch's (Formats/prima-verify.md §2.1); then `prima-verify CKPT --trace INPUTS.h5 --repeat N --json` on an
     inputs-only forward trace of the same inputs (forward_seconds; for `mlm` this forward stops at the encoder's
     final norm, without the MLM head). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the runtime's
     environment as in bench_forward.py,
  6. prints a Markdown table: seconds, ratio ours / PyTorch, peak RSS of both, pass, achieved GFLOP/s and its share
     of the measured sgemm peak (`prima-verify --system-info`), and backward / forward for both sides, with backward
     taken as the step's median minus the inference forward's median (the training forward also records its tape,
     so this slightly overstates the backward).

FLOPs counted (2 per multiply-add, matrix products only; `step_flops`): the frozen base's weight products (every
linear layer and the LM / MLM head, logits at every position) twice — forward and the input gradient dX = dY W;
the weight gradient of a frozen weight is skipped —, the attention products (Q Kᵀ and P V, full T x T: no
causal saving counted) three times — forward and both operand gradients —, the LoRA products (A x and B h) three
times — forward, input gradient and weight gradient —, and the DINOv3 patch embedding once (nothing upstream of
it needs a gradient). Element-wise work (norms, softmax, GELU/SiLU, RoPE, the loss) is not counted.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # PEFT looks the base model's name up on the Hub when saving an adapter

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Formats" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import cpu_name, run  # noqa: E402

LORA_SEED = 4321
LORA_STD = 0.02
INPUT_SEED = 0
BERT_LAYERS = r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
CASES = {  # name: (role, objective, batch, tokens (None: 224x224 image), LoRA r, alpha, target_modules)
    "dinov3-vitb16": ("image_encoder", "dot", 8, None, 32, 64,
                      ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]),
    "clinical-bert": ("text_encoder", "mlm", 8, 128, 8, 16, BERT_LAYERS),
    "qwen3-0.6b": ("decoder", "causal_lm", 1, 256, 16, 32,
                   ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
}


def step_flops(config: dict, batch: int, tokens, rank: int) -> dict:
    """Matrix-product FLOPs of one LoRA training step, by kind (see the module docstring for what is counted)."""
    kind = config["model_type"]
    c, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    if kind == "dinov3_vit":
        p = config.get("patch_size", 16)
        patches = (224 // p) ** 2
        t = 1 + config.get("num_register_tokens", 0) + patches
        shapes = [(c, c)] * 4 + [(c, i), (i, c)]  # (in, out) of q, k, v, o, up, down
        patch = batch * 2 * patches * 3 * p * p * c
        attention = layers * batch * 4 * t * t * c
        head = 0
    elif kind == "bert":
        t = tokens
        shapes = [(c, c)] * 4 + [(c, i), (i, c)]
        patch = 0
        attention = layers * batch * 4 * t * t * c
        head = batch * t * 2 * (c * c + c * config["vocab_size"])  # mlm dense + tied decoder, every position
    elif kind == "qwen3":
        t = tokens
        h, kv = config["num_attention_heads"], config["num_key_value_heads"]
        d = config.get("head_dim") or c // h
        shapes = [(c, h * d), (c, kv * d), (c, kv * d), (h * d, c), (c, i), (c, i), (i, c)]
        patch = 0
        attention = layers * batch * 4 * t * t * h * d
        head = batch * t * 2 * c * config["vocab_size"]
    else:
        raise ValueError(kind)
    weights = layers * batch * t * sum(2 * a * b for a, b in shapes) + head
    lora = layers * batch * t * sum(2 * rank * (a + b) for a, b in shapes)
    return {"weights": weights, "attention": attention, "lora": lora, "patch": patch,
            "step": 2 * weights + 3 * attention + 3 * lora + patch}


def base_inputs(role: str, batch: int, tokens, vocab: int) -> dict:
    generator = torch.Generator("cpu").manual_seed(INPUT_SEED)
    if tokens is None:
        return {"pixel_values": torch.randn(batch, 3, 224, 224, generator=generator, dtype=torch.float32).numpy()}
    ids = torch.randint(0, min(vocab, 50000), (batch, tokens), generator=generator, dtype=torch.int64).numpy()
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def write_inputs_trace(path: Path, role: str, inputs: dict):
    """An inputs-only version-1 trace (Formats/prima-trace.md §1) for timing the runtime's forward pass."""
    with h5py.File(path, "w") as f:
        f.attrs["prima_trace_version"] = np.int64(1)
        f.attrs["component"] = role
        for key in ("source", "torch_version", "transformers_version"):
            f.attrs[key] = ""
        f.attrs["attn_implementation"] = "eager"
        f.attrs["dtype"] = "float32"
        group = f.create_group("inputs")
        for key, value in inputs.items():
            group[key] = value
        f.create_group("activations")


def make_adapter(model_dir: Path, out_dir: Path, objective: str, rank: int, alpha: int, targets):
    from peft import LoraConfig, get_peft_model
    from prima_ref.grad import GradientModel

    if (out_dir / "adapter_model.safetensors").exists():
        return
    gm = GradientModel(model_dir, objective)
    host = gm.base if gm.model_type == "bert" else gm.top  # BERT: keys without the MaskedLM prefix, as the fixture
    peft_model = get_peft_model(host, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                                                 target_modules=targets))
    generator = torch.Generator("cpu").manual_seed(LORA_SEED)
    with torch.no_grad():
        for name, p in sorted(peft_model.named_parameters(), key=lambda kv: kv[0]):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32) * LORA_STD)
    peft_model.peft_config["default"].base_model_name_or_path = model_dir.name
    peft_model.save_pretrained(str(out_dir))
    (out_dir / "README.md").unlink(missing_ok=True)


def torch_step(model_dir: Path, adapter: Path, trace: Path, objective: str, repeat: int, threads: int) -> dict:
    """(In a fresh subprocess.) PyTorch + PEFT's step and forward times on the trace's inputs, and the peak RSS."""
    from prima_ref.grad import GradientModel, run_objective

    torch.set_num_threads(threads)
    gm = GradientModel(model_dir, objective, adapter)
    trainable = [param for path, (param, _) in gm.parameter_paths().items() if "/lora/" in path]
    for param in gm.top.parameters():
        param.requires_grad_(False)
    for param in trainable:
        param.requires_grad_(True)
    with h5py.File(trace, "r") as f:
        inputs = {key: f["inputs"][key][()] for key in f["inputs"]}

    def step():
        for param in trainable:
            param.grad = None
        _, loss = run_objective(gm, inputs)
        loss.backward()

    step()
    steps = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        steps.append(time.perf_counter() - start)
    forwards = []
    with torch.no_grad():
        run_objective(gm, inputs)
        for _ in range(repeat):
            start = time.perf_counter()
            run_objective(gm, inputs)
            forwards.append(time.perf_counter() - start)
    return {"step_seconds": statistics.median(steps), "step_min": min(steps), "forward_seconds": statistics.median(forwards),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "trainable": len(trainable)}


def timed_verify(verify, checkpoint, trace, repeat, env, rss_file):
    """prima-verify's JSON report and its peak RSS in MB. Exit status 1 (a comparison failed) still reports: the
    table shows `pass`."""
    command = ["/usr/bin/time", "-f", "%M", "-o", rss_file, verify, checkpoint, "--trace", trace, "--json",
               "--repeat", str(repeat)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode not in (0, 1) or not result.stdout:
        sys.exit(f"bench_train.py: {' '.join(map(str, command))} failed:\n{result.stderr}")
    return json.loads(result.stdout), int(Path(rss_file).read_text().split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/prima-bench-train"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(CASES))
    parser.add_argument("--torch-step", nargs=3, metavar=("MODEL_DIR", "ADAPTER", "TRACE"), help=argparse.SUPPRESS)
    parser.add_argument("--objective", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_step:
        model_dir, adapter, trace = map(Path, args.torch_step)
        print(json.dumps(torch_step(model_dir, adapter, trace, args.objective, args.repeat, args.threads)))
        return

    from prima_ref.grad import write_grad_trace

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    for product in ("prima-convert", "prima-verify"):
        run(["swift", "build", "-c", "release", "--product", product])
    convert, verify = (REPO / ".build/release" / name for name in ("prima-convert", "prima-verify"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    info = run([verify, "--system-info"], env=env)
    core = re.search(r"openblas core: (\S+)", info).group(1)
    peak = float(re.search(r"sgemm peak: ([0-9.]+) GFLOP/s", info).group(1))
    import peft
    import transformers

    rows = []
    for name in args.only:
        role, objective, batch, tokens, rank, alpha, targets = CASES[name]
        model_dir = args.models / name
        if not (model_dir / "config.json").exists():
            run([sys.executable, REPO / "Fixtures/bench/make_full_size.py", args.models, "--only", name])
        config = json.loads((model_dir / "config.json").read_text())
        adapter = args.work / f"{name}-lora"
        make_adapter(model_dir, adapter, objective, rank, alpha, targets)
        inputs = base_inputs(role, batch, tokens, config.get("vocab_size", 0))
        grad_trace = args.work / f"{name}-{objective}-lora.h5"
        if not grad_trace.exists():
            write_grad_trace(model_dir, grad_trace, inputs, objective, "lora", adapter,
                             input_recipe={"kind": "bench_train", "seed": INPUT_SEED, "lora_seed": LORA_SEED})
        inputs_trace = args.work / f"{name}-inputs.h5"
        write_inputs_trace(inputs_trace, role, inputs)
        reference = json.loads(run([sys.executable, __file__, args.models, "--torch-step", model_dir, adapter, grad_trace,
                                    "--objective", objective, "--repeat", str(args.repeat),
                                    "--threads", str(args.threads)]))
        checkpoint = args.work / f"{name}.h5"
        if not checkpoint.exists():
            base = args.work / f"{name}-base.h5"
            if not base.exists():
                run([convert, "import", model_dir, "-o", base, "--no-progress"])
            run([convert, "lora-import", base, "--role", role, "--adapter", adapter, "-o", checkpoint])
        ours, ours_rss = timed_verify(verify, checkpoint, grad_trace, args.repeat, env, args.work / "rss.txt")
        forward, _ = timed_verify(verify, checkpoint, inputs_trace, args.repeat, env, args.work / "rss.txt")
        work = step_flops(config, batch, tokens, rank)
        row = {"name": name, "objective": objective, "rank": rank,
               "shape": f"{batch}x224x224" if tokens is None else f"{batch}x{tokens}",
               "torch": reference, "ours_step": ours["step_seconds"],
               "ours_step_min": min(ours["step_runs"]), "ours_forward": forward["forward_seconds"],
               "ours_rss_mb": ours_rss, "pass": ours.get("pass"), "flops": work}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; threads: {args.threads} for both; OpenBLAS core {core}, "
          f"sgemm peak {peak:.0f} GFLOP/s; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}; median of {args.repeat} steps after a warm-up, the fastest step in parentheses\n")
    print("| model | LoRA | objective, shape | PyTorch s | ours s | ratio | PyTorch peak RSS | ours peak RSS | pass | "
          "step GFLOP | ours GFLOP/s | % of sgemm peak | ours backward / forward | PyTorch backward / forward |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, o = r["torch"]["step_seconds"], r["ours_step"]
        gflop = r["flops"]["step"] / 1e9
        t_min, o_min = r["torch"]["step_min"], r["ours_step_min"]
        print(f"| {r['name']} | r{r['rank']} | {r['objective']}, {r['shape']} | {t:.3f} ({t_min:.3f}) | {o:.3f} ({o_min:.3f}) | "
              f"**{o / t:.2f}** ({o_min / t_min:.2f}) | "
              f"{r['torch']['peak_rss_mb']:.0f} MB | {r['ours_rss_mb']:.0f} MB | {r['pass']} | {gflop:.0f} | "
              f"{gflop / o:.0f} | {100 * gflop / o / peak:.0f}% | {o / r['ours_forward'] - 1:.2f} | "
              f"{t / r['torch']['forward_seconds'] - 1:.2f} |")


if __name__ == "__main__":
    main()
