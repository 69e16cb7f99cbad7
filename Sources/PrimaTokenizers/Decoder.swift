// Decoders: turn token strings back into text (tokenizers src/decoders/). Each works on the list of token strings
// (decode_chain); the final text is their concatenation.

protocol Decoder: Sendable {
    /// Throws only when a regex exceeds its step budget (TokenizerLimits.regexStepsPerScalar).
    func decodeChain(_ tokens: [String]) throws -> [String]
}

extension Decoder {
    func decode(_ tokens: [String]) throws -> String { try decodeChain(tokens).joined() }
}

/// `ByteLevel`: each token's characters back to bytes (a token with a character outside the byte alphabet, such as
/// an added token, contributes its UTF-8 as is); invalid UTF-8 in the result becomes U+FFFD.
struct ByteLevelDecoder: Decoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        var bytes: [UInt8] = []
        for token in tokens {
            let start = bytes.count
            var mapped = true
            for scalar in token.unicodeScalars {
                guard let byte = ByteLevelAlphabet.byte(for: scalar) else {
                    mapped = false
                    break
                }
                bytes.append(byte)
            }
            if !mapped {
                bytes.removeSubrange(start...)
                bytes.append(contentsOf: token.utf8)
            }
        }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}

/// `Metaspace`: the replacement character becomes a space, except in the first token when a prefix was prepended.
struct MetaspaceDecoder: Decoder {
    let replacement: Unicode.Scalar
    let prependScheme: MetaspacePreTokenizer.PrependScheme

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { index, token in
            var result = String()
            for scalar in token.unicodeScalars {
                if scalar == replacement {
                    if index == 0 && prependScheme != .never { continue }
                    result.unicodeScalars.append(" ")
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
            return result
        }
    }
}

/// `BPEDecoder`: the end-of-word suffix becomes a space (nothing in the last token).
struct BPESuffixDecoder: Decoder {
    let suffix: String
    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { index, token in
            suffix.isEmpty ? token : token.replacingAll(suffix, with: index == tokens.count - 1 ? "" : " ")
        }
    }
}

/// `WordPiece`: tokens without the prefix start a new word; cleanup undoes tokenization spaces around punctuation.
struct WordPieceDecoder: Decoder {
    let prefix: String
    let cleanup: Bool

    static func cleanup(_ text: String) -> String {
        var result = text
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            result = result.replacingAll(from, with: to)
        }
        return result
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { index, token in
            var result = token
            if index != 0 {
                if !prefix.isEmpty && token.unicodeScalars.starts(with: prefix.unicodeScalars) {
                    result = String(String.UnicodeScalarView(token.unicodeScalars.dropFirst(prefix.unicodeScalars.count)))
                } else {
                    result = " " + token
                }
            }
            return cleanup ? Self.cleanup(result) : result
        }
    }
}

/// `Replace`: pattern → content in each token. The growth of all its tokens together is checked before each
/// token's result is allocated.
struct ReplaceDecoder: Decoder {
    let replace: ReplaceNormalizer
    func decodeChain(_ tokens: [String]) throws -> [String] {
        var before = 0, after = 0
        return try tokens.map { token in
            let scalars = Array(token.unicodeScalars)
            let matches = try replace.pattern.matches(in: scalars)
            before += scalars.count
            after += scalars.count - matches.reduce(0) { $0 + $1.count } + matches.count * replace.content.count
            try GrowthBudget.check(before: before, after: after, place: replace.place)
            return ReplaceNormalizer.replace(matches, in: scalars, with: replace.content).string
        }
    }
}

/// `ByteFallback`: runs of <0xXX> tokens become the text of their bytes (one U+FFFD per byte if invalid UTF-8).
struct ByteFallbackDecoder: Decoder {
    private static func byte(_ token: String) -> UInt8? {
        let scalars = Array(token.unicodeScalars)
        guard scalars.count == 6, token.hasPrefix("<0x"), scalars[5] == ">" else { return nil }
        return UInt8(String(String.UnicodeScalarView(scalars[3..<5])), radix: 16)
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        var result: [String] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            let text = String(decoding: pending, as: UTF8.self)
            if Array(text.utf8) == pending {
                result.append(text)
            } else {
                result.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
            }
            pending.removeAll()
        }
        for token in tokens {
            if let byte = Self.byte(token) {
                pending.append(byte)
            } else {
                flush()
                result.append(token)
            }
        }
        flush()
        return result
    }
}

