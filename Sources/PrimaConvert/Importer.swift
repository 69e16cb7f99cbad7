import Crypto
import Dispatch
import Foundation
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
/// in file order, in 8 MiB blocks, so memory stays flat whatever the model size. The SHA-256 of each source file
/// is computed on a second thread while the same blocks are written.
public enum Importer {
    /// Size of the streaming blocks.
    static let blockBytes = 8 << 20

    /// Runs the import; `warn` receives one line per warning (dropped tensors, untied heads).
    public static func run(_ sources: [ImportSource], output: String, overwrite: Bool, showProgress: Bool,
                           warn: @escaping (String) -> Void) throws -> ImportSummary {
        let start = Date()
        guard !sources.isEmpty else { throw ConvertError.input("nothing to import") }
        var plans: [ImportPlan] = []
        for source in sources {
            let directory = try HFModelDirectory(path: source.directory)
            let role = source.role ?? directory.architecture.defaultRole
            guard directory.architecture.allowedRoles.contains(role) else {
                throw ConvertError.input("\(source.directory): a \(directory.architecture.rawValue) model cannot be the \(role.rawValue)")
            }
            if plans.contains(where: { $0.role == role }) { throw ConvertError.input("\(source.directory): two components for \(role.rawValue)") }
            plans.append(try ImportPlan(source: directory, role: role, warn: warn))
        }

        if FileManager.default.fileExists(atPath: output) && !overwrite {
            throw ConvertError.input("\(output): already exists (use --force to overwrite)")
        }
        let writer = try classify(asInput: false) { try CheckpointWriter(destination: output, overwrite: overwrite) }
        let progress = Progress(label: "import", total: plans.reduce(0) { $0 + $1.sourceBytes }, enabled: showProgress)
        var summaries: [ImportSummary.Component] = []
        for plan in plans {
            summaries.append(try write(plan, into: writer, progress: progress))
        }
        progress.finish()
        try classify(asInput: false) { try writer.commit() }
        return ImportSummary(output: output, components: summaries, seconds: Date().timeIntervalSince(start))
    }

    private static func write(_ plan: ImportPlan, into writer: CheckpointWriter, progress: Progress) throws -> ImportSummary.Component {
        let source = plan.source
        var tensorCount = 0, parameterCount = 0, storedBytes = 0
        var sourceFiles: [JSONValue] = []
        try classify(asInput: false) {
            let component = try writer.addComponent(plan.role)
            let group = component.group
            for (name, bytes) in source.auxiliaryFiles {
                try component.addFile(name, bytes: bytes)
                sourceFiles.append(fileRecord(name: name, size: bytes.count, sha256: bytes.withUnsafeBytes { SHA256.hash(data: $0) }))
            }
            if let index = source.weights.index?.path {
                let bytes = try readSmallFile(index, limit: 100_000_000)
                sourceFiles.append(fileRecord(name: (index as NSString).lastPathComponent, size: bytes.count,
                                              sha256: bytes.withUnsafeBytes { SHA256.hash(data: $0) }))
            }
            try writeFields(source.config.fields, to: try component.subgroup("config"))
            if plan.role == .imageEncoder {
                try writeFields(try source.preprocessing(), to: try component.subgroup("preprocessing"))
            }

            // Stream every weight file once, in order: hash the whole file, store the planned tensors.
            for file in source.weights.files {
                let digest = try stream(file: file, plan: plan, component: component, progress: progress) { action, entry in
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

    private static func fileRecord(name: String, size: Int, sha256: SHA256.Digest) -> JSONValue {
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

    /// A reusable block plus the semaphore that says the hashing thread is done with it.
    private final class Block: @unchecked Sendable {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: Importer.blockBytes, alignment: 64)
        let free = DispatchSemaphore(value: 1)
        deinit { bytes.deallocate() }
    }

    private final class HashState: @unchecked Sendable {
        var hasher = SHA256()
    }

    /// Reads `file` from start to end in blocks: each block is hashed on a second thread while its tensor
    /// bytes are written here. `onTensor` is called once per planned tensor when its bytes are complete.
    private static func stream(file: SafetensorsFile, plan: ImportPlan, component: ComponentWriter, progress: Progress,
                               onTensor: (TensorAction, SafetensorsEntry) -> Void) throws -> SHA256.Digest {
        let planned = plan.tensors.filter { $0.file === file }.sorted { $0.entry.begin < $1.entry.begin }
        let hashQueue = DispatchQueue(label: "prima.import.sha256")
        let state = HashState()
        let blocks = [Block(), Block(), Block()]
        var next = 0                           // index into `planned` of the tensor being written
        var current: TensorWriter?             // its writer, if it is stored
        var offset = 0                         // file offset of the block
        var blockIndex = 0
        defer { hashQueue.sync {} }            // never leave a hash job running on a freed block

        func startTensor(_ index: Int) throws {
            let item = planned[index]
            if case .store(let canonical) = item.action {
                current = try component.beginTensor(name: canonical, dtype: item.entry.dtype, shape: item.entry.shape,
                                                    hfName: item.entry.name)
            } else {
                current = nil
            }
        }
        if !planned.isEmpty { try startTensor(0) }
        // Zero-size tensors at the current position complete immediately.
        func completeEmptyTensors() throws {
            while next < planned.count, planned[next].entry.byteCount == 0 {
                try current?.finish()
                onTensor(planned[next].action, planned[next].entry)
                next += 1
                if next < planned.count { try startTensor(next) }
            }
        }
        try completeEmptyTensors()

        while offset < file.fileSize {
            let block = blocks[blockIndex % blocks.count]
            blockIndex += 1
            block.free.wait()
            let count = min(blockBytes, file.fileSize - offset)
            let slice = UnsafeMutableRawBufferPointer(rebasing: block.bytes[0..<count])
            try classify(asInput: true) { try file.readRaw(fileOffset: offset, into: slice) }
            let readOnly = UnsafeRawBufferPointer(slice)
            hashQueue.async {
                state.hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: block.bytes[0..<count]))
                block.free.signal()
            }
            // Route the part of the block inside the data region to the tensors it covers.
            var position = offset
            let end = offset + count
            while position < end, next < planned.count {
                let entry = planned[next].entry
                let tensorStart = file.dataStart + entry.begin, tensorEnd = file.dataStart + entry.end
                if position < tensorStart { position = min(tensorStart, end); continue }
                let take = min(tensorEnd, end) - position
                if let current {
                    try current.append(UnsafeRawBufferPointer(rebasing: readOnly[(position - offset)..<(position - offset + take)]))
                }
                position += take
                if position == tensorEnd {
                    try current?.finish()
                    onTensor(planned[next].action, entry)
                    next += 1
                    if next < planned.count { try startTensor(next) }
                    try completeEmptyTensors()
                }
            }
            offset = end
            progress.advance(count)
        }
        guard next == planned.count else {
            throw ConvertError.input("\(file.path): ended before tensor \(planned[next].entry.name) was complete")
        }
        hashQueue.sync {}
        return state.hasher.finalize()
    }
}
