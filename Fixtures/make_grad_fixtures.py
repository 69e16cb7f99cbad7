#!/usr/bin/env python3
"""Write the gradient traces (Formats/prima-trace.md §11, prima_trace_version 2) of the tiny fixture models.

Each trace holds the inputs, the activations, the loss of one objective, the gradient of the loss with respect to
every activation and to every trainable tensor, computed by PyTorch autograd (+ PEFT for LoRA) in float32 with eager
attention by prima_ref.grad. JOBS below lists them: `dot` (loss = sum of final_norm * output_weights) with full
fine-tuning on every f32 architecture variant and with each LoRA adapter of Fixtures/lora (only the LoRA matrices
trainable), `mlm` with LoRA on BERT (rank-stabilised, adapter keys without the `bert.` prefix) and on ModernBERT
(fused Wqkv/Wi), `causal_lm` with LoRA on every Qwen3 projection and with full fine-tuning of the tied Qwen3 (one
gradient for the tied embedding / LM head). INT8_JOBS: LoRA over int8 checkpoints, i.e. PyTorch on the weights
dequantised by the reference quantiser (prima_ref.int8), per-channel and block32. PRIMA_JOBS: `class_ce` through the
whole pipeline of prima-tiny-bert (prima_ref.prima_grad), checked by the same means where they apply (its forward
half within PRIMA_FORWARD_TOLERANCE of the forward trace, a directional derivative over the trainable tensors).

Inputs (as make_traces.py and make_lora_fixtures.py): text models the two TEXTS, right-padded (batch 2, the first
sequence padded); DINOv3 two seeded 32x32 noise images. Objective inputs: output_weights seeded N(0, 1), zero at
padded positions (seed OUTPUT_WEIGHTS_SEED); mlm labels keep the token id at a seeded ~30% of the real positions
(seed LABELS_SEED), -100 elsewhere; causal_lm labels are the input ids, -100 at padded positions.

Self-checks (the script stops on the first failure):
  1. each file reads back through prima_ref.read_trace (which validates the v2 parts) and equals what was computed;
  2. the same computation is re-run in float64 (model, adapter and inputs upcast exactly); every float32 gradient and
     activation gradient must be within FLOAT64_RATIO_LIMIT * max|float64| of it (and pass the §11.8 tolerances), the
     loss within FLOAT64_LOSS_LIMIT relatively; the worst ratios are printed (Formats/prima-trace.md §11.8 records
     them);
  3. padding: every activation gradient is exactly 0 at padded positions (every objective);
  4. dot: the gradient of final_norm is output_weights, bit for bit;
  5. ties: the tied Qwen3 has one gradient, decoder/tensors/embed.tokens, and no lm_head.weight;
  6. the forward half equals the committed forward traces bit for bit (Fixtures/traces/<model>.h5, or
     Fixtures/lora/<adapter>.h5 for LoRA): same inputs, every activation they share identical;
  7. directional derivatives: in float64, for every activation (a forward hook adds eps·d to the hooked tensor, d
     seeded N(0, 1) over all positions, padding included) and for all trainable tensors at once (each moved by
     eps·d), the central difference (L(+eps) - L(-eps)) / 2eps must equal <gradient, d> within
     DIRECTIONAL_LIMIT · |gradient|·|d|: this checks the meaning of every stored gradient (which tensor it belongs
     to, and that an activation gradient is the adjoint of exactly the hooked tensor) independently of autograd's
     bookkeeping;
  8. names: every gradient path names the tensor it belongs to: the parameter behind ROLE/tensors/NAME equals, bit
     for bit, the tensor of the model's safetensors file whose file name maps to NAME (Formats/prima-checkpoint.md
     §4; the on-disk names differ from the in-memory ones: `layer.N` vs `model.layer.N`, `bert.` prefixes, absent tied
     heads), and the one behind ROLE/lora/ADAPTER/tensors/X.lora_a|b the adapter file's matrix for X.weight;
  9. the traces together stay under MAX_TOTAL_BYTES.

Rerun from the repository root with the venv of Fixtures/requirements.txt:

    /work/venv/bin/python Fixtures/make_grad_fixtures.py

Torch runs single-threaded with deterministic algorithms; two runs give byte-identical files (the script prints one
sha256 over all of them). *.h5 in Fixtures/grad_traces is deleted and rewritten on every run.
"""

