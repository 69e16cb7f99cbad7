import Foundation
import PrimaIO
import PrimaCheckpoint
import PrimaJSON
import PrimaModels
import PrimaTensor

/// Describes a checkpoint: root attributes, then per component its attributes, config, files and tensors.
public enum Inspector {
    /// The checkpoint as one JSON object (the `--json` output of `prima-convert inspect`).
    public static func json(checkpoint path: String) throws -> JSONValue {
        try ToolError.classify(asInput: true) {
            let checkpoint = try Checkpoint(path: path)
            // A checkpoint every other tool refuses is refused here too (exit 2), with the same line.
            try StoredValidation.validate(checkpoint)
            var components: [(String, JSONValue)] = []
            for name in checkpoint.roles.map(\.rawValue) + checkpoint.extraGroups where name != TrainingRecord.groupName {
                let component = try ComponentRole(rawValue: name).map { try checkpoint.component($0) } ?? checkpoint.group(name)
                components.append((name, try describe(component)))
            }
            var fields: [(String, JSONValue)] = [
                ("path", .string(path)), ("format", .string(CheckpointFormat.name)),
                ("format_version", .int(checkpoint.formatVersion)), ("tool", .string(checkpoint.tool)),
                ("created", .string(checkpoint.created)), ("components", .object(JSONObject(components))),
            ]
            if let record = try TrainingRecord.read(from: checkpoint, loadMoments: false) { fields.append(("training", describe(record))) }
            return .object(JSONObject(fields))
        }
    }

    /// The training record (Formats/prima-training.md §4) without its moments.
    private static func describe(_ record: TrainingRecord) -> JSONValue {
        .object(JSONObject([
            ("stage", .string(record.stage.rawValue)), ("status", .string(record.status.rawValue)), ("step", .int(record.step)),
            ("total_steps", .int(record.totalSteps)), ("epoch", .int(record.epoch)), ("seed", .int(Int(record.seed))),
            ("threads", .int(record.threads)), ("tool", .string(record.tool)),
            ("last_loss", record.history.loss.last.map { .double(Double($0)) } ?? .null),
            ("hyperparameters", .object(record.hyperparameters)), ("data", .object(record.data)), ("split", .object(record.split)),
            ("best", .object(record.best)), ("stages", .array(record.stages)),
        ]))
    }

    private static func describe(_ component: ComponentReader) throws -> JSONValue {
        var attributes: [(String, JSONValue)] = []
        for key in try component.group.attributeNames() {
            attributes.append((key, attributeValue(component.group, key)))
        }
        var config: [(String, JSONValue)] = []
        for sub in ["config", "preprocessing"] where component.group.contains(sub) {
            let group = try component.subgroup(sub)
            var values: [(String, JSONValue)] = []
            for key in try group.attributeNames() { values.append((key, attributeValue(group, key))) }
            config.append((sub, .object(JSONObject(values))))
        }
        var files: [(String, JSONValue)] = []
        let fileNames = try component.fileNames()
        if !fileNames.isEmpty {
            let group = try component.subgroup("files")
            // Sizes from the dataspaces: inspecting need not read a 10 MB tokenizer.json.
            for name in fileNames { files.append((name, .int(try group.dataset(name).elementCount))) }
        }
        var tensors: [JSONValue] = []
        var total = 0
        for record in try component.tensorRecords() {
            var fields: [(String, JSONValue)] = [
                ("name", .string(record.name)), ("dtype", .string(record.dtype.rawValue)),
                ("shape", .array(record.shape.map { .int($0) })), ("bytes", .int(record.byteCount)),
            ]
            if let hf = record.hfName { fields.append(("hf_name", .string(hf))) }
            if let crc = record.crc32 { fields.append(("crc32", .int(Int(crc)))) }
            if let target = record.aliasOf { fields.append(("alias_of", .string(target))) } else { total += record.byteCount }
            if record.aliasOf == nil, record.dtype == .i8, let info = try Int8Dequantizer.info(of: record.name, in: component) {
                fields.append(("quant_scheme", .string(info.scheme.rawValue)))
                fields.append(("quant_source_dtype", .string(info.sourceDType.rawValue)))
                if info.sqnrDecibels.isFinite { fields.append(("quant_sqnr_db", .double(info.sqnrDecibels))) }
            }
            tensors.append(.object(JSONObject(fields)))
        }
        // LoRA adapters (§6), each described like a component (attributes, files, tensors).
        var adapters: [(String, JSONValue)] = []
        for name in try component.loraAdapterNames() {
            adapters.append((name, try describe(try component.loraAdapter(name).reader)))
        }
        return .object(JSONObject(attributes + config + [
            ("files", .object(JSONObject(files))), ("tensor_bytes", .int(total)), ("tensors", .array(tensors)),
        ] + (adapters.isEmpty ? [] : [("lora", .object(JSONObject(adapters)))])))
    }

    /// An attribute as JSON: JSON-valued string attributes are parsed, numbers kept as numbers.
    private static func attributeValue(_ object: HDF5Object, _ key: String) -> JSONValue {
        if let string = try? object.stringAttribute(key) {
            if let first = string.first, first == "[" || first == "{", let parsed = try? JSON.parse(string) { return parsed }
            return .string(string)
        }
        if let int = try? object.intAttribute(key) { return .int(int) }
        if let doubles = try? object.doublesAttribute(key) {
            return doubles.count == 1 ? number(doubles[0]) : .array(doubles.map(number))
        }
        return .null
    }

