"""prima_ref: PyTorch / Hugging Face transformers reference tooling of the PRIMA toolkit.

The Swift runtime must match transformers layer by layer. This package runs a Hugging Face model
directory (DINOv3 ViT, ModernBERT, BERT, Qwen3) in float32 with eager attention, captures the named
activations of its forward pass with forward hooks and writes them as a *PRIMA trace*: an HDF5 file
specified in ``Formats/prima-trace.md``. The Swift side writes the same format from its own runtime,
and the two are compared at the real (unpadded) positions.

Library use::

    from prima_ref import write_trace, text_inputs, image_inputs, read_trace, compare_traces

    inputs = text_inputs("Fixtures/models/qwen3-tied-f32", ["The lesion bleeds.", "It has grown."])
    write_trace("Fixtures/models/qwen3-tied-f32", "/tmp/qwen3.h5", inputs)
    trace = read_trace("/tmp/qwen3.h5")          # .attrs, .inputs, .activations (ordered)
    diffs = compare_traces("/tmp/qwen3.h5", "/tmp/from-swift.h5")   # {name: max |a - b|} over real tokens

Command line (from ``Formats/python``)::

    python -m prima_ref.trace MODEL_DIR -o OUT.h5 [--text "..." ...] [--image-size H W] [--batch B] [--seed S]

Gradient traces (version 2: loss, activation gradients and the gradients of the trainable tensors, named by
their checkpoint paths) are written by ``prima_ref.grad`` (``write_grad_trace``; ``python -m prima_ref.grad --help``)
and read by ``read_trace`` like the others; ``prima_ref.names`` holds the Hugging Face -> canonical name tables.

The whole PRIMA pipeline on one case (heads included; trace component ``prima``) is in ``prima_ref.prima``
(``PrimaReference``; ``python -m prima_ref.prima --help``), the metadata-to-text rendering in ``prima_ref.metadata``.

Needs torch, transformers, tokenizers, h5py and numpy (the pins are in ``Fixtures/requirements.txt``).
"""

# Imported lazily (PEP 562), so that `python -m prima_ref.trace` does not import the module twice.

__all__ = [
    "ACTIVATIONS_GROUP",
    "COMPONENT_OF_MODEL_TYPE",
    "DEFAULT_IMAGE_SEED",
    "DEFAULT_TEXTS",
    "INPUTS_GROUP",
    "TRACE_VERSION",
    "ReferenceModel",
    "Trace",
    "compare_traces",
    "image_inputs",
    "masked_max_abs_diff",
    "read_trace",
    "text_inputs",
    "write_trace",
]


def __getattr__(name):
    if name in __all__:
        from . import trace

        return getattr(trace, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