import os
import sys
from pathlib import Path

# PEFT keeps target_modules as a set; fix the hash seed (before the interpreter starts) as make_lora_fixtures.py does,
# so that nothing that depends on set order can differ between runs.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})

from fixture_common import FIXTURES, MODELS_DIR, REPO, chmod_outputs, check_versions, set_environment, setup_torch

OUT_DIR = FIXTURES / "grad_traces"
LORA_DIR = FIXTURES / "lora"

set_environment()
check_versions(Path(__file__).name, "gradient traces")

import hashlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(REPO / "Formats" / "python"))
from prima_ref.grad import (  # noqa: E402
    GradientModel,
    compare_runs,
    compute_gradients,
    float64_everywhere,
    passes,
    run_objective,
    write_grad_trace,
)
from prima_ref.int8 import dequantized_model_dir  # noqa: E402
from prima_ref.names import UnknownNameError, canonical_name  # noqa: E402
from prima_ref.trace import compare_traces, image_inputs, read_trace, text_inputs  # noqa: E402

setup_torch()
warnings.filterwarnings("ignore", category=FutureWarning)

TEXTS = (
    "The lesion is elevated and bleeds.",
    "Family history of skin cancer; the lesion has grown and bleeds.",
)
IMAGE_SEED = 0
OUTPUT_WEIGHTS_SEED = 7
LABELS_SEED = 11
# The measured float32-vs-float64 error is at most 3.5e-6 of max|grad| (see the printout); this limit is about three
# times the worst seen and ten times tighter than the §11.8 tolerance 1e-4, so a regression in the reference shows.
FLOAT64_RATIO_LIMIT = 1e-5
# The worst loss seen is 1.1e-6 relative (a `dot` sum that cancels); half the §11.8 tolerance 1e-5.
FLOAT64_LOSS_LIMIT = 5e-6
MAX_TOTAL_BYTES = 10 * 1024 * 1024
# Central differences in float64 with step DIRECTIONAL_EPS: the truncation error grows like (eps / size of the tensor)^2
# (Qwen3 embeddings are ~0.05, so 1e-4 gave 7e-6), the rounding error like 1e-16 · |loss| / eps.
DIRECTIONAL_EPS = 1e-6
DIRECTIONAL_LIMIT = 1e-6
DIRECTION_SEED = 3

# (trace stem, model fixture, objective, trainable, adapter directory name or None)
JOBS = [
    ("dinov3-mlp-reg4-f32-dot-full", "dinov3-mlp-reg4-f32", "dot", "full", None),
    ("dinov3-gated-noreg-f32-dot-full", "dinov3-gated-noreg-f32", "dot", "full", None),
    ("modernbert-mlm-f32-dot-full", "modernbert-mlm-f32", "dot", "full", None),
    ("bert-mlm-f32-dot-full", "bert-mlm-f32", "dot", "full", None),
    ("qwen3-tied-f32-dot-full", "qwen3-tied-f32", "dot", "full", None),
    ("qwen3-untied-f32-dot-full", "qwen3-untied-f32", "dot", "full", None),
    ("dinov3-attention-mlp-dot-lora", "dinov3-mlp-reg4-f32", "dot", "lora", "dinov3-attention-mlp"),
    ("bert-rslora-dot-lora", "bert-mlm-f32", "dot", "lora", "bert-rslora"),
    ("modernbert-fused-dot-lora", "modernbert-mlm-f32", "dot", "lora", "modernbert-fused"),
    ("qwen3-all-projections-dot-lora", "qwen3-untied-f32", "dot", "lora", "qwen3-all-projections"),
    ("bert-rslora-mlm-lora", "bert-mlm-f32", "mlm", "lora", "bert-rslora"),
    ("modernbert-fused-mlm-lora", "modernbert-mlm-f32", "mlm", "lora", "modernbert-fused"),
    ("qwen3-all-projections-causal_lm-lora", "qwen3-untied-f32", "causal_lm", "lora", "qwen3-all-projections"),
    ("qwen3-tied-f32-causal_lm-full", "qwen3-tied-f32", "causal_lm", "full", None),
]
# LoRA on an int8 checkpoint: PyTorch on the dequantised weights ŵ of Formats/prima-checkpoint.md §7.3 (the weights
# `prima-quantize --int8 [--scheme]` quantises by default), the adapter in float32. (stem, fixture, objective,
# trainable, adapter, scheme)
INT8_JOBS = [
    ("qwen3-all-projections-int8-causal_lm-lora", "qwen3-untied-f32", "causal_lm", "lora", "qwen3-all-projections",
     "int8-per-channel"),
    ("dinov3-attention-mlp-int8-block32-dot-lora", "dinov3-mlp-reg4-f32", "dot", "lora", "dinov3-attention-mlp",
     "int8-block32"),
]
# The pipeline (component prima, objective class_ce, Formats/prima-trace.md §11.10): (stem, image encoder, text
# encoder, decoder, heads file, forward trace, label). Trainable: the fusion heads and every decoder tensor (stage 3
# without an adapter; LoRA is covered by the component traces). The label is MEL (index 2 of the default classes).
PRIMA_JOBS = [
    ("prima-tiny-bert-class_ce", "dinov3-mlp-reg4-f32", "bert-mlm-f32", "qwen3-prima-f32", "heads-bert.safetensors",
     "prima-tiny-bert.h5", 2),
]
# Autograd mode runs the heads' convolutions through other kernels than inference mode: the pipeline's forward
# half matches the committed forward trace within this, not bit for bit (seen: 2.6e-6).
PRIMA_FORWARD_TOLERANCE = 1e-5
# The int8 forward must differ from the float one by at least this much (max |difference| of the last activation),
# or the quantisation would not be tested.
INT8_MIN_EFFECT = 1e-4


