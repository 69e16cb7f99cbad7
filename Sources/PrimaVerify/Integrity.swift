import Foundation
import PrimaCheckpoint
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
        if checkpoint.extraGroups.contains(TrainingRecord.groupName) { reports.append(checkTraining(checkpoint)) }
        return reports
    }

    /// The `/training` group (Formats/prima-training.md §4): its record and every AdamW moment read and checked
    /// (paths and shapes against the checkpoint's tensors, finite values, non-negative second moments).
    private static func checkTraining(_ checkpoint: Checkpoint) -> ComponentReport {
        do {
            guard let record = try TrainingRecord.read(from: checkpoint, loadMoments: true) else {
                return ComponentReport(name: "training", architecture: "?", tensorCount: 0, bytes: 0, problems: ["unreadable"])
            }
            let bytes = record.moments.reduce(0) { $0 + 4 * ($1.expAvg.elementCount + $1.expAvgSq.elementCount) }
            let weights = record.classWeights.map { ", class weights " + $0.map { "\($0)" }.joined(separator: ",") } ?? ""
            return ComponentReport(name: "training", architecture: "\(record.stage.rawValue) \(record.status.rawValue), step \(record.step) of \(record.totalSteps)\(weights)",
                                   tensorCount: 2 * record.moments.count, bytes: bytes, problems: [])
        } catch {
            let message = "\(error)"
            let prefix = "\(checkpoint.path): training: "
            return ComponentReport(name: "training", architecture: "?", tensorCount: 0, bytes: 0,
                                   problems: [message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message])
        }
    }

    /// The `/prima` group (§8): everything `StoredValidation` checks (which includes the metadata schema and the
    /// class tokens as prima-diagnose reads them), then checksums and finiteness.
    private static func checkHeads(_ checkpoint: Checkpoint) throws -> ComponentReport {
        var problems = StoredValidation.headsProblems(checkpoint)
        var architecture = "prima heads"
        if let heads = try? PrimaHeads(checkpoint: checkpoint) {
            architecture += heads.trained ? ", trained" : ", untrained (seeded initialisation)"
        }
        let group = try checkpoint.group("prima")
        let stored = (try? group.tensorRecords().filter { $0.aliasOf == nil }) ?? []
        let declared = (try? group.group.intAttribute("tensor_count")) ?? -1
        if declared != stored.count { problems.append("tensor_count says \(declared), the group holds \(stored.count)") }
        problems += try checksumProblems(group, stored, allowed: { $0.dtype == .f32 || $0.name == PrimaHeadsConfig.classTokenIdsName })
        return ComponentReport(name: "prima", architecture: architecture, tensorCount: stored.count,
                               bytes: stored.reduce(0) { $0 + $1.byteCount }, problems: problems)
    }

    private static func check(_ component: ComponentReader, checkpoint path: String) throws -> ComponentReport {
        let architectureName = (try? component.attribute("architecture")) ?? "?"
        // Every stored part, as every tool checks it before use; then what only verify reads: checksums and
        // finiteness.
        var problems = StoredValidation.problems(component)
        guard let records = try? component.tensorRecords() else {
            return ComponentReport(name: component.name, architecture: architectureName, tensorCount: 0, bytes: 0, problems: problems)
        }
        let stored = records.filter { $0.aliasOf == nil }
        let quantized = Set(stored.filter { $0.dtype == .i8 }.map(\.name))
        problems += try checksumProblems(component, stored, allowed: { $0.dtype.isWeightFloat || quantized.contains($0.name) })
        // LoRA adapters (§6): their structure is part of StoredValidation above; here their bytes.
        for adapter in try component.loraAdapterNames() {
            guard let reader = try? component.loraAdapter(adapter).reader else { continue }
            let adapterRecords = try reader.tensorRecords().filter { $0.aliasOf == nil }
            problems += try checksumProblems(reader, adapterRecords, allowed: { $0.dtype.isWeightFloat })
                .map { "lora/\(adapter): " + $0 }
        }
        return ComponentReport(name: component.name, architecture: architectureName, tensorCount: stored.count,
                               bytes: stored.reduce(0) { $0 + $1.byteCount }, problems: problems)
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
            }
            if nonFinite.count > 0 {
                let recorded = (try? component.dataset(forTensor: record.name))?.hasAttribute(NonFinite.attribute) ?? false
                problems.append("tensor \(record.name): \(nonFinite.count) NaN/Inf values" + (recorded ? " (recorded at import)" : ""))
            }
        }
        return problems
    }
}
