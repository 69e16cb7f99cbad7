"""`--emulate-avx2` for the benchmarks: measure on an AVX-512 machine what an AVX2-only CPU (no AVX-512, no VNNI)
would run, on both sides, and name the CPU and its features beside every table.

Import this module before torch: PyTorch's libraries read their settings when they load. With `--emulate-avx2` on
the command line it sets, for PyTorch, ATEN_CPU_CAPABILITY=avx2 (ATen's own kernels), MKL_ENABLE_INSTRUCTIONS=AVX2
(its fp32 matrix products), ONEDNN_MAX_CPU_ISA=AVX2 and DNNL_MAX_CPU_ISA=AVX2 (oneDNN) and
FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (dynamic int8's fbgemm); and `RUNTIME_ENV` holds what the toolkit's tools get:
OPENBLAS_CORETYPE=Haswell (OpenBLAS's AVX2 kernels; set here by the benchmark only — the toolkit itself never
overrides a preset value), PRIMA_INT8_KERNEL=avx2 and PRIMA_FLOAT_KERNEL=avx2. An emulation keeps this CPU's caches,
clock and memory, so it is not a measurement of another CPU; the tables say which it was.
"""
import os
import sys

FLAG = "--emulate-avx2"
ACTIVE = FLAG in sys.argv

TORCH_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "DNNL_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
RUNTIME_ENV = {"OPENBLAS_CORETYPE": "Haswell", "PRIMA_INT8_KERNEL": "avx2", "PRIMA_FLOAT_KERNEL": "avx2"} if ACTIVE else {}

if ACTIVE:
    if "torch" in sys.modules:
        sys.exit("cpu_emulation.py: import it before torch")
    os.environ.update(TORCH_ENV)

# The /proc/cpuinfo flags that decide which kernels run.
FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")


def add_argument(parser):
    parser.add_argument(FLAG, action="store_true",
                        help="run both sides as on an AVX2-only CPU (Fixtures/bench/cpu_emulation.py)")


def describe() -> str:
    """The CPU, its kernel-relevant features, and whether this run emulates an AVX2-only CPU."""
    name, flags = "unknown CPU", set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and name == "unknown CPU":
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    have = " ".join(f for f in FEATURES if f in flags) or "none of " + ", ".join(FEATURES)
    text = f"{name}, {os.cpu_count()} CPUs, features: {have}"
    if ACTIVE:
        text += ("; EMULATED AVX2-only CPU: ours with " + " ".join(f"{k}={v}" for k, v in RUNTIME_ENV.items())
                 + ", PyTorch with " + " ".join(f"{k}={v}" for k, v in TORCH_ENV.items()))
    return text
