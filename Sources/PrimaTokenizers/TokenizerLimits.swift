/// Sizes beyond which a tokenizer.json setting or an input text is refused (Formats/prima-checkpoint.md §10.3),
/// checked before anything of that size is allocated.
public enum TokenizerLimits {
    /// Largest padding `length` (`{"Fixed": n}`), `pad_to_multiple_of` and truncation `max_length`: 2^20 tokens.
    /// The models the toolkit runs take at most 40,960 positions (Qwen3); a padding of 10^9 would allocate 8 GB
    /// of ids per text.
    public static let maxSequenceLength = 1 << 20
    /// Longest text `encode` accepts, in UTF-8 bytes: 1 MiB (and so the longest line of `prima-convert
    /// tokenize`). Encoding holds a few words per scalar; the metadata texts PRIMA encodes are under 1 kB.
    public static let maxInputBytes = 1 << 20
    /// Steps (instructions) the regex matcher may take per scalar it searches, plus ``regexBaseSteps`` once per
    /// encode or decode call (one budget shared by all its searches), before it stops with an error. The Split patterns of real tokenizers average 10-50
    /// steps per scalar (Fixtures/bench/regex-bench.sh runs them on 2.8 MB of mixed-script text within this
    /// budget); a pattern with catastrophic backtracking, such as `(a+)+$`, needs exponentially many and is
    /// stopped instead of hanging. At about 7·10^7 steps a second, a 1 MiB text is searched in 4 s at most.
    public static let regexStepsPerScalar = 256
    /// Most instructions a compiled tokenizer regex may have: 100,000. The Split patterns of real tokenizers
    /// compile to a few hundred; counted repetitions are compiled as copies, so nested ones
    /// (`((a{1000}){1000}){1000}`) would otherwise allocate without bound at load.
    public static let maxRegexInstructions = 100_000
    /// The fixed part of the regex step budget of one encode or decode call (short texts).
    public static let regexBaseSteps = 1_000_000
}
