/// The model's answer for one case: P(y = k | x) over the checkpoint's classes (Docs/prima-model.md, "Heads").
public struct Diagnosis: Sendable {
    /// The class codes, in the checkpoint's order.
    public let classCodes: [String]
    /// One probability per class, in `classCodes` order.
    public let probabilities: [Float]
    /// The classes from most to least probable; equal probabilities keep class order, NaN ranks last.
    public let ranked: [(code: String, probability: Float)]

    /// Precondition: one probability per class code, and at least one class.
    public init(classCodes: [String], probabilities: [Float]) {
        precondition(!classCodes.isEmpty && probabilities.count == classCodes.count,
                     "\(probabilities.count) probabilities for \(classCodes.count) classes")
        self.classCodes = classCodes
        self.probabilities = probabilities
        func key(_ index: Int) -> Float { probabilities[index].isNaN ? -.infinity : probabilities[index] }
        let order = classCodes.indices.sorted { key($0) > key($1) || (key($0) == key($1) && $0 < $1) }
        ranked = order.map { (classCodes[$0], probabilities[$0]) }
    }

    /// The most probable class code.
    public var predicted: String { ranked[0].code }
}

/// What became of one case of a batch.
public struct CaseResult: Sendable {
    /// The model ran, or the case failed (no image file, an image that would not decode, …).
    public enum Outcome: Sendable {
        case diagnosed(Diagnosis)
        /// A one-line message naming the file.
        case failed(String)
    }

    /// The case's `img_id` (its image file name).
    public let imageID: String
    /// The true class code, if the metadata gave one.
    public let label: String?
    public let outcome: Outcome

    public init(imageID: String, label: String?, outcome: Outcome) {
        self.imageID = imageID
        self.label = label
        self.outcome = outcome
    }

    /// The diagnosis, or nil if the case failed.
    public var diagnosis: Diagnosis? {
        if case .diagnosed(let diagnosis) = outcome { return diagnosis }
        return nil
    }

    /// The failure message, or nil if the case was diagnosed.
    public var error: String? {
        if case .failed(let message) = outcome { return message }
        return nil
    }

    /// Whether the prediction matches the label; nil unless the case is both labelled and diagnosed.
    public var isCorrect: Bool? {
        guard let label, let diagnosis else { return nil }
        return diagnosis.predicted == label
    }
}
