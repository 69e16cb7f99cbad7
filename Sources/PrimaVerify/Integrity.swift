import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaModels
import PrimaQuantize
import PrimaTensor

/// `prima-verify CKPT`: the format version (checked on open), then per component every tensor the
/// architecture needs present with the right shape and a float dtype, every CRC-32 matching, no NaN or Inf.
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
        do { checkpoint = try Checkpoint(path: path) } catch { throw VerifyError.input("\(error)") }
        var reports: [ComponentReport] = []
        for role in checkpoint.roles {
            do {
                reports.append(try check(try checkpoint.component(role), checkpoint: path))
            } catch let error as VerifyError {
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
    /// inside the decoder's vocabulary, then checksums and finiteness.
    private static func checkHeads(_ checkpoint: Checkpoint) throws -> ComponentReport {
        var problems: [String] = []
        var architecture = "prima heads"
        do {
            let heads = try PrimaHeads(checkpoint: checkpoint)
            architecture += heads.trained ? ", trained" : ", untrained (seeded initialisation)"
            if checkpoint.roles.contains(.decoder), let json = try JSON.parse(try checkpoint.component(.decoder).file("config.json")).object,
               let config = try Architecture.qwen3.parseConfig(json) as? Qwen3Config,
               let bad = heads.classTokenIds.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
                problems.append("tensor \(PrimaHeadsConfig.classTokenIdsName): id \(bad) is outside the decoder's vocabulary of \(config.vocabSize)")
            }
        } catch {
            problems.append("\(error)")
        }
        let group = try checkpoint.group("prima")
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
        guard let architecture = Architecture(rawValue: architectureName) else {
            return ComponentReport(name: name, architecture: architectureName, tensorCount: 0, bytes: 0,
                                   problems: ["unknown architecture \"\(architectureName)\""])
        }
        let records = try component.tensorRecords()
        let stored = records.filter { $0.aliasOf == nil }
        // int8 tensors (§7): valid quantisation attributes and a scales companion of the right shape.
        var quantized: Set<String> = []
        for record in stored where record.dtype == .i8 {
            guard let info = try QuantizedTensorInfo.read(try component.dataset(forTensor: record.name)) else {
                problems.append("tensor \(record.name): int8 without quantisation attributes (§7)")
                continue
            }
            quantized.insert(record.name)
            let scalesName = QuantizedTensorInfo.scalesName(for: record.name)
            guard record.shape.count == 2, let scales = stored.first(where: { $0.name == scalesName }) else {
                problems.append("tensor \(record.name): int8 without its \(scalesName)")
                continue
            }
            let expected = info.scheme.scalesShape(rows: record.shape[0], columns: record.shape[1])
            if scales.dtype != .f32 || scales.shape != expected {
                problems.append("tensor \(scalesName): \(scales.dtype.rawValue) \(ShapeMath.describe(scales.shape)), expected f32 \(ShapeMath.describe(expected))")
            }
        }
        let companions = Set(quantized.map(QuantizedTensorInfo.scalesName(for:)))
        // The tensors the configuration implies (§4): all required ones present, shapes as the config says.
        do {
            guard let json = try JSON.parse(try component.file("config.json")).object else {
                throw ModelConfigError("files/config.json is not a JSON object")
            }
            let config = try architecture.parseConfig(json)
            let present = Dictionary(records.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for (tensorName, expected) in config.expectedTensors.sorted(by: { $0.key < $1.key }) {
                if let record = present[tensorName] {
                    if record.shape != expected.shape {
                        problems.append("tensor \(tensorName): shape \(ShapeMath.describe(record.shape)), config.json implies \(ShapeMath.describe(expected.shape))")
                    }
                } else if expected.required {
                    problems.append("tensor \(tensorName): missing")
                }
            }
            for record in records where config.expectedTensors[record.name] == nil && !companions.contains(record.name) {
                problems.append("tensor \(record.name): not a \(architectureName) tensor for this config.json")
            }
        } catch {
            problems.append("config.json: \(error)")
        }
        let declared = (try? component.group.intAttribute("tensor_count")) ?? -1
        if declared != stored.count { problems.append("tensor_count says \(declared), the group holds \(stored.count)") }
        problems += try checksumProblems(component, stored, allowed: { $0.dtype.isWeightFloat || quantized.contains($0.name) })
        return ComponentReport(name: name, architecture: architectureName, tensorCount: stored.count,
                               bytes: stored.reduce(0) { $0 + $1.byteCount }, problems: problems)
    }

    /// Checksums and finiteness of `stored`, streamed tensor by tensor; a tensor whose dtype `allowed` rejects is
    /// reported instead.
    private static func checksumProblems(_ component: ComponentReader, _ stored: [TensorRecord],
                                         allowed: (TensorRecord) -> Bool) throws -> [String] {
        var problems: [String] = []
        for record in stored {
            guard allowed(record) else {
                problems.append("tensor \(record.name): dtype \(record.dtype.rawValue) is not a weight type")
                continue
            }
            var crc = CRC32()
            var nonFinite = 0
            try component.streamTensor(record) { block in
                crc.update(block)
                nonFinite += countNonFinite(block, dtype: record.dtype)
            }
            if let stored = record.crc32, stored != crc.value {
                problems.append("tensor \(record.name): CRC-32 \(String(format: "%08x", crc.value)) does not match the stored \(String(format: "%08x", stored))")
            } else if record.crc32 == nil {
                problems.append("tensor \(record.name): no crc32 attribute")
            }
            if nonFinite > 0 { problems.append("tensor \(record.name): \(nonFinite) NaN/Inf values") }
        }
        return problems
    }

    /// NaN and Inf values in raw f32/f16/bf16 bytes (an all-ones exponent field).
    static func countNonFinite(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> Int {
        var count = 0
        switch dtype {
        case .f32:
            for bits in bytes.bindMemory(to: UInt32.self) where bits & 0x7F80_0000 == 0x7F80_0000 { count += 1 }
        case .f16:
            for bits in bytes.bindMemory(to: UInt16.self) where bits & 0x7C00 == 0x7C00 { count += 1 }
        case .bf16:
            for bits in bytes.bindMemory(to: UInt16.self) where bits & 0x7F80 == 0x7F80 { count += 1 }
        default:
            break
        }
        return count
    }
}
