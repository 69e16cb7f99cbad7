import PrimaIO
import PrimaModels
import PrimaTensor

/// What a trace must agree on with the checkpoint whose runtime runs it (Formats/prima-trace.md §1.3): its inputs
/// fit the component (token ids inside the vocabulary, sequences within the positions, images a whole number of
/// patches, the checkpoint's class token ids), and its activations are ones the runtime produces, with the shapes
/// it produces them in, in forward order, with every required one present. A trace that does not is bad input and
/// the error names the trace file, in every mode that reads a trace (`--trace`, `--against … --trace`).
enum TraceContract {
    /// The file that errors about `trace` name ("trace" for one made in memory).
    static func file(_ trace: Trace) -> String { trace.path ?? "trace" }

    /// `description` as an error line about `path`: prefixed with it unless it already starts with it (the runtime's
    /// errors name their checkpoint and component themselves).
    static func located(_ description: String, in path: String) -> String {
        description.hasPrefix(path + ": ") ? description : "\(path): \(description)"
    }

    // MARK: Inputs

    /// The vocabulary and `max_position_embeddings` of a text model; nil for an image model. ModernBERT's runtime
    /// (rotary positions) would run longer sequences, but a reference longer than the model's positions is outside
    /// its contract, and the bound keeps what a trace can make the runtime allocate to the model's own scale.
    static func tokenLimits(_ model: any ComponentModel) -> (vocabulary: Int, maxPositions: Int)? {
        switch model {
        case let model as Qwen3Model: (model.config.vocabSize, model.config.maxPositionEmbeddings)
        case let model as BERTModel: (model.config.vocabSize, model.config.maxPositionEmbeddings)
        case let model as ModernBERTModel: (model.config.vocabSize, model.config.maxPositionEmbeddings)
        default: nil
        }
    }

    /// Checks a component trace's inputs against `model`, the component `owner` names ("the decoder of CKPT").
    static func checkInputs(of trace: Trace, _ inputs: ModelInputs, model: any ComponentModel, owner: String) throws {
        let file = file(trace)
        switch inputs {
        case .tokens(let ids, _):
            guard let limits = tokenLimits(model) else {
                throw ToolError.input("\(file): /inputs holds token ids, but \(owner) takes images")
            }
            try checkIds(ids, dataset: "input_ids", vocabulary: limits.vocabulary, owner: owner, file: file)
            if let length = ids.first?.count, length > limits.maxPositions {
                throw ToolError.input("\(file): /inputs/input_ids has \(length) positions, more than the \(limits.maxPositions) "
                                      + "(max_position_embeddings) of \(owner)")
            }
        case .pixels(let pixels):
            guard let model = model as? DINOv3ViTModel else {
                throw ToolError.input("\(file): /inputs holds pixel_values, but \(owner) takes token ids")
            }
            try checkPixels(pixels, model: model, owner: owner, file: file)
        }
    }

    /// Refuses a `prima` trace made with another `decoder_inputs` than the checkpoint's (Formats/prima-trace.md §10.1),
    /// before its activations are paired: the one-line error names both values rather than the text activations
    /// one side lacks.
    static func checkDecoderInputs(of trace: Trace, model: PrimaModel, checkpoint: String) throws(ToolError) {
        guard trace.decoderInputs == model.heads.decoderInputs else {
            throw ToolError.input("\(file(trace)): made with decoder_inputs \"\(trace.decoderInputs.rawValue)\", but /prima of \(checkpoint) has "
                                  + "\"\(model.heads.decoderInputs.rawValue)\" (Formats/prima-trace.md §10.1): the trace is of the other decoder input")
        }
    }

