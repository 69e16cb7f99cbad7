// Normalizers: the first pipeline stage, applied to each stretch of text between added tokens (tokenizers
// src/normalizers/). Offsets are not tracked (this implementation returns ids, not offset mappings), so each
// normalizer is a plain function of the scalars.

/// Transforms text before pre-tokenization.
protocol Normalizer: Sendable {
    /// Throws only when a regex exceeds its step budget (TokenizerLimits.regexStepsPerScalar).
    func normalize(_ text: [Unicode.Scalar]) throws -> [Unicode.Scalar]
}

/// NFC, NFD, NFKC, NFKD (tokenizers normalizers/unicode.rs).
struct UnicodeNormalizer: Normalizer {
    let form: UnicodeNormalization.Form
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] { UnicodeNormalization.normalize(text, form) }
}

/// `Lowercase`: Rust's `char::to_lowercase`, scalar by scalar.
struct LowercaseNormalizer: Normalizer {
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(text.count)
        for scalar in text { CaseMapping.lowercase(scalar, into: &result) }
        return result
    }
}

/// `Strip`: removes leading and/or trailing White_Space.
struct StripNormalizer: Normalizer {
    let left: Bool
    let right: Bool
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var start = 0, end = text.count
        if left { while start < end && UnicodeProperties.isWhitespace(text[start].value) { start += 1 } }
        if right { while end > start && UnicodeProperties.isWhitespace(text[end - 1].value) { end -= 1 } }
        return start == 0 && end == text.count ? text : Array(text[start..<end])
    }
}

/// `StripAccents`: removes General_Category Mark scalars (usually after NFD/NFKD).
struct StripAccentsNormalizer: Normalizer {
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        text.filter { !UnicodeProperties.isMark($0.value) }
    }
}

/// What Replace and Split look for: a literal string or a regex (the JSON's {"String": ...} or {"Regex": ...}).
enum TextPattern: Sendable {
    case literal([Unicode.Scalar])
    case regex(TokenizerRegex)
    case known(KnownSplitPattern)

    /// Reads {"String": s} or {"Regex": r}.
    init(_ node: JSONNode) throws {
        if let literal = try node.member("String") {
            self = .literal(Array(try literal.string().unicodeScalars))
        } else if let regex = try node.member("Regex") {
            // Where the pattern is, for the error if a search exceeds its step budget.
            let place = "\(regex.document.source): \(regex.path)"
            let pattern = try regex.string()
            if let known = KnownSplitPattern(pattern: pattern) {
                self = .known(known)
            } else {
                do {
                    self = .regex(try TokenizerRegex(pattern, place: place))
                } catch let error as TokenizerError {
                    throw regex.error("\(error)")
                }
            }
        } else {
            throw node.error("expected {\"String\": ...} or {\"Regex\": ...}")
        }
    }

    /// Non-overlapping matches, left to right. A literal pattern matches like the regex of its escaped text (an
    /// empty literal matches nothing).
    func matches(in text: [Unicode.Scalar]) throws -> [Range<Int>] {
        switch self {
        case let .regex(regex): return try regex.matches(in: text)
        case let .known(known): return known.matches(in: text)
        case let .literal(needle): return Self.matches(of: needle, in: text)
        }
    }

    /// Non-overlapping occurrences of `needle`, left to right (none for an empty needle).
    static func matches(of needle: [Unicode.Scalar], in text: [Unicode.Scalar]) -> [Range<Int>] {
        guard !needle.isEmpty, needle.count <= text.count else { return [] }
        var result: [Range<Int>] = []
        var i = 0
        while i + needle.count <= text.count {
            if text[i] == needle[0] && text[i..<(i + needle.count)].elementsEqual(needle) {
                result.append(i..<(i + needle.count))
                i += needle.count
            } else {
                i += 1
            }
        }
        return result
    }
}

/// `Replace`: every match of the pattern becomes `content`.
struct ReplaceNormalizer: Normalizer {
    let pattern: TextPattern
    let content: [Unicode.Scalar]
    /// Where it is in the file, for the error when the result would be too long.
    let place: String

    /// Throws when a regex exceeds its step budget, and, before allocating the result, when the result would grow
    /// the text by more than the growth budget has left (TokenizerLimits.maxTextGrowth).
    func normalize(_ text: [Unicode.Scalar]) throws -> [Unicode.Scalar] {
        let matches = try pattern.matches(in: text)
        let matched = matches.reduce(0) { $0 + $1.count }
        try GrowthBudget.check(before: text.count, after: text.count - matched + matches.count * content.count,
                               place: place)
        return Self.replace(matches, in: text, with: content)
    }

    /// `text` with each of `matches` (non-overlapping, in order) replaced by `content`.
    static func replace(_ matches: [Range<Int>], in text: [Unicode.Scalar], with content: [Unicode.Scalar]) -> [Unicode.Scalar] {
        if matches.isEmpty { return text }
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(text.count)
        var last = 0
        for match in matches {
            result.append(contentsOf: text[last..<match.lowerBound])
            result.append(contentsOf: content)
            last = match.upperBound
        }
        result.append(contentsOf: text[last...])
        return result
    }
}

