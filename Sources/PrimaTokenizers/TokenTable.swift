import Foundation

/// A vocabulary: token ↔ id, keyed by the exact UTF-8 bytes of the token.
///
/// Not a `[String: Int]`: Swift compares and hashes strings by canonical equivalence, under which distinct
/// vocabulary entries such as "é" and "e\u{301}" would be one key, and NFC-normalizing every key while hashing made
/// loading a 150k vocabulary spend most of its time in String hashing. Tokens live in one byte arena; an
/// open-addressing table of entry numbers (FNV-1a hashes) finds them.
struct TokenTable: Sendable {
    private var arena: [UInt8] = []
    private var starts: [Int32] = []
    private var lengths: [Int32] = []
    private var entryIds: [Int32] = []
    /// Entry number per slot, -1 for empty.
    private var slots: [Int32]
    /// The high 32 bits of each slot's hash, so that most probes of other tokens are rejected without a memcmp.
    private var tags: [UInt32]
    private var mask: Int
    /// Entry number per id, -1 for ids without a token.
    private var entryById: [Int32] = []

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: -1, count: size)
        tags = [UInt32](repeating: 0, count: size)
        mask = size - 1
        arena.reserveCapacity(capacity * 8)
        starts.reserveCapacity(capacity)
        lengths.reserveCapacity(capacity)
        entryIds.reserveCapacity(capacity)
    }

    var count: Int { entryIds.count }

    @inline(__always)
    private static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01B3
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    @inline(__always)
    private func entryEquals(_ entry: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let length = Int(lengths[entry])
        guard length == bytes.count else { return false }
        let start = Int(starts[entry])
        return arena.withUnsafeBytes { arenaBytes in
            length == 0 || memcmp(arenaBytes.baseAddress! + start, bytes.baseAddress!, length) == 0
        }
    }

    private func find(_ bytes: UnsafeRawBufferPointer) -> (slot: Int, entry: Int?, tag: UInt32) {
        let hash = Self.hash(bytes)
        let tag = UInt32(truncatingIfNeeded: UInt64(bitPattern: Int64(hash)) >> 32)
        var slot = hash & mask
        return slots.withUnsafeBufferPointer { slots in
            tags.withUnsafeBufferPointer { tags in
                while true {
                    let entry = slots[slot]
                    if entry < 0 { return (slot, nil, tag) }
                    if tags[slot] == tag && entryEquals(Int(entry), bytes) { return (slot, Int(entry), tag) }
                    slot = (slot + 1) & mask
                }
            }
        }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [Int32](repeating: -1, count: size)
        tags = [UInt32](repeating: 0, count: size)
        mask = size - 1
        for entry in 0..<entryIds.count {
            let start = Int(starts[entry]), length = Int(lengths[entry])
            let hash = arena.withUnsafeBytes { Self.hash(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
            var slot = hash & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(entry)
            tags[slot] = UInt32(truncatingIfNeeded: UInt64(bitPattern: Int64(hash)) >> 32)
        }
    }

    /// Adds a token, or gives an existing one a new id (the last one wins, as when a map is filled in order).
    mutating func insert(_ bytes: UnsafeRawBufferPointer, id: Int32) {
        precondition(id >= 0, "negative token id")
        if entryIds.count * 2 >= slots.count { grow() }
        let (slot, existing, tag) = find(bytes)
        let entry: Int
        if let existing {
            entry = existing
            entryById[Int(entryIds[entry])] = -1
            entryIds[entry] = id
        } else {
            entry = entryIds.count
            starts.append(Int32(arena.count))
            lengths.append(Int32(bytes.count))
            arena.append(contentsOf: bytes)
            entryIds.append(id)
            slots[slot] = Int32(entry)
            tags[slot] = tag
        }
        if Int(id) >= entryById.count {
            entryById.append(contentsOf: repeatElement(-1, count: Int(id) + 1 - entryById.count))
        }
        entryById[Int(id)] = Int32(entry)
    }

    mutating func insert(_ token: String, id: Int32) {
        var token = token
        token.withUTF8 { insert(UnsafeRawBufferPointer($0), id: id) }
    }

    @inline(__always)
    func id(_ bytes: UnsafeRawBufferPointer) -> Int32? {
        find(bytes).entry.map { entryIds[$0] }
    }

    func id(_ token: String) -> Int32? {
        var token = token
        return token.withUTF8 { id(UnsafeRawBufferPointer($0)) }
    }

    func id(_ bytes: [UInt8]) -> Int32? {
        bytes.withUnsafeBytes { id($0) }
    }

    /// The token of an id, or nil.
    func token(_ id: Int) -> String? {
        guard id >= 0 && id < entryById.count else { return nil }
        let entry = Int(entryById[id])
        guard entry >= 0 else { return nil }
        let start = Int(starts[entry]), length = Int(lengths[entry])
        return String(decoding: arena[start..<(start + length)], as: UTF8.self)
    }
}
