import Crypto
import Foundation
import PrimaCheckpoint
import PrimaDiagnose
import PrimaIO
import PrimaImage
import PrimaJSON
import PrimaMetadata
import PrimaModels
import PrimaTensor
import PrimaTokenizers

/// Everything one stage run is configured with; recorded in the checkpoint as `hyperparameters`
/// (Formats/prima-training.md §4.4). ``defaults(for:)`` gives Docs/prima-model.md's values.
public struct StageOptions: Sendable {
    public var stage: TrainingRecord.Stage
    /// The checkpoint the stage starts from (never replaced) and the output it writes (and a resume reads).
    public var checkpoint: String
    public var output: String
    /// Stage 1: the risk-factor corpus (JSONL); the others: a PAD-UFES-20-layout folder.
    public var data: String
    public var trainer: TrainerSettings
    /// The stage's LoRA adapter (created when the checkpoint has none named `prima` on the component).
    public var rank: Int
    public var alpha: Double
    public var targets: [String]?
    /// Cross-validation: `fold` of `folds` (0-based), grouped by lesion or patient; or a split file.
    public var folds = 5
    public var fold = 0
    public var grouping = SplitGrouping.lesion
    public var splitFile: String?
    /// Balanced sampling of the classes instead of the plain shuffle (stages 2b and 3).
    public var balanced = false
    /// Class weights in the cross-entropy of stages 2b and 3 (Formats/prima-training.md §3.8); ignored by the others.
    public var classWeighting = ClassWeighting.none
    /// Augment the training images (Formats/prima-training.md §3.4); validation images never are.
    public var augmentation: Augmentation.Settings? = .standard
    public var alignment = AlignmentLoss.Settings()
    public var softLabelsOnly = false
    /// Stage 3: what the decoder's input holds (`--no-metadata`: the image only); written to the output's `/prima`.
    public var decoderInputs = PrimaDecoderInputs.imageAndMetadata
    public var masking = MaskedLMMasking.Settings.standard
    public var resume = false

    /// Docs/prima-model.md's settings of `stage` (lr, weight decay, epochs, rank, alpha = 2·rank, AdamW β and ε,
    /// 10% warm-up) and this project's where it is silent (batch size, clipping at 1.0, seed 0).
    public static func defaults(for stage: TrainingRecord.Stage, checkpoint: String, output: String, data: String) -> StageOptions {
        let (lr, decay, epochs, batch, rank): (Double, Double, Int, Int, Int) = switch stage {
        case .stage1: (5e-5, 1e-3, 2500, 16, 8)
        case .stage2: (3e-5, 1e-3, 150, 16, 32)
        case .stage2b: (3e-5, 1e-3, 30, 16, 32)
        case .stage3: (1e-5, 3e-2, 80, 8, 16)
        }
        return StageOptions(stage: stage, checkpoint: checkpoint, output: output, data: data,
                            trainer: TrainerSettings(epochs: epochs, batchSize: batch, learningRate: lr, weightDecay: decay),
                            rank: rank, alpha: Double(2 * rank), targets: nil)
    }

    /// The component whose adapter the stage trains.
    public var adaptedRole: ComponentRole {
        switch stage {
        case .stage1: .textEncoder
        case .stage2, .stage2b: .imageEncoder
        case .stage3: .decoder
        }
    }

    /// Every setting, as the record and the log carry it.
    public var hyperparametersForLog: JSONObject { hyperparameters }

