import PrimaJSON
import PrimaTensor

/// One tensor listed in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable, Hashable {
    /// The tensor's name, the header key.
    public let name: String
    /// Element type.
    public let dtype: DType
    /// Dimensions, outermost first (PyTorch order).
    public let shape: [Int]
    /// First byte, relative to the start of the data region (``SafetensorsFile/dataStart``).
    public let begin: Int
    /// One past the last byte, relative to the start of the data region.
    public let end: Int

    /// Number of bytes, `end - begin` (equal to the shape's element count × the dtype's size).
    public var byteCount: Int { end - begin }

    /// An entry; used by the header parser and the writer, which have checked that the fields agree.
    init(name: String, dtype: DType, shape: [Int], begin: Int, end: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.begin = begin
        self.end = end
    }
}

/// A safetensors file, opened and fully validated, read on demand.
///
/// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON header (possibly padded with trailing
/// spaces), then the data region. The header maps each tensor name to `{"dtype", "shape", "data_offsets"}`, the
/// offsets relative to the data region; an optional `"__metadata__"` maps strings to strings.
///
/// Opening checks everything before anything proportional to a count from the file is allocated: the header
/// length against the file size and the 100 MB limit, the JSON (strictly: a repeated tensor name is an error),
/// every entry's fields, dtype, shape and offsets, each shape's byte size against its offsets (with overflow
/// checks), and that the tensors tile the data region exactly: no overlap, no gap, nothing after the last one.
/// These are the reference implementation's rules, plus strict JSON and no unknown entry fields.
///
/// The file stays open until the object goes; reads use `pread`, so threads may read concurrently.
public final class SafetensorsFile: Sendable {
    /// The largest header accepted, as in the reference implementation.
    public static let maxHeaderLength = 100_000_000

    /// The path the file was opened by.
    public let path: String
    /// The file's size in bytes when opened.
    public let fileSize: Int
    /// N, the JSON header's length in bytes (padding included).
    public let headerLength: Int
    /// The file offset of the data region, 8 + N.
    public var dataStart: Int { 8 + headerLength }
    /// The tensors, in data order (by `begin`; tensors of zero bytes at the same offset in header order).
    public let entries: [SafetensorsEntry]
    /// The `__metadata__` map, or nil if the header has none.
    public let metadata: [String: String]?

    private let file: FileDescriptor

    /// The open file descriptor (read-only), for kernel-side copies of tensor bytes.
    public var descriptor: Int32 { file.descriptor }
    private let positions: [String: Int]

    /// Opens and validates the file at `path`.
    public init(path: String) throws(SafetensorsError) {
        let file = try FileDescriptor(readingFrom: path)
        let fileSize = try file.regularFileSize()
        guard fileSize >= 8 else {
            throw SafetensorsError(path: path, "file is \(fileSize) bytes, too short for the 8-byte header length (truncated?)")
        }
        var lengthBytes: UInt64 = 0
        try withUnsafeMutableBytes(of: &lengthBytes) { buffer throws(SafetensorsError) in try file.read(into: buffer, at: 0) }
        let declaredLength = UInt64(littleEndian: lengthBytes)
        // The limit first: a length of garbage is far more likely than a truncated 100 MB header.
        guard declaredLength <= UInt64(SafetensorsFile.maxHeaderLength) else {
            throw SafetensorsError(path: path, "header length \(declaredLength) exceeds the 100 MB limit")
        }
        let headerLength = Int(declaredLength)
        guard headerLength <= fileSize - 8 else {
            throw SafetensorsError(path: path, "header length \(headerLength) extends past end of file (file is \(fileSize) bytes; truncated?)")
        }
        let header = try file.read(count: headerLength, at: 8)

        let parsed = try SafetensorsHeader(header, dataSize: fileSize - 8 - headerLength, path: path)
        self.path = path
        self.fileSize = fileSize
        self.headerLength = headerLength
        self.entries = parsed.entries
        self.metadata = parsed.metadata
        self.file = file
        var positions: [String: Int] = [:]
        positions.reserveCapacity(parsed.entries.count)
        for (position, entry) in parsed.entries.enumerated() { positions[entry.name] = position }
        self.positions = positions
    }

    /// The entry named `name`, or nil.
    public func entry(named name: String) -> SafetensorsEntry? { positions[name].map { entries[$0] } }

