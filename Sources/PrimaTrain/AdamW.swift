import Foundation
import PrimaModels
import PrimaTensor

/// AdamW's hyper-parameters besides the learning rate (which the schedule gives each step) and the weight decay
/// (a property of each ``TrainableParameter``). Defaults: Docs/prima-model.md, "Training stages".
public struct AdamWConfiguration: Sendable, Equatable {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) {
        precondition(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps >= 0, "AdamW: betas in [0, 1), eps ≥ 0")
        (self.beta1, self.beta2, self.eps) = (beta1, beta2, eps)
    }
}

/// Which trainable tensors weight decay applies to (Formats/prima-training.md §2, "Parameter groups").
public enum WeightDecayRule: String, Sendable, CaseIterable {
    /// Tensors of rank ≥ 2 (weights, LoRA factors, embedding rows, projectors); biases and normalisation weights (rank
    /// 1) are not decayed. For PRIMA's trainable tensors this is transformers' Trainer rule (no decay on `bias` and
    /// LayerNorm/RMSNorm weights). The default.
    case matrices
    /// Every trainable tensor: torch.optim.AdamW given all parameters in one group.
    case all

    /// The weight decay of a tensor of `shape` when the stage's decay is `base`.
    public func weightDecay(_ base: Double, shape: [Int]) -> Double {
        switch self {
        case .matrices: shape.count >= 2 ? base : 0
        case .all: base
        }
    }
}

/// One trainable tensor handed to an optimiser step: its value (f32, updated in place), its gradient (f32, the same
/// shape; clipping scales it in place) and its weight decay.
public struct TrainableParameter: Sendable {
    /// The checkpoint path (``GradientStore``'s key), which also keys the optimiser state.
    public let path: String
    public let value: Tensor
    public let gradient: Tensor
    public let weightDecay: Double

    public init(path: String, value: Tensor, gradient: Tensor, weightDecay: Double) {
        precondition(value.dtype == .f32 && gradient.dtype == .f32, "\(path): AdamW updates f32 tensors")
        precondition(value.shape == gradient.shape, "\(path): value \(value.shape) but gradient \(gradient.shape)")
        precondition(weightDecay >= 0, "\(path): negative weight decay")
        (self.path, self.value, self.gradient, self.weightDecay) = (path, value, gradient, weightDecay)
    }

    /// The entries of a step: every (path, value) with its gradient from `gradients`, decayed by `rule` with the
    /// stage's `weightDecay`. Throws when a value has no gradient (it is frozen) or a different shape.
    public static func entries(_ values: [(path: String, value: Tensor)], gradients: GradientStore,
                               weightDecay: Double, rule: WeightDecayRule = .matrices) throws -> [TrainableParameter] {
        try values.map { path, value in
            guard let gradient = gradients[path] else { throw OptimizerError("\(path): trainable tensor without a gradient buffer") }
            guard gradient.shape == value.shape, value.dtype == .f32 else {
                throw OptimizerError("\(path): value \(value.shape) \(value.dtype) but gradient \(gradient.shape) (AdamW needs f32 of one shape)")
            }
            return TrainableParameter(path: path, value: value, gradient: gradient,
                                      weightDecay: rule.weightDecay(weightDecay, shape: value.shape))
        }
    }
}

/// An optimiser state that does not fit the run (restoring a checkpoint's training group).
public struct OptimizerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// AdamW exactly as torch.optim.AdamW (2.15; default single-tensor path, amsgrad and maximize off) on CPU computes
/// it in float32, the bias corrections and step size in double (Formats/prima-training.md §2). One instance holds
/// the moments of every trainable tensor, keyed by path; ``state()`` and ``restore(_:parameters:)`` carry them
/// through a checkpoint so that a resumed run continues bit for bit. One step at a time: calls must not overlap.
public final class AdamW: @unchecked Sendable {
    /// The AdamW state of one tensor: torch's `exp_avg`, `exp_avg_sq` (f32, the tensor's shape) and `step` (the
    /// number of updates this tensor has had).
    public struct Moments: Sendable {
        public let expAvg: Tensor
        public let expAvgSq: Tensor
        public let step: Int

        public init(expAvg: Tensor, expAvgSq: Tensor, step: Int) {
            (self.expAvg, self.expAvgSq, self.step) = (expAvg, expAvgSq, step)
        }
    }

    /// What one ``step(_:lr:maxGradientNorm:)`` did.
    public struct StepReport: Sendable, Equatable {
        /// The global L2 norm of the gradients before clipping (``GradientClipping/globalNorm(_:)``).
        public let gradientNorm: Float
        /// The factor the gradients were multiplied by (1 when not clipped).
        public let clipCoefficient: Float
        /// True when the norm was NaN or ±inf: nothing was changed (§2, "Non-finite gradients").
        public let skipped: Bool