    /// Every setting, for the record.
    var hyperparameters: JSONObject {
        let t = trainer
        var fields: [(String, JSONValue)] = [
            ("stage", .string(stage.rawValue)), ("epochs", .int(t.epochs)), ("batch_size", .int(t.batchSize)),
            ("gradient_accumulation", .int(t.accumulation)), ("lr", .double(t.learningRate)), ("weight_decay", .double(t.weightDecay)),
            ("weight_decay_rule", .string(t.decayRule.rawValue)), ("warmup_ratio", .double(t.warmupRatio)),
            ("max_grad_norm", t.maxGradientNorm.map { .double($0) } ?? .null), ("adam_beta1", .double(t.adam.beta1)),
            ("adam_beta2", .double(t.adam.beta2)), ("adam_eps", .double(t.adam.eps)), ("seed", .int(Int(t.seed))),
            ("save_every", t.saveEvery.map { .int($0) } ?? .null), ("lora_rank", .int(rank)), ("lora_alpha", .double(alpha)),
            ("lora_targets", targets.map { .array($0.map { .string($0) }) } ?? "default"),
        ]
        switch stage {
        case .stage1:
            fields += [("mlm_probability", .double(masking.mlmProbability)), ("mask_probability", .double(masking.maskProbability)),
                       ("random_probability", .double(masking.randomProbability))]
        case .stage2, .stage2b, .stage3:
            fields += [("augmentation", augmentation.map { .object(JSONObject([
                ("min_scale", .double($0.minScale)), ("max_scale", .double($0.maxScale)), ("min_ratio", .double($0.minRatio)),
                ("max_ratio", .double($0.maxRatio)), ("flip_probability", .double($0.flipProbability)),
                ("brightness", .double($0.brightness)), ("contrast", .double($0.contrast)), ("saturation", .double($0.saturation)),
            ])) } ?? .null), ("balanced_sampling", .bool(balanced))]
        }
        if stage == .stage2b || stage == .stage3 { fields.append(("class_weights", .string(classWeighting.rawValue))) }
        if stage == .stage3 { fields.append(("decoder_inputs", .string(decoderInputs.rawValue))) }
        if stage == .stage2 {
            fields += [("tau", .double(Double(alignment.tau))), ("tau_label", .double(Double(alignment.tauLabel))),
                       ("loss_weights", .array(alignment.weights.map { .double(Double($0)) })),
                       ("loc_mode", .string(alignment.localMode.rawValue)), ("soft_labels_only", .bool(softLabelsOnly))]
        }
        return JSONObject(fields)
    }
}

/// The weights of the classes in the cross-entropy of stages 2b and 3 (`--class-weights`, Formats/prima-training.md
/// §3.8).
public enum ClassWeighting: String, Sendable, CaseIterable {
    /// Every case weighs 1.
    case none
    /// scikit-learn's "balanced" over the training split's cases (`Sampling.classWeights`).
    case balanced
}

/// Runs one training stage from a checkpoint to its output (Formats/prima-training.md): loads the model with the
/// stage's adapter, the data and its split, trains with ``Trainer``, validates each epoch (stages 2b and 3),
/// saves every N steps, at each epoch's end, on interruption and at the end — the output a complete checkpoint
/// with `/training` each time — and keeps the best validation epoch beside it (`OUT-best.h5`).
public final class StageRunner {
    /// What the runner reports as it goes.
    public enum Event: Sendable {
        case loaded(examples: Int, validation: Int, skipped: [String], trainable: Int, resumedAt: Int?)
        case step(Trainer.StepReport, secondsPerStep: Double)
        /// A finished epoch, with the whole history so far (for the curves).
        case epoch(index: Int, trainLoss: Float, validation: Trainer.EpochMetrics?, history: TrainingRecord.History, stepsPerEpoch: Int)
        case saved(path: String, status: TrainingRecord.Status)
    }

    public let options: StageOptions
    /// The path of the best validation epoch's save.
    public var bestPath: String { Self.bestPath(for: options.output) }

    public init(options: StageOptions) {
        self.options = options
    }

    /// `OUT-best.h5` for `OUT.h5`.
    public static func bestPath(for output: String) -> String {
        let url = URL(fileURLWithPath: output)
        let stem = url.deletingPathExtension().lastPathComponent
        return url.deletingLastPathComponent().appendingPathComponent(stem + "-best." + (url.pathExtension.isEmpty ? "h5" : url.pathExtension)).path
    }

