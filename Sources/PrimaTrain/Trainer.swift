import Foundation
import PrimaCheckpoint
import PrimaModels
import PrimaTensor

/// The optimisation loop's settings for one stage (Docs/prima-model.md gives each stage's defaults).
public struct TrainerSettings: Sendable, Equatable {
    public var epochs: Int
    /// Examples per optimiser step.
    public var batchSize: Int
    /// Micro-batches per optimiser step (gradient accumulation): the step's examples are split into this many
    /// contiguous chunks, each run forward and backward on its own.
    public var accumulation: Int
    public var learningRate: Double
    public var weightDecay: Double
    public var decayRule: WeightDecayRule
    /// Warm-up as a share of the total steps (§2.4: ⌈ratio · total⌉ steps).
    public var warmupRatio: Double
    /// Global-norm clipping (nil: none).
    public var maxGradientNorm: Double?
    public var adam: AdamWConfiguration
    public var seed: UInt64
    /// Save every this many optimiser steps (nil: only at the end of each epoch, at the end and on interruption).
    public var saveEvery: Int?

    public init(epochs: Int, batchSize: Int, accumulation: Int = 1, learningRate: Double, weightDecay: Double,
                decayRule: WeightDecayRule = .matrices, warmupRatio: Double = 0.1, maxGradientNorm: Double? = 1.0,
                adam: AdamWConfiguration = AdamWConfiguration(), seed: UInt64 = 0, saveEvery: Int? = nil) {
        (self.epochs, self.batchSize, self.accumulation, self.learningRate, self.weightDecay) = (epochs, batchSize, accumulation, learningRate, weightDecay)
        (self.decayRule, self.warmupRatio, self.maxGradientNorm, self.adam, self.seed, self.saveEvery) = (decayRule, warmupRatio, maxGradientNorm, adam, seed, saveEvery)
    }

    /// Optimiser steps per epoch over `examples` examples: ⌈examples / batchSize⌉ (the last step of an epoch may
    /// be smaller).
    public func stepsPerEpoch(examples: Int) -> Int { (examples + batchSize - 1) / batchSize }
}

/// What a stage computes on its examples: the loss items a step normalises by and, per micro-batch, forward and
/// backward with the gradients added to the store.
public protocol StageObjective: AnyObject {
    /// The number of training examples; an epoch visits each once in a seeded order (§1, purpose shuffle).
    var exampleCount: Int { get }
    /// The total weight of the loss items of `examples` (Formats/prima-training.md §2.6: target tokens for a masked
    /// LM, cases otherwise, each weighing 1, or its class weight when the cross-entropy is weighted): the divisor
    /// that makes the step's gradient the (weighted) mean over the whole step.
    func lossWeight(_ examples: [Int], epoch: Int) throws -> Double
    /// Runs `examples` (one micro-batch) forward and backward with the loss divided by `normalizer`, adds the
    /// gradients into `gradients`, and returns that micro-batch's share of the step's loss.
    func accumulate(_ examples: [Int], epoch: Int, normalizer: Double, gradients: GradientStore) throws -> Double
}

/// The optimisation loop of one stage: seeded epoch orders, gradient accumulation, AdamW with the cosine warm-up
/// schedule and clipping, the loss history, saves, and an exact resume from a ``TrainingRecord``
/// (Formats/prima-training.md §2, §4).
public final class Trainer {
    /// One finished optimiser step.
    public struct StepReport: Sendable {
        /// Steps completed (this one included) and the stage's total.
        public let step, totalSteps: Int
        public let epoch: Int
        /// Examples consumed in this epoch after the step, and the epoch's size.
        public let cursor, examples: Int
        public let loss: Float
        public let learningRate: Double
        public let gradientNorm: Float
        /// The gradient norm was not finite: nothing was updated (§2.5).
        public let skipped: Bool
    }

    /// The validation result of a finished epoch.
    public struct EpochMetrics: Sendable {
        public let loss, macroF1, accuracy, balancedAccuracy: Float

