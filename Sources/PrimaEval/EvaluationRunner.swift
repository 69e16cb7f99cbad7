import Crypto
import Foundation
import PrimaCheckpoint
import PrimaDiagnose
import PrimaIO
import PrimaImage
import PrimaJSON
import PrimaMetadata
import PrimaTrain

/// The paper's protocol as one run (Docs/evaluation.md): for each fold of a K-fold cross-validation and each
/// system, train the system's stages with ``StageRunner`` and write its class probabilities on the held-out cases
/// to `OUTDIR/folds/SYSTEM/fold-I.json` (``FoldPredictions``).
///
/// Resumable: a valid fold file is kept; a work checkpoint (`OUTDIR/work/`) that is complete is reused and one
/// saved mid-stage is resumed exactly. Work checkpoints are shared wherever the training is the same: stage 1
/// trains on the corpus alone, so `work/stage1.h5` serves every fold and system; `work/fold-I/stage1+stage2.h5`
/// serves `prima` and `image-only` on fold I. `OUTDIR/manifest.json` records the settings; a run with other
/// settings is refused before anything is written.
public final class EvaluationRunner {
    /// What the runner reports as it goes. `fold` is nil for stage 1, which no fold owns.
    public enum Event: Sendable {
        /// A work checkpoint starts training (`resumedAt`: the step a saved state continues from).
        case stageStarted(fold: Int?, system: EvaluationSystem, path: String, step: TrainingStep, resumedAt: Int?)
        case stageStep(fold: Int?, system: EvaluationSystem, step: TrainingStep, report: Trainer.StepReport)
        case stageFinished(fold: Int?, system: EvaluationSystem, path: String)
        /// A complete work checkpoint from an earlier run or system is used as it is.
        case stageReused(fold: Int?, system: EvaluationSystem, path: String)
        /// Held-out cases predicted so far.
        case predicting(fold: Int, system: EvaluationSystem, done: Int, total: Int)
        case foldWritten(fold: Int, system: EvaluationSystem, path: String)
        case foldKept(fold: Int, system: EvaluationSystem, path: String)
        /// An existing fold file that is not this run's valid predictions (it is recomputed).
        case foldReplaced(fold: Int, system: EvaluationSystem, path: String, reason: String)
    }

    public enum Outcome: Sendable, Equatable {
        case complete
        /// Stopped at the caller's request; a rerun continues.
        case interrupted
    }

    /// Largest fold file read back: far above the 2,298 cases of PAD-UFES-20 at six classes (about 300 KB).
    static let maxFoldFileBytes = 64 << 20

    public let settings: EvaluationSettings
    /// The usable cases of the data folder (rows whose image is missing or corrupt are in `skipped`).
    public let data: TrainingCases
    /// The held-out fold (0..<K) of each case of ``data``.
    public let foldOfCase: [Int]
    let manifest: EvaluationManifest
    /// The metadata-cls features of every case and the checkpoint they came from.
    var textFeatureCache: (checkpoint: String, rows: [[Double]])?

    /// Checks everything a run needs before anything is written: the base checkpoint (loaded as `prima-diagnose`
    /// loads it), the data folder against its classes and schema, the corpus (when a system trains stage 1), the
    /// folds (every class present in the data must be held out in every fold), and an existing output folder
    /// (only one made by `prima-eval` with the same settings, or an empty one). One-line input errors.
    public init(settings: EvaluationSettings) throws {
        guard !settings.systems.isEmpty else { throw ToolError.input("--systems: no system to evaluate") }
        self.settings = settings
        let base = try Diagnoser(checkpoint: settings.checkpoint)
        let classCodes = base.labels.map(\.code)
        data = try TrainingCases(folder: settings.data, classCodes: classCodes, schema: base.schema)
        foldOfCase = try Splits.folds(data, count: settings.folds, grouping: settings.grouping, seed: settings.seed)
        try Self.requireEveryClassInEveryFold(data, folds: foldOfCase, count: settings.folds, grouping: settings.grouping)
        var corpusDigest: String?
        if settings.stages.contains(.stage1) {
            _ = try RiskFactorCorpus(path: settings.corpus)
            corpusDigest = try StageRunner.digest(files: [(settings.corpus, RiskFactorCorpus.maxFileBytes)])
        }
        let dataDigest = try StageRunner.digest(files: [(data.csvPath, MetadataLimits.maxCSVBytes)]
                                                + data.cases.map { ($0.imagePath, ImageLimits.standard.maxFileBytes) })
        manifest = EvaluationManifest(settings: settings, checkpointDigest: try Self.fileDigest(settings.checkpoint),
                                      dataDigest: dataDigest, corpusDigest: corpusDigest, cases: data.cases.count)
        try checkOutputFolder()
    }

