import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaModels
import PrimaSafetensors
import PrimaTensor

/// Exports one component of a checkpoint back to a Hugging Face directory: the verbatim files (config.json,
/// tokenizer, preprocessing) and the tensors under their source names, bit-identical to what was imported,
/// as model.safetensors or shards with an index above `maxShardBytes`.
///
/// The directory is assembled in an ``OutputTarget`` staging directory beside the destination (removed on
/// failure or interruption) and renamed into place at the end; the destination may not hold the checkpoint.
///
/// An int8-quantised component (§7) has no bit-identical safetensors form: it is refused unless `dequantize`
/// is set, and then each quantised tensor is written under its source name as ŵ = Float(q) · s converted to its
/// recorded `quant_source_dtype` (f32 exact; f16 and bf16 rounded to nearest even), so that the directory has the
/// original model's tensor names, dtypes and shapes. The `.scales` datasets are not exported.
public enum Exporter {
    /// What an export wrote.
    public struct Summary: Sendable {
        public let directory: String
        public let tensorCount: Int
        public let bytes: Int
        public let shardCount: Int
        public let seconds: Double
    }

    public static func run(checkpoint path: String, role: ComponentRole, output: String, maxShardBytes: Int,
                           overwrite: Bool, showProgress: Bool, dequantize: Bool = false) throws -> Summary {
        let start = Date()
        let checkpoint = try ToolError.classify(asInput: true) { try Checkpoint(path: path) }
        // The whole checkpoint, as every tool reads it: a bad checkpoint gets the same line whatever is exported.
        try ToolError.classify(asInput: true) { try StoredValidation.validate(checkpoint) }
        let component = try ToolError.classify(asInput: true) { try checkpoint.component(role) }
        var records = try ToolError.classify(asInput: true) { try component.tensorRecords() }
        // Quantised tensors (§7) by stored name; their scales are not exported.
        var quantized: [String: QuantizedTensorInfo] = [:]
        for record in records where record.aliasOf == nil && record.dtype == .i8 {
            guard let info = try ToolError.classify(asInput: true, { try Int8Dequantizer.info(of: record.name, in: component) }) else {
                throw ToolError.input("\(path): \(role.rawValue): tensor \(record.name) is int8 without quantisation attributes; safetensors export needs float weights")
            }
            guard dequantize else {
                throw ToolError.input("\(path): \(role.rawValue): tensor \(record.name) is int8-quantised (\(info.scheme.rawValue)); pass --dequantize to export dequantised \(info.sourceDType.rawValue) weights")
            }
            quantized[record.name] = info
        }
        if !quantized.isEmpty {
            let scales = Set(quantized.keys.map(QuantizedTensorInfo.scalesName(for:)))
            records = records.filter { !scales.contains($0.name) }.map { record in
                // A quantised tensor (or an alias of one) is exported in its source dtype.
                guard let info = quantized[record.aliasOf ?? record.name] else { return record }
                return TensorRecord(name: record.name, dtype: info.sourceDType, shape: record.shape, hfName: record.hfName,
                                    crc32: nil, aliasOf: record.aliasOf)
            }
        }
        let architectureName = try ToolError.classify(asInput: true) { try component.attribute("architecture") }
        guard let architecture = Architecture(rawValue: architectureName) else {
            throw ToolError.input("\(path): \(role.rawValue): unknown architecture \"\(architectureName)\"")
        }
        let prefix = component.group.hasAttribute("hf_prefix") ? try ToolError.classify(asInput: true) { try component.attribute("hf_prefix") } : ""
        let tied = try ToolError.classify(asInput: true) { try tiedRecords(component) }

        // Tensors to write, in stored order: datasets by their source name, and aliases the source stored.
        var outputs: [(hfName: String, record: TensorRecord)] = []
        for record in records {
            if record.aliasOf != nil {
                if let hfName = tied.first(where: { $0.name == record.name })?.hfName { outputs.append((hfName, record)) }
                continue
            }
            guard let hfName = record.hfName ?? architecture.names.hfName(forCanonical: record.name, prefix: prefix) else {
                throw ToolError.input("\(path): \(role.rawValue): tensor \(record.name) has no Hugging Face name")
            }
            outputs.append((hfName, record))
        }
        // Second source names of one parameter (name == target) carry the stored dataset's bytes.
        for tie in tied where tie.name == tie.target {
            guard let hfName = tie.hfName, let record = records.first(where: { $0.name == tie.target }) else { continue }
            outputs.append((hfName, record))
        }
        var seen = Set<String>()
        for output in outputs where !seen.insert(output.hfName).inserted {
            throw ToolError.input("\(path): \(role.rawValue): two tensors would be written as \(output.hfName)")
        }

        let target = try OutputTarget(destination: output, kind: .directory, overwrite: overwrite)
        let staging = target.temporaryPath

        try ToolError.classify(asInput: false) {
            for name in try component.fileNames() {
                let bytes = try component.file(name)
                guard FileManager.default.createFile(atPath: staging + "/" + name, contents: Data(bytes)) else {
                    throw ToolError.failed("\(staging)/\(name): cannot write")
                }
            }
        }
        let layout = outputs.map { SafetensorsTensorSpec(name: $0.hfName, dtype: $0.record.dtype, shape: $0.record.shape) }
        let plan = SafetensorsShardPlan(tensors: layout, maxShardBytes: maxShardBytes)
        let progress = Progress(label: "export", total: outputs.reduce(0) { $0 + $1.record.byteCount }, enabled: showProgress)
        // Tensor bytes are copied by the kernel from the checkpoint's contiguous datasets (checked to lie inside
        // the file); a dataset without allocated storage (zero-size) goes through HDF5.
        let source = try CheckpointSource(path: path)
        let recordByName = Dictionary(outputs.map { ($0.hfName, $0.record) }, uniquingKeysWith: { first, _ in first })
        try ToolError.classify(asInput: false) {
            for shard in plan.shards {
                let writer = try SafetensorsWriter(path: staging + "/" + shard.fileName,
                                                   tensors: shard.tensors, metadata: ["format": "pt"])
                for tensor in shard.tensors {
                    let record = recordByName[tensor.name]!
                    let stored = record.aliasOf ?? record.name
                    if let info = quantized[stored] {
                        try Int8Dequantizer.stream(stored, in: component, as: info.sourceDType) { block in
                            try writer.append(block)
                            progress.advance(block.count)
                        }
                        continue
                    }
                    if record.byteCount > 0, let offset = try source.dataOffset(of: record, in: component) {
                        try writer.appendCopy(from: source.descriptor, at: offset, count: record.byteCount)
                        progress.advance(record.byteCount)
                        continue
                    }
                    try component.streamTensor(record) { block in
                        try writer.append(block)
                        progress.advance(block.count)
                    }
                }
                try writer.finish()
            }
            if let index = plan.indexJSON() {
                guard FileManager.default.createFile(atPath: staging + "/" + SafetensorsModel.indexFileName,
                                                     contents: Data(index.utf8)) else {
                    throw ToolError.failed("\(staging): cannot write the shard index")
                }
            }
        }
        progress.finish()
        try target.commit()
        return Summary(directory: output, tensorCount: outputs.count, bytes: outputs.reduce(0) { $0 + $1.record.byteCount },
                       shardCount: plan.shards.count, seconds: Date().timeIntervalSince(start))
    }