        public init(loss: Float, macroF1: Float, accuracy: Float, balancedAccuracy: Float) {
            (self.loss, self.macroF1, self.accuracy, self.balancedAccuracy) = (loss, macroF1, accuracy, balancedAccuracy)
        }
    }

    /// Why ``run(onStep:onEpoch:save:shouldStop:)`` returned.
    public enum Outcome: Sendable, Equatable {
        case complete
        case interrupted
    }

    public let settings: TrainerSettings
    public let objective: any StageObjective
    /// The trainable tensors in path order (the global norm sums in this order), live in the model.
    public let parameters: [(path: String, value: Tensor)]
    public let gradients: GradientStore
    public let schedule: CosineWarmupSchedule
    let optimizer: AdamW

    /// Steps completed, the epoch in progress and the examples of it consumed.
    public private(set) var step = 0, epoch = 0, cursor = 0
    /// AdamW updates made (skipped steps do not count).
    public private(set) var optimizerStep = 0
    public private(set) var history = TrainingRecord.History()

    public var stepsPerEpoch: Int { settings.stepsPerEpoch(examples: objective.exampleCount) }
    public var totalSteps: Int { settings.epochs * stepsPerEpoch }

    /// A trainer for `objective` over `parameters` (gradient path → the model's live tensor) with `gradients` holding
    /// a buffer for each.
    public init(settings: TrainerSettings, objective: any StageObjective, parameters: [(path: String, value: Tensor)],
                gradients: GradientStore) throws {
        guard settings.epochs >= 1, settings.batchSize >= 1, settings.accumulation >= 1, settings.accumulation <= settings.batchSize else {
            throw OptimizerError("epochs and batch size must be at least 1, and accumulation between 1 and the batch size")
        }
        guard objective.exampleCount >= 1 else { throw OptimizerError("no training examples") }
        self.settings = settings
        self.objective = objective
        self.parameters = parameters.sorted { $0.path < $1.path }
        self.gradients = gradients
        optimizer = AdamW(configuration: settings.adam)
        let total = settings.epochs * settings.stepsPerEpoch(examples: objective.exampleCount)
        schedule = CosineWarmupSchedule(baseLearningRate: settings.learningRate, warmupRatio: settings.warmupRatio, totalSteps: total)
    }

    /// Continues from a save of the same stage and settings: position, history and AdamW's moments.
    public func restore(from record: TrainingRecord) throws {
        guard record.totalSteps == totalSteps else {
            throw OptimizerError("the saved run has \(record.totalSteps) steps, these settings give \(totalSteps): resume with the run's settings")
        }
        guard record.seed == settings.seed else { throw OptimizerError("the saved run's seed is \(record.seed), not \(settings.seed)") }
        guard record.cursor < objective.exampleCount || record.cursor == 0 else {
            throw OptimizerError("the saved cursor \(record.cursor) is past the \(objective.exampleCount) examples")
        }
        if record.optimizerStep > 0 {
            let state = Dictionary(record.moments.map { ($0.path, AdamW.Moments(expAvg: $0.expAvg, expAvgSq: $0.expAvgSq, step: record.optimizerStep)) },
                                   uniquingKeysWith: { first, _ in first })
            try optimizer.restore(state, parameters: parameters.map { ($0.path, $0.value.shape) })
        }
        (step, epoch, cursor, optimizerStep, history) = (record.step, record.epoch, record.cursor, record.optimizerStep, record.history)
    }

    /// AdamW's moments for a save (copies), in path order.
    public func moments() -> [TrainingRecord.Moments] {
        optimizer.state().sorted { $0.key < $1.key }.map { TrainingRecord.Moments(path: $0.key, expAvg: $0.value.expAvg, expAvgSq: $0.value.expAvgSq) }
    }

