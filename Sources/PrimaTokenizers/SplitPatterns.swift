// Hand-written matchers for the three split regexes that nearly every byte-level BPE tokenizer uses, so that the
// common case does not go through the backtracking matcher. Each gives exactly the matches TokenizerRegex gives for
// its pattern (the tests compare the two on fuzz strings, and both against the Python library's goldens).
//
// All three patterns match at every position (each scalar is a letter, a number, whitespace or "other", and each
// class has an alternative that takes it), so the matches tile the text and the split never leaves gaps.

enum KnownSplitPattern: Sendable {
    /// GPT-2's pattern (openai/gpt-2 encoder.py), which the ByteLevel pre-tokenizer applies when use_regex is true:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Qwen2/Qwen3's pattern (transformers tokenization_qwen2.py PRETOKENIZE_REGEX; with maxDigits 3 it is Llama 3's):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case qwen(maxDigits: Int)

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The matcher for a pattern string, if it is one of the known ones (exact text).
    init?(pattern: String) {
        switch pattern {
        case Self.gpt2Pattern: self = .gpt2
        case Self.qwen2Pattern: self = .qwen(maxDigits: 1)
        case Self.llama3Pattern: self = .qwen(maxDigits: 3)
        default: return nil
        }
    }

    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        text.withUnsafeBufferPointer { t in
            var result: [Range<Int>] = []
            result.reserveCapacity(t.count / 4 + 1)
            var i = 0
            while i < t.count {
                let end: Int
                switch self {
                case .gpt2: end = Self.gpt2Match(t, i)
                case let .qwen(maxDigits): end = Self.qwenMatch(t, i, maxDigits: maxDigits)
                }
                result.append(i..<end)
                i = end
            }
            return result
        }
    }

    // Scalar classes of the patterns.
    @inline(__always) private static func isL(_ c: Unicode.Scalar) -> Bool { UnicodeProperties.isLetter(c.value) }
    @inline(__always) private static func isN(_ c: Unicode.Scalar) -> Bool { UnicodeProperties.isNumber(c.value) }
    @inline(__always) private static func isS(_ c: Unicode.Scalar) -> Bool { UnicodeProperties.isWhitespace(c.value) }
    /// [^\s\p{L}\p{N}]
    @inline(__always) private static func isOther(_ c: Unicode.Scalar) -> Bool { !isS(c) && !isL(c) && !isN(c) }
    @inline(__always) private static func isNewline(_ c: Unicode.Scalar) -> Bool { c == "\n" || c == "\r" }

    /// End of the run of scalars satisfying `predicate` from `i`.
    @inline(__always)
    private static func run(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int,
                            _ predicate: (Unicode.Scalar) -> Bool) -> Int {
        var j = i
        while j < t.count && predicate(t[j]) { j += 1 }
        return j
    }

    /// Length of the contraction ('s 't 're 've 'm 'll 'd) at i, 0 if none. `fold` compares case-insensitively as
    /// Oniguruma's (?i) does: ASCII case, plus U+017F LATIN SMALL LETTER LONG S, which folds to "s".
    @inline(__always)
    private static func contraction(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int, ignoreCase: Bool) -> Int {
        guard t[i] == "'", i + 1 < t.count else { return 0 }
        func letter(_ k: Int) -> UInt32 {
            guard k < t.count else { return 0 }
            let v = t[k].value
            guard ignoreCase else { return v }
            if v == 0x17F { return 0x73 }
            return v >= 0x41 && v <= 0x5A ? v + 0x20 : v
        }
        switch letter(i + 1) {
        case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
        case 0x72, 0x76: return letter(i + 2) == 0x65 ? 3 : 0  // re ve
        case 0x6C: return letter(i + 2) == 0x6C ? 3 : 0  // ll
        default: return 0
        }
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar i: the whitespace run, less its last scalar when a non-space follows
    /// and the run is longer than one.
    @inline(__always)
    private static func whitespaceRun(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int) -> Int {
        let j = run(t, i, isS)
        if j == t.count || j - i == 1 { return j }
        return j - 1
    }

    private static func gpt2Match(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int) -> Int {
        let c = t[i]
        let contractionLength = contraction(t, i, ignoreCase: false)
        if contractionLength > 0 { return i + contractionLength }
        // " ?" then a class: the space is taken only if the class follows it.
        var start = i
        if c == " ", i + 1 < t.count, !isS(t[i + 1]) { start = i + 1 }
        let d = t[start]
        if isL(d) { return run(t, start + 1, isL) }
        if isN(d) { return run(t, start + 1, isN) }
        if isOther(d) { return run(t, start + 1, isOther) }
        return whitespaceRun(t, i)
    }

    private static func qwenMatch(_ t: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int, maxDigits: Int) -> Int {
        let c = t[i]
        let n = t.count
        let contractionLength = contraction(t, i, ignoreCase: true)
        if contractionLength > 0 { return i + contractionLength }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !isNewline(c) && !isL(c) && !isN(c) && i + 1 < n && isL(t[i + 1]) { return run(t, i + 2, isL) }
        if isL(c) { return run(t, i + 1, isL) }
        // \p{N}{1,maxDigits}
        if isN(c) {
            var j = i + 1
            while j < n && j - i < maxDigits && isN(t[j]) { j += 1 }
            return j
        }
        // " ?[^\s\p{L}\p{N}]+[\r\n]*"
        var start = i
        if c == " ", i + 1 < n, isOther(t[i + 1]) { start = i + 1 }
        if isOther(t[start]) { return run(t, run(t, start + 1, isOther), isNewline) }
        // \s*[\r\n]+ : up to the last newline of the whitespace run.
        let j = run(t, i, isS)
        var k = j - 1
        while k >= i && !isNewline(t[k]) { k -= 1 }
        if k >= i { return k + 1 }
        return whitespaceRun(t, i)
    }
}