    /// Checks a `prima` trace's inputs against the checkpoint's pipeline (Formats/prima-trace.md §10.2).
    static func checkInputs(of trace: Trace, _ inputs: PrimaInputs, classTokenIds: [Int], model: PrimaModel, checkpoint: String) throws {
        let file = file(trace)
        try checkDecoderInputs(of: trace, model: model, checkpoint: checkpoint)
        let image = model.imageEncoder
        try checkPixels(inputs.pixelValues, model: image, owner: "the image_encoder of \(checkpoint)", file: file)
        let textOwner = "the text_encoder of \(checkpoint)"
        guard inputs.textIds.count >= 2 else {
            throw ToolError.input("\(file): /inputs/input_ids holds \(inputs.textIds.count) token\(inputs.textIds.count == 1 ? "" : "s"); the text is [CLS] … [SEP], at least 2 (Formats/prima-trace.md §10.2)")
        }
        if let limits = tokenLimits(model.textEncoder) {
            try checkIds([inputs.textIds], dataset: "input_ids", vocabulary: limits.vocabulary, owner: textOwner, file: file)
        }
        let textPositions = model.textEncoder.textConfig.maxPositionEmbeddings
        guard inputs.textIds.count <= textPositions else {
            throw ToolError.input("\(file): /inputs/input_ids has \(inputs.textIds.count) tokens, more than the \(textPositions) positions of \(textOwner) "
                                  + "(the text is truncated to them; Formats/prima-trace.md §10.2)")
        }
        let decoder = model.decoder.config, decoderOwner = "the decoder of \(checkpoint)"
        try checkIds([inputs.promptIds], dataset: "prompt_ids", vocabulary: decoder.vocabSize, owner: decoderOwner, file: file)
        try checkIds([inputs.answerPrefixIds], dataset: "answer_prefix_ids", vocabulary: decoder.vocabSize, owner: decoderOwner, file: file)
        // T_dec of §10.3: prompt, 2 + ⌊h/2⌋·⌊w/2⌋ image tokens, 1, 2 + ⌊L/2⌋ text tokens, 1, answer prefix.
        let p = image.config.patchSize
        let h = inputs.pixelValues.shape[2] / p, w = inputs.pixelValues.shape[3] / p, l = inputs.textIds.count - 2
        let length = inputs.promptIds.count + 2 + (h / 2) * (w / 2) + 1 + 2 + l / 2 + 1 + inputs.answerPrefixIds.count
        guard length <= decoder.maxPositionEmbeddings else {
            throw ToolError.input("\(file): the inputs make a decoder sequence of \(length) positions (Formats/prima-trace.md §10.3), more than "
                                  + "the \(decoder.maxPositionEmbeddings) of \(decoderOwner)")
        }
        let ours = model.heads.classTokenIds
        guard classTokenIds == ours else {
            let detail = classTokenIds.count != ours.count
                ? "\(classTokenIds.count) ids, \(checkpoint) has \(ours.count) classes"
                : classTokenIds.indices.first { classTokenIds[$0] != ours[$0] }.map { "class \($0) is \(classTokenIds[$0]), \(checkpoint) has \(ours[$0])" } ?? ""
            throw ToolError.input("\(file): /inputs/class_token_ids differ from the class token ids of \(checkpoint) (\(detail))")
        }
    }

    /// Every id of `rows` in [0, vocabulary).
    static func checkIds(_ rows: [[Int]], dataset: String, vocabulary: Int, owner: String, file: String) throws {
        for (b, row) in rows.enumerated() {
            if let t = row.firstIndex(where: { $0 < 0 || $0 >= vocabulary }) {
                throw ToolError.input("\(file): /inputs/\(dataset) holds \(row[t]) (row \(b), position \(t)), outside the vocabulary of \(vocabulary) of \(owner)")
            }
        }
    }

    /// Pixels (B, C, H, W) with the encoder's channel count and H, W positive multiples of its patch size.
    static func checkPixels(_ pixels: Tensor, model: DINOv3ViTModel, owner: String, file: String) throws {
        let p = model.config.patchSize, shape = pixels.shape
        guard shape[1] == model.config.channelCount else {
            throw ToolError.input("\(file): /inputs/pixel_values has \(shape[1]) channels; \(owner) takes \(model.config.channelCount)")
        }
        guard shape[2] >= p, shape[3] >= p, shape[2] % p == 0, shape[3] % p == 0 else {
            throw ToolError.input("\(file): /inputs/pixel_values is \(shape[2]) × \(shape[3]) pixels, not a whole number of the "
                                  + "\(p) × \(p) patches of \(owner)")
        }
    }

    // MARK: Activations

    /// Activations of a `prima` trace without a token axis (Formats/prima-trace.md §10.3): stored as the runtime
    /// reports them, (1, X).
    static let primaVectors: Set<String> = ["text_encoder.pooler", "alignment.image_global", "alignment.text_global",
                                            "image_classifier.logits", "class_logits", "class_probs"]

    /// Activations a component trace may leave out (Formats/prima-trace.md §4.1, §6 rule 2); in a `prima` trace
    /// every activation the pipeline produces is required (§10.4).
    static let optionalComponentActivations: Set<String> = ["logits", "pooler"]