    /// Reads bytes `byteRange` of `entry` (relative to the tensor's first byte) into `buffer`.
    ///
    /// Preconditions: `entry` is one of this file's entries, `byteRange` lies within it, and `buffer` holds
    /// exactly `byteRange.count` bytes.
    public func read(_ entry: SafetensorsEntry, byteRange: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws(SafetensorsError) {
        precondition(self.entry(named: entry.name) == entry, "tensor \(entry.name) is not an entry of \(path)")
        precondition(byteRange.lowerBound >= 0 && byteRange.upperBound <= entry.byteCount,
                     "byte range \(byteRange) outside tensor \(entry.name) of \(entry.byteCount) bytes")
        precondition(buffer.count == byteRange.count, "buffer of \(buffer.count) bytes for a range of \(byteRange.count)")
        try file.read(into: buffer, at: dataStart + entry.begin + byteRange.lowerBound, tensor: entry.name)
    }

    /// Reads `buffer.count` bytes from absolute file offset `fileOffset` into `buffer`. Reading past the end of
    /// the file is an error. Precondition: `fileOffset >= 0`.
    public func readRaw(fileOffset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SafetensorsError) {
        precondition(fileOffset >= 0, "negative file offset \(fileOffset)")
        try file.read(into: buffer, at: fileOffset)
    }

    /// The whole of `entry` as a tensor, for small tensors (the bytes are copied into memory).
    public func readTensor(_ entry: SafetensorsEntry) throws(SafetensorsError) -> Tensor {
        let tensor = Tensor(zeros: entry.shape, dtype: entry.dtype)
        try read(entry, byteRange: 0..<entry.byteCount,
                 into: UnsafeMutableRawBufferPointer(rebasing: tensor.storage.bytes[0..<entry.byteCount]))
        return tensor
    }
}

/// A parsed and validated header: the checks of the format, in an order that names the real problem first
/// (a truncated file says so, rather than reporting a gap).
struct SafetensorsHeader {
    /// The tensors, in data order.
    let entries: [SafetensorsEntry]
    /// The `__metadata__` map, if present.
    let metadata: [String: String]?

    static let metadataKey = "__metadata__"
    private static let fields = ["dtype", "shape", "data_offsets"]

    /// Validates `header` (the N header bytes) for a file whose data region is `dataSize` bytes.
    init(_ header: [UInt8], dataSize: Int, path: String) throws(SafetensorsError) {
        let root: JSONValue
        do {
            root = try JSON.parse(header)
        } catch {
            throw SafetensorsHeader.describe(error, path: path)
        }
        guard case .object(let object) = root else {
            throw SafetensorsError(path: path, "header is not a JSON object (it is \(article(root)))")
        }
        // The reference reader requires the header to start with "{", so leading whitespace is not allowed either.
        guard header.first == UInt8(ascii: "{") else {
            throw SafetensorsError(path: path, "header starts with whitespace; it must start with '{'")
        }

        var metadata: [String: String]?
        var entries: [(entry: SafetensorsEntry, headerIndex: Int)] = []
        entries.reserveCapacity(object.count)
        for (headerIndex, (name, value)) in object.enumerated() {
            if name == SafetensorsHeader.metadataKey {
                metadata = try SafetensorsHeader.parseMetadata(value, path: path)
            } else {
                let entry = try SafetensorsHeader.parseEntry(name, value, dataSize: dataSize, path: path)
                entries.append((entry, headerIndex))
            }
        }
        // Header order breaks ties between zero-byte tensors, so writing the entries back in this order
        // reproduces a reference-written header.
        entries.sort { ($0.entry.begin, $0.entry.end, $0.headerIndex) < ($1.entry.begin, $1.entry.end, $1.headerIndex) }
        self.entries = entries.map(\.entry)
        self.metadata = metadata
        try SafetensorsHeader.checkCoverage(self.entries, dataSize: dataSize, path: path)
    }

