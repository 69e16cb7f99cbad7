#!/usr/bin/python3
"""Hostile gradient traces (Formats/prima-trace.md §11): copies of valid version-2 traces, each with one defect.

Usage: make_grad_cases.py OUTDIR [--check]

The sources are Fixtures/grad_traces/qwen3-tied-f32-causal_lm-full.h5 (labels, a tied embedding),
bert-mlm-f32-dot-full.h5 (output_weights), bert-rslora-mlm-lora.h5 (LoRA paths), and the batch objectives of §11.11
prima-tiny-bert-image_ce.h5 and prima-tiny-bert-alignment.h5 (checked against the assembled prima-tiny-bert
pipeline: every `source` starting with prima-tiny- names it). OUTDIR gets one file per case
and cases.json: a list of {"file", "source", "defect", "detected_by", "mentions"}. `detected_by` is "trace" when the
trace alone is invalid (every reader refuses it: one error line, exit 2 for a tool) or "checkpoint" when only the
checkpoint the trace is checked against shows the defect (a path that names no tensor or an alias of it, a shape
that differs from the tensor's): prima-verify must refuse those too, never skip them. `mentions` is a string the
error line should contain (the object at fault). Only h5py and numpy are needed (Debian's /usr/bin/python3 works);
nothing is random and no time is stored, so the output is deterministic.

With --check (needs the venv of Fixtures/requirements.txt for prima_ref), every "trace" case is read with
prima_ref.read_trace and must be refused with an error naming `mentions`, and every "checkpoint" case must read.
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GRAD = os.path.join(os.path.dirname(HERE), "grad_traces")
CAUSAL = "qwen3-tied-f32-causal_lm-full.h5"
DOT = "bert-mlm-f32-dot-full.h5"
LORA = "bert-rslora-mlm-lora.h5"
IMAGE_CE = "prima-tiny-bert-image_ce.h5"
ALIGNMENT = "prima-tiny-bert-alignment.h5"


def replace(group, name, data, **attrs):
    """Delete group[name] and create it again with data (keeping creation order out of the question)."""
    old = dict(group[name].attrs) if name in group else {}
    if name in group:
        del group[name]
    d = group.create_dataset(name, data=data, track_times=False)
    for k, v in {**old, **attrs}.items():
        d.attrs[k] = v
    return d


def edit_labels(f, b, t, value):
    a = f["inputs/labels"][()]
    a[b, t] = value
    f["inputs/labels"][...] = a


def add_loss_terms(f):
    g = f.create_group("loss_terms", track_order=True)
    for name in ("img", "glo", "loc", "soft"):
        g.create_dataset(name, data=np.float32(0.0), track_times=False)


def set_length(f, row, n):
    """attention_mask row `row` becomes n ones, then zeros (still right-padded)."""
    m = f["inputs/attention_mask"][()]
    m[row] = 0
    m[row, :n] = 1
    f["inputs/attention_mask"][...] = m


def case_list():
    cases = []

    def add(file, source, defect, detected_by, mentions, edit):
        cases.append(dict(file=file, source=source, defect=defect, detected_by=detected_by, mentions=mentions,
                          edit=edit))

    # Root and layout.
    add("grad-version-3.h5", DOT, "prima_trace_version 3", "trace", "prima_trace_version",
        lambda f: f.attrs.__setitem__("prima_trace_version", np.int64(3)))
    add("grad-no-objective.h5", DOT, "no objective attribute", "trace", "objective",
        lambda f: f.attrs.__delitem__("objective"))
    add("grad-unknown-objective.h5", DOT, "objective alignment on a text_encoder trace (defined for prima only)",
        "trace", "objective",
        lambda f: f.attrs.__setitem__("objective", "alignment"))
    add("grad-mlm-on-decoder.h5", CAUSAL, "objective mlm on a decoder", "trace", "mlm",
        lambda f: f.attrs.__setitem__("objective", "mlm"))
    add("grad-prima-component.h5", DOT, "component prima in version 2", "trace", "prima",
        lambda f: f.attrs.__setitem__("component", "prima"))
    add("grad-v1-with-gradients.h5", DOT, "version 1 with the version-2 groups", "trace", "activations",
        lambda f: f.attrs.__setitem__("prima_trace_version", np.int64(1)))
    add("grad-no-gradients-group.h5", DOT, "no /gradients", "trace", "gradients",
        lambda f: f.__delitem__("gradients"))
    add("grad-empty-gradients.h5", DOT, "empty /gradients (no trainable tensor)", "trace", "gradients",
        lambda f: (f.__delitem__("gradients"), f.create_group("gradients", track_order=True)))
    add("grad-extra-child.h5", DOT, "an unknown child of /", "trace", "loss_terms",
        lambda f: f.create_group("loss_terms"))
    # Loss.
    add("grad-no-loss.h5", DOT, "no /loss", "trace", "loss", lambda f: f.__delitem__("loss"))
    add("grad-loss-shape.h5", DOT, "/loss of shape (1,)", "trace", "loss",
        lambda f: replace(f, "loss", np.zeros(1, "<f4")))
    add("grad-loss-f64.h5", DOT, "/loss float64", "trace", "loss", lambda f: replace(f, "loss", np.float64(1.0)))
    add("grad-loss-nan.h5", DOT, "/loss NaN", "trace", "loss", lambda f: replace(f, "loss", np.float32("nan")))
    # Inputs.
    add("grad-label-out-of-range.h5", CAUSAL, "a label equal to V", "trace", "labels",
        lambda f: edit_labels(f, 1, 3, f["activations/logits"].shape[-1]))
    add("grad-label-negative.h5", CAUSAL, "a label of -5", "trace", "labels", lambda f: edit_labels(f, 1, 3, -5))
    add("grad-label-at-padding.h5", CAUSAL, "a counted label at a padded position", "trace", "labels",
        lambda f: edit_labels(f, 0, f["inputs/labels"].shape[1] - 1, 5))
    add("grad-no-counted-label.h5", CAUSAL, "every label -100", "trace", "labels",
        lambda f: f["inputs/labels"].__setitem__(Ellipsis, np.full(f["inputs/labels"].shape, -100, "<i8")))
    add("grad-labels-int32.h5", CAUSAL, "labels int32", "trace", "labels",
        lambda f: replace(f["inputs"], "labels", f["inputs/labels"][()].astype("<i4")))
    add("grad-no-labels.h5", CAUSAL, "no /inputs/labels", "trace", "labels",
        lambda f: f["inputs"].__delitem__("labels"))

    def weight_at_padding(f):
        w = f["inputs/output_weights"][()]
        w[0, -1, 0] = 1.0
        f["inputs/output_weights"][...] = w

    add("grad-weight-at-padding.h5", DOT, "output_weights non-zero at a padded position", "trace", "output_weights",
        weight_at_padding)
    add("grad-weights-shape.h5", DOT, "output_weights one channel short", "trace", "output_weights",
        lambda f: replace(f["inputs"], "output_weights", f["inputs/output_weights"][()][:, :, :-1]))
    # Activation gradients.
    add("grad-missing-activation-gradient.h5", DOT, "no activation gradient for final_norm", "trace",
        "activation_gradients", lambda f: f["activation_gradients"].__delitem__("final_norm"))
    add("grad-activation-gradient-shape.h5", DOT, "activation gradient layers.0 of the wrong shape", "trace",
        "layers.0", lambda f: replace(f["activation_gradients"], "layers.0", np.zeros((2, 3, 32), "<f4")))
    add("grad-activation-gradient-order.h5", DOT, "activation gradients in another order", "trace",
        "activation_gradients", lambda f: (f["activation_gradients/layers.0"].attrs.__setitem__("order", np.int64(2)),
                                           f["activation_gradients/layers.1"].attrs.__setitem__("order", np.int64(1))))
    add("grad-activation-gradient-nan.h5", DOT, "a NaN in an activation gradient", "trace", "embeddings",
        lambda f: f["activation_gradients/embeddings"].__setitem__((0, 0, 0), np.float32("nan")))
    # Gradients.
    add("grad-malformed-path.h5", DOT, "a gradient at text_encoder/foo/x", "trace", "text_encoder/foo/x",
        lambda f: f["gradients/text_encoder"].create_group("foo").create_dataset("x", data=np.zeros(3, "<f4")))
    add("grad-bad-lora-suffix.h5", LORA, "a LoRA gradient named .lora_c", "trace", "lora_c",
        lambda f: f["gradients/text_encoder/lora/default/tensors"].create_dataset(
            "layers.0.attn.q.lora_c", data=np.zeros((3, 32), "<f4")))
    add("grad-wrong-role.h5", DOT, "a gradient under decoder/ in a text_encoder trace", "trace", "decoder",
        lambda f: f["gradients"].create_group("decoder").create_group("tensors").create_dataset(
            "embed.tokens", data=np.zeros((4, 4), "<f4")))
    add("grad-gradient-f64.h5", DOT, "a float64 gradient", "trace", "embed.tokens",
        lambda f: replace(f["gradients/text_encoder/tensors"], "embed.tokens",
                          f["gradients/text_encoder/tensors/embed.tokens"][()].astype("<f8")))
    add("grad-gradient-nan.h5", LORA, "a NaN in a LoRA gradient", "trace", "layers.0.attn.q.lora_a",
        lambda f: f["gradients/text_encoder/lora/default/tensors/layers.0.attn.q.lora_a"].__setitem__(
            (0, 0), np.float32("nan")))
    add("grad-soft-link.h5", DOT, "a soft link under /gradients", "trace", "layers.0.attn.q.weight2",
        lambda f: f["gradients/text_encoder/tensors"].__setitem__(
            "layers.0.attn.q.weight2", h5py.SoftLink("/gradients/text_encoder/tensors/layers.0.attn.q.weight")))
    # Batches of cases (§11.11): image_ce and alignment.
    add("grad-image_ce-label-out-of-range.h5", IMAGE_CE, "an image_ce label equal to K", "trace", "labels",
        lambda f: f["inputs/labels"].__setitem__(1, f["activations/image_classifier.logits"].shape[-1]))
    add("grad-image_ce-loss-terms.h5", IMAGE_CE, "/loss_terms in an image_ce trace", "trace", "loss_terms",
        add_loss_terms)
    add("grad-alignment-no-loss-terms.h5", ALIGNMENT, "an alignment trace without /loss_terms", "trace", "loss_terms",
        lambda f: f.__delitem__("loss_terms"))
    add("grad-alignment-no-loc-term.h5", ALIGNMENT, "/loss_terms without loc", "trace", "loss_terms",
        lambda f: f["loss_terms"].__delitem__("loc"))
    add("grad-alignment-no-tau.h5", ALIGNMENT, "no root attribute tau", "trace", "tau",
        lambda f: f.attrs.__delitem__("tau"))
    add("grad-alignment-tau-label-zero.h5", ALIGNMENT, "tau_label 0", "trace", "tau_label",
        lambda f: f.attrs.__setitem__("tau_label", np.float64(0.0)))
    add("grad-alignment-bogus-loc-mode.h5", ALIGNMENT, "loc_mode 'bogus'", "trace", "loc_mode",
        lambda f: f.attrs.__setitem__("loc_mode", "bogus"))
    add("grad-alignment-negative-weight.h5", ALIGNMENT, "a loss weight of -0.2", "trace", "loss_weights",
        lambda f: f.attrs.__setitem__("loss_weights", np.array([0.2, 0.3, -0.2, 0.3], "<f8")))
    add("grad-alignment-no-local-token.h5", ALIGNMENT, "attention_mask row 0 with n = 2 (no local token)", "trace",
        "attention_mask", lambda f: set_length(f, 0, 2))
    add("grad-alignment-odd-images.h5", ALIGNMENT, "pixel_values with 2N - 1 rows", "trace", "pixel_values",
        lambda f: replace(f["inputs"], "pixel_values", f["inputs/pixel_values"][()][:-1]))
    add("grad-alignment-soft-targets-nan.h5", ALIGNMENT, "a NaN in soft_targets", "trace", "soft_targets",
        lambda f: f["inputs/soft_targets"].__setitem__((1, 0), np.float32("nan")))
    # Defects that only the checkpoint shows.
    add("grad-unknown-tensor.h5", DOT, "a gradient for layers.9.attn.q.weight (the model has 2 layers)",
        "checkpoint", "layers.9.attn.q.weight",
        lambda f: f["gradients/text_encoder/tensors"].create_dataset(
            "layers.9.attn.q.weight", data=np.zeros((32, 32), "<f4")))
    add("grad-tensor-shape.h5", DOT, "the gradient of layers.0.attn.q.weight of shape (16, 32) instead of (32, 32)",
        "checkpoint", "layers.0.attn.q.weight",
        lambda f: replace(f["gradients/text_encoder/tensors"], "layers.0.attn.q.weight", np.zeros((16, 32), "<f4")))
    add("grad-tied-alias.h5", CAUSAL, "a gradient for the tied alias lm_head.weight", "checkpoint", "lm_head.weight",
        lambda f: f["gradients/decoder/tensors"].create_dataset("lm_head.weight", data=np.zeros((640, 32), "<f4")))
    add("grad-unknown-adapter.h5", LORA, "a LoRA gradient of adapter 'other', which the checkpoint lacks",
        "checkpoint", "other",
        lambda f: f["gradients/text_encoder/lora"].create_group("other").create_group("tensors").create_dataset(
            "layers.0.attn.q.lora_a", data=np.zeros((3, 32), "<f4")))
    return cases


def main(argv):
    args = [a for a in argv if a != "--check"]
    if len(args) != 1:
        sys.exit(__doc__)
    out = args[0]
    os.makedirs(out, exist_ok=True)
    listing = []
    for c in case_list():
        path = os.path.join(out, c["file"])
        shutil.copyfile(os.path.join(GRAD, c["source"]), path)
        with h5py.File(path, "r+") as f:
            c["edit"](f)
        listing.append({k: v for k, v in c.items() if k != "edit"})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(listing, f, indent=1)
        f.write("\n")
    if "--check" in argv:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "Formats", "python"))
        from prima_ref.trace import read_trace

        bad = []
        for c in listing:
            path = os.path.join(out, c["file"])
            try:
                read_trace(path)
                if c["detected_by"] == "trace":
                    bad.append(f"{c['file']}: not refused")
            except ValueError as e:
                if c["detected_by"] == "checkpoint":
                    bad.append(f"{c['file']}: refused by the trace reader alone: {e}")
                elif c["mentions"] not in str(e):
                    bad.append(f"{c['file']}: the error does not mention {c['mentions']!r}: {e}")
        if bad:
            sys.exit("\n".join(bad))
        print(f"{len(listing)} cases: the trace reader refuses the "
              f"{sum(c['detected_by'] == 'trace' for c in listing)} trace defects, each naming its object")


if __name__ == "__main__":
    main(sys.argv[1:])
