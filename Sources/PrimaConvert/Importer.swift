import Crypto
import Dispatch
import Foundation
import PrimaIO
import PrimaCheckpoint
import PrimaJSON
import PrimaModels
import PrimaSafetensors
import PrimaTensor

/// One component to import: a Hugging Face directory and the role it takes (nil: from its model_type).
public struct ImportSource: Sendable {
    public let directory: String
    public let role: ComponentRole?
    public init(directory: String, role: ComponentRole?) {
        self.directory = directory
        self.role = role
    }
}

/// What an import did, for the tool's summary line.
public struct ImportSummary: Sendable {
    public struct Component: Sendable {
        public let role: ComponentRole
        public let architecture: String
        public let tensorCount: Int
        public let parameterCount: Int
        public let bytes: Int
    }
    public let output: String
    public let components: [Component]
    public let seconds: Double
}

/// Imports Hugging Face safetensors directories into one PRIMA checkpoint (Formats/prima-checkpoint.md).
///
/// Everything is validated before the first byte is written; tensors are then streamed from each weight file
/// in file order, in 8 MiB mapped blocks, so memory stays flat whatever the model size: a second thread takes
/// the source file's SHA-256 while this one takes the tensors' CRC-32 and has the kernel copy the same bytes
/// file to file into the datasets' space (as `cp` does).
public enum Importer {
    /// Size of the streaming blocks.
    static let blockBytes = 8 << 20

    /// Runs the import; `warn` receives one line per warning (dropped tensors, untied heads).
    /// With `prima` options, the three components and the PRIMA heads group are assembled into one checkpoint.
    public static func run(_ sources: [ImportSource], output: String, overwrite: Bool, showProgress: Bool,
                           prima: PrimaAssemblyOptions? = nil, warn: @escaping (String) -> Void) throws -> ImportSummary {
        let start = Date()
        guard !sources.isEmpty else { throw ToolError.input("nothing to import") }
        var plans: [ImportPlan] = []
        for source in sources {
            let directory = try HFModelDirectory(path: source.directory)
            let role = source.role ?? directory.architecture.defaultRole
            guard directory.architecture.allowedRoles.contains(role) else {
                throw ToolError.input("\(source.directory): a \(directory.architecture.rawValue) model cannot be the \(role.rawValue)")
            }
            if plans.contains(where: { $0.role == role }) { throw ToolError.input("\(source.directory): two components for \(role.rawValue)") }
            plans.append(try ImportPlan(source: directory, role: role, warn: warn))
        }
        let assembly = try prima.map { options in try ToolError.classify(asInput: true) { try PrimaAssembly(plans: plans, options: options) } }

        let writer = try ToolError.classify(asInput: false) { try CheckpointWriter(destination: output, overwrite: overwrite) }
        let progress = Progress(label: "import", total: plans.reduce(0) { $0 + $1.sourceBytes }, enabled: showProgress)
        var summaries: [ImportSummary.Component] = []
        for plan in plans {
            summaries.append(try write(plan, into: writer, progress: progress, warn: warn))
        }
        progress.finish()
        if let assembly { try ToolError.classify(asInput: false) { try assembly.write(into: writer) } }
        try writer.commit(check: { temporary in try Self.requireReadable(temporary, output: output) })
        return ImportSummary(output: output, components: summaries, seconds: Date().timeIntervalSince(start))
    }

    /// Refuses (bad input, nothing written) a checkpoint that every reader would refuse: the validation every tool
    /// runs at load (StoredValidation: tokenizers against vocab_size, added-token ids, the heads' texts through the
    /// decoder's tokenizer, …), on the complete temporary file before it is renamed into place. Problems are named
    /// as the destination's, the sources being what has to change.
    static func requireReadable(_ temporary: String, output: String) throws {
        do {
            try StoredValidation.validate(try Checkpoint(path: temporary))
        } catch {
            let message = String(describing: error).replacingOccurrences(of: temporary, with: output)
            throw ToolError.input("\(message) (nothing was written: every reader would refuse this checkpoint)")
        }
    }