    /// Runs the stage (or what remains of it with `resume`). `shouldStop` is polled after every step (Ctrl-C): the
    /// state is saved and `.interrupted` returned.
    public func run(report: (Event) throws -> Void = { _ in }, shouldStop: () -> Bool = { false }) throws -> Trainer.Outcome {
        let options = self.options
        var settings = options.trainer
        let role = options.adaptedRole
        if options.resume {
            guard FileManager.default.fileExists(atPath: options.output) else {
                throw ToolError.input("\(options.output): no saved run to resume (the output does not exist)")
            }
            // A resume reads its own save and replaces it; the input checkpoint is never that file.
            if let output = FileIdentity(path: options.output), output == FileIdentity(path: options.checkpoint) {
                throw ToolError.input("\(options.output): the output must differ from the input checkpoint \(options.checkpoint) (it is the same file)")
            }
            OpenedInputs.release(path: options.output)
        }
        try OutputTarget.check(destination: options.output, kind: .file, overwrite: options.resume)

        // The state to continue from: the output itself, read whole into memory and then released so that the
        // saves may replace it (a resumed run writes over its own save, never over its input checkpoint).
        var resumed: TrainingRecord?
        let source: Checkpoint
        if options.resume {
            let saved = try ToolError.classify(asInput: true) { try Checkpoint(path: options.output) }
            guard let record = try ToolError.classify(asInput: true, { try TrainingRecord.read(from: saved, loadMoments: true) }) else {
                throw ToolError.input("\(options.output): has no /training state to resume")
            }
            guard record.stage == options.stage else {
                throw ToolError.input("\(options.output): holds \(record.stage.rawValue)'s state, not \(options.stage.rawValue)'s")
            }
            guard record.status == .running else { throw ToolError.input("\(options.output): \(record.stage.rawValue) is already complete") }
            settings.seed = record.seed
            resumed = record
            source = saved
        } else {
            source = try ToolError.classify(asInput: true) { try Checkpoint(path: options.checkpoint) }
        }
        if options.stage == .stage3 { try checkDecoderInputs(source, resumed: resumed != nil) }
        // The input checkpoint: the source itself unless a resume reads its own save.
        let input = resumed == nil ? source : try ToolError.classify(asInput: true) { try Checkpoint(path: options.checkpoint) }
        let previousStages = try ToolError.classify(asInput: true) { try TrainingRecord.read(from: input, loadMoments: false) }
            .map { $0.status == .complete ? $0.stages : [] } ?? []

        // The stage's adapter: continued when the source has one, else created (PEFT's initialisation).
        let component = try ToolError.classify(asInput: true) { try source.component(role) }
        let stored = try ToolError.classify(asInput: true) { try component.loraAdapterNames() }.contains(StageAdapters.name)
        var created: (info: LoraAdapterInfo, adapter: TrainingAdapter)?
        if !stored {
            created = try ToolError.classify(asInput: true) {
                try StageAdapters.create(for: component, rank: options.rank, alpha: options.alpha, targets: options.targets,
                                         seed: settings.seed, streamPart: ComponentRole.allCases.firstIndex(of: role) ?? 0)
            }
        }
        let inputHasAdapter = try ToolError.classify(asInput: true) { try input.component(role).loraAdapterNames() }.contains(StageAdapters.name)
        let adapterInfo = try created?.info ?? ToolError.classify(asInput: true) { try component.loraAdapter(StageAdapters.name).info }
        let adapterPaths = adapterInfo.targets.flatMap { target -> [String] in
            let stem = String(target.dropLast(".weight".count))
            return ["lora_a", "lora_b"].map { GradientStore.path(role: role.rawValue, adapter: StageAdapters.name, stem: stem, matrix: $0) }
        }
        let extra = created.map { [role: [$0.adapter]] } ?? [:]

        // The model, the objective and the validation of the stage.
        let setup = options.stage == .stage1
            ? try setUpCorpusStage(component: component, adapters: extra[role] ?? [], seed: settings.seed)
            : try setUpFolderStage(source: source, adapters: extra, settings: settings)
        let (objective, headPaths, live) = (setup.objective, setup.headPaths, setup.live)
        let counts = setup.counts

        // The trainable tensors, live in the model.
        var parameters: [(path: String, value: Tensor)] = []
        for path in adapterPaths + headPaths {
            guard let value = live(path) else { throw ToolError.input("\(options.checkpoint): no float tensor \(path) to train") }
            parameters.append((path, value))
        }
        let store = GradientStore(trainable: parameters.map { ($0.path, $0.value.shape) })
        let trainer = try Trainer(settings: settings, objective: objective, parameters: parameters, gradients: store)
        if options.balanced, let labels = setup.orderLabels {
            trainer.epochOrder = { Sampling.balancedOrder(labels: labels, seed: settings.seed, epoch: $0) }
        }
        if let resumed {
            try trainer.restore(from: resumed)
            // Everything of the save is in memory now; the run's next saves replace it.
            OpenedInputs.release(path: options.output)
        }
        try report(.loaded(examples: counts.training, validation: counts.validation, skipped: counts.skipped, trainable: parameters.count,
                       resumedAt: resumed?.step))

        // Saves: the input's contents, the live tensors, the adapter if the input lacks it, and the record.
        var best = resumed?.best ?? JSONObject([])
        let trainedHeads = Set(headPaths.filter { $0.hasPrefix("prima/") }.map { String($0.dropFirst("prima/tensors/".count)) })
        func record(_ status: TrainingRecord.Status) -> TrainingRecord {
            var stages = previousStages
            if status == .complete {
                stages.append(.object(JSONObject([
                    ("stage", .string(options.stage.rawValue)), ("steps", .int(trainer.step)), ("epochs", .int(settings.epochs)),
                    ("final_loss", trainer.history.loss.last.map { .double(Double($0)) } ?? .null),
                    ("hyperparameters", .object(options.hyperparameters)), ("data", .object(setup.data)),
                    ("split", .object(setup.split)), ("seed", .int(Int(settings.seed))), ("tool", .string(CheckpointFormat.tool)),
                ] + (setup.classWeights.map { [("class_weights", .array($0.map { .double(Double($0)) }))] } ?? []))))
            }
            return TrainingRecord(stage: options.stage, status: status, step: trainer.step, totalSteps: trainer.totalSteps, epoch: trainer.epoch,
                                  cursor: trainer.cursor, seed: settings.seed, threads: BLAS.threads, hyperparameters: options.hyperparameters,
                                  data: setup.data, split: setup.split, best: best, stages: stages, classWeights: setup.classWeights,
                                  optimizerStep: trainer.optimizerStep, moments: trainer.moments(), history: trainer.history)
        }
        func save(_ status: TrainingRecord.Status, to path: String) throws {
            let replaced = parameters.filter { inputHasAdapter || !adapterPaths.contains($0.path) }
            let adapters = inputHasAdapter ? [] : [TrainingSave.NewAdapter(
                role: role, info: adapterInfo,
                tensors: adapterInfo.targets.flatMap { target -> [(name: String, tensor: Tensor)] in
                    let stem = String(target.dropLast(".weight".count))
                    return ["lora_a", "lora_b"].map { matrix in
                        (LoraAdapterInfo.aName(for: target).replacingOccurrences(of: ".lora_a", with: "." + matrix),
                         live(GradientStore.path(role: role.rawValue, adapter: StageAdapters.name, stem: stem, matrix: matrix))!)
                    }
                })]
            try TrainingSave.write(input: options.checkpoint, output: path, trained: replaced.map { ($0.path, $0.value) }, adapters: adapters,
                                   trainedHeads: trainedHeads, decoderInputs: options.stage == .stage3 ? options.decoderInputs : nil,
                                   record: record(status), overwrite: true)
            try report(.saved(path: path, status: status))
        }

        var last = Date()
        let outcome = try trainer.run(onStep: { step in
            let now = Date()
            try report(.step(step, secondsPerStep: now.timeIntervalSince(last)))
            last = now
        }, onEpoch: { epoch in
            let metrics = try setup.validate?()
            var history = trainer.history
            history.valLoss.append(metrics?.loss ?? .nan)
            history.valMacroF1.append(metrics?.macroF1 ?? .nan)
            history.valAccuracy.append(metrics?.accuracy ?? .nan)
            history.valBalancedAccuracy.append(metrics?.balancedAccuracy ?? .nan)
            try report(.epoch(index: epoch, trainLoss: trainer.history.trainLoss.last ?? .nan, validation: metrics, history: history,
                          stepsPerEpoch: trainer.stepsPerEpoch))
            if let metrics, metrics.macroF1 > Float(best["value"]?.double ?? -1) {
                best = JSONObject([("metric", "macro_f1"), ("value", .double(Double(metrics.macroF1))), ("epoch", .int(epoch)),
                                   ("step", .int(trainer.step))])
                try save(.running, to: bestPath)
            }
            last = Date()
            return metrics
        }, save: { try save(.running, to: options.output) }, shouldStop: shouldStop)
        if outcome == .complete { try save(.complete, to: options.output) }
        return outcome
    }

