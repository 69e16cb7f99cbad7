// Pre-tokenizers: split normalized text into the pieces the model encodes one by one (tokenizers
// src/pre_tokenizers/ and NormalizedString::split in src/tokenizer/normalizer.rs). Empty pieces are always dropped,
// as PreTokenizedString::split drops them.

/// One piece of text on its way to the model.
struct PreToken: Sendable {
    var text: [Unicode.Scalar]
    /// Whether the piece starts at offset 0 of the input (Metaspace's prepend_scheme "first" needs it).
    var atStart: Bool
}

protocol PreTokenizer: Sendable {
    /// Throws only when a regex exceeds its step budget (TokenizerLimits.regexStepsPerScalar).
    func preTokenize(_ pieces: [PreToken]) throws -> [PreToken]
}

/// How a split treats the matched delimiters (tokenizers SplitDelimiterBehavior).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"

    init(_ node: JSONNode) throws {
        let name = try node.string()
        guard let behavior = SplitBehavior(rawValue: name) else {
            throw node.error("unknown split behavior \"\(name)\" (Removed, Isolated, MergedWithPrevious, "
                                + "MergedWithNext, Contiguous)")
        }
        self = behavior
    }

    /// Splits `piece` at `segments`, ranges that tile the whole text with a flag saying whether each is a match
    /// (tokenizers Pattern::find_matches output), following NormalizedString::split.
    func split(_ piece: PreToken, _ segments: [(range: Range<Int>, isMatch: Bool)], into output: inout [PreToken]) {
        var kept: [Range<Int>] = []
        kept.reserveCapacity(segments.count)
        switch self {
        case .isolated:
            kept = segments.map(\.range)
        case .removed:
            kept = segments.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            var previous = false
            for segment in segments {
                if segment.isMatch == previous, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previous = segment.isMatch
            }
        case .mergedWithPrevious:
            var previous = false
            for segment in segments {
                if segment.isMatch && !previous, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previous = segment.isMatch
            }
        case .mergedWithNext:
            var previous = false
            for segment in segments.reversed() {
                if segment.isMatch && !previous, let last = kept.last {
                    kept[kept.count - 1] = segment.range.lowerBound..<last.upperBound
                } else {
                    kept.append(segment.range)
                }
                previous = segment.isMatch
            }
            kept.reverse()
        }
        for range in kept where !range.isEmpty {
            output.append(PreToken(text: Array(piece.text[range]), atStart: piece.atStart && range.lowerBound == 0))
        }
    }
}

/// Tiles a text with the matches of a regex: Pattern::find_matches for regexes.
func regexSegments(_ matches: [Range<Int>], count: Int) -> [(range: Range<Int>, isMatch: Bool)] {
    if count == 0 { return [(0..<0, false)] }
    var segments: [(range: Range<Int>, isMatch: Bool)] = []
    segments.reserveCapacity(matches.count * 2 + 1)
    var previous = 0
    for match in matches {
        if previous != match.lowerBound { segments.append((previous..<match.lowerBound, false)) }
        segments.append((match, true))
        previous = match.upperBound
    }
    if previous != count { segments.append((previous..<count, false)) }
    return segments
}

/// Tiles a text by a scalar predicate: Pattern::find_matches for `Fn(char) -> bool` (each matching scalar is its own
/// match; the runs between them are non-matches).
func scalarSegments(_ text: [Unicode.Scalar], _ predicate: (Unicode.Scalar) -> Bool)
    -> [(range: Range<Int>, isMatch: Bool)] {
    if text.isEmpty { return [(0..<0, false)] }
    var segments: [(range: Range<Int>, isMatch: Bool)] = []
    var last = 0
    for (i, scalar) in text.enumerated() where predicate(scalar) {
        if last < i { segments.append((last..<i, false)) }
        segments.append((i..<(i + 1), true))
        last = i + 1
    }
    if text.count > last { segments.append((last..<text.count, false)) }
    return segments
}