def base_inputs(model_dir, component):
    if component == "image_encoder":
        return image_inputs(model_dir, batch=2, height=32, width=32, seed=IMAGE_SEED), {
            "kind": "image", "seed": IMAGE_SEED, "shape": [2, 3, 32, 32],
            "generator": "torch.randn(generator=torch.Generator('cpu').manual_seed(seed), dtype=float32)"}
    return text_inputs(model_dir, TEXTS), {"kind": "text", "texts": list(TEXTS),
                                           "tokenizer": "model directory, right padding"}


def check_read_back(stem, path, run):
    back = read_trace(path)
    if back.loss != float(np.float32(run.loss)):
        sys.exit(f"{stem}: loss reads back as {back.loss}, wrote {run.loss}")
    for group, mine, theirs in (("activations", run.activations, back.activations),
                                ("activation_gradients", run.activation_gradients, back.activation_gradients),
                                ("gradients", run.gradients, back.gradients)):
        if list(mine) != list(theirs):
            sys.exit(f"{stem}: /{group} reads back as {list(theirs)}, wrote {list(mine)}")
        for k in mine:
            if not np.array_equal(mine[k], theirs[k]):
                sys.exit(f"{stem}: /{group}/{k} does not read back identically")
    for k, v in run.meta["inputs"].items():
        if not np.array_equal(back.inputs[k], v):
            sys.exit(f"{stem}: /inputs/{k} does not read back identically")
    return back


def check_padding(stem, run, mask):
    if mask is None:
        return
    padded = mask == 0
    if not padded.any():
        sys.exit(f"{stem}: the inputs have no padding; the fixture would not test it")
    for n, g in run.activation_gradients.items():
        if g.ndim >= 3 and g.shape[:2] == mask.shape and np.any(g[padded] != 0):
            sys.exit(f"{stem}: activation gradient {n} is not exactly 0 at padded positions "
                     f"(max {np.abs(g[padded]).max():.3g})")


