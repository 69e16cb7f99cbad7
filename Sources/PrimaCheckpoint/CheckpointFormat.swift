import CZlib
import Foundation
import PrimaTensor

/// Names and numbers fixed by Formats/prima-checkpoint.md.
public enum CheckpointFormat {
    /// The root `format` attribute's value.
    public static let name = "prima-checkpoint"
    /// The newest format version this build reads: 2 adds `/training` (Formats/prima-training.md §4). Files without
    /// it are written as version 1.
    public static let version = 2
    /// The version of a file without `/training`, which every writer but `prima-train` writes.
    public static let baseVersion = 1
    /// The `tool` attribute written by this build.
    public static let tool = "prima-toolkit 0.1.0"
    /// Largest auxiliary file (config, tokenizer, …) stored verbatim in `files/`.
    public static let maxAuxiliaryFileBytes = 64 << 20
    /// Auxiliary files copied verbatim from a Hugging Face directory when present (§3.2).
    public static let auxiliaryFileNames = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
        "chat_template.jinja", "preprocessor_config.json",
    ]
    /// The files of the `/prima` heads group (§8).
    public static let headsFileNames = ["labels.json", "prompt.txt", "answer_prefix.txt", "metadata_schema.json"]
}

/// A component's role in a PRIMA checkpoint: the name of its group (§3).
public enum ComponentRole: String, Sendable, CaseIterable, Codable {
    case imageEncoder = "image_encoder"
    case textEncoder = "text_encoder"
    case decoder = "decoder"
}

/// CRC-32 (zlib/PNG polynomial, as Python's `zlib.crc32`), updated incrementally.
public struct CRC32: Sendable {
    /// The checksum of everything fed so far.
    public private(set) var value: UInt32 = 0

    public init() {}

    /// Feeds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var pointer = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        var remaining = bytes.count
        var crc = UInt(value)
        while remaining > 0 {
            let step = min(remaining, Int(UInt32.max))
            crc = crc32(crc, pointer, UInt32(step))
            pointer += step
            remaining -= step
        }
        value = UInt32(truncatingIfNeeded: crc)
    }

    /// The CRC-32 of `bytes` in one call.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }
}

/// ISO 8601 UTC timestamps as the format writes them (`2026-11-29T12:00:00Z`).
public func iso8601Now() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date())
}