/// `Prepend`: adds a prefix to non-empty text.
struct PrependNormalizer: Normalizer {
    let prefix: [Unicode.Scalar]
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] { text.isEmpty ? text : prefix + text }
}

/// `Sequence`: normalizers in order, each charged to the growth budget.
struct SequenceNormalizer: Normalizer, ChargesItsStages {
    let normalizers: [any Normalizer]
    /// Where each normalizer is in the file (`tokenizer.json: normalizer.normalizers[1]`).
    let places: [String]
    func normalize(_ text: [Unicode.Scalar]) throws -> [Unicode.Scalar] {
        var text = text
        for (normalizer, place) in zip(normalizers, places) {
            text = try normalizer.normalize(text, chargedTo: place)
        }
        return text
    }
}

extension Normalizer {
    /// `normalize`, with the growth charged to the budget as the stage at `place`.
    func normalize(_ text: [Unicode.Scalar], chargedTo place: String) throws -> [Unicode.Scalar] {
        try charged(self, place: place, inputCount: text.count, count: \.count) { try normalize(text) }
    }
}

/// `BertNormalizer` (tokenizers normalizers/bert.rs): clean_text drops NUL, U+FFFD and control characters and turns
/// whitespace into spaces; handle_chinese_chars puts spaces around CJK ideographs; strip_accents (default: the value
/// of lowercase) is NFD then removal of Mn; lowercase.
struct BertNormalizer: Normalizer {
    let cleanText: Bool
    let handleChineseChars: Bool
    let stripAccents: Bool
    let lowercase: Bool

    private static func isChinese(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B920...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var result = text
        if cleanText {
            result = result.compactMap { scalar in
                // Removed: NUL, U+FFFD and "control" = General_Category Other (Cc Cf Cn Co Cs) except \t \n \r;
                // then White_Space becomes a space (bert.rs is_control, is_whitespace).
                let v = scalar.value
                if v == 0 || v == 0xFFFD { return nil }
                let isTabOrNewline = v == 0x09 || v == 0x0A || v == 0x0D
                if !isTabOrNewline && UnicodeProperties.categoryMask(v).isSubset(of: .other) { return nil }
                return isTabOrNewline || UnicodeProperties.isWhitespace(v) ? " " : scalar
            }
        }
        if handleChineseChars {
            var spaced: [Unicode.Scalar] = []
            spaced.reserveCapacity(result.count)
            for scalar in result {
                if Self.isChinese(scalar.value) {
                    spaced.append(" ")
                    spaced.append(scalar)
                    spaced.append(" ")
                } else {
                    spaced.append(scalar)
                }
            }
            result = spaced
        }
        if stripAccents {
            result = UnicodeNormalization.normalize(result, .nfd).filter { UnicodeProperties.category($0.value) != .Mn }
        }
        if lowercase { result = LowercaseNormalizer().normalize(result) }
        return result
    }
}

enum NormalizerFactory {
    /// Builds a normalizer from its tokenizer.json object, keyed by the exact `type` strings of the tokenizers
    /// library. Null gives nil (no normalization).
    static func make(_ node: JSONNode) throws -> (any Normalizer)? {
        if node.isNull { return nil }
        let type = try node.required("type").string()
        switch type {
        case "NFC": return UnicodeNormalizer(form: .nfc)
        case "NFD": return UnicodeNormalizer(form: .nfd)
        case "NFKC": return UnicodeNormalizer(form: .nfkc)
        case "NFKD": return UnicodeNormalizer(form: .nfkd)
        case "Lowercase": return LowercaseNormalizer()
        case "Strip":
            return StripNormalizer(left: try node.optional("strip_left")?.bool() ?? true,
                                   right: try node.optional("strip_right")?.bool() ?? true)
        case "StripAccents": return StripAccentsNormalizer()
        case "Replace":
            return ReplaceNormalizer(pattern: try TextPattern(node.required("pattern")),
                                     content: Array(try node.required("content").string().unicodeScalars),
                                     place: node.place)
        case "Prepend":
            return PrependNormalizer(prefix: Array(try node.required("prepend").string().unicodeScalars))
        case "Sequence":
            var normalizers: [any Normalizer] = [], places: [String] = []
            for item in try node.required("normalizers").array() {
                guard let normalizer = try make(item) else { continue }
                normalizers.append(normalizer)
                places.append(item.place)
            }
            return SequenceNormalizer(normalizers: normalizers, places: places)
        case "BertNormalizer":
            let lowercase = try node.optional("lowercase")?.bool() ?? true
            return BertNormalizer(cleanText: try node.optional("clean_text")?.bool() ?? true,
                                  handleChineseChars: try node.optional("handle_chinese_chars")?.bool() ?? true,
                                  stripAccents: try node.optional("strip_accents")?.bool() ?? lowercase,
                                  lowercase: lowercase)
        default:
            throw TokenizerError.unsupportedComponent(node.document.source, node.path.isEmpty ? "normalizer" : node.path,
                                                      type)
        }
    }
}
