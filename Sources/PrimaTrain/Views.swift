/// Stage 2's examples and their two views (Formats/prima-training.md §3.3).
///
/// An example is a lesion, (patient_id, lesion_id), of the training side: the paper's Fig. 3 pairs each sample's
/// two scans v_i1, v_i2 with one metadata text t_i, and in PAD-UFES-20 the text and the soft-target codes hold
/// the lesion's own fields (region, diameters, diagnosis), which differ between a patient's lesions; taking two
/// lesions with different diagnoses as a positive pair would align an image with the wrong text. The views are
/// "two images of the patient if there are two, else one image twice" (Docs/prima-model.md), taken within the
/// lesion.
public struct AlignmentExample: Sendable, Equatable {
    /// Positions in ``TrainingCases/cases`` of the lesion's images on this side, in CSV order (at least one).
    public let images: [Int]
    /// The case whose record gives the example's text t_i and soft target y_i: the lesion's first row, the same
    /// every epoch (so the frozen text encoder's features can be computed once per example).
    public var representative: Int { images[0] }

    public init(images: [Int]) {
        precondition(!images.isEmpty, "an alignment example needs an image")
        self.images = images
    }
}

public enum Views {
    /// The `part` of the augmentation stream (seed, augmentation, epoch, example) that picks the two images;
    /// parts 0 and 1 are the two views' augmentations.
    public static let pickPart = 2

    /// The stage-2 examples of `positions` (one side of a split): one per lesion, in order of the lesion's first
    /// position, each with its images in ascending position. An example's `index` in the random streams is its
    /// place in this list.
    public static func alignmentExamples(_ data: TrainingCases, positions: [Int]) -> [AlignmentExample] {
        var order: [String] = []
        var images: [String: [Int]] = [:]
        for position in positions.sorted() {
            let key = data.cases[position].lesionKey
            if images[key] == nil { order.append(key) }
            images[key, default: []].append(position)
        }
        return order.map { AlignmentExample(images: images[$0]!) }
    }

    /// The cases of view 0 and view 1 of `example` (the `index`-th example) in `epoch`. One image: that image
    /// twice, no draw. n ≥ 2 images: from the stream (seed, augmentation, epoch, index, part 2),
    /// `a = below(n)`, `b = below(n − 1)`, `b += 1 if b ≥ a`: two distinct images, every ordered pair equally
    /// likely, drawn afresh each epoch.
    public static func pick(_ example: AlignmentExample, seed: UInt64, epoch: Int, index: Int) -> (Int, Int) {
        let n = example.images.count
        guard n >= 2 else { return (example.images[0], example.images[0]) }
        var stream = TrainingRandom(seed: seed, purpose: .augmentation, epoch: epoch, index: index, part: pickPart)
        let a = stream.below(n)
        var b = stream.below(n - 1)
        if b >= a { b += 1 }
        return (example.images[a], example.images[b])
    }
}
