import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaModels
import PrimaTensor

extension Tolerances {
    /// Gradients against PyTorch's fp32 autograd (Formats/prima-trace.md §11.8): each tensor within
    /// 1e-4 · max|ref| and at cosine ≥ 0.99999. PyTorch's own fp32 gradients of the fixtures sit within
    /// 3.5e-6 · max|ref| of float64, so a looser match is a bug, not rounding.
    public static let gradients = Tolerances(absoluteScale: .infinity, relative: 1e-4, cosine: 0.99999, nmse: .infinity)
    /// The loss: relative error ≤ 1e-5.
    public static let lossRelative = 1e-5
    /// A loss term whose reference is exactly 0 (an alignment batch of one case): |ours| ≤ 1e-6.
    public static let zeroTermAbsolute = 1e-6
}

/// Runs a component forward and backward under a gradient trace's objective (Formats/prima-trace.md §11) and
/// compares the loss, every activation gradient and every parameter gradient with PyTorch's.
public enum GradientVerifier {
    /// The outcome of `prima-verify CKPT --trace GRAD.h5`.
    public struct Report: Sendable {
        public let component: String
        public let objective: GradientTrace.Objective
        public let loss: Float
        public let referenceLoss: Float
        public var lossRelativeError: Double { Double(abs(loss - referenceLoss)) / max(Double(abs(referenceLoss)), .leastNonzeroMagnitude) }
        public var lossPasses: Bool { lossRelativeError <= Tolerances.lossRelative }
        /// dLoss/d(activation), in forward order.
        public let activationGradients: [ActivationComparison]
        /// dLoss/d(tensor), by checkpoint path, in the trace's order.
        public let gradients: [ActivationComparison]
        /// Seconds of each forward + backward step (the first is the compared one).
        public let stepRuns: [Double]
        /// The median step time.
        public var stepSeconds: Double { stepRuns.sorted()[stepRuns.count / 2] }
        /// `alignment`: each unweighted loss term against the reference's `/loss_terms` (empty otherwise).
        public let terms: [TermComparison]
        public var pass: Bool {
            lossPasses && terms.allSatisfy(\.pass) && activationGradients.allSatisfy(\.pass) && gradients.allSatisfy(\.pass)
        }
    }

    /// One loss term against the reference: relative error ≤ ``Tolerances/lossRelative``, or within
    /// ``Tolerances/zeroTermAbsolute`` of a reference that is exactly 0 (Formats/prima-trace.md §11.11).
    public struct TermComparison: Sendable {
        public let name: String
        public let ours: Float
        public let reference: Float
        public var relativeError: Double { Double(abs(ours - reference)) / max(Double(abs(reference)), .leastNonzeroMagnitude) }
        public var pass: Bool {
            reference == 0 ? Double(abs(ours)) <= Tolerances.zeroTermAbsolute : relativeError <= Tolerances.lossRelative
        }
    }

    /// Loads the trace's component from `path`, makes exactly the trace's `/gradients` tensors trainable, runs the
    /// objective forward and backward `repeats` times (the first run is compared), and compares.
    public static func run(checkpoint path: String, trace: GradientTrace, tolerances: Tolerances = .gradients,
                           repeats: Int = 1) throws -> Report {
        let checkpoint = try ToolError.classify(asInput: true) { try Checkpoint(path: path) }
        switch trace.trace.subject {
        case .prima(let inputs, let classIds):
            return try runPipeline(checkpoint, inputs: inputs, classIds: classIds, trace: trace, tolerances: tolerances, repeats: repeats)
        case .primaBatch(let batch):
            return try runBatch(checkpoint, batch: batch, trace: trace, tolerances: tolerances, repeats: repeats)
        case .component:
            break
        }
        guard let role = trace.trace.role, let inputs = trace.trace.inputs else {
            throw ToolError.input("\(trace.path): no component inputs")
        }
        let component = try ToolError.classify(asInput: true) { try checkpoint.component(role) }
        let model = try ToolError.classify(asInput: true) { try loadComponentModel(component, training: true) }
        let store = try ToolError.classify(asInput: true) { try gradientStore(for: trace, component: component) }
        // Each run starts from zero gradients; the last run's are compared.
        let ((loss, activationGradients), runs) = try timedSteps(repeats, store: store) {
            try step(model, inputs: inputs, trace: trace, store: store, path: path, role: role)
        }
        return try report(trace, component: role.rawValue, loss: loss, activationGradients: activationGradients, store: store,
                          tolerances: tolerances, runs: runs)
    }

