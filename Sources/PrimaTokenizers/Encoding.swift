/// The output of encoding one text or one pair of texts (tokenizers src/tokenizer/encoding.rs, without offsets,
/// words and overflowing parts).
public struct Encoding: Sendable, Equatable {
    /// Token ids.
    public var ids: [Int]
    /// Segment ids: 0 for the first text, 1 for the second of a pair (as the post-processor assigns them).
    public var typeIds: [Int]
    /// 1 for real tokens, 0 for padding.
    public var attentionMask: [Int]
    /// 1 for tokens the post-processor added and for padding, 0 for tokens of the texts.
    public var specialTokensMask: [Int]

    public init(ids: [Int], typeIds: [Int], attentionMask: [Int], specialTokensMask: [Int]) {
        self.ids = ids
        self.typeIds = typeIds
        self.attentionMask = attentionMask
        self.specialTokensMask = specialTokensMask
    }

    /// The tokens of one text: type `typeId`, attended, not special.
    init(sequence ids: [Int], typeId: Int) {
        self.init(ids: ids, typeIds: Array(repeating: typeId, count: ids.count),
                  attentionMask: Array(repeating: 1, count: ids.count),
                  specialTokensMask: Array(repeating: 0, count: ids.count))
    }

    /// Tokens a post-processor adds: attended, special.
    init(special ids: [Int], typeId: Int) {
        self.init(ids: ids, typeIds: Array(repeating: typeId, count: ids.count),
                  attentionMask: Array(repeating: 1, count: ids.count),
                  specialTokensMask: Array(repeating: 1, count: ids.count))
    }

    public var count: Int { ids.count }

    mutating func append(_ other: Encoding) {
        ids += other.ids
        typeIds += other.typeIds
        attentionMask += other.attentionMask
        specialTokensMask += other.specialTokensMask
    }

    static func merged(_ parts: [Encoding]) -> Encoding {
        var result = Encoding(ids: [], typeIds: [], attentionMask: [], specialTokensMask: [])
        for part in parts { result.append(part) }
        return result
    }

    mutating func setTypeIds(_ typeId: Int) { typeIds = Array(repeating: typeId, count: ids.count) }

    /// Keeps `length` tokens: the first ones (right truncation) or the last ones (left truncation).
    mutating func truncate(to length: Int, direction: Truncation.Direction) {
        guard ids.count > length else { return }
        func cut(_ values: [Int]) -> [Int] {
            direction == .right ? Array(values.prefix(length)) : Array(values.suffix(length))
        }
        ids = cut(ids)
        typeIds = cut(typeIds)
        attentionMask = cut(attentionMask)
        specialTokensMask = cut(specialTokensMask)
    }

    /// Pads to `length` tokens (nothing if already that long).
    mutating func pad(to length: Int, with padding: Padding) {
        let missing = length - ids.count
        guard missing > 0 else { return }
        let padIds = Array(repeating: padding.padId, count: missing)
        let padTypes = Array(repeating: padding.padTypeId, count: missing)
        let zeros = Array(repeating: 0, count: missing), ones = Array(repeating: 1, count: missing)
        if padding.direction == .right {
            ids += padIds
            typeIds += padTypes
            attentionMask += zeros
            specialTokensMask += ones
        } else {
            ids = padIds + ids
            typeIds = padTypes + typeIds
            attentionMask = zeros + attentionMask
            specialTokensMask = ones + specialTokensMask
        }
    }
}

/// Truncation settings (tokenizers TruncationParams; `stride` only shapes the overflowing parts, which this
/// implementation does not return, so it is not kept).
public struct Truncation: Sendable, Equatable {
    public enum Direction: String, Sendable { case left, right }
    public enum Strategy: String, Sendable {
        case longestFirst = "longest_first", onlyFirst = "only_first", onlySecond = "only_second"
    }

    /// The maximum number of tokens, special tokens included.
    public var maxLength: Int
    public var strategy: Strategy
    public var direction: Direction

    public init(maxLength: Int, strategy: Strategy = .longestFirst, direction: Direction = .right) {
        self.maxLength = maxLength
        self.strategy = strategy
        self.direction = direction
    }

    /// truncate_encodings (tokenizers src/utils/truncation.rs) with this maximum.
    func apply(_ first: inout Encoding, _ second: inout Encoding?, maxLength: Int) throws {
        if maxLength == 0 {
            first.truncate(to: 0, direction: direction)
            second?.truncate(to: 0, direction: direction)
            return
        }
        let total = first.count + (second?.count ?? 0)
        guard total > maxLength else { return }
        let toRemove = total - maxLength
        switch strategy {
        case .longestFirst:
            guard var pair = second else {
                first.truncate(to: total - toRemove, direction: direction)
                return
            }
            var n1 = first.count, n2 = pair.count
            let swap = n1 > n2
            if swap { (n1, n2) = (n2, n1) }
            n2 = n1 > maxLength ? n1 : max(n1, maxLength - n1)
            if n1 + n2 > maxLength {
                n1 = maxLength / 2
                n2 = n1 + maxLength % 2
            }
            if swap { (n1, n2) = (n2, n1) }
            first.truncate(to: n1, direction: direction)
            pair.truncate(to: n2, direction: direction)
            second = pair
        case .onlyFirst, .onlySecond:
            if strategy == .onlyFirst {
                guard first.count > toRemove else {
                    throw TokenizerError.invalidSettings("truncation: the first sequence is too short to remove \(toRemove) tokens")
                }
                first.truncate(to: first.count - toRemove, direction: direction)
            } else {
                guard var pair = second else {
                    throw TokenizerError.invalidSettings("truncation: only_second needs a pair of sequences")
                }
                guard pair.count > toRemove else {
                    throw TokenizerError.invalidSettings("truncation: the second sequence is too short to remove \(toRemove) tokens")
                }
                pair.truncate(to: pair.count - toRemove, direction: direction)
                second = pair
            }
        }
    }
}

/// Padding settings (tokenizers PaddingParams).
public struct Padding: Sendable, Equatable {
    public enum Direction: String, Sendable { case left, right }
    public enum Strategy: Sendable, Equatable {
        /// Pad every encoding to this many tokens.
        case fixed(Int)
        /// Pad a batch to its longest encoding (a single encoding is unchanged unless pad_to_multiple_of applies).
        case batchLongest
    }

    public var strategy: Strategy
    public var direction: Direction
    public var padToMultipleOf: Int?
    public var padId: Int
    public var padTypeId: Int
    public var padToken: String

    public init(strategy: Strategy, direction: Direction = .right, padToMultipleOf: Int? = nil, padId: Int,
                padTypeId: Int = 0, padToken: String) {
        self.strategy = strategy
        self.direction = direction
        self.padToMultipleOf = padToMultipleOf
        self.padId = padId
        self.padTypeId = padTypeId
        self.padToken = padToken
    }

    /// pad_encodings (tokenizers src/utils/padding.rs).
    func apply(_ encodings: inout [Encoding]) {
        guard !encodings.isEmpty else { return }
        var length: Int
        switch strategy {
        case let .fixed(size): length = size
        case .batchLongest: length = encodings.map(\.count).max() ?? 0
        }
        if let multiple = padToMultipleOf, multiple > 0, length % multiple > 0 { length += multiple - length % multiple }
        for i in encodings.indices { encodings[i].pad(to: length, with: self) }
    }
}
