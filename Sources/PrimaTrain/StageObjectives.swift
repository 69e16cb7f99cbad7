import PrimaModels
import PrimaTensor

/// Stage 2b (Docs/prima-model.md): the image classifier's cross-entropy on the image CLS, through the image
/// encoder (`PrimaModel.imageClassifierStep`). One loss item per image; the examples' images come from `batch`
/// (which decodes and augments them: Formats/prima-training.md §3).
public final class ImageClassifierObjective: StageObjective {
    /// Images [B, 3, H, W] and class indices [B] of examples in `epoch`.
    public typealias Batch = (_ examples: [Int], _ epoch: Int) throws -> (pixels: Tensor, labels: [Int])

    public let model: PrimaModel
    public let exampleCount: Int
    let batch: Batch
    /// Per-class weights of the loss (nil: unweighted), Formats/prima-training.md §3.
    let classWeights: [Float]?

    public init(model: PrimaModel, exampleCount: Int, classWeights: [Float]? = nil, batch: @escaping Batch) {
        self.model = model
        self.exampleCount = exampleCount
        self.classWeights = classWeights
        self.batch = batch
    }

    public func lossItems(_ examples: [Int], epoch: Int) throws -> Int { examples.count }

    public func accumulate(_ examples: [Int], epoch: Int, normalizer: Int, gradients: GradientStore) throws -> Double {
        let (pixels, labels) = try batch(examples, epoch)
        // The step's mean over all its images: this micro-batch's mean scaled by its share.
        let share = Double(examples.count) / Double(normalizer)
        let loss = try model.imageClassifierStep(pixels: pixels, labels: labels, gradients: gradients, lossScale: Float(share))
        return Double(loss) * share
    }
}
