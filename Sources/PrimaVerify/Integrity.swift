import Foundation
import PrimaCheckpoint
import PrimaDiagnose
import PrimaIO
import PrimaJSON
import PrimaModels
import PrimaTensor

/// `prima-verify CKPT`: the format version (checked on open), then per component the configuration (`config/`
/// against files/config.json), every tensor the architecture needs present with the right shape and dtype, the
/// `tied` record, the verbatim files (JSON parses, the tokenizer loads, preprocessing is valid), every CRC-32
/// present and matching, no NaN or Inf; and the `/prima` heads with their schema.
public enum IntegrityChecker {
    /// One component's verdict.
    public struct ComponentReport: Sendable {
        public let name: String
        public let architecture: String
        public let tensorCount: Int
        public let bytes: Int
        /// Problems found, each one line naming the tensor; empty when the component is sound.
        public let problems: [String]
        public var pass: Bool { problems.isEmpty }
    }

    /// Checks every component of the checkpoint at `path`.
    public static func run(checkpoint path: String) throws -> [ComponentReport] {
        let checkpoint: Checkpoint
        do { checkpoint = try Checkpoint(path: path) } catch { throw ToolError.input("\(error)") }
        var reports: [ComponentReport] = []
        for role in checkpoint.roles {
            do {
                reports.append(try check(try checkpoint.component(role), checkpoint: path))
            } catch let error as ToolError {
                throw error
            } catch {
                reports.append(ComponentReport(name: role.rawValue, architecture: "?", tensorCount: 0, bytes: 0,
                                               problems: ["\(error)"]))
            }
        }
        if checkpoint.extraGroups.contains("prima") { reports.append(try checkHeads(checkpoint)) }
        return reports
    }

