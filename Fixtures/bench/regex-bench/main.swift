// The regex benchmark of Docs/benchmarks.md ("Tokenizer regexes: our matcher against Oniguruma"): compile time and
// search throughput of the tokenizer's matcher (general and hand-written) and of Oniguruma, on the seeded text of
// the differential test. Built and run by Fixtures/bench/regex-bench.sh with -O.
import Foundation

let patterns = [
    ("GPT-2", KnownSplitPattern.gpt2Pattern),
    ("Qwen2", KnownSplitPattern.qwen2Pattern),
    ("Llama-3", KnownSplitPattern.llama3Pattern),
    ("o200k", #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#),
    ("BERT-like", #"[\p{P}\p{S}]|\s+|[^\s\p{P}\p{S}]+"#),
    ("digits", #"\p{N}{1,3}"#),
]

let strings = DifferentialText.strings(count: 20_000, seed: 20_260_901)
let text = Array(strings.joined(separator: [" "]))
let utf8 = Array(String(String.UnicodeScalarView(text)).utf8)
let clock = ContinuousClock()
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
/// The best of `runs` timings of `body`.
func best(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var result = Double.infinity
    for _ in 0..<runs {
        let start = clock.now
        try body()
        result = min(result, seconds(clock.now - start))
    }
    return result
}

print("text: \(text.count) scalars, \(utf8.count) UTF-8 bytes (seed 20260901)")
print("| pattern | compile: ours | compile: Oniguruma | search: ours (general) | search: ours (hand-written) | search: Oniguruma | matches equal |")
print("|---|---|---|---|---|---|---|")
for (name, pattern) in patterns {
    let oursCompile = try best(50) { _ = try TokenizerRegex(pattern) }
    let onigCompile = try best(50) { _ = try OnigurumaRegex(pattern) }
    let ours = try TokenizerRegex(pattern), onig = try OnigurumaRegex(pattern)
    var oursMatches: [Range<Int>] = [], onigMatches: [Range<Int>] = []
    let oursSearch = try best(5) { oursMatches = try ours.matches(in: text) }
    let onigSearch = best(5) { onigMatches = onig.byteMatches(in: utf8) }
    var handWritten = "—"
    if let known = KnownSplitPattern(pattern: pattern) {
        handWritten = String(format: "%.1f MB/s", Double(utf8.count) / best(5) { _ = known.matches(in: text) } / 1e6)
    }
    let equal = oursMatches == onig.matches(in: text) && onigMatches.count == oursMatches.count
    print(String(format: "| %@ | %.0f µs | %.0f µs | %.1f MB/s | %@ | %.1f MB/s | %@ |", name, oursCompile * 1e6,
                 onigCompile * 1e6, Double(utf8.count) / oursSearch / 1e6, handWritten,
                 Double(utf8.count) / onigSearch / 1e6, equal ? "yes" : "NO"))
}

// Catastrophic backtracking: both engines are backtracking matchers, so both need a step limit. Ours stops with an
// error after TokenizerLimits' budget; Oniguruma stops a match after its retry limit (10^7 by default) and the
// onig crate then reports no match.
let hostile: [Unicode.Scalar] = Array(repeating: "a", count: 4096) + ["b"]
for pattern in ["(a+)+$", "(a|a)*b?c"] {
    let ours = try TokenizerRegex(pattern), onig = try OnigurumaRegex(pattern)
    var outcome = ""
    let oursTime = best(1) {
        do { outcome = "\(try ours.matches(in: hostile).count) matches" } catch { outcome = "error: \(error)" }
    }
    var onigCount = 0
    let onigTime = best(1) { onigCount = onig.byteMatches(in: hostile.map { UInt8($0.value) }).count }
    print(String(format: "%@ on 4096 a's and a b: ours %.2f s (%@), Oniguruma %.2f s (%d matches)",
                 pattern.debugDescription, oursTime, String(outcome.prefix(60)), onigTime, onigCount))
}
