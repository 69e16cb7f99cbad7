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
BATCH_JOBS: batches of cases through the encoders and the heads that read them (§11.11): `image_ce` (stage 2b: image
LoRA + image_classifier) and `alignment` (stage 2: image LoRA + the two alignment projections, the text encoder
frozen; and the ablation loc_mode direct with the soft term's weight 0, training every image encoder tensor and the
text encoder's LoRA), checked likewise plus: exact zeros at the rows the heads do not read, the forward half against
plain forwards of the same models, directional derivatives of the encoder activations, the weighted sum of the
stored /loss_terms, the loc mode, and N = 1 (the contrastive terms exactly 0, no file).

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
# The measured float32-vs-float64 error is at most 4.0e-6 of max|grad| (see the printout); this limit is about three
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
# An optional eighth entry is the decoder inputs (Docs/prima-model.md; default "image+metadata"): "image" is the
# ablation without metadata in the decoder, whose trace holds no text activations and whose trainable heads are the
# image projectors and the special tokens.
PRIMA_JOBS = [
    ("prima-tiny-bert-class_ce", "dinov3-mlp-reg4-f32", "bert-mlm-f32", "qwen3-prima-f32", "heads-bert.safetensors",
     "prima-tiny-bert.h5", 2),
    ("prima-tiny-bert-image-class_ce", "dinov3-mlp-reg4-f32", "bert-mlm-f32", "qwen3-prima-f32", "heads-bert.safetensors",
     "prima-tiny-bert.h5", 2, "image"),
]
# Batches of cases through the encoders and their heads (Formats/prima-trace.md §11.11): image_ce (stage 2b) and
# alignment (stage 2). `train`: what is trainable ("image_lora", "image_full", "text_lora", "image_classifier",
# "alignment"); the decoder of the pipeline is loaded but not run. Images are seeded 32x32 noise (alignment: view 1
# from IMAGE_VIEW_SEEDS[0], view 2 a different draw from IMAGE_VIEW_SEEDS[1]); texts the first N of CASE_TEXTS.
BATCH_JOBS = [
    dict(stem="prima-tiny-bert-image_ce", objective="image_ce", image="dinov3-mlp-reg4-f32",
         image_adapter="dinov3-attention-mlp", text="bert-mlm-f32", text_adapter=None, decoder="qwen3-prima-f32",
         heads="heads-bert.safetensors", cases=3, train=("image_lora", "image_classifier")),
    dict(stem="prima-tiny-bert-alignment", objective="alignment", image="dinov3-mlp-reg4-f32",
         image_adapter="dinov3-attention-mlp", text="bert-mlm-f32", text_adapter=None, decoder="qwen3-prima-f32",
         heads="heads-bert.safetensors", cases=3, train=("image_lora", "alignment"),
         tau=0.07, tau_label=1.0, loss_weights=(0.2, 0.3, 0.2, 0.3), loc_mode="attention"),
    # The ablations: L_loc without attention, and L_soft switched off (its term is still computed and stored).
    dict(stem="prima-tiny-modernbert-alignment-direct", objective="alignment", image="dinov3-gated-noreg-f32",
         image_adapter=None, text="modernbert-mlm-f32", text_adapter="modernbert-fused", decoder="qwen3-prima-f32",
         heads="heads-modernbert.safetensors", cases=4, train=("image_full", "text_lora", "alignment"),
         tau=0.07, tau_label=1.0, loss_weights=(0.2, 0.3, 0.2, 0.0), loc_mode="direct"),
]
BATCH_IMAGE_SEED = 21
IMAGE_VIEW_SEEDS = (31, 32)
CLASS_LABELS_SEED = 23
SOFT_TARGETS_SEED = 41
# Short metadata-like texts of different lengths (13, 19, 11 and 16 tokens with the fixture tokenizers; the batch is
# right-padded to the longest, and all but the third are longer than ModernBERT's 9-key local window).
CASE_TEXTS = (
    "Age 55; face; bleeds",
    "Age 71; back; grew; itches",
    "Arm; no pain",
    "Age 38; chest; raised",
)
# The soft-target vector of a case (Docs/prima-model.md, L_soft): the diagnosis one-hot weighted x3, then one one-hot
# per metadata attribute with this many values (seeded codes).
SOFT_TARGET_ATTRIBUTES = (2, 3, 4)
CLASS_WEIGHT = 3.0
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


def file_tensors(model_type, model_dir, adapter_dir=None, adapter_name="default"):
    """The tensors of a model directory's safetensors files by canonical name, and the adapter file's LoRA matrices
    as lora/ADAPTER/STEM.lora_a|b (the keys gradient_key gives)."""
    from safetensors.numpy import load_file

    by_canonical = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        for key, value in load_file(str(f)).items():
            try:
                by_canonical[canonical_name(model_type, key)] = value
            except UnknownNameError:
                continue  # dropped on import (§4.6)
    if adapter_dir is not None:
        for key, value in load_file(str(Path(adapter_dir) / "adapter_model.safetensors")).items():
            module, which = key[len("base_model.model."):].rsplit(".lora_", 1)
            stem_name = canonical_name(model_type, module + ".weight")[: -len(".weight")]
            by_canonical[f"lora/{adapter_name}/{stem_name}.lora_{which[0].lower()}"] = value
    return by_canonical


def gradient_key(path):
    """ROLE/tensors/NAME -> NAME; ROLE/lora/ADAPTER/tensors/X -> lora/ADAPTER/X (file_tensors' keys)."""
    _, rest = path.split("/", 1)
    return rest[len("tensors/"):] if rest.startswith("tensors/") else rest.replace("/tensors/", "/")


def check_gradient_names(stem, gradients, parameter_of, files_by_role):
    """Check 8 for any set of gradient paths: parameter_of(path) is the tensor, files_by_role[ROLE] its file's."""
    for p in gradients:
        key = gradient_key(p)
        stored = files_by_role[p.split("/")[0]].get(key)
        if stored is None:
            sys.exit(f"{stem}: {p} names no tensor of the model's files")
        if not np.array_equal(parameter_of(p).detach().numpy(), stored):
            sys.exit(f"{stem}: the parameter behind {p} is not the file's {key}")


def names_check(stem, gm, run):
    """Check 8: the tensor behind every gradient path is the file tensor that the path names."""
    files = file_tensors(gm.model_type, gm.model_dir, gm.adapter_dir, gm.adapter_name)
    params = gm.parameter_paths()
    check_gradient_names(stem, run.gradients, lambda p: params[p][0], {gm.role: files})


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
    # `--only STEM …` writes those traces alone and leaves every other file as it is (a new fixture is added
    # without rewriting the others); without it every trace is rewritten from scratch.
    only = set(sys.argv[sys.argv.index("--only") + 1:]) if "--only" in sys.argv else None
    stems = {j[0] for j in JOBS + INT8_JOBS + PRIMA_JOBS} | {j["stem"] for j in BATCH_JOBS}
    if only is not None and (not only or not only <= stems):
        sys.exit(f"--only takes stems of {sorted(stems)}")
    chosen = (lambda stem: True) if only is None else (lambda stem: stem in only)
    OUT_DIR.mkdir(exist_ok=True)
    if only is None:
        for old in OUT_DIR.glob("*.h5"):
            old.unlink()
    rows = []
    overall = {"grad": 0.0, "act": 0.0, "loss": 0.0, "cos": 1.0}
    work = Path(tempfile.mkdtemp(prefix="grad-fixtures-"))
    try:
        for job in [j + (None,) for j in JOBS] + INT8_JOBS:
            if chosen(job[0]):
                run_job(job, work, rows, overall)
        for job in PRIMA_JOBS:
            if chosen(job[0]):
                run_prima_job(job, rows, overall)
        for job in BATCH_JOBS:
            if chosen(job["stem"]):
                run_batch_job(job, rows, overall)
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

    stem, image, text, decoder, heads, forward_name, label, *rest = job
    decoder_inputs = rest[0] if rest else "image+metadata"

    def load():
        return PrimaReference(MODELS_DIR / image, MODELS_DIR / text, MODELS_DIR / decoder,
                              FIXTURES / "prima" / heads, decoder_inputs=decoder_inputs)

    ref = load()
    forward = read_trace(FIXTURES / "traces" / forward_name)
    inputs = dict(forward.inputs)
    inputs["labels"] = np.array([label], dtype=np.int64)
    trainable = stage3_trainable(ref)
    recipe = {"kind": "prima", "forward_trace": f"Fixtures/traces/{forward_name}", "label": label,
              "trainable": "fusion heads and every decoder tensor"}
    if decoder_inputs != "image+metadata":
        recipe["decoder_inputs"] = decoder_inputs
        recipe["trainable"] = "image fusion heads, special tokens and every decoder tensor"
    path = OUT_DIR / f"{stem}.h5"
    run = write_class_ce_trace(ref, path, inputs, trainable, source=stem, input_recipe=recipe)
    inputs = run.meta["inputs"]
    check_read_back(stem, path, run)
    for name, a in forward.activations.items():
        # An image-only run shares the forward trace's image path; its decoder reads another sequence.
        if name not in run.activations or (decoder_inputs == "image" and name.startswith(("decoder.", "class_"))):
            if decoder_inputs == "image+metadata":
                sys.exit(f"{stem}: activation {name} of {forward_name} is missing")
            continue
        d = float(np.abs(run.activations[name].astype(np.float64) - a).max())
        if not d <= PRIMA_FORWARD_TOLERANCE:
            sys.exit(f"{stem}: activation {name} differs from {forward_name} by {d}")
    zero = ["alignment.image_global", "alignment.text_global", "alignment.image_local", "alignment.text_local",
            "image_classifier.logits", "class_probs"]
    if any(np.any(run.activation_gradients[n] != 0) for n in zero if n in run.activation_gradients):
        sys.exit(f"{stem}: an activation off the loss path has a non-zero gradient")
    # Names: heads against the heads file, decoder tensors against the decoder's safetensors file.
    check_pipeline_names(stem, ref, run, heads)
    # float64.
    ref64 = to_float64(load())
    run64 = compute_class_ce(ref64, inputs, trainable, dtype=torch.float64)
    cmp = compare_float64(stem, run64, run, inputs["attention_mask"].astype(bool))
    derr = pipeline_directional(stem, ref64, run64,
                                lambda: compute_class_ce(ref64, inputs, trainable, dtype=torch.float64).loss)
    report_pipeline(path, run, cmp, derr, rows, overall)


def check_pipeline_names(stem, ref, run, heads):
    """Check 8 for a pipeline trace: heads against the heads file, a component's tensors (and LoRA matrices)
    against its directory's safetensors files (and adapter file)."""
    from safetensors.numpy import load_file

    from prima_ref.prima_grad import component_paths, heads_paths

    params = dict(heads_paths(ref.heads))
    files = {"prima": load_file(str(FIXTURES / "prima" / heads))}
    for role, part in (("image_encoder", ref.image), ("text_encoder", ref.text), ("decoder", ref.decoder)):
        if any(p.startswith(role + "/") for p in run.gradients):
            params.update(component_paths(part))
            files[role] = file_tensors(part.model_type, part.model_dir, getattr(part, "adapter_dir", None),
                                       getattr(part, "adapter_name", "default"))
    check_gradient_names(stem, run.gradients, params.__getitem__, files)


def to_float64(ref):
    for module in (ref.image.top, ref.text.top, ref.decoder.top, ref.heads):
        module.to(torch.float64)
    return ref


def compare_float64(stem, run64, run, mask):
    """compare_runs of a pipeline trace against its float64 re-run, bounded like the component traces."""
    cmp = compare_runs(run64, run, mask, prima=True)
    for kind in ("gradients", "activation_gradients"):
        for name, e in cmp[kind].items():
            if not passes(e) or e["ratio"] > FLOAT64_RATIO_LIMIT:
                sys.exit(f"{stem}: float32 {kind} {name} vs float64: {e}")
    if cmp["loss_relative_error"] > FLOAT64_LOSS_LIMIT:
        sys.exit(f"{stem}: float32 loss vs float64: relative {cmp['loss_relative_error']:.3g}")
    return cmp


def pipeline_directional(stem, ref64, run64, loss64):
    """Directional derivative over the trainable tensors of a pipeline trace, float64: every trainable tensor moved
    by ±eps·d (d seeded N(0, 1)), loss64() recomputed."""
    from prima_ref.prima_grad import component_paths, heads_paths

    generator = torch.Generator("cpu").manual_seed(DIRECTION_SEED)
    params64 = {}
    params64.update(heads_paths(ref64.heads))
    for part in (ref64.image, ref64.text, ref64.decoder):
        params64.update(component_paths(part))
    directions = {p: torch.randn(g.shape, generator=generator, dtype=torch.float64) for p, g in run64.gradients.items()}
    saved = {p: params64[p].detach().clone() for p in directions}
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, d in directions.items():
                params64[p].copy_(saved[p] + sign * DIRECTIONAL_EPS * d)
        values.append(loss64())
    with torch.no_grad():
        for p in saved:
            params64[p].copy_(saved[p])
    fd = (values[0] - values[1]) / (2 * DIRECTIONAL_EPS)
    analytic = sum(float((run64.gradients[p] * directions[p].numpy()).sum()) for p in directions)
    norm = np.sqrt(sum(float((g ** 2).sum()) for g in run64.gradients.values())) * np.sqrt(
        sum(float((d.numpy() ** 2).sum()) for d in directions.values()))
    derr = abs(fd - analytic) / norm
    if not derr <= DIRECTIONAL_LIMIT:
        sys.exit(f"{stem}: trainable tensors: finite difference {fd!r} vs <gradient, d> {analytic!r} ({derr:.3g})")
    return derr


def batch_inputs(job, ref):
    """The seeded inputs of a BATCH_JOBS entry, and how they were made."""
    image_dir = MODELS_DIR / job["image"]
    k = len(ref.class_codes)
    n = job["cases"]
    if job["objective"] == "image_ce":
        pv = image_inputs(image_dir, batch=n, height=32, width=32, seed=BATCH_IMAGE_SEED)["pixel_values"]
        g = torch.Generator("cpu").manual_seed(CLASS_LABELS_SEED)
        labels = torch.randint(0, k, (n,), generator=g, dtype=torch.int64).numpy()
        if len(set(labels.tolist())) < 2:
            sys.exit(f"{job['stem']}: the seeded labels {labels.tolist()} are all one class")
        recipe = {"kind": "image_ce", "images": {"seed": BATCH_IMAGE_SEED, "shape": list(pv.shape),
                                                 "generator": "torch.randn(generator=torch.Generator('cpu')"
                                                              ".manual_seed(seed), dtype=float32)"},
                  "labels": {"seed": CLASS_LABELS_SEED, "generator": f"torch.randint(0, {k}, (B,), generator=...)"}}
        return {"pixel_values": pv, "labels": labels}, recipe
    views = [image_inputs(image_dir, batch=n, height=32, width=32, seed=s)["pixel_values"] for s in IMAGE_VIEW_SEEDS]
    texts = list(CASE_TEXTS[:n])
    enc = text_inputs(MODELS_DIR / job["text"], texts)
    g = torch.Generator("cpu").manual_seed(SOFT_TARGETS_SEED)
    classes = torch.randint(0, k, (n,), generator=g, dtype=torch.int64)
    if len(set(classes.tolist())) < 2:
        sys.exit(f"{job['stem']}: the seeded classes {classes.tolist()} are all one class")
    parts = [CLASS_WEIGHT * torch.nn.functional.one_hot(classes, k).to(torch.float32)]
    codes = []
    for size in SOFT_TARGET_ATTRIBUTES:
        c = torch.randint(0, size, (n,), generator=g, dtype=torch.int64)
        codes.append(c.tolist())
        parts.append(torch.nn.functional.one_hot(c, size).to(torch.float32))
    soft = np.ascontiguousarray(torch.cat(parts, dim=1).numpy(), dtype="<f4")
    inputs = {"pixel_values": np.concatenate(views), **enc, "soft_targets": soft}
    recipe = {"kind": "alignment", "texts": texts, "tokenizer": "text encoder directory, right padding",
              "views": {"seeds": list(IMAGE_VIEW_SEEDS), "shape": [n, 3, 32, 32],
                        "generator": "torch.randn(generator=torch.Generator('cpu').manual_seed(seed), dtype=float32); "
                                     "rows 0..N-1 view 1, N..2N-1 view 2"},
              "soft_targets": {"seed": SOFT_TARGETS_SEED, "classes": classes.tolist(), "attribute_codes": codes,
                               "recipe": f"cat[{CLASS_WEIGHT} * one_hot(class, {k}), one_hot(code_a, size_a) for size_a "
                                         f"in {list(SOFT_TARGET_ATTRIBUTES)}]; classes then codes drawn with "
                                         "torch.randint from one generator"}}
    return inputs, recipe


def batch_trainable(job, ref):
    from prima_ref.prima_grad import full_trainable, lora_trainable

    out = []
    for what in job["train"]:
        if what == "image_lora":
            out += lora_trainable(ref.image)
        elif what == "image_full":
            out += full_trainable(ref.image)
        elif what == "text_lora":
            out += lora_trainable(ref.text)
        elif what == "image_classifier":
            out += [f"prima/tensors/image_classifier.{w}" for w in ("weight", "bias")]
        elif what == "alignment":
            out += [f"prima/tensors/alignment.{m}.{w}" for m in ("image_proj", "text_proj") for w in ("weight", "bias")]
        else:
            raise ValueError(what)
    return out


def run_batch_job(job, rows, overall):
    """image_ce / alignment on a batch: write, read back, the zero rows, the forward half against plain forwards of
    the same models, the names, the float64 re-run and a directional derivative over the trainable tensors; for
    alignment the weighted sum, the loc mode, and N = 1."""
    from prima_ref.prima import PrimaReference
    from prima_ref.prima_grad import attach_lora, compute_alignment, compute_image_ce, write_batch_trace

    stem, objective = job["stem"], job["objective"]

    def load():
        ref = PrimaReference(MODELS_DIR / job["image"], MODELS_DIR / job["text"], MODELS_DIR / job["decoder"],
                             FIXTURES / "prima" / job["heads"])
        if job["image_adapter"]:
            attach_lora(ref.image, LORA_DIR / job["image_adapter"])
        if job["text_adapter"]:
            attach_lora(ref.text, LORA_DIR / job["text_adapter"])
        return ref

    ref = load()
    inputs, recipe = batch_inputs(job, ref)
    trainable = batch_trainable(job, ref)
    recipe.update({"trainable": list(job["train"]), "image_adapter": job["image_adapter"] and f"Fixtures/lora/{job['image_adapter']}",
                   "text_adapter": job["text_adapter"] and f"Fixtures/lora/{job['text_adapter']}"})
    settings = {k: job[k] for k in ("tau", "tau_label", "loss_weights", "loc_mode") if k in job}
    path = OUT_DIR / f"{stem}.h5"
    run = write_batch_trace(ref, path, objective, inputs, trainable, source=stem, input_recipe=recipe, **settings)
    inputs = run.meta["inputs"]
    back = check_read_back(stem, path, run)
    if objective == "alignment" and back.loss_terms != {k: float(np.float32(v)) for k, v in run.loss_terms.items()}:
        sys.exit(f"{stem}: /loss_terms reads back as {back.loss_terms}, wrote {run.loss_terms}")
    if run.meta["excluded"]:
        sys.exit(f"{stem}: trainable tensors without a gradient: {run.meta['excluded']}")
    mask = inputs.get("attention_mask")
    check_padding(stem, run, mask)
    # Exact zeros where the loss does not read: the registers (and for image_ce the patches) of the image encoder's
    # output; text_local's [CLS] and final [SEP].
    r = ref.num_registers
    g_img = run.activation_gradients["image_encoder.final_norm"]
    if np.any(g_img[:, 1:1 + r] != 0) or (objective == "image_ce" and np.any(g_img[:, 1 + r:] != 0)):
        sys.exit(f"{stem}: dLoss/dimage_encoder.final_norm is not exactly 0 at the rows the heads do not read")
    if objective == "alignment":
        g_loc = run.activation_gradients["alignment.text_local"]
        for i, n_i in enumerate(mask.sum(axis=1).tolist()):
            if np.any(g_loc[i, 0] != 0) or np.any(g_loc[i, n_i - 1:] != 0) or not np.any(g_loc[i, 1:n_i - 1] != 0):
                sys.exit(f"{stem}: dLoss/dalignment.text_local row {i} is not 0 exactly off the local tokens")
    # The forward half equals plain forwards of the same models (no autograd).
    plain = {f"image_encoder.{k}": v for k, v in ref.image.run({"pixel_values": inputs["pixel_values"]}).items()}
    if objective == "alignment":
        plain.update({f"text_encoder.{k}": v for k, v in ref.text.run(
            {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}).items()})
    forward_worst = 0.0
    for name, a in plain.items():
        b = run.activations[name]
        sel = mask.astype(bool) if name.startswith("text_encoder.") and b.ndim == 3 else Ellipsis
        d = float(np.abs(b[sel].astype(np.float64) - a[sel]).max())
        forward_worst = max(forward_worst, d)
        if not d <= PRIMA_FORWARD_TOLERANCE:
            sys.exit(f"{stem}: activation {name} differs from a plain forward by {d}")
    check_pipeline_names(stem, ref, run, job["heads"])
    note = f"; forward half within {forward_worst:.2g} of plain forwards"
    # float64.
    ref64 = to_float64(load())

    def compute_with(r, dtype):
        if objective == "image_ce":
            return lambda x=inputs: compute_image_ce(r, x, trainable, dtype=dtype)
        return lambda x=inputs, **kw: compute_alignment(r, x, trainable, dtype=dtype, **{**settings, **kw})

    compute64 = compute_with(ref64, torch.float64)
    run64 = compute64()
    cmp = compare_float64(stem, run64, run, None if mask is None else mask.astype(bool))
    if objective == "alignment":
        term_rel = {k: abs(run.loss_terms[k] - v) / abs(v) for k, v in run64.loss_terms.items()}
        worst_term = max(term_rel.items(), key=lambda kv: kv[1])
        if worst_term[1] > FLOAT64_LOSS_LIMIT:
            sys.exit(f"{stem}: float32 loss term {worst_term[0]} vs float64: relative {worst_term[1]:.3g}")
        note += f"; loss terms within {worst_term[1]:.2g} relative ({worst_term[0]})"
        note += alignment_checks(stem, job, run, inputs, compute_with(ref, torch.float32))
    derr = pipeline_directional(stem, ref64, run64, lambda: compute64().loss)
    aname, aerr = encoder_activation_directional(stem, ref64, run64, lambda: compute64().loss)
    note += f"; encoder activations {aerr:.2g} ({aname})"
    report_pipeline(path, run, cmp, derr, rows, overall, note)


def alignment_checks(stem, job, run, inputs, compute32):
    """The weighted sum, the loc mode actually used, an ablated weight, and N = 1 in float32 (the contrastive terms
    exactly 0)."""
    from prima_ref.prima_grad import explicit_alignment_terms

    w = job["loss_weights"]
    total = sum(wk * run.loss_terms[k] for wk, k in zip(w, ("img", "glo", "loc", "soft")))
    if not abs(run.loss - total) <= 1e-6 * abs(total):
        sys.exit(f"{stem}: loss {run.loss} is not the weighted sum of its terms ({total})")
    if any(v == 0 for v in run.loss_terms.values()):
        sys.exit(f"{stem}: a loss term is 0: {run.loss_terms}; every term must be tested")
    acts = run.activations
    lengths = inputs["attention_mask"].sum(axis=1)
    other = "direct" if job["loc_mode"] == "attention" else "attention"
    alt = explicit_alignment_terms(acts["alignment.image_global"], acts["alignment.text_global"],
                                   acts["alignment.image_local"], acts["alignment.text_local"], lengths,
                                   inputs["soft_targets"], job["tau"], job["tau_label"], other)
    if abs(alt["loc"] - run.loss_terms["loc"]) <= 1e-3 * abs(alt["loc"]):
        sys.exit(f"{stem}: L_loc is the same in both loc modes; the mode would not be tested")
    n = inputs["input_ids"].shape[0]
    one = {"pixel_values": inputs["pixel_values"][[0, n]], "input_ids": inputs["input_ids"][:1],
           "attention_mask": inputs["attention_mask"][:1], "soft_targets": inputs["soft_targets"][:1]}
    for mode in ("attention", "direct"):
        terms = compute32(one, loc_mode=mode).loss_terms
        zero = ("img", "glo", "soft") + (("loc",) if mode == "direct" else ())
        if any(terms[k] != 0.0 for k in zero):
            sys.exit(f"{stem}: N = 1 ({mode}) gives contrastive terms {terms}, not exactly 0")
    if 0.0 in w:
        return f"; ablation: weight 0 on {[k for k, wk in zip(('img', 'glo', 'loc', 'soft'), w) if wk == 0]}, term stored"
    return ""


def encoder_activation_directional(stem, ref64, run64, loss64):
    """Check 7 for the encoder activations of a pipeline trace, float64: a forward hook adds ±eps·d to the hooked
    tensor (d seeded N(0, 1) over every position, padding included); the central difference of loss64() must equal
    <activation gradient, d>. Returns the worst (name, error)."""
    generator = torch.Generator("cpu").manual_seed(DIRECTION_SEED + 1)
    worst, done = ("", 0.0), set()
    for name, grad in run64.activation_gradients.items():
        part, _, act = name.partition(".")
        if part not in ("image_encoder", "text_encoder"):
            continue
        model = ref64.image if part == "image_encoder" else ref64.text
        module = model.module_path(act)
        if (part, module) in done:
            continue  # BERT: final_norm and layers.{L-1} are one tensor
        done.add((part, module))
        d = torch.randn(grad.shape, generator=generator, dtype=torch.float64)
        values = []
        for sign in (1.0, -1.0):
            def hook(_module, _args, output, delta=sign * DIRECTIONAL_EPS * d):
                if torch.is_tensor(output):
                    return output + delta
                return (output[0] + delta,) + tuple(output[1:])

            handle = model.top.get_submodule(module).register_forward_hook(hook)
            try:
                values.append(loss64())
            finally:
                handle.remove()
        fd = (values[0] - values[1]) / (2 * DIRECTIONAL_EPS)
        analytic = float((grad * d.numpy()).sum())
        err = abs(fd - analytic) / float(np.linalg.norm(grad) * np.linalg.norm(d.numpy()))
        if not err <= DIRECTIONAL_LIMIT:
            sys.exit(f"{stem}: activation {name}: finite difference {fd!r} vs <gradient, d> {analytic!r} ({err:.3g})")
        if err > worst[1]:
            worst = (name, err)
    return worst


def report_pipeline(path, run, cmp, derr, rows, overall, note=""):
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
          f"    float64 directional derivatives: trainable tensors {derr:.2g}{note}")


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
