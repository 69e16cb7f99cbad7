import Foundation
import PrimaIO
import PrimaKernels
import PrimaTensor

/// Why a checkpoint could not be written or read: one line naming the file and the object.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    /// The line to show the user.
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Writes a PRIMA checkpoint under a temporary name beside the destination (``OutputTarget``: exclusive,
/// unpredictable, removed on interruption) and renames it into place only on ``commit()``; if the writer is
/// dropped uncommitted (an error was thrown), the temporary is removed.
///
/// Usage: `let w = try CheckpointWriter(destination:overwrite:)`, add components with ``addComponent(_:)``,
/// stream each tensor with ``ComponentWriter/beginTensor(name:dtype:shape:hfName:)``, then ``commit()``.
public final class CheckpointWriter {
    /// Where the checkpoint will be once committed.
    public let destination: String
    /// The temporary file being written.
    public var temporaryPath: String { target.temporaryPath }
    private let target: OutputTarget
    let file: HDF5File
    /// A second, raw descriptor on the temporary file: tensor bytes are copied straight into their datasets'
    /// allocated space through it (HDF5 never caches raw data it did not read or write itself).
    let rawDescriptor: Int32

    /// Starts a checkpoint. Refuses an existing destination unless `overwrite` is true, and always one that is
    /// an input of this process (``OutputTarget``).
    public init(destination: String, overwrite: Bool) throws {
        self.destination = destination
        target = try OutputTarget(destination: destination, kind: .file, overwrite: overwrite)
        // libhdf5 creates the file by path, inside the target's private 0700 directory.
        file = try HDF5File.create(path: target.temporaryPath)
        let root = try file.root()
        try root.setAttribute("format", string: CheckpointFormat.name)
        try root.setAttribute("format_version", int: CheckpointFormat.baseVersion)
        try root.setAttribute("tool", string: CheckpointFormat.tool)
        try root.setAttribute("created", string: iso8601Now())
        rawDescriptor = Foundation.open(target.temporaryPath, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
        guard rawDescriptor >= 0 else {
            throw CheckpointError("\(target.temporaryPath): cannot open for writing: \(String(cString: strerror(errno)))")
        }
    }

    /// Adds the group of one component (role given by the caller; attributes set by the caller).
    /// Drop the returned writer (and anything taken from it) before ``commit()``.
    public func addComponent(_ role: ComponentRole) throws -> ComponentWriter {
        try ComponentWriter(group: try file.root().createGroup(role.rawValue), rawDescriptor: rawDescriptor)
    }

    /// Adds a top-level group such as `prima` (§8).
    public func addGroup(_ name: String) throws -> ComponentWriter {
        try ComponentWriter(group: try file.root().createGroup(name), rawDescriptor: rawDescriptor)
    }

    /// Adds LoRA adapter group `/ROLE/lora/NAME` (§6) to a component already in the file (written or copied);
    /// its attributes are set by the caller (``LoraAdapterInfo/write(to:)``).
    public func addAdapter(role: ComponentRole, name: String) throws -> ComponentWriter {
        let component = try file.root().group(role.rawValue)
        let lora = component.contains("lora") ? try component.group("lora") : try component.createGroup("lora")
        return try ComponentWriter(group: try lora.createGroup(name), rawDescriptor: rawDescriptor)
    }

    /// Copies every top-level group of the checkpoint at `path` (but those in `excluding`) and its root attributes,
    /// except the ones this writer sets itself (`format`, `format_version`, `tool`, `created`): the start of a
    /// modified copy (`lora-import`, `merge-lora`, a training save). A copied `/training` group makes the copy
    /// version 2.
    public func copyContents(of path: String, excluding: Set<String> = []) throws {
        let source = try HDF5File.open(path: path).root()
        let root = try file.root()
        for child in try source.linkNames() where !excluding.contains(child) { try root.copyObject(child, from: source) }
        try root.copyAttributes(from: source, excluding: ["format", "format_version", "tool", "created"])
        if root.contains(TrainingRecord.groupName) { try addTrainingRecord(nil) }
    }

    /// Replaces the values of float32 tensor `path` of the file being written (a copy: `ROLE/tensors/NAME`,
    /// `ROLE/lora/ADAPTER/tensors/X.lora_a|b` or `prima/tensors/NAME`, Formats/prima-trace.md §11.6) by `tensor`,
    /// and its `crc32`. The stored tensor must be float32 of the same shape.
    public func replaceTensor(at path: String, with tensor: Tensor) throws {
        var group = try file.root()
        let parts = path.split(separator: "/").map(String.init)
        for part in parts.dropLast() {
            guard group.contains(part) else { throw CheckpointError("\(destination): no tensor \(path) to replace") }
            group = try group.group(part)
        }
        guard let name = parts.last, group.contains(name) else { throw CheckpointError("\(destination): no tensor \(path) to replace") }
        let dataset = try group.dataset(name)
        let values = tensor.toFloat32()
        guard dataset.storedTypeMatches(.f32), dataset.shape == values.shape else {
            throw CheckpointError("\(destination): \(path) is not a float32 tensor of shape \(ShapeMath.describe(values.shape)); a trained tensor is written back as f32")
        }
        try values.withUnsafeBytes { bytes in
            try dataset.writeAll(bytes)
            try dataset.setAttribute("crc32", int: Int(CRC32.checksum(bytes)))
        }
    }

    /// Marks the file as version 2 and, given a record, writes it as `/training` (Formats/prima-training.md §4).
    public func addTrainingRecord(_ record: TrainingRecord?) throws {
        let root = try file.root()
        try root.setAttribute("format_version", int: TrainingRecord.formatVersion)
        try record?.write(to: root)
    }

    /// The root group of the file being written, for root attributes and for groups copied from another
    /// checkpoint (`prima-quantize`). Drop it before ``commit()``.
    public func rootGroup() throws -> HDF5Group { try file.root() }

    /// Closes the file, runs `check` on it (the complete temporary file, by path: a validation that refuses it keeps
    /// it from ever appearing at the destination), syncs it and renames it to the destination (refusing one that
    /// appeared meanwhile unless `overwrite`).
    public func commit(check: ((String) throws -> Void)? = nil) throws {
        try file.close()
        try check?(target.temporaryPath)
        try target.commit()
    }

    deinit {
        if rawDescriptor >= 0 { Foundation.close(rawDescriptor) }
    }
}

/// Writes one component group: attributes, verbatim files, typed config, tensors.
public final class ComponentWriter {
    /// The component's HDF5 group.
    public let group: HDF5Group
    /// Its `tensors/` group.
    public let tensors: HDF5Group
    private var filesGroup: HDF5Group?
    private let rawDescriptor: Int32

    init(group: HDF5Group, rawDescriptor: Int32) throws {
        self.group = group
        self.rawDescriptor = rawDescriptor
        self.tensors = try group.createGroup("tensors")
    }

    /// Stores `bytes` verbatim as `files/NAME`.
    public func addFile(_ name: String, bytes: [UInt8]) throws {
        if filesGroup == nil { filesGroup = try group.createGroup("files") }
        try filesGroup!.writeBytes(name, bytes)
    }

    /// Creates (once) and returns a child group such as `config` or `preprocessing`.
    public func subgroup(_ name: String) throws -> HDF5Group {
        group.contains(name) ? try group.group(name) : try group.createGroup(name)
    }

    /// Starts a tensor dataset; write its bytes in row order with ``TensorWriter/append(_:)``, then
    /// ``TensorWriter/finish()``.
    public func beginTensor(name: String, dtype: DType, shape: [Int], hfName: String?) throws -> TensorWriter {
        let dataset = try tensors.createDataset(name, dtype: dtype, shape: shape)
        try dataset.setAttribute("dtype", string: dtype.rawValue)
        if let hfName { try dataset.setAttribute("hf_name", string: hfName) }
        return TensorWriter(dataset: dataset, dtype: dtype, shape: shape, rawDescriptor: rawDescriptor)
    }

    /// Writes a whole small tensor from raw bytes.
    public func writeTensor(name: String, dtype: DType, shape: [Int], hfName: String?,
                            bytes: UnsafeRawBufferPointer) throws {
        let writer = try beginTensor(name: name, dtype: dtype, shape: shape, hfName: hfName)
        try writer.append(bytes)
        try writer.finish()
    }

    /// Asks the kernel to start writing the checkpoint's dirty pages back now (without waiting), so the fsync
    /// at ``CheckpointWriter/commit()`` overlaps with streaming instead of flushing everything at the end.
    public func startWriteback() {
        _ = prima_start_writeback(rawDescriptor)
    }

    /// Adds a soft link `tensors/NAME` → `tensors/TARGET` for a tied tensor (§5.3).
    public func addTiedAlias(name: String, target: String) throws {
        try tensors.createSoftLink(name, target: tensors.path + "/" + target)
    }
}

/// Streams one tensor's bytes into its dataset in order: either through HDF5 with ``append(_:)`` (rows split
/// across calls are carried over; the CRC-32 is computed here), or, for bytes that sit in another file, by a
/// kernel copy into the dataset's allocated space with ``copy(_:from:at:)`` (the caller computes the CRC-32,
/// possibly on another thread, and passes it to ``finish(checksum:)``). Use one way per tensor.
public final class TensorWriter {
    /// The dataset being written (for further attributes such as §7's quantisation attributes).
    public let dataset: HDF5Dataset
    let rowBytes: Int
    let rowCount: Int
    let byteCount: Int
    private let rawDescriptor: Int32
    private var crc = CRC32()
    private var rowsWritten = 0
    private var pending: [UInt8] = []
    private var bytesCopied = 0
    private var storageOffset: Int?

    init(dataset: HDF5Dataset, dtype: DType, shape: [Int], rawDescriptor: Int32) {
        self.dataset = dataset
        self.rowCount = shape.first ?? 1
        self.rowBytes = shape.dropFirst().reduce(dtype.byteSize, *)
        self.byteCount = shape.reduce(dtype.byteSize, *)
        self.rawDescriptor = rawDescriptor
    }

    /// Writes the next `bytes` of the tensor, which are also at `offset` of file `source`: the kernel copies them
    /// file to file (falling back to writing `bytes`).
    public func copy(_ bytes: UnsafeRawBufferPointer, from source: Int32, at offset: Int) throws {
        guard bytes.count > 0 else { return }
        if storageOffset == nil { storageOffset = dataset.fileOffset }
        guard let base = storageOffset else {
            throw CheckpointError("\(dataset.file.path): \(dataset.path): dataset has no allocated storage")
        }
        guard bytesCopied + bytes.count <= byteCount else {
            throw CheckpointError("\(dataset.file.path): \(dataset.path): more bytes than the tensor's shape holds")
        }
        do {
            try FileRangeCopy.copy(from: source, at: offset, to: rawDescriptor, at: base + bytesCopied, count: bytes.count,
                                   sameBytes: bytes)
        } catch {
            throw CheckpointError("\(dataset.file.path): \(dataset.path): cannot write: \(error.description)")
        }
        bytesCopied += bytes.count
    }

    /// Appends the next bytes of the tensor (any chunking; rows split across calls are carried over).
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        crc.update(bytes)
        guard rowBytes > 0 else { return }
        var input = bytes
        if !pending.isEmpty {
            let take = min(rowBytes - pending.count, input.count)
            pending.append(contentsOf: input[0..<take])
            input = UnsafeRawBufferPointer(rebasing: input[take...])
            if pending.count == rowBytes {
                try pending.withUnsafeBytes { try writeRows($0, count: 1) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        let wholeRows = input.count / rowBytes
        if wholeRows > 0 {
            try writeRows(UnsafeRawBufferPointer(rebasing: input[0..<(wholeRows * rowBytes)]), count: wholeRows)
        }
        pending.append(contentsOf: input[(wholeRows * rowBytes)...])
    }

    private func writeRows(_ bytes: UnsafeRawBufferPointer, count: Int) throws {
        guard rowsWritten + count <= rowCount else {
            throw CheckpointError("\(dataset.file.path): \(dataset.path): more bytes than the tensor's shape holds")
        }
        try dataset.writeRows(start: rowsWritten, count: count, from: bytes)
        rowsWritten += count
    }

    /// Checks that every byte arrived and records the CRC-32 attribute: `checksum` for a tensor written with
    /// ``copy(_:from:at:)``, the one computed here for ``append(_:)``.
    public func finish(checksum: UInt32? = nil) throws {
        guard pending.isEmpty, rowsWritten == rowCount || rowBytes == 0 || bytesCopied == byteCount else {
            throw CheckpointError("\(dataset.file.path): \(dataset.path): tensor incomplete (\(rowsWritten) of \(rowCount) rows)")
        }
        try dataset.setAttribute("crc32", int: Int(checksum ?? crc.value))
    }
}
