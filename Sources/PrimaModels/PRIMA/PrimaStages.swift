import PrimaCheckpoint
import PrimaTensor

/// A batch of N cases for stage 2 (alignment, Formats/prima-trace.md §11.11): two views per case and the
/// metadata text.
public struct AlignmentBatch: Sendable {
    /// [2N, 3, H, W]: view 1 of cases 0..<N, then view 2 of the same cases.
    public let pixelValues: Tensor
    /// [N][T] right-padded text-encoder ids with [CLS] … [SEP], and their mask; every case has n_i ≥ 3 real tokens.
    public let textIds: [[Int]]
    public let textMask: [[Int]]
    /// [N, D]: the metadata vectors y_i of L_soft.
    public let softTargets: Tensor

    public init(pixelValues: Tensor, textIds: [[Int]], textMask: [[Int]], softTargets: Tensor) {
        self.pixelValues = pixelValues
        self.textIds = textIds
        self.textMask = textMask
        self.softTargets = softTargets
    }
}

/// The loss of one stage-2 step: the four unweighted terms (img, glo, loc, soft) and their weighted sum.
public struct AlignmentStepLoss: Sendable {
    public let terms: [Float]
    public let loss: Float
}

extension PrimaModel {
    /// An activation (or activation-gradient) observer: name and tensor.
    public typealias Observer = (String, Tensor) throws -> Void

    /// Stage 2b's objective on a batch (`image_ce`, Formats/prima-trace.md §11.11): the image classifier's mean
    /// cross-entropy over images [B, 3, H, W] against class indices `labels` [B]. Runs forward and backward, adds
    /// the trainable tensors' gradients to `gradients` (image encoder and `image_classifier.*`), reports the
    /// activations to `observe` and dLoss/d(activation) to `observeGradient`; returns the loss.
    /// `lossScale` multiplies the gradients (a micro-batch's share of its step), not the returned loss.
    /// `classWeights` [K] makes it PyTorch's weighted mean (`cross_entropy(weight=w)`: Σ w_y·l / Σ w_y; the batch's
    /// total weight must be positive).
    public func imageClassifierStep(pixels: Tensor, labels: [Int], classWeights: [Float]? = nil, gradients: GradientStore, lossScale: Float = 1,
                                    observe: Observer = { _, _ in }, observeGradient: Observer = { _, _ in }) throws -> Float {
        let classes = heads.classTokenIds.count
        guard pixels.shape.count == 4, labels.count == pixels.shape[0], !labels.isEmpty else {
            throw RuntimeError("image_ce: \(labels.count) labels for images \(ShapeMath.describe(pixels.shape)) (one label per image)")
        }
        if let bad = labels.first(where: { !(0..<classes).contains($0) }) {
            throw RuntimeError("image_ce: label \(bad) is not a class index 0..<\(classes)")
        }
        if let classWeights {
            guard classWeights.count == classes, classWeights.allSatisfy({ $0 >= 0 && $0.isFinite }), labels.contains(where: { classWeights[$0] > 0 }) else {
                throw RuntimeError("image_ce: \(classWeights.count) class weights for \(classes) classes (finite, ≥ 0, and positive for a label of the batch)")
            }
        }
        let (hidden, tape) = try imageEncoder.trainingForward(pixels: pixels) { try observe("image_encoder." + $0, $1) }   // [B·Ti, Ci]
        let tokens = hidden.shape[0] / labels.count
        let cls = embeddingLookup(hidden, [labels.indices.map { $0 * tokens }])                                          // [B, Ci]
        let classifier = heads.imageClassifier.forward(cls)
        try observe("image_classifier.logits", classifier.output)                                                       // [B, K]
        let entropy = Loss.crossEntropy(classifier.output, labels: labels, classWeights: classWeights, lossGradient: lossScale)
        try observeGradient("image_classifier.logits", entropy.logitsGradient)
        let dCLS = try heads.imageClassifier.backward(entropy.logitsGradient, input: cls, saved: classifier.saved, gradients: gradients)!
        let dHidden = Tensor(zeros: hidden.shape, dtype: .f32)
        scatterRows(dCLS, into: dHidden, rows: labels.indices.map { $0 * tokens })
        try imageEncoder.backward(dHidden, tape: tape, gradients: gradients) { try observeGradient("image_encoder." + $0, $1) }
        return entropy.loss
    }

