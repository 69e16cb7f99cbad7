import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaModels
import PrimaSafetensors
import PrimaTensor

/// A PEFT LoRA directory (`adapter_config.json` + `adapter_model.safetensors`, as `PeftModel.save_pretrained` writes
/// them), read and checked against what a checkpoint adapter can hold exactly (Formats/prima-checkpoint.md §6.1):
/// anything else is refused with one line naming the file and the field or key.
struct PeftLoraDirectory {
    static let configName = "adapter_config.json"
    static let weightsName = "adapter_model.safetensors"
    /// The key layout of PEFT's saved state dict: `base_model.model.<module>.lora_A.weight`.
    static let keyPrefix = "base_model.model."

    let directory: String
    /// adapter_config.json, verbatim.
    let configBytes: [UInt8]
    let rank: Int
    let alpha: Double
    let dropout: Double
    let useRSLoRA: Bool
    let file: SafetensorsFile
    /// Each adapted module (PEFT's module path, without `.weight`) with its A and B entries, in the file order of A.
    let modules: [(module: String, a: SafetensorsEntry, b: SafetensorsEntry)]

    init(directory: String) throws {
        self.directory = directory
        let configPath = directory + "/" + Self.configName
        configBytes = try InputFile.read(configPath, limit: CheckpointFormat.maxAuxiliaryFileBytes)
        func fail(_ what: String) -> ToolError { .input("\(configPath): \(what)") }
        let config: JSONObject
        do {
            guard let object = try JSON.parse(configBytes).object else { throw fail("not a JSON object") }
            config = object
        } catch let error as JSONError { throw fail("malformed JSON: \(error)") }

        guard config["peft_type"]?.string == "LORA" else {
            throw fail("peft_type is \(config["peft_type"]?.serialized() ?? "missing"), only LORA adapters are supported")
        }
        guard let r = config["r"]?.int, (1...LoraAdapterInfo.maxRank).contains(r) else {
            throw fail("r must be an integer in 1...\(LoraAdapterInfo.maxRank), got \(config["r"]?.serialized() ?? "nothing")")
        }
        guard let alpha = config["lora_alpha"]?.double, alpha.isFinite, alpha > 0 else {
            throw fail("lora_alpha must be a positive number, got \(config["lora_alpha"]?.serialized() ?? "nothing")")
        }
        let dropout = config["lora_dropout"].flatMap { $0.isNull ? nil : $0 }?.double ?? 0
        guard dropout >= 0, dropout < 1 else { throw fail("lora_dropout must be in [0, 1), got \(dropout)") }
        (rank, self.alpha, self.dropout) = (r, alpha, dropout)
        useRSLoRA = try Self.flag(config, "use_rslora", fail)
        if let bias = config["bias"], !bias.isNull, bias.string != "none" {
            throw fail("bias is \(bias.serialized()); only \"none\" is supported (trained biases would be lost)")
        }
        // Every other option must be off (null, false, empty) unless it only describes the base model, the
        // initialisation or which modules were adapted (the tensors say that): a new PEFT option is refused until
        // it is known not to change the computation y = W x + scale · B A x.
        for (key, value) in config.entries where !Self.handledKeys.contains(key) && !Self.descriptiveKeys.contains(key) {
            let off = value.isNull || value.bool == false || (value.array?.isEmpty ?? false) || (value.object?.entries.isEmpty ?? false)
            guard off else {
                throw fail("\(key) is \(value.serialized()); a checkpoint adapter holds plain LoRA only (Formats/prima-checkpoint.md §6.1)")
            }
        }

        let weightsPath = directory + "/" + Self.weightsName
        do { file = try SafetensorsFile(path: weightsPath) } catch { throw ToolError.input("\(error)") }
        var a: [String: SafetensorsEntry] = [:], b: [String: SafetensorsEntry] = [:]
        for entry in file.entries {
            guard entry.name.hasPrefix(Self.keyPrefix), let (module, matrix) = Self.split(entry.name) else {
                throw ToolError.input("\(weightsPath): key \(entry.name) is not a LoRA A/B matrix (\(Self.keyPrefix)MODULE.lora_A.weight); saved modules, embedding adapters and DoRA vectors are not supported")
            }
            guard entry.dtype.isWeightFloat, entry.shape.count == 2 else {
                throw ToolError.input("\(weightsPath): tensor \(entry.name): \(entry.dtype.safetensorsName) \(ShapeMath.describe(entry.shape)) is not a float matrix")
            }
            if matrix == "A" { a[module] = entry } else { b[module] = entry }
        }
        var modules: [(String, SafetensorsEntry, SafetensorsEntry)] = []
        for (module, entryA) in a.sorted(by: { $0.value.begin < $1.value.begin }) {
            guard let entryB = b[module] else { throw ToolError.input("\(weightsPath): \(module) has lora_A but no lora_B") }
            guard entryA.shape[0] == r, entryB.shape[1] == r else {
                throw ToolError.input("\(weightsPath): \(module): lora_A \(ShapeMath.describe(entryA.shape)) and lora_B \(ShapeMath.describe(entryB.shape)) do not have rank r = \(r)")
            }
            modules.append((module, entryA, entryB))
        }
        if let orphan = b.keys.sorted().first(where: { a[$0] == nil }) {
            throw ToolError.input("\(weightsPath): \(orphan) has lora_B but no lora_A")
        }
        guard !modules.isEmpty else { throw ToolError.input("\(weightsPath): no LoRA matrices") }
        self.modules = modules
    }

