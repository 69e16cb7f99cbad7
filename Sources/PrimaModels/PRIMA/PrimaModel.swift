import Foundation
import PrimaCheckpoint
import PrimaTensor

/// The token-level inputs of one PRIMA diagnosis (batch 1), after image preprocessing and tokenization.
public struct PrimaInputs: Sendable {
    /// Preprocessed image [1, 3, H, W].
    public let pixelValues: Tensor
    /// The rendered metadata text as text-encoder tokens, with [CLS] … [SEP]; not read when the model's decoder
    /// inputs leave the metadata out (``PrimaDecoderInputs/image``).
    public let textIds: [Int]
    /// The prompt and the answer prefix as decoder tokens.
    public let promptIds: [Int]
    public let answerPrefixIds: [Int]

    public init(pixelValues: Tensor, textIds: [Int], promptIds: [Int], answerPrefixIds: [Int]) {
        self.pixelValues = pixelValues
        self.textIds = textIds
        self.promptIds = promptIds
        self.answerPrefixIds = answerPrefixIds
    }
}

/// The whole PRIMA forward pass from one checkpoint (Docs/prima-model.md): DINOv3 image encoder, BERT or
/// ModernBERT text encoder, the heads, and the Qwen3 decoder scoring the classes by their restricted logits.
///
/// The stages are separate methods so that a caller can time them; `forward` runs them in order and reports the
/// activations of Formats/prima-trace.md's `prima` component.
public final class PrimaModel: Sendable {
    public let imageEncoder: DINOv3ViTModel
    public let textEncoder: any TextEncoderModel
    public let decoder: Qwen3Model
    public let heads: PrimaHeads
    /// What the decoder's input sequence holds: the checkpoint's, or what a training stage chose.
    public let decoderInputs: PrimaDecoderInputs

    /// Loads the three components and the heads; checks that their widths agree. `training` keeps what the
    /// backward passes need (an int8 weight's plain values: ``loadComponentModel(_:training:)``).
    /// `extraAdapters` adds a training stage's new adapters by role (``TrainingAdapter``). `decoderInputs` replaces
    /// the checkpoint's (stage 3 trains the variant it is asked for).
    public init(checkpoint: Checkpoint, training: Bool = false, extraAdapters: [ComponentRole: [TrainingAdapter]] = [:],
                decoderInputs: PrimaDecoderInputs? = nil) throws {
        try StoredValidation.validate(checkpoint)
        guard checkpoint.extraGroups.contains("prima") else {
            throw RuntimeError("\(checkpoint.path): not a PRIMA checkpoint (no /prima heads group; assemble one with prima-convert import --labels)")
        }
        for role in [ComponentRole.imageEncoder, .textEncoder, .decoder] where !checkpoint.roles.contains(role) {
            throw RuntimeError("\(checkpoint.path): a PRIMA checkpoint needs a component \(role.rawValue)")
        }
        guard let image = try loadComponentModel(try checkpoint.component(.imageEncoder), training: training, extraAdapters: extraAdapters[.imageEncoder] ?? []) as? DINOv3ViTModel else {
            throw RuntimeError("\(checkpoint.path): image_encoder is not a DINOv3 ViT")
        }
        guard let decoder = try loadComponentModel(try checkpoint.component(.decoder), training: training, extraAdapters: extraAdapters[.decoder] ?? []) as? Qwen3Model else {
            throw RuntimeError("\(checkpoint.path): decoder is not a Qwen3 model")
        }
        guard let text = try loadComponentModel(try checkpoint.component(.textEncoder), training: training, extraAdapters: extraAdapters[.textEncoder] ?? []) as? any TextEncoderModel else {
            throw RuntimeError("\(checkpoint.path): text_encoder is neither BERT nor ModernBERT")
        }
        let heads = try PrimaHeads(checkpoint: checkpoint)
        let widths = [("d_image", heads.config.imageWidth, image.config.hiddenSize),
                      ("d_text", heads.config.textWidth, text.textConfig.hiddenSize),
                      ("d_llm", heads.config.decoderWidth, decoder.config.hiddenSize)]
        for (name, stored, actual) in widths where stored != actual {
            throw RuntimeError("\(checkpoint.path): prima: \(name) is \(stored) but the component's hidden size is \(actual)")
        }
        if let bad = heads.classTokenIds.first(where: { $0 < 0 || $0 >= decoder.config.vocabSize }) {
            throw RuntimeError("\(checkpoint.path): prima: class token id \(bad) is outside the decoder's vocabulary of \(decoder.config.vocabSize)")
        }
        self.imageEncoder = image
        self.textEncoder = text
        self.decoder = decoder
        self.heads = heads
        self.decoderInputs = decoderInputs ?? heads.decoderInputs
    }