def directional_check(stem, gm, inputs, run):
    """Worst |finite difference - <gradient, d>| / (|gradient|·|d|) over every activation and over the trainable
    tensors together, all in float64 (see check 7 of the docstring)."""
    generator = torch.Generator("cpu").manual_seed(DIRECTION_SEED)
    eps = DIRECTIONAL_EPS

    def loss_at(shift):
        with torch.no_grad(), float64_everywhere():
            return float(run_objective(gm, inputs)[1])

    worst = ("", 0.0)
    module_of = dict(gm.points)
    done_modules = set()
    for name, grad in run.activation_gradients.items():
        if module_of[name] in done_modules:
            continue  # BERT: final_norm and layers.{L-1} are one tensor
        done_modules.add(module_of[name])
        d = torch.randn(grad.shape, generator=generator, dtype=torch.float64)

        def make_hook(delta):
            def hook(_module, _args, output):
                if torch.is_tensor(output):
                    return output + delta
                return (output[0] + delta,) + tuple(output[1:])
            return hook

        values = []
        for sign in (1.0, -1.0):
            handle = gm.top.get_submodule(module_of[name]).register_forward_hook(make_hook(sign * eps * d))
            try:
                values.append(loss_at(sign))
            finally:
                handle.remove()
        fd = (values[0] - values[1]) / (2 * eps)
        analytic = float((grad * d.numpy()).sum())
        scale = float(np.linalg.norm(grad) * np.linalg.norm(d.numpy()))
        err = abs(fd - analytic) / scale
        if err > worst[1]:
            worst = (name, err)
        if not err <= DIRECTIONAL_LIMIT:
            sys.exit(f"{stem}: activation {name}: finite difference {fd!r} vs <gradient, d> {analytic!r} ({err:.3g})")
    params = gm.parameter_paths()
    directions = {p: torch.randn(g.shape, generator=generator, dtype=torch.float64) for p, g in run.gradients.items()}
    saved = {p: params[p][0].detach().clone() for p in run.gradients}
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, d in directions.items():
                params[p][0].copy_(saved[p] + sign * eps * d)
        values.append(loss_at(sign))
    with torch.no_grad():
        for p in saved:
            params[p][0].copy_(saved[p])
    fd = (values[0] - values[1]) / (2 * eps)
    analytic = sum(float((run.gradients[p] * directions[p].numpy()).sum()) for p in directions)
    norm_g = np.sqrt(sum(float((g ** 2).sum()) for g in run.gradients.values()))
    norm_d = np.sqrt(sum(float((d.numpy() ** 2).sum()) for d in directions.values()))
    err = abs(fd - analytic) / (norm_g * norm_d)
    if not err <= DIRECTIONAL_LIMIT:
        sys.exit(f"{stem}: trainable tensors: finite difference {fd!r} vs <gradient, d> {analytic!r} ({err:.3g})")
    return worst, err


def names_check(stem, gm, run):
    """Check 8: the tensor behind every gradient path is the file tensor that the path names."""
    from safetensors.numpy import load_file

    files = sorted(gm.model_dir.glob("*.safetensors"))
    by_canonical = {}
    for f in files:
        for key, value in load_file(str(f)).items():
            try:
                by_canonical[canonical_name(gm.model_type, key)] = value
            except UnknownNameError:
                continue  # dropped on import (§4.6)
    if gm.adapter_dir is not None:
        for key, value in load_file(str(gm.adapter_dir / "adapter_model.safetensors")).items():
            module, which = key[len("base_model.model."):].rsplit(".lora_", 1)
            stem_name = canonical_name(gm.model_type, module + ".weight")[: -len(".weight")]
            by_canonical[f"lora/{gm.adapter_name}/{stem_name}.lora_{which[0].lower()}"] = value
    params = gm.parameter_paths()
    for p in run.gradients:
        _, rest = p.split("/", 1)
        key = rest[len("tensors/"):] if rest.startswith("tensors/") else rest.replace("/tensors/", "/")
        if key not in by_canonical:
            sys.exit(f"{stem}: {p} names no tensor of the model's files")
        if not np.array_equal(params[p][0].detach().numpy(), by_canonical[key]):
            sys.exit(f"{stem}: the parameter behind {p} is not the file's {key}")


