import PrimaCheckpoint
import PrimaJSON
import PrimaTokenizers

/// The one validation of a checkpoint's stored parts (Formats/prima-checkpoint.md §3–§8, §10), run by every tool
/// that reads a checkpoint before it uses anything in it: `prima-convert inspect` and `export`, `prima-quantize`
/// (so that no defect is copied onward), `prima-diagnose` and the runtime, and `prima-verify`, which reports the
/// same problems as a failed check. Per component: the §3.1 attributes, the configuration through `StoredConfig`,
/// the tensors through `TensorValidation`, the `tied` record, the `files/` entries, and an image encoder's input
/// size; for `/prima`: the components it needs, its files, and its tensors and attributes as `PrimaHeads` reads
/// them. Everything here reads metadata only; checksums and finiteness (which read every byte) are
/// `prima-verify`'s.
public enum StoredValidation {
    /// Validates every component and the `/prima` group of `checkpoint`; throws the first problem as one line
    /// `FILE: GROUP: problem` (every one of them is bad input).
    public static func validate(_ checkpoint: Checkpoint) throws {
        for role in checkpoint.roles {
            try validate(try checkpoint.component(role))
        }
        if checkpoint.extraGroups.contains("prima") {
            if let first = headsProblems(checkpoint).first {
                throw StoredComponentError("\(checkpoint.path): prima: \(first)")
            }
        }
        do {
            _ = try TrainingRecord.read(from: checkpoint, loadMoments: false)
        } catch {
            throw StoredComponentError("\(error)")
        }
    }

    /// Validates one component; throws its first problem as `FILE: ROLE: problem`.
    public static func validate(_ component: ComponentReader) throws {
        if let first = problems(component).first {
            throw StoredComponentError("\(StoredConfig.origin(component)): \(first)")
        }
    }

    /// Children of a component (§3.2) or of `/prima` (§8) that the format does not define: refused rather than
    /// ignored (an adapter under `/prima/lora` would otherwise silently not apply).
    static func childProblems(_ component: ComponentReader, allowed: Set<String>) -> [String] {
        ((try? component.group.linkNames()) ?? []).filter { !allowed.contains($0) }.map {
            "\($0) is not a child of a \(component.name == "prima" ? "/prima group (§8)" : "component group (§3.2)")"
        }
    }

    /// Every problem of `component`, one line each without the `FILE: ROLE: ` prefix; empty when it is sound.
    public static func problems(_ component: ComponentReader) -> [String] {
        var problems = attributeProblems(component) + fileProblems(component, allowed: CheckpointFormat.auxiliaryFileNames)
            + childProblems(component, allowed: ["files", "config", "preprocessing", "tensors", "lora"])
        let records: [TensorRecord]
        do {
            records = try component.tensorRecords()
        } catch {
            return problems + [withoutOrigin("\(error)", component)]
        }
        problems += tiedProblems(component, records)
        do {
            let config = try StoredConfig.read(component)
            problems += try TensorValidation.problems(component, config: config)
            if let config = config as? DINOv3ViTConfig { problems += inputSizeProblems(component, patchSize: config.patchSize) }
        } catch {
            problems.append(withoutOrigin("\(error)", component))
        }
        // After the tensors: a tensor of the wrong shape is the problem to name, not the count it changes.
        let elements = records.filter { $0.aliasOf == nil }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        if let declared = try? component.group.intAttribute("parameter_count"), declared != elements {
            problems.append("parameter_count says \(declared), tensors/ holds \(elements) elements (§3.1)")
        }
        // The verbatim files as they are read: every JSON file parses, a tokenizer.json loads with its ids inside
        // vocab_size, an image encoder's preprocessing is valid.
        for fileName in (try? component.fileNames()) ?? [] where CheckpointFormat.auxiliaryFileNames.contains(fileName) {
            do {
                if fileName == "tokenizer.json" {
                    _ = try StoredParts.tokenizer(component)
                } else if fileName.hasSuffix(".json") && fileName != "config.json" {
                    _ = try JSON.parse(try component.file(fileName))
                }
            } catch {
                problems.append("files/\(fileName): " + withoutOrigin(withoutOrigin("\(error)", component), component)
                    .replacingOccurrences(of: "\(component.name)/files/\(fileName): ", with: ""))
            }
        }
        if component.name == ComponentRole.imageEncoder.rawValue {
            do { _ = try StoredParts.preprocessing(component) } catch { problems.append(withoutOrigin("\(error)", component)) }
        }
        return problems
    }

