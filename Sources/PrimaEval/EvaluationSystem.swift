import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaTensor

/// One system of the paper's evaluation (Docs/evaluation.md, "Systems"): what it trains and how it predicts a
/// held-out case. The raw value is the system's name on the command line and its fold-file directory.
public enum EvaluationSystem: String, CaseIterable, Sendable {
    /// Full PRIMA: stage 1 → 2 → 3, predicted by `prima-diagnose`'s ``Diagnoser``.
    case prima
    /// Stage 2b's image classifier (stage 1 → 2 → 2b): the softmax of its logits on the image alone.
    case imageOnly = "image-only"
    /// A linear probe on the text encoder's CLS feature of the metadata text, the encoder frozen as stage 1 left it
    /// (the encoder PRIMA reads; stages 2 and 3 do not train it).
    case metadataCLS = "metadata-cls"
    /// Logistic regression on the tabular metadata (``TabularFeatures``): the sanity baseline; trains no stage.
    case metadataLogReg = "metadata-logreg"
    /// Each of stage 2's alignment losses switched off (its weight 0, the others unchanged), then stage 3.
    case noImageLoss = "no-img-loss"
    case noGlobalLoss = "no-glo-loss"
    case noLocalLoss = "no-loc-loss"
    case noSoftLoss = "no-soft-loss"
    /// Stage 2 → 3 from the base checkpoint's text encoder.
    case noStage1 = "no-stage1"
    /// Stage 1 → 3: the image encoder and the alignment projections as the base checkpoint has them.
    case noStage2 = "no-stage2"
    /// Stage 1 → 2 → 3 with `--no-metadata`: the decoder reads the image only (decoder_inputs "image").
    case noMetadataDecoder = "no-metadata-decoder"

    /// How a system turns its trained checkpoint into class probabilities.
    public enum Predictor: Sendable {
        /// The whole pipeline (``PrimaDiagnose/Diagnoser/diagnose(imagePath:record:)``).
        case pipeline
        /// Stage 2b's image classifier on the image encoder's CLS.
        case imageClassifier
        /// ``LogisticRegression`` on the standardised text-encoder CLS features of the metadata text, fitted on
        /// the training folds.
        case textProbe
        /// ``LogisticRegression`` on ``TabularFeatures`` fitted on the training folds.
        case tabular
    }

    /// The training stages in order, each from the previous one's output (the first from the base checkpoint).
    public var pipeline: [TrainingStep] {
        switch self {
        case .prima: [.stage1, .stage2(), .stage3]
        case .imageOnly: [.stage1, .stage2(), .stage2b]
        case .metadataCLS: [.stage1]
        case .metadataLogReg: []
        case .noImageLoss: [.stage1, .stage2(without: .image), .stage3]
        case .noGlobalLoss: [.stage1, .stage2(without: .global), .stage3]
        case .noLocalLoss: [.stage1, .stage2(without: .local), .stage3]
        case .noSoftLoss: [.stage1, .stage2(without: .soft), .stage3]
        case .noStage1: [.stage2(), .stage3]
        case .noStage2: [.stage1, .stage3]
        case .noMetadataDecoder: [.stage1, .stage2(), .stage3WithoutMetadata]
        }
    }

    public var predictor: Predictor {
        switch self {
        case .imageOnly: .imageClassifier
        case .metadataCLS: .textProbe
        case .metadataLogReg: .tabular
        default: .pipeline
        }
    }

    /// Parses a comma-separated list of names (each once); an unknown name is a one-line error listing the known ones.
    public static func parse(list: String) throws(ToolError) -> [EvaluationSystem] {
        var systems: [EvaluationSystem] = []
        for piece in list.split(separator: ",", omittingEmptySubsequences: false) {
            let name = piece.trimmingCharacters(in: .whitespaces)
            guard let system = EvaluationSystem(rawValue: name) else {
                throw .input("--systems: unknown system '\(name)' (known: \(allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard !systems.contains(system) else { throw .input("--systems: \(name) is listed twice") }
            systems.append(system)
        }
        return systems
    }
}

/// One training stage of a system's pipeline, with the stage-2 loss it switches off (an ablation).
public struct TrainingStep: Hashable, Sendable {
    /// The alignment losses of stage 2, in `AlignmentLoss.Settings.weights` order.
    public enum AlignmentTerm: Int, Sendable, CaseIterable {
        case image, global, local, soft

        /// The name in file names and manifests (`AlignmentLoss`'s term name).
        var name: String { AlignmentLoss.termNames[rawValue] }
    }

    public let stage: TrainingRecord.Stage
    /// Stage 2 only: the loss whose weight is 0.
    public let withoutLoss: AlignmentTerm?
    /// Stage 3 only: the decoder's input leaves the metadata out (`prima-train stage3 --no-metadata`).
    public let withoutMetadata: Bool

    public init(stage: TrainingRecord.Stage, withoutLoss: AlignmentTerm? = nil, withoutMetadata: Bool = false) {
        self.stage = stage
        self.withoutLoss = withoutLoss
        self.withoutMetadata = withoutMetadata
    }

    public static let stage1 = TrainingStep(stage: .stage1)
    public static let stage2b = TrainingStep(stage: .stage2b)
    public static let stage3 = TrainingStep(stage: .stage3)
    public static func stage2(without loss: AlignmentTerm? = nil) -> TrainingStep { TrainingStep(stage: .stage2, withoutLoss: loss) }
    public static let stage3WithoutMetadata = TrainingStep(stage: .stage3, withoutMetadata: true)

    /// `stage2`, `stage2-no-img` or `stage3-no-metadata` for an ablation: one piece of a work checkpoint's name.
    public var name: String {
        stage.rawValue + (withoutLoss.map { "-no-" + $0.name } ?? "") + (withoutMetadata ? "-no-metadata" : "")
    }
}
