import Foundation
import PrimaCheckpoint
import PrimaModels
import PrimaIO
import PrimaJSON
import PrimaTensor

/// Writes an int8-quantised copy of a PRIMA checkpoint (Formats/prima-checkpoint.md §7).
///
/// The output is a new file, written beside the destination and renamed into place only when complete. What is
/// not quantised is copied exactly with H5Ocopy (bytes and attributes): root attributes (`tool` and `created`
/// renewed, `quantization` added), component attributes (`tensor_count` and `parameter_count` recounted),
/// `files/`, `config/`, `preprocessing/`, `lora/` and any other child of a component, float tensors, tied soft
/// links, and the `/prima` group. A quantised tensor `X` becomes an int8 dataset `X` (its `hf_name` kept) and
/// an f32 dataset `X.scales`, streamed in row blocks so that memory stays at a few blocks whatever the size.
public enum CheckpointQuantizer {
    /// How to quantise.
    public struct Options: Sendable {
        public var scheme: Int8Scheme
        public var rules: KeepFloatRules
        /// Rows per streamed block are chosen to keep each block's float32 copy near this size.
        public var blockBytes: Int

        public init(scheme: Int8Scheme = .perChannel, rules: KeepFloatRules, blockBytes: Int = 16 << 20) {
            self.scheme = scheme
            self.rules = rules
            self.blockBytes = blockBytes
        }
    }

    /// One candidate tensor's outcome, reported as it is written.
    public struct TensorReport: Sendable {
        public let component: String
        public let name: String
        public let shape: [Int]
        public let sourceDType: DType
        /// nil when the tensor was kept float.
        public let sqnrDecibels: Double?
        /// Why it was kept float, when it was.
        public let keptFloatReason: String?
    }

    /// What a run did.
    public struct Summary: Sendable {
        public let output: String
        public let quantizedTensors: Int
        /// Bytes of every dataset in the components' `tensors/` groups, before and after.
        public let tensorBytesBefore: Int
        public let tensorBytesAfter: Int
        /// Sizes of the two files.
        public let fileBytesBefore: Int
        public let fileBytesAfter: Int
        public let seconds: Double
    }

    /// Quantises `input` into `output`. `report` receives every candidate (rank-2 float tensor) in storage order.
    public static func run(input: String, output: String, options: Options, overwrite: Bool,
                           report: (TensorReport) -> Void) throws -> Summary {
        let start = Date()
        let checkpoint = try ToolError.classify(asInput: true) { try Checkpoint(path: input) }
        // Every stored part first, as every tool does before reading weights: a defect is refused, never copied on.
        try ToolError.classify(asInput: true) { try StoredValidation.validate(checkpoint) }
        // Plan everything (and refuse bad input) before creating the output.
        var plans: [ComponentPlan] = []
        for role in try ToolError.classify(asInput: true, { try checkpointOrder(checkpoint) }) {
            plans.append(try ToolError.classify(asInput: true) { try ComponentPlan(try checkpoint.component(role), options: options) })
        }

        let writer = try ToolError.classify(asInput: false) { try CheckpointWriter(destination: output, overwrite: overwrite) }
        var counts = (quantized: 0, before: 0, after: 0)
        let scratch = Scratch()
        for plan in plans {
            let written = try write(plan, into: writer, options: options, scratch: scratch, report: report)
            counts.quantized += written.quantized
            counts.before += written.before
            counts.after += written.after
        }
        try ToolError.classify(asInput: false) {
            let root = try writer.rootGroup()
            let source = try HDF5File.open(path: input).root()
            try root.copyAttributes(from: source, excluding: ["format", "format_version", "tool", "created", "quantization"])
            if checkpoint.extraGroups.contains("prima") { try root.copyObject("prima", from: source) }
            try root.setAttribute("quantization", string: JSONValue.object(JSONObject([
                ("scheme", .string(options.scheme.rawValue)),
                ("keep_float", .array(options.rules.patterns.map { .string($0) })),
                ("quantize_embeddings", .bool(options.rules.quantizeEmbeddings)),
                ("quantize_heads", .bool(options.rules.quantizeHeads)),
                ("quantized_tensors", .int(counts.quantized)),
                ("tensor_bytes_before", .int(counts.before)),
                ("tensor_bytes_after", .int(counts.after)),
                ("tool", .string("prima-quantize (\(CheckpointFormat.tool))")),
            ])).serialized())
        }
        try ToolError.classify(asInput: false) { try writer.commit() }
        return Summary(output: output, quantizedTensors: counts.quantized, tensorBytesBefore: counts.before,
                       tensorBytesAfter: counts.after, fileBytesBefore: fileSize(input), fileBytesAfter: fileSize(output),
                       seconds: Date().timeIntervalSince(start))
    }

