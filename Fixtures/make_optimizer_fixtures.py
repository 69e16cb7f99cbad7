#!/usr/bin/env python3
"""Write Fixtures/train/optimizer.h5: twelve optimiser steps of torch.optim.AdamW under transformers'
get_cosine_schedule_with_warmup (LambdaLR) with torch.nn.utils.clip_grad_norm_, the sequence prima-train's
optimiser must reproduce (Formats/prima-training.md §2; PrimaTrainTests/OptimizerTests).

Three tensors of odd shapes — `bias` [7] (no weight decay, as §2's default rule gives a 1-D tensor), `matrix`
[9, 13] and `cube` [3, 5, 7] (weight decay WEIGHT_DECAY) — start from seeded N(0, 1) values. Step k's gradients are
seeded N(0, 1) times GRADIENT_SCALES[k], so that some steps exceed MAX_GRAD_NORM (clipped) and some do not; at
ZERO_GRADIENT_STEP `matrix` has an all-zero gradient (a tensor the batch did not reach: AdamW still decays it and
moves it by its moments). Every step runs, in the order a transformers Trainer runs it:

    clip_grad_norm_(params, MAX_GRAD_NORM) → optimizer.step() → scheduler.step() → optimizer.zero_grad()

The file records, per step, the gradients before and after clipping, the learning rate the step used, the
pre-clip global norm, and every tensor's value, exp_avg and exp_avg_sq after the step (layout in
Fixtures/README.md, "The optimiser fixture").

Self-checks (the script stops on the first failure):
  1. a NumPy replay of the steps with Formats/prima-training.md §2's float32 formulas (fused multiply-adds emulated
     exactly in float64) and PyTorch's own sqrt values gives exp_avg, exp_avg_sq and the parameters bit for bit:
     the document's operation order is PyTorch's;
  2. the same replay with a correctly rounded sqrt stays within REPLAY_PARAMETER_BOUND · max|param| (PyTorch's
     float32 sqrt on CPU goes through MKL's vsSqrt, which is not correctly rounded; the worst difference is
     printed and recorded in §2);
  3. the CPU capability is AVX2 or AVX512: PyTorch's `default` (no-FMA) kernels compute lerp_ and addcmul_
     without fused multiply-adds, and the fixture would not be the arithmetic of an ordinary x86-64 install.

Deterministic and single-threaded; byte-identical on re-run. Run with the pinned venv:
    /work/venv/bin/python Fixtures/make_optimizer_fixtures.py
"""

import math
import sys

import fixture_common

fixture_common.check_versions("make_optimizer_fixtures.py", "optimizer fixture")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers.optimization import get_cosine_schedule_with_warmup  # noqa: E402

OUTPUT = fixture_common.FIXTURES / "train" / "optimizer.h5"
SEED = 20261203
SHAPES = {"bias": (7,), "matrix": (9, 13), "cube": (3, 5, 7)}
WEIGHT_DECAY = 0.05
BASE_LR = 5e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
MAX_GRAD_NORM = 1.0
TOTAL_STEPS = 12
WARMUP_STEPS = math.ceil(0.1 * TOTAL_STEPS)  # §2: ceil(warm-up ratio · total), as transformers' Trainer rounds
# Global norm ≈ scale · sqrt(229) ≈ 15 · scale: steps with scale ≥ 0.1 are clipped, the others are not.
GRADIENT_SCALES = [0.02, 0.3, 0.05, 0.2, 0.01, 0.5, 0.03, 0.06, 1.0, 0.04, 0.08, 0.15]
ZERO_GRADIENT_STEP = 5
REPLAY_PARAMETER_BOUND = 1e-6


def f32(x):
    return np.float32(x)


