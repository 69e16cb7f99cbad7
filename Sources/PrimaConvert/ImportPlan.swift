import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaModels
import PrimaSafetensors
import PrimaTensor

/// What happens to one source tensor on import.
enum TensorAction {
    /// Stored as a dataset under `canonical`.
    case store(canonical: String)
    /// Not stored: the same bytes as `target`, recorded in `tied` (§5.3).
    case tiedAlias(canonical: String, target: String)
    /// Not stored: dropped with a reason (§4.6).
    case dropped(reason: String)
}

/// One source tensor and its fate.
struct PlannedTensor {
    let entry: SafetensorsEntry
    let file: SafetensorsFile
    let action: TensorAction
}

/// An entry of the component's `tied` attribute.
struct TiedRecord {
    let name: String
    let target: String
    /// The source name if the source stored the alias; nil if it omitted it.
    let hfName: String?
}

/// The validated mapping of a Hugging Face directory onto a checkpoint component: every tensor has a
/// canonical name, the right shape for config.json and a float dtype; required tensors are present; ties are
/// resolved by comparing bytes. Built before anything is written, so a bad input leaves no output.
struct ImportPlan {
    let source: HFModelDirectory
    let role: ComponentRole
    /// Source tensors in streaming order (file by file, by offset).
    let tensors: [PlannedTensor]
    let tied: [TiedRecord]
    let dropped: [(hfName: String, reason: String)]
    /// The body prefix the source used (`model.`, `bert.` or "").
    let hfPrefix: String

    init(source: HFModelDirectory, role: ComponentRole, warn: (String) -> Void) throws {
        self.source = source
        self.role = role
        let names = source.architecture.names
        let expected = source.config.expectedTensors
        let arch = source.architecture.rawValue
        var canonicalOwner: [String: (entry: SafetensorsEntry, file: SafetensorsFile)] = [:]
        var actions: [(SafetensorsEntry, SafetensorsFile, TensorAction)] = []
        var tied: [TiedRecord] = []
        var dropped: [(String, String)] = []
        var prefix: String?

        for weight in source.weights.weights {
            let entry = weight.entry, file = weight.file
            let context = "\(file.path): tensor \(entry.name)"
            switch names.map(entry.name) {
            case .unknown:
                throw ToolError.input("\(context): not a known \(arch) tensor name (see Formats/prima-checkpoint.md §4)")
            case .dropped(let reason):
                warn("\(context): dropped (\(reason))")
                dropped.append((entry.name, reason))
                actions.append((entry, file, .dropped(reason: reason)))
            case .tensor(let canonical, let bodyPrefix):
                if let bodyPrefix {
                    if let prefix, prefix != bodyPrefix {
                        throw ToolError.input("\(context): prefix \"\(bodyPrefix)\" differs from the \"\(prefix)\" of the other tensors")
                    }
                    prefix = bodyPrefix
                }
                guard entry.dtype.isWeightFloat else {
                    throw ToolError.input("\(context): dtype \(entry.dtype.safetensorsName) is not a weight type (F32, F16, BF16)")
                }
                guard let expectation = expected[canonical] else {
                    throw ToolError.input("\(context): \(canonical) is not expected by config.json (a layer beyond num_hidden_layers, or a bias or head the config disables)")
                }
                guard entry.shape == expectation.shape else {
                    throw ToolError.input("\(context): shape \(ShapeMath.describe(entry.shape)) contradicts config.json, which implies \(ShapeMath.describe(expectation.shape)) for \(canonical)")
                }
                if let owner = canonicalOwner[canonical] {
                    // A second name of one parameter (BERT's decoder bias): allowed only if bit-identical.
                    guard names.duplicateNames[entry.name] != nil || names.duplicateNames[owner.entry.name] != nil else {
                        throw ToolError.input("\(context): maps to \(canonical), as does \(owner.entry.name)")
                    }
                    guard try Self.identical(owner, (entry, file)) else {
                        throw ToolError.input("\(context): differs from \(owner.entry.name), which is the same parameter")
                    }
                    tied.append(TiedRecord(name: canonical, target: canonical, hfName: entry.name))
                    actions.append((entry, file, .tiedAlias(canonical: canonical, target: canonical)))
                    continue
                }
                canonicalOwner[canonical] = (entry, file)
                actions.append((entry, file, .store(canonical: canonical)))
            }
        }
        let hfPrefix = prefix ?? ""

        // Ties the config declares: alias stored once if bit-identical, recorded either way.
        var tiedAliases = Set<String>()
        for pair in source.config.tiedPairs {
            guard let target = canonicalOwner[pair.target] else { continue }
            if let alias = canonicalOwner[pair.alias] {
                if try Self.identical(alias, target) {
                    tied.append(TiedRecord(name: pair.alias, target: pair.target, hfName: alias.entry.name))
                    tiedAliases.insert(pair.alias)
                    if let index = actions.firstIndex(where: { $0.0.name == alias.entry.name }) {
                        actions[index].2 = .tiedAlias(canonical: pair.alias, target: pair.target)
                    }
                } else {
                    warn("\(alias.file.path): tensor \(alias.entry.name): config.json ties it to \(target.entry.name) but the two differ; keeping both")
                }
            } else if pair.head.map({ canonicalOwner[$0] != nil }) ?? true {
                tied.append(TiedRecord(name: pair.alias, target: pair.target, hfName: nil))
                tiedAliases.insert(pair.alias)
            }
        }

        let missing = expected.filter { name, tensor in
            tensor.required && canonicalOwner[name] == nil && !tiedAliases.contains(name)
        }.keys.sorted()
        if let first = missing.first {
            let hf = names.hfName(forCanonical: first, prefix: hfPrefix) ?? first
            let more = missing.count > 1 ? " (and \(missing.count - 1) more)" : ""
            throw ToolError.input("\(source.path): missing tensor \(hf) (\(first)), required by config.json\(more)")
        }
        self.tensors = actions.map { PlannedTensor(entry: $0.0, file: $0.1, action: $0.2) }
        self.tied = tied
        self.dropped = dropped
        self.hfPrefix = hfPrefix
    }

    /// Whether two source tensors hold the same dtype, shape and bytes (compared in 8 MiB blocks).
    static func identical(_ a: (entry: SafetensorsEntry, file: SafetensorsFile),
                          _ b: (entry: SafetensorsEntry, file: SafetensorsFile)) throws -> Bool {
        guard a.entry.dtype == b.entry.dtype, a.entry.shape == b.entry.shape, a.entry.byteCount == b.entry.byteCount
        else { return false }
        let block = 8 << 20
        let bufferA = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 64)
        let bufferB = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 64)
        defer { bufferA.deallocate(); bufferB.deallocate() }
        var offset = 0
        while offset < a.entry.byteCount {
            let count = min(block, a.entry.byteCount - offset)
            let sliceA = UnsafeMutableRawBufferPointer(rebasing: bufferA[0..<count])
            let sliceB = UnsafeMutableRawBufferPointer(rebasing: bufferB[0..<count])
            try ToolError.classify(asInput: true) {
                try a.file.read(a.entry, byteRange: offset..<(offset + count), into: sliceA)
                try b.file.read(b.entry, byteRange: offset..<(offset + count), into: sliceB)
            }
            if memcmp(sliceA.baseAddress!, sliceB.baseAddress!, count) != 0 { return false }
            offset += count
        }
        return true
    }

    /// Number of source bytes the import reads (every weight file, whole).
    var sourceBytes: Int { source.weights.files.reduce(0) { $0 + $1.fileSize } }
}
