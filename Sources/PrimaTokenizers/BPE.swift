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
    let vocabulary: TokenTable
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

    init(vocabulary: TokenTable, merges: MergeTable, unknownToken: String?, continuingSubwordPrefix: String?,
         endOfWordSuffix: String?, fuseUnknown: Bool, byteFallback: Bool, ignoreMerges: Bool,
         cacheCapacity: Int = BPEModel.defaultCacheCapacity) {
        self.vocabulary = vocabulary
        var scalarIds = [Int32](repeating: -1, count: 0x400)
        for value in 0..<0x400 {
            guard let scalar = Unicode.Scalar(UInt32(value)) else { continue }
            var bytes: [UInt8] = []
            scalar.appendUTF8(to: &bytes)
            scalarIds[value] = vocabulary.id(bytes) ?? -1
        }
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

    func tokenToId(_ token: String) -> Int? { vocabulary.id(token).map(Int.init) }

    func idToToken(_ id: Int) -> String? { vocabulary.token(id) }

    /// The id of the UTF-8 encoding of `prefix` + scalars + `suffix`.
    private func id(_ prefix: String?, _ scalars: some Collection<Unicode.Scalar>, _ suffix: String?) -> Int32? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(scalars.count * 2 + 8)
        if let prefix { bytes.append(contentsOf: prefix.utf8) }
        for scalar in scalars { scalar.appendUTF8(to: &bytes) }
        if let suffix { bytes.append(contentsOf: suffix.utf8) }
        return vocabulary.id(bytes)
    }

    /// Appends the ids of one pre-token.
    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
        if word.isEmpty { return }
        if ignoreMerges, let id = id(nil, word, nil) {
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
                    : (id(nil, CollectionOfOne(scalar), nil) ?? -1)
                if id >= 0 { symbols.append(id) }
            }
            return symbols
        }
        var pendingUnknown: Int32? = nil
        // An unk_token missing from the vocabulary is an error in the Rust library at the first unknown character;
        // here unknown characters are then dropped.
        let unknownId = unknownToken.flatMap { vocabulary.id($0) }
        for (index, scalar) in word.enumerated() {
            let prefix = index > 0 ? continuingSubwordPrefix : nil
            let suffix = index == word.count - 1 ? endOfWordSuffix : nil
            if let id = id(prefix, CollectionOfOne(scalar), suffix) {
                if let unknown = pendingUnknown {
                    symbols.append(unknown)
                    pendingUnknown = nil
                }
                symbols.append(id)
                continue
            }
            if byteFallback {
                // <0xXX> for each byte of the character with its prefix and suffix, as merge_word does.
                var piece = String(Character(scalar))
                if let prefix { piece = prefix + piece }
                if let suffix { piece += suffix }
                let byteIds = piece.utf8.map { vocabulary.id(String(format: "<0x%02X>", $0)) }
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

    /// Word::merge_all: a min-queue of (rank, position) over adjacent pairs; stale entries are skipped. The links
    /// and the queue live in stack-allocated scratch space; removed symbols are marked by next = -2.
    private func mergeWord(_ word: [Unicode.Scalar]) -> [Int32] {
        var ids = symbols(word)
        let count = ids.count
        if count < 2 { return ids }
        // At most count - 1 initial pairs and two new pairs per merge (count - 1 merges at most).
        let queueCapacity = 3 * count
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * count) { links in
            withUnsafeTemporaryAllocation(of: MergeQueue.Entry.self, capacity: queueCapacity) { storage in
                ids.withUnsafeMutableBufferPointer { ids in
                    let previous = UnsafeMutableBufferPointer(rebasing: links[0..<count])
                    let next = UnsafeMutableBufferPointer(rebasing: links[count..<(2 * count)])
                    for i in 0..<count {
                        previous[i] = Int32(i) - 1
                        next[i] = i + 1 < count ? Int32(i + 1) : -1
                    }
                    var queue = MergeQueue(storage: storage)
                    for i in 0..<(count - 1) {
                        if let merge = merges.lookup(ids[i], ids[i + 1]) {
                            queue.push(rank: merge.rank, position: Int32(i), merged: merge.merged)
                        }
                    }
                    while let top = queue.pop() {
                        let position = Int(top.position)
                        let right = Int(next[position])
                        if right < 0 { continue }  // removed (-2) or last (-1)
                        guard let current = merges.lookup(ids[position], ids[right]), current.merged == top.merged else {
                            continue
                        }
                        ids[position] = top.merged
                        let afterRight = next[right]
                        next[right] = -2
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
                }
                // Compact the surviving symbols in place.
                var kept = 0
                for i in 0..<count where links[count + i] != -2 {
                    ids[kept] = ids[i]
                    kept += 1
                }
                ids.removeLast(count - kept)
            }
        }
        return ids
    }
}

/// A binary min-heap ordered by (rank, position), the order of tokenizers' `Merge`, over caller-provided storage.
private struct MergeQueue {
    struct Entry {
        var key: UInt64
        var merged: Int32
    }

    private let storage: UnsafeMutableBufferPointer<Entry>
    private var count = 0

    init(storage: UnsafeMutableBufferPointer<Entry>) { self.storage = storage }

    mutating func push(rank: UInt32, position: Int32, merged: Int32) {
        precondition(count < storage.count, "merge queue overflow")
        var child = count
        let entry = Entry(key: (UInt64(rank) << 32) | UInt64(UInt32(bitPattern: position)), merged: merged)
        count += 1
        while child > 0 {
            let parent = (child - 1) / 2
            if storage[parent].key <= entry.key { break }
            storage[child] = storage[parent]
            child = parent
        }
        storage[child] = entry
    }

    mutating func pop() -> (position: Int32, merged: Int32)? {
        guard count > 0 else { return nil }
        let first = storage[0]
        count -= 1
        if count > 0 {
            let last = storage[count]
            var parent = 0
            while true {
                let left = 2 * parent + 1
                if left >= count { break }
                var smallest = left
                if left + 1 < count && storage[left + 1].key < storage[left].key { smallest = left + 1 }
                if last.key <= storage[smallest].key { break }
                storage[parent] = storage[smallest]
                parent = smallest
            }
            storage[parent] = last
        }
        return (Int32(bitPattern: UInt32(truncatingIfNeeded: first.key)), first.merged)
    }
}

extension BPEModel {
    /// Builds the model from tokenizer.json's `model` object (BpeBuilder::build and the serde Visitor for BPE).
    static func load(_ node: JSONNode) throws -> BPEModel {
        let vocabNode = try node.required("vocab")
        var vocabulary = TokenTable(capacity: max(vocabNode.memberCount, 16))
        try vocabNode.forEachMember { name, value in
            guard let id = RawJSON.int(value), id >= 0, id <= Int(Int32.max) else {
                throw vocabNode.node(value, path: "[\(String(cString: name).debugDescription)]")
                    .error("expected a non-negative integer id")
            }
            vocabulary.insert(UnsafeRawBufferPointer(start: name, count: strlen(name)), id: Int32(id))
        }

        let prefix = try node.optional("continuing_subword_prefix")?.string()
        let prefixBytes = prefix?.utf8.count ?? 0
        let mergesNode = try node.required("merges")
        var merges = MergeTable(capacity: max(mergesNode.count, 1))
        var merged: [UInt8] = []
        func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self).debugDescription }
        try mergesNode.forEachElement { rank, element in
            // The strings are read in place from json-c's buffers: no Swift String per merge.
            let left: UnsafeRawBufferPointer, right: UnsafeRawBufferPointer
            if let line = RawJSON.bytes(element) {
                // Legacy form "a b": exactly one space (convert_merges_to_hashmap splits on ' ' and wants 2 parts).
                guard let space = line.firstIndex(of: 0x20), !line[(space + 1)...].contains(0x20) else {
                    throw mergesNode.node(element, path: "[\(rank)]").error("a merge must be \"left right\" with one space")
                }
                left = UnsafeRawBufferPointer(rebasing: line[..<space])
                right = UnsafeRawBufferPointer(rebasing: line[(space + 1)...])
            } else if RawJSON.arrayCount(element) == 2, let a = RawJSON.bytes(RawJSON.element(element, 0)),
                      let b = RawJSON.bytes(RawJSON.element(element, 1)) {
                left = a
                right = b
            } else {
                throw mergesNode.node(element, path: "[\(rank)]").error("expected \"left right\" or [\"left\", \"right\"]")
            }
            guard let leftId = vocabulary.id(left), let rightId = vocabulary.id(right) else {
                let missing = vocabulary.id(left) == nil ? left : right
                throw mergesNode.node(element, path: "[\(rank)]")
                    .error("merge token \(text(missing)) is not in the vocabulary")
            }
            // The merged token is left + right without its first prefix-length bytes (BpeBuilder::build).
            merged.removeAll(keepingCapacity: true)
            merged.append(contentsOf: left)
            if right.count >= prefixBytes { merged.append(contentsOf: right[prefixBytes...]) }
            guard right.count >= prefixBytes, let mergedId = vocabulary.id(merged) else {
                throw mergesNode.node(element, path: "[\(rank)]")
                    .error("merged token of \(text(left)) and \(text(right)) is not in the vocabulary")
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
