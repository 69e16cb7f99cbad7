import PrimaModels
import PrimaTensor

/// Stage 1 (Docs/prima-model.md): the text encoder's masked-LM cross-entropy on the risk-factor corpus, masked as
/// Formats/prima-training.md §3.7 draws it. One loss item per masked token (transformers' `num_items_in_batch`).
public final class MaskedLMObjective<Model: MaskedLanguageModel>: StageObjective {
    public let model: Model
    let examples: [RiskFactorCorpus.Example]
    let maskTokenId, vocabularySize, padId: Int
    let masking: MaskedLMMasking.Settings
    let seed: UInt64
    public var exampleCount: Int { examples.count }

    public init(model: Model, examples: [RiskFactorCorpus.Example], maskTokenId: Int, vocabularySize: Int, padId: Int,
                masking: MaskedLMMasking.Settings = .standard, seed: UInt64) {
        (self.model, self.examples, self.maskTokenId, self.vocabularySize, self.padId) = (model, examples, maskTokenId, vocabularySize, padId)
        (self.masking, self.seed) = (masking, seed)
    }

    func batch(_ indices: [Int], epoch: Int) -> Batching.MaskedLMBatch {
        Batching.maskedLMBatch(examples, indices: indices, maskTokenId: maskTokenId, vocabularySize: vocabularySize, padId: padId,
                               settings: masking, seed: seed, epoch: epoch)
    }

    public func lossWeight(_ indices: [Int], epoch: Int) throws -> Double {
        Double(batch(indices, epoch: epoch).labels.joined().filter { $0 != MaskedLMMasking.ignoreLabel }.count)
    }

    public func accumulate(_ indices: [Int], epoch: Int, normalizer: Double, gradients: GradientStore) throws -> Double {
        let batch = self.batch(indices, epoch: epoch)
        // The head runs on the labelled positions only: the others have no loss and zero gradient.
        let labels = batch.labels.flatMap { $0 }
        let rows = labels.indices.filter { labels[$0] != MaskedLMMasking.ignoreLabel }
        guard !rows.isEmpty else { return 0 }   // nothing masked in this micro-batch: no loss, no gradient
        let (hidden, tape) = try model.trainingForward(ids: batch.ids, mask: batch.mask, observe: { _, _ in })
        let (logits, headBackward) = try headOnRows(hidden, rows: rows) { try model.maskedLM($0, gradients: gradients) }
        let entropy = Loss.crossEntropy(logits, labels: rows.map { labels[$0] }, normalizer: normalizer)
        try model.backward(try headBackward(entropy.logitsGradient), tape: tape, gradients: gradients, observe: { _, _ in })
        return Double(entropy.loss)
    }
}

/// Stage 2: the four alignment losses over batches of lesions with two augmented views each
/// (`PrimaModel.alignmentStep`); the text encoder is frozen, so its backward is skipped. One loss item per example;
/// a micro-batch's losses are weighted by its share of the step's examples (§2.6).
public final class AlignmentObjective: StageObjective {
    public let model: PrimaModel
    let data: TrainingCases
    let examples: [AlignmentExample]
    let context: CaseContext
    let augmentation: Augmentation.Settings?
    let settings: AlignmentLoss.Settings
    let softTargets: SoftTargetEncoder
    public var exampleCount: Int { examples.count }

    public init(model: PrimaModel, data: TrainingCases, examples: [AlignmentExample], context: CaseContext,
                augmentation: Augmentation.Settings?, settings: AlignmentLoss.Settings, softTargets: SoftTargetEncoder) {
        (self.model, self.data, self.examples, self.context) = (model, data, examples, context)
        (self.augmentation, self.settings, self.softTargets) = (augmentation, settings, softTargets)
    }

    public func lossWeight(_ indices: [Int], epoch: Int) throws -> Double { Double(indices.count) }

    public func accumulate(_ indices: [Int], epoch: Int, normalizer: Double, gradients: GradientStore) throws -> Double {
        try run(indices, epoch: epoch, normalizer: normalizer, gradients: gradients)
    }

    /// The mean alignment loss over `examples` of the validation side in batches of `batchSize`, forward only and
    /// without augmentation (each example's views are still the seeded picks of epoch 0).
    public func validationLoss(batchSize: Int) throws -> Float {
        var total = 0.0
        var start = 0
        while start < examples.count {
            let indices = Array(start..<min(start + batchSize, examples.count))
            total += try run(indices, epoch: 0, normalizer: Double(examples.count), gradients: nil)
            start += batchSize
        }
        return Float(total)
    }

