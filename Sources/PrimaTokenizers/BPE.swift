import CJSONC
import Foundation

// The BPE model (tokenizers src/models/bpe/model.rs and word.rs): each pre-token is split into characters, each
// character looked up in the vocabulary (with continuing_subword_prefix on all but the first, end_of_word_suffix on
// the last; unknown characters become unk_token, fused if fuse_unk, or <0xXX> byte tokens with byte_fallback, or are
// dropped), then merges are applied lowest rank first, leftmost first among equal ranks, one occurrence at a time,
// through a priority queue exactly as Word::merge_all does.

/// Ids of the merge table: (left, right) → (rank, merged id), in an open-addressing hash table (150k merges are
/// looked up several times per word; a Swift Dictionary with SipHash would dominate encoding time).
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: 0, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    /// Key 0 marks an empty slot, so ids are stored plus one.
    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        (UInt64(UInt32(bitPattern: left) &+ 1) << 32) | UInt64(UInt32(bitPattern: right) &+ 1)
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 29) & mask
    }

    /// Inserts or replaces (a later merge of the same pair wins, as when Rust collects the merges into a map).
    mutating func insert(_ left: Int32, _ right: Int32, rank: UInt32, merged: Int32) {
        let key = Self.key(left, right)
        var i = slot(key)
        while keys[i] != 0 && keys[i] != key { i = (i + 1) & mask }
        if keys[i] == 0 { count += 1 }
        keys[i] = key
        values[i] = (UInt64(rank) << 32) | UInt64(UInt32(bitPattern: merged))
    }

    /// (rank, merged id) for the pair, or nil.
    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> (rank: UInt32, merged: Int32)? {
        let key = Self.key(left, right)
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return (UInt32(values[i] >> 32), Int32(bitPattern: UInt32(truncatingIfNeeded: values[i]))) }
            if k == 0 { return nil }
            i = (i + 1) & mask
        }
    }
}

/// Pre-token → ids, for words seen before (tokenizers' BPE cache: at most `capacity` words shorter than 256 scalars,
/// no eviction).
final class BPECache: @unchecked Sendable {
    private var entries: [[Unicode.Scalar]: [Int32]] = [:]
    private let lock = NSLock()
    let capacity: Int
    static let maxWordLength = 256

    init(capacity: Int) { self.capacity = capacity }

    func get(_ word: [Unicode.Scalar]) -> [Int32]? {
        lock.lock()
        defer { lock.unlock() }
        return entries[word]
    }

    func set(_ word: [Unicode.Scalar], _ ids: [Int32]) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count < capacity { entries[word] = ids }
    }
}

final class BPEModel: Sendable {
    let vocabulary: [String: Int32]
    /// id → token (nil for ids the vocabulary skips).
    let tokens: [String?]
    let merges: MergeTable
    let unknownToken: String?
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    let fuseUnknown: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    /// Scalar → id for single characters below 0x400 (the byte-level alphabet ends at U+0143), -1 if absent; used when
    /// there is no prefix or suffix to add.
    private let scalarIds: [Int32]
    private let cache: BPECache?

    static let defaultCacheCapacity = 10_000

    init(vocabulary: [String: Int32], merges: MergeTable, unknownToken: String?, continuingSubwordPrefix: String?,
         endOfWordSuffix: String?, fuseUnknown: Bool, byteFallback: Bool, ignoreMerges: Bool,
         cacheCapacity: Int = BPEModel.defaultCacheCapacity) {
        self.vocabulary = vocabulary
        var maxId: Int32 = -1
        for id in vocabulary.values where id > maxId { maxId = id }
        var tokens = [String?](repeating: nil, count: Int(maxId) + 1)
        var scalarIds = [Int32](repeating: -1, count: 0x400)
        for (token, id) in vocabulary {
            tokens[Int(id)] = token
            let scalars = token.unicodeScalars
            if scalars.count == 1, let scalar = scalars.first, scalar.value < 0x400 { scalarIds[Int(scalar.value)] = id }
        }
        self.tokens = tokens
        self.scalarIds = scalarIds
        self.merges = merges
        self.unknownToken = unknownToken
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.endOfWordSuffix = endOfWordSuffix
        self.fuseUnknown = fuseUnknown
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        cache = cacheCapacity > 0 ? BPECache(capacity: cacheCapacity) : nil
    }

    var vocabularySize: Int { vocabulary.count }

    func tokenToId(_ token: String) -> Int? { vocabulary[token].map(Int.init) }

