#!/usr/bin/env bash
# Benchmark: prima-convert import and export of a full-size model against `cp` of the same bytes, measured in
# the same run on the same machine, with peak resident memory (GNU time). Results go to stdout as a Markdown
# table for Docs/benchmarks.md.
#
# Usage: Fixtures/bench/bench_convert.sh MODEL_DIR [WORK_DIR] [REPEATS]
#   MODEL_DIR  a Hugging Face directory, e.g. made by Fixtures/bench/make_full_size.py --only qwen3-0.6b
#   WORK_DIR   scratch space on the same filesystem as MODEL_DIR's outputs (default /tmp/prima-bench)
#   REPEATS    timed runs per command after one warm-up; the median is reported (default 3)
# Every command reads warm page cache (one warm-up run each) and writes a new file that is deleted afterwards.
set -euo pipefail
model=${1:?usage: bench_convert.sh MODEL_DIR [WORK_DIR] [REPEATS]}
work=${2:-/tmp/prima-bench}
repeats=${3:-3}
cd "$(dirname "$0")/../.."
swift build -c release --product prima-convert >/dev/null
bin=$PWD/.build/release/prima-convert
mkdir -p "$work"
weights=$(ls "$model"/*.safetensors)
bytes=$(cat $weights | wc -c)

# median SECONDS and max RSS (kB) over $repeats runs of "$@" (after one warm-up); cleanup between runs
measure() {
    local cleanup=$1; shift
    eval "$cleanup"; "$@" >/dev/null 2>&1; eval "$cleanup"; sync
    local times=() rss=0
    for _ in $(seq "$repeats"); do
        sync  # start each run with no dirty pages left by the previous one
        /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>&1
        read -r t m < "$work/time.txt"
        times+=("$t"); [ "$m" -gt "$rss" ] && rss=$m
        eval "$cleanup"
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$median $rss"
}

sync
read -r cp_s cp_rss < <(measure "rm -rf $work/copy; mkdir $work/copy" cp $weights "$work/copy/")
read -r cpsync_s _ < <(measure "rm -rf $work/copy; mkdir $work/copy" bash -c "cp $weights $work/copy/ && sync $work/copy/*")
read -r imp_s imp_rss < <(measure "rm -f $work/model.h5" "$bin" import "$model" -o "$work/model.h5" --no-progress)
"$bin" import "$model" -o "$work/model.h5" --no-progress >/dev/null
role=$("$bin" inspect "$work/model.h5" --json | python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin)["components"])))')
read -r exp_s exp_rss < <(measure "rm -rf $work/export" "$bin" export "$work/model.h5" --component "$role" -o "$work/export" --no-progress)
rm -rf "$work/model.h5" "$work/time.txt" "$work/copy"

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(df -T "$work" | awk 'NR==2 {print $2}') filesystem"
echo "model: $model, $bytes bytes of safetensors; median of $repeats runs after a warm-up"
echo
echo "| command | seconds | ratio to cp | ratio to cp+sync | peak RSS |"
echo "|---|---|---|---|---|"
awk -v s="$cp_s" -v c="$cp_s" -v cs="$cpsync_s" -v r="$cp_rss" 'BEGIN {printf "| cp | %.2f | %.2f | %.2f | %d MB |\n", s, s/c, s/cs, r/1024}'
awk -v s="$cpsync_s" -v c="$cp_s" -v cs="$cpsync_s" 'BEGIN {printf "| cp + sync | %.2f | %.2f | %.2f | - |\n", s, s/c, s/cs}'
awk -v s="$imp_s" -v c="$cp_s" -v cs="$cpsync_s" -v r="$imp_rss" 'BEGIN {printf "| prima-convert import | %.2f | %.2f | %.2f | %d MB |\n", s, s/c, s/cs, r/1024}'
awk -v s="$exp_s" -v c="$cp_s" -v cs="$cpsync_s" -v r="$exp_rss" 'BEGIN {printf "| prima-convert export | %.2f | %.2f | %.2f | %d MB |\n", s, s/c, s/cs, r/1024}'