    /// Every problem of the `/prima` group (§8), one line each without the `FILE: prima: ` prefix.
    public static func headsProblems(_ checkpoint: Checkpoint) -> [String] {
        var problems: [String] = []
        let missing = [ComponentRole.imageEncoder, .textEncoder, .decoder].filter { !checkpoint.roles.contains($0) }
        if !missing.isEmpty {
            problems.append("the heads need an image_encoder, a text_encoder and a decoder; the checkpoint has no \(missing.map(\.rawValue).joined(separator: ", "))")
        }
        do {
            let group = try checkpoint.group("prima")
            problems += fileProblems(group, allowed: CheckpointFormat.headsFileNames) + childProblems(group, allowed: ["files", "tensors"])
            let heads = try PrimaHeads(checkpoint: checkpoint)
            // The widths and the class tokens against the components (each component's own problems are its own).
            func field(_ role: ComponentRole, _ key: String) -> Int? {
                guard checkpoint.roles.contains(role), let config = try? StoredConfig.read(try checkpoint.component(role)),
                      case .int(let value)? = config.fields.first(where: { $0.0 == key })?.1 else { return nil }
                return value
            }
            for (role, key, width) in [(ComponentRole.imageEncoder, "d_image", heads.config.imageWidth),
                                       (.textEncoder, "d_text", heads.config.textWidth), (.decoder, "d_llm", heads.config.decoderWidth)] {
                if let hidden = field(role, "hidden_size"), hidden != width {
                    problems.append("\(key) is \(width) but the \(role.rawValue)'s hidden_size is \(hidden)")
                }
            }
            if let vocabulary = field(.decoder, "vocab_size"), let bad = heads.classTokenIds.first(where: { $0 < 0 || $0 >= vocabulary }) {
                problems.append("tensor \(PrimaHeadsConfig.classTokenIdsName): id \(bad) is outside the decoder's vocabulary of \(vocabulary)")
            } else if checkpoint.roles.contains(.decoder), let tokenizer = try? StoredParts.tokenizer(try checkpoint.component(.decoder)) {
                // The class tokens (§8.1) and the texts the decoder reads, under the decoder's tokenizer.
                if let problem = StoredParts.classTokenProblem(heads, decoderTokenizer: tokenizer) { problems.append(problem) }
                for (file, text) in [("prompt.txt", heads.prompt), ("answer_prefix.txt", heads.answerPrefix)] {
                    do { _ = try tokenizer.encode(text, addSpecialTokens: false) } catch {
                        problems.append("files/\(file): \(withoutOrigin("\(error)", try checkpoint.group("prima")))")
                    }
                }
            }
            do { _ = try StoredParts.schema(checkpoint) } catch {
                let message = "\(error)"
                problems.append(message.hasPrefix("\(checkpoint.path): prima/") ? String(message.dropFirst(checkpoint.path.count + 8)) : message)
            }
        } catch {
            let message = "\(error)"
            problems.append(message.hasPrefix("\(checkpoint.path): prima: ") ? String(message.dropFirst(checkpoint.path.count + 9))
                            : message.hasPrefix("\(checkpoint.path): prima/") ? String(message.dropFirst(checkpoint.path.count + 8)) : message)
        }
        return problems
    }

