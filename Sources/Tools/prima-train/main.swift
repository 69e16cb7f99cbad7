import ArgumentParser
import Foundation
import PrimaCLI
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaTensor
import PrimaTrain

/// `prima-train`: PRIMA's training stages on a CPU (Docs/prima-model.md, Formats/prima-training.md).
/// Exit status: 0 the stage finished, 130/143 stopped by a signal after saving its state (resume with --resume),
/// 1 the run failed, 2 bad usage or bad input.
@main
struct PrimaTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-train",
        abstract: "Train PRIMA's stages from a checkpoint: masked LM, alignment, image classifier, diagnosis.",
        discussion: """
            Each stage reads a PRIMA checkpoint (--checkpoint, never modified) and writes OUT.h5: the checkpoint with \
            the stage's adapter and heads trained and its /training record (Formats/prima-training.md §4), saved every \
            --save-every steps, at each epoch's end, on Ctrl-C (a second Ctrl-C aborts) and at the end; --resume \
            continues an interrupted OUT.h5 exactly. Beside it: OUT.jsonl (every step and epoch) and, with a \
            validation split, OUT-best.h5 (the best macro-F1 epoch). Defaults: Docs/prima-model.md.
            """,
        version: "prima-train 1",
        subcommands: [Stage1.self, Stage2.self, Stage2b.self, Stage3.self, All.self])

    static func main() { ToolMain.run(self, name: "prima-train", gracefulStop: true) }
}

/// The options every stage takes.
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The PRIMA checkpoint to start from (not modified).", valueName: "IN.h5"))
    var checkpoint: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The trained checkpoint.", valueName: "OUT.h5"))
    var output: String

    @Option(help: "Epochs (default: Docs/prima-model.md's for the stage).") var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Examples per optimiser step.") var batchSize: Int?
    @Option(name: .customLong("grad-accum"), help: "Micro-batches per step (gradient accumulation).") var accumulation: Int?
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(name: .customLong("weight-decay"), help: "AdamW weight decay.") var weightDecay: Double?
    @Option(name: .customLong("warmup-ratio"), help: "Linear warm-up as a share of the steps (default 0.1).") var warmupRatio: Double?
    @Option(name: .customLong("max-grad-norm"), help: "Global-norm clipping; 0 turns it off (default 1.0).") var maxGradNorm: Double?
    @Option(help: "The run's seed (every random draw derives from it).") var seed: UInt64?
    @Option(help: "LoRA rank of the stage's adapter.") var rank: Int?
    @Option(help: "LoRA alpha (default 2 × rank).") var alpha: Double?
    @Option(help: ArgumentHelp("Weights the adapter targets, comma-separated canonical names (default: every attention and MLP projection).",
                               valueName: "NAMES")) var targets: String?
    @Option(name: .customLong("save-every"), help: "Also save every N optimiser steps.") var saveEvery: Int?
    @Option(help: "Threads for the products (default: every processor); a run is bit-identical at a given count.") var threads: Int?
    @Flag(help: "Continue the interrupted run saved in OUT.h5.") var resume = false
    @Option(help: ArgumentHelp("The JSONL log (default: OUT.jsonl beside the output).", valueName: "FILE")) var log: String?
    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        for (name, value) in [("--epochs", epochs), ("--batch-size", batchSize), ("--grad-accum", accumulation), ("--rank", rank),
                              ("--save-every", saveEvery), ("--threads", threads)] {
            if let value, !(1...1_000_000).contains(value) { throw ValidationError("\(name) must be in 1...1000000") }
        }
        for (name, value) in [("--lr", lr), ("--weight-decay", weightDecay), ("--warmup-ratio", warmupRatio), ("--max-grad-norm", maxGradNorm),
                              ("--alpha", alpha)] {
            if let value, !(value.isFinite && value >= 0) { throw ValidationError("\(name) must be a finite number ≥ 0") }
        }
        if let warmupRatio, warmupRatio > 1 { throw ValidationError("--warmup-ratio must be at most 1") }
        if let alpha, alpha == 0 { throw ValidationError("--alpha must be positive") }
    }

    /// The stage's defaults with these options applied.
    func options(_ stage: TrainingRecord.Stage, data: String, output: String? = nil, checkpoint: String? = nil) throws -> StageOptions {
        var options = StageOptions.defaults(for: stage, checkpoint: checkpoint ?? self.checkpoint, output: output ?? self.output, data: data)
        if let epochs { options.trainer.epochs = epochs }
        if let batchSize { options.trainer.batchSize = batchSize }
        if let accumulation { options.trainer.accumulation = accumulation }
        guard options.trainer.accumulation <= options.trainer.batchSize else {
            throw ValidationError("--grad-accum \(options.trainer.accumulation) is more than the batch size \(options.trainer.batchSize)")
        }
        if let lr { options.trainer.learningRate = lr }
        if let weightDecay { options.trainer.weightDecay = weightDecay }
        if let warmupRatio { options.trainer.warmupRatio = warmupRatio }
        if let maxGradNorm { options.trainer.maxGradientNorm = maxGradNorm == 0 ? nil : maxGradNorm }
        if let seed {
            guard seed < 1 << 63 else { throw ValidationError("--seed must be below 2^63") }
            options.trainer.seed = seed
        }
        if let rank {
            options.rank = rank
            options.alpha = Double(2 * rank)
        }
        if let alpha { options.alpha = alpha }
        if let targets { options.targets = targets.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
        options.trainer.saveEvery = saveEvery
        options.resume = resume
        return options
    }
}