    private static func write(_ plan: ImportPlan, into writer: CheckpointWriter, progress: PrimaIO.Progress,
                              warn: (String) -> Void) throws -> ImportSummary.Component {
        let source = plan.source
        var tensorCount = 0, parameterCount = 0, storedBytes = 0
        var sourceFiles: [JSONValue] = []
        try ToolError.classify(asInput: false) {
            let component = try writer.addComponent(plan.role)
            let group = component.group
            for (name, bytes) in source.auxiliaryFiles {
                try component.addFile(name, bytes: bytes)
                sourceFiles.append(fileRecord(name: name, size: bytes.count, sha256: bytes.withUnsafeBytes { SHA256.hash(data: $0) }))
            }
            if let index = source.weights.index?.path {
                let bytes = try InputFile.read(index, limit: 100_000_000)
                sourceFiles.append(fileRecord(name: (index as NSString).lastPathComponent, size: bytes.count,
                                              sha256: bytes.withUnsafeBytes { SHA256.hash(data: $0) }))
            }
            try writeFields(source.config.fields, to: try component.subgroup("config"))
            if plan.role == .imageEncoder {
                try writeFields(try source.preprocessing(), to: try component.subgroup("preprocessing"))
            }

            // Stream every weight file once, in order: hash the whole file, store the planned tensors.
            for file in source.weights.files {
                let digest = try stream(file: file, plan: plan, component: component, progress: progress, warn: warn) { action, entry in
                    if case .store = action {
                        tensorCount += 1
                        parameterCount += ShapeMath.elementCount(entry.shape) ?? 0
                        storedBytes += entry.byteCount
                    }
                }
                sourceFiles.append(fileRecord(name: (file.path as NSString).lastPathComponent, size: file.fileSize, sha256: digest))
            }
            for tie in plan.tied where tie.name != tie.target {
                try component.addTiedAlias(name: tie.name, target: tie.target)
            }

            try group.setAttribute("role", string: plan.role.rawValue)
            try group.setAttribute("architecture", string: source.architecture.rawValue)
            try group.setAttribute("hf_model_type", string: source.modelType)
            try group.setAttribute("hf_architectures", string: JSONValue.array(source.hfArchitectures.map { .string($0) }).serialized())
            try group.setAttribute("hf_prefix", string: plan.hfPrefix)
            try group.setAttribute("tensor_count", int: tensorCount)
            try group.setAttribute("parameter_count", int: parameterCount)
            try group.setAttribute("tied", string: JSONValue.array(plan.tied.map { tie in
                .object(JSONObject([("name", .string(tie.name)), ("target", .string(tie.target)),
                                    ("hf_name", tie.hfName.map { .string($0) } ?? .null)]))
            }).serialized())
            try group.setAttribute("dropped", string: JSONValue.array(plan.dropped.map { drop in
                .object(JSONObject([("hf_name", .string(drop.hfName)), ("reason", .string(drop.reason))]))
            }).serialized())
            try group.setAttribute("source_files", string: JSONValue.array(sourceFiles).serialized())
            try group.setAttribute("source_directory", string: (source.path as NSString).standardizingPath.split(separator: "/").last.map(String.init) ?? source.path)
            try group.setAttribute("imported", string: iso8601Now())
        }
        return ImportSummary.Component(role: plan.role, architecture: source.architecture.rawValue, tensorCount: tensorCount,
                                       parameterCount: parameterCount, bytes: storedBytes)
    }

    static func fileRecord(name: String, size: Int, sha256: SHA256.Digest) -> JSONValue {
        let hex = sha256.map { String(format: "%02x", $0) }.joined()
        return .object(JSONObject([("name", .string(name)), ("bytes", .int(size)), ("sha256", .string(hex))]))
    }

    /// Writes typed config fields as attributes of `group` (§3.3).
    static func writeFields(_ fields: [(String, ConfigValue)], to group: HDF5Group) throws {
        for (key, value) in fields {
            switch value {
            case .int(let int): try group.setAttribute(key, int: int)
            case .double(let double): try group.setAttribute(key, double: double)
            case .bool(let bool): try group.setAttribute(key, int: bool ? 1 : 0)
            case .string(let string): try group.setAttribute(key, string: string)
            case .doubles(let doubles): try group.setAttribute(key, doubles: doubles)
            case .json(let json): try group.setAttribute(key, string: json)
            }
        }
    }

    /// One block of the source file, mapped read-only, plus the semaphore the hashing thread signals when it
    /// is done with it. Mapping (instead of reading into a buffer) saves a copy of every byte; unmapping each
    /// block when both threads are done keeps resident memory to a few blocks.
    private final class MappedBlock: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let count: Int
        let hashed = DispatchSemaphore(value: 0)

        init(file: SafetensorsFile, offset: Int, count: Int) throws {
            guard let address = mmap(nil, count, PROT_READ, MAP_SHARED | MAP_POPULATE, file.descriptor, off_t(offset)),
                  address != MAP_FAILED else {
                throw ToolError.input("\(file.path): cannot map bytes \(offset)..<\(offset + count): \(String(cString: strerror(errno)))")
            }
            self.base = address
            self.count = count
        }

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