    func idToToken(_ id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }

    /// Appends the ids of one pre-token.
    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
        if word.isEmpty { return }
        if ignoreMerges, let id = vocabulary[word.string] {
            ids.append(Int(id))
            return
        }
        let cacheable = cache != nil && word.count < BPECache.maxWordLength
        if cacheable, let hit = cache?.get(word) {
            for id in hit { ids.append(Int(id)) }
            return
        }
        let result = mergeWord(word)
        if cacheable { cache?.set(word, result) }
        for id in result { ids.append(Int(id)) }
    }

    /// The initial symbols of a word (BPE::merge_word before merge_all).
    private func symbols(_ word: [Unicode.Scalar]) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        if continuingSubwordPrefix == nil && endOfWordSuffix == nil && unknownToken == nil && !byteFallback {
            // Common byte-level case: every character is (or is not) a vocabulary entry of its own; missing ones are
            // dropped, as merge_word does without unk_token.
            for scalar in word {
                let id: Int32 = scalar.value < 0x400 ? scalarIds[Int(scalar.value)]
                    : (vocabulary[String(Character(scalar))] ?? -1)
                if id >= 0 { symbols.append(id) }
            }
            return symbols
        }
        var pendingUnknown: Int32? = nil
        let unknownId = unknownToken.flatMap { vocabulary[$0] }
        for (index, scalar) in word.enumerated() {
            var piece = String(Character(scalar))
            if index > 0, let prefix = continuingSubwordPrefix { piece = prefix + piece }
            if index == word.count - 1, let suffix = endOfWordSuffix { piece += suffix }
            if let id = vocabulary[piece] {
                if let unknown = pendingUnknown {
                    symbols.append(unknown)
                    pendingUnknown = nil
                }
                symbols.append(id)
                continue
            }
            if byteFallback {
                let byteIds = piece.utf8.map { vocabulary[String(format: "<0x%02X>", $0)] }
                if byteIds.allSatisfy({ $0 != nil }) {
                    // As in merge_word, a pending unknown is not flushed before the byte tokens.
                    symbols.append(contentsOf: byteIds.map { $0! })
                    continue
                }
            }
            if let unknownId {
                if pendingUnknown != nil && !fuseUnknown { symbols.append(pendingUnknown!) }
                // Fused unknowns collapse into the one pending.
                pendingUnknown = unknownId
            }
        }
        if let unknown = pendingUnknown { symbols.append(unknown) }
        return symbols
    }

    /// Word::merge_all: a min-queue of (rank, position) over adjacent pairs; stale entries are skipped.
    private func mergeWord(_ word: [Unicode.Scalar]) -> [Int32] {
        var ids = symbols(word)
        let count = ids.count
        if count < 2 { return ids }
        var previous = [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count { buffer[i] = Int32(i) - 1 }
            initialized = count
        }
        var next = [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count { buffer[i] = i + 1 < count ? Int32(i + 1) : -1 }
            initialized = count
        }
        var removed = [Bool](repeating: false, count: count)
        var queue = MergeQueue()
        for i in 0..<(count - 1) {
            if let merge = merges.lookup(ids[i], ids[i + 1]) {
                queue.push(rank: merge.rank, position: Int32(i), merged: merge.merged)
            }
        }
        while let top = queue.pop() {
            let position = Int(top.position)
            if removed[position] { continue }
            let right = Int(next[position])
            if right < 0 { continue }
            guard let current = merges.lookup(ids[position], ids[right]), current.merged == top.merged else { continue }
            ids[position] = top.merged
            removed[right] = true
            let afterRight = next[right]
            next[position] = afterRight
            if afterRight >= 0 { previous[Int(afterRight)] = Int32(position) }
            let before = previous[position]
            if before >= 0, let merge = merges.lookup(ids[Int(before)], ids[position]) {
                queue.push(rank: merge.rank, position: before, merged: merge.merged)
            }
            if afterRight >= 0, let merge = merges.lookup(ids[position], ids[Int(afterRight)]) {
                queue.push(rank: merge.rank, position: Int32(position), merged: merge.merged)
            }
        }
        var result: [Int32] = []
        result.reserveCapacity(count)
        for i in 0..<count where !removed[i] { result.append(ids[i]) }
        return result
    }
}

/// A binary min-heap ordered by (rank, position), the order of tokenizers' `Merge`.
private struct MergeQueue {
    private var keys: [UInt64] = []
    private var merged: [Int32] = []