/// `Fuse`: all tokens into one.
struct FuseDecoder: Decoder {
    func decodeChain(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// `Strip`: removes up to `start` leading and `stop` trailing occurrences of a character from each token.
struct StripDecoder: Decoder {
    let content: Unicode.Scalar
    let start: Int
    let stop: Int

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { token in
            let scalars = Array(token.unicodeScalars)
            var startCut = 0
            for i in 0..<min(start, scalars.count) {
                if scalars[i] == content { startCut = i + 1 } else { break }
            }
            var stopCut = scalars.count
            for i in 0..<min(stop, scalars.count) {
                let index = scalars.count - i - 1
                if scalars[index] == content { stopCut = index } else { break }
            }
            return startCut < stopCut ? scalars[startCut..<stopCut].string : ""
        }
    }
}

/// `Sequence`: decoders in order, each charged to the growth budget.
struct SequenceDecoder: Decoder, ChargesItsStages {
    let decoders: [any Decoder]
    /// Where each decoder is in the file (`tokenizer.json: decoder.decoders[1]`).
    let places: [String]
    func decodeChain(_ tokens: [String]) throws -> [String] {
        var tokens = tokens
        for (decoder, place) in zip(decoders, places) { tokens = try decoder.decodeChain(tokens, chargedTo: place) }
        return tokens
    }
}

extension Decoder {
    /// `decodeChain`, with the growth charged to the budget as the stage at `place`.
    func decodeChain(_ tokens: [String], chargedTo place: String) throws -> [String] {
        try charged(self, place: place, inputCount: tokens.scalarCount, count: \.scalarCount) { try decodeChain(tokens) }
    }
}

extension [String] {
    /// The scalars of all the strings.
    var scalarCount: Int { reduce(0) { $0 + $1.unicodeScalars.count } }
}

extension String {
    /// Every non-overlapping occurrence of `target` (scanning left to right) replaced, comparing scalars.
    func replacingAll(_ target: String, with replacement: String) -> String {
        let text = Array(unicodeScalars)
        let matches = TextPattern.matches(of: Array(target.unicodeScalars), in: text)
        return ReplaceNormalizer.replace(matches, in: text, with: Array(replacement.unicodeScalars)).string
    }
}

enum DecoderFactory {
    /// Builds a decoder from its tokenizer.json object, keyed by the exact `type` strings of the tokenizers
    /// library. Null gives nil (tokens joined with spaces).
    static func make(_ node: JSONNode) throws -> (any Decoder)? {
        if node.isNull { return nil }
        let type = try node.required("type").string()
        func scalar(_ key: String) throws -> Unicode.Scalar {
            let value = try node.required(key)
            let scalars = Array(try value.string().unicodeScalars)
            guard scalars.count == 1 else { throw value.error("expected one character") }
            return scalars[0]
        }
        switch type {
        case "ByteLevel": return ByteLevelDecoder()
        case "Metaspace":
            return MetaspaceDecoder(replacement: try scalar("replacement"), prependScheme: try .read(from: node))
        case "BPEDecoder": return BPESuffixDecoder(suffix: try node.optional("suffix")?.string() ?? "</w>")
        case "WordPiece":
            return WordPieceDecoder(prefix: try node.optional("prefix")?.string() ?? "##",
                                    cleanup: try node.optional("cleanup")?.bool() ?? true)
        case "Replace":
            return ReplaceDecoder(replace: ReplaceNormalizer(
                pattern: try TextPattern(node.required("pattern")),
                content: Array(try node.required("content").string().unicodeScalars), place: node.place))
        case "ByteFallback": return ByteFallbackDecoder()
        case "Fuse": return FuseDecoder()
        case "Strip":
            return StripDecoder(content: try scalar("content"), start: try node.optional("start")?.int() ?? 0,
                                stop: try node.optional("stop")?.int() ?? 0)
        case "Sequence":
            var decoders: [any Decoder] = [], places: [String] = []
            for item in try node.required("decoders").array() {
                guard let decoder = try make(item) else { continue }
                decoders.append(decoder)
                places.append(item.place)
            }
            return SequenceDecoder(decoders: decoders, places: places)
        default:
            throw TokenizerError.unsupportedComponent(node.document.source, node.path.isEmpty ? "decoder" : node.path,
                                                      type)
        }
    }
}