        public init(gradientNorm: Float, clipCoefficient: Float, skipped: Bool) {
            (self.gradientNorm, self.clipCoefficient, self.skipped) = (gradientNorm, clipCoefficient, skipped)
        }
    }

    public let configuration: AdamWConfiguration
    /// Moments by path; tensors are mutated in place by steps.
    private var moments: [String: Moments] = [:]

    public init(configuration: AdamWConfiguration = AdamWConfiguration()) { self.configuration = configuration }

    /// One optimiser step as a transformers Trainer runs it: the global gradient norm, clipping to `maxGradientNorm`
    /// (nil: no clipping, the norm is still measured), then AdamW with learning rate `lr` on every parameter. When the
    /// norm is not finite no gradient, value or moment changes and the report says `skipped`.
    @discardableResult
    public func step(_ parameters: [TrainableParameter], lr: Double, maxGradientNorm: Double?) -> StepReport {
        let gradients = parameters.map(\.gradient)
        let norm = GradientClipping.globalNorm(gradients)
        guard norm.isFinite else { return StepReport(gradientNorm: norm, clipCoefficient: 1, skipped: true) }
        var coefficient: Float = 1
        if let maxGradientNorm {
            coefficient = GradientClipping.coefficient(norm: norm, maxNorm: maxGradientNorm)
            GradientClipping.scale(gradients, by: coefficient)
        }
        update(parameters, lr: lr)
        return StepReport(gradientNorm: norm, clipCoefficient: coefficient, skipped: false)
    }

    /// The AdamW update alone (gradients as they are) with learning rate `lr`: torch's `optimizer.step()`.
    public func update(_ parameters: [TrainableParameter], lr: Double) {
        precondition(Set(parameters.map(\.path)).count == parameters.count, "AdamW: a path appears twice in one step")
        for parameter in parameters {
            let previous = moments[parameter.path] ?? Moments(expAvg: Tensor(zeros: parameter.value.shape, dtype: .f32),
                                                              expAvgSq: Tensor(zeros: parameter.value.shape, dtype: .f32), step: 0)
            precondition(previous.expAvg.shape == parameter.value.shape, "\(parameter.path): shape changed between steps")
            let step = previous.step + 1
            let scalars = Scalars(configuration, lr: lr, weightDecay: parameter.weightDecay, step: step)
            parameter.value.withMutableFloat32 { p in
                parameter.gradient.withFloat32 { g in
                    previous.expAvg.withMutableFloat32 { m in
                        previous.expAvgSq.withMutableFloat32 { v in
                            Self.update(p.baseAddress!, g.baseAddress!, m.baseAddress!, v.baseAddress!, count: p.count, scalars)
                        }
                    }
                }
            }
            moments[parameter.path] = Moments(expAvg: previous.expAvg, expAvgSq: previous.expAvgSq, step: step)
        }
    }

    /// A copy of the state of every tensor that has been stepped, by path: what a checkpoint must store to resume.
    public func state() -> [String: Moments] {
        moments.mapValues { Moments(expAvg: Self.copy($0.expAvg), expAvgSq: Self.copy($0.expAvgSq), step: $0.step) }
    }

    /// Replaces the state with a copy of `state` (read from a checkpoint), checked against the run's trainable
    /// tensors: the same paths, f32 moments of each tensor's shape, a step ≥ 1. Throws naming the first mismatch.
    public func restore(_ state: [String: Moments], parameters: [(path: String, shape: [Int])]) throws {
        let expected = Dictionary(parameters.map { ($0.path, $0.shape) }, uniquingKeysWith: { first, _ in first })
        for path in state.keys.sorted() where expected[path] == nil {
            throw OptimizerError("optimizer state for \(path), which is not a trainable tensor of this run")
        }
        var restored: [String: Moments] = [:]
        for (path, shape) in parameters {
            guard let entry = state[path] else { throw OptimizerError("\(path): no optimizer state") }
            for (name, tensor) in [("exp_avg", entry.expAvg), ("exp_avg_sq", entry.expAvgSq)]
            where tensor.shape != shape || tensor.dtype != .f32 {
                throw OptimizerError("\(path): \(name) is \(tensor.dtype) \(tensor.shape), expected f32 \(shape)")
            }
            guard entry.step >= 1 else { throw OptimizerError("\(path): step \(entry.step), expected ≥ 1") }
            restored[path] = Moments(expAvg: Self.copy(entry.expAvg), expAvgSq: Self.copy(entry.expAvgSq), step: entry.step)
        }
        moments = restored
    }

    // MARK: - Arithmetic