    /// Options read above.
    static let handledKeys: Set<String> = ["peft_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "bias"]
    /// Options that describe the base model, the initialisation or the choice of modules, never the computation
    /// of an adapted layer: accepted with any value, and kept verbatim in files/adapter_config.json.
    static let descriptiveKeys: Set<String> = [
        "auto_mapping", "base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version",
        "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "ensure_weight_tying",
        "init_lora_weights", "loftq_config", "eva_config", "corda_config", "lora_ga_config", "megatron_core",
        "qalora_group_size",
    ]

    /// `base_model.model.M.lora_A.weight` → (M, "A").
    static func split(_ key: String) -> (String, String)? {
        let body = key.dropFirst(keyPrefix.count)
        for matrix in ["A", "B"] where body.hasSuffix(".lora_\(matrix).weight") {
            let module = String(body.dropLast(".lora_\(matrix).weight".count))
            return module.isEmpty ? nil : (module, matrix)
        }
        return nil
    }

    /// A boolean option: absent or null is false.
    private static func flag(_ config: JSONObject, _ key: String, _ fail: (String) -> ToolError) throws -> Bool {
        guard let value = config[key], !value.isNull else { return false }
        guard let bool = value.bool else { throw fail("\(key) must be true or false, got \(value.serialized())") }
        return bool
    }
}

/// `prima-convert lora-import` and `export --adapter`: LoRA adapters between PEFT directories and checkpoint
/// groups `/ROLE/lora/NAME` (Formats/prima-checkpoint.md §6), tensors bit-identical both ways.
public enum PeftAdapters {
    /// What an adapter import wrote.
    public struct ImportSummary: Sendable {
        public let output: String
        public let name: String
        public let targets: [String]
        public let rank: Int
        public let alpha: Double
    }

    /// Writes a copy of `checkpoint` with the PEFT directory `adapterDirectory` added as `/ROLE/lora/NAME`.
    public static func importAdapter(checkpoint path: String, role: ComponentRole, adapterDirectory: String, name: String,
                                     output: String, overwrite: Bool) throws -> ImportSummary {
        guard LoraAdapterInfo.isValidName(name) else {
            throw ToolError.input("--name \(name): an adapter name is 1-64 characters of A-Z a-z 0-9 _ . - (Formats/prima-checkpoint.md §6)")
        }
        let checkpoint = try ToolError.classify(asInput: true) { try Checkpoint(path: path) }
        let component = try ToolError.classify(asInput: true) { try checkpoint.component(role) }
        try ToolError.classify(asInput: true) { try StoredValidation.validate(checkpoint) }
        if try ToolError.classify(asInput: true, { try component.loraAdapterNames() }).contains(name) {
            throw ToolError.input("\(path): \(role.rawValue) already has an adapter named \(name)")
        }
        let peft = try PeftLoraDirectory(directory: adapterDirectory)
        let targets = try ToolError.classify(asInput: true) { try Self.targets(of: peft, in: component) }
        let info = LoraAdapterInfo(name: name, rank: peft.rank, alpha: peft.alpha, useRSLoRA: peft.useRSLoRA,
                                   dropout: peft.dropout, targets: targets.map(\.canonical), merged: false)

        let writer = try ToolError.classify(asInput: false) { try CheckpointWriter(destination: output, overwrite: overwrite) }
        try ToolError.classify(asInput: false) {
            try writer.copyContents(of: path)
            let adapter = try writer.addAdapter(role: role, name: name)
            try info.write(to: adapter.group)
            try adapter.addFile(PeftLoraDirectory.configName, bytes: peft.configBytes)
            for target in targets {
                for (tensorName, entry) in [(LoraAdapterInfo.aName(for: target.canonical), target.a),
                                            (LoraAdapterInfo.bName(for: target.canonical), target.b)] {
                    let tensor = try peft.file.readTensor(entry)
                    try tensor.withUnsafeBytes { bytes in
                        try adapter.writeTensor(name: tensorName, dtype: entry.dtype, shape: entry.shape, hfName: entry.name, bytes: bytes)
                    }
                }
            }
        }
        try ToolError.classify(asInput: false) { try writer.commit() }
        return ImportSummary(output: output, name: name, targets: info.targets, rank: info.rank, alpha: info.alpha)
    }

