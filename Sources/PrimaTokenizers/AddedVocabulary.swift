// Added and special tokens (tokenizers src/tokenizer/added_vocabulary.rs). They are found in the text before anything
// else: tokens with normalized=false in the raw text, then, after the stretches between them are normalized, tokens
// with normalized=true in the normalized text (matched by their normalized content). Matching is leftmost-longest,
// non-overlapping; single_word rejects a match that touches a word character on either side (the rejected span is
// still skipped, as the Aho-Corasick iteration does); lstrip/rstrip extend the match over adjacent whitespace.

/// One entry of tokenizer.json's `added_tokens`.
public struct AddedToken: Sendable, Equatable {
    public let id: Int
    public let content: String
    public let singleWord: Bool
    public let lstrip: Bool
    public let rstrip: Bool
    public let normalized: Bool
    public let special: Bool
}

/// A trie over scalars for leftmost-longest matching.
private struct ScalarTrie: Sendable {
    private var children: [[UInt32: Int32]] = [[:]]
    /// Token id ending at each node (-1: none).
    private var terminal: [Int] = [-1]
    /// First scalars of all entries, for a quick rejection of most positions.
    private var asciiFirst: (UInt64, UInt64) = (0, 0)
    private var otherFirst: Set<UInt32> = []
    private(set) var isEmpty = true