    /// The float32 scalars of one tensor's update, rounded from doubles as PyTorch rounds a Python float scalar
    /// to the tensor's dtype (`Scalar.to<float>()` in the CPU kernels).
    struct Scalars {
        /// (1 − lr·wd), nil when wd = 0 (torch skips the multiplication).
        let decay: Float?
        /// lerp_'s weight 1 − β₁.
        let lerpWeight: Float
        let beta2: Float
        /// addcmul_'s value 1 − β₂.
        let oneMinusBeta2: Float
        /// √(1 − β₂ᵗ).
        let biasCorrection2Sqrt: Float
        let eps: Float
        /// addcdiv_'s value −lr / (1 − β₁ᵗ).
        let negativeStepSize: Float

        init(_ c: AdamWConfiguration, lr: Double, weightDecay: Double, step: Int) {
            decay = weightDecay != 0 ? Float(1 - lr * weightDecay) : nil
            lerpWeight = Float(1 - c.beta1)
            beta2 = Float(c.beta2)
            oneMinusBeta2 = Float(1 - c.beta2)
            // Python's `beta ** step` with step a float, and `bias_correction2 ** 0.5`: C pow, not sqrt.
            let biasCorrection1 = 1 - pow(c.beta1, Double(step))
            let biasCorrection2 = 1 - pow(c.beta2, Double(step))
            biasCorrection2Sqrt = Float(pow(biasCorrection2, 0.5))
            eps = Float(c.eps)
            negativeStepSize = Float(-(lr / biasCorrection1))
        }
    }

    /// torch.lerp(start, end, weight) on CPU (ATen lerp_vec): a fused multiply-add from the nearer end.
    @inline(__always)
    static func lerp(_ start: Float, _ end: Float, weight: Float) -> Float {
        abs(weight) < 0.5 ? start.addingProduct(weight, end - start) : end.addingProduct(weight - 1, end - start)
    }

    /// The fused update of `count` elements: p [n], g [n], m [n], v [n], each element's arithmetic that of
    /// ``referenceUpdate(value:gradient:expAvg:expAvgSq:_:)`` (elementwise, so any split over threads gives the same bits).
    static func update(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                       _ v: UnsafeMutablePointer<Float>, count: Int, _ s: Scalars) {
        let decay = s.decay ?? 1, decays = s.decay != nil
        for i in 0..<count {
            let gi = g[i]
            let mi = lerp(m[i], gi, weight: s.lerpWeight)
            let vi = (v[i] * s.beta2).addingProduct(s.oneMinusBeta2 * gi, gi)
            let denominator = vi.squareRoot() / s.biasCorrection2Sqrt + s.eps
            let pi = decays ? p[i] * decay : p[i]
            p[i] = pi + (s.negativeStepSize * mi) / denominator
            m[i] = mi
            v[i] = vi
        }
    }

    /// The plain reference of one tensor's update: torch's `_single_tensor_adam` line by line, each line a pass over
    /// the whole tensor in float32 (Formats/prima-training.md §2).
    static func referenceUpdate(value p: inout [Float], gradient g: [Float], expAvg m: inout [Float],
                                expAvgSq v: inout [Float], _ s: Scalars) {
        let n = p.count
        // param.mul_(1 - lr * weight_decay)
        if let decay = s.decay { for i in 0..<n { p[i] = p[i] * decay } }
        // exp_avg.lerp_(grad, 1 - beta1)
        for i in 0..<n { m[i] = lerp(m[i], g[i], weight: s.lerpWeight) }
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): self + (value·t1)·t2, the last product fused
        for i in 0..<n { v[i] = v[i] * s.beta2 }
        for i in 0..<n { v[i] = v[i].addingProduct(s.oneMinusBeta2 * g[i], g[i]) }
        // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        var denominator = v.map { $0.squareRoot() }
        for i in 0..<n { denominator[i] = denominator[i] / s.biasCorrection2Sqrt }
        for i in 0..<n { denominator[i] = denominator[i] + s.eps }
        // param.addcdiv_(exp_avg, denom, value=-step_size): self + (value·t1) / t2
        for i in 0..<n { p[i] = p[i] + (s.negativeStepSize * m[i]) / denominator[i] }
    }

    /// The reference step over plain arrays (for tests): updates `value`, `expAvg`, `expAvgSq` of a tensor whose
    /// update number this is `step` (1-based).
    public static func referenceStep(value: inout [Float], gradient: [Float], expAvg: inout [Float], expAvgSq: inout [Float],
                                     step: Int, lr: Double, weightDecay: Double, configuration: AdamWConfiguration) {
        precondition(value.count == gradient.count && value.count == expAvg.count && value.count == expAvgSq.count && step >= 1)
        referenceUpdate(value: &value, gradient: gradient, expAvg: &expAvg, expAvgSq: &expAvgSq,
                        Scalars(configuration, lr: lr, weightDecay: weightDecay, step: step))
    }

    private static func copy(_ tensor: Tensor) -> Tensor {
        let result = Tensor(zeros: tensor.shape, dtype: .f32)
        tensor.withFloat32 { source in result.withMutableFloat32 { _ = $0.update(fromContentsOf: source) } }
        return result
    }
}