def fma32(a, b, c):
    """float32 fused multiply-add: a·b is exact in float64 (24 + 24 bits), the sum is rounded to float64 and then to
    float32. That double rounding could differ from one rounding when the float64 sum lands on a float32 tie; check 1
    would report such a case as a difference from torch."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def replay(initial, grads, lrs, decays, sqrt):
    """§2's AdamW over the clipped gradients, sqrt(name, step, exp_avg_sq) giving the denominators' square roots:
    {name: (params, exp_avg, exp_avg_sq)} after each step."""
    params = {n: v.copy() for n, v in initial.items()}
    m = {n: np.zeros_like(v) for n, v in initial.items()}
    v2 = {n: np.zeros_like(v) for n, v in initial.items()}
    out = []
    for k, lr in enumerate(lrs):
        step = float(k + 1)
        bc1 = 1 - BETAS[0] ** step
        bc2 = 1 - BETAS[1] ** step
        step_size = lr / bc1
        bc2_sqrt = bc2 ** 0.5
        record = {}
        for n in initial:
            g = grads[n][k]
            p = params[n]
            if decays[n] != 0:
                p = p * f32(1 - lr * decays[n])
            m[n] = fma32(f32(1 - BETAS[0]), g - m[n], m[n])
            v2[n] = fma32(f32(1 - BETAS[1]) * g, g, v2[n] * f32(BETAS[1]))
            denom = sqrt(n, k, v2[n]) / f32(bc2_sqrt) + f32(EPS)
            params[n] = p + (f32(-step_size) * m[n]) / denom
            record[n] = (params[n].copy(), m[n].copy(), v2[n].copy())
        out.append(record)
    return out


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        sys.exit(f"make_optimizer_fixtures.py: torch's CPU capability is {capability}, need AVX2 or AVX512 (FMA kernels)")

    rng = np.random.default_rng(SEED)
    names = list(SHAPES)
    initial = {n: rng.standard_normal(SHAPES[n]).astype(np.float32) for n in names}
    raw = {n: np.zeros((TOTAL_STEPS,) + SHAPES[n], np.float32) for n in names}
    for k, scale in enumerate(GRADIENT_SCALES):
        for n in names:
            raw[n][k] = (rng.standard_normal(SHAPES[n]) * scale).astype(np.float32)
    raw["matrix"][ZERO_GRADIENT_STEP] = 0
    decays = {n: (0.0 if len(SHAPES[n]) == 1 else WEIGHT_DECAY) for n in names}

    params = {n: torch.nn.Parameter(torch.from_numpy(initial[n].copy())) for n in names}
    groups = [{"params": [params[n] for n in names if decays[n] == 0], "weight_decay": 0.0},
              {"params": [params[n] for n in names if decays[n] != 0], "weight_decay": WEIGHT_DECAY}]
    optimizer = torch.optim.AdamW(groups, lr=BASE_LR, betas=BETAS, eps=EPS)
    scheduler = get_cosine_schedule_with_warmup(optimizer, WARMUP_STEPS, TOTAL_STEPS)

    lrs, norms = [], []
    clipped = {n: np.zeros_like(raw[n]) for n in names}
    after = {key: {n: np.zeros_like(raw[n]) for n in names} for key in ("params", "exp_avg", "exp_avg_sq")}
    torch_sqrt = {}
    for k in range(TOTAL_STEPS):
        for n in names:
            params[n].grad = torch.from_numpy(raw[n][k].copy())
        norm = torch.nn.utils.clip_grad_norm_([params[n] for n in names], MAX_GRAD_NORM)
        norms.append(np.float32(norm.item()))
        lr = optimizer.param_groups[0]["lr"]
        if not all(group["lr"] == lr for group in optimizer.param_groups):
            sys.exit("make_optimizer_fixtures.py: the parameter groups disagree on the learning rate")
        lrs.append(lr)
        for n in names:
            clipped[n][k] = params[n].grad.numpy()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        for n in names:
            state = optimizer.state[params[n]]
            after["params"][n][k] = params[n].detach().numpy()
            after["exp_avg"][n][k] = state["exp_avg"].numpy()
            after["exp_avg_sq"][n][k] = state["exp_avg_sq"].numpy()
            torch_sqrt[(n, k)] = state["exp_avg_sq"].sqrt().numpy()

    # Check 1: the document's order of operations with PyTorch's sqrt values is PyTorch, bit for bit.
    run = replay(initial, clipped, lrs, decays, lambda n, k, v: torch_sqrt[(n, k)])
    for n in names:
        for k in range(TOTAL_STEPS):
            p, m, v = run[k][n]
            for what, ours, theirs in (("params", p, after["params"][n][k]), ("exp_avg", m, after["exp_avg"][n][k]),
                                       ("exp_avg_sq", v, after["exp_avg_sq"][n][k])):
                if ours.tobytes() != theirs.tobytes():
                    sys.exit(f"make_optimizer_fixtures.py: the §2 replay differs from torch: {n} {what} step {k}")

    # Check 2: with a correctly rounded sqrt the parameters stay within the bound.
    run = replay(initial, clipped, lrs, decays, lambda n, k, v: np.sqrt(v))
    worst = 0.0
    for n in names:
        scale = max(float(np.max(np.abs(after["params"][n][k]))) for k in range(TOTAL_STEPS))
        for k in range(TOTAL_STEPS):
            diff = float(np.max(np.abs(run[k][n][0].astype(np.float64) - after["params"][n][k])))
            worst = max(worst, diff / scale)
    if worst > REPLAY_PARAMETER_BOUND:
        sys.exit(f"make_optimizer_fixtures.py: correctly rounded sqrt replay differs by {worst:.3g} · max|param|")
    print(f"replay with PyTorch's sqrt: bit-identical; with a correctly rounded sqrt: max diff {worst:.3g} · max|param|")

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(OUTPUT, "w", track_order=True) as f:
        f.attrs["tensor_order"] = ",".join(names)
        f.attrs["torch_version"] = torch.__version__.split("+", 1)[0]
        f.attrs["transformers_version"] = __import__("transformers").__version__
        for key, value in (("base_lr", BASE_LR), ("beta1", BETAS[0]), ("beta2", BETAS[1]), ("eps", EPS),
                           ("max_grad_norm", MAX_GRAD_NORM)):
            f.attrs[key] = np.float64(value)
        for key, value in (("warmup_steps", WARMUP_STEPS), ("total_steps", TOTAL_STEPS)):
            f.attrs[key] = np.int64(value)
        f.create_dataset("lr", data=np.array(lrs, np.float64))
        f.create_dataset("grad_norm", data=np.array(norms, np.float32))
        tensors = f.create_group("tensors")
        for n in names:
            g = tensors.create_group(n)
            g.attrs["weight_decay"] = np.float64(decays[n])
            g.create_dataset("initial", data=initial[n])
            g.create_dataset("grads", data=raw[n])
            g.create_dataset("clipped_grads", data=clipped[n])
            for key in ("params", "exp_avg", "exp_avg_sq"):
                g.create_dataset(key, data=after[key][n])
    print(f"wrote {OUTPUT.relative_to(fixture_common.REPO)}: lr {[f'{x:.3g}' for x in lrs]}, "
          f"norms {[f'{x:.3g}' for x in norms]}")


if __name__ == "__main__":
    main()