        deinit { munmap(base, count) }
    }

    /// Checksums the hashing thread owns: the file's SHA-256, each stored tensor's CRC-32 and its count of NaN
    /// and Inf values.
    private final class Checksums: @unchecked Sendable {
        var sha256 = SHA256()
        var crcs: [CRC32]
        var nonFinite: [NonFinite.Counter]
        init(dtypes: [DType]) {
            crcs = Array(repeating: CRC32(), count: dtypes.count)
            nonFinite = dtypes.map(NonFinite.Counter.init(dtype:))
        }
    }

    /// Streams `file` from start to end in mapped blocks: a second thread feeds the file's SHA-256 and the
    /// CRC-32 of each stored tensor while this one has the kernel copy the tensor bytes file to file into their
    /// datasets (the two halves take about the same time). `onTensor` is called once per planned tensor. A tensor
    /// holding NaN or Inf is stored as it is (import keeps the source's bytes), with a warning and its count in
    /// the `non_finite` attribute (Formats/prima-checkpoint.md §5.1).
    private static func stream(file: SafetensorsFile, plan: ImportPlan, component: ComponentWriter, progress: PrimaIO.Progress,
                               warn: (String) -> Void, onTensor: (TensorAction, SafetensorsEntry) -> Void) throws -> SHA256.Digest {
        let planned = plan.tensors.filter { $0.file === file }.sorted { $0.entry.begin < $1.entry.begin }
        // Stored tensors in file order, with their absolute byte ranges and writers (datasets created in order).
        var stored: [(range: Range<Int>, writer: TensorWriter, entry: SafetensorsEntry)] = []
        for item in planned {
            if case .store(let canonical) = item.action {
                let writer = try component.beginTensor(name: canonical, dtype: item.entry.dtype, shape: item.entry.shape,
                                                       hfName: item.entry.name)
                stored.append(((file.dataStart + item.entry.begin)..<(file.dataStart + item.entry.end), writer, item.entry))
            }
        }
        let ranges = stored.map(\.range)
        let hashQueue = DispatchQueue(label: "prima.import.checksums")
        let checksums = Checksums(dtypes: stored.map(\.entry.dtype))
        var inFlight: [MappedBlock] = []
        defer { hashQueue.sync {} }            // no hashing job may outlive its block

        var offset = 0, first = 0              // `first`: the first stored tensor not yet fully written
        while offset < file.fileSize {
            let count = min(blockBytes, file.fileSize - offset)
            let block = try MappedBlock(file: file, offset: offset, count: count)
            let blockRange = offset..<(offset + count)
            let firstInBlock = first
            hashQueue.async {
                checksums.sha256.update(bufferPointer: block.bytes)
                var index = firstInBlock
                while index < ranges.count, ranges[index].lowerBound < blockRange.upperBound {
                    let part = ranges[index].clamped(to: blockRange)
                    let bytes = UnsafeRawBufferPointer(
                        rebasing: block.bytes[(part.lowerBound - blockRange.lowerBound)..<(part.upperBound - blockRange.lowerBound)])
                    checksums.crcs[index].update(bytes)
                    checksums.nonFinite[index].update(bytes)
                    index += 1
                }
                block.hashed.signal()
            }
            while first < stored.count, stored[first].range.lowerBound < blockRange.upperBound {
                let part = stored[first].range.clamped(to: blockRange)
                if !part.isEmpty {
                    let bytes = UnsafeRawBufferPointer(rebasing: block.bytes[(part.lowerBound - offset)..<(part.upperBound - offset)])
                    try stored[first].writer.copy(bytes, from: file.descriptor, at: part.lowerBound)
                }
                guard stored[first].range.upperBound <= blockRange.upperBound else { break }
                first += 1
            }
            inFlight.append(block)
            if inFlight.count > 2 { inFlight.removeFirst().hashed.wait() }
            offset += count
            progress.advance(count)
            if offset % (64 << 20) == 0 { component.startWriteback() }
        }
        for block in inFlight { block.hashed.wait() }
        hashQueue.sync {}
        for (index, tensor) in stored.enumerated() {
            try tensor.writer.finish(checksum: checksums.crcs[index].value)
            let nonFinite = checksums.nonFinite[index].count
            if nonFinite > 0 {
                try tensor.writer.dataset.setAttribute(NonFinite.attribute, int: nonFinite)
                warn("\(file.path): tensor \(tensor.entry.name): \(nonFinite) NaN/Inf values (stored as they are, recorded in its \(NonFinite.attribute) attribute)")
            }
        }
        for item in planned { onTensor(item.action, item.entry) }
        return checksums.sha256.finalize()
    }
}