    /// Stage 2's objective on a batch (`alignment`, Formats/prima-trace.md §11.11): both encoders, the alignment
    /// projections and the four losses of ``AlignmentLoss``. Adds the trainable tensors' gradients to `gradients`
    /// (image encoder, `alignment.*`, and the text encoder's when `textEncoderBackward`: stage 2 freezes the text
    /// encoder, so a trainer skips its backward; a verification runs it to report its activation gradients).
    /// `lossScale` multiplies the gradients (a micro-batch's share of its step), not the returned loss.
    /// `gradients` nil computes the loss only (a validation pass: no backward).
    public func alignmentStep(_ batch: AlignmentBatch, settings: AlignmentLoss.Settings, gradients: GradientStore?,
                              textEncoderBackward: Bool, lossScale: Float = 1, observe: Observer = { _, _ in },
                              observeGradient: Observer = { _, _ in }) throws -> AlignmentStepLoss {
        let pixels = batch.pixelValues.toFloat32(), n = batch.textIds.count
        guard n >= 1, pixels.shape.count == 4, pixels.shape[0] == 2 * n else {
            throw RuntimeError("alignment: images \(ShapeMath.describe(pixels.shape)) are not two views of each of the \(n) cases [2·\(n), 3, H, W]")
        }
        guard batch.softTargets.shape.count == 2, batch.softTargets.shape[0] == n, batch.softTargets.shape[1] >= 1 else {
            throw RuntimeError("alignment: soft targets \(ShapeMath.describe(batch.softTargets.shape)) are not [\(n), D]")
        }
        let t = batch.textIds.first?.count ?? 0
        let lengths = batch.textMask.map { $0.reduce(0, +) }
        if let short = lengths.firstIndex(where: { $0 < 3 }) {
            throw RuntimeError("alignment: case \(short) has \(lengths[short]) real text tokens; each needs [CLS], a local token and [SEP]")
        }
        guard let textModel = textEncoder as? any TrainableEncoder else { throw RuntimeError("the text encoder cannot be trained") }

        let (imageHidden, imageTape) = try imageEncoder.trainingForward(pixels: pixels) { try observe("image_encoder." + $0, $1) }
        let (textHidden, textBackward) = try Self.trainingForward(textModel, ids: batch.textIds, mask: batch.textMask) {
            try observe("text_encoder." + $0, $1)
        }
        let p = imageEncoder.config.patchSize, prefix = 1 + imageEncoder.config.registerCount
        let patchCount = (pixels.shape[2] / p) * (pixels.shape[3] / p), imageTokens = prefix + patchCount
        let imageCLSRows = (0..<(2 * n)).map { $0 * imageTokens }
        let patchRows = (0..<(2 * n)).flatMap { image in (0..<patchCount).map { image * imageTokens + prefix + $0 } }
        let textCLSRows = (0..<n).map { $0 * t }
        let imageCLS = embeddingLookup(imageHidden, [imageCLSRows]), patches = embeddingLookup(imageHidden, [patchRows])
        let textCLS = embeddingLookup(textHidden, [textCLSRows])
        let imageGlobal = heads.imageProjection.forward(imageCLS), textGlobal = heads.textProjection.forward(textCLS)
        let imageLocal = heads.imageProjection.forward(patches), textLocal = heads.textProjection.forward(textHidden)
        try observe("alignment.image_global", imageGlobal.output)
        try observe("alignment.text_global", textGlobal.output)
        try observe("alignment.image_local", imageLocal.output)
        try observe("alignment.text_local", textLocal.output)

        let features = AlignmentLoss.Features(imageGlobal: imageGlobal.output, textGlobal: textGlobal.output, imageLocal: imageLocal.output,
                                              textLocal: textLocal.output, localRows: lengths.enumerated().map { i, length in (i * t + 1)..<(i * t + length - 1) },
                                              softTargets: batch.softTargets)
        var scaled = settings
        scaled.weights = settings.weights.map { $0 * lossScale }
        let result = AlignmentLoss.evaluate(features, settings: scaled)
        let loss = AlignmentStepLoss(terms: result.terms, loss: lossScale == 1 ? result.loss : zip(settings.weights, result.terms).reduce(0) { $0 + $1.0 * $1.1 })
        guard let gradients else { return loss }
        try observeGradient("alignment.image_global", result.imageGlobal)
        try observeGradient("alignment.text_global", result.textGlobal)
        try observeGradient("alignment.image_local", result.imageLocal)
        try observeGradient("alignment.text_local", result.textLocal)

        let dImageCLS = try heads.imageProjection.backward(result.imageGlobal, input: imageCLS, saved: imageGlobal.saved, gradients: gradients)!
        let dPatches = try heads.imageProjection.backward(result.imageLocal, input: patches, saved: imageLocal.saved, gradients: gradients)!
        let dImage = Tensor(zeros: imageHidden.shape, dtype: .f32)
        scatterRows(dImageCLS, into: dImage, rows: imageCLSRows)
        scatterRows(dPatches, into: dImage, rows: patchRows)
        try imageEncoder.backward(dImage, tape: imageTape, gradients: gradients) { try observeGradient("image_encoder." + $0, $1) }

        let needsText = textEncoderBackward || gradients.gradients.keys.contains { $0.hasPrefix(ComponentRole.textEncoder.rawValue + "/") }
        let dTextCLS = try heads.textProjection.backward(result.textGlobal, input: textCLS, saved: textGlobal.saved, gradients: gradients,
                                                        needsInputGradient: needsText)
        let dText = try heads.textProjection.backward(result.textLocal, input: textHidden, saved: textLocal.saved, gradients: gradients,
                                                     needsInputGradient: needsText)
        if needsText, let dTextCLS, let dText {
            addRows(dTextCLS, into: dText, rows: textCLSRows)
            _ = try textBackward(dText, gradients) { try observeGradient("text_encoder." + $0, $1) }
        }
        return loss
    }
}

/// Adds row r of `source` [R, C] to row rows[r] of `target` [M, C].
func addRows(_ source: Tensor, into target: Tensor, rows: [Int]) {
    let c = target.shape[1]
    source.withFloat32 { src in target.withMutableFloat32 { dst in
        for (r, row) in rows.enumerated() { for j in 0..<c { dst[row * c + j] += src[r * c + j] } }
    } }
}