extension ClassWeighting: ExpressibleByArgument {}

/// The options of the stages that read a case folder.
struct FolderOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A PAD-UFES-20-layout folder: metadata.csv and the images.", valueName: "DIR"))
    var data: String

    @Option(help: "Cross-validation folds (default 5).") var folds: Int?
    @Option(help: "The fold held out for validation, 0-based (default 0).") var fold: Int?
    @Flag(name: .customLong("patient-split"), help: "Split by patient instead of by lesion.") var patientSplit = false
    @Option(help: ArgumentHelp("A split file instead of folds (CSV img_id,split with train/val; Formats/prima-training.md §3.2).",
                               valueName: "FILE")) var split: String?
    @Flag(help: "Sample the classes equally (with replacement) instead of the plain shuffle.") var balanced = false
    @Option(name: .customLong("class-weights"),
            help: ArgumentHelp("Class weights in the cross-entropy of stages 2b and 3: none, or balanced (scikit-learn's, from the training split).",
                               valueName: "none|balanced")) var classWeights: ClassWeighting = .none
    @Flag(name: .customLong("no-augment"), help: "Do not augment the training images.") var noAugment = false

    func validate() throws {
        if let folds, !(2...100).contains(folds) { throw ValidationError("--folds must be in 2...100") }
        if let fold, fold < 0 || fold >= (folds ?? 5) { throw ValidationError("--fold must be in 0..<folds") }
        if split != nil, folds != nil || fold != nil { throw ValidationError("give --split or --folds/--fold, not both") }
    }

    /// Runs a stage that needs nothing beyond the common and folder options.
    func run(_ stage: TrainingRecord.Stage, common: CommonOptions) throws {
        var options = try common.options(stage, data: data)
        apply(to: &options)
        try StageCLI.run(options, common: common)
    }

    func apply(to options: inout StageOptions) {
        if let folds { options.folds = folds }
        if let fold { options.fold = fold }
        options.grouping = patientSplit ? .patient : .lesion
        options.splitFile = split
        options.balanced = balanced
        options.classWeighting = classWeights
        if noAugment { options.augmentation = nil }
    }
}

/// The options of stage 2's losses.
struct AlignmentOptions: ParsableArguments {
    @Option(name: .customLong("loss-weights"), help: ArgumentHelp("β_img,β_glo,β_loc,β_soft (default 0.2,0.3,0.2,0.3); 0 switches a loss off.",
                                                                   valueName: "W,W,W,W")) var lossWeights: String?
    @Option(help: "The temperature of the similarities (default 0.07).") var tau: Double?
    @Option(name: .customLong("tau-label"), help: "The temperature of the soft targets (default 1).") var tauLabel: Double?
    @Flag(name: .customLong("loc-direct"), help: "L_loc without attention (the ablation).") var locDirect = false
    @Flag(name: .customLong("soft-labels-only"), help: "Soft targets from the class labels only (the ablation).") var softLabelsOnly = false

    func apply(to options: inout StageOptions) throws {
        if let lossWeights {
            let values = lossWeights.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard values.count == 4, let weights = values as? [Float], weights.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw ValidationError("--loss-weights takes four numbers ≥ 0, e.g. 0.2,0.3,0.2,0.3")
            }
            options.alignment.weights = weights
        }
        for (name, value) in [("--tau", tau), ("--tau-label", tauLabel)] {
            if let value, !(value.isFinite && value > 0) { throw ValidationError("\(name) must be a positive number") }
        }
        if let tau { options.alignment.tau = Float(tau) }
        if let tauLabel { options.alignment.tauLabel = Float(tauLabel) }
        if locDirect { options.alignment.localMode = .direct }
        options.softLabelsOnly = softLabelsOnly
    }
}

struct Stage1: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stage 1: the text encoder's LoRA and masked-LM head on a risk-factor corpus.")
    @OptionGroup var common: CommonOptions
    @Option(help: ArgumentHelp("The risk-factor corpus: JSONL, one {name, summary, details} per line.", valueName: "CORPUS.jsonl"))
    var corpus: String

    func run() throws { try StageCLI.run(try common.options(.stage1, data: corpus), common: common) }
}

