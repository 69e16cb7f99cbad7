#!/usr/bin/env bash
# Rebuilds the trained default PRIMA (Fixtures/default/prima-default.h5) and its bundled held-out cases
# (Fixtures/default/heldout/) from nothing but this repository, with the toolkit's own tools:
#
#   1. prima-cohort writes the synthetic PAD-UFES-20-shaped cohort (2,298 cases, 64 px images, seed 0);
#   2. make_default_split.py holds out whole lesions until each class has 16 or more cases (102 in all, by rule)
#      and copies them to heldout/;
#   3. make_default_models.py writes the three narrow, untrained backbones (transformers' initialisation, fixed
#      seeds) and the text encoder's BPE tokenizer, trained on the stage-1 corpus and the training cases' metadata
#      texts (the one step that needs the pinned Python packages of Fixtures/requirements.txt);
#   4. prima-convert assembles the PRIMA checkpoint (seeded heads), and prima-train runs stage 1 → 2 → 2b → 3 on
#      the training side of the split, each stage validated on the held-out cases, the final weights kept (never
#      the best epoch: the held-out cases must not choose the model they measure);
#   5. prima-diagnose scores the result on the held-out cases, then on 2,298 new cases of the cohort's generator
#      (seed 1), a larger test than the 102. Its image-only (stage 2b's classifier) and
#      metadata-only (logistic regression on the tabular fields) baselines on the same cases, and its int8 copy, are
#      measured by Tests/PrimaEvalTests/TrainedDefaultTests.swift.
#
# Usage: bash Fixtures/default/make_default.sh [WORKDIR]     (from anywhere; WORKDIR default /tmp/prima-default)
# Environment: PYTHON, a Python with Fixtures/requirements.txt installed (default: python3).
#
# Bit for bit: training is deterministic at a given thread count and kernel choice, so the script fixes both:
# 2 threads, OpenBLAS's Haswell kernels and the toolkit's AVX2 f32 kernels (the benchmark emulation's settings),
# so that other x86-64 CPUs with AVX2 and FMA should compute the same bits (only one machine has been compared so
# far). The last line prints the content digest of the checkpoint (Fixtures/default/checkpoint_digest.py: every
# tensor, attribute and training record, without the two time stamps); two runs should print the same digest
# (what has been checked: Fixtures/default/README.md, "Bit for bit"). Takes about 11 minutes on 2 cores (11.0 and
# 11.4 measured on a 2-core AMD EPYC).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-/tmp/prima-default}
python=${PYTHON:-python3}
threads=2
export OPENBLAS_CORETYPE=Haswell PRIMA_FLOAT_KERNEL=avx2

cd "$repo"
for product in prima-cohort prima-convert prima-train prima-diagnose; do
    swift build -c release --product "$product"
done
bin=$repo/.build/release
rm -rf "$work" && mkdir -p "$work"

$bin/prima-cohort -o "$work/cohort" --cases 2298 --image-size 64 --seed 0 --no-progress
$python "$here/make_default_split.py" "$work/cohort" "$work/split"
$python "$here/make_default_models.py" "$work/cohort" "$work/split/split.csv" "$work/models"
rm -rf "$here/heldout" && cp -r "$work/split/heldout" "$here/heldout"

(cd "$work/models" && $bin/prima-convert import --image-encoder image --text-encoder text --decoder decoder \
    --labels ACK,BCC,MEL,NEV,SCC,SEK --init-seed 0 -o "$work/base.h5" --no-progress)

data=(--data "$work/cohort" --split "$work/split/split.csv")
common=(--threads "$threads" --seed 0 --no-progress)
$bin/prima-train stage1 --checkpoint "$work/base.h5" --corpus "$work/models/stage1-corpus.jsonl" -o "$work/stage1.h5" \
    --epochs 30 --lr 3e-3 --rank 32 "${common[@]}"
$bin/prima-train stage2 --checkpoint "$work/stage1.h5" -o "$work/stage2.h5" "${data[@]}" \
    --epochs 10 --lr 2e-3 "${common[@]}"
$bin/prima-train stage2b --checkpoint "$work/stage2.h5" -o "$work/stage2b.h5" "${data[@]}" \
    --epochs 30 --lr 2e-3 --class-weights balanced "${common[@]}"
$bin/prima-train stage3 --checkpoint "$work/stage2b.h5" -o "$work/stage3.h5" "${data[@]}" \
    --epochs 20 --lr 3e-3 --class-weights balanced "${common[@]}"
cp "$work/stage3.h5" "$here/prima-default.h5"

$bin/prima-diagnose --checkpoint "$here/prima-default.h5" --folder "$here/heldout" -o "$work/heldout-results.csv" --no-progress
# A second, larger test: 2,298 new cases of the same generator (seed 1), none of them seen in training.
$bin/prima-cohort -o "$work/fresh" --cases 2298 --image-size 64 --seed 1 --no-progress
$bin/prima-diagnose --checkpoint "$here/prima-default.h5" --folder "$work/fresh" -o "$work/fresh-results.csv" --no-progress
$python "$here/checkpoint_digest.py" "$here/prima-default.h5"