/// `Split`: a string or regex pattern, a behavior, and invert (which swaps the match flags).
struct SplitPreTokenizer: PreTokenizer {
    let pattern: TextPattern
    let behavior: SplitBehavior
    let invert: Bool

    func preTokenize(_ pieces: [PreToken]) throws -> [PreToken] {
        var output: [PreToken] = []
        output.reserveCapacity(pieces.count * 4)
        for piece in pieces {
            // Fast path: Isolated with a pattern that tiles the text (the known patterns) needs no segment list.
            if case let .known(known) = pattern, behavior == .isolated {
                for range in known.matches(in: piece.text) {
                    output.append(PreToken(text: Array(piece.text[range]),
                                           atStart: piece.atStart && range.lowerBound == 0))
                }
                continue
            }
            var segments = regexSegments(try pattern.matches(in: piece.text), count: piece.text.count)
            if invert { segments = segments.map { ($0.range, !$0.isMatch) } }
            behavior.split(piece, segments, into: &output)
        }
        return output
    }
}

/// `ByteLevel`: optionally a leading space, optionally the GPT-2 split, then every UTF-8 byte becomes its printable
/// stand-in (ByteLevelAlphabet).
struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool

    static func map(_ text: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(text.count)
        let table = ByteLevelAlphabet.byteToScalar
        var bytes: [UInt8] = []
        for scalar in text {
            if scalar.value < 0x80 {
                output.append(table[Int(scalar.value)])
            } else {
                bytes.removeAll(keepingCapacity: true)
                scalar.appendUTF8(to: &bytes)
                for byte in bytes { output.append(table[Int(byte)]) }
            }
        }
        return output
    }

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var output: [PreToken] = []
        output.reserveCapacity(pieces.count * 4)
        for var piece in pieces {
            // NormalizedString::prepend does nothing to an empty string.
            if addPrefixSpace, let first = piece.text.first, first != " " { piece.text.insert(" ", at: 0) }
            if useRegex {
                for range in KnownSplitPattern.gpt2.matches(in: piece.text) {
                    output.append(PreToken(text: Self.map(piece.text[range]),
                                           atStart: piece.atStart && range.lowerBound == 0))
                }
            } else if !piece.text.isEmpty {
                output.append(PreToken(text: Self.map(piece.text[...]), atStart: piece.atStart))
            }
        }
        return output
    }
}

/// `Whitespace`: the pieces of `\w+|[^\w\s]+` (Rust regex classes); whitespace is dropped.
struct WhitespacePreTokenizer: PreTokenizer {
    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var output: [PreToken] = []
        for piece in pieces {
            let t = piece.text
            var i = 0
            while i < t.count {
                let v = t[i].value
                let isWord = UnicodeProperties.isWord(v)
                if !isWord && UnicodeProperties.isWhitespace(v) {
                    i += 1
                    continue
                }
                var j = i + 1
                while j < t.count {
                    let w = t[j].value
                    let same = isWord ? UnicodeProperties.isWord(w)
                        : !UnicodeProperties.isWord(w) && !UnicodeProperties.isWhitespace(w)
                    if !same { break }
                    j += 1
                }
                output.append(PreToken(text: Array(t[i..<j]), atStart: piece.atStart && i == 0))
                i = j
            }
        }
        return output
    }
}

/// Splits each piece with a scalar predicate and a behavior (WhitespaceSplit, Digits, Punctuation,
/// CharDelimiterSplit, BertPreTokenizer).
struct PredicateSplitPreTokenizer: PreTokenizer {
    let predicate: @Sendable (Unicode.Scalar) -> Bool
    let behavior: SplitBehavior

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var output: [PreToken] = []
        for piece in pieces { behavior.split(piece, scalarSegments(piece.text, predicate), into: &output) }
        return output
    }

    /// Rust's `char::is_ascii_punctuation(c) || c.is_punctuation()` (General_Category P*).
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 128 {
            return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v)
                || (0x7B...0x7E).contains(v)
        }
        return UnicodeProperties.categoryMask(v).isSubset(of: .punctuation)
    }
}