    /// The fold file of `system` on fold `fold`.
    public func foldPath(system: EvaluationSystem, fold: Int) -> String {
        path("folds", system.rawValue, "fold-\(fold).json")
    }

    /// Positions (into ``data``'s cases, ascending) of the cases fold `fold` holds out.
    public func heldOut(fold: Int) -> [Int] { foldOfCase.indices.filter { foldOfCase[$0] == fold } }

    /// Runs every fold and system not already done. `shouldStop` is polled after every training step and every
    /// predicted case; a stop leaves the work saved for the next run.
    public func run(report: (Event) throws -> Void = { _ in }, shouldStop: () -> Bool = { false }) throws -> Outcome {
        try writeManifest()
        for fold in 0..<settings.folds {
            for system in settings.systems {
                let destination = foldPath(system: system, fold: fold)
                var replace = false
                if FileManager.default.fileExists(atPath: destination) {
                    if let problem = problem(withFoldFile: destination, system: system, fold: fold) {
                        try report(.foldReplaced(fold: fold, system: system, path: destination, reason: problem))
                        replace = true
                    } else {
                        try report(.foldKept(fold: fold, system: system, path: destination))
                        continue
                    }
                }
                guard let trained = try checkpoint(for: system.pipeline[...], fold: fold, system: system, report: report, shouldStop: shouldStop),
                      let predictions = try predict(system, fold: fold, checkpoint: trained, report: report, shouldStop: shouldStop) else {
                    return .interrupted
                }
                try createDirectory(path("folds", system.rawValue))
                try OutputFile.write(predictions.json.serialized() + "\n", to: destination, overwrite: replace)
                try report(.foldWritten(fold: fold, system: system, path: destination))
            }
        }
        return .complete
    }

    // MARK: - Training

    /// The work checkpoint of `chain` on `fold`: `work/stage1.h5` for stage 1 alone (no fold), else
    /// `work/fold-I/` + the steps' names joined by `+`.
    func workPath(_ chain: ArraySlice<TrainingStep>, fold: Int) -> String {
        chain.count == 1 && chain.first == .stage1 ? path("work", "stage1.h5")
            : path("work", "fold-\(fold)", chain.map(\.name).joined(separator: "+") + ".h5")
    }

    /// The trained checkpoint at the end of `chain` (the base checkpoint for an empty one), training what is missing
    /// from the end of the chain backwards; nil if stopped.
    func checkpoint(for chain: ArraySlice<TrainingStep>, fold: Int, system: EvaluationSystem, report: (Event) throws -> Void,
                    shouldStop: () -> Bool) throws -> String? {
        guard let step = chain.last else { return settings.checkpoint }
        let output = workPath(chain, fold: fold)
        let eventFold = chain.count == 1 && step == .stage1 ? nil : fold
        let saved = try savedStatus(output, stage: step.stage)
        if saved == .complete {
            try report(.stageReused(fold: eventFold, system: system, path: output))
            return output
        }
        guard let input = try checkpoint(for: chain.dropLast(), fold: fold, system: system, report: report, shouldStop: shouldStop) else {
            return nil
        }
        try createDirectory((output as NSString).deletingLastPathComponent)
        var options = settings.stageOptions(step, fold: fold, input: input, output: output)
        options.resume = saved == .running
        let outcome = try StageRunner(options: options).run(report: { event in
            switch event {
            case .loaded(_, _, _, _, let resumedAt):
                try report(.stageStarted(fold: eventFold, system: system, path: output, step: step, resumedAt: resumedAt))
            case .step(let stepReport, _):
                try report(.stageStep(fold: eventFold, system: system, step: step, report: stepReport))
            case .epoch, .saved:
                break
            }
        }, shouldStop: shouldStop)
        guard outcome == .complete else { return nil }
        // The runner validates on the held-out fold and keeps its best epoch beside the output: a model chosen on
        // the test fold, which the evaluation must not use.
        try? FileManager.default.removeItem(atPath: StageRunner.bestPath(for: output))
        try report(.stageFinished(fold: eventFold, system: system, path: output))
        return output
    }

