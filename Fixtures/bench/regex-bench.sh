#!/usr/bin/env bash
# Builds (swiftc -O, outside SwiftPM) and runs the regex benchmark of Docs/benchmarks.md: the tokenizer's regex
# matcher and the hand-written split matchers against Oniguruma (libonig-dev), on the differential test's
# seeded text. Usage, from the repository root: bash Fixtures/bench/regex-bench.sh [WORK_DIR]
set -euo pipefail
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
sources=(Sources/PrimaTokenizers/Regex.swift Sources/PrimaTokenizers/SplitPatterns.swift
         Sources/PrimaTokenizers/UnicodeSupport.swift Sources/PrimaTokenizers/TokenizerError.swift
         Sources/PrimaTokenizers/TokenizerLimits.swift Tests/Support/SplitMix64.swift
         Tests/PrimaTokenizersTests/OnigurumaRegex.swift Tests/PrimaTokenizersTests/DifferentialText.swift
         Fixtures/bench/regex-bench/main.swift)
swiftc -O -module-name RegexBench -I Sources/COniguruma -lonig "${sources[@]}" -o "$work/regex-bench"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'); swiftc -O; $(pkg-config --modversion oniguruma | sed 's/^/Oniguruma /')"
"$work/regex-bench"
