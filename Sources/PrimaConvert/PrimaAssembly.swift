import Crypto
import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaMetadata
import PrimaModels
import PrimaSafetensors
import PrimaTensor
import PrimaTokenizers

/// What the user asks for when assembling a full PRIMA checkpoint (`prima-convert import --labels …`).
public struct PrimaAssemblyOptions: Sendable {
    /// The classes, in logit order.
    public let labels: [PrimaLabel]
    /// A safetensors file with trained heads under their §8 names (any subset), or nil.
    public let headsFile: String?
    public let prompt: String
    public let answerPrefix: String
    /// The metadata schema (Formats/metadata-schema.md).
    public let schema: MetadataSchema
    /// Seed of the initialisation of the heads not in `headsFile`.
    public let initSeed: Int
    /// What the decoder reads (`decoder_inputs`, Formats/prima-checkpoint.md §8): `image` for heads trained without
    /// the metadata (`prima-train stage3 --no-metadata`, or the reference trainer's `--no-metadata`).
    public let decoderInputs: PrimaDecoderInputs

    /// The prompt of Docs/prima-model.md.
    public static let defaultPrompt = "Classify the lesion from the clinical image and the patient's risk factors."
    /// The answer prefix of Docs/prima-model.md.
    public static let defaultAnswerPrefix = " Diagnosis:"
    /// Display names of PAD-UFES-20's diagnosis codes, used when `--labels` gives a bare code.
    public static let padUfes20Names = ["ACK": "Actinic keratosis", "BCC": "Basal cell carcinoma", "MEL": "Melanoma",
                                        "NEV": "Nevus", "SCC": "Squamous cell carcinoma", "SEK": "Seborrheic keratosis"]

    public init(labels: [PrimaLabel], headsFile: String? = nil, prompt: String = defaultPrompt,
                answerPrefix: String = defaultAnswerPrefix, schema: MetadataSchema = .padUfes20, initSeed: Int = 0,
                decoderInputs: PrimaDecoderInputs = .imageAndMetadata) {
        self.labels = labels
        self.headsFile = headsFile
        self.prompt = prompt
        self.answerPrefix = answerPrefix
        self.schema = schema
        self.initSeed = initSeed
        self.decoderInputs = decoderInputs
    }

    /// Parses `--labels`: comma-separated `CODE` or `CODE=Display name` entries.
    public static func parseLabels(_ text: String) throws -> [PrimaLabel] {
        var labels: [PrimaLabel] = []
        for (index, entry) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            let code = parts[0]
            guard !code.isEmpty else { throw ToolError.input("--labels: entry \(index + 1) has no class code") }
            guard !code.contains(where: \.isWhitespace) else {
                throw ToolError.input("--labels: \"\(code)\" is not a class code (no spaces)")
            }
            if parts.count > 1 && parts[1].isEmpty { throw ToolError.input("--labels: class \(code) has an empty name after \"=\"") }
            // Names are printed in reports: no line breaks or terminal escapes.
            if parts.contains(where: Terminal.hasControlCharacters) {
                throw ToolError.input("--labels: entry \(index + 1) holds a control character (\(Terminal.escaped(String(entry))))")
            }
            labels.append(PrimaLabel(code: code, name: parts.count > 1 ? parts[1] : padUfes20Names[code] ?? code))
        }
        guard labels.count >= 2 else { throw ToolError.input("--labels: give at least two classes") }
        if let duplicate = Dictionary(grouping: labels, by: \.code).first(where: { $0.value.count > 1 })?.key {
            throw ToolError.input("--labels: class \(duplicate) is given twice")
        }
        return labels
    }
}

/// The `/prima` heads group, fully computed before anything is written (Formats/prima-checkpoint.md §8).
struct PrimaAssembly {
    let config: PrimaHeadsConfig
    let options: PrimaAssemblyOptions
    /// Every float tensor in §8 order, f32.
    let tensors: [(name: String, shape: [Int], values: [Float])]
    let classTokenIds: [Int]
    /// Tensors that hold the seeded initialisation (or, for the special tokens, the embedding-based one).
    let initialised: [String]
    /// SHA-256 record of the heads file, if one was given.
    let headsFileRecord: JSONValue?