struct Stage2: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stage 2: the image encoder's LoRA and the alignment projections, four losses.")
    @OptionGroup var common: CommonOptions
    @OptionGroup var folder: FolderOptions
    @OptionGroup var alignment: AlignmentOptions

    func run() throws {
        guard folder.classWeights == .none else { throw ValidationError("--class-weights applies to stages 2b and 3 (stage 2's losses are contrastive)") }
        var options = try common.options(.stage2, data: folder.data)
        folder.apply(to: &options)
        try alignment.apply(to: &options)
        try StageCLI.run(options, common: common)
    }
}

struct Stage2b: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stage2b", abstract: "Stage 2b: the image encoder's LoRA and the image classifier.")
    @OptionGroup var common: CommonOptions
    @OptionGroup var folder: FolderOptions

    func run() throws { try folder.run(.stage2b, common: common) }
}

struct Stage3: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stage 3: the fusion projectors, special tokens and the decoder's LoRA on the class logits.")
    @OptionGroup var common: CommonOptions
    @OptionGroup var folder: FolderOptions
    @OptionGroup var fusion: FusionOptions

    func run() throws {
        var options = try common.options(.stage3, data: folder.data)
        folder.apply(to: &options)
        fusion.apply(to: &options)
        try StageCLI.run(options, common: common)
    }
}

/// The options of stage 3's fusion.
struct FusionOptions: ParsableArguments {
    @Flag(name: .customLong("no-metadata"),
          help: "Leave the metadata out of the decoder's input (the ablation; the output's decoder_inputs becomes \"image\").")
    var noMetadata = false

    func apply(to options: inout StageOptions) {
        if options.stage == .stage3, noMetadata { options.decoderInputs = .image }
    }
}

struct All: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stages 1 → 2 → 2b → 3, each from the previous one's output.",
        discussion: "The stages write OUT-stage1.h5, OUT-stage2.h5, OUT-stage2b.h5 and OUT.h5; a stage whose output is complete is skipped, so --resume continues where the run stopped. The epoch, batch and LoRA options apply to every stage.")
    @OptionGroup var common: CommonOptions
    @Option(help: ArgumentHelp("The risk-factor corpus for stage 1.", valueName: "CORPUS.jsonl")) var corpus: String
    @OptionGroup var folder: FolderOptions
    @OptionGroup var alignment: AlignmentOptions
    @OptionGroup var fusion: FusionOptions

    func run() throws {
        let stages: [TrainingRecord.Stage] = [.stage1, .stage2, .stage2b, .stage3]
        let url = URL(fileURLWithPath: common.output)
        let base = url.deletingPathExtension().path
        var input = common.checkpoint
        for stage in stages {
            let output = stage == .stage3 ? common.output : "\(base)-\(stage.rawValue).h5"
            var options = try common.options(stage, data: stage == .stage1 ? corpus : folder.data, output: output, checkpoint: input)
            folder.apply(to: &options)
            try alignment.apply(to: &options)
            fusion.apply(to: &options)
            if let state = try? TrainingRecord.read(from: try Checkpoint(path: output), loadMoments: false), state.stage == stage {
                if state.status == .complete {
                    FileHandle.standardError.write(Data("prima-train: \(stage.rawValue) is complete in \(output); going on\n".utf8))
                    input = output
                    continue
                }
                options.resume = common.resume
            } else {
                options.resume = false
            }
            try StageCLI.run(options, common: common, appendLog: options.resume || (common.log != nil && stage != .stage1))
            input = output
        }
    }
}