    /// Stage 3's decoder inputs against the source's: a resume continues the variant its save was trained as, and
    /// an image-only checkpoint is not silently given its metadata back (pass `--no-metadata` to train it further).
    private func checkDecoderInputs(_ source: Checkpoint, resumed: Bool) throws {
        let stored = try ToolError.classify(asInput: true) {
            try PrimaDecoderInputs.read(from: try source.group("prima").group, origin: "\(source.path): prima")
        }
        let flag = { (value: PrimaDecoderInputs) in value.usesMetadata ? "without --no-metadata" : "with --no-metadata" }
        if resumed, stored != options.decoderInputs {
            throw ToolError.input("\(options.output): was trained with decoder_inputs \"\(stored.rawValue)\": resume \(flag(stored))")
        }
        if !resumed, stored == .image, options.decoderInputs != .image {
            throw ToolError.input("\(options.checkpoint): its decoder reads the image only (decoder_inputs \"image\"): train stage 3 on it \(flag(stored))")
        }
    }

    /// What a stage trains on and how it validates.
    struct StageSetup {
        let objective: any StageObjective
        /// Validation of a finished epoch (nil: none).
        let validate: (() throws -> Trainer.EpochMetrics)?
        /// The heads' gradient paths the stage trains.
        let headPaths: [String]
        /// The live tensor at a gradient path.
        let live: (String) -> Tensor?
        /// The record's `data` and `split` (§4.1, §4.5).
        let data: JSONObject
        let split: JSONObject
        let counts: (training: Int, validation: Int, skipped: [String])
        /// The training examples' classes, for balanced sampling (nil: no classes).
        let orderLabels: [Int]?
        /// The cross-entropy's class weights (nil: unweighted), recorded in `/training`.
        var classWeights: [Float]? = nil
    }