    /// The component roles in the order the input stores them.
    private static func checkpointOrder(_ checkpoint: Checkpoint) throws -> [ComponentRole] {
        let file = try HDF5File.open(path: checkpoint.path)
        return try file.root().linkNames().compactMap(ComponentRole.init(rawValue:))
    }

    /// One component's tensors and what happens to each.
    private struct ComponentPlan {
        let component: ComponentReader
        let role: ComponentRole
        let records: [TensorRecord]
        /// What happens to each candidate (rank-2 float dataset), by stored name; other tensors are copied.
        let decisions: [String: KeepFloatRules.Decision]

        init(_ component: ComponentReader, options: Options) throws {
            self.component = component
            role = ComponentRole(rawValue: component.name)!
            records = try component.tensorRecords()
            let path = component.checkpoint.path
            var aliases: [String: [String]] = [:]
            for record in records {
                if let target = record.aliasOf { aliases[target, default: []].append(record.name) }
            }
            var decisions: [String: KeepFloatRules.Decision] = [:]
            for record in records where record.aliasOf == nil {
                if record.dtype == .i8 || record.name.hasSuffix(".scales") {
                    throw ToolError.input("\(path): \(component.name): already quantised (tensor \(record.name)); quantise the float checkpoint instead")
                }
                guard KeepFloatRules.isCandidate(dtype: record.dtype, shape: record.shape) else { continue }
                let decision = try options.rules.decision(for: record.name, aliases: aliases[record.name] ?? [])
                if decision == .quantize, records.contains(where: { $0.name == QuantizedTensorInfo.scalesName(for: record.name) }) {
                    throw ToolError.input("\(path): \(component.name): tensor \(record.name): a tensor named \(QuantizedTensorInfo.scalesName(for: record.name)) already exists")
                }
                decisions[record.name] = decision
            }
            self.decisions = decisions
        }
    }

    private static func write(_ plan: ComponentPlan, into writer: CheckpointWriter, options: Options, scratch: Scratch,
                              report: (TensorReport) -> Void) throws -> (quantized: Int, before: Int, after: Int) {
        let component = plan.component
        var quantized = 0, before = 0, after = 0, datasets = 0, elements = 0
        let output = try ToolError.classify(asInput: false) { try writer.addComponent(plan.role) }
        let sourceTensors = try ToolError.classify(asInput: true) { try component.subgroup("tensors") }
        try ToolError.classify(asInput: false) {
            // Children other than tensors/ (files, config, preprocessing, lora, ...), whole, in stored order.
            for child in try component.group.linkNames() where child != "tensors" {
                try output.group.copyObject(child, from: component.group)
            }
        }
        for record in plan.records {
            if let target = record.aliasOf {
                // Same role, same path: the soft link's value is copied unchanged.
                try ToolError.classify(asInput: false) { try output.tensors.createSoftLink(record.name, target: sourceTensors.path + "/" + target) }
                continue
            }
            before += record.byteCount
            let decision = plan.decisions[record.name]
            if case .keepFloat(let reason) = decision {
                report(TensorReport(component: component.name, name: record.name, shape: record.shape,
                                    sourceDType: record.dtype, sqnrDecibels: nil, keptFloatReason: reason))
            }
            guard decision == .quantize else {
                try ToolError.classify(asInput: false) { try output.tensors.copyObject(record.name, from: sourceTensors) }
                datasets += 1
                elements += record.shape.reduce(1, *)
                after += record.byteCount
                continue
            }
            let sqnr = try quantize(record, of: component, into: output, options: options, scratch: scratch)
            let (rows, columns) = (record.shape[0], record.shape[1])
            let scalesShape = options.scheme.scalesShape(rows: rows, columns: columns)
            datasets += 2
            elements += rows * columns + scalesShape.reduce(1, *)
            after += rows * columns + scalesShape.reduce(4, *)
            quantized += 1
            report(TensorReport(component: component.name, name: record.name, shape: record.shape,
                                sourceDType: record.dtype, sqnrDecibels: sqnr, keptFloatReason: nil))
        }
        try ToolError.classify(asInput: false) {
            try output.group.copyAttributes(from: component.group)
            try output.group.setAttribute("tensor_count", int: datasets)
            try output.group.setAttribute("parameter_count", int: elements)
        }
        return (quantized, before, after)
    }