/// `Metaspace`: spaces become the replacement character (usually ▁), which is prepended per prepend_scheme and
/// then, with split, starts each piece (MergedWithNext on the replacement).
struct MetaspacePreTokenizer: PreTokenizer {
    enum PrependScheme: String, Sendable { case always, never, first }
    let replacement: Unicode.Scalar
    let prependScheme: PrependScheme
    let split: Bool

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var output: [PreToken] = []
        for var piece in pieces {
            piece.text = piece.text.map { $0 == " " ? replacement : $0 }
            let prepend: Bool
            switch prependScheme {
            case .always: prepend = piece.text.first != replacement
            case .first: prepend = piece.text.first != replacement && piece.atStart
            case .never: prepend = false
            }
            if prepend && !piece.text.isEmpty { piece.text.insert(replacement, at: 0) }
            if split {
                SplitBehavior.mergedWithNext.split(piece, scalarSegments(piece.text) { $0 == replacement },
                                                   into: &output)
            } else if !piece.text.isEmpty {
                output.append(piece)
            }
        }
        return output
    }
}

/// `Sequence`: pre-tokenizers in order, each charged to the growth budget.
struct SequencePreTokenizer: PreTokenizer, ChargesItsStages {
    let preTokenizers: [any PreTokenizer]
    /// Where each pre-tokenizer is in the file (`tokenizer.json: pre_tokenizer.pretokenizers[1]`).
    let places: [String]
    /// Set for the pipeline of Qwen2/Qwen3 and Llama 3 (Split with a known pattern, isolated, then ByteLevel without
    /// prefix space or regex): both steps then run in one pass, one array per piece instead of two.
    private let fusedSplit: KnownSplitPattern?

    init(preTokenizers: [any PreTokenizer], places: [String]) {
        self.preTokenizers = preTokenizers
        self.places = places
        var fused: KnownSplitPattern? = nil
        if preTokenizers.count == 2, let split = preTokenizers[0] as? SplitPreTokenizer,
           let byteLevel = preTokenizers[1] as? ByteLevelPreTokenizer, case let .known(known) = split.pattern,
           split.behavior == .isolated, !split.invert, !byteLevel.addPrefixSpace, !byteLevel.useRegex {
            fused = known
        }
        fusedSplit = fused
    }

    func preTokenize(_ pieces: [PreToken]) throws -> [PreToken] {
        if let fusedSplit {
            var output: [PreToken] = []
            output.reserveCapacity(pieces.count * 8)
            for piece in pieces {
                for range in fusedSplit.matches(in: piece.text) {
                    output.append(PreToken(text: ByteLevelPreTokenizer.map(piece.text[range]),
                                           atStart: piece.atStart && range.lowerBound == 0))
                }
            }
            // Only the byte-level step grows the text.
            try GrowthBudget.charge(from: pieces.scalarCount, to: output.scalarCount, place: places[1])
            return output
        }
        var pieces = pieces
        for (preTokenizer, place) in zip(preTokenizers, places) {
            pieces = try preTokenizer.preTokenize(pieces, chargedTo: place)
        }
        return pieces
    }
}

extension PreTokenizer {
    /// `preTokenize`, with the growth charged to the budget as the stage at `place`.
    func preTokenize(_ pieces: [PreToken], chargedTo place: String) throws -> [PreToken] {
        try charged(self, place: place, inputCount: pieces.scalarCount, count: \.scalarCount) { try preTokenize(pieces) }
    }
}

extension [PreToken] {
    /// The scalars of all the pieces.
    var scalarCount: Int { reduce(0) { $0 + $1.text.count } }
}