    /// The canonical weight each PEFT module adapts, with the shapes checked against it: the module's `M.weight`
    /// matched against the stored `hf_name`s, then through the architecture's name table (§4).
    static func targets(of peft: PeftLoraDirectory, in component: ComponentReader)
        throws -> [(canonical: String, a: SafetensorsEntry, b: SafetensorsEntry)]
    {
        let records = try component.tensorRecords()
        let byHFName = Dictionary(records.compactMap { record in record.hfName.map { ($0, record) } }, uniquingKeysWith: { first, _ in first })
        let byName = Dictionary(records.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let architecture = try StoredConfig.architecture(of: component)
        let weightsPath = peft.directory + "/" + PeftLoraDirectory.weightsName
        var result: [(String, SafetensorsEntry, SafetensorsEntry)] = []
        var seen = Set<String>()
        for (module, a, b) in peft.modules {
            let hfName = module + ".weight"
            var record = byHFName[hfName]
            if record == nil, case .tensor(let canonical, _) = architecture.names.map(hfName) { record = byName[canonical] }
            guard let record, record.shape.count == 2, record.dtype.isWeightFloat || record.dtype == .i8 else {
                throw ToolError.input("\(weightsPath): module \(module) is not a linear weight of \(component.checkpoint.path): \(component.name)")
            }
            guard seen.insert(record.name).inserted else {
                throw ToolError.input("\(weightsPath): module \(module) adapts \(record.name) a second time")
            }
            guard a.shape[1] == record.shape[1], b.shape[0] == record.shape[0] else {
                throw ToolError.input("\(weightsPath): module \(module): lora_A \(ShapeMath.describe(a.shape)) and lora_B \(ShapeMath.describe(b.shape)) do not fit \(record.name) \(ShapeMath.describe(record.shape))")
            }
            result.append((record.name, a, b))
        }
        return result
    }

    /// Writes adapter `name` of `role` as a PEFT directory: the stored tensors in storage order under their
    /// `hf_name` keys, and the stored adapter_config.json (or one written from the attributes).
    public static func exportAdapter(checkpoint path: String, role: ComponentRole, name: String, output: String,
                                     overwrite: Bool) throws -> (tensorCount: Int, bytes: Int) {
        let checkpoint = try ToolError.classify(asInput: true) { try Checkpoint(path: path) }
        let component = try ToolError.classify(asInput: true) { try checkpoint.component(role) }
        try ToolError.classify(asInput: true) { try StoredValidation.validate(checkpoint) }
        let (info, reader) = try ToolError.classify(asInput: true) { try component.loraAdapter(name) }
        guard !info.merged else {
            throw ToolError.input("\(path): \(role.rawValue)/lora/\(name) is merged into the base weights; export the component instead")
        }
        let records = try ToolError.classify(asInput: true) { try reader.tensorRecords() }
        let baseRecords = try ToolError.classify(asInput: true) { try component.tensorRecords() }
        let architecture = try ToolError.classify(asInput: true) { try StoredConfig.architecture(of: component) }
        let prefix = component.group.hasAttribute("hf_prefix") ? try ToolError.classify(asInput: true) { try component.attribute("hf_prefix") } : ""
        // Keys: the stored hf_name, else PEFT's layout around the base weight's Hugging Face name.
        var modules: [String] = []
        let keys = try records.map { record -> String in
            if let hfName = record.hfName { return hfName }
            let isA = record.name.hasSuffix(".lora_a")
            let target = String(record.name.dropLast(".lora_a".count)) + ".weight"
            let base = baseRecords.first { $0.name == target }
            guard let weightName = base?.hfName ?? architecture.names.hfName(forCanonical: target, prefix: prefix) else {
                throw ToolError.input("\(path): \(reader.name): tensor \(record.name) has no Hugging Face name")
            }
            let module = String(weightName.dropLast(".weight".count))
            return PeftLoraDirectory.keyPrefix + module + (isA ? ".lora_A.weight" : ".lora_B.weight")
        }
        // The adapted modules, from the A matrices' keys (`base_model.model.M.lora_A.weight` → M), for a config
        // written from the attributes.
        modules = keys.compactMap { key in PeftLoraDirectory.split(key).flatMap { $0.1 == "A" ? $0.0 : nil } }
        let config: [UInt8]
        if try ToolError.classify(asInput: true, { try reader.fileNames() }).contains(PeftLoraDirectory.configName) {
            config = try ToolError.classify(asInput: true) { try reader.file(PeftLoraDirectory.configName) }
        } else {
            config = Array(JSONValue.object(JSONObject([
                ("peft_type", "LORA"), ("r", .int(info.rank)), ("lora_alpha", .double(info.alpha)),
                ("lora_dropout", .double(info.dropout)), ("use_rslora", .bool(info.useRSLoRA)),
                ("target_modules", .array(modules.map { .string($0) })), ("bias", "none"),
                ("fan_in_fan_out", .bool(false)), ("modules_to_save", .null), ("task_type", .null),
            ])).serialized(indent: 2).utf8)
        }

        let target = try OutputTarget(destination: output, kind: .directory, overwrite: overwrite)
        try ToolError.classify(asInput: false) {
            guard FileManager.default.createFile(atPath: target.temporaryPath + "/" + PeftLoraDirectory.configName, contents: Data(config)) else {
                throw ToolError.failed("\(target.temporaryPath): cannot write \(PeftLoraDirectory.configName)")
            }
            let writer = try SafetensorsWriter(path: target.temporaryPath + "/" + PeftLoraDirectory.weightsName,
                                               tensors: zip(keys, records).map { SafetensorsTensorSpec(name: $0, dtype: $1.dtype, shape: $1.shape) },
                                               metadata: ["format": "pt"])
            for record in records { try reader.streamTensor(record) { try writer.append($0) } }
            try writer.finish()
        }
        try target.commit()
        return (records.count, records.reduce(0) { $0 + $1.byteCount })
    }
}

/// `prima-convert merge-lora`: a copy of a checkpoint with LoRA adapters added into their base weights
/// (Formats/prima-checkpoint.md §6.2).
public enum LoraMerger {
    /// One weight changed by a merge.
    public struct Merged: Sendable {
        public let role: ComponentRole
        public let adapter: String
        public let weight: String
    }

