#!/usr/bin/env bash
# PRIMA's four stages trained under PyTorch's distributed engine, each imported back into a PRIMA checkpoint and
# checked against prima-train's own run of the same stage (README, "Training beyond one machine").
#
#   Formats/python/train_ddp_round_trip.sh [WORKDIR]
#   NO_METADATA=1 Formats/python/train_ddp_round_trip.sh [WORKDIR]   # stage 3 without the metadata (--no-metadata)
#
# From the repository root, after `swift build`, with the pinned venv (/work/venv, or PYTHON=…/python). Run by
# hand: it needs torch, which the tests and CI do not. For each stage in turn (stage1 → stage2 → stage2b → stage3),
# starting from the bundled tiny checkpoint and each from the previous stage's IMPORTED checkpoint:
#   1. prima-train STAGE on that checkpoint (the corpus or the case folder; small settings, 6 steps) — so the Swift
#      trainer continues from every imported result;
#   2. the same stage with the reference trainer under `torchrun --nproc_per_node 2` (DDP, gloo, CPU), which
#      writes the adapter in PEFT's form, every /prima head and, for stage 1, the trained masked-LM head
#      (prima_ref.train.save_outputs);
#   3. the import: the input's components exported (prima-convert export; for stage 1 the trained mlm.* tensors
#      written into the text encoder's model.safetensors), re-assembled with the heads (prima-convert import
#      --heads), the stage's adapter added (prima-convert lora-import --name prima) and the other components'
#      adapters of the earlier stages carried over (prima-convert export --adapter prima, then lora-import);
#   4. compare_trained.py: the import equals its input but for the stage's trained tensors, which agree with
#      prima-train's within the parity bounds; prima-verify accepts it and prima-diagnose runs it on the cases.
set -euo pipefail
ROOT=$(pwd)
PYTHON=${PYTHON:-/work/venv/bin/python}
TORCHRUN=${TORCHRUN:-$(dirname "$PYTHON")/torchrun}
BIN=${BIN:-$ROOT/.build/debug}
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/prima-ddp-XXXXXX")}
DATA=$ROOT/Fixtures/prima/cases
CORPUS=$ROOT/Fixtures/train/corpus.jsonl
ROLES=(image_encoder text_encoder decoder)
mkdir -p "$WORK"
echo "working in $WORK"

# The stage's trained component, the prefix of its trained heads (or -) and of its trained component tensors (or -),
# and its settings: the parity fixtures' (Fixtures/make_train_parity_fixtures.py), 2 epochs of 3 steps.
declare -A ROLE=([stage1]=text_encoder [stage2]=image_encoder [stage2b]=image_encoder [stage3]=decoder)
declare -A HEADS=([stage1]=- [stage2]=alignment. [stage2b]=image_classifier. [stage3]=fusion.)
declare -A TENSORS=([stage1]=mlm. [stage2]=- [stage2b]=- [stage3]=-)
declare -A DECAY=([stage1]=0.001 [stage2]=0.001 [stage2b]=0.001 [stage3]=0.03)
declare -A LR=([stage1]=0.01 [stage2]=0.002 [stage2b]=0.01 [stage3]=0.01)

# The /prima files the assembly needs: class codes, prompt, answer prefix, schema (the same for every stage).
"$PYTHON" - "$ROOT/Fixtures/prima/tiny-prima.h5" "$WORK" <<'EOF'
import json, sys
sys.path.insert(0, "Formats/python")
from prima_h5 import open_checkpoint
with open_checkpoint(sys.argv[1]) as ckpt:
    files = ckpt.prima.files
labels = json.loads(files["labels.json"])
open(f"{sys.argv[2]}/labels.txt", "w").write(",".join(f"{x['code']}={x['name']}" for x in labels))
for name in ("prompt.txt", "answer_prefix.txt", "metadata_schema.json"):
    open(f"{sys.argv[2]}/{name}", "wb").write(files[name])
EOF

