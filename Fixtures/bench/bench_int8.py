"""int8 benchmark: the runtime's int8 path against its own fp32 path and against PyTorch dynamic int8
(`torch.ao.quantization.quantize_dynamic` on nn.Linear), same machine, same thread count, one run.

Usage (from the repository root, with the venv from Fixtures/requirements.txt):
    python Fixtures/bench/bench_int8.py MODELS_DIR [--work DIR] [--repeat N] [--threads T] [--only NAME ...]
                                       [--emulate-avx2]

Uses the checkpoints and inputs that Fixtures/bench/bench_forward.py leaves in WORK (run it first, or this
script imports them the same way). For each model it writes WORK/NAME-int8.h5 with `prima-quantize --int8`
(default rules: embeddings and output heads stay float) and, for Qwen3, WORK/NAME-int8-heads.h5 with
`--quantize-embeddings --quantize-heads` too (PyTorch's dynamic quantisation quantises every nn.Linear, the LM
head included, so that row is the like-for-like one; the Qwen3 head is tied to the embeddings, so both go). Reports file sizes, forward medians (the fastest run beside each) and ratios.
With --emulate-avx2 both sides run as on an AVX2-only CPU (Fixtures/bench/cpu_emulation.py).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import MODELS, machine_line, parse_arguments, run, torch_seconds, verify_seconds, write_inputs  # noqa: E402


def main():
    args, tools, env = parse_arguments(__doc__.split("\n")[0], ["prima-convert", "prima-verify", "prima-quantize"])

    def ours(checkpoint: Path, trace: Path):
        return verify_seconds(tools["prima-verify"], checkpoint, trace, args.repeat, env)

    print(machine_line(tools["prima-verify"], env, args.threads, args.repeat)[0] + "\n")
    print("| model | int8 file / fp32 file | ours fp32 s | ours int8 s | int8 speed-up | PyTorch dynamic int8 s | ours int8 / PyTorch int8 |")
    print("|---|---|---|---|---|---|---|")
    for name in args.only:
        component, tokens = MODELS[name]
        model_dir = args.models / name
        config = json.loads((model_dir / "config.json").read_text())
        checkpoint = args.work / f"{name}.h5"
        if not checkpoint.exists():
            run([tools["prima-convert"], "import", model_dir, "-o", checkpoint, "--no-progress"])
        trace = args.work / f"{name}-inputs.h5"
        inputs = write_inputs(trace, component, tokens, config.get("vocab_size", 0))
        variants = [("", [])] + ([(" (+ head)", ["--quantize-embeddings", "--quantize-heads"])]
                                 if config["model_type"] == "qwen3" else [])
        fp32 = ours(checkpoint, trace)
        peer = torch_seconds(model_dir, config["model_type"], inputs, args.repeat, dynamic_int8=True)
        for label, flags in variants:
            quantized = args.work / f"{name}-int8{'-heads' if flags else ''}.h5"
            run([tools["prima-quantize"], "--int8", checkpoint, "-o", quantized, "--force", *flags])
            int8 = ours(quantized, trace)
            ratio = quantized.stat().st_size / checkpoint.stat().st_size
            print(f"| {name}{label} | {ratio:.3f} | {fp32} | {int8} | {fp32.ratio(int8)} | {peer} | {int8.ratio(peer)} |")


if __name__ == "__main__":
    main()
