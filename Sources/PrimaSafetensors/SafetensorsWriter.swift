import PrimaJSON
import PrimaKernels
import PrimaTensor

/// A tensor to be written: name, element type and shape.
public struct SafetensorsTensorSpec: Sendable, Equatable {
    /// The tensor's name.
    public let name: String
    /// Element type.
    public let dtype: DType
    /// Dimensions, outermost first.
    public let shape: [Int]
    /// Bytes of data: the element count × the dtype's size.
    public let byteCount: Int

    /// A tensor spec. Precondition: `shape` has no negative dimension and its byte count fits `Int`
    /// (shapes read from a ``SafetensorsFile`` always do).
    public init(name: String, dtype: DType, shape: [Int]) {
        guard let byteCount = ShapeMath.byteCount(shape, dtype) else {
            preconditionFailure("invalid shape \(ShapeMath.describe(shape)) of \(dtype) for tensor \(name)")
        }
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteCount = byteCount
    }
}

/// Writes one safetensors file: the header at once, then the tensors' bytes as they are appended.
///
/// The header is what the reference writer produces for the same tensors in the same order: compact JSON,
/// `"__metadata__"` first with its keys sorted, each entry's fields in the order dtype, shape, data_offsets,
/// padded with spaces so the data region starts at a multiple of 8. Tensors are laid out back to back in the
/// order given; ordered as the reference orders them (largest element size first), each is then aligned to its
/// element size, so a reader can map them in place.
///
/// The writer writes to `path` directly; making that a temporary file and renaming it is the caller's choice.
public final class SafetensorsWriter {
    /// The file being written.
    public let path: String
    /// Where each tensor goes, in layout order.
    public let layout: [SafetensorsEntry]
    /// N, the header's length including padding.
    public let headerLength: Int
    /// The total bytes of tensor data to append.
    public let dataSize: Int
    /// Data bytes appended so far.
    public private(set) var bytesWritten = 0

    /// The file offset of the data region, 8 + N (a multiple of 8).
    public var dataStart: Int { 8 + headerLength }

    private var file: FileDescriptor?

    /// Creates `path` and writes the header for `tensors`, laid out in the order given.
    ///
    /// Throws if two tensors share a name, a tensor is named `__metadata__`, the header would pass the readers'
    /// 100 MB limit, or the file cannot be created or written.
    public init(path: String, tensors: [SafetensorsTensorSpec], metadata: [String: String]? = nil) throws(SafetensorsError) {
        var header = JSONObject()
        if let metadata {
            let sorted = metadata.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            header[SafetensorsHeader.metadataKey] = .object(JSONObject(sorted.map { ($0.key, .string($0.value)) }))
        }
        var layout: [SafetensorsEntry] = []
        layout.reserveCapacity(tensors.count)
        var offset = 0
        for tensor in tensors {
            guard tensor.name != SafetensorsHeader.metadataKey else {
                throw SafetensorsError(path: path, tensor: tensor.name, "the name is reserved for the header's metadata")
            }
            guard header[tensor.name] == nil else { throw SafetensorsError(path: path, tensor: tensor.name, "listed twice") }
            let (end, overflow) = offset.addingReportingOverflow(tensor.byteCount)
            guard !overflow else { throw SafetensorsError(path: path, tensor: tensor.name, "tensor data passes Int.max bytes") }
            header[tensor.name] = [
                "dtype": .string(tensor.dtype.safetensorsName),
                "shape": .array(tensor.shape.map { .int($0) }),
                "data_offsets": [.int(offset), .int(end)],
            ]
            layout.append(SafetensorsEntry(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, begin: offset, end: end))
            offset = end
        }

        var headerBytes = Array(JSONValue.object(header).serialized().utf8)
        headerBytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8))
        let headerLength = headerBytes.count
        guard headerLength <= SafetensorsFile.maxHeaderLength else {
            throw SafetensorsError(path: path, "header would be \(headerLength) bytes, over the 100 MB limit readers enforce")
        }
        let lengthField = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(headerLength) >> (8 * $0)) }

        let file = try FileDescriptor(writingTo: path)
        try file.write(lengthField + headerBytes)

        self.path = path
        self.layout = layout
        self.headerLength = headerLength
        self.dataSize = offset
        self.file = file
    }

    /// Appends the next `bytes` of tensor data, in layout order; chunks may split or span tensors freely.
    /// Throws if the bytes pass the declared total. Precondition: ``finish()`` has not been called.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(SafetensorsError) {
        guard let file else { preconditionFailure("append to \(path) after finish()") }
        guard bytes.count <= dataSize - bytesWritten else {
            throw SafetensorsError(path: path, "appending \(bytes.count) bytes passes the \(dataSize) bytes of tensor data declared by \(bytes.count - (dataSize - bytesWritten))")
        }
        // At an explicit offset, like appendCopy(from:at:count:), so that the two can be mixed in one file
        // (an export of a quantised checkpoint copies float tensors and writes dequantised ones).
        try file.write(bytes, at: dataStart + bytesWritten, tensor: tensor(at: bytesWritten))
        bytesWritten += bytes.count
        startWritebackPeriodically()
    }

    /// Appends the next `count` bytes of tensor data by copying them in the kernel from `source` at `offset`
    /// (a checkpoint's contiguous dataset), like ``append(_:)`` without passing through user memory.
    public func appendCopy(from source: Int32, at offset: Int, count: Int) throws(SafetensorsError) {
        guard let file else { preconditionFailure("append to \(path) after finish()") }
        guard count <= dataSize - bytesWritten else {
            throw SafetensorsError(path: path, "appending \(count) bytes passes the \(dataSize) bytes of tensor data declared")
        }
        do {
            try FileRangeCopy.copy(from: source, at: offset, to: file.descriptor, at: dataStart + bytesWritten, count: count)
        } catch {
            throw SafetensorsError(path: path, tensor: tensor(at: bytesWritten), "cannot write: \(error.description)")
        }
        bytesWritten += count
        startWritebackPeriodically()
    }

    /// Bytes written when writeback was last started.
    private var writebackMark = 0

    /// Every 64 MiB, asks the kernel to start writing the file back, so the fsync in ``finish()`` overlaps
    /// with the copy instead of waiting for all of it at the end.
    private func startWritebackPeriodically() {
        guard let file, bytesWritten - writebackMark >= 64 << 20 else { return }
        writebackMark = bytesWritten
        _ = prima_start_writeback(file.descriptor)
    }

    /// Checks that every declared byte was appended, then flushes and closes the file. If bytes are missing it
    /// throws and leaves the file open, so appending the rest and finishing again works.
    /// Precondition: no earlier call succeeded.
    public func finish() throws(SafetensorsError) {
        guard let file else { preconditionFailure("finish() called twice on \(path)") }
        guard bytesWritten == dataSize else {
            throw SafetensorsError(path: path, tensor: tensor(at: bytesWritten),
                                   "incomplete: \(bytesWritten) of \(dataSize) bytes of tensor data were appended")
        }
        try file.synchronize()
        self.file = nil
    }

    /// The name of the tensor holding data byte `offset`, for messages.
    private func tensor(at offset: Int) -> String? {
        // The first tensor ending after `offset` holds it (zero-byte tensors hold nothing).
        var low = 0
        var high = layout.count
        while low < high {
            let middle = (low + high) / 2
            if layout[middle].end <= offset { low = middle + 1 } else { high = middle }
        }
        return low < layout.count ? layout[low].name : nil
    }
}