    mutating func push(rank: UInt32, position: Int32, merged id: Int32) {
        keys.append((UInt64(rank) << 32) | UInt64(UInt32(bitPattern: position)))
        merged.append(id)
        var child = keys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if keys[parent] <= keys[child] { break }
            keys.swapAt(parent, child)
            merged.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> (position: Int32, merged: Int32)? {
        guard let first = keys.first else { return nil }
        let result = (Int32(bitPattern: UInt32(truncatingIfNeeded: first)), merged[0])
        let lastKey = keys.removeLast(), lastMerged = merged.removeLast()
        if !keys.isEmpty {
            keys[0] = lastKey
            merged[0] = lastMerged
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < keys.count && keys[left] < keys[smallest] { smallest = left }
                if right < keys.count && keys[right] < keys[smallest] { smallest = right }
                if smallest == parent { break }
                keys.swapAt(parent, smallest)
                merged.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return result
    }
}

extension BPEModel {
    /// Builds the model from tokenizer.json's `model` object (BpeBuilder::build and the serde Visitor for BPE).
    static func load(_ node: JSONNode) throws -> BPEModel {
        let vocabNode = try node.required("vocab")
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(vocabNode.isObject ? 1024 : 0)
        try vocabNode.forEachMember { name, value in
            guard let id = RawJSON.int(value), id >= 0, id <= Int(Int32.max) else {
                throw vocabNode.node(value, path: "[\(String(cString: name).debugDescription)]")
                    .error("expected a non-negative integer id")
            }
            vocabulary[String(cString: name)] = Int32(id)
        }

        let prefix = try node.optional("continuing_subword_prefix")?.string()
        let prefixBytes = prefix?.utf8.count ?? 0
        let mergesNode = try node.required("merges")
        var merges = MergeTable(capacity: max(mergesNode.count, 1))
        try mergesNode.forEachElement { rank, element in
            let left: String, right: String
            if let line = RawJSON.string(element) {
                // Legacy form "a b": exactly one space (convert_merges_to_hashmap).
                // Split on the byte: a space followed by a combining mark is one Character but two scalars.
                let parts = line.utf8.split(separator: 0x20, omittingEmptySubsequences: false)
                guard parts.count == 2, let a = String(parts[0]), let b = String(parts[1]) else {
                    throw mergesNode.node(element, path: "[\(rank)]").error("a merge must be \"left right\" with one space")
                }
                left = a
                right = b
            } else if RawJSON.arrayCount(element) == 2, let a = RawJSON.string(RawJSON.element(element, 0)),
                      let b = RawJSON.string(RawJSON.element(element, 1)) {
                left = a
                right = b
            } else {
                throw mergesNode.node(element, path: "[\(rank)]").error("expected \"left right\" or [\"left\", \"right\"]")
            }
            guard let leftId = vocabulary[left], let rightId = vocabulary[right] else {
                let missing = vocabulary[left] == nil ? left : right
                throw mergesNode.node(element, path: "[\(rank)]")
                    .error("merge token \(missing.debugDescription) is not in the vocabulary")
            }
            // The merged token is left + right without the first prefix-length bytes of right (BpeBuilder::build).
            var tail = right
            if prefixBytes > 0 {
                let bytes = Array(right.utf8)
                let rest = bytes.count >= prefixBytes ? Array(bytes[prefixBytes...]) : []
                tail = String(decoding: rest, as: UTF8.self)
                if bytes.count < prefixBytes || Array(tail.utf8) != rest { tail = "\u{FFFF}invalid" }
            }
            guard let mergedId = vocabulary[left + tail] else {
                throw mergesNode.node(element, path: "[\(rank)]")
                    .error("merged token of \(left.debugDescription) and \(right.debugDescription) is not in the vocabulary")
            }
            merges.insert(leftId, rightId, rank: UInt32(rank), merged: mergedId)
        }

        let unknown = try node.optional("unk_token")?.string()
        return BPEModel(vocabulary: vocabulary, merges: merges, unknownToken: unknown,
                        continuingSubwordPrefix: prefix, endOfWordSuffix: try node.optional("end_of_word_suffix")?.string(),
                        fuseUnknown: try node.optional("fuse_unk")?.bool() ?? false,
                        byteFallback: try node.optional("byte_fallback")?.bool() ?? false,
                        ignoreMerges: try node.optional("ignore_merges")?.bool() ?? false)
    }
}
