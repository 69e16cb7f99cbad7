import Foundation
import PrimaCheckpoint
import PrimaDiagnose
import PrimaJSON
import PrimaModels
import PrimaTensor
import PrimaTestSupport
import PrimaTrain
import Testing

/// Every stage end to end on the bundled tiny PRIMA checkpoint and case folder (Fixtures/prima): the stage trains
/// its adapter and heads, the output is a valid checkpoint with a complete `/training` record that the runtime and
/// `prima-diagnose` read, and a run interrupted mid-stage and resumed ends with the same file contents as one that
/// was not.
@Suite(.serialized) struct StageRunnerTests {
    static let checkpoint = TestProcess.repositoryRoot + "/Fixtures/prima/tiny-prima.h5"
    static let cases = TestProcess.repositoryRoot + "/Fixtures/prima/cases"

    /// A small risk-factor corpus (Formats/prima-training.md §3.6).
    static func corpus() throws -> String {
        let path = TestProcess.temporaryDirectory("prima-stage-tests") + "/corpus.jsonl"
        let records = [("age", "Older age raises the risk of skin cancer.", "BCC and SCC are most common after sixty."),
                       ("sun exposure", "Chronic sun exposure damages the skin.", "Actinic keratosis forms on sun-exposed sites."),
                       ("bleeding", "A lesion that bleeds needs attention.", "Bleeding is frequent in BCC and melanoma."),
                       ("family history", "Melanoma runs in families.", "A first-degree relative doubles the risk."),
                       ("itching", "Itch accompanies many lesions.", "Seborrheic keratosis often itches.")]
        let lines = records.map { JSONValue.object(JSONObject([("name", .string($0.0)), ("summary", .string($0.1)), ("details", .string($0.2))])).serialized() }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Small settings for `stage` writing `output`.
    static func options(_ stage: TrainingRecord.Stage, data: String, output: String) -> StageOptions {
        var options = StageOptions.defaults(for: stage, checkpoint: checkpoint, output: output, data: data)
        options.trainer.epochs = 2
        options.trainer.batchSize = stage == .stage1 ? 2 : 3
        options.trainer.learningRate = 1e-2
        options.rank = 2
        options.alpha = 4
        options.folds = 2
        return options
    }

    @Test(arguments: [TrainingRecord.Stage.stage1, .stage2, .stage2b, .stage3])
    func aStageTrainsAndSaves(_ stage: TrainingRecord.Stage) throws {
        let output = TestProcess.temporaryDirectory("prima-stage-tests") + "/out.h5"
        let options = Self.options(stage, data: stage == .stage1 ? try Self.corpus() : Self.cases, output: output)
        var steps: [Trainer.StepReport] = []
        var saves = 0
        let outcome = try StageRunner(options: options).run(report: { event in
            if case .step(let step, _) = event { steps.append(step) }
            if case .saved = event { saves += 1 }
        })
        #expect(outcome == .complete && !steps.isEmpty && steps.allSatisfy { $0.loss.isFinite } && saves >= 3)
        let saved = try Checkpoint(path: output)
        try StoredValidation.validate(saved)
        let record = try #require(try TrainingRecord.read(from: saved, loadMoments: true))
        #expect(record.stage == stage && record.status == .complete && record.step == record.totalSteps && record.step == steps.count)
        #expect(record.stages.count == 1 && record.history.trainLoss.count == 2 && !record.moments.isEmpty)
        let role: ComponentRole = stage == .stage1 ? .textEncoder : stage == .stage3 ? .decoder : .imageEncoder
        let (info, _) = try saved.component(role).loraAdapter("prima")
        #expect(info.rank == 2 && !info.targets.isEmpty)
        // The trained adapter changed the model: B is no longer zero.
        let b = try #require(record.moments.first { $0.path.hasSuffix(".lora_b") })
        #expect(b.expAvg.float32Values().contains { $0 != 0 })
        // prima-diagnose runs the trained checkpoint.
        _ = try Diagnoser(checkpoint: output)
    }

    /// Interrupted after step 2 and resumed: the same trained tensors and moments as an uninterrupted run.
    @Test(arguments: [TrainingRecord.Stage.stage2b, .stage3])
    func anInterruptedRunResumesExactly(_ stage: TrainingRecord.Stage) throws {
        let directory = TestProcess.temporaryDirectory("prima-stage-tests")
        let whole = Self.options(stage, data: Self.cases, output: directory + "/whole.h5")
        _ = try StageRunner(options: whole).run()
        var first = Self.options(stage, data: Self.cases, output: directory + "/split.h5")
        var steps = 0
        let outcome = try StageRunner(options: first).run(report: { if case .step = $0 { steps += 1 } }, shouldStop: { steps >= 2 })
        #expect(outcome == .interrupted)
        #expect(try TrainingRecord.read(from: try Checkpoint(path: first.output), loadMoments: false)?.status == .running)
        first.resume = true
        #expect(try StageRunner(options: first).run() == .complete)
        let a = try TrainingRecord.read(from: try Checkpoint(path: whole.output), loadMoments: true)!
        let b = try TrainingRecord.read(from: try Checkpoint(path: first.output), loadMoments: true)!
        #expect(a.history.loss == b.history.loss && a.step == b.step)
        for (x, y) in zip(a.moments, b.moments) {
            #expect(x.path == y.path && x.expAvg.float32Values() == y.expAvg.float32Values() && x.expAvgSq.float32Values() == y.expAvgSq.float32Values())
        }
        let shapes = try Checkpoint(path: whole.output).trainableShapes()
        for path in a.moments.map(\.path) {
            #expect(try Self.tensor(path, in: whole.output) == Self.tensor(path, in: first.output), "\(path)")
            #expect(shapes[path] != nil)
        }
    }

    /// Class-weighted cross-entropy (Formats/prima-training.md §3.8) on fold 1 of 3, whose 7 training cases give
    /// weights 1.75, 0.875 and 0: a step split into micro-batches of one case (`--grad-accum 3`) normalises by the
    /// step's total weight, so it trains what the whole batch does; the weights are recorded; and they change the run.
    @Test(arguments: [TrainingRecord.Stage.stage2b, .stage3])
    func classWeightsAccumulateToTheWeightedMeanOfTheStep(_ stage: TrainingRecord.Stage) throws {
        let directory = TestProcess.temporaryDirectory("prima-stage-tests")
        func run(_ name: String, weighting: ClassWeighting, accumulation: Int) throws -> TrainingRecord {
            var options = Self.options(stage, data: Self.cases, output: "\(directory)/\(name).h5")
            (options.folds, options.fold, options.trainer.epochs) = (3, 1, 1)
            options.trainer.accumulation = accumulation
            options.classWeighting = weighting
            _ = try StageRunner(options: options).run()
            return try #require(try TrainingRecord.read(from: try Checkpoint(path: options.output), loadMoments: true))
        }
        let whole = try run("whole", weighting: .balanced, accumulation: 1)
        let split = try run("split", weighting: .balanced, accumulation: 3)
        let plain = try run("plain", weighting: .none, accumulation: 1)
        #expect(whole.classWeights == [1.75, 0.875, 0, 0.875, 0, 0.875] && split.classWeights == whole.classWeights && plain.classWeights == nil)
        #expect(whole.hyperparameters["class_weights"]?.string == "balanced" && plain.hyperparameters["class_weights"]?.string == "none")
        #expect(whole.stages.last?.object?["class_weights"]?.array?.count == 6)
        for (a, b) in zip(whole.history.loss, split.history.loss) {
            #expect(abs(a - b) <= Float(ParityTests.lossRelative) * abs(a), "loss \(a) in one batch, \(b) accumulated")
        }
        for path in whole.moments.map(\.path) {
            let (a, b) = (try Self.tensor(path, in: "\(directory)/whole.h5"), try Self.tensor(path, in: "\(directory)/split.h5"))
            let scale = Double(a.map(abs).max() ?? 0), maxAbs = zip(a, b).map { Double(abs($0 - $1)) }.max() ?? 0
            #expect(maxAbs <= ParityTests.tensorMaxAbsRelative * scale, "\(path): max_abs \(maxAbs), max|ref| \(scale)")
        }
        #expect(whole.history.loss != plain.history.loss)
    }

    /// The values of the tensor at gradient path `path` of the checkpoint at `file`.
    static func tensor(_ path: String, in file: String) throws -> [Float] {
        let checkpoint = try Checkpoint(path: file)
        let parts = path.split(separator: "/").map(String.init)
        let reader = parts[0] == "prima" ? try checkpoint.group("prima") : try checkpoint.component(ComponentRole(rawValue: parts[0])!)
        if parts[1] == "lora" {
            let adapter = try reader.loraAdapter(parts[2]).reader
            return try adapter.readTensor(try adapter.tensorRecords().first { $0.name == parts[4] }!).float32Values()
        }
        return try reader.readTensor(try reader.tensorRecords().first { $0.name == parts[2] }!).float32Values()
    }
}
