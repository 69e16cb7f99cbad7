#!/usr/bin/env bash
# Fuzzes the toolkit's parsers with libFuzzer (Swift's -sanitize=fuzzer, with AddressSanitizer), target by target.
#
#   bash Tests/Fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]     (default: 300 s each, every target)
#
# Each target starts from seeds/TARGET (written by make_seeds.py when missing; not committed) and corpus/TARGET
# (what earlier runs kept); afterwards the corpus is re-minimised (libFuzzer -merge=1) into corpus/TARGET. An input
# that crashes, traps, goes past the memory limit or runs past the time-out lands in crashes/TARGET/. Commit
# corpus/ and crashes/: PrimaFuzzRegressionTests replays them in every test run. A line per target goes to
# results.log. Needs only the Swift toolchain (libFuzzer and lld ship with it) and /usr/bin/python3 with h5py.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors json tokenizer metadata-csv metadata-json metadata-schema png checkpoint)
fi

[ -d seeds ] || /usr/bin/python3 make_seeds.py || exit 1
flags=(-c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xcc -fsanitize=fuzzer-no-link,address -Xswiftc -use-ld=lld)
swift build "${flags[@]}" --product prima-fuzz >&2 || exit 1
binary="$(swift build "${flags[@]}" --show-bin-path)/prima-fuzz"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "crashes/$target" "$scratch/new-$target" "$scratch/merged-$target"
    before=$(ls "crashes/$target" | wc -l)
    # A checkpoint is walked in a probe child first, which may take up to HDF5Probe's 60 s time-out by design.
    timeout=10 max_len=65536
    if [ "$target" = checkpoint ]; then timeout=70 max_len=1048576; fi
    PRIMA_FUZZ_TARGET="$target" PRIMA_FUZZ_SCRATCH="$scratch" "$binary" "$scratch/new-$target" "corpus/$target" "seeds/$target" \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len="$max_len" \
        -artifact_prefix="crashes/$target/" -print_final_stats=1 2> "$scratch/$target.log"
    status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$' || echo "?")
    # Keep the smallest set of inputs that covers what the seeds, the old corpus and this run reached.
    PRIMA_FUZZ_TARGET="$target" PRIMA_FUZZ_SCRATCH="$scratch" "$binary" -merge=1 "$scratch/merged-$target" \
        "corpus/$target" "$scratch/new-$target" "seeds/$target" > /dev/null 2>&1
    rm -f "corpus/$target"/* && cp "$scratch/merged-$target"/* "corpus/$target"/ 2> /dev/null
    after=$(ls "crashes/$target" | wc -l)
    line="$(date -u +%FT%TZ) $target: ${seconds} s, $runs runs, exit $status, corpus $(ls "corpus/$target" | wc -l), new crash inputs $((after - before))"
    echo "$line" | tee -a results.log
    if [ "$status" -ne 0 ] || [ "$after" -ne "$before" ]; then
        failed=1
        tail -n 40 "$scratch/$target.log" >&2
    fi
done
exit "$failed"