    /// Streams one [N, K] float tensor through the reference quantiser into `X` (int8) and `X.scales` (f32);
    /// returns its SQNR.
    private static func quantize(_ record: TensorRecord, of component: ComponentReader, into output: ComponentWriter,
                                 options: Options, scratch: Scratch) throws -> Double {
        let path = component.checkpoint.path
        let (rows, columns) = (record.shape[0], record.shape[1])
        let scheme = options.scheme
        let perRow = scheme.scalesPerRow(columns: columns)
        let scalesName = QuantizedTensorInfo.scalesName(for: record.name)
        let (values, scales) = try ToolError.classify(asInput: false) {
            (try output.beginTensor(name: record.name, dtype: .i8, shape: record.shape, hfName: record.hfName),
             try output.beginTensor(name: scalesName, dtype: .f32, shape: scheme.scalesShape(rows: rows, columns: columns), hfName: nil))
        }
        let dataset = try ToolError.classify(asInput: true) { try component.dataset(forTensor: record.name) }
        scratch.reserve(elements: max(options.blockBytes / 4, columns))
        let blockRows = max(1, scratch.elements / max(columns, 1))
        var sqnr = SQNR()
        var crc = CRC32()
        var rowsDone = 0
        while rowsDone < rows && columns > 0 {
            let n = min(blockRows, rows - rowsDone)
            let count = n * columns
            let raw = UnsafeMutableRawBufferPointer(rebasing: scratch.raw[0..<(count * record.dtype.byteSize)])
            try ToolError.classify(asInput: true) { try dataset.readRows(start: rowsDone, count: n, into: raw) }
            crc.update(UnsafeRawBufferPointer(raw))
            let weights = UnsafeMutableBufferPointer(rebasing: scratch.w[0..<count])
            WeightConversion.widen(UnsafeRawBufferPointer(raw), dtype: record.dtype, into: weights)
            if let bad = WeightConversion.firstNonFinite(UnsafeBufferPointer(weights)) {
                let element = rowsDone * columns + bad
                throw ToolError.input("\(path): \(component.name): tensor \(record.name): value \(weights[bad]) at row \(element / columns), column \(element % columns) is not finite; cannot quantise")
            }
            let qBlock = UnsafeMutableBufferPointer(rebasing: scratch.q[0..<count])
            let sBlock = UnsafeMutableBufferPointer(rebasing: scratch.scales[0..<(n * perRow)])
            Int8Reference.quantize(rows: n, columns: columns, scheme: scheme, weights: UnsafeBufferPointer(weights),
                                   q: qBlock, scales: sBlock)
            let back = UnsafeMutableBufferPointer(rebasing: scratch.dequantized[0..<count])
            scheme.dequantize(rows: n, columns: columns, q: UnsafeBufferPointer(qBlock), scales: UnsafeBufferPointer(sBlock),
                              into: back)
            sqnr.add(original: UnsafeBufferPointer(weights), dequantized: UnsafeBufferPointer(back))
            try ToolError.classify(asInput: false) {
                try values.append(UnsafeRawBufferPointer(qBlock))
                try scales.append(UnsafeRawBufferPointer(sBlock))
            }
            rowsDone += n
        }
        // The bytes quantised are the bytes the importer checksummed: a damaged input is refused, not quantised.
        guard let stored = record.crc32 else {
            throw ToolError.input("\(path): \(component.name): tensor \(record.name): no crc32 attribute; its bytes cannot be checked before quantising")
        }
        if stored != crc.value {
            throw ToolError.input("\(path): \(component.name): tensor \(record.name): CRC-32 \(String(format: "%08x", crc.value)) does not match the stored \(String(format: "%08x", stored)); the input is damaged")
        }
        try ToolError.classify(asInput: false) {
            // A tensor with no elements never reaches the block loop: its scales are all zero (§7, all-zero group).
            if rows > 0 && columns == 0 {
                let zeros = [Float](repeating: 0, count: rows * perRow)
                try zeros.withUnsafeBytes { try scales.append($0) }
            }
            try values.finish()
            try scales.finish()
            try QuantizedTensorInfo(scheme: scheme, blockSize: scheme.blockSize(columns: columns), sourceDType: record.dtype,
                                    sqnrDecibels: sqnr.decibels).write(to: values.dataset)
        }
        return sqnr.decibels
    }

    /// Block buffers shared by every tensor of a run. Allocated once (and grown only for a row wider than a
    /// block): allocating and freeing blocks of tensor-dependent sizes per tensor made glibc's adaptive mmap
    /// threshold serve them from the heap, which fragmented and grew by about 2 bytes per quantised weight
    /// (1 GB of resident memory for Qwen3-0.6B instead of about 100 MB).
    private final class Scratch {
        private(set) var elements = 0
        private(set) var raw = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        private(set) var w = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
        private(set) var dequantized = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
        private(set) var q = UnsafeMutableBufferPointer<Int8>(start: nil, count: 0)
        private(set) var scales = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)

        /// Makes room for blocks of `count` weights (and as many scales, the per-element worst case).
        func reserve(elements count: Int) {
            guard count > elements else { return }
            release()
            elements = count
            raw = .allocate(byteCount: count * 4, alignment: 64)
            w = .allocate(capacity: count)
            dequantized = .allocate(capacity: count)
            q = .allocate(capacity: count)
            scales = .allocate(capacity: count)
        }

        private func release() {
            guard elements > 0 else { return }
            raw.deallocate(); w.deallocate(); dequantized.deallocate(); q.deallocate(); scales.deallocate()
        }

        deinit { release() }
    }

    private static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}