    /// The `/training` status of the work checkpoint at `path` (nil: not there yet). Work checkpoints are written
    /// by this run's saves (temp + rename), so one that does not read, or holds another stage, was changed by hand.
    func savedStatus(_ path: String, stage: TrainingRecord.Stage) throws -> TrainingRecord.Status? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let record = try ToolError.classify(asInput: true) { try TrainingRecord.read(from: try Checkpoint(path: path), loadMoments: false) }
        guard let record, record.stage == stage else {
            throw ToolError.input("\(path): not a \(stage.rawValue) checkpoint of this evaluation (remove it to retrain)")
        }
        OpenedInputs.release(path: path)
        return record.status
    }

    // MARK: - Predictions

    /// The system's probabilities on the cases fold `fold` holds out, from its trained checkpoint; nil if stopped.
    func predict(_ system: EvaluationSystem, fold: Int, checkpoint: String, report: (Event) throws -> Void,
                 shouldStop: () -> Bool) throws -> FoldPredictions? {
        let positions = heldOut(fold: fold)
        let training = foldOfCase.indices.filter { foldOfCase[$0] != fold }
        let rows: [[Double]]
        switch system.predictor {
        case .pipeline, .imageClassifier:
            let diagnoser = try Diagnoser(checkpoint: checkpoint)
            var predicted: [[Double]] = []
            for position in positions {
                guard !shouldStop() else { return nil }
                let item = data.cases[position]
                let diagnosis = system.predictor == .pipeline
                    ? try diagnoser.diagnose(imagePath: item.imagePath, record: item.record).diagnosis
                    : try diagnoser.classifyImage(imagePath: item.imagePath)
                predicted.append(diagnosis.probabilities.map(Double.init))
                try report(.predicting(fold: fold, system: system, done: predicted.count, total: positions.count))
            }
            OpenedInputs.release(path: checkpoint)
            rows = predicted
        case .textProbe:
            guard let features = try textFeatures(checkpoint: checkpoint, fold: fold, system: system, report: report, shouldStop: shouldStop) else {
                return nil
            }
            let scaler = Standardisation(fitting: training.map { features[$0] })
            rows = try fitted(training: training, features: { scaler.apply(features[$0]) }).probabilities(positions.map { scaler.apply(features[$0]) })
        case .tabular:
            let table = TabularFeatures(fitting: training.map { data.cases[$0] }, schema: data.schema)
            rows = try fitted(training: training, features: { table.row(data.cases[$0].record) })
                .probabilities(positions.map { table.row(data.cases[$0].record) })
        }
        return try predictions(system, fold: fold, positions: positions, rows: rows)
    }

    /// Where the baselines' Newton solver stops (max |∂L|). Its default, 1e-10, is below the rounding floor on
    /// nearly separable folds (measured: stuck at 1.1e-9 on the test cohort's CLS features); scikit-learn's lbfgs
    /// stops at tol 1e-4. At 1e-8 the probabilities are settled far below the 1e-4 a fold file's rows are checked to.
    static let baselineTolerance = 1e-8

    /// ``LogisticRegression`` with scikit-learn's default C = 1, fitted on the training positions' features.
    func fitted(training: [Int], features: (Int) -> [Double]) throws(ToolError) -> LogisticRegression {
        try LogisticRegression(features: training.map(features), labels: training.map { data.cases[$0].label }, classCount: data.classCodes.count,
                               tolerance: Self.baselineTolerance)
    }

    /// The text encoder's CLS feature of every case's metadata text under `checkpoint`, computed once per checkpoint
    /// (stage 1's serves every fold); nil if stopped.
    func textFeatures(checkpoint: String, fold: Int, system: EvaluationSystem, report: (Event) throws -> Void,
                      shouldStop: () -> Bool) throws -> [[Double]]? {
        if let cached = textFeatureCache, cached.checkpoint == checkpoint { return cached.rows }
        let diagnoser = try Diagnoser(checkpoint: checkpoint)
        var rows: [[Double]] = []
        for item in data.cases {
            guard !shouldStop() else { return nil }
            rows.append(try diagnoser.textFeatures(record: item.record).map(Double.init))
            try report(.predicting(fold: fold, system: system, done: rows.count, total: data.cases.count))
        }
        OpenedInputs.release(path: checkpoint)
        textFeatureCache = (checkpoint, rows)
        return rows
    }

    /// The fold file's contents for `rows` (one per held-out position).
    func predictions(_ system: EvaluationSystem, fold: Int, positions: [Int], rows: [[Double]]) throws(ToolError) -> FoldPredictions {
        try FoldPredictions(system: system.rawValue, fold: fold, classes: data.classCodes, cases: positions.map { data.cases[$0].imageID },
                            labels: positions.map { data.cases[$0].label }, probabilities: rows)
    }

    /// Why the existing fold file at `path` is not this run's predictions of `system` on `fold` (nil: it is).
    func problem(withFoldFile path: String, system: EvaluationSystem, fold: Int) -> String? {
        let stored: FoldPredictions
        do {
            stored = try FoldPredictions(json: try JSON.parse(try InputFile.readText(path, limit: Self.maxFoldFileBytes)))
        } catch {
            return "\(error)"
        }
        let positions = heldOut(fold: fold)
        guard stored.system == system.rawValue, stored.fold == fold else { return "it holds \(stored.system) fold \(stored.fold)" }
        guard stored.classes == data.classCodes, stored.cases == positions.map({ data.cases[$0].imageID }),
              stored.labels == positions.map({ data.cases[$0].label }) else {
            return "its cases are not the ones fold \(fold) holds out"
        }
        return nil
    }

    // MARK: - Checks and the output folder

    /// Throws unless every class that has cases is held out by every fold (else that fold's per-class metrics do
    /// not exist): the error names the class and how many groups (lesions or patients) it has.
    static func requireEveryClassInEveryFold(_ data: TrainingCases, folds: [Int], count: Int, grouping: SplitGrouping) throws(ToolError) {
        var present = [Set<Int>](repeating: [], count: count)
        var groups = [Set<String>](repeating: [], count: data.classCodes.count)
        for (position, item) in data.cases.enumerated() {
            present[folds[position]].insert(item.label)
            groups[item.label].insert(grouping == .lesion ? item.lesionKey : item.patientID)
        }
        for label in data.classCodes.indices where !groups[label].isEmpty {
            guard let empty = present.firstIndex(where: { !$0.contains(label) }) else { continue }
            let code = data.classCodes[label], have = groups[label].count
            if have < count {
                throw ToolError.input("--folds \(count): \(data.csvPath) has only \(have) \(grouping.rawValue)\(have == 1 ? "" : "s") of class \(code), fewer than the folds (every fold must hold out every class)")
            }
            throw ToolError.input("--folds \(count): fold \(empty) would hold out no \(code) case in \(data.csvPath) (split by \(grouping.rawValue); try fewer folds or another seed)")
        }
    }

    /// Refuses an output that is not a folder, a non-empty folder without a manifest, and one whose manifest
    /// records other settings.
    func checkOutputFolder() throws {
        var isDirectory: ObjCBool = false
        let output = settings.output
        guard FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) else {
            let parent = (output as NSString).deletingLastPathComponent
            guard parent.isEmpty || FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue || parent.isEmpty else {
                throw ToolError.input("\(output): the folder above it does not exist")
            }
            return
        }
        guard isDirectory.boolValue else { throw ToolError.input("\(output): exists and is not a folder") }
        let manifestPath = path(EvaluationManifest.fileName)
        if FileManager.default.fileExists(atPath: manifestPath) {
            try manifest.requireSame(asStoredAt: manifestPath)
        } else if !((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).isEmpty {
            throw ToolError.input("\(output): a folder that is not empty and has no \(EvaluationManifest.fileName) (not a prima-eval output)")
        }
    }

    /// Creates the output folder and writes the manifest unless it is there (and, by ``checkOutputFolder()``, the same).
    func writeManifest() throws {
        try createDirectory(settings.output)
        let manifestPath = path(EvaluationManifest.fileName)
        if !FileManager.default.fileExists(atPath: manifestPath) {
            try OutputFile.write(manifest.text, to: manifestPath, overwrite: false)
        }
    }

    func createDirectory(_ directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ToolError.failed("\(directory): cannot create the folder: \(error.localizedDescription)")
        }
    }

    /// `OUTDIR/` + the components.
    func path(_ components: String...) -> String {
        components.reduce(settings.output) { ($0 as NSString).appendingPathComponent($1) }
    }

    /// Per-column standardisation fitted on training rows (scikit-learn's `StandardScaler`: mean and population
    /// SD; a column with SD 0 is only centred), so that the probe's L2 penalty weighs every CLS dimension alike.
    struct Standardisation {
        let mean: [Double]
        let scale: [Double]

        init(fitting rows: [[Double]]) {
            let n = Double(rows.count), width = rows.first?.count ?? 0
            let means = (0..<width).map { column in rows.reduce(0) { $0 + $1[column] } / n }
            scale = (0..<width).map { column in
                let variance = rows.reduce(0) { $0 + ($1[column] - means[column]) * ($1[column] - means[column]) } / n
                return variance > 0 ? variance.squareRoot() : 1
            }
            mean = means
        }

        func apply(_ row: [Double]) -> [Double] { row.indices.map { (row[$0] - mean[$0]) / scale[$0] } }
    }

    /// SHA-256 of a file's bytes, read in 8 MiB pieces (a checkpoint may be larger than the memory to spare).
    static func fileDigest(_ path: String) throws -> String {
        let file = try InputFile(path)
        var hash = SHA256()
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var offset = 0
        while offset < file.size {
            let count = try buffer.withUnsafeMutableBytes { bytes in
                let read = pread(file.descriptor, bytes.baseAddress, min(bytes.count, file.size - offset), off_t(offset))
                guard read > 0 else { throw ToolError.input("\(path): cannot read at byte \(offset): \(String(cString: strerror(errno)))") }
                return read
            }
            buffer.withUnsafeBytes { hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
            offset += count
        }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
