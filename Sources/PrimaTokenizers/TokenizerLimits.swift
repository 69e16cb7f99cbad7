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
    /// Deepest nesting of groups, classes and quantifiers in a tokenizer regex: 32 levels (`((a)+)` is 3). The
    /// regex parser is recursive descent, and the compiler, the matcher's look-arounds and freeing the syntax tree
    /// recurse as deep as the pattern nests; in a debug build each level costs the parser a few KiB of stack, and
    /// 2,000 levels overflowed the 8 MiB main thread. The Split and Replace patterns of real tokenizers nest at
    /// most 3 deep (Oniguruma's own parse limit, 4,096, is for its iterative parser).
    public static let maxRegexNesting = 32
    /// Most scalars the normalizers, pre-tokenizers and decoders may add to the text of one encode or decode call,
    /// over all its stages and pieces: 2^22 (4 Mi). A 1 MiB input is at most 1 Mi scalars, and real pipelines add
    /// less than that: byte-level pre-tokenization one scalar per extra UTF-8 byte (under 0.8 Mi for 1 MiB of
    /// text), BERT's spaces around CJK ideographs 2 per ideograph (under 0.7 Mi), NFD of Hangul 2 per syllable.
    /// A chain of Replace normalizers (`e` → 1,000 `e`s, twice) would grow 1 MiB into gigabytes; a Replace is
    /// checked before its result is allocated, the other stages (which grow text by a bounded factor, at most 18
    /// for NFKD) right after they run.
    public static let maxTextGrowth = 1 << 22
}