/// How to split tensors into shards of at most a given size, and the `model.safetensors.index.json` that goes
/// with them, as transformers' `save_pretrained` does (huggingface_hub's `split_state_dict_into_shards_factory`).
///
/// Tensors are taken in the order given. A tensor that does not fit in the current shard closes it and starts the
/// next; a tensor larger than the limit gets a shard of its own at once, while the current shard stays open for
/// the tensors after it (so `[4, 20, 4]` with a limit of 10 gives `[20], [4, 4]`). One shard is plain
/// `model.safetensors` with no index; several are `model-00001-of-0000N.safetensors`, ….
public struct SafetensorsShardPlan: Sendable {
    /// One file to write.
    public struct Shard: Sendable {
        /// The file name (no directory).
        public let fileName: String
        /// Its tensors, in layout order.
        public let tensors: [SafetensorsTensorSpec]
        /// The bytes of tensor data in it.
        public let byteCount: Int
    }

    /// The shards, in order.
    public let shards: [Shard]
    /// The bytes of tensor data in all shards.
    public let totalSize: Int

    /// Plans shards of at most `maxShardBytes` bytes of tensor data each (headers not counted, as in
    /// transformers). No tensors give one empty `model.safetensors`.
    /// Preconditions: `maxShardBytes > 0`; tensor names are unique.
    public init(tensors: [SafetensorsTensorSpec], maxShardBytes: Int) {
        precondition(maxShardBytes > 0, "maxShardBytes must be positive, got \(maxShardBytes)")
        precondition(Set(tensors.map(\.name)).count == tensors.count, "duplicate tensor names in a shard plan")
        var groups: [[SafetensorsTensorSpec]] = []
        var current: [SafetensorsTensorSpec] = []
        var currentBytes = 0
        for tensor in tensors {
            if tensor.byteCount > maxShardBytes {
                groups.append([tensor])
                continue
            }
            if tensor.byteCount > maxShardBytes - currentBytes {
                groups.append(current)
                current = []
                currentBytes = 0
            }
            current.append(tensor)
            currentBytes += tensor.byteCount
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }

        let count = groups.count
        shards = groups.enumerated().map { number, group in
            let fileName = count == 1
                ? SafetensorsModel.singleFileName
                : "model-\(SafetensorsShardPlan.fiveDigits(number + 1))-of-\(SafetensorsShardPlan.fiveDigits(count)).safetensors"
            return Shard(fileName: fileName, tensors: group, byteCount: group.reduce(0) { $0 + $1.byteCount })
        }
        totalSize = tensors.reduce(0) { $0 + $1.byteCount }
    }

    /// The index file's text, or nil for a single shard (which needs none), laid out as transformers writes it
    /// (`json.dumps(index, indent=2, sort_keys=True) + "\n"`): `metadata` with `total_parameters` (if given;
    /// transformers 5 writes the model's parameter count there) and `total_size`, then `weight_map` sorted by
    /// tensor name.
    public func indexJSON(totalParameters: Int? = nil) -> String? {
        guard shards.count > 1 else { return nil }
        var entries: [(name: String, shard: String)] = []
        for shard in shards { for tensor in shard.tensors { entries.append((tensor.name, shard.fileName)) } }
        // Byte order, which is code point order: what Python's sort_keys gives.
        entries.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var metadata = JSONObject()
        if let totalParameters { metadata["total_parameters"] = .int(totalParameters) }
        metadata["total_size"] = .int(totalSize)
        let index: JSONValue = [
            "metadata": .object(metadata),
            "weight_map": .object(JSONObject(entries.map { ($0.name, .string($0.shard)) })),
        ]
        return index.serialized(indent: 2) + "\n"
    }

    private static func fiveDigits(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }
}