    /// Validates the components and the heads file and computes every head tensor.
    init(plans: [ImportPlan], options: PrimaAssemblyOptions) throws {
        func plan(_ role: ComponentRole) throws -> ImportPlan {
            guard let plan = plans.first(where: { $0.role == role }) else {
                throw ToolError.input("--labels assembles a PRIMA checkpoint: give --image-encoder, --text-encoder and --decoder")
            }
            return plan
        }
        let image = try plan(.imageEncoder), text = try plan(.textEncoder), decoder = try plan(.decoder)
        // The importer admits only these architectures in these roles; the casts recover the typed configs.
        guard let imageConfig = image.source.config as? DINOv3ViTConfig else {
            throw ToolError.input("\(image.source.path): the PRIMA image encoder must be a DINOv3 ViT")
        }
        guard let textConfig = text.source.config as? any TextEncoderConfig else {
            throw ToolError.input("\(text.source.path): the PRIMA text encoder must be BERT or ModernBERT")
        }
        guard let decoderConfig = decoder.source.config as? Qwen3Config else {
            throw ToolError.input("\(decoder.source.path): the PRIMA decoder must be Qwen3")
        }
        let config = PrimaHeadsConfig(classCount: options.labels.count, imageWidth: imageConfig.hiddenSize,
                                      textWidth: textConfig.hiddenSize,
                                      decoderWidth: decoderConfig.hiddenSize)
        self.config = config
        self.options = options

        // The decoder's tokenizer gives the class tokens and the words the special tokens start from.
        guard let tokenizerBytes = decoder.source.auxiliaryFiles.first(where: { $0.name == "tokenizer.json" })?.bytes else {
            throw ToolError.input("\(decoder.source.path): no tokenizer.json; PRIMA needs the decoder's tokenizer for the class tokens")
        }
        let tokenizer = try Tokenizer(jsonData: Data(tokenizerBytes), source: decoder.source.path + "/tokenizer.json")
        func tokens(_ text: String) throws -> [Int] {
            let ids = try tokenizer.encode(text, addSpecialTokens: false).ids
            guard !ids.isEmpty else { throw ToolError.input("\(decoder.source.path)/tokenizer.json: \"\(text)\" encodes to no tokens") }
            return ids
        }
        var owner: [Int: String] = [:]
        classTokenIds = try options.labels.map { label in
            let id = try tokens(" " + label.code)[0]
            if let other = owner[id] {
                let piece = tokenizer.idToToken(id) ?? "\(id)"
                throw ToolError.input("\(decoder.source.path)/tokenizer.json: classes \(other) and \(label.code) share their first token \(id) (\"\(piece)\"); choose codes whose \" CODE\" starts with different tokens")
            }
            owner[id] = label.code
            return id
        }
        for (name, text) in [("prompt", options.prompt), ("answer prefix", options.answerPrefix)] where text.isEmpty {
            throw ToolError.input("the \(name) must not be empty")
        }

        let given = try options.headsFile.map { try Self.readHeads($0, config: config) } ?? [:]
        var initializer = PrimaHeadsInitializer(seed: UInt64(options.initSeed))
        var tensors: [(String, [Int], [Float])] = []
        var initialised: [String] = []
        for spec in config.floatTensors {
            let count = spec.shape.reduce(1, *)
            if let fanIn = spec.fanIn {
                let drawn = initializer.uniform(count: count, fanIn: fanIn)
                if given[spec.name] == nil { initialised.append(spec.name) }
                tensors.append((spec.name, spec.shape, given[spec.name] ?? drawn))
            } else if let values = given[spec.name] {
                tensors.append((spec.name, spec.shape, values))
            } else {
                let image = try Self.meanEmbedding(decoder, ids: try tokens(" image"), width: config.decoderWidth)
                let text = try Self.meanEmbedding(decoder, ids: try tokens(" text"), width: config.decoderWidth)
                tensors.append((spec.name, spec.shape, image + image + text + text))
                initialised.append(spec.name)
            }
        }
        self.tensors = tensors
        self.initialised = initialised
        headsFileRecord = try options.headsFile.map { path in
            // readHeads accepted only the §8 tensors, so the file is at most their f32 bytes past its header.
            let bytes = try InputFile.read(path, limit: SafetensorsFile.maxHeaderLength + 8
                                           + config.floatTensors.reduce(0) { $0 + 4 * $1.shape.reduce(1, *) })
            return Importer.fileRecord(name: (path as NSString).lastPathComponent, size: bytes.count,
                                       sha256: bytes.withUnsafeBytes { SHA256.hash(data: $0) })
        }
    }

