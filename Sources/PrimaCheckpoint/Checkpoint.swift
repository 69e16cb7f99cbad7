import Foundation
import PrimaTensor

/// A PRIMA checkpoint opened for reading. Opening checks the root attributes (§2, §10); components and
/// tensors are read on demand.
public final class Checkpoint {
    /// The file's path.
    public let path: String
    /// The root `format_version`.
    public let formatVersion: Int
    /// The root `tool` attribute.
    public let tool: String
    /// The root `created` attribute.
    public let created: String
    /// The component roles present, in role order.
    public let roles: [ComponentRole]
    /// Other top-level groups (`prima`).
    public let extraGroups: [String]
    let file: HDF5File

    /// Opens and validates `path`: HDF5, the right `format`, a `format_version` this build knows.
    public init(path: String) throws {
        self.path = path
        do {
            file = try HDF5File.open(path: path)
        } catch let error as HDF5Error {
            throw CheckpointError(error.description)
        }
        // The format's library-version bounds (§1) give superblock version 2 or 3, whose metadata carries
        // checksums: a flipped byte in an object header, B-tree or heap is then an error, not garbage.
        let superblock = try file.superblockVersion()
        guard superblock >= 2 else {
            throw CheckpointError("\(path): written without the format's HDF5 library-version bounds (superblock version \(superblock); a PRIMA checkpoint has 2 or newer, with checksummed metadata, §1)")
        }
        let root = try file.root()
        guard root.hasAttribute("format") else {
            throw CheckpointError("\(path): not a PRIMA checkpoint (no root attribute \"format\")")
        }
        let format = try root.stringAttribute("format")
        guard format == CheckpointFormat.name else {
            throw CheckpointError("\(path): not a PRIMA checkpoint (format is \"\(format)\", expected \"\(CheckpointFormat.name)\")")
        }
        guard root.hasAttribute("format_version"), let version = try? root.intAttribute("format_version") else {
            throw CheckpointError("\(path): missing or non-integer root attribute format_version")
        }
        guard version >= 1 else { throw CheckpointError("\(path): invalid format_version \(version)") }
        guard version <= CheckpointFormat.version else {
            throw CheckpointError("\(path): format_version \(version) was written by a newer toolkit; this build reads up to \(CheckpointFormat.version)")
        }
        formatVersion = version
        tool = (try? root.stringAttribute("tool")) ?? ""
        created = (try? root.stringAttribute("created")) ?? ""
        var roles: [ComponentRole] = []
        var extra: [String] = []
        for name in try root.linkNames() {
            if let role = ComponentRole(rawValue: name) {
                roles.append(role)
            } else if name == "prima" {
                extra.append(name)
            } else if name == TrainingRecord.groupName, version >= TrainingRecord.formatVersion {
                extra.append(name)
            } else {
                throw CheckpointError("\(path): unknown top-level group \"\(name)\"")
            }
        }
        guard !roles.isEmpty || !extra.isEmpty else { throw CheckpointError("\(path): checkpoint has no components") }
        self.roles = ComponentRole.allCases.filter(roles.contains)
        self.extraGroups = extra
    }

    /// Opens the component of `role` and checks its required attributes and children (§3.1, §3.2); throws
    /// naming the role if the checkpoint has none.
    public func component(_ role: ComponentRole) throws -> ComponentReader {
        guard roles.contains(role) else { throw CheckpointError("\(path): checkpoint has no \(role.rawValue) component") }
        let component = try ComponentReader(checkpoint: self, group: try file.root().group(role.rawValue))
        for attribute in ComponentReader.requiredAttributes where !component.group.hasAttribute(attribute) {
            throw CheckpointError("\(path): \(role.rawValue): missing required attribute \(attribute)")
        }
        for child in ["config", "tensors"] where !component.group.contains(child) {
            throw CheckpointError("\(path): \(role.rawValue): missing required group \(child)")
        }
        guard try component.fileNames().contains("config.json") else {
            throw CheckpointError("\(path): \(role.rawValue): missing required files/config.json")
        }
        return component
    }

