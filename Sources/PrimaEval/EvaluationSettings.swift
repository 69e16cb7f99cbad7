import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaTrain

/// Everything one `prima-eval run` is configured with (Docs/evaluation.md). The stages start from
/// ``StageOptions/defaults(for:checkpoint:output:data:)`` (Docs/prima-model.md's settings) with the overrides
/// applied; the split is PrimaTrain's ``Splits/crossValidation(_:fold:of:grouping:seed:)`` with the run's seed,
/// so fold `i` holds out exactly the cases `prima-train --folds K --fold i --seed S` validates on.
public struct EvaluationSettings: Sendable {
    /// Per-stage changes to the defaults (nil: the default).
    public struct StageOverride: Sendable, Equatable {
        public var epochs: Int?
        public var learningRate: Double?
        public var batchSize: Int?

        public init(epochs: Int? = nil, learningRate: Double? = nil, batchSize: Int? = nil) {
            (self.epochs, self.learningRate, self.batchSize) = (epochs, learningRate, batchSize)
        }
    }

    /// The base PRIMA checkpoint every pipeline starts from (never modified).
    public var checkpoint: String
    /// A PAD-UFES-20-layout folder (metadata.csv and the images).
    public var data: String
    /// Stage 1's risk-factor corpus (JSONL).
    public var corpus: String
    /// The output folder: manifest.json, folds/SYSTEM/fold-I.json, work/ (Docs/evaluation.md, "Output").
    public var output: String
    public var folds = 5
    public var grouping = SplitGrouping.lesion
    public var systems: [EvaluationSystem] = EvaluationSystem.allCases
    /// Keys the split and every training draw (as prima-train's --seed).
    public var seed: UInt64 = 0
    public var overrides: [TrainingRecord.Stage: StageOverride] = [:]
    /// The class weights of stages 2b and 3 (prima-train's `--class-weights`), for every system that trains them.
    public var classWeighting = ClassWeighting.none

    public init(checkpoint: String, data: String, corpus: String, output: String) {
        (self.checkpoint, self.data, self.corpus, self.output) = (checkpoint, data, corpus, output)
    }

    /// The stages some chosen system trains, in stage order.
    public var stages: [TrainingRecord.Stage] {
        let used = Set(systems.flatMap { $0.pipeline.map(\.stage) })
        return TrainingRecord.Stage.allCases.filter(used.contains)
    }

    /// The options of `step` on fold `fold`, training `input` into `output`: the stage's defaults, the overrides,
    /// the run's seed and split, for an ablation of stage 2 the switched-off loss's weight set to 0, and for the
    /// decoder without metadata stage 3's image-only decoder inputs.
    public func stageOptions(_ step: TrainingStep, fold: Int, input: String, output: String) -> StageOptions {
        var options = StageOptions.defaults(for: step.stage, checkpoint: input, output: output, data: step.stage == .stage1 ? corpus : data)
        if let change = overrides[step.stage] {
            if let epochs = change.epochs { options.trainer.epochs = epochs }
            if let rate = change.learningRate { options.trainer.learningRate = rate }
            if let batch = change.batchSize { options.trainer.batchSize = batch }
        }
        options.trainer.seed = seed
        if step.stage == .stage2b || step.stage == .stage3 { options.classWeighting = classWeighting }
        options.folds = folds
        options.fold = fold
        options.grouping = grouping
        if let term = step.withoutLoss { options.alignment.weights[term.rawValue] = 0 }
        if step.withoutMetadata { options.decoderInputs = .image }
        return options
    }
}

/// `OUTDIR/manifest.json`: the settings an output folder was made with, so that a later run into it (a resume)
/// is refused when anything that changes its results differs: the base checkpoint's, the data's and the corpus's
/// digests, the folds, grouping and seed, the systems, and every stage's hyperparameters. Paths are recorded but
/// not compared (a folder may move).
struct EvaluationManifest {
    static let fileName = "manifest.json"
    static let format = "prima-eval"
    static let version = 1
    /// The members that are not compared.
    static let informational: Set<String> = ["checkpoint", "data", "corpus"]

    let json: JSONObject

    init(settings: EvaluationSettings, checkpointDigest: String, dataDigest: String, corpusDigest: String?, cases: Int) {
        var stages: [(String, JSONValue)] = []
        for stage in settings.stages {
            let options = settings.stageOptions(TrainingStep(stage: stage), fold: 0, input: "", output: "")
            var fields = options.hyperparametersForLog
            fields["seed"] = nil  // recorded once, below
            fields["decoder_inputs"] = nil  // a system's choice (its stage 3), named by the systems below
            stages.append((stage.rawValue, .object(fields)))
        }
        json = JSONObject([
            ("format", .string(Self.format)), ("version", .int(Self.version)),
            ("checkpoint", .string(settings.checkpoint)), ("data", .string(settings.data)), ("corpus", .string(settings.corpus)),
            ("checkpoint_digest", .string(checkpointDigest)), ("data_digest", .string(dataDigest)),
            ("corpus_digest", corpusDigest.map { .string($0) } ?? .null), ("cases", .int(cases)),
            ("folds", .int(settings.folds)), ("grouping", .string(settings.grouping.rawValue)), ("seed", .int(Int(settings.seed))),
            ("systems", .array(settings.systems.map { .string($0.rawValue) })), ("stages", .object(JSONObject(stages))),
        ])
    }

    /// The manifest as written.
    var text: String { JSONValue.object(json).serialized() + "\n" }

    /// Throws unless the manifest at `path` records the same settings; the error names the first member that differs.
    func requireSame(asStoredAt path: String) throws(ToolError) {
        let text = try InputFile.readText(path, limit: 1 << 20)
        let stored: JSONObject
        do {
            guard let object = try JSON.parse(text).object else { throw ToolError.input("not a JSON object") }
            stored = object
        } catch {
            throw ToolError.input("\(path): not a prima-eval manifest (\(error))")
        }
        guard stored["format"] == .string(Self.format) else { throw ToolError.input("\(path): not a prima-eval manifest") }
        for (key, value) in json where !Self.informational.contains(key) {
            let old = stored[key] ?? .null
            guard old.serialized() == value.serialized() else {
                throw ToolError.input("\(path): the folder was made with other settings (\(key): \(Self.shortened(old)) there, \(Self.shortened(value)) now); use another output folder")
            }
        }
    }

    /// A JSON value as text, cut to 80 characters for a one-line message.
    static func shortened(_ value: JSONValue) -> String {
        let text = value.serialized()
        return text.count > 80 ? String(text.prefix(77)) + "…" : text
    }
}
