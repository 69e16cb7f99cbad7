import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaModels
import PrimaTensor

/// `prima-verify Q.h5 --against F.h5 [--trace REF.h5]`: runs a component of two checkpoints (typically int8
/// and its fp32 source) on the same inputs and compares them layer by layer, plus model-level gates.
public enum AgainstVerifier {
    /// Model-level gates (Formats/prima-verify.md §4).
    public struct Gates: Sendable, Equatable {
        /// Minimum cosine of the final hidden state (encoders and decoders).
        public var finalCosine: Double
        /// Maximum mean KL(F ‖ Q) of the next-token distributions over real positions (decoders).
        public var meanKL: Double
        /// Minimum fraction of real positions whose top-1 next token agrees (decoders).
        public var top1Agreement: Double

        public static let int8 = Gates(finalCosine: 0.999, meanKL: 0.01, top1Agreement: 0.9)

        public init(finalCosine: Double, meanKL: Double, top1Agreement: Double) {
            self.finalCosine = finalCosine
            self.meanKL = meanKL
            self.top1Agreement = top1Agreement
        }
    }

    /// The outcome of a comparison of two checkpoints.
    public struct Report: Sendable {
        public let component: ComponentRole
        /// Per activation, `ours` = the checked checkpoint, reference = the `--against` one.
        public let activations: [ActivationComparison]
        public let finalCosine: Double
        /// Decoder only.
        public let meanKL: Double?
        public let top1Agreement: Double?
        /// Which gates failed, as lines; empty when all hold.
        public let gateFailures: [String]
        public let oursForwardSeconds: Double
        public let referenceForwardSeconds: Double
        /// Layer-level tolerance failures are reported but only the gates decide the verdict: int8 is expected to
        /// differ from fp32 by more than fp32 kernels differ from each other.
        public var pass: Bool { gateFailures.isEmpty }
    }

    /// Compares `component` of `checkpoint` against the same component of `reference`, on the inputs of `trace`
    /// when one is given (otherwise on seeded generated ones). The trace must be a trace of that component that
    /// fits both checkpoints, and its activations (if it has any; a trace of inputs only is enough here) must be
    /// the ones the checked checkpoint's runtime produces, as `TraceVerifier` requires (``TraceContract``), so a
    /// malformed trace is refused, naming it, in both modes.
    public static func run(checkpoint path: String, against referencePath: String, component role: ComponentRole?,
                           trace: Trace?, tolerances: Tolerances, gates: Gates, repeats: Int) throws -> Report {
        // The trace's role read once, outside the condition: Swift 6.3's release optimiser crashes (an ownership
        // verifier error) on `trace.role` inside this `if let` condition.
        let traceRole: ComponentRole? = trace.flatMap { $0.role }
        if let trace, traceRole == nil || (role != nil && role != traceRole) {
            throw ToolError.input("\(TraceContract.file(trace)): a trace of component \(trace.componentName) does not hold the inputs of "
                                  + (role.map { "component \($0.rawValue)" } ?? "one component") + " (--against compares one component on its trace's inputs)")
        }
        let (ours, oursRole) = try load(path, role: role ?? traceRole)
        let (reference, _) = try load(referencePath, role: oursRole)
        let inputs: ModelInputs
        if let trace, let traced = trace.inputs {
            try TraceContract.checkInputs(of: trace, traced, model: ours.model, owner: "the \(oursRole.rawValue) of \(path)")
            try TraceContract.checkInputs(of: trace, traced, model: reference.model, owner: "the \(oursRole.rawValue) of \(referencePath)")
            inputs = traced
        } else {
            inputs = try generatedInputs(for: ours.model, role: oursRole)
        }
        let (oursActivations, oursSeconds) = try forward(ours.model, inputs, repeats: repeats, origin: path)
        if let trace { _ = try TraceContract.pair(trace, with: oursActivations, owner: "the \(oursRole.rawValue) of \(path)") }
        let (referenceActivations, referenceSeconds) = try forward(reference.model, inputs, repeats: repeats, origin: referencePath)
        let mask: [[Int]]? = { if case .tokens(_, let mask) = inputs { return mask } else { return nil } }()

        var comparisons: [ActivationComparison] = []
        for (name, tensor) in referenceActivations {
            guard let mine = oursActivations.first(where: { $0.name == name })?.tensor else {
                throw ToolError.input("\(path): the runtime did not produce \(name) as \(referencePath) did")
            }
            guard mine.shape == tensor.shape else {
                throw ToolError.input("\(path): \(name) is \(ShapeMath.describe(mine.shape)) but \(ShapeMath.describe(tensor.shape)) in \(referencePath): "
                                      + "--against compares two checkpoints of one model (a quantised or merged copy and its source), not models of different shapes")
            }
            let tokenLevel = tensor.shape.count == 2 && tensor.shape[0] != inputs.batch
            comparisons.append(Comparison.compare(name: name, ours: mine, reference: tensor, mask: tokenLevel ? mask : nil,
                                                  tolerances: tolerances))
        }
        var failures: [String] = []
        let final = comparisons.first { $0.name == "final_norm" }
        let finalCosine = final?.cosine ?? 0
        if finalCosine < gates.finalCosine {
            failures.append("final_norm cosine \(finalCosine) < \(gates.finalCosine)")
        }
        var meanKL: Double?, top1: Double?
        if let q = oursActivations.first(where: { $0.name == "logits" })?.tensor,
           let f = referenceActivations.first(where: { $0.name == "logits" })?.tensor {
            let rows = mask.map { $0.flatMap { $0.map { $0 != 0 } } } ?? Array(repeating: true, count: f.shape[0])
            (meanKL, top1) = distributionAgreement(reference: f, ours: q, rows: rows)
            if let kl = meanKL, kl > gates.meanKL { failures.append("mean KL \(kl) > \(gates.meanKL)") }
            if let agreement = top1, agreement < gates.top1Agreement {
                failures.append("top-1 agreement \(agreement) < \(gates.top1Agreement)")
            }
        }
        return Report(component: oursRole, activations: comparisons, finalCosine: finalCosine, meanKL: meanKL,
                      top1Agreement: top1, gateFailures: failures, oursForwardSeconds: oursSeconds,
                      referenceForwardSeconds: referenceSeconds)
    }

