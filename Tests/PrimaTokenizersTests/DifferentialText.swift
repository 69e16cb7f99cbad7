// Also compiled, outside SwiftPM, by Fixtures/bench/regex-bench.sh (with Tests/Support/SplitMix64.swift).
#if canImport(PrimaTestSupport)
import PrimaTestSupport
#endif

/// The seeded text the differential test feeds both engines: runs drawn from many scripts, digits of several
/// number systems, punctuation and symbols, whitespace of every kind, emoji sequences, combining marks, English
/// contractions in both cases, and the scalars whose case folding is special.
enum DifferentialText {
    static let pools: [[UInt32]] = [
        Array(0x41...0x5A) + Array(0x61...0x7A),  // ASCII letters
        Array(0xC0...0xFF) + Array(0x100...0x17F),  // Latin-1 and Latin Extended-A
        Array(0x391...0x3C9) + Array(0x410...0x44F),  // Greek, Cyrillic
        Array(0x5D0...0x5EA) + Array(0x620...0x64A) + Array(0x660...0x669),  // Hebrew, Arabic, Arabic-Indic digits
        Array(0x905...0x939) + Array(0x93E...0x94D) + Array(0x966...0x96F),  // Devanagari letters, signs, digits
        Array(0xE01...0xE30) + Array(0xE31...0xE3A),  // Thai
        Array(0x4E00...0x4E80) + Array(0x3041...0x3096) + Array(0x30A1...0x30FA) + Array(0xAC00...0xAC40),  // CJK, kana, Hangul
        Array(0x30...0x39) + Array(0xFF10...0xFF19) + [0xB2, 0xB3, 0xB9, 0xBC, 0xBD, 0x2160, 0x2164, 0x2460],  // numbers
        Array(0x21...0x2F) + Array(0x3A...0x40) + Array(0x5B...0x60) + Array(0x7B...0x7E)
            + [0xA1, 0xA7, 0xAB, 0xBB, 0xBF, 0x2013, 0x2014, 0x2018, 0x2019, 0x201C, 0x201D, 0x2026, 0x20AC, 0x3001, 0x3002],
        [0x20, 0x20, 0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C, 0x85, 0xA0, 0x1680, 0x2000, 0x2003, 0x200A, 0x2028, 0x2029,
         0x202F, 0x205F, 0x3000, 0x200B, 0xFEFF],  // whitespace (and two that are not)
        [0x1F600, 0x1F44D, 0x1F3FD, 0x200D, 0x2764, 0xFE0F, 0x1F468, 0x1F469, 0x1F467, 0x1F1FA, 0x1F1F8, 0x2705],  // emoji
        Array(0x300...0x36F) + [0x93C, 0x94D, 0x20DD],  // combining marks
        [0x17F, 0x212A, 0x130, 0x131, 0xDF, 0x1E9E, 0x3A3, 0x3C2, 0x1C5, 0xFB01],  // special case folding
        [0x00, 0x01, 0x1F, 0x7F, 0xAD, 0xE000, 0xFFFD, 0x10FFFD],  // controls, format, private use
    ]
    static let words = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "don't",
                        "it's", "I'M", " 's", "''", "\r\n", "\n\n", "  ", "   x", "123456", "3.14", "x\u{301}", "naïve"]

    /// `count` strings of 0-40 runs each, from `seed`.
    static func strings(count: Int, seed: UInt64) -> [[Unicode.Scalar]] {
        var random = SplitMix64(seed: seed)
        func below(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        return (0..<count).map { _ in
            var text: [Unicode.Scalar] = []
            for _ in 0..<below(41) {
                if below(5) == 0 {
                    text += words[below(words.count)].unicodeScalars
                    continue
                }
                let pool = pools[below(pools.count)]
                for _ in 0..<(1 + below(6)) { text.append(Unicode.Scalar(pool[below(pool.count)])!) }
            }
            return text
        }
    }
}