    /// A stored float as JSON: JSON has no NaN or infinity, so those are shown as the strings `"NaN"`,
    /// `"Infinity"` and `"-Infinity"` (what a crafted or damaged file holds must still be inspectable).
    private static func number(_ value: Double) -> JSONValue {
        if value.isFinite { return .double(value) }
        return .string(value.isNaN ? "NaN" : value > 0 ? "Infinity" : "-Infinity")
    }

    /// The checkpoint as an indented text tree for people.
    public static func text(checkpoint path: String, showTensors: Bool = true) throws -> String {
        let description = try json(checkpoint: path)
        guard let root = description.object, let components = root["components"]?.object else { return "" }
        var lines = ["\(path): \(CheckpointFormat.name) v\(root["format_version"]?.int ?? 0), written by \(root["tool"]?.string ?? "?") at \(root["created"]?.string ?? "?")"]
        if let training = root["training"]?.object {
            let done = (training["stages"]?.array ?? []).compactMap { $0.object?["stage"]?.string }
            lines.append("training: \(training["stage"]?.string ?? "?") \(training["status"]?.string ?? "?"), step \(training["step"]?.int ?? 0) of \(training["total_steps"]?.int ?? 0), "
                         + "epoch \(training["epoch"]?.int ?? 0), seed \(training["seed"]?.int ?? 0), \(training["threads"]?.int ?? 0) threads"
                         + (done.isEmpty ? "" : "; completed stages: " + done.joined(separator: ", ")))
        }
        for (name, value) in components.entries {
            guard let component = value.object else { continue }
            let tensors = component["tensors"]?.array ?? []
            let bytes = component["tensor_bytes"]?.int ?? 0
            let parameters = component["parameter_count"]?.int ?? 0
            if let architecture = component["architecture"]?.string {
                lines.append("\(name): \(architecture) (\(component["hf_model_type"]?.string ?? "-")), \(tensors.count) tensors, \(parameters) parameters, \(Progress.format(bytes))")
            } else {
                let trained = component["heads_trained"]?.int == 1 ? "trained" : "untrained (seeded initialisation)"
                // decoder_inputs (§8): said only when it is not the default.
                let inputs = component["decoder_inputs"]?.string == "image" ? ", decoder reads the image only (decoder_inputs \"image\")" : ""
                lines.append("\(name): PRIMA heads, \(trained)\(inputs), \(tensors.count) tensors, \(parameters) parameters, \(Progress.format(bytes))")
            }
            if let files = component["files"]?.object, !files.isEmpty {
                lines.append("  files: " + files.entries.map { "\($0.key) (\($0.value.int ?? 0) B)" }.joined(separator: ", "))
            }
            if let config = component["config"]?.object {
                lines.append("  config: " + config.entries.map { "\($0.key)=\($0.value.serialized())" }.joined(separator: " "))
            }
            if let preprocessing = component["preprocessing"]?.object {
                lines.append("  preprocessing: " + preprocessing.entries.map { "\($0.key)=\($0.value.serialized())" }.joined(separator: " "))
            }
            if let tied = component["tied"]?.array, !tied.isEmpty {
                lines.append("  tied: " + tied.compactMap { $0.object }.map {
                    "\($0["name"]?.string ?? "?") = \($0["target"]?.string ?? "?")" + ($0["hf_name"]?.string == nil ? " (not stored in source)" : "")
                }.joined(separator: ", "))
            }
            if let dropped = component["dropped"]?.array, !dropped.isEmpty {
                lines.append("  dropped: " + dropped.compactMap { $0.object?["hf_name"]?.string }.joined(separator: ", "))
            }
            if let sources = component["source_files"]?.array {
                for source in sources.compactMap(\.object) {
                    lines.append("  source: \(source["name"]?.string ?? "?") \(source["bytes"]?.int ?? 0) B sha256 \(source["sha256"]?.string ?? "?")")
                }
            }
            for (adapter, value) in component["lora"]?.object?.entries ?? [] {
                guard let lora = value.object else { continue }
                let targets = lora["targets"]?.array?.count ?? 0
                lines.append("  lora/\(adapter): rank \(lora["rank"]?.int ?? 0), alpha \(lora["alpha"]?.serialized() ?? "?"), "
                             + (lora["use_rslora"]?.int == 1 ? "rsLoRA scale, " : "")
                             + "\(targets) weights, \(Progress.format(lora["tensor_bytes"]?.int ?? 0))"
                             + (lora["merged"]?.int == 1 ? ", merged" : ", unmerged"))
            }
            guard showTensors else { continue }
            let width = tensors.compactMap { $0.object?["name"]?.string?.count }.max() ?? 0
            for tensor in tensors.compactMap(\.object) {
                let name = tensor["name"]?.string ?? "?"
                let shape = "[" + (tensor["shape"]?.array ?? []).compactMap(\.int).map(String.init).joined(separator: ", ") + "]"
                var line = "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                    + (tensor["dtype"]?.string ?? "?").padding(toLength: 5, withPad: " ", startingAt: 0) + shape
                if let target = tensor["alias_of"]?.string { line += "  -> \(target)" }
                if let scheme = tensor["quant_scheme"]?.string {
                    line += "  \(scheme) from \(tensor["quant_source_dtype"]?.string ?? "?")"
                    line += tensor["quant_sqnr_db"]?.double.map { String(format: ", SQNR %.2f dB", $0) } ?? ", exact"
                }
                lines.append(line)
            }
        }
        // Names, attributes and file names come from the file: escaped for the terminal, one line each.
        return lines.map { Terminal.escaped($0) }.joined(separator: "\n")
    }
}