    /// The live tensor at gradient path `path` (`ROLE/tensors/NAME`, `ROLE/lora/ADAPTER/tensors/X.lora_a|b`,
    /// `prima/tensors/NAME`; Formats/prima-trace.md §11.6), which the model computes with: an optimiser updates it
    /// in place. nil when the pipeline has no such float tensor.
    public func parameter(atPath path: String) -> Tensor? {
        guard let slash = path.firstIndex(of: "/") else { return nil }
        let role = String(path[..<slash]), local = String(path[path.index(after: slash)...])
        switch role {
        case ComponentRole.imageEncoder.rawValue: return PrimaModels.parameter(of: imageEncoder, local)
        case ComponentRole.textEncoder.rawValue: return PrimaModels.parameter(of: textEncoder, local)
        case ComponentRole.decoder.rawValue: return PrimaModels.parameter(of: decoder, local)
        case "prima": return heads.weights.parameter(local)
        default: return nil
        }
    }

    /// The image encoder's output, split: CLS [1, d_img] and the patch tokens [h·w, d_img] of the h × w grid
    /// (registers dropped).
    public struct EncodedImage: Sendable {
        public let cls: Tensor
        public let patches: Tensor
        public let gridHeight: Int
        public let gridWidth: Int
    }

    /// The text encoder's output, split: CLS [1, d_txt] and the sequence tokens [L, d_txt] (no [CLS], [SEP]).
    public struct EncodedText: Sendable {
        public let cls: Tensor
        public let sequence: Tensor
    }