    /// Compares what a run produced with the trace.
    private static func report(_ trace: GradientTrace, component: String, loss: Float, terms: [Float]? = nil,
                               activationGradients: [String: Tensor], store: GradientStore, tolerances: Tolerances,
                               runs: [Double]) throws -> Report {
        let compared = try trace.activationGradients.map { reference -> ActivationComparison in
            guard let ours = activationGradients[reference.name], ours.elementCount == reference.tensor.elementCount else {
                throw ToolError.input("\(trace.path): activation gradient \(reference.name) is not one the \(component) backward produces with that shape")
            }
            return Comparison.compare(name: reference.name, ours: ours, reference: reference.tensor,
                                      mask: trace.trace.comparisonMask(for: reference.name, rank: reference.tensor.shape.count), tolerances: tolerances)
        }
        let termComparisons = zip(AlignmentLoss.termNames, zip(terms ?? [], trace.lossTerms ?? [])).map {
            TermComparison(name: $0, ours: $1.0, reference: $1.1)
        }
        let parameters = trace.gradients.map { reference in
            Comparison.compare(name: reference.path, ours: store[reference.path]!, reference: reference.tensor, mask: nil,
                               tolerances: tolerances)
        }
        return Report(component: component, objective: trace.objective, loss: loss, referenceLoss: trace.loss,
                      activationGradients: compared, gradients: parameters, stepRuns: runs, terms: termComparisons)
    }

    /// `class_ce` on the whole pipeline (§11.10): the heads' and the components' tensors may be trainable.
    private static func runPipeline(_ checkpoint: Checkpoint, inputs: PrimaInputs, classIds: [Int], trace: GradientTrace,
                                    tolerances: Tolerances, repeats: Int) throws -> Report {
        let model = try ToolError.classify(asInput: true) { try PrimaModel(checkpoint: checkpoint, training: true) }
        try TraceContract.checkDecoderInputs(of: trace.trace, model: model, checkpoint: checkpoint.path)
        guard model.heads.classTokenIds == classIds else {
            throw ToolError.input("\(trace.path): class token ids \(classIds) differ from the checkpoint's \(model.heads.classTokenIds)")
        }
        let store = try pipelineStore(for: trace, checkpoint: checkpoint)
        let label = trace.labels?.first?.first ?? 0
        let (result, runs) = try timedSteps(repeats, store: store) {
            try ToolError.classify(asInput: true) {
                let (logits, tape) = try model.trainingForward(inputs)
                let entropy = Loss.crossEntropy(logits, labels: [label])
                var gradients: [String: Tensor] = [:]
                try model.backward(entropy.logitsGradient, tape: tape, gradients: store) { gradients[$0] = $1 }
                return (entropy.loss, gradients)
            }
        }
        return try report(trace, component: "prima", loss: result.0, activationGradients: result.1, store: store,
                          tolerances: tolerances, runs: runs)
    }

    /// `image_ce` and `alignment` on a batch of cases (§11.11): the encoders and the heads that read them.
    private static func runBatch(_ checkpoint: Checkpoint, batch: PrimaBatchInputs, trace: GradientTrace, tolerances: Tolerances,
                                 repeats: Int) throws -> Report {
        let model = try ToolError.classify(asInput: true) { try PrimaModel(checkpoint: checkpoint, training: true) }
        let store = try pipelineStore(for: trace, checkpoint: checkpoint)
        let (result, runs) = try timedSteps(repeats, store: store) { () throws -> (loss: Float, terms: [Float]?, gradients: [String: Tensor]) in
            try ToolError.classify(asInput: true) {
                var gradients: [String: Tensor] = [:]
                switch (trace.objective, trace.labels, batch.textIds, batch.textMask, trace.softTargets, trace.alignmentSettings) {
                case (.imageCE, let labels?, _, _, _, _):
                    let loss = try model.imageClassifierStep(pixels: batch.pixelValues, labels: labels[0], gradients: store,
                                                             observeGradient: { gradients[$0] = $1 })
                    return (loss, nil, gradients)
                case (.alignment, _, let ids?, let mask?, let targets?, let settings?):
                    let step = try model.alignmentStep(AlignmentBatch(pixelValues: batch.pixelValues, textIds: ids, textMask: mask, softTargets: targets),
                                                       settings: settings, gradients: store, textEncoderBackward: true,
                                                       observeGradient: { gradients[$0] = $1 })
                    return (step.loss, step.terms, gradients)
                default:
                    throw ToolError.input("\(trace.path): objective \(trace.objective.rawValue) does not apply to a batch of cases")
                }
            }
        }
        return try report(trace, component: "prima", loss: result.loss, terms: result.terms, activationGradients: result.gradients,
                          store: store, tolerances: tolerances, runs: runs)
    }