    /// The §3.1 attributes: `role` the group's name, `architecture` a string, the counts integers, the optional
    /// strings strings and the optional JSON attributes lists.
    static func attributeProblems(_ component: ComponentReader) -> [String] {
        var problems: [String] = []
        let group = component.group
        if let role = try? component.attribute("role"), role != component.name {
            problems.append("attribute role is \(JSONValue.string(role).serialized()), not the group's name \(component.name) (§3.1)")
        }
        for key in ["role", "architecture", "hf_model_type", "hf_prefix", "source_directory", "imported"] where group.hasAttribute(key) {
            if !group.attribute(key, isStoredAs: .string) { problems.append("attribute \(key) is not a string (§3.1)") }
        }
        for key in ["tensor_count", "parameter_count"] where (try? group.intAttribute(key)) == nil {
            problems.append("attribute \(key) is not an integer (§3.1)")
        }
        for key in ["hf_architectures", "dropped", "source_files"] where group.hasAttribute(key) {
            if (try? JSON.parse(try component.attribute(key)).array) == nil {
                problems.append("attribute \(key) is not a JSON list (§3.1)")
            }
        }
        return problems
    }

    /// `files/` (§3.2, §8): only the listed names, each a 1-D uint8 dataset of at most
    /// `CheckpointFormat.maxAuxiliaryFileBytes`.
    static func fileProblems(_ component: ComponentReader, allowed: [String]) -> [String] {
        guard component.group.contains("files") else { return [] }
        do {
            let files = try component.group.group("files")
            var problems: [String] = []
            for name in try files.linkNames() {
                guard allowed.contains(name) else {
                    problems.append("files/\(name): not a file name the format stores here (§3.2, §8)")
                    continue
                }
                guard case .dataset = try files.linkKind(name) else {
                    problems.append("files/\(name): not a dataset")
                    continue
                }
                let dataset = try files.dataset(name)
                if dataset.shape.count != 1 || !dataset.storedTypeMatches(.u8) {
                    problems.append("files/\(name): not a 1-D uint8 dataset")
                } else if dataset.elementCount > CheckpointFormat.maxAuxiliaryFileBytes {
                    problems.append("files/\(name): \(dataset.elementCount) bytes, above the limit of \(CheckpointFormat.maxAuxiliaryFileBytes) (64 MiB)")
                }
            }
            return problems
        } catch {
            return [withoutOrigin("\(error)", component)]
        }
    }

    /// An image encoder's `preprocessing/` size against the image encoder's input limit (§3.4).
    static func inputSizeProblems(_ component: ComponentReader, patchSize: Int) -> [String] {
        guard component.name == ComponentRole.imageEncoder.rawValue else { return [] }
        guard let group = try? component.subgroup("preprocessing") else { return ["missing group preprocessing (§3.4)"] }
        guard let resize = try? group.intAttribute("do_resize"), resize == 0 || resize == 1 else {
            return ["preprocessing/do_resize is missing or not 0 or 1 (§3.4)"]
        }
        guard resize == 1 else { return [] }
        guard let height = try? group.intAttribute("height"), let width = try? group.intAttribute("width") else {
            return ["preprocessing/height and width must be integers (§3.4)"]
        }
        return ImageEncoderLimits.problem(height: height, width: width, patchSize: patchSize).map { ["preprocessing: \($0)"] } ?? []
    }

    /// The `tied` attribute (§5.3): a JSON list of `{"name", "target", "hf_name"}` objects that lists exactly the
    /// soft links of `tensors/`, each with the target it links to; an entry whose name equals its target (a second
    /// source name of one parameter) names a stored tensor and has no link.
    public static func tiedProblems(_ component: ComponentReader, _ records: [TensorRecord]) -> [String] {
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

    /// A message without its leading `FILE: ROLE: ` (or `FILE: `).
    public static func withoutOrigin(_ message: String, _ component: ComponentReader) -> String {
        for prefix in ["\(component.checkpoint.path): \(component.name): ", "\(component.checkpoint.path): "] where message.hasPrefix(prefix) {
            return String(message.dropFirst(prefix.count))
        }
        return message
    }
}