    /// Runs the image encoder on pixel values [1, 3, H, W].
    public func encodeImage(_ pixels: Tensor, observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> EncodedImage {
        guard pixels.shape.count == 4, pixels.shape[0] == 1 else {
            throw RuntimeError("PRIMA takes one image [1, 3, H, W], got \(ShapeMath.describe(pixels.shape))")
        }
        let p = imageEncoder.config.patchSize
        let hidden = try imageEncoder.forward(.pixels(pixels)) { try observe("image_encoder." + $0, $1) }   // [T, d_img]
        let prefix = 1 + imageEncoder.config.registerCount
        let h = pixels.shape[2] / p, w = pixels.shape[3] / p
        return EncodedImage(cls: embeddingLookup(hidden, [[0]]), patches: embeddingLookup(hidden, [Array(prefix..<(prefix + h * w))]),
                            gridHeight: h, gridWidth: w)
    }

    /// Runs the text encoder on [CLS] … [SEP] token ids (one unpadded sequence of at least 2 tokens).
    public func encodeText(_ ids: [Int], observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> EncodedText {
        guard ids.count >= 2 else { throw RuntimeError("PRIMA's text input needs at least [CLS] and [SEP], got \(ids.count) tokens") }
        let hidden = try textEncoder.forward(.tokens(ids: [ids], mask: [Array(repeating: 1, count: ids.count)])) {
            try observe("text_encoder." + $0, $1)
        }                                                                                                  // [T, d_txt]
        return EncodedText(cls: embeddingLookup(hidden, [[0]]), sequence: embeddingLookup(hidden, [Array(1..<(ids.count - 1))]))
    }

    /// Projects both encodings into the decoder's width and builds its input embeddings [T_dec, d_llm]: prompt,
    /// <|img_start|>, image CLS, image sequence, <|img_end|>, <|txt_start|>, text CLS, text sequence, <|txt_end|>,
    /// answer prefix. Also reports the alignment and image-classifier outputs (not used by the decoder).
    ///
    /// `text` is given exactly when ``decoderInputs`` uses the metadata; without it the four metadata rows
    /// (<|txt_start|> … <|txt_end|>) are left out and no text activation is reported.
    public func fuse(_ image: EncodedImage, _ text: EncodedText?, promptIds: [Int], answerPrefixIds: [Int],
                     observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> Tensor {
        try fuseRecording(image, text, promptIds: promptIds, answerPrefixIds: answerPrefixIds, observe: observe).embeddings
    }

    /// What the fusion's backward needs: the projectors' saved states and the rows of each part of the decoder input.
    struct FusionTape {
        let imageCLS: CLSProjector.Saved
        let imageSequence: SequenceProjector.Saved
        /// The metadata part's projectors (nil: the decoder inputs leave it out).
        let text: (cls: CLSProjector.Saved, sequence: SequenceProjector.Saved)?
        /// Rows of each part, in order (the special tokens are one row each between them; the text parts are 0 rows
        /// and their two special tokens absent when `text` is nil).
        let rows: (prompt: Int, imageCLS: Int, imageSequence: Int, textCLS: Int, textSequence: Int, answer: Int)
    }

    /// ``fuse(_:_:promptIds:answerPrefixIds:observe:)`` recording what the backward needs.
    func fuseRecording(_ image: EncodedImage, _ text: EncodedText?, promptIds: [Int], answerPrefixIds: [Int],
                       observe: (String, Tensor) throws -> Void) throws -> (embeddings: Tensor, tape: FusionTape) {
        precondition((text != nil) == decoderInputs.usesMetadata, "fuse: the text encoding is given exactly when the decoder reads the metadata")
        try observe("alignment.image_global", heads.alignImage(image.cls))
        if let text { try observe("alignment.text_global", heads.alignText(text.cls)) }
        try observe("alignment.image_local", heads.alignImage(image.patches))
        if let text { try observe("alignment.text_local", heads.alignText(text.sequence)) }
        try observe("image_classifier.logits", heads.classifyImage(image.cls))
        let imageCLS = heads.imageCLSProjector.forward(image.cls)
        try observe("fusion.image_cls", imageCLS.output)
        let imageSequence = try heads.imageSequence(image.patches, gridHeight: image.gridHeight, gridWidth: image.gridWidth)
        try observe("fusion.image_seq", imageSequence.output)

        let special = try heads.specialTokens()                                                            // [4, d_llm]
        let token = { (row: Int) in embeddingLookup(special, [[row]]) }
        var parts = [try decoder.inputEmbeddings(promptIds), token(0), imageCLS.output, imageSequence.output, token(1)]
        var textSaved: (cls: CLSProjector.Saved, sequence: SequenceProjector.Saved)?
        var textRows = (cls: 0, sequence: 0)
        if let text {
            let textCLS = heads.textCLSProjector.forward(text.cls)
            try observe("fusion.text_cls", textCLS.output)
            let textSequence = try heads.textSequence(text.sequence)
            try observe("fusion.text_seq", textSequence.output)
            parts += [token(2), textCLS.output, textSequence.output, token(3)]
            textSaved = (textCLS.saved, textSequence.saved)
            textRows = (textCLS.output.shape[0], textSequence.output.shape[0])
        }
        let embeddings = concatenateRows(parts + [try decoder.inputEmbeddings(answerPrefixIds)])
        let rows = (promptIds.count, imageCLS.output.shape[0], imageSequence.output.shape[0], textRows.cls, textRows.sequence,
                    answerPrefixIds.count)
        return (embeddings, FusionTape(imageCLS: imageCLS.saved, imageSequence: imageSequence.saved, text: textSaved, rows: rows))
    }

    /// Runs the decoder on input embeddings [T_dec, d_llm]; returns the class logits [K] at the last position.
    public func decode(_ embeddings: Tensor, observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> [Float] {
        let length = embeddings.shape[0]
        let hidden = try decoder.forward(embeddings: embeddings, mask: [Array(repeating: 1, count: length)]) {
            try observe("decoder." + $0, $1)
        }
        return try decoder.logits(embeddingLookup(hidden, [[length - 1]]), vocabulary: heads.classTokenIds).float32Values()
    }

    /// The whole pass; returns P(y = k | x) over the checkpoint's classes. Reports every activation of the
    /// `prima` trace component, including `class_logits` and `class_probs` as [1, K]. The text encoder runs only
    /// when the decoder reads the metadata.
    public func forward(_ inputs: PrimaInputs, observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> [Float] {
        let image = try encodeImage(inputs.pixelValues, observe: observe)
        let text = decoderInputs.usesMetadata ? try encodeText(inputs.textIds, observe: observe) : nil
        let embeddings = try fuse(image, text, promptIds: inputs.promptIds, answerPrefixIds: inputs.answerPrefixIds, observe: observe)
        let logits = try decode(embeddings, observe: observe)
        let probabilities = Self.softmax(logits)
        try observe("class_logits", Tensor(shape: [1, logits.count], float32: logits))
        try observe("class_probs", Tensor(shape: [1, probabilities.count], float32: probabilities))
        return probabilities
    }

    /// softmax over the K class logits, in double precision with the maximum subtracted.
    public static func softmax(_ logits: [Float]) -> [Float] {
        let top = Double(logits.max() ?? 0)
        let exps = logits.map { exp(Double($0) - top) }
        let sum = exps.reduce(0, +)
        return exps.map { Float($0 / sum) }
    }
}

/// Stacks [n_i, C] tensors into [Σ n_i, C].
func concatenateRows(_ parts: [Tensor]) -> Tensor {
    let c = parts[0].shape[1]
    let out = Tensor(zeros: [parts.reduce(0) { $0 + $1.shape[0] }, c], dtype: .f32)
    out.withMutableFloat32 { dst in
        var offset = 0
        for part in parts {
            precondition(part.shape.count == 2 && part.shape[1] == c, "concatenateRows: \(part.shape) is not [n, \(c)]")
            part.withFloat32 { src in (dst.baseAddress! + offset).update(from: src.baseAddress!, count: src.count) }
            offset += part.elementCount
        }
    }
    return out
}

// MARK: - Training (stage 3: class_ce)

extension PrimaModel {
    /// An encoder's backward walk captured with its tape: dLoss/d(final hidden state), the gradient store and the
    /// activation-gradient observer → dLoss/d(its input embeddings).
    typealias EncoderBackward = (Tensor, GradientStore, (String, Tensor) throws -> Void) throws -> Tensor

    /// What ``backward(_:tape:gradients:observe:)`` needs from ``trainingForward(_:observe:)``.
    public struct Tape {
        let inputs: PrimaInputs
        let imageBackward: EncoderBackward
        /// nil: the decoder inputs leave the metadata out, and the text encoder did not run.
        let textBackward: EncoderBackward?
        let imageTokens, textTokens, imagePrefix, gridHeight, gridWidth: Int
        let fusion: FusionTape
        let decoder: Qwen3Model.Tape
        let lastHidden: Tensor
        let head: Qwen3Model.ClassHeadSaved
    }

    /// The training forward of the whole pipeline (the §10 arithmetic, every stage recording its tape): the class
    /// logits [1, K] — only the K class rows of the LM head at the last position — and the tape.
    /// Reports the activations of the `prima` trace component.
    public func trainingForward(_ inputs: PrimaInputs, observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> (Tensor, Tape) {
        let pixels = inputs.pixelValues.toFloat32()
        guard pixels.shape.count == 4, pixels.shape[0] == 1 else {
            throw RuntimeError("PRIMA takes one image [1, 3, H, W], got \(ShapeMath.describe(pixels.shape))")
        }
        let usesText = decoderInputs.usesMetadata
        guard !usesText || inputs.textIds.count >= 2 else {
            throw RuntimeError("PRIMA's text input needs at least [CLS] and [SEP], got \(inputs.textIds.count) tokens")
        }
        let (imageHidden, imageTape) = try imageEncoder.trainingForward(pixels: pixels) { try observe("image_encoder." + $0, $1) }
        var textRun: (hidden: Tensor, backward: EncoderBackward)?
        if usesText {
            guard let textModel = textEncoder as? any TrainableEncoder else { throw RuntimeError("the text encoder cannot be trained") }
            textRun = try Self.trainingForward(textModel, ids: [inputs.textIds], mask: [Array(repeating: 1, count: inputs.textIds.count)]) {
                try observe("text_encoder." + $0, $1)
            }
        }

        let p = imageEncoder.config.patchSize, prefix = 1 + imageEncoder.config.registerCount
        let h = pixels.shape[2] / p, w = pixels.shape[3] / p
        let image = EncodedImage(cls: embeddingLookup(imageHidden, [[0]]), patches: embeddingLookup(imageHidden, [Array(prefix..<(prefix + h * w))]),
                                 gridHeight: h, gridWidth: w)
        let text = textRun.map {
            EncodedText(cls: embeddingLookup($0.hidden, [[0]]), sequence: embeddingLookup($0.hidden, [Array(1..<(inputs.textIds.count - 1))]))
        }
        let (embeddings, fusion) = try fuseRecording(image, text, promptIds: inputs.promptIds, answerPrefixIds: inputs.answerPrefixIds,
                                                     observe: observe)
        let length = embeddings.shape[0]
        let (hidden, decoderTape) = try decoder.trainingForward(embeddings: embeddings, mask: [Array(repeating: 1, count: length)]) {
            try observe("decoder." + $0, $1)
        }
        let last = embeddingLookup(hidden, [[length - 1]])
        let (classLogits, head) = decoder.classHeadForward(last, rows: heads.classTokenIds)     // [1, K]: the K rows only
        try observe("class_logits", classLogits)
        try observe("class_probs", Tensor(shape: [1, heads.classTokenIds.count], float32: Self.softmax(classLogits.float32Values())))
        let imageBackward: EncoderBackward = { [imageEncoder] in try imageEncoder.backward($0, tape: imageTape, gradients: $1, observe: $2) }
        let tape = Tape(inputs: inputs, imageBackward: imageBackward, textBackward: textRun?.backward, imageTokens: imageHidden.shape[0],
                        textTokens: textRun?.hidden.shape[0] ?? 0, imagePrefix: prefix, gridHeight: h, gridWidth: w, fusion: fusion,
                        decoder: decoderTape, lastHidden: last, head: head)
        return (classLogits, tape)
    }

    /// A text encoder's training forward on right-padded sequences ids [B][T] (mask [B][T]), with its backward captured.
    static func trainingForward<M: TrainableEncoder>(_ model: M, ids: [[Int]], mask: [[Int]], observe: (String, Tensor) throws -> Void) throws
        -> (Tensor, EncoderBackward) {
        let (hidden, tape) = try model.trainingForward(ids: ids, mask: mask, observe: observe)
        return (hidden, { try model.backward($0, tape: tape, gradients: $1, observe: $2) })
    }

    /// The backward walk from dLoss/d(class logits) [1, K]: accumulates the gradients of every trainable tensor of
    /// the decoder, the fusion heads and the encoders, and reports dLoss/d(activation) for every activation of the
    /// `prima` trace component (exactly 0 for those off the loss path: alignment, the image classifier, class_probs).
    /// An image-only decoder input (``PrimaDecoderInputs/image``) has no text activations and no text gradients.
    ///
    /// `encoderGradients` false stops at the encoders' outputs (stage 3 freezes them: nothing there trains, and
    /// their activation gradients are not reported).
    public func backward(_ dClassLogits: Tensor, tape: Tape, gradients: GradientStore, encoderGradients: Bool = true,
                         observe: (String, Tensor) throws -> Void = { _, _ in }) throws {
        let c = decoder.config.hiddenSize
        try observe("class_logits", dClassLogits)
        try observe("class_probs", Tensor(zeros: dClassLogits.shape, dtype: .f32))
        let dLast = try decoder.classHeadBackward(dClassLogits, hidden: tape.lastHidden, saved: tape.head, gradients: gradients)
        let rows = tape.fusion.rows
        let usesText = tape.fusion.text != nil
        let total = rows.prompt + (usesText ? 4 : 2) + rows.imageCLS + rows.imageSequence + rows.textCLS + rows.textSequence + rows.answer
        let dHidden = Tensor(zeros: [total, c], dtype: .f32)
        dLast.withFloat32 { g in dHidden.withMutableFloat32 { out in (out.baseAddress! + (total - 1) * c).update(from: g.baseAddress!, count: c) } }
        let dEmbeddings = try decoder.backward(dHidden, tape: tape.decoder, gradients: gradients) { try observe("decoder." + $0, $1) }

        // Split the decoder input's gradient back into its parts, in the order fuse() assembled them.
        var offset = 0
        func take(_ count: Int) -> Tensor {
            defer { offset += count }
            return embeddingLookup(dEmbeddings, [Array(offset..<(offset + count))])
        }
        let dPrompt = take(rows.prompt), dStart = take(1), dImageCLS = take(rows.imageCLS), dImageSequence = take(rows.imageSequence)
        let dImageEnd = take(1)
        // The metadata part: <|txt_start|>, text CLS, text sequence, <|txt_end|> (absent from an image-only input).
        let dText = usesText ? (start: take(1), cls: take(rows.textCLS), sequence: take(rows.textSequence), end: take(1)) : nil
        let dAnswer = take(rows.answer)
        if let table = gradients[GradientStore.path(role: ComponentRole.decoder.rawValue, tensor: "embed.tokens")] {
            Embedding.backward(dPrompt, ids: tape.inputs.promptIds, tableGradient: table)
            Embedding.backward(dAnswer, ids: tape.inputs.answerPrefixIds, tableGradient: table)
        }
        if let special = gradients[GradientStore.path(role: "prima", tensor: PrimaHeadsConfig.specialTokensName)] {
            if let dText {
                Embedding.backward(concatenateRows([dStart, dImageEnd, dText.start, dText.end]), ids: [0, 1, 2, 3], tableGradient: special)
            } else {
                Embedding.backward(concatenateRows([dStart, dImageEnd]), ids: [0, 1], tableGradient: special)
            }
        }
        try observe("fusion.image_cls", dImageCLS)
        try observe("fusion.image_seq", dImageSequence)
        if let dText {
            try observe("fusion.text_cls", dText.cls)
            try observe("fusion.text_seq", dText.sequence)
        }
        let dImageFeatures = try heads.imageCLSProjector.backward(dImageCLS, saved: tape.fusion.imageCLS, gradients: gradients)
        let dPatches = try heads.imageSequenceProjector.backward(dImageSequence, saved: tape.fusion.imageSequence, gradients: gradients)
        var dTextEncoded: (features: Tensor, sequence: Tensor)?
        if let dText, let saved = tape.fusion.text {
            dTextEncoded = (try heads.textCLSProjector.backward(dText.cls, saved: saved.cls, gradients: gradients),
                            try heads.textSequenceProjector.backward(dText.sequence, saved: saved.sequence, gradients: gradients))
        }
        // Off the loss path: exactly zero.
        let width = heads.config.alignWidth
        var offPath = [("alignment.image_global", 1), ("alignment.image_local", tape.gridHeight * tape.gridWidth)]
        if usesText { offPath += [("alignment.text_global", 1), ("alignment.text_local", tape.textTokens - 2)] }
        for (name, rowsCount) in offPath {
            try observe(name, Tensor(zeros: [rowsCount, width], dtype: .f32))
        }
        try observe("image_classifier.logits", Tensor(zeros: [1, heads.classTokenIds.count], dtype: .f32))

        guard encoderGradients else { return }
        // The encoders' final hidden states get the gradient of the rows the heads read.
        let imageWidth = heads.config.imageWidth, textWidth = heads.config.textWidth
        let dImage = Tensor(zeros: [tape.imageTokens, imageWidth], dtype: .f32)
        scatterRows(dImageFeatures, into: dImage, rows: [0])
        scatterRows(dPatches, into: dImage, rows: Array(tape.imagePrefix..<(tape.imagePrefix + dPatches.shape[0])))
        _ = try tape.imageBackward(dImage, gradients) { try observe("image_encoder." + $0, $1) }
        guard let dTextEncoded, let textBackward = tape.textBackward else { return }
        let dTextHidden = Tensor(zeros: [tape.textTokens, textWidth], dtype: .f32)
        scatterRows(dTextEncoded.features, into: dTextHidden, rows: [0])
        scatterRows(dTextEncoded.sequence, into: dTextHidden, rows: Array(1..<(1 + dTextEncoded.sequence.shape[0])))
        _ = try textBackward(dTextHidden, gradients) { try observe("text_encoder." + $0, $1) }
    }
}