    /// The shape in which a trace stores the activation the runtime reports as `produced` (Formats/prima-trace.md
    /// §4.1, §10.3): a component's [B·T, X] as (B, T, X) and BERT's pooler [B, C] as is; in a `prima` trace (batch 1)
    /// the vectors of ``primaVectors`` [1, X] as is and every other [N, X] as (1, N, X).
    static func traceShape(of name: String, produced: [Int], subject: TraceSubject) -> [Int] {
        switch subject {
        case .component(_, let inputs):
            let batch = max(inputs.batch, 1)
            guard name != "pooler", let rows = produced.first, rows % batch == 0 else { return produced }
            return [batch, rows / batch] + produced.dropFirst()
        case .prima:
            return primaVectors.contains(name) ? produced : [1] + produced
        case .primaBatch(let inputs):
            // [rows, X] of a batch: per-case vectors as is, token rows as (batch, rows / batch, X) (§11.11).
            let batch = name.hasPrefix("text_encoder.") || name.hasPrefix("alignment.text_") ? inputs.textIds?.count ?? 1 : inputs.pixelValues.shape[0]
            guard !primaVectors.contains(name), let rows = produced.first, batch > 0, rows % batch == 0 else { return produced }
            return [batch, rows / batch] + produced.dropFirst()
        }
    }

    /// Pairs each activation of `trace` with the runtime's (`produced`, in forward order, by `owner`), reshaped to the
    /// trace's layout. Refuses, naming the trace: an activation the runtime does not produce (with the closest
    /// names), one of another shape, activations out of forward order, and a missing required one. A trace of
    /// inputs only pairs nothing and is refused nothing here.
    static func pair(_ trace: Trace, with produced: [(name: String, tensor: Tensor)], owner: String) throws
        -> [(name: String, reference: Tensor, ours: Tensor)] {
        guard !trace.activations.isEmpty else { return [] }
        let file = file(trace)
        let positions = Dictionary(produced.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
        var pairs: [(name: String, reference: Tensor, ours: Tensor)] = []
        var previous: (name: String, position: Int)?
        for (name, reference) in trace.activations {
            guard let position = positions[name] else {
                throw ToolError.input("\(file): /activations/\(name) is not an activation of \(owner) (\(closest(to: name, among: produced.map(\.name))))")
            }
            if let previous, position < previous.position {
                throw ToolError.input("\(file): /activations/\(name) comes after \(previous.name) in the trace's order but before it in the "
                                      + "forward pass (Formats/prima-trace.md §4.2)")
            }
            let ours = produced[position].tensor
            let shape = traceShape(of: name, produced: ours.shape, subject: trace.subject)
            guard reference.shape == shape else {
                throw ToolError.input("\(file): /activations/\(name) has shape \(ShapeMath.describe(reference.shape)); \(owner) gives "
                                      + "\(ShapeMath.describe(shape)) on the trace's inputs")
            }
            pairs.append((name, reference, ours.reshaped(shape)))
            previous = (name, position)
        }
        let present = Set(trace.activations.map(\.name))
        let optional = trace.role == nil ? [] : optionalComponentActivations
        if let missing = produced.first(where: { !present.contains($0.name) && !optional.contains($0.name) }) {
            throw ToolError.input("\(file): required activation \(missing.name) is missing (\(owner) produces it; Formats/prima-trace.md "
                                  + (trace.role == nil ? "§10.4)" : "§6)"))
        }
        return pairs
    }

    /// "closest: A, B; N in all": the (at most three) names of `names` nearest to `name` in edit distance.
    static func closest(to name: String, among names: [String]) -> String {
        let distances = names.map { editDistance(Array(name.unicodeScalars), Array($0.unicodeScalars)) }
        guard let best = distances.min() else { return "it produces none" }
        let nearest = names.indices.filter { distances[$0] == best }.prefix(3).map { names[$0] }
        return "closest: \(nearest.joined(separator: ", ")); \(names.count) in all"
    }

    /// Levenshtein distance (insertions, deletions, substitutions), O(|a|·|b|) time, O(|b|) memory.
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        var row = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, y) in b.enumerated() {
                let substitution = diagonal + (x == y ? 0 : 1)
                diagonal = row[j + 1]
                row[j + 1] = min(substitution, row[j] + 1, row[j + 1] + 1)
            }
        }
        return row[b.count]
    }
}