    /// Opens a top-level group laid out like a component (`prima`, §8).
    public func group(_ name: String) throws -> ComponentReader {
        try ComponentReader(checkpoint: self, group: try file.root().group(name))
    }
}

/// One tensor as stored: its canonical name, type, shape and attributes, or a tied alias.
public struct TensorRecord: Sendable {
    /// Canonical name (§4).
    public let name: String
    /// Logical dtype from the `dtype` attribute.
    public let dtype: DType
    /// Shape.
    public let shape: [Int]
    /// The source name (`hf_name` attribute), if any.
    public let hfName: String?
    /// The stored CRC-32.
    public let crc32: UInt32?
    /// For a tied alias (soft link): the canonical name it points at.
    public let aliasOf: String?

    public init(name: String, dtype: DType, shape: [Int], hfName: String?, crc32: UInt32?, aliasOf: String?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.hfName = hfName
        self.crc32 = crc32
        self.aliasOf = aliasOf
    }

    /// Bytes of the tensor's data.
    public var byteCount: Int { shape.reduce(dtype.byteSize, *) }
}

/// Reads one component group.
public final class ComponentReader {
    /// Attributes every component group must carry (§3.1).
    public static let requiredAttributes = ["role", "architecture", "tensor_count", "parameter_count", "tied"]

    /// The checkpoint it belongs to.
    public let checkpoint: Checkpoint
    /// The component's group.
    public let group: HDF5Group
    /// The group's name (the role, or `prima`).
    public var name: String { String(group.path.dropFirst()) }

    init(checkpoint: Checkpoint, group: HDF5Group) throws {
        self.checkpoint = checkpoint
        self.group = group
    }

    private func fail(_ what: String) -> CheckpointError {
        CheckpointError("\(checkpoint.path): \(name): \(what)")
    }

    /// A string attribute of the component group.
    public func attribute(_ key: String) throws -> String {
        do { return try group.stringAttribute(key) } catch let error as HDF5Error { throw CheckpointError(error.description) }
    }

    /// The names of the verbatim files (§3.2).
    public func fileNames() throws -> [String] {
        group.contains("files") ? try group.group("files").linkNames() : []
    }

    /// The bytes of verbatim file `fileName`; throws if absent.
    public func file(_ fileName: String) throws -> [UInt8] {
        guard group.contains("files"), try group.group("files").contains(fileName) else {
            throw fail("no file \(fileName)")
        }
        let dataset = try group.group("files").dataset(fileName)
        guard dataset.shape.count == 1, dataset.elementSize == 1 else { throw fail("files/\(fileName) is not a byte array") }
        return try dataset.readAllBytes(limit: CheckpointFormat.maxAuxiliaryFileBytes)
    }

    /// The `config/` (or other) subgroup, for typed attributes.
    public func subgroup(_ subgroupName: String) throws -> HDF5Group {
        guard group.contains(subgroupName) else { throw fail("missing group \(subgroupName)") }
        return try group.group(subgroupName)
    }

    /// Every tensor record in storage order (aliases included, after their position in creation order),
    /// validated against the format: `dtype` attribute known and matching the stored HDF5 type, contiguous and
    /// unfiltered layout.
    public func tensorRecords() throws -> [TensorRecord] {
        let tensors = try subgroup("tensors")
        var records: [TensorRecord] = []
        for tensorName in try tensors.linkNames() {
            switch try tensors.linkKind(tensorName) {
            case .softLink(let target):
                let prefix = tensors.path + "/"
                guard target.hasPrefix(prefix) else { throw fail("tied tensor \(tensorName) points outside tensors/: \(target)") }
                let targetName = String(target.dropFirst(prefix.count))
                let stored = try record(tensors: tensors, name: targetName)
                records.append(TensorRecord(name: tensorName, dtype: stored.dtype, shape: stored.shape,
                                            hfName: nil, crc32: stored.crc32, aliasOf: targetName))
            case .dataset:
                records.append(try record(tensors: tensors, name: tensorName))
            default:
                throw fail("tensors/\(tensorName) is not a dataset")
            }
        }
        return records
    }