    /// The checkpoint file opened a second time, read-only, for kernel copies out of its datasets.
    private final class CheckpointSource {
        let path: String
        let file: InputFile
        var descriptor: Int32 { file.descriptor }
        var size: Int { file.size }

        init(path: String) throws {
            self.path = path
            file = try InputFile(path)
        }

        /// Where `record`'s bytes start in the file; nil if the dataset has no contiguous storage. Throws if
        /// the recorded storage does not lie inside the file (a damaged checkpoint).
        func dataOffset(of record: TensorRecord, in component: ComponentReader) throws -> Int? {
            let dataset = try ToolError.classify(asInput: true) { try component.dataset(forTensor: record.aliasOf ?? record.name) }
            guard let offset = dataset.fileOffset else { return nil }
            guard offset >= 0, offset <= size - record.byteCount else {
                throw ToolError.input("\(path): tensor \(record.name): data at offset \(offset) extends past the end of the file")
            }
            return offset
        }
    }

    /// The component's `tied` attribute, parsed.
    static func tiedRecords(_ component: ComponentReader) throws -> [TiedRecord] {
        guard component.group.hasAttribute("tied") else { return [] }
        let text = try component.attribute("tied")
        guard let list = try JSON.parse(text).array else { throw ToolError.input("attribute tied is not a JSON list") }
        return try list.map { item in
            guard let object = item.object, let name = object["name"]?.string, let target = object["target"]?.string else {
                throw ToolError.input("\(component.checkpoint.path): \(component.name): malformed tied entry \(item.serialized())")
            }
            return TiedRecord(name: name, target: target, hfName: object["hf_name"]?.string)
        }
    }
}