    /// Stage 1: the text encoder with its masked-LM head and the corpus.
    private func setUpCorpusStage(component: ComponentReader, adapters: [TrainingAdapter], seed: UInt64) throws -> StageSetup {
        let role = component.name
        let loaded = try ToolError.classify(asInput: true) { try loadComponentModel(component, training: true, extraAdapters: adapters) }
        guard let model = loaded as? any MaskedLanguageModel, let encoder = loaded as? any TextEncoderModel else {
            throw ToolError.input("\(options.checkpoint): the text encoder cannot run a masked-LM head")
        }
        let tokenizer = try ToolError.classify(asInput: true) { try StoredParts.tokenizer(component) }
        let examples = try RiskFactorCorpus(path: options.data).examples(tokenizer: tokenizer, maxLength: encoder.textConfig.maxPositionEmbeddings)
        let headPaths = try ToolError.classify(asInput: true) { try component.tensorRecords() }
            .filter { $0.name.hasPrefix("mlm.") && $0.aliasOf == nil && $0.dtype != .i8 }
            .map { GradientStore.path(role: role, tensor: $0.name) }
        guard !headPaths.isEmpty else { throw ToolError.input("\(options.checkpoint): the text encoder has no masked-LM head (mlm.*) to train") }
        let data = JSONObject([("kind", "corpus"), ("name", .string((options.data as NSString).lastPathComponent)),
                               ("digest", .string(try Self.digest(files: [(options.data, RiskFactorCorpus.maxFileBytes)]))), ("examples", .int(examples.count)),
                               ("skipped", .array([]))])
        return StageSetup(objective: try Self.maskedLMObjective(model, examples: examples, tokenizer: tokenizer, options: options, seed: seed),
                          validate: nil, headPaths: headPaths,
                          live: { PrimaModels.parameter(of: loaded, String($0.dropFirst(role.count + 1))) },
                          data: data, split: JSONObject([]), counts: (examples.count, 0, []), orderLabels: nil)
    }

