#!/usr/bin/env python3
"""Write Fixtures/train/parity/<stage>.h5: five optimiser steps of a prima-train stage computed by the PyTorch +
PEFT reference trainer (Formats/python/prima_ref/train.py), which ParityTests reproduces with StageRunner.

Each stage starts from the bundled tiny PRIMA checkpoint (Fixtures/prima/tiny-prima.h5) and trains on the bundled
case folder (Fixtures/prima/cases) with small settings (batch 2, LoRA rank 2 and alpha 4, lr 1e-2 (2e-3 for stage 2) so that the
weights move visibly, 2 epochs over the 5 training cases of fold 0 of 2: 3 steps an epoch, T = 6, W = ⌈0.6⌉ = 1);
the schedule is the whole run's (T = 6) and the run stops after step 5, as StageRunner stopped by `shouldStop`
after its fifth step. The stage's own weight decay (Docs/prima-model.md) and clipping at 1.0 apply.

stage2b-balanced.h5 and stage3-balanced.h5 run stages 2b and 3 with --class-weights balanced (Formats/
prima-training.md §3.8) on fold 1 of 3, whose 7 training cases give unequal weights and two absent classes
(weights 1.75, 0.875, 0, 0.875, 0, 0.875): 4 steps an epoch, the last of one case, T = 8, W = 1; stage 3's at lr
2e-3, as stage 2 (at 1e-2 one LoRA element with small gradients, where AdamW's m̂/√v̂ follows their float32
rounding, ended 3.8e-4 · max|ref| apart). The weights are checked against scikit-learn's
compute_class_weight("balanced") over the classes present.

A file holds (layout: Fixtures/README.md, "The training parity fixtures"):
  root attributes  stage, settings (JSON of prima_ref.train.StageSettings), cli (the prima-train command line of
                   the same run), steps (5), total_steps, warmup_steps, checkpoint, data, torch_version,
                   transformers_version, peft_version; class_weights (float32 [K]) when the loss is weighted
  loss             float32 [5]   the loss of each step (what prima-train logs)
  lr               float64 [5]   the learning rate each step used
  grad_norm        float32 [5]   the global gradient norm before clipping
  tensors/         one float32 dataset per trained tensor after step 5, named by its gradient path
                   (Formats/prima-trace.md §11.6) with "/" written as "|"; attribute tensor_order lists the paths

Pinned versions (Fixtures/requirements.txt), one thread, deterministic algorithms; rerun from the repository root
(two runs give byte-identical files):

    /work/venv/bin/python Fixtures/make_train_parity_fixtures.py
"""

import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from fixture_common import FIXTURES, REPO, check_versions, set_environment, setup_torch

check_versions(Path(__file__).name, "training parity fixtures")
set_environment()
os.environ["OMP_NUM_THREADS"] = "1"

import h5py  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(REPO / "Formats" / "python"))
from prima_ref.train import StageSettings, train_stage  # noqa: E402

OUT = FIXTURES / "train" / "parity"
CHECKPOINT = "Fixtures/prima/tiny-prima.h5"
DATA = "Fixtures/prima/cases"
CORPUS = "Fixtures/train/corpus.jsonl"
STEPS = 5
# Small settings shared by the stages; each stage keeps its own weight decay (StageOptions.defaults).
COMMON = dict(epochs=2, batch_size=2, lr=1e-2, rank=2, alpha=4.0, seed=0, folds=2, fold=0)
STAGES = {
    "stage1": StageSettings(stage="stage1", weight_decay=1e-3, **COMMON),
    # Stage 2 at a fifth of the rate: at 1e-2 one LoRA element whose gradient fell below AdamW's ε (where the update
    # follows the gradient's float32 rounding, not its sign) moved 8.4e-5 of max|ref| apart, too near the 1e-4 bound
    # for CPUs whose kernels round differently.
    "stage2": StageSettings(stage="stage2", weight_decay=1e-3, **{**COMMON, "lr": 2e-3}),
    "stage2b": StageSettings(stage="stage2b", weight_decay=1e-3, **COMMON),
    "stage3": StageSettings(stage="stage3", weight_decay=3e-2, **COMMON),
    # Class-weighted cross-entropy on a fold whose training classes are unbalanced (stage 3 at a fifth of the rate,
    # for the reason of stage 2's).
    "stage2b-balanced": StageSettings(stage="stage2b", weight_decay=1e-3, class_weights="balanced", **{**COMMON, "folds": 3, "fold": 1}),
    "stage3-balanced": StageSettings(stage="stage3", weight_decay=3e-2, class_weights="balanced", **{**COMMON, "folds": 3, "fold": 1, "lr": 2e-3}),
    # The decoder without metadata (--no-metadata): the text projectors get no gradient and only decay.
    "stage3-no-metadata": StageSettings(stage="stage3", weight_decay=3e-2, decoder_inputs="image", **COMMON),
}