    /// One batch forward (and backward, with `gradients`), weighted by its share of `normalizer` examples.
    private func run(_ indices: [Int], epoch: Int, normalizer: Double, gradients: GradientStore?) throws -> Double {
        let views = try Batching.alignmentBatch(data, examples: examples, indices: indices, preprocessing: context.preprocessing,
                                                augmentation: gradients == nil ? nil : augmentation, seed: context.seed, epoch: epoch)
        let records = views.representatives.map { data.cases[$0].record }
        let text = Batching.pad(try views.representatives.map { try context.textIds(data.cases[$0]) }, padId: context.padId)
        let share = Double(indices.count) / normalizer
        let step = try model.alignmentStep(AlignmentBatch(pixelValues: views.pixelValues, textIds: text.ids, textMask: text.mask,
                                                          softTargets: softTargets.targets(records)),
                                           settings: settings, gradients: gradients, textEncoderBackward: false, lossScale: Float(share))
        return Double(step.loss) * share
    }
}

/// An objective over the training side's cases (stages 2b and 3): an example is a place in `positions`, one loss
/// item each, weighing its class weight when the cross-entropy is weighted (Formats/prima-training.md §3.8); its
/// image is view 0 of its augmentation (or plain).
public class CaseObjective {
    public let model: PrimaModel
    let data: TrainingCases
    /// The training side's case positions (an example is a place in it).
    let positions: [Int]
    let context: CaseContext
    let augmentation: Augmentation.Settings?
    /// PyTorch's `CrossEntropyLoss(weight=…)` [K], or nil (every case weighs 1).
    public let classWeights: [Float]?
    public var exampleCount: Int { positions.count }

    public init(model: PrimaModel, data: TrainingCases, positions: [Int], context: CaseContext, augmentation: Augmentation.Settings?,
                classWeights: [Float]? = nil) {
        (self.model, self.data, self.positions, self.context, self.augmentation) = (model, data, positions, context, augmentation)
        self.classWeights = classWeights
    }

    /// The examples' total weight: their count, or the sum of their classes' weights (in double, in order).
    public func lossWeight(_ indices: [Int], epoch: Int) throws -> Double {
        guard let classWeights else { return Double(indices.count) }
        return indices.reduce(0.0) { $0 + Double(classWeights[label($1)]) }
    }

    /// The class of example `index`.
    func label(_ index: Int) -> Int { data.cases[positions[index]].label }

    /// The images [B, 3, H, W] of examples `indices` in `epoch`.
    func images(_ indices: [Int], epoch: Int) throws -> Tensor {
        try Batching.caseImages(data, positions: positions, indices: indices, preprocessing: context.preprocessing,
                                augmentation: augmentation, seed: context.seed, epoch: epoch)
    }
}

/// Stage 2b: the image classifier's cross-entropy on the image CLS, through the image encoder
/// (`PrimaModel.imageClassifierStep`). A micro-batch's (weighted) mean is scaled by its share of the step's weight,
/// so that the step's gradient is the (weighted) mean over all its examples (§2.6).
public final class ImageClassifierObjective: CaseObjective, StageObjective {
    public func accumulate(_ indices: [Int], epoch: Int, normalizer: Double, gradients: GradientStore) throws -> Double {
        let share = try lossWeight(indices, epoch: epoch) / normalizer
        let loss = try model.imageClassifierStep(pixels: try images(indices, epoch: epoch), labels: indices.map(label), classWeights: classWeights,
                                                 gradients: gradients, lossScale: Float(share))
        return Double(loss) * share
    }
}

/// Stage 3: the restricted class cross-entropy through the whole pipeline (`PrimaModel.trainingForward` and
/// `backward`), one case at a time; the encoders are frozen, so their backward is skipped. Case i's loss l_i counts
/// w_i / N (w_i its class weight, 1 unweighted; N the step's total weight): the step's loss is Σ w_i·l_i / Σ w_i,
/// PyTorch's weighted mean.
public final class ClassificationObjective: CaseObjective, StageObjective {
    public func accumulate(_ indices: [Int], epoch: Int, normalizer: Double, gradients: GradientStore) throws -> Double {
        var loss = 0.0
        for index in indices {
            let item = data.cases[positions[index]]
            let weight = classWeights?[item.label] ?? 1
            let inputs = PrimaInputs(pixelValues: try images([index], epoch: epoch), textIds: model.decoderInputs.usesMetadata ? try context.textIds(item) : [],
                                     promptIds: context.promptIds, answerPrefixIds: context.answerPrefixIds)
            let (logits, tape) = try model.trainingForward(inputs)
            let entropy = Loss.crossEntropy(logits, labels: [item.label], lossGradient: weight / Float(normalizer))
            try model.backward(entropy.logitsGradient, tape: tape, gradients: gradients, encoderGradients: false)
            loss += Double(weight) * Double(entropy.loss) / normalizer
        }
        return loss
    }
}