    mutating func insert(_ scalars: [Unicode.Scalar], id: Int) {
        guard let first = scalars.first else { return }
        isEmpty = false
        let v = first.value
        if v < 64 { asciiFirst.0 |= 1 << UInt64(v) } else if v < 128 { asciiFirst.1 |= 1 << UInt64(v - 64) } else {
            otherFirst.insert(v)
        }
        var node = 0
        for scalar in scalars {
            if let child = children[node][scalar.value] {
                node = Int(child)
            } else {
                children.append([:])
                terminal.append(-1)
                children[node][scalar.value] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        terminal[node] = id
    }

    @inline(__always)
    private func canStart(_ v: UInt32) -> Bool {
        if v < 64 { return asciiFirst.0 & (1 << UInt64(v)) != 0 }
        if v < 128 { return asciiFirst.1 & (1 << UInt64(v - 64)) != 0 }
        return otherFirst.contains(v)
    }

    /// The longest entry starting at `start`: (end, id).
    func longest(in text: [Unicode.Scalar], at start: Int) -> (end: Int, id: Int)? {
        guard canStart(text[start].value) else { return nil }
        var node = 0, best: (Int, Int)? = nil
        var i = start
        while i < text.count, let child = children[node][text[i].value] {
            node = Int(child)
            i += 1
            if terminal[node] >= 0 { best = (i, terminal[node]) }
        }
        return best
    }
}

/// A stretch of input after added-token extraction: an added token's id, or text for the pre-tokenizer.
enum Segment {
    case token(Int)
    case text([Unicode.Scalar], atStart: Bool)
}

struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    private let byId: [Int: AddedToken]
    /// Keyed by UTF-8 bytes: String keys would merge canonically equivalent contents.
    private let idByContent: [[UInt8]: Int]
    /// Normalized content of normalized tokens whose normalization changes them (used to match and to decode).
    private let normalizedContent: [Int: String]
    private let specialContents: Set<[UInt8]>
    private let rawTrie: ScalarTrie
    private let normalizedTrie: ScalarTrie

    /// Reads `added_tokens`; ids are as stored in the file. `normalizer` gives the normalized form of tokens with
    /// normalized=true (AddedVocabulary::add_tokens); `normalizerPlace` names it in errors.
    init(_ node: JSONNode?, normalizer: (any Normalizer)?, normalizerPlace: String) throws {
        var tokens: [AddedToken] = []
        for entry in try node?.array() ?? [] {
            let id = try entry.required("id").int()
            guard id >= 0 else { throw entry.error("negative id") }
            let special = try entry.optional("special")?.bool() ?? false
            tokens.append(AddedToken(id: id, content: try entry.required("content").string(),
                                     singleWord: try entry.optional("single_word")?.bool() ?? false,
                                     lstrip: try entry.optional("lstrip")?.bool() ?? false,
                                     rstrip: try entry.optional("rstrip")?.bool() ?? false,
                                     normalized: try entry.optional("normalized")?.bool() ?? !special,
                                     special: special))
        }
        self.tokens = tokens
        var byId: [Int: AddedToken] = [:]
        var idByContent: [[UInt8]: Int] = [:]
        var normalizedContent: [Int: String] = [:]
        var specialContents: Set<[UInt8]> = []
        var rawTrie = ScalarTrie(), normalizedTrie = ScalarTrie()
        for token in tokens where !token.content.isEmpty {
            byId[token.id] = token
            idByContent[Array(token.content.utf8)] = token.id
            if token.special { specialContents.insert(Array(token.content.utf8)) }
        }
        // One pattern per id (the last entry for an id wins, like the Rust maps).
        for (id, token) in byId.sorted(by: { $0.key < $1.key }) {
            let scalars = Array(token.content.unicodeScalars)
            if token.normalized {
                var pattern = scalars
                if let normalizer {
                    pattern = try normalizer.normalize(scalars, chargedTo: normalizerPlace)
                    if pattern != scalars { normalizedContent[id] = pattern.string }
                }
                normalizedTrie.insert(pattern, id: id)
            } else {
                rawTrie.insert(scalars, id: id)
            }
        }
        self.byId = byId
        self.idByContent = idByContent
        self.normalizedContent = normalizedContent
        self.specialContents = specialContents
        self.rawTrie = rawTrie
        self.normalizedTrie = normalizedTrie
    }

    var isEmpty: Bool { byId.isEmpty }

    func token(for id: Int) -> AddedToken? { byId[id] }

    func id(for content: String) -> Int? { idByContent[Array(content.utf8)] }

    /// The string decoding uses for an added token id (simple_id_to_token): the normalized content when
    /// normalization changed it, else the content.
    func decodingString(for id: Int) -> String? {
        guard let token = byId[id] else { return nil }
        return normalizedContent[id] ?? token.content
    }

    func isSpecial(_ content: String) -> Bool { !specialContents.isEmpty && specialContents.contains(Array(content.utf8)) }

    /// AddedVocabulary::find_matches: ranges that cover the text, each with the id of the added token it is (nil for
    /// the text between).
    private func findMatches(_ text: [Unicode.Scalar], _ trie: ScalarTrie) -> [(range: Range<Int>, id: Int?)] {
        if text.isEmpty { return [(0..<0, nil)] }
        if trie.isEmpty { return [(0..<text.count, nil)] }
        var splits: [(range: Range<Int>, id: Int?)] = []
        var startOffset = 0
        var i = 0
        while i < text.count {
            guard let match = trie.longest(in: text, at: i) else {
                i += 1
                continue
            }
            var start = i, stop = match.end
            i = match.end
            let token = byId[match.id]!
            if token.singleWord {
                let startSpace = start == 0 || !UnicodeProperties.isWord(text[start - 1].value)
                let stopSpace = stop == text.count || !UnicodeProperties.isWord(text[stop].value)
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var newStart = start
                while newStart > 0 && UnicodeProperties.isWhitespace(text[newStart - 1].value) { newStart -= 1 }
                start = max(newStart, startOffset)
            }
            if token.rstrip {
                while stop < text.count && UnicodeProperties.isWhitespace(text[stop].value) { stop += 1 }
            }
            if startOffset < start { splits.append((startOffset..<start, nil)) }
            splits.append((start..<stop, match.id))
            startOffset = stop
        }
        if startOffset != text.count { splits.append((startOffset..<text.count, nil)) }
        return splits
    }

    /// AddedVocabulary::extract_and_normalize: added tokens and normalized stretches of text, in order; empty
    /// stretches are dropped.
    /// `normalizerPlace` names the normalizer in errors (`tokenizer.json: normalizer`).
    func extract(_ text: [Unicode.Scalar], normalizer: (any Normalizer)?, normalizerPlace: String) throws -> [Segment] {
        var segments: [Segment] = []
        for (range, id) in findMatches(text, rawTrie) {
            if let id {
                segments.append(.token(id))
                continue
            }
            if range.isEmpty { continue }
            let piece = Array(text[range])
            let normalized = try normalizer?.normalize(piece, chargedTo: normalizerPlace) ?? piece
            for (subrange, subId) in findMatches(normalized, normalizedTrie) {
                if let subId {
                    segments.append(.token(subId))
                } else if !subrange.isEmpty {
                    segments.append(.text(Array(normalized[subrange]),
                                          atStart: range.lowerBound == 0 && subrange.lowerBound == 0))
                }
            }
        }
        return segments
    }
}