    /// Merges the unmerged adapters of `roles` (every component when nil) — only `adapter` when given — into a copy
    /// of `checkpoint` at `output`: each target becomes W + scale · B A, rounded once to its dtype; the adapters stay,
    /// marked `merged` = 1, and their components carry `lora_merged` = 1.
    public static func run(checkpoint path: String, roles: [ComponentRole]?, adapter: String?, output: String,
                           overwrite: Bool) throws -> [Merged] {
        let checkpoint = try ToolError.classify(asInput: true) { try Checkpoint(path: path) }
        let chosen = roles ?? checkpoint.roles
        for role in chosen where !checkpoint.roles.contains(role) {
            throw ToolError.input("\(path): no \(role.rawValue) component")
        }
        try ToolError.classify(asInput: true) { try StoredValidation.validate(checkpoint) }
        // Plan: every (component, adapter, target) to merge, refused before anything is written.
        var plan: [(role: ComponentRole, info: LoraAdapterInfo, reader: ComponentReader, weight: TensorRecord)] = []
        for role in chosen {
            let component = try ToolError.classify(asInput: true) { try checkpoint.component(role) }
            let records = try ToolError.classify(asInput: true) { try component.tensorRecords() }
            let tiedTargets = Set(records.compactMap(\.aliasOf))
            for name in try ToolError.classify(asInput: true, { try component.loraAdapterNames() }) where adapter == nil || adapter == name {
                let (info, reader) = try ToolError.classify(asInput: true) { try component.loraAdapter(name) }
                guard !info.merged else { continue }
                for target in info.targets {
                    guard let weight = records.first(where: { $0.name == target }) else { continue }
                    let origin = "\(path): \(role.rawValue)/lora/\(name): target \(target)"
                    guard weight.dtype.isWeightFloat else {
                        throw ToolError.input("\(origin) is \(weight.dtype.rawValue); merge into the float checkpoint, then quantise")
                    }
                    guard weight.aliasOf == nil, !tiedTargets.contains(target) else {
                        throw ToolError.input("\(origin) is tied to another tensor; merging would change both (keep the adapter unmerged)")
                    }
                    plan.append((role, info, reader, weight))
                }
            }
        }
        guard !plan.isEmpty else {
            throw ToolError.input("\(path): no unmerged LoRA adapter\(adapter.map { " named \($0)" } ?? "") in \(chosen.map(\.rawValue).joined(separator: ", "))")
        }

        let writer = try ToolError.classify(asInput: false) { try CheckpointWriter(destination: output, overwrite: overwrite) }
        var merged: [Merged] = []
        try ToolError.classify(asInput: false) {
            // A merged adapter no longer trains: the optimiser state of a run does not carry over (Formats/prima-training.md §4.3).
            try writer.copyContents(of: path, excluding: [TrainingRecord.groupName])
            let root = try writer.rootGroup()
            for item in plan {
                let component = try root.group(item.role.rawValue)
                let tensors = try component.group("tensors")
                let base = try checkpoint.component(item.role)
                let updated = try mergedWeight(item.weight, of: base, info: item.info, adapter: item.reader)
                let dataset = try tensors.dataset(item.weight.name)
                var crc = CRC32()
                try updated.withUnsafeBytes { bytes in
                    crc.update(bytes)
                    try dataset.writeAll(bytes)
                }
                try dataset.setAttribute("crc32", int: Int(crc.value))
                try component.setAttribute("lora_merged", int: 1)
                try component.group("lora").group(item.info.name).setAttribute("merged", int: 1)
                merged.append(Merged(role: item.role, adapter: item.info.name, weight: item.weight.name))
            }
        }
        try ToolError.classify(asInput: false) { try writer.commit() }
        return merged
    }

