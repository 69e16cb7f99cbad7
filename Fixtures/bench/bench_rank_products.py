"""The rank-r products of a LoRA layer in both orientations (r on the product's columns, as Linear.addLoRA and
loraBackward compute them, or on its rows), timed on the system OpenBLAS, the library the runtime loads
(Docs/benchmarks.md, "Training step", run 5).

Usage: python Fixtures/bench/bench_rank_products.py [--threads 2] [--reps 40]
Needs numpy and libopenblas.so.0 (Debian: libopenblas-dev). Prints GFLOP/s, the median of REPS calls after one
warm-up, for ViT-B/16's shapes (N = 8 x 201 tokens, r = 32) and Qwen3-0.6B's (N = 256, r = 16).
"""
import argparse
import ctypes
import time

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def gflops(lib, m, n, k, trans_a, trans_b, reps):
    """C[m, n] = op(A) op(B), row-major, timed."""
    a = np.random.rand(*((k, m) if trans_a else (m, k))).astype(np.float32)
    b = np.random.rand(*((n, k) if trans_b else (k, n))).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    args = (ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, ctypes.c_float(1.0),
            a.ctypes.data_as(ctypes.c_void_p), m if trans_a else k, b.ctypes.data_as(ctypes.c_void_p),
            k if trans_b else n, ctypes.c_float(0.0), c.ctypes.data_as(ctypes.c_void_p), n)
    lib.cblas_sgemm(*args)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        lib.cblas_sgemm(*args)
        times.append(time.perf_counter() - start)
    return 2 * m * n * k / sorted(times)[len(times) // 2] / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=40)
    args = p.parse_args()
    lib = ctypes.CDLL("libopenblas.so.0")
    lib.openblas_set_num_threads(args.threads)
    np.random.seed(0)
    print("| shape (N tokens, r, out, in) | product | r on the columns (the runtime) | r on the rows |")
    print("|---|---|---|---|")
    for n, r, out, inp in [(1608, 32, 768, 768), (1608, 32, 3072, 768), (256, 16, 1024, 1024), (256, 16, 1024, 3072)]:
        rows = [  # name, (m, n, k, transA, transB) before, after
            ("h = x·Aᵀ", (n, r, inp, False, True), (r, n, inp, False, True)),
            ("dh = dy·B", (n, r, out, False, False), (r, n, out, True, True)),
            ("dB = dyᵀ·h", (out, r, n, True, False), (r, out, n, False, False)),
            ("dA = dhᵀ·x", (r, inp, n, True, False), (r, inp, n, False, False)),
        ]
        for name, before, after in rows:
            print(f"| {n}, {r}, {out}, {inp} | {name} | {gflops(lib, *before, args.reps):.0f} | {gflops(lib, *after, args.reps):.0f} |")


if __name__ == "__main__":
    main()