IN=$ROOT/Fixtures/prima/tiny-prima.h5
PORT=${MASTER_PORT:-29517}
for STAGE in stage1 stage2 stage2b stage3; do
    D=$WORK/$STAGE
    mkdir -p "$D/hf"
    SETTINGS=(--epochs 2 --batch-size 2 --lr "${LR[$STAGE]}" --weight-decay "${DECAY[$STAGE]}" --rank 2 --alpha 4 --seed 0)
    if [ "$STAGE" = stage1 ]; then SOURCE=(--corpus "$CORPUS"); INPUT=$CORPUS
    else SETTINGS+=(--folds 2 --fold 0); SOURCE=(--data "$DATA"); INPUT=$DATA; fi
    IMPORT_FLAGS=()   # the decoder's inputs (decoder_inputs, Formats §8) travel with the heads
    if [ "$STAGE" = stage3 ] && [ -n "${NO_METADATA:-}" ]; then SETTINGS+=(--no-metadata); IMPORT_FLAGS+=(--no-metadata); fi
    echo "== $STAGE from $IN"

    "$BIN/prima-train" "$STAGE" --checkpoint "$IN" "${SOURCE[@]}" -o "$D/prima-train.h5" "${SETTINGS[@]}" --no-progress

    (PYTHONPATH="$ROOT/Formats/python" OMP_NUM_THREADS=1 "$TORCHRUN" --nproc_per_node 2 --master_port "$PORT" \
        -m prima_ref.train "$STAGE" --checkpoint "$IN" --data "$INPUT" -o "$D/ddp" "${SETTINGS[@]}")

    for role in "${ROLES[@]}"; do
        "$BIN/prima-convert" export "$IN" --component "$role" -o "$D/hf/$role" --no-progress
    done
    if [ "$STAGE" = stage1 ]; then  # the trained masked-LM head replaces the exported one
        "$PYTHON" - "$D/hf/text_encoder" "$D/ddp/text_encoder.safetensors" <<'EOF'
import sys
from pathlib import Path
from safetensors.numpy import load_file, save_file
model = Path(sys.argv[1]) / "model.safetensors"
tensors, trained = load_file(str(model)), load_file(sys.argv[2])
assert set(trained) <= set(tensors), sorted(set(trained) - set(tensors))
save_file({**tensors, **trained}, str(model), metadata={"format": "pt"})
EOF
    fi
    "$BIN/prima-convert" import --image-encoder "$D/hf/image_encoder" --text-encoder "$D/hf/text_encoder" \
        --decoder "$D/hf/decoder" --labels "$(cat "$WORK/labels.txt")" --prompt "$(cat "$WORK/prompt.txt")" \
        --answer-prefix "$(cat "$WORK/answer_prefix.txt")" --metadata-schema "$WORK/metadata_schema.json" \
        --heads "$D/ddp/heads.safetensors" "${IMPORT_FLAGS[@]}" -o "$D/assembled-0.h5" --no-progress
    step=0
    for role in "${ROLES[@]}"; do
        if [ "$role" = "${ROLE[$STAGE]}" ]; then ADAPTER=$D/ddp/adapter
        elif "$BIN/prima-convert" export "$IN" --component "$role" --adapter prima -o "$D/adapter-$role" >/dev/null 2>&1; then
            ADAPTER=$D/adapter-$role   # an earlier stage's adapter, carried over
        else continue; fi
        "$BIN/prima-convert" lora-import "$D/assembled-$step.h5" --role "$role" --adapter "$ADAPTER" --name prima \
            -o "$D/assembled-$((step + 1)).h5"
        step=$((step + 1))
    done
    mv "$D/assembled-$step.h5" "$D/imported.h5"

    COMPARE=(--role "${ROLE[$STAGE]}")
    [ "${HEADS[$STAGE]}" != - ] && COMPARE+=(--heads "${HEADS[$STAGE]}")
    [ "${TENSORS[$STAGE]}" != - ] && COMPARE+=(--tensors "${TENSORS[$STAGE]}")
    "$PYTHON" "$ROOT/Formats/python/compare_trained.py" "$IN" "$D/imported.h5" "$D/prima-train.h5" "${COMPARE[@]}"
    "$BIN/prima-verify" "$D/imported.h5"
    "$BIN/prima-diagnose" --checkpoint "$D/imported.h5" --folder "$DATA" -o "$D/diagnosis.csv" --no-progress
    IN=$D/imported.h5
    PORT=$((PORT + 1))
done
echo "all four stages came back: $WORK/stage3/imported.h5"
