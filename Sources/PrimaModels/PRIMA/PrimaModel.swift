import Foundation
import PrimaCheckpoint
import PrimaTensor

/// The token-level inputs of one PRIMA diagnosis (batch 1), after image preprocessing and tokenization.
public struct PrimaInputs: Sendable {
    /// Preprocessed image [1, 3, H, W].
    public let pixelValues: Tensor
    /// The rendered metadata text as text-encoder tokens, with [CLS] … [SEP].
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

    /// Loads the three components and the heads; checks that their widths agree.
    public init(checkpoint: Checkpoint) throws {
        try StoredValidation.validate(checkpoint)
        guard checkpoint.extraGroups.contains("prima") else {
            throw RuntimeError("\(checkpoint.path): not a PRIMA checkpoint (no /prima heads group; assemble one with prima-convert import --labels)")
        }
        for role in [ComponentRole.imageEncoder, .textEncoder, .decoder] where !checkpoint.roles.contains(role) {
            throw RuntimeError("\(checkpoint.path): a PRIMA checkpoint needs an \(role.rawValue) component")
        }
        guard let image = try loadComponentModel(try checkpoint.component(.imageEncoder)) as? DINOv3ViTModel else {
            throw RuntimeError("\(checkpoint.path): image_encoder is not a DINOv3 ViT")
        }
        guard let decoder = try loadComponentModel(try checkpoint.component(.decoder)) as? Qwen3Model else {
            throw RuntimeError("\(checkpoint.path): decoder is not a Qwen3 model")
        }
        guard let text = try loadComponentModel(try checkpoint.component(.textEncoder)) as? any TextEncoderModel else {
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
    public func fuse(_ image: EncodedImage, _ text: EncodedText, promptIds: [Int], answerPrefixIds: [Int],
                     observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> Tensor {
        try observe("alignment.image_global", try heads.alignImage(image.cls))
        try observe("alignment.text_global", try heads.alignText(text.cls))
        try observe("alignment.image_local", try heads.alignImage(image.patches))
        try observe("alignment.text_local", try heads.alignText(text.sequence))
        try observe("image_classifier.logits", try heads.classifyImage(image.cls))
        let imageCLS = try heads.projectCLS(image.cls, projector: "image_cls_projector")
        try observe("fusion.image_cls", imageCLS)
        let imageSequence = try heads.projectImageSequence(image.patches, gridHeight: image.gridHeight, gridWidth: image.gridWidth)
        try observe("fusion.image_seq", imageSequence)
        let textCLS = try heads.projectCLS(text.cls, projector: "text_cls_projector")
        try observe("fusion.text_cls", textCLS)
        let textSequence = try heads.projectTextSequence(text.sequence)
        try observe("fusion.text_seq", textSequence)

        let special = try heads.specialTokens()                                                            // [4, d_llm]
        let token = { (row: Int) in embeddingLookup(special, [[row]]) }
        return concatenateRows([try decoder.inputEmbeddings(promptIds), token(0), imageCLS, imageSequence, token(1),
                                token(2), textCLS, textSequence, token(3), try decoder.inputEmbeddings(answerPrefixIds)])
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
    /// `prima` trace component, including `class_logits` and `class_probs` as [1, K].
    public func forward(_ inputs: PrimaInputs, observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> [Float] {
        let image = try encodeImage(inputs.pixelValues, observe: observe)
        let text = try encodeText(inputs.textIds, observe: observe)
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
