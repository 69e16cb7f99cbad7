#!/usr/bin/env bash
# Stage 2b trained under PyTorch's distributed engine and imported back into a PRIMA checkpoint, checked against
# prima-train's own run of the same stage (README, "Training beyond one machine").
#
#   Formats/python/train_ddp_round_trip.sh [WORKDIR]
#
# From the repository root, after `swift build`, with the pinned venv (/work/venv, or PYTHON=…/python):
#   1. prima-train stage2b on the tiny checkpoint and case folder (the parity fixtures' settings, 6 steps);
#   2. the same stage with the reference trainer under `torchrun --nproc_per_node 2` (DDP, gloo, CPU), which
#      writes the adapter in PEFT's form and the heads (prima_ref.train.save_outputs);
#   3. the checkpoint's components exported (prima-convert export), re-assembled with the trained heads
#      (prima-convert import --heads) and the adapter added (prima-convert lora-import --name prima);
#   4. compare_trained.py: the imported checkpoint equals the original but for the trained tensors, which agree
#      with prima-train's within the parity bounds.
set -euo pipefail
ROOT=$(pwd)
PYTHON=${PYTHON:-/work/venv/bin/python}
TORCHRUN=${TORCHRUN:-$(dirname "$PYTHON")/torchrun}
BIN=${BIN:-$ROOT/.build/debug}
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/prima-ddp-XXXXXX")}
CKPT=$ROOT/Fixtures/prima/tiny-prima.h5
DATA=$ROOT/Fixtures/prima/cases
SETTINGS=(--epochs 2 --batch-size 2 --lr 0.01 --weight-decay 0.001 --rank 2 --alpha 4 --seed 0 --folds 2 --fold 0)
mkdir -p "$WORK/hf"
echo "working in $WORK"

"$BIN/prima-train" stage2b --checkpoint "$CKPT" --data "$DATA" -o "$WORK/prima-train.h5" "${SETTINGS[@]}" --no-progress

(PYTHONPATH="$ROOT/Formats/python" OMP_NUM_THREADS=1 "$TORCHRUN" --nproc_per_node 2 --master_port "${MASTER_PORT:-29517}" \
    -m prima_ref.train stage2b --checkpoint "$CKPT" --data "$DATA" -o "$WORK/ddp" "${SETTINGS[@]}")

for role in image_encoder text_encoder decoder; do
    "$BIN/prima-convert" export "$CKPT" --component "$role" -o "$WORK/hf/$role" --no-progress
done
# The /prima files the assembly needs: class codes, prompt, answer prefix, schema.
"$PYTHON" - "$CKPT" "$WORK" <<'EOF'
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
"$BIN/prima-convert" import --image-encoder "$WORK/hf/image_encoder" --text-encoder "$WORK/hf/text_encoder" \
    --decoder "$WORK/hf/decoder" --labels "$(cat "$WORK/labels.txt")" --prompt "$(cat "$WORK/prompt.txt")" \
    --answer-prefix "$(cat "$WORK/answer_prefix.txt")" --metadata-schema "$WORK/metadata_schema.json" \
    --heads "$WORK/ddp/heads.safetensors" -o "$WORK/assembled.h5" --no-progress
"$BIN/prima-convert" lora-import "$WORK/assembled.h5" --role image_encoder --adapter "$WORK/ddp/adapter" --name prima \
    -o "$WORK/imported.h5"

"$PYTHON" Formats/python/compare_trained.py "$CKPT" "$WORK/imported.h5" "$WORK/prima-train.h5" \
    --role image_encoder --heads image_classifier.