    /// Runs `step` `repeats` times (at least once), each from zeroed gradients, the buffers one run frees serving the
    /// next (``StorageReuse``); returns the last run's result and every run's seconds.
    private static func timedSteps<R>(_ repeats: Int, store: GradientStore, _ step: () throws -> R) throws -> (R, [Double]) {
        try StorageReuse.acrossSteps {
            var runs: [Double] = []
            var result: R?
            for _ in 0..<max(1, repeats) {
                store.zero()
                let start = Date()
                result = try step()
                runs.append(Date().timeIntervalSince(start))
            }
            return (result!, runs)
        }
    }

    /// A gradient store for a `prima` trace: its paths may name a tensor of any component, a matrix of any stored
    /// adapter, or a head (§11.10, §11.11).
    private static func pipelineStore(for trace: GradientTrace, checkpoint: Checkpoint) throws -> GradientStore {
        try storeFor(trace, shapes: try ToolError.classify(asInput: true) { try checkpoint.trainableShapes() }, checkpoint: checkpoint.path)
    }

    /// One forward + objective + backward step of the component's model on the trace's inputs.
    private static func step(_ model: any ComponentModel, inputs: ModelInputs, trace: GradientTrace, store: GradientStore,
                             path: String, role: ComponentRole) throws -> (Float, [String: Tensor]) {
        try ToolError.classify(asInput: true) {
            switch (model, inputs) {
            case (let encoder as any MaskedLanguageModel, .tokens(let ids, let mask)):
                return try run(encoder, ids: ids, mask: mask, trace: trace, gradients: store,
                               head: trace.objective == .mlm ? { try encoder.maskedLM($0, gradients: store) } : nil)
            case (let qwen as Qwen3Model, .tokens(let ids, let mask)):
                return try run(qwen, ids: ids, mask: mask, trace: trace, gradients: store, head: trace.objective == .causalLM ? { hidden in
                    let (logits, saved) = qwen.headForward(hidden)
                    return (logits, { try qwen.headBackward($0, hidden: hidden, saved: saved, gradients: store) })
                } : nil)
            case (let vit as DINOv3ViTModel, .pixels(let pixels)):
                return try run(forward: { try vit.trainingForward(pixels: pixels, observe: { _, _ in }) },
                               backward: { try vit.backward($0, tape: $1, gradients: store, observe: $2) },
                               trace: trace, gradients: store, head: nil)
            default:
                throw ToolError.input("\(path): \(role.rawValue): gradient verification of \(type(of: model)) on these inputs is not implemented")
            }
        }
    }

    /// A gradient buffer for every path of the trace, each naming a stored tensor (or LoRA matrix) of `component`
    /// with the trace's shape; a tied alias, an unknown path or another shape is refused.
    static func gradientStore(for trace: GradientTrace, component: ComponentReader) throws -> GradientStore {
        let shapes = try component.checkpoint.trainableShapes().filter { $0.key.hasPrefix(component.name + "/") }
        return try storeFor(trace, shapes: shapes, checkpoint: component.checkpoint.path)
    }

    /// A gradient store for the trace's paths, each checked against `shapes` (stored tensors by path).
    static func storeFor(_ trace: GradientTrace, shapes: [String: [Int]], checkpoint: String) throws -> GradientStore {
        for (path, tensor) in trace.gradients {
            guard let shape = shapes[path] else {
                throw ToolError.input("\(trace.path): gradients/\(path) names no stored tensor of \(checkpoint) (a tied alias has its target's path)")
            }
            guard shape == tensor.shape else {
                throw ToolError.input("\(trace.path): gradients/\(path) has shape \(ShapeMath.describe(tensor.shape)); the checkpoint's tensor is \(ShapeMath.describe(shape))")
            }
        }
        return GradientStore(trainable: trace.gradients.map { ($0.path, $0.tensor.shape) })
    }

