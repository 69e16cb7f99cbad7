#!/usr/bin/env python3
"""Write the LoRA fixtures: one PEFT adapter per architecture and the trace of the adapted model.

For each entry of ADAPTERS this writes, from the tiny fixture model Fixtures/models/<model>:
  * Fixtures/lora/<name>/adapter_config.json and adapter_model.safetensors: a PEFT LoRA adapter, exactly as
    PeftModel.save_pretrained writes it, with every LoRA matrix drawn from a seeded normal distribution (PEFT's own
    init leaves B = 0, which would make the adapter a no-op and the test blind);
  * Fixtures/lora/<name>.h5: the trace (Formats/prima-trace.md) of the base model with the adapter applied,
    unmerged, by PEFT: transformers + PEFT in float32 with eager attention, on the inputs make_traces.py uses.

The adapters cover every projection type of the four architectures (attention q/k/v/o and fused Wqkv, MLP
up/gate/down and fused Wi, the Qwen3 LM head), rank-stabilised scaling (use_rslora) and plain scaling, and an
adapter whose keys carry no model prefix while the checkpoint's names do (BERT: the adapter is trained on BertModel,
the checkpoint imported from BertForMaskedLM).

Self-checks: the adapted activations differ from the base model's (the adapter matters), the saved adapter reloads
onto a fresh base model with PeftModel.from_pretrained bit for bit, and merging the adapter (merge_and_unload)
reproduces the unmerged final activation within MERGE_TOLERANCE.

Rerun from the repository root with the venv of Fixtures/requirements.txt:

    /work/venv/bin/python Fixtures/make_lora_fixtures.py
"""

import os
import sys
from pathlib import Path

# PEFT keeps target_modules as a set, so adapter_config.json lists them in string-hash order: fix the hash seed
# (it must be set before the interpreter starts) so that two runs write the same bytes.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})

from fixture_common import FIXTURES, MODELS_DIR, REPO, chmod_outputs, check_versions, set_environment, setup_torch

LORA_DIR = FIXTURES / "lora"

set_environment()
check_versions(Path(__file__).name, "LoRA fixtures")

import hashlib  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

sys.path.insert(0, str(REPO / "Formats" / "python"))
from prima_ref.trace import ReferenceModel, image_inputs, text_inputs, write_trace  # noqa: E402

setup_torch()

TEXTS = (
    "The lesion is elevated and bleeds.",
    "Family history of skin cancer; the lesion has grown and bleeds.",
)
IMAGE_SEED = 0
SEED = 1234
LORA_STD = 0.2
MERGE_TOLERANCE = 1e-4

# name -> (model fixture, LoraConfig arguments)
ADAPTERS = {
    "qwen3-all-projections": ("qwen3-untied-f32", dict(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                           "lm_head"])),
    "bert-rslora": ("bert-mlm-f32", dict(
        r=3, lora_alpha=6, use_rslora=True, target_modules=["query", "key", "value", "dense"])),
    "modernbert-fused": ("modernbert-mlm-f32", dict(r=2, lora_alpha=4, target_modules=["Wqkv", "Wo", "Wi"])),
    "dinov3-attention-mlp": ("dinov3-mlp-reg4-f32", dict(
        r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])),
}


def inputs_for(ref, model_dir):
    if ref.component == "image_encoder":
        return image_inputs(model_dir, batch=2, height=32, width=32, seed=IMAGE_SEED)
    return text_inputs(model_dir, TEXTS)


def fill_lora(model, seed):
    """Every lora_A/lora_B weight ~ N(0, LORA_STD), drawn in sorted parameter-name order."""
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32) * LORA_STD)


def main():
    if LORA_DIR.exists():
        shutil.rmtree(LORA_DIR)
    LORA_DIR.mkdir()
    digest = hashlib.sha256()
    for index, (name, (fixture, arguments)) in enumerate(ADAPTERS.items()):
        model_dir = MODELS_DIR / fixture
        ref = ReferenceModel(model_dir)
        inputs = inputs_for(ref, model_dir)
        base_acts = ref.run(inputs)

        peft_model = get_peft_model(ref.top, LoraConfig(lora_dropout=0.0, bias="none", **arguments))
        fill_lora(peft_model, SEED + index)
        peft_model.eval()
        out_dir = LORA_DIR / name
        # The config records where the base came from: the fixture's name, not this machine's path. An adapted LM
        # head would make PEFT save the whole head too ("embedding layers"); the adapter alone is what is tested.
        peft_model.peft_config["default"].base_model_name_or_path = f"Fixtures/models/{fixture}"
        peft_model.save_pretrained(str(out_dir), save_embedding_layers=False)
        (out_dir / "README.md").unlink(missing_ok=True)
        trace = write_trace(model_dir, LORA_DIR / f"{name}.h5", inputs, model=ref,
                            input_recipe={"kind": "lora", "adapter": name, "seed": SEED + index})
        last = list(trace.activations)[-1]
        changed = float(np.abs(trace.activations[last] - base_acts[last]).max())
        if changed < 1e-3:
            sys.exit(f"{name}: the adapter barely changes {last} ({changed}); the fixture would not test it")

        # The saved directory reloads onto a fresh base model bit for bit.
        fresh = ReferenceModel(model_dir)
        loaded = PeftModel.from_pretrained(fresh.top, str(out_dir))
        saved = dict(peft_model.named_parameters())
        for key, value in loaded.named_parameters():
            if "lora_" in key and not torch.equal(value, saved[key]):
                sys.exit(f"{name}: {key} differs after PeftModel.from_pretrained")
        # Merged equals unmerged within MERGE_TOLERANCE.
        merged = loaded.merge_and_unload()
        fresh.top = merged
        merged_acts = fresh.run(inputs)
        merge_error = float(np.abs(merged_acts[last] - trace.activations[last]).max())
        if merge_error > MERGE_TOLERANCE:
            sys.exit(f"{name}: merged and unmerged {last} differ by {merge_error}")
        print(f"{name}: {fixture}, {len(saved)} parameters, {last} moved by {changed:.3g}, merged within {merge_error:.2g}")
        for path in sorted(out_dir.iterdir()) + [LORA_DIR / f"{name}.h5"]:
            digest.update(path.read_bytes())
    chmod_outputs(LORA_DIR)
    print("sha256 of all LoRA fixtures:", digest.hexdigest())


if __name__ == "__main__":
    main()