    /// The order of the examples in an epoch: by default the seeded permutation of §3.8 (`Sampling.epochOrder`);
    /// a balanced sampler replaces it (`Sampling.balancedOrder`). It must depend on the epoch alone.
    public lazy var epochOrder: (Int) -> [Int] = { [settings, objective] in
        Sampling.epochOrder(count: objective.exampleCount, seed: settings.seed, epoch: $0)
    }

    /// Runs the remaining steps. After every step `onStep`; after every epoch `onEpoch` (validation; nil: none) then
    /// `save`; every `saveEvery` steps `save`. `shouldStop` is asked after each step: when it answers true the state
    /// is saved and the run returns `.interrupted` (a later ``restore(from:)`` continues exactly).
    public func run(onStep: (StepReport) throws -> Void, onEpoch: (Int) throws -> EpochMetrics?, save: () throws -> Void,
                    shouldStop: () -> Bool) throws -> Outcome {
        // Every step allocates the same activations: the buffers one step frees serve the next.
        try StorageReuse.acrossSteps { try runSteps(onStep: onStep, onEpoch: onEpoch, save: save, shouldStop: shouldStop) }
    }

    private func runSteps(onStep: (StepReport) throws -> Void, onEpoch: (Int) throws -> EpochMetrics?, save: () throws -> Void,
                          shouldStop: () -> Bool) throws -> Outcome {
        let n = objective.exampleCount
        while epoch < settings.epochs {
            let order = epochOrder(epoch)
            while cursor < n {
                let examples = Array(order[cursor..<min(cursor + settings.batchSize, order.count)])
                let report = try takeStep(examples)
                try onStep(report)
                if cursor == n { break }
                if let every = settings.saveEvery, step % every == 0 { try save() }
                if shouldStop() {
                    try save()
                    return .interrupted
                }
            }
            // The epoch is complete: its training loss, the validation, and a save.
            let losses = history.loss.suffix(from: epoch * stepsPerEpoch)
            history.trainLoss.append(Float(losses.reduce(0.0) { $0 + Double($1) } / Double(max(losses.count, 1))))
            let metrics = try onEpoch(epoch)
            history.valLoss.append(metrics?.loss ?? .nan)
            history.valMacroF1.append(metrics?.macroF1 ?? .nan)
            history.valAccuracy.append(metrics?.accuracy ?? .nan)
            history.valBalancedAccuracy.append(metrics?.balancedAccuracy ?? .nan)
            epoch += 1
            cursor = 0
            try save()
            if epoch < settings.epochs, shouldStop() { return .interrupted }
        }
        return .complete
    }

    /// One optimiser step over `examples`: zeroed gradients, the micro-batches, AdamW at this step's rate.
    private func takeStep(_ examples: [Int]) throws -> StepReport {
        gradients.zero()
        let normalizer = try objective.lossWeight(examples, epoch: epoch)
        guard normalizer > 0 else { throw OptimizerError("step \(step + 1): its examples have no loss items (or no weight)") }
        let chunk = (examples.count + settings.accumulation - 1) / settings.accumulation
        var loss = 0.0
        var start = 0
        while start < examples.count {
            let micro = Array(examples[start..<min(start + chunk, examples.count)])
            loss += try objective.accumulate(micro, epoch: epoch, normalizer: normalizer, gradients: gradients)
            start += chunk
        }
        let lr = schedule.learningRate(atStep: step)
        let entries = try TrainableParameter.entries(parameters, gradients: gradients, weightDecay: settings.weightDecay, rule: settings.decayRule)
        let report = optimizer.step(entries, lr: lr, maxGradientNorm: settings.maxGradientNorm)
        if !report.skipped { optimizerStep += 1 }
        step += 1
        cursor += examples.count
        history.loss.append(Float(loss))
        history.lr.append(lr)
        history.gradNorm.append(report.gradientNorm)
        return StepReport(step: step, totalSteps: totalSteps, epoch: epoch, cursor: cursor, examples: objective.exampleCount,
                          loss: Float(loss), learningRate: lr, gradientNorm: report.gradientNorm, skipped: report.skipped)
    }
}