def checked_class_weights(s: StageSettings):
    """§3.8's weights of the run's training split (prima_ref.train_data.class_weights), after checking them against
    scikit-learn's compute_class_weight("balanced", classes=the classes present, y=labels); None unweighted."""
    from sklearn.utils.class_weight import compute_class_weight

    from prima_ref import train_data as td
    from prima_ref.metadata import Schema
    from prima_ref.train import export_checkpoint, read_cases, split

    if s.class_weights == "none":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_checkpoint(REPO / CHECKPOINT, tmp)
    cases = read_cases(REPO / DATA, exported.class_codes, Schema.from_json(exported.schema_json))
    training, _ = split(cases, s, len(exported.class_codes))
    labels = np.array([cases[i].label for i in training])
    ours = td.class_weights(labels, len(exported.class_codes))
    present = np.unique(labels)
    sklearn = compute_class_weight("balanced", classes=present, y=labels).astype(np.float32)
    assert np.array_equal(ours[present], sklearn), (ours, sklearn)
    assert not ours[np.setdiff1d(np.arange(len(ours)), present)].any()
    return ours


def write(name: str, s: StageSettings) -> None:
    import peft
    import torch
    import transformers

    stage = s.stage
    weights = checked_class_weights(s)
    data = CORPUS if stage == "stage1" else DATA
    result = train_stage(REPO / CHECKPOINT, REPO / data, s, max_steps=STEPS)
    assert len(result.losses) == STEPS, f"{stage}: {len(result.losses)} steps"
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.h5"
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w", libver=("v108", "v110"), track_order=True, track_times=False) as f:
        f.attrs["stage"] = stage
        settings = asdict(s)
        if settings["decoder_inputs"] == "image+metadata":
            del settings["decoder_inputs"]  # the default: the files written before the setting existed are unchanged
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)
        f.attrs["cli"] = " ".join(["prima-train"] + s.cli_flags()[:1] + ["--checkpoint", CHECKPOINT, "--corpus" if stage == "stage1" else "--data", data, "-o", "OUT.h5"]
                                  + s.cli_flags()[1:])
        f.attrs["steps"] = np.int64(STEPS)
        f.attrs["total_steps"] = np.int64(result.total_steps)
        f.attrs["warmup_steps"] = np.int64(result.warmup_steps)
        f.attrs["checkpoint"] = CHECKPOINT
        f.attrs["data"] = data
        f.attrs["torch_version"] = torch.__version__.split("+", 1)[0]
        f.attrs["transformers_version"] = transformers.__version__
        f.attrs["peft_version"] = peft.__version__
        if weights is not None:
            f.attrs["class_weights"] = weights.astype("<f4")
        f.create_dataset("loss", data=np.array(result.losses, np.float32), track_times=False)
        f.create_dataset("lr", data=np.array(result.learning_rates, np.float64), track_times=False)
        f.create_dataset("grad_norm", data=np.array(result.gradient_norms, np.float32), track_times=False)
        g = f.create_group("tensors", track_order=True, track_times=False)
        g.attrs["tensor_order"] = ",".join(result.tensors)
        for name, value in result.tensors.items():
            g.create_dataset(name.replace("/", "|"), data=value.astype("<f4"), track_times=False)
    tmp.replace(path)
    path.chmod(0o644)
    print(f"{path.relative_to(REPO)}: losses {[round(x, 6) for x in result.losses]}, {len(result.tensors)} tensors")


def main() -> int:
    # `--only NAME …` writes those fixtures alone, leaving the others as they are.
    only = sys.argv[sys.argv.index("--only") + 1:] if "--only" in sys.argv else list(STAGES)
    if not only or not set(only) <= set(STAGES):
        sys.exit(f"--only takes names of {list(STAGES)}")
    setup_torch()
    for name in only:
        write(name, STAGES[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