    /// The tensors of a heads file as f32, each checked against its §8 name, shape and a float dtype.
    private static func readHeads(_ path: String, config: PrimaHeadsConfig) throws -> [String: [Float]] {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw ToolError.input("\(error)") }
        let specs = Dictionary(uniqueKeysWithValues: config.floatTensors.map { ($0.name, $0) })
        var values: [String: [Float]] = [:]
        for entry in file.entries {
            guard let spec = specs[entry.name] else {
                throw ToolError.input("\(path): tensor \(entry.name) is not a PRIMA head (Formats/prima-checkpoint.md §8)")
            }
            guard entry.dtype.isWeightFloat else {
                throw ToolError.input("\(path): tensor \(entry.name): dtype \(entry.dtype.safetensorsName) is not F32, F16 or BF16")
            }
            guard entry.shape == spec.shape else {
                throw ToolError.input("\(path): tensor \(entry.name) has shape \(ShapeMath.describe(entry.shape)), expected \(ShapeMath.describe(spec.shape)) for these components and labels")
            }
            let tensor: Tensor
            do { tensor = try file.readTensor(entry).toFloat32() } catch { throw ToolError.input("\(error)") }
            let floats = tensor.float32Values()
            if floats.contains(where: { !$0.isFinite }) { throw ToolError.input("\(path): tensor \(entry.name) holds NaN or Inf") }
            values[entry.name] = floats
        }
        return values
    }

    /// The mean of the decoder's input-embedding rows `ids`, read from its source file (only those rows): the rows
    /// widened to f32, summed in f32 in id order, divided by their count.
    private static func meanEmbedding(_ decoder: ImportPlan, ids: [Int], width: Int) throws -> [Float] {
        guard let item = decoder.tensors.first(where: {
            if case .store(let canonical) = $0.action { return canonical == "embed.tokens" }
            return false
        }) else { throw ToolError.input("\(decoder.source.path): no input embedding table") }
        let entry = item.entry, rowBytes = width * entry.dtype.byteSize
        var sum = [Float](repeating: 0, count: width)
        for id in ids {
            let row = Tensor(zeros: [1, width], dtype: entry.dtype)
            do {
                try item.file.read(entry, byteRange: (id * rowBytes)..<((id + 1) * rowBytes),
                                   into: UnsafeMutableRawBufferPointer(rebasing: row.storage.bytes[0..<rowBytes]))
            } catch { throw ToolError.input("\(error)") }
            for (i, value) in row.toFloat32().float32Values().enumerated() { sum[i] += value }
        }
        return sum.map { $0 / Float(ids.count) }
    }

    /// Writes the `/prima` group.
    func write(into writer: CheckpointWriter) throws {
        let group = try writer.addGroup("prima")
        let labels = JSONValue.array(options.labels.map {
            .object(JSONObject([("code", .string($0.code)), ("name", .string($0.name))]))
        })
        try group.addFile("labels.json", bytes: Array(labels.serialized(indent: 2).utf8))
        try group.addFile("prompt.txt", bytes: Array(options.prompt.utf8))
        try group.addFile("answer_prefix.txt", bytes: Array(options.answerPrefix.utf8))
        try group.addFile("metadata_schema.json", bytes: Array(options.schema.serialized().utf8))
        for (name, shape, values) in tensors {
            try values.withUnsafeBytes { try group.writeTensor(name: name, dtype: .f32, shape: shape, hfName: nil, bytes: $0) }
        }
        let ids = classTokenIds.map(Int64.init)
        try ids.withUnsafeBytes {
            try group.writeTensor(name: PrimaHeadsConfig.classTokenIdsName, dtype: .i64, shape: [ids.count], hfName: nil, bytes: $0)
        }
        let attributes = group.group
        try attributes.setAttribute("tensor_count", int: tensors.count + 1)
        try attributes.setAttribute("parameter_count", int: tensors.reduce(0) { $0 + $1.values.count })
        try attributes.setAttribute("heads_trained", int: initialised.isEmpty ? 1 : 0)
        try options.decoderInputs.write(to: attributes)
        try attributes.setAttribute("init_seed", int: options.initSeed)
        try attributes.setAttribute("initialised_tensors", string: JSONValue.array(initialised.map { .string($0) }).serialized())
        if let headsFileRecord { try attributes.setAttribute("heads_file", string: headsFileRecord.serialized()) }
        for (key, value) in [("d_align", config.alignWidth), ("d_image", config.imageWidth), ("d_text", config.textWidth),
                             ("d_llm", config.decoderWidth)] {
            try attributes.setAttribute(key, int: value)
        }
    }
}
