import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaModels
import PrimaTensor
import PrimaTestSupport
import PrimaTrain
import Testing

/// The optimisation loop on a small least-squares problem: the loss falls, gradient accumulation gives the step's
/// mean, and a run interrupted at any step and resumed from its record ends bit for bit where an uninterrupted run
/// ends (Formats/prima-training.md §4).
@Suite struct TrainerTests {
    /// loss_i = ½‖W x_i − y_i‖² for W [3, 5], 11 seeded examples; a step's gradient is the mean over its examples.
    final class LeastSquares: StageObjective {
        let inputs: [[Float]], targets: [[Float]]
        let weight: Tensor
        var exampleCount: Int { inputs.count }

        init(seed: UInt64) {
            inputs = (0..<11).map { GradientCheck.random(5, seed: seed + UInt64($0)) }
            let truth = GradientCheck.random(15, seed: 99)
            targets = inputs.map { x in (0..<3).map { r in (0..<5).reduce(Float(0)) { $0 + truth[r * 5 + $1] * x[$1] } } }
            weight = Tensor(zeros: [3, 5], dtype: .f32)
        }

        func lossWeight(_ examples: [Int], epoch: Int) throws -> Double { Double(examples.count) }

        func accumulate(_ examples: [Int], epoch: Int, normalizer: Double, gradients: GradientStore) throws -> Double {
            let w = weight.float32Values()
            var loss = 0.0
            try #require(gradients["w"] != nil)
            gradients["w"]!.withMutableFloat32 { g in
                for i in examples {
                    for r in 0..<3 {
                        let residual = (0..<5).reduce(Float(0)) { $0 + w[r * 5 + $1] * inputs[i][$1] } - targets[i][r]
                        loss += 0.5 * Double(residual * residual) / Double(normalizer)
                        for c in 0..<5 { g[r * 5 + c] += residual * inputs[i][c] / Float(normalizer) }
                    }
                }
            }
            return loss
        }
    }

    static let settings = TrainerSettings(epochs: 4, batchSize: 3, learningRate: 0.05, weightDecay: 0.01, seed: 7)

    /// A trainer over a fresh problem.
    static func trainer(_ settings: TrainerSettings = settings) throws -> (Trainer, LeastSquares) {
        let problem = LeastSquares(seed: 1)
        let store = GradientStore(trainable: [("w", [3, 5])])
        return (try Trainer(settings: settings, objective: problem, parameters: [("w", problem.weight)], gradients: store), problem)
    }

    /// The trainer's state as a save would record it.
    static func record(_ trainer: Trainer) -> TrainingRecord {
        TrainingRecord(stage: .stage2b, status: .running, step: trainer.step, totalSteps: trainer.totalSteps, epoch: trainer.epoch,
                       cursor: trainer.cursor, seed: trainer.settings.seed, threads: 1, hyperparameters: JSONObject([]), data: JSONObject([]),
                       split: JSONObject([]), optimizerStep: trainer.optimizerStep, moments: trainer.moments(), history: trainer.history)
    }

    /// Every curve's bits (NaN marks an epoch without validation, and NaN ≠ NaN).
    static func bits(_ history: TrainingRecord.History) -> [[UInt64]] {
        [history.lr.map(\.bitPattern)] + [history.loss, history.gradNorm, history.trainLoss, history.valLoss, history.valMacroF1,
                                          history.valAccuracy, history.valBalancedAccuracy].map { $0.map { UInt64($0.bitPattern) } }
    }

    @Test func lossFallsAndTheRunCompletes() throws {
        let (trainer, _) = try Self.trainer()
        var saves = 0, reports: [Trainer.StepReport] = []
        let outcome = try trainer.run(onStep: { reports.append($0) }, onEpoch: { _ in nil }, save: { saves += 1 }, shouldStop: { false })
        #expect(outcome == .complete && trainer.step == 16 && trainer.totalSteps == 16 && trainer.epoch == 4 && saves == 4)
        #expect(reports.map(\.step) == Array(1...16) && reports.filter { $0.cursor == 11 }.count == 4)
        #expect(trainer.history.loss.count == 16 && trainer.history.trainLoss.count == 4 && trainer.history.valLoss.allSatisfy(\.isNaN))
        #expect(trainer.history.trainLoss.last! < trainer.history.trainLoss.first! / 2, "\(trainer.history.trainLoss)")
        // Warm-up: ⌈0.1 · 16⌉ = 2 steps from 0.
        #expect(trainer.history.lr[0] == 0 && trainer.history.lr[2] == 0.05)
    }

    /// Interrupted after step k (1 ≤ k < 16, mid-epoch and at epoch ends) and resumed from the record into a fresh
    /// trainer on a fresh problem holding the saved weight: the same weight and history, bit for bit.
    @Test func resumeIsBitIdentical() throws {
        let (reference, referenceProblem) = try Self.trainer()
        _ = try reference.run(onStep: { _ in }, onEpoch: { _ in nil }, save: {}, shouldStop: { false })
        for k in [1, 4, 5, 8, 15] {
            let (first, firstProblem) = try Self.trainer()
            var saved: (TrainingRecord, [Float])?
            _ = try first.run(onStep: { _ in }, onEpoch: { _ in nil }, save: { saved = (Self.record(first), firstProblem.weight.float32Values()) },
                              shouldStop: { first.step >= k })
            let (record, weight) = try #require(saved)
            #expect(record.step == k)
            let (second, secondProblem) = try Self.trainer()
            secondProblem.weight.withMutableFloat32 { for i in weight.indices { $0[i] = weight[i] } }
            try second.restore(from: record)
            #expect(try second.run(onStep: { _ in }, onEpoch: { _ in nil }, save: {}, shouldStop: { false }) == .complete)
            #expect(secondProblem.weight.float32Values() == referenceProblem.weight.float32Values(), "interrupted after step \(k)")
            #expect(Self.bits(second.history) == Self.bits(reference.history), "interrupted after step \(k)")
        }
    }

    /// Accumulating a step over micro-batches gives the step's mean gradient: the same run within f32 rounding.
    @Test func accumulationMatchesOneBatch() throws {
        var split = Self.settings
        split.accumulation = 3
        let (whole, wholeProblem) = try Self.trainer()
        let (parts, partsProblem) = try Self.trainer(split)
        for trainer in [whole, parts] { _ = try trainer.run(onStep: { _ in }, onEpoch: { _ in nil }, save: {}, shouldStop: { false }) }
        let error = GradientCheck.relativeError(partsProblem.weight.float32Values(), wholeProblem.weight.float32Values())
        #expect(error < 1e-5, "\(error)")
    }

    @Test func mismatchedResumeIsRefused() throws {
        let (trainer, _) = try Self.trainer()
        _ = try trainer.run(onStep: { _ in }, onEpoch: { _ in nil }, save: {}, shouldStop: { trainer.step >= 2 })
        var other = Self.settings
        other.epochs = 5
        let (longer, _) = try Self.trainer(other)
        #expect(throws: OptimizerError.self) { try longer.restore(from: Self.record(trainer)) }
        other = Self.settings
        other.seed = 8
        let (reseeded, _) = try Self.trainer(other)
        #expect(throws: OptimizerError.self) { try reseeded.restore(from: Self.record(trainer)) }
    }
}