    /// The head an objective puts on the final hidden state: logits [B·T, V], and the backward from dLoss/d(logits)
    /// to dLoss/d(hidden).
    typealias Head = (Tensor) throws -> (logits: Tensor, backward: (Tensor) throws -> Tensor)

    /// Forward, objective, backward of a model trained from token ids.
    static func run<M: TrainableEncoder>(_ model: M, ids: [[Int]], mask: [[Int]], trace: GradientTrace,
                                         gradients: GradientStore, head: Head?) throws -> (Float, [String: Tensor]) {
        try run(forward: { try model.trainingForward(ids: ids, mask: mask, observe: { _, _ in }) },
                backward: { try model.backward($0, tape: $1, gradients: gradients, observe: $2) },
                trace: trace, gradients: gradients, head: head)
    }

    /// Forward, objective, backward: the loss and dLoss/d(activation) by name.
    static func run<Tape>(forward: () throws -> (Tensor, Tape),
                          backward: (Tensor, Tape, (String, Tensor) throws -> Void) throws -> Tensor,
                          trace: GradientTrace, gradients: GradientStore, head: Head?) throws -> (Float, [String: Tensor]) {
        let (hidden, tape) = try forward()
        let loss: Float, dHidden: Tensor
        var activationGradients: [String: Tensor] = [:]
        switch (trace.objective, head) {
        case (.dot, _):
            guard let weights = trace.outputWeights else { throw ToolError.input("\(trace.path): a dot trace without output_weights") }
            loss = Objectives.dot(hidden, weights: weights)
            dHidden = weights
        case (.mlm, let head?), (.causalLM, let head?):
            // The head runs on the counted positions only (headOnRows); dLoss/dlogits is zero at the others.
            let labels = trace.objective == .causalLM ? Objectives.shifted(trace.labels ?? []) : (trace.labels ?? []).flatMap { $0 }
            let rows = labels.indices.filter { labels[$0] != Loss.ignoreIndex }
            let (logits, headBackward) = try headOnRows(hidden, rows: rows, head: head)
            let vocabulary = logits.shape.last ?? 0
            if let bad = (trace.labels ?? []).joined().first(where: { $0 >= vocabulary }) {
                throw ToolError.input("\(trace.path): inputs/labels holds \(bad), outside the vocabulary of \(vocabulary)")
            }
            let entropy = Loss.crossEntropy(logits, labels: rows.map { labels[$0] })
            loss = entropy.loss
            if trace.activationGradients.contains(where: { $0.name == "logits" }) {
                let dLogits = Tensor(zeros: [labels.count, vocabulary], dtype: .f32)   // [B·T, V]
                scatterRows(entropy.logitsGradient, into: dLogits, rows: rows)
                activationGradients["logits"] = dLogits
            }
            dHidden = try headBackward(entropy.logitsGradient)
        default:
            throw ToolError.input("\(trace.path): objective \(trace.objective.rawValue) does not apply to this component")
        }
        _ = try backward(dHidden, tape) { name, gradient in activationGradients[name] = gradient }
        return (loss, activationGradients)
    }
}

/// The objectives of Formats/prima-trace.md §11.4 that need no model.
public enum Objectives {
    /// `dot`: Σ hidden ⊙ weights, accumulated in double and rounded once (its gradient is `weights`).
    public static func dot(_ hidden: Tensor, weights: Tensor) -> Float {
        let a = hidden.float32Values(), b = weights.float32Values()
        precondition(a.count == b.count, "dot objective: \(a.count) values against \(b.count) weights")
        var sum = 0.0
        for i in a.indices { sum += Double(a[i]) * Double(b[i]) }
        return Float(sum)
    }

    /// `causal_lm`'s labels (§11.4): position t predicts labels[t + 1]; the last position of each row predicts
    /// nothing (−100). Flattened to B·T.
    public static func shifted(_ labels: [[Int]]) -> [Int] {
        labels.flatMap { row in Array(row.dropFirst()) + [-100] }
    }
}