    /// W + scale · B A in the weight's dtype: W widened to f32, then one sgemm with α = scale and β = 1 adds B [out, r]
    /// · A [r, in] onto it, then the sum is rounded once (to nearest even) to f16 or bf16.
    static func mergedWeight(_ weight: TensorRecord, of component: ComponentReader, info: LoraAdapterInfo,
                             adapter: ComponentReader) throws -> Tensor {
        let records = try adapter.tensorRecords()
        guard let aRecord = records.first(where: { $0.name == LoraAdapterInfo.aName(for: weight.name) }),
              let bRecord = records.first(where: { $0.name == LoraAdapterInfo.bName(for: weight.name) }) else {
            throw ToolError.input("\(adapter.checkpoint.path): \(adapter.name): no lora_a/lora_b for \(weight.name)")
        }
        let w = try component.readTensor(weight).toFloat32()
        let a = try adapter.readTensor(aRecord).toFloat32(), b = try adapter.readTensor(bRecord).toFloat32()
        let (out, input, rank) = (weight.shape[0], weight.shape[1], info.rank)
        let sum = Tensor(shape: [out, input], float32: w.float32Values())
        a.withFloat32 { ap in b.withFloat32 { bp in sum.withMutableFloat32 { cp in
            BLAS.sgemm(m: out, n: input, k: rank, alpha: info.scale, a: bp.baseAddress!, lda: rank, b: ap.baseAddress!,
                       ldb: input, beta: 1, c: cp.baseAddress!, ldc: input)
        } } }
        if let bad = sum.float32Values().firstIndex(where: { !$0.isFinite }) {
            throw ToolError.input("\(adapter.checkpoint.path): \(adapter.name): merging into \(weight.name) gives a non-finite value at element \(bad)")
        }
        guard weight.dtype != .f32 else { return sum }
        let narrowed = Tensor(zeros: weight.shape, dtype: weight.dtype)
        sum.withFloat32 { values in
            let count = values.count * weight.dtype.byteSize
            WeightConversion.narrow(values, to: weight.dtype, into: UnsafeMutableRawBufferPointer(rebasing: narrowed.storage.bytes[0..<count]))
        }
        return narrowed
    }
}
