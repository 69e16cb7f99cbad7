import Foundation

/// The learning rate of every optimiser step: transformers' `get_cosine_schedule_with_warmup` (num_cycles 0.5) as
/// torch's LambdaLR applies it, in double (Formats/prima-training.md §2, "Schedule"). Step k (0-based) uses the rate
/// LambdaLR gives after k `scheduler.step()` calls: linear from 0 over the warm-up, the base rate at the end of the
/// warm-up, then half a cosine down to 0 at `totalSteps`.
public struct CosineWarmupSchedule: Sendable, Equatable {
    /// The peak learning rate (the optimiser's `lr`; Docs/prima-model.md gives it per stage).
    public let baseLearningRate: Double
    public let warmupSteps: Int
    /// The number of optimiser steps of the whole run (epochs × steps per epoch).
    public let totalSteps: Int

    public init(baseLearningRate: Double, warmupSteps: Int, totalSteps: Int) {
        precondition(baseLearningRate >= 0 && warmupSteps >= 0 && totalSteps >= 0, "schedule: negative rate or step count")
        (self.baseLearningRate, self.warmupSteps, self.totalSteps) = (baseLearningRate, warmupSteps, totalSteps)
    }

    /// A schedule whose warm-up is `warmupRatio` of `totalSteps` (``warmupSteps(ratio:totalSteps:)``).
    public init(baseLearningRate: Double, warmupRatio: Double, totalSteps: Int) {
        self.init(baseLearningRate: baseLearningRate, warmupSteps: Self.warmupSteps(ratio: warmupRatio, totalSteps: totalSteps),
                  totalSteps: totalSteps)
    }

    /// The warm-up length for a ratio: ⌈ratio · total⌉, so that any positive ratio warms up for at least one step
    /// (transformers' Trainer rounds up too). A product within 1e-9 of an integer is that integer: 10% of 30 steps is
    /// 3 (Trainer, taking the ceiling of 30 × 0.1 = 3.0000000000000004 in binary floating point, gets 4).
    public static func warmupSteps(ratio: Double, totalSteps: Int) -> Int {
        precondition(ratio >= 0 && ratio <= 1 && totalSteps >= 0, "warm-up ratio in [0, 1]")
        let product = Double(totalSteps) * ratio, nearest = product.rounded()
        return Int(abs(product - nearest) <= 1e-9 * max(1, product) ? nearest : product.rounded(.up))
    }

    /// `_get_cosine_schedule_with_warmup_lr_lambda(step)`, term for term.
    public func multiplier(atStep step: Int) -> Double {
        precondition(step >= 0, "schedule: negative step")
        if step < warmupSteps { return Double(step) / Double(max(1, warmupSteps)) }
        let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        return max(0.0, 0.5 * (1.0 + cos(Double.pi * 0.5 * 2.0 * progress)))
    }

    /// The learning rate of optimiser step `step` (0-based): `base_lr * lambda(step)`.
    public func learningRate(atStep step: Int) -> Double { baseLearningRate * multiplier(atStep: step) }
}