enum PreTokenizerFactory {
    /// Builds a pre-tokenizer from its tokenizer.json object, keyed by the exact `type` strings of the tokenizers
    /// library. Null gives nil (the whole normalized text is one piece).
    static func make(_ node: JSONNode) throws -> (any PreTokenizer)? {
        if node.isNull { return nil }
        let type = try node.required("type").string()
        switch type {
        case "ByteLevel":
            return ByteLevelPreTokenizer(addPrefixSpace: try node.optional("add_prefix_space")?.bool() ?? true,
                                         useRegex: try node.optional("use_regex")?.bool() ?? true)
        case "Split":
            return SplitPreTokenizer(pattern: try TextPattern(node.required("pattern")),
                                     behavior: try SplitBehavior(node.required("behavior")),
                                     invert: try node.optional("invert")?.bool() ?? false)
        case "Whitespace":
            return WhitespacePreTokenizer()
        case "WhitespaceSplit":
            return PredicateSplitPreTokenizer(predicate: { UnicodeProperties.isWhitespace($0.value) },
                                              behavior: .removed)
        case "Digits":
            let individual = try node.optional("individual_digits")?.bool() ?? false
            return PredicateSplitPreTokenizer(predicate: { UnicodeProperties.isNumber($0.value) },
                                              behavior: individual ? .isolated : .contiguous)
        case "Punctuation":
            let behavior = try node.optional("behavior").map { try SplitBehavior($0) } ?? .isolated
            return PredicateSplitPreTokenizer(predicate: PredicateSplitPreTokenizer.isPunctuation, behavior: behavior)
        case "CharDelimiterSplit":
            let delimiter = try node.required("delimiter")
            let scalars = Array(try delimiter.string().unicodeScalars)
            guard scalars.count == 1 else { throw delimiter.error("expected one character") }
            let scalar = scalars[0]
            return PredicateSplitPreTokenizer(predicate: { $0 == scalar }, behavior: .removed)
        case "BertPreTokenizer":
            return SequencePreTokenizer(preTokenizers: [
                PredicateSplitPreTokenizer(predicate: { UnicodeProperties.isWhitespace($0.value) }, behavior: .removed),
                PredicateSplitPreTokenizer(predicate: PredicateSplitPreTokenizer.isPunctuation, behavior: .isolated),
            ], places: [node.place, node.place])
        case "Metaspace":
            let replacementNode = try node.required("replacement")
            let replacement = Array(try replacementNode.string().unicodeScalars)
            guard replacement.count == 1 else { throw replacementNode.error("expected one character") }
            return MetaspacePreTokenizer(replacement: replacement[0], prependScheme: try .read(from: node),
                                         split: try node.optional("split")?.bool() ?? true)
        case "Sequence":
            var preTokenizers: [any PreTokenizer] = [], places: [String] = []
            for item in try node.required("pretokenizers").array() {
                guard let preTokenizer = try make(item) else { continue }
                preTokenizers.append(preTokenizer)
                places.append(item.place)
            }
            return SequencePreTokenizer(preTokenizers: preTokenizers, places: places)
        default:
            throw TokenizerError.unsupportedComponent(node.document.source,
                                                      node.path.isEmpty ? "pre_tokenizer" : node.path, type)
        }
    }
}

extension MetaspacePreTokenizer.PrependScheme {
    /// The scheme a Metaspace section (pre-tokenizer or decoder) asks for: its `prepend_scheme`, defaulting to
    /// `always`; older files say `add_prefix_space: false` for `never`.
    static func read(from node: JSONNode) throws -> Self {
        var scheme = Self.always
        if let schemeNode = try node.optional("prepend_scheme") {
            let name = try schemeNode.string()
            guard let parsed = Self(rawValue: name) else {
                throw schemeNode.error("unknown prepend_scheme \"\(name)\" (always, never, first)")
            }
            scheme = parsed
        }
        if try node.optional("add_prefix_space")?.bool() == false { scheme = .never }
        return scheme
    }
}
