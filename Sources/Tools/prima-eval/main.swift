import ArgumentParser
import Foundation
import PrimaCLI
import PrimaCheckpoint
import PrimaEval
import PrimaIO
import PrimaTensor
import PrimaTrain

/// `prima-eval`: the paper's evaluation protocol (K-fold cross-validation of PRIMA, its ablations and baselines)
/// as one command (Docs/evaluation.md). Exit status: 0 done, 130/143 stopped by a signal with the work saved (run
/// the same command again to continue), 1 the run failed, 2 bad usage or bad input (nothing written).
@main
struct PrimaEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-eval",
        abstract: "Cross-validate PRIMA, its ablations and its baselines on a PAD-UFES-20-layout folder.",
        version: "prima-eval 1",
        subcommands: [Run.self, Report.self])

    static func main() { ToolMain.run(self, name: "prima-eval", gracefulStop: true) }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train every system on every fold and write its held-out predictions.",
        discussion: """
            Writes OUTDIR/manifest.json (the settings), OUTDIR/folds/SYSTEM/fold-I.json (each system's class \
            probabilities on the cases fold I holds out) and OUTDIR/work/ (the trained checkpoints, shared between \
            systems where their training is the same). Run the same command again to continue a stopped run: done \
            folds are kept, finished stages reused, a stage stopped mid-way resumed exactly. An OUTDIR made with \
            other settings is refused. Systems: \(EvaluationSystem.allCases.map(\.rawValue).joined(separator: ", ")).
            """)

    @Option(help: ArgumentHelp("The base PRIMA checkpoint every system starts from (not modified).", valueName: "BASE.h5"))
    var checkpoint: String
    @Option(help: ArgumentHelp("A PAD-UFES-20-layout folder: metadata.csv and the images.", valueName: "DIR"))
    var data: String
    @Option(help: ArgumentHelp("Stage 1's risk-factor corpus: JSONL, one {name, summary, details} per line.", valueName: "CORPUS.jsonl"))
    var corpus: String
    @Option(name: .shortAndLong, help: ArgumentHelp("The output folder (created; or an earlier run's, to continue it).", valueName: "OUTDIR"))
    var output: String

    @Option(help: "Cross-validation folds.") var folds = 5
    @Option(help: ArgumentHelp("What a fold holds whole: lesion (the paper's PAD-UFES-20 protocol) or patient.", valueName: "lesion|patient"))
    var grouping = "lesion"
    @Option(help: ArgumentHelp("The systems to evaluate, comma-separated, or all.", valueName: "LIST")) var systems = "all"
    @Option(help: "The seed of the split and of every training draw.") var seed: UInt64 = 0
    @Option(help: "Threads for the products (default: every processor); results are bit-identical at a given count.") var threads: Int?

    @Option(name: .customLong("stage1-epochs"), help: "Stage 1 epochs (default 2500).") var stage1Epochs: Int?
    @Option(name: .customLong("stage2-epochs"), help: "Stage 2 epochs (default 150).") var stage2Epochs: Int?
    @Option(name: .customLong("stage2b-epochs"), help: "Stage 2b epochs (default 30).") var stage2bEpochs: Int?
    @Option(name: .customLong("stage3-epochs"), help: "Stage 3 epochs (default 80).") var stage3Epochs: Int?
    @Option(name: .customLong("stage1-lr"), help: "Stage 1 peak learning rate (default 5e-5).") var stage1LR: Double?
    @Option(name: .customLong("stage2-lr"), help: "Stage 2 peak learning rate (default 3e-5).") var stage2LR: Double?
    @Option(name: .customLong("stage2b-lr"), help: "Stage 2b peak learning rate (default 3e-5).") var stage2bLR: Double?
    @Option(name: .customLong("stage3-lr"), help: "Stage 3 peak learning rate (default 1e-5).") var stage3LR: Double?
    @Option(name: .customLong("stage1-batch-size"), help: "Stage 1 batch size (default 16).") var stage1Batch: Int?
    @Option(name: .customLong("stage2-batch-size"), help: "Stage 2 batch size (default 16).") var stage2Batch: Int?
    @Option(name: .customLong("stage2b-batch-size"), help: "Stage 2b batch size (default 16).") var stage2bBatch: Int?
    @Option(name: .customLong("stage3-batch-size"), help: "Stage 3 batch size (default 8).") var stage3Batch: Int?
    @Option(name: .customLong("class-weights"),
            help: ArgumentHelp("Class weights in the cross-entropy of stages 2b and 3, as prima-train's (none or balanced).",
                               valueName: "none|balanced")) var classWeights = "none"
    @OptionGroup var progress: ProgressOptions

    /// (stage, epochs, lr, batch) as given.
    var overrides: [(TrainingRecord.Stage, Int?, Double?, Int?)] {
        [(.stage1, stage1Epochs, stage1LR, stage1Batch), (.stage2, stage2Epochs, stage2LR, stage2Batch),
         (.stage2b, stage2bEpochs, stage2bLR, stage2bBatch), (.stage3, stage3Epochs, stage3LR, stage3Batch)]
    }

    func validate() throws {
        guard (2...100).contains(folds) else { throw ValidationError("--folds must be in 2...100") }
        guard SplitGrouping(rawValue: grouping) != nil else { throw ValidationError("--grouping must be lesion or patient") }
        guard ClassWeighting(rawValue: classWeights) != nil else { throw ValidationError("--class-weights must be none or balanced") }
        guard seed < 1 << 63 else { throw ValidationError("--seed must be below 2^63") }
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be in 1...1024") }
        for (stage, epochs, lr, batch) in overrides {
            if let epochs, !(1...1_000_000).contains(epochs) { throw ValidationError("--\(stage.rawValue)-epochs must be in 1...1000000") }
            if let batch, !(1...1_000_000).contains(batch) { throw ValidationError("--\(stage.rawValue)-batch-size must be in 1...1000000") }
            if let lr, !(lr.isFinite && lr >= 0) { throw ValidationError("--\(stage.rawValue)-lr must be a finite number ≥ 0") }
        }
    }

    func run() throws {
        var settings = EvaluationSettings(checkpoint: checkpoint, data: data, corpus: corpus, output: output)
        settings.folds = folds
        settings.grouping = SplitGrouping(rawValue: grouping)!
        settings.seed = seed
        settings.classWeighting = ClassWeighting(rawValue: classWeights)!
        if systems != "all" { settings.systems = try EvaluationSystem.parse(list: systems) }
        for (stage, epochs, lr, batch) in overrides where epochs != nil || lr != nil || batch != nil {
            settings.overrides[stage] = EvaluationSettings.StageOverride(epochs: epochs, learningRate: lr, batchSize: batch)
        }
        if let threads { BLAS.useThreads(threads) }
        let runner = try EvaluationRunner(settings: settings)
        for item in runner.data.skipped { ToolMain.printWarning("prima-eval", "skipped \(item.imageID): \(item.reason)") }

        let live = progress.showProgress && isatty(STDERR_FILENO) == 1
        var drawn = false
        func draw(_ line: String) {
            guard live else { return }
            FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
            drawn = true
        }
        func say(_ line: String) {
            if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            drawn = false
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        func place(_ fold: Int?, _ system: EvaluationSystem) -> String {
            (fold.map { "fold \($0)/\(folds)" } ?? "all folds") + " \(system.rawValue)"
        }
        let outcome = try runner.run(report: { event in
            switch event {
            case .stageStarted(let fold, let system, _, let step, let resumedAt):
                if let resumedAt { say("\(place(fold, system)): \(step.name) resumes at step \(resumedAt)") }
            case .stageStep(let fold, let system, let step, let report):
                draw("\(place(fold, system)): \(step.name) step \(report.step)/\(report.totalSteps) epoch \(report.epoch + 1) loss "
                     + String(format: "%.4f", report.loss))
            case .stageFinished(let fold, let system, let path):
                say("\(place(fold, system)): trained \(path)")
            case .stageReused:
                break
            case .predicting(let fold, let system, let done, let total):
                draw("\(place(fold, system)): predicting \(done)/\(total)")
            case .foldWritten(let fold, let system, let path):
                say("\(place(fold, system)): wrote \(path)")
            case .foldKept(let fold, let system, let path):
                say("\(place(fold, system)): kept \(path)")
            case .foldReplaced(let fold, let system, let path, let reason):
                if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                drawn = false
                ToolMain.printWarning("prima-eval", "\(path): recomputing \(place(fold, system)) (\(reason))")
            }
        }, shouldStop: { TemporaryFiles.stopRequested != 0 })
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        if outcome == .interrupted {
            let signal = TemporaryFiles.stopRequested
            say("stopped; the work is saved in \(output) (run the same command again to continue)")
            throw ExitCode(128 + (signal == 0 ? SIGINT : signal))
        }
        say("done: \(runner.settings.systems.count) systems × \(folds) folds in \(output)/folds")
        let reportPath = (output as NSString).appendingPathComponent("report")
        try EvaluationReport.load(directory: output).write(to: reportPath, overwrite: true)
        say("report: \(reportPath)/report.md")
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the report of a run's fold files: report.json, report.md and the figures (Docs/evaluation.md).",
        discussion: "Reads every OUTDIR/folds/SYSTEM/fold-I.json, also of a run still in progress, and prints report.md.")

    @Argument(help: ArgumentHelp("A prima-eval run's output folder.", valueName: "OUTDIR")) var directory: String
    @Option(name: .shortAndLong, help: ArgumentHelp("The report folder (default: OUTDIR/report, replaced if it exists).", valueName: "DIR"))
    var output: String?
    @OptionGroup var overwrite: OverwriteOptions

    func run() throws {
        let report = try EvaluationReport.load(directory: directory)
        try report.write(to: output ?? (directory as NSString).appendingPathComponent("report"), overwrite: output == nil || overwrite.force)
        print(report.markdown, terminator: "")
    }
}