def float64_check(stem, model_dir, objective, trainable, adapter, inputs, run32, mask):
    gm64 = GradientModel(model_dir, objective, LORA_DIR / adapter if adapter else None,
                         dtype=torch.float64)
    run64 = compute_gradients(gm64, inputs, trainable)
    cmp = compare_runs(run64, run32, mask)
    worst_grad = max(cmp["gradients"].items(), key=lambda kv: kv[1]["ratio"])
    worst_act = max(cmp["activation_gradients"].items(), key=lambda kv: kv[1]["ratio"])
    min_cos = min(e["cosine"] for e in list(cmp["gradients"].values()) + list(cmp["activation_gradients"].values()))
    for kind in ("gradients", "activation_gradients"):
        for name, e in cmp[kind].items():
            if not passes(e) or e["ratio"] > FLOAT64_RATIO_LIMIT:
                sys.exit(f"{stem}: float32 {kind} {name} vs float64: {e} (limit ratio {FLOAT64_RATIO_LIMIT})")
    if cmp["loss_relative_error"] > FLOAT64_LOSS_LIMIT:
        sys.exit(f"{stem}: float32 loss {run32.loss} vs float64 {run64.loss}: relative {cmp['loss_relative_error']:.3g}")
    directional = directional_check(stem, gm64, inputs, run64)
    return cmp["loss_relative_error"], worst_grad, worst_act, min_cos, directional


def main():
    OUT_DIR.mkdir(exist_ok=True)
    for old in OUT_DIR.glob("*.h5"):
        old.unlink()
    rows = []
    overall = {"grad": 0.0, "act": 0.0, "loss": 0.0, "cos": 1.0}
    work = Path(tempfile.mkdtemp(prefix="grad-fixtures-"))
    try:
        for job in [j + (None,) for j in JOBS] + INT8_JOBS:
            run_job(job, work, rows, overall)
        for job in PRIMA_JOBS:
            run_prima_job(job, rows, overall)
    finally:
        shutil.rmtree(work)
    chmod_outputs(OUT_DIR)
    report(rows, overall)


def run_job(job, work, rows, overall):
    stem, fixture, objective, trainable, adapter, scheme = job
    model_dir = MODELS_DIR / fixture
    int8_note = ""
    if scheme is not None:
        # The directory's base name is the trace's `source`: fixed, so that runs give the same bytes.
        model_dir = work / f"{fixture}-{scheme}"
        sqnr = dequantized_model_dir(MODELS_DIR / fixture, model_dir, scheme)
        int8_note = f"; {len(sqnr)} weights quantised, SQNR {min(sqnr.values()):.1f}–{max(sqnr.values()):.1f} dB"
    adapter_dir = LORA_DIR / adapter if adapter else None
    gm = GradientModel(model_dir, objective, adapter_dir)
    inputs, recipe = base_inputs(model_dir, gm.component)
    if adapter:
        recipe["adapter"] = f"Fixtures/lora/{adapter}"
    if scheme is not None:
        recipe["int8"] = {"base": f"Fixtures/models/{fixture}", "scheme": scheme,
                          "dequantized": "Formats/prima-checkpoint.md §7.3 with the default rules of §7.2",
                          "quantized_tensors": list(sqnr)}
    path = OUT_DIR / f"{stem}.h5"
    run = write_grad_trace(model_dir, path, inputs, objective, trainable, adapter_dir,
                           output_weights_seed=OUTPUT_WEIGHTS_SEED, labels_seed=LABELS_SEED, model=gm,
                           input_recipe=recipe)
    inputs = run.meta["inputs"]
    mask = inputs.get("attention_mask")
    mask_bool = None if mask is None else mask.astype(bool)
    check_read_back(stem, path, run)
    check_padding(stem, run, mask)
    if objective == "dot" and not np.array_equal(run.activation_gradients["final_norm"], inputs["output_weights"]):
        sys.exit(f"{stem}: dLoss/dfinal_norm is not output_weights")
    if trainable == "lora" and any("/lora/" not in p for p in run.gradients):
        sys.exit(f"{stem}: a LoRA trace has base-weight gradients")
    if fixture == "qwen3-tied-f32" and objective == "causal_lm":
        names = set(run.gradients)
        if "decoder/tensors/embed.tokens" not in names or any("lm_head" in p for p in names):
            sys.exit(f"{stem}: the tied embedding must have exactly one gradient, embed.tokens")
    names_check(stem, gm, run)
    forward = LORA_DIR / f"{adapter}.h5" if adapter else FIXTURES / "traces" / f"{fixture}.h5"
    differences = compare_traces(path, forward)
    if scheme is None and max(differences.values()) != 0.0:
        sys.exit(f"{stem}: the forward activations differ from {forward.name}: {differences}")
    if scheme is not None:
        effect = differences["final_norm"]
        if not effect >= INT8_MIN_EFFECT:
            sys.exit(f"{stem}: int8 moves final_norm by only {effect:.3g}; the fixture would not test it")
        int8_note += f"; final_norm {effect:.2g} from the float model's"
    loss_rel, (gname, ge), (aname, ae), cos, ((dname, derr), dparams) = float64_check(
        stem, model_dir, objective, trainable, adapter, inputs, run, mask_bool)
    overall["grad"] = max(overall["grad"], ge["ratio"])
    overall["act"] = max(overall["act"], ae["ratio"])
    overall["loss"] = max(overall["loss"], loss_rel)
    overall["cos"] = min(overall["cos"], cos)
    size = path.stat().st_size
    rows.append((path.name, size))
    excluded = f"; not trainable (no gradient): {run.meta['excluded']}" if run.meta["excluded"] else ""
    print(f"{path.name}: {size} bytes, loss {run.loss:.6g}, {len(run.gradients)} gradients{excluded}{int8_note}\n"
          f"    float32 vs float64: loss {loss_rel:.2g} relative; worst gradient {ge['ratio']:.2g}·max|ref| "
          f"({gname}); worst activation gradient {ae['ratio']:.2g}·max|ref| ({aname}); 1 - min cosine {1 - cos:.2g}\n"
          f"    float64 directional derivatives: activations {derr:.2g} ({dname}), trainable tensors {dparams:.2g}")