    private func record(tensors: HDF5Group, name tensorName: String) throws -> TensorRecord {
        guard tensors.contains(tensorName), case .dataset = try tensors.linkKind(tensorName) else {
            throw fail("tensor \(tensorName) is missing")
        }
        let dataset = try tensors.dataset(tensorName)
        guard dataset.hasAttribute("dtype") else { throw fail("tensor \(tensorName) has no dtype attribute") }
        let dtypeName = try dataset.stringAttribute("dtype")
        guard let dtype = DType(rawValue: dtypeName) else { throw fail("tensor \(tensorName) has unknown dtype \"\(dtypeName)\"") }
        guard dataset.storedTypeMatches(dtype) else {
            throw fail("tensor \(tensorName): stored HDF5 type does not match its dtype attribute \(dtypeName)")
        }
        guard dataset.isContiguousUnfiltered else { throw fail("tensor \(tensorName) is not contiguous and unfiltered") }
        guard ShapeMath.byteCount(dataset.shape, dtype) != nil else { throw fail("tensor \(tensorName) has an impossible shape") }
        let hfName = dataset.hasAttribute("hf_name") ? try dataset.stringAttribute("hf_name") : nil
        // Required (§5.1): without it the bytes cannot be checked, and a copy that computed one would launder them.
        guard dataset.hasAttribute("crc32") else { throw fail("tensor \(tensorName): no crc32 attribute") }
        let crc = try dataset.intAttribute("crc32")
        // Truncating an out-of-range value would let a copy rewrite it as a valid checksum of unchecked bytes.
        guard crc >= 0 && crc <= Int(UInt32.max) else { throw fail("tensor \(tensorName): crc32 attribute \(crc) is outside 0...\(UInt32.max)") }
        return TensorRecord(name: tensorName, dtype: dtype, shape: dataset.shape, hfName: hfName, crc32: UInt32(crc), aliasOf: nil)
    }

    /// Opens the dataset of a stored (non-alias) tensor for streaming reads.
    public func dataset(forTensor tensorName: String) throws -> HDF5Dataset {
        try subgroup("tensors").dataset(tensorName)
    }

    /// Reads a whole tensor in its stored dtype.
    public func readTensor(_ record: TensorRecord) throws -> Tensor {
        let dataset = try dataset(forTensor: record.aliasOf ?? record.name)
        let tensor = Tensor(zeros: record.shape, dtype: record.dtype)
        if record.byteCount > 0 {
            try dataset.readRows(start: 0, count: record.shape.first ?? 1,
                                 into: UnsafeMutableRawBufferPointer(rebasing: tensor.storage.bytes[0..<record.byteCount]))
        }
        return tensor
    }

    /// Streams a stored tensor's bytes in row blocks of about `blockBytes`, in order.
    public func streamTensor(_ record: TensorRecord, blockBytes: Int = 16 << 20,
                             _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let dataset = try dataset(forTensor: record.aliasOf ?? record.name)
        let rows = record.shape.first ?? 1
        let rowBytes = record.shape.isEmpty ? record.dtype.byteSize : record.shape.dropFirst().reduce(record.dtype.byteSize, *)
        guard rowBytes > 0, rows > 0 else { return }
        let rowsPerBlock = max(1, blockBytes / rowBytes)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(rows, rowsPerBlock) * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        var start = 0
        while start < rows {
            let count = min(rowsPerBlock, rows - start)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(count * rowBytes)])
            try dataset.readRows(start: start, count: count, into: slice)
            try body(UnsafeRawBufferPointer(slice))
            start += count
        }
    }
}