    /// Stages 2, 2b and 3: the PRIMA pipeline, the case folder and its split.
    private func setUpFolderStage(source: Checkpoint, adapters: [ComponentRole: [TrainingAdapter]], settings: TrainerSettings) throws -> StageSetup {
        let model = try ToolError.classify(asInput: true) {
            try PrimaModel(checkpoint: source, training: true, extraAdapters: adapters,
                           decoderInputs: options.stage == .stage3 ? options.decoderInputs : nil)
        }
        let context = try ToolError.classify(asInput: true) { try CaseContext(checkpoint: source, model: model, seed: settings.seed) }
        let data = try TrainingCases(folder: options.data, classCodes: model.heads.labels.map(\.code), schema: context.schema)
        let split = try options.splitFile.map { try Splits.read(splitFile: $0, cases: data, grouping: options.grouping) }
            ?? Splits.crossValidation(data, fold: options.fold, of: options.folds, grouping: options.grouping, seed: settings.seed)
        let heads = model.heads.config.floatTensors.map(\.name)
        func paths(_ prefix: String, where keep: (String) -> Bool = { _ in true }) -> [String] {
            heads.filter { $0.hasPrefix(prefix) && keep($0) }.map { GradientStore.path(role: "prima", tensor: $0) }
        }
        // §3.8: scikit-learn's "balanced" weights over the training side's cases (stages 2b and 3).
        let classWeights = options.classWeighting == .balanced && options.stage != .stage2
            ? Sampling.classWeights(labels: split.training.map { data.cases[$0].label }, classCount: data.classCodes.count) : nil
        let objective: any StageObjective
        var validate: (() throws -> Trainer.EpochMetrics)?
        let headPaths: [String]
        switch options.stage {
        case .stage2:
            headPaths = paths("alignment.")
            let encoder = try SoftTargetEncoder(schema: context.schema, classCodes: data.classCodes, labelsOnly: options.softLabelsOnly,
                                                records: data.cases.map(\.record))
            objective = AlignmentObjective(model: model, data: data, examples: Views.alignmentExamples(data, positions: split.training),
                                           context: context, augmentation: options.augmentation, settings: options.alignment, softTargets: encoder)
            let held = AlignmentObjective(model: model, data: data, examples: Views.alignmentExamples(data, positions: split.validation),
                                          context: context, augmentation: nil, settings: options.alignment, softTargets: encoder)
            let batch = settings.batchSize
            validate = { Trainer.EpochMetrics(loss: try held.validationLoss(batchSize: batch), macroF1: .nan, accuracy: .nan, balancedAccuracy: .nan) }
        case .stage2b:
            headPaths = paths("image_classifier.")
            objective = ImageClassifierObjective(model: model, data: data, positions: split.training, context: context, augmentation: options.augmentation,
                                                 classWeights: classWeights)
            validate = { try Self.validateImageClassifier(model, data: data, positions: split.validation, context: context) }
        default:
            let stored = Set(try ToolError.classify(asInput: true) { try source.group("prima").tensorRecords() }.map(\.name))
            headPaths = paths("fusion.", where: stored.contains)
            objective = ClassificationObjective(model: model, data: data, positions: split.training, context: context, augmentation: options.augmentation,
                                                classWeights: classWeights)
            validate = { try Self.validatePipeline(model, data: data, positions: split.validation, context: context) }
        }
        let skipped = data.skipped.map { "\($0.imageID): \($0.reason)" }
        let record = JSONObject([("kind", "folder"), ("name", .string((options.data as NSString).lastPathComponent)),
                                 ("digest", .string(try Self.digest(files: [(data.csvPath, MetadataLimits.maxCSVBytes)]
                                                                     + data.cases.map { ($0.imagePath, ImageLimits.standard.maxFileBytes) }))),
                                 ("examples", .int(data.cases.count)), ("skipped", .array(skipped.map { .string($0) }))])
        let splitRecord = JSONObject([("mode", .string(options.splitFile == nil ? options.grouping.rawValue : "file")),
                                      ("folds", .int(options.folds)), ("fold", .int(options.fold)), ("train", .int(split.training.count)),
                                      ("validation", .int(split.validation.count)),
                                      ("digest", .string(Self.sha256(Array(split.csvText(data).utf8))))])
        return StageSetup(objective: objective, validate: split.validation.isEmpty ? nil : validate, headPaths: headPaths,
                          live: { model.parameter(atPath: $0) }, data: record, split: splitRecord,
                          counts: (split.training.count, split.validation.count, skipped),
                          orderLabels: options.stage == .stage2 ? nil : split.training.map { data.cases[$0].label }, classWeights: classWeights)
    }