    /// The header error for a JSON error: duplicate tensor names and invalid UTF-8 in their own words.
    private static func describe(_ error: JSONError, path: String) -> SafetensorsError {
        let location = "header byte \(error.offset)"
        switch error.kind {
        case .duplicateKey(let key) where error.depth == 1:
            if key == metadataKey { return SafetensorsError(path: path, "\"__metadata__\" appears twice in the header (\(location))") }
            return SafetensorsError(path: path, tensor: key, "appears twice in the header (\(location))")
        case .invalidUTF8:
            return SafetensorsError(path: path, "header is not valid UTF-8 (\(location))")
        default:
            return SafetensorsError(path: path, "header is not valid JSON: \(error.message) at \(location)")
        }
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws(SafetensorsError) -> [String: String] {
        guard case .object(let object) = value else {
            throw SafetensorsError(path: path, "\"__metadata__\" is \(article(value)), expected an object mapping strings to strings")
        }
        var metadata: [String: String] = [:]
        for (key, value) in object {
            guard case .string(let text) = value else {
                throw SafetensorsError(path: path, "\"__metadata__\" must map strings to strings, but \(JSON.quoted(key)) is \(article(value))")
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataSize: Int, path: String) throws(SafetensorsError) -> SafetensorsEntry {
        func failure(_ message: String) -> SafetensorsError { SafetensorsError(path: path, tensor: name, message) }

        guard case .object(let fields) = value else {
            throw failure("entry is \(article(value)), expected an object with dtype, shape and data_offsets")
        }
        for (key, _) in fields where !SafetensorsHeader.fields.contains(key) {
            throw failure("unexpected field \(JSON.quoted(key)) (an entry has only dtype, shape and data_offsets)")
        }
        guard let dtypeValue = fields["dtype"] else { throw failure("missing \"dtype\"") }
        guard let shapeValue = fields["shape"] else { throw failure("missing \"shape\"") }
        guard let offsetsValue = fields["data_offsets"] else { throw failure("missing \"data_offsets\"") }

        guard case .string(let dtypeName) = dtypeValue else {
            throw failure("\"dtype\" is \(article(dtypeValue)), expected a string")
        }
        guard let dtype = DType(safetensorsName: dtypeName) else { throw failure("unknown dtype \(JSON.quoted(dtypeName))") }

        guard case .array(let dimensions) = shapeValue else {
            throw failure("\"shape\" is \(article(shapeValue)), expected an array of non-negative integers")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dimensions.count)
        for dimension in dimensions {
            guard case .number(let number) = dimension else {
                throw failure("shape dimension \(excerpt(dimension)) is \(article(dimension)), expected a non-negative integer")
            }
            guard number.isInteger else { throw failure("shape dimension \(number) is not an integer") }
            if number.text.hasPrefix("-"), number.text != "-0" { throw failure("shape dimension \(number) is negative") }
            guard let size = number.uint64.flatMap({ Int(exactly: $0) }) else { throw failure("shape dimension \(number) is too large") }
            shape.append(size)
        }

        guard case .array(let offsets) = offsetsValue, offsets.count == 2,
              let begin = offsets[0].number?.uint64.flatMap({ Int(exactly: $0) }),
              let end = offsets[1].number?.uint64.flatMap({ Int(exactly: $0) }) else {
            throw failure("data_offsets must be two non-negative integers [begin, end], found \(excerpt(offsetsValue))")
        }
        // Built only on failure: formatting these for every tensor of a large header costs more than checking it.
        var range: String { "data_offsets [\(begin), \(end)]" }
        var described: String { "shape \(ShapeMath.describe(shape)) of \(dtype.safetensorsName)" }
        guard begin <= end else { throw failure("\(range) has begin after end") }
        guard let byteCount = ShapeMath.byteCount(shape, dtype) else { throw failure("\(described) overflows the byte count") }
        guard byteCount == end - begin else {
            throw failure("\(described) is \(byteCount) bytes but \(range) span \(end - begin)")
        }
        guard end <= dataSize else {
            throw failure("\(range) extend past end of file (the data region is \(dataSize) bytes; file truncated?)")
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// Checks that `entries` (sorted by offset) tile `0..<dataSize` with no overlap and no gap, as the reference
    /// reader requires: bytes no tensor claims are either corruption or a place to hide data.
    private static func checkCoverage(_ entries: [SafetensorsEntry], dataSize: Int, path: String) throws(SafetensorsError) {
        var covered = 0
        var previous: SafetensorsEntry?
        for entry in entries {
            if entry.begin < covered, let previous {
                throw SafetensorsError(path: path, tensor: entry.name,
                                       "data_offsets [\(entry.begin), \(entry.end)] overlap tensor \(displayName(previous.name)) [\(previous.begin), \(previous.end)]")
            }
            if entry.begin > covered {
                let place = previous.map { "between tensor \(displayName($0.name)) and tensor \(displayName(entry.name))" }
                    ?? "before tensor \(displayName(entry.name)), the first"
                throw uncovered(covered..<entry.begin, place, path: path)
            }
            if entry.end > covered {
                covered = entry.end
                previous = entry
            }
        }
        if covered < dataSize {
            let place = previous.map { "after tensor \(displayName($0.name)), the last" } ?? "and the header lists no tensors"
            throw uncovered(covered..<dataSize, place, path: path)
        }
    }

    private static func uncovered(_ range: Range<Int>, _ place: String, path: String) -> SafetensorsError {
        SafetensorsError(path: path, "\(range.count) bytes of data not covered by any tensor, at data offsets [\(range.lowerBound), \(range.upperBound)) \(place)")
    }
}

/// `a string`, `an array`, … for messages.
func article(_ value: JSONValue) -> String {
    let name = value.typeName
    return (name.first.map { "aeiou".contains($0) } ?? false ? "an " : "a ") + name
}

/// `value` as compact JSON, cut to 60 characters: enough to recognise, and a hostile value cannot flood a message.
func excerpt(_ value: JSONValue) -> String {
    let text = value.serialized()
    return text.count <= 60 ? text : text.prefix(57) + "..."
}