def run_prima_job(job, rows, overall):
    """class_ce through the whole pipeline: write, read back, compare with the forward trace, check the names, the
    float64 re-run and a directional derivative over the trainable tensors."""
    from prima_ref.prima import PrimaReference
    from prima_ref.prima_grad import compute_class_ce, stage3_trainable, write_class_ce_trace

    stem, image, text, decoder, heads, forward_name, label = job

    def load():
        return PrimaReference(MODELS_DIR / image, MODELS_DIR / text, MODELS_DIR / decoder,
                              FIXTURES / "prima" / heads)

    ref = load()
    forward = read_trace(FIXTURES / "traces" / forward_name)
    inputs = dict(forward.inputs)
    inputs["labels"] = np.array([label], dtype=np.int64)
    trainable = stage3_trainable(ref)
    recipe = {"kind": "prima", "forward_trace": f"Fixtures/traces/{forward_name}", "label": label,
              "trainable": "fusion heads and every decoder tensor"}
    path = OUT_DIR / f"{stem}.h5"
    run = write_class_ce_trace(ref, path, inputs, trainable, source=stem, input_recipe=recipe)
    inputs = run.meta["inputs"]
    check_read_back(stem, path, run)
    for name, a in forward.activations.items():
        d = float(np.abs(run.activations[name].astype(np.float64) - a).max())
        if not d <= PRIMA_FORWARD_TOLERANCE:
            sys.exit(f"{stem}: activation {name} differs from {forward_name} by {d}")
    zero = ["alignment.image_global", "alignment.text_global", "alignment.image_local", "alignment.text_local",
            "image_classifier.logits", "class_probs"]
    if any(np.any(run.activation_gradients[n] != 0) for n in zero):
        sys.exit(f"{stem}: an activation off the loss path has a non-zero gradient")
    # Names: heads against the heads file, decoder tensors against the decoder's safetensors file.
    from safetensors.numpy import load_file

    heads_file = load_file(str(FIXTURES / "prima" / heads))
    decoder_file = {canonical_name("qwen3", k): v for k, v in load_file(str(MODELS_DIR / decoder / "model.safetensors")).items()}
    params = {}
    from prima_ref.prima_grad import component_paths, heads_paths

    params.update(heads_paths(ref.heads))
    params.update(component_paths(ref.decoder))
    for p in run.gradients:
        role, name = p.split("/")[0], p.rsplit("/", 1)[-1]
        stored = heads_file.get(name) if role == "prima" else decoder_file.get(name)
        if stored is None or not np.array_equal(params[p].detach().numpy(), stored):
            sys.exit(f"{stem}: the parameter behind {p} is not the file's {name}")
    # float64.
    ref64 = load()
    for module in (ref64.image.top, ref64.text.top, ref64.decoder.top, ref64.heads):
        module.to(torch.float64)
    run64 = compute_class_ce(ref64, inputs, trainable, dtype=torch.float64)
    cmp = compare_runs(run64, run, inputs["attention_mask"].astype(bool), prima=True)
    for kind in ("gradients", "activation_gradients"):
        for name, e in cmp[kind].items():
            if not passes(e) or e["ratio"] > FLOAT64_RATIO_LIMIT:
                sys.exit(f"{stem}: float32 {kind} {name} vs float64: {e}")
    if cmp["loss_relative_error"] > FLOAT64_LOSS_LIMIT:
        sys.exit(f"{stem}: float32 loss vs float64: relative {cmp['loss_relative_error']:.3g}")
    # Directional derivative over the trainable tensors, float64.
    generator = torch.Generator("cpu").manual_seed(DIRECTION_SEED)
    params64 = {}
    params64.update(heads_paths(ref64.heads))
    params64.update(component_paths(ref64.decoder))
    directions = {p: torch.randn(g.shape, generator=generator, dtype=torch.float64) for p, g in run64.gradients.items()}
    saved = {p: params64[p].detach().clone() for p in directions}
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, d in directions.items():
                params64[p].copy_(saved[p] + sign * DIRECTIONAL_EPS * d)
        values.append(compute_class_ce(ref64, inputs, trainable, dtype=torch.float64).loss)
    fd = (values[0] - values[1]) / (2 * DIRECTIONAL_EPS)
    analytic = sum(float((run64.gradients[p] * directions[p].numpy()).sum()) for p in directions)
    norm = np.sqrt(sum(float((g ** 2).sum()) for g in run64.gradients.values())) * np.sqrt(
        sum(float((d.numpy() ** 2).sum()) for d in directions.values()))
    derr = abs(fd - analytic) / norm
    if not derr <= DIRECTIONAL_LIMIT:
        sys.exit(f"{stem}: trainable tensors: finite difference {fd!r} vs <gradient, d> {analytic!r} ({derr:.3g})")
    worst_grad = max(cmp["gradients"].items(), key=lambda kv: kv[1]["ratio"])
    worst_act = max(cmp["activation_gradients"].items(), key=lambda kv: kv[1]["ratio"])
    cos = min(e["cosine"] for e in list(cmp["gradients"].values()) + list(cmp["activation_gradients"].values()))
    overall["grad"] = max(overall["grad"], worst_grad[1]["ratio"])
    overall["act"] = max(overall["act"], worst_act[1]["ratio"])
    overall["loss"] = max(overall["loss"], cmp["loss_relative_error"])
    overall["cos"] = min(overall["cos"], cos)
    size = path.stat().st_size
    rows.append((path.name, size))
    print(f"{path.name}: {size} bytes, loss {run.loss:.6g}, {len(run.gradients)} gradients\n"
          f"    float32 vs float64: loss {cmp['loss_relative_error']:.2g} relative; worst gradient "
          f"{worst_grad[1]['ratio']:.2g}·max|ref| ({worst_grad[0]}); worst activation gradient "
          f"{worst_act[1]['ratio']:.2g}·max|ref| ({worst_act[0]}); 1 - min cosine {1 - cos:.2g}\n"
          f"    float64 directional derivatives: trainable tensors {derr:.2g}")


def report(rows, overall):
    digest = hashlib.sha256()
    total = 0
    for path in sorted(OUT_DIR.glob("*.h5")):
        data = path.read_bytes()
        total += len(data)
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"gradient traces total {total} bytes > {MAX_TOTAL_BYTES}")
    print(f"{len(rows)} gradient traces, {total} bytes in all; float32 vs float64 worst: gradients "
          f"{overall['grad']:.2g}·max|ref|, activation gradients {overall['act']:.2g}·max|ref|, loss "
          f"{overall['loss']:.2g} relative, 1 - min cosine {1 - overall['cos']:.2g}\n"
          f"sha256 over Fixtures/grad_traces/*.h5: {digest.hexdigest()}")


if __name__ == "__main__":
    main()