    /// Stage 1's objective for a concrete masked-LM model type.
    private static func maskedLMObjective<M: MaskedLanguageModel>(_ model: M, examples: [RiskFactorCorpus.Example], tokenizer: Tokenizer,
                                                                  options: StageOptions, seed: UInt64) throws -> any StageObjective {
        MaskedLMObjective(model: model, examples: examples, maskTokenId: try MaskedLMMasking.maskTokenId(tokenizer),
                          vocabularySize: tokenizer.vocabularySize, padId: tokenizer.padding?.padId ?? 0, masking: options.masking, seed: seed)
    }

    /// Stage 2b's validation: the image classifier on the validation images (plain preprocessing), their mean
    /// cross-entropy and the classification metrics of the argmax.
    static func validateImageClassifier(_ model: PrimaModel, data: TrainingCases, positions: [Int], context: CaseContext) throws -> Trainer.EpochMetrics {
        var scores: [(truth: Int, logits: [Float])] = []
        for (index, position) in positions.enumerated() {
            let pixels = try Batching.caseImages(data, positions: positions, indices: [index], preprocessing: context.preprocessing, seed: context.seed, epoch: 0)
            let image = try model.encodeImage(pixels)
            scores.append((data.cases[position].label, model.heads.classifyImage(image.cls).float32Values()))
        }
        return metrics(scores, classCodes: data.classCodes)
    }

    /// Stage 3's validation: the whole pipeline, as `prima-diagnose` runs it, on the validation cases.
    static func validatePipeline(_ model: PrimaModel, data: TrainingCases, positions: [Int], context: CaseContext) throws -> Trainer.EpochMetrics {
        var scores: [(truth: Int, logits: [Float])] = []
        for (index, position) in positions.enumerated() {
            let item = data.cases[position]
            let pixels = try Batching.caseImages(data, positions: positions, indices: [index], preprocessing: context.preprocessing, seed: context.seed, epoch: 0)
            let image = try model.encodeImage(pixels)
            let text = model.decoderInputs.usesMetadata ? try model.encodeText(try context.textIds(item)) : nil
            let logits = try model.decode(try model.fuse(image, text, promptIds: context.promptIds, answerPrefixIds: context.answerPrefixIds))
            scores.append((item.label, logits))
        }
        return metrics(scores, classCodes: data.classCodes)
    }

    /// Mean cross-entropy and the metrics of the argmax of each case's logits.
    static func metrics(_ scores: [(truth: Int, logits: [Float])], classCodes: [String]) -> Trainer.EpochMetrics {
        var loss = 0.0
        var pairs: [(truth: String, predicted: String)] = []
        for (truth, logits) in scores {
            loss += Double(Loss.crossEntropy(Tensor(shape: [1, logits.count], float32: logits), labels: [truth]).loss)
            let predicted = logits.indices.max { logits[$0] < logits[$1] } ?? 0
            pairs.append((classCodes[truth], classCodes[predicted]))
        }
        let result = ClassificationMetrics(classCodes: classCodes, pairs: pairs)
        return Trainer.EpochMetrics(loss: Float(loss / Double(max(scores.count, 1))), macroF1: Float(result.macroF1),
                                    accuracy: Float(result.accuracy), balancedAccuracy: Float(result.balancedAccuracy))
    }

    /// SHA-256 over the files' bytes in order, each preceded by its byte count (Formats/prima-training.md §4.5).
    /// Each file is read within `limit` bytes, the bound its reader already enforced (it may have changed since).
    public static func digest(files: [(path: String, limit: Int)]) throws -> String {
        var hash = SHA256()
        for (path, limit) in files {
            let bytes = try InputFile(path).readAll(limit: limit)
            withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { hash.update(bufferPointer: $0) }
            bytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