    private struct Loaded {
        let model: any ComponentModel
    }

    /// Loads the component of `role` (or the checkpoint's only component when nil).
    private static func load(_ path: String, role: ComponentRole?) throws -> (Loaded, ComponentRole) {
        do {
            let checkpoint = try Checkpoint(path: path)
            guard let chosen = role ?? (checkpoint.roles.count == 1 ? checkpoint.roles[0] : nil) else {
                throw ToolError.input("\(path): holds several components; choose one with --component")
            }
            return (Loaded(model: try loadComponentModel(try checkpoint.component(chosen))), chosen)
        } catch let error as ToolError {
            throw error
        } catch let error as RuntimeError {
            throw ToolError.input(TraceContract.located(error.description, in: path))
        } catch {
            throw ToolError.input("\(error)")
        }
    }

    /// Runs `repeats` forward passes; returns the first run's activations and the median time.
    private static func forward(_ model: any ComponentModel, _ inputs: ModelInputs, repeats: Int, origin: String)
        throws -> ([(name: String, tensor: Tensor)], Double) {
        var produced: [(name: String, tensor: Tensor)] = []
        var times: [Double] = []
        for run in 0..<max(1, repeats) {
            let start = Date()
            do {
                _ = try model.forward(inputs) { name, tensor in if run == 0 { produced.append((name, tensor)) } }
            } catch let error as RuntimeError {
                throw ToolError.input(TraceContract.located(error.description, in: origin))
            }
            times.append(Date().timeIntervalSince(start))
        }
        return (produced, times.sorted()[times.count / 2])
    }

    /// Mean KL(F ‖ Q) of the softmax distributions and the top-1 agreement over the selected rows of two
    /// logits tensors [N, V] (KL in nats, computed in double).
    static func distributionAgreement(reference: Tensor, ours: Tensor, rows: [Bool]) -> (Double, Double) {
        let v = reference.shape[1]
        let f = reference.float32Values(), q = ours.float32Values()
        var total = 0.0, agree = 0, counted = 0
        for row in 0..<reference.shape[0] where rows[row] {
            let fRow = f[(row * v)..<((row + 1) * v)], qRow = q[(row * v)..<((row + 1) * v)]
            let fLog = logSoftmax(Array(fRow)), qLog = logSoftmax(Array(qRow))
            var kl = 0.0
            for i in 0..<v { kl += exp(fLog[i]) * (fLog[i] - qLog[i]) }
            total += max(kl, 0)
            if argmax(Array(fRow)) == argmax(Array(qRow)) { agree += 1 }
            counted += 1
        }
        guard counted > 0 else { return (0, 1) }
        return (total / Double(counted), Double(agree) / Double(counted))
    }

    private static func logSoftmax(_ x: [Float]) -> [Double] {
        let maximum = Double(x.max() ?? 0)
        let logSum = log(x.reduce(0.0) { $0 + exp(Double($1) - maximum) }) + maximum
        return x.map { Double($0) - logSum }
    }

    private static func argmax(_ x: [Float]) -> Int { x.indices.max { x[$0] < x[$1] } ?? 0 }

    /// Seeded inputs when no trace is given: two right-padded token rows of 24 and 16 tokens, or two images at
    /// the encoder's configured size (standard-normal values, as a normalised image has).
    static func generatedInputs(for model: any ComponentModel, role: ComponentRole) throws -> ModelInputs {
        var state: UInt64 = 0x5EED
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 17
        }
        if role == .imageEncoder {
            guard let size = (model as? DINOv3ViTModel).map({ $0.config.imageSize }) else {
                throw ToolError.input("cannot generate images for this encoder; give --trace")
            }
            let count = 2 * 3 * size * size
            // Box-Muller over the seeded generator: standard-normal pixels.
            let values = (0..<count).map { _ -> Float in
                let u1 = max(Double(next() % 1_000_000) / 1_000_000, 1e-9), u2 = Double(next() % 1_000_000) / 1_000_000
                return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
            }
            return .pixels(Tensor(shape: [2, 3, size, size], float32: values))
        }
        let vocabulary = vocabularySize(model)
        let ids = (0..<2).map { _ in (0..<24).map { _ in Int(next() % UInt64(max(vocabulary, 1))) } }
        let mask = [Array(repeating: 1, count: 24), Array(repeating: 1, count: 16) + Array(repeating: 0, count: 8)]
        return .tokens(ids: ids, mask: mask)
    }

    private static func vocabularySize(_ model: any ComponentModel) -> Int {
        switch model {
        case let model as Qwen3Model: model.config.vocabSize
        case let model as BERTModel: model.config.vocabSize
        case let model as ModernBERTModel: model.config.vocabSize
        default: 1
        }
    }
}