/// Runs one stage with the progress line, the JSONL log and the stop on the first signal.
enum StageCLI {
    /// `appendLog`: continue an existing log (a resume, or a later stage of `all` writing to one --log).
    static func run(_ options: StageOptions, common: CommonOptions, appendLog: Bool? = nil) throws {
        if let threads = common.threads { BLAS.useThreads(threads) }
        let logPath = common.log ?? URL(fileURLWithPath: options.output).deletingPathExtension().path + ".jsonl"
        let log = try TrainingLog(path: logPath, append: appendLog ?? options.resume,
                                  inputs: [options.checkpoint, options.data, options.output] + (options.splitFile.map { [$0] } ?? []))
        let curvesPath = URL(fileURLWithPath: options.output).deletingPathExtension().path + "-curves.png"
        let showProgress = common.progress.showProgress && isatty(STDERR_FILENO) == 1
        let started = Date()
        var doneSteps = 0, firstStep: Int?
        let outcome = try StageRunner(options: options).run(report: { event in
            switch event {
            case .loaded(let examples, let validation, let skipped, let trainable, let resumedAt):
                for item in skipped { ToolMain.printWarning("prima-train", "skipped \(item)") }
                log.write([("event", "start"), ("stage", .string(options.stage.rawValue)), ("examples", .int(examples)),
                           ("validation", .int(validation)), ("skipped", .int(skipped.count)), ("trainable_tensors", .int(trainable)),
                           ("resumed_at_step", resumedAt.map { .int($0) } ?? .null), ("hyperparameters", .object(options.hyperparametersForLog))])
                firstStep = resumedAt ?? 0
            case .step(let step, let seconds):
                doneSteps += 1
                log.write([("event", "step"), ("stage", .string(options.stage.rawValue)), ("epoch", .int(step.epoch)), ("step", .int(step.step)),
                           ("total_steps", .int(step.totalSteps)), ("loss", .double(Double(step.loss))), ("lr", .double(step.learningRate)),
                           ("grad_norm", .double(Double(step.gradientNorm))), ("skipped", .bool(step.skipped)), ("seconds", .double(seconds))])
                if showProgress {
                    let elapsed = Date().timeIntervalSince(started)
                    let perStep = elapsed / Double(max(doneSteps, 1))
                    let remaining = Double(step.totalSteps - step.step) * perStep
                    let samples = Double(min(options.trainer.batchSize, step.examples)) / max(seconds, 1e-9)
                    let line = "\(options.stage.rawValue) " + String(format: "epoch %d/%d step %d/%d loss %.4f lr %.2e %.1f samples/s ETA ",
                                                                             step.epoch + 1, options.trainer.epochs, step.step, step.totalSteps,
                                                                             step.loss, step.learningRate, samples) + duration(remaining)
                    FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
                }
            case .epoch(let index, let trainLoss, let validation, let history, let stepsPerEpoch):
                try TrainingPlot.write(history: history, title: "\(options.stage.rawValue): \((options.output as NSString).lastPathComponent)",
                                       stepsPerEpoch: stepsPerEpoch, to: curvesPath, overwrite: true)
                var fields: [(String, JSONValue)] = [("event", "epoch"), ("stage", .string(options.stage.rawValue)), ("epoch", .int(index)),
                                                     ("train_loss", .double(Double(trainLoss)))]
                if let validation {
                    fields.append(("val_loss", .double(Double(validation.loss))))
                    if !validation.macroF1.isNaN {
                        fields += [("val_macro_f1", .double(Double(validation.macroF1))), ("val_accuracy", .double(Double(validation.accuracy))),
                                   ("val_balanced_accuracy", .double(Double(validation.balancedAccuracy)))]
                    }
                }
                log.write(fields)
                if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
                let summary = validation.map {
                    $0.macroF1.isNaN ? String(format: ", validation loss %.4f", $0.loss)
                        : String(format: ", validation loss %.4f, macro F1 %.4f, accuracy %.4f, balanced accuracy %.4f",
                                 $0.loss, $0.macroF1, $0.accuracy, $0.balancedAccuracy)
                } ?? ""
                print("\(options.stage.rawValue): epoch \(index + 1)/\(options.trainer.epochs): train loss \(String(format: "%.4f", trainLoss))\(summary)")
            case .saved(let path, let status):
                log.write([("event", "saved"), ("path", .string(path)), ("status", .string(status.rawValue))])
            }
        }, shouldStop: { TemporaryFiles.stopRequested != 0 })
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        let stopped = TemporaryFiles.stopRequested
        if outcome == .interrupted {
            log.write([("event", "interrupted"), ("signal", .int(Int(stopped)))])
            print("\(options.stage.rawValue): stopped after step \((firstStep ?? 0) + doneSteps); the state is saved in \(options.output) (continue with --resume)")
            throw ExitCode(128 + (stopped == 0 ? SIGINT : stopped))
        }
        print("\(options.stage.rawValue): done, \(options.output)")
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// The JSONL log of a run: one JSON object per line, flushed as written (a killed run keeps what it logged).
final class TrainingLog {
    let handle: FileHandle

    /// Opens (or, without `append`, starts) the log at `path`, refusing a path that is one of the run's `inputs`
    /// (compared by device and inode): the log is written in place, so it must never be a file the run reads or saves.
    init(path: String, append: Bool, inputs: [String]) throws {
        if let identity = FileIdentity(path: path), let input = inputs.first(where: { FileIdentity(path: $0) == identity }) {
            throw ToolError.input("\(path): the log must differ from \(input) (it is the same file)")
        }
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ToolError.input("\(path): cannot create the log")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw ToolError.input("\(path): cannot open the log") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    func write(_ fields: [(String, JSONValue)]) {
        handle.write(Data((JSONValue.object(JSONObject(fields)).serialized() + "\n").utf8))
    }
}