    /// The `/prima` group (§8): the heads' tensors, shapes and files as PrimaHeads reads them, the class token ids
    /// inside the decoder's vocabulary, the metadata schema as prima-diagnose reads it, then checksums and
    /// finiteness.
    private static func checkHeads(_ checkpoint: Checkpoint) throws -> ComponentReport {
        var problems: [String] = []
        var architecture = "prima heads"
        do {
            let heads = try PrimaHeads(checkpoint: checkpoint)
            architecture += heads.trained ? ", trained" : ", untrained (seeded initialisation)"
            if checkpoint.roles.contains(.decoder),
               let config = try? StoredConfig.read(try checkpoint.component(.decoder)) as? Qwen3Config,
               let bad = heads.classTokenIds.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
                problems.append("tensor \(PrimaHeadsConfig.classTokenIdsName): id \(bad) is outside the decoder's vocabulary of \(config.vocabSize)")
            }
        } catch {
            problems.append("\(error)")
        }
        let group = try checkpoint.group("prima")
        do { _ = try Diagnoser.schema(checkpoint) } catch { problems.append("\(error)") }
        let stored = try group.tensorRecords().filter { $0.aliasOf == nil }
        let declared = (try? group.group.intAttribute("tensor_count")) ?? -1
        if declared != stored.count { problems.append("tensor_count says \(declared), the group holds \(stored.count)") }
        problems += try checksumProblems(group, stored, allowed: { $0.dtype == .f32 || $0.name == PrimaHeadsConfig.classTokenIdsName })
        return ComponentReport(name: "prima", architecture: architecture, tensorCount: stored.count,
                               bytes: stored.reduce(0) { $0 + $1.byteCount }, problems: problems)
    }

    private static func check(_ component: ComponentReader, checkpoint path: String) throws -> ComponentReport {
        var problems: [String] = []
        let name = component.name
        let architectureName = try component.attribute("architecture")
        guard Architecture(rawValue: architectureName) != nil else {
            return ComponentReport(name: name, architecture: architectureName, tensorCount: 0, bytes: 0,
                                   problems: ["unknown architecture \"\(architectureName)\""])
        }
        let records = try component.tensorRecords()
        let stored = records.filter { $0.aliasOf == nil }
        // The configuration (config/ against files/config.json), then every tensor against it, as every tool loads them.
        do {
            let config = try StoredConfig.read(component)
            problems += try TensorValidation.problems(component, config: config)
        } catch {
            problems.append(Self.withoutOrigin("\(error)", component))
        }
        problems += tiedProblems(component, records)
        // The other JSON attributes of §3.1, when present, are lists.
        for key in ["hf_architectures", "dropped", "source_files"] where component.group.hasAttribute(key) {
            if (try? JSON.parse(try component.attribute(key)).array) == nil {
                problems.append("attribute \(key) is not a JSON list (§3.1)")
            }
        }
        problems += try fileProblems(component)
        let quantized = Set(stored.filter { $0.dtype == .i8 }.map(\.name))
        problems += try checksumProblems(component, stored, allowed: { $0.dtype.isWeightFloat || quantized.contains($0.name) })
        // LoRA adapters (§6): their structure is part of TensorValidation above; here their bytes.
        for adapter in try component.loraAdapterNames() {
            guard let reader = try? component.loraAdapter(adapter).reader else { continue }
            let adapterRecords = try reader.tensorRecords().filter { $0.aliasOf == nil }
            problems += try checksumProblems(reader, adapterRecords, allowed: { $0.dtype.isWeightFloat })
                .map { "lora/\(adapter): " + $0 }
        }
        return ComponentReport(name: name, architecture: architectureName, tensorCount: stored.count,
                               bytes: stored.reduce(0) { $0 + $1.byteCount }, problems: problems)
    }

    /// The `tied` attribute (§5.3): a JSON list of `{"name", "target", "hf_name"}` objects that lists exactly the
    /// soft links of `tensors/`, each with the target it links to; an entry whose name equals its target (a second
    /// source name of one parameter) names a stored tensor and has no link.
    static func tiedProblems(_ component: ComponentReader, _ records: [TensorRecord]) -> [String] {
        guard let text = try? component.attribute("tied"), let list = try? JSON.parse(text).array else {
            return ["attribute tied is not a JSON list (§5.3)"]
        }
        var problems: [String] = []
        var listed: [String: String] = [:]
        let byName = Dictionary(records.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (index, item) in list.enumerated() {
            guard let entry = item.object, let name = entry["name"]?.string, let target = entry["target"]?.string,
                  let hfName = entry["hf_name"], hfName.isNull || hfName.string != nil else {
                problems.append("tied entry \(index) is not an object with string name, target and hf_name (string or null)")
                continue
            }
            if name == target {
                if byName[name]?.aliasOf != nil || byName[name] == nil { problems.append("tied entry \(index): \(name) is not a stored tensor") }
                continue
            }
            listed[name] = target
            if byName[name]?.aliasOf != target { problems.append("tied entry \(index): tensors/\(name) is not a link to \(target)") }
        }
        for record in records where record.aliasOf != nil && listed[record.name] == nil {
            problems.append("tensor \(record.name): a link to \(record.aliasOf!) that the tied attribute does not list")
        }
        return problems
    }

    /// The verbatim files (§3.2): every JSON file parses, a tokenizer.json loads as prima-diagnose loads it, and an
    /// image encoder's `preprocessing/` attributes are complete and valid.
    static func fileProblems(_ component: ComponentReader) throws -> [String] {
        var problems: [String] = []
        for fileName in try component.fileNames() {
            do {
                if fileName == "tokenizer.json" {
                    _ = try Diagnoser.tokenizer(component, path: component.checkpoint.path)
                } else if fileName.hasSuffix(".json") {
                    _ = try JSON.parse(try component.file(fileName))
                }
            } catch {
                problems.append("files/\(fileName): \(withoutOrigin("\(error)", component))")
            }
        }
        if component.name == ComponentRole.imageEncoder.rawValue {
            do { _ = try Diagnoser.preprocessing(component, path: component.checkpoint.path) } catch {
                problems.append(withoutOrigin("\(error)", component))
            }
        }
        return problems
    }

    /// A message without its leading `FILE: ROLE: ` (the report line names the component already).
    static func withoutOrigin(_ message: String, _ component: ComponentReader) -> String {
        for prefix in ["\(component.checkpoint.path): \(component.name): ", "\(component.checkpoint.path): "] where message.hasPrefix(prefix) {
            return String(message.dropFirst(prefix.count))
        }
        return message
    }

    /// Checksums and finiteness of `stored`, streamed tensor by tensor; a tensor whose dtype `allowed` rejects is
    /// reported instead. A `crc32` attribute that is missing or outside 0…2³²−1 is a problem of its own.
    private static func checksumProblems(_ component: ComponentReader, _ stored: [TensorRecord],
                                         allowed: (TensorRecord) -> Bool) throws -> [String] {
        var problems: [String] = []
        for record in stored {
            guard allowed(record) else {
                problems.append("tensor \(record.name): dtype \(record.dtype.rawValue) is not a weight type")
                continue
            }
            var crc = CRC32()
            var nonFinite = NonFinite.Counter(dtype: record.dtype)
            try component.streamTensor(record) { block in
                crc.update(block)
                nonFinite.update(block)
            }
            if let stored = record.crc32, stored != crc.value {
                problems.append("tensor \(record.name): CRC-32 \(String(format: "%08x", crc.value)) does not match the stored \(String(format: "%08x", stored))")
            } else if record.crc32 == nil {
                problems.append("tensor \(record.name): no crc32 attribute")
            }
            if nonFinite.count > 0 {
                let recorded = (try? component.dataset(forTensor: record.name))?.hasAttribute(NonFinite.attribute) ?? false
                problems.append("tensor \(record.name): \(nonFinite.count) NaN/Inf values" + (recorded ? " (recorded at import)" : ""))
            }
        }
        return problems
    }
}
