import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaModels
import PrimaTensor

/// Runs a checkpoint component on a trace's inputs and compares every activation the trace holds, in order.
public enum TraceVerifier {
    /// The outcome of `prima-verify CKPT --trace REF.h5`.
    public struct Report: Sendable {
        /// The trace's component name (`prima` for the pipeline).
        public let component: String
        public let activations: [ActivationComparison]
        public let loadSeconds: Double
        /// Median of the timed forward passes.
        public let forwardSeconds: Double
        public let forwardRuns: [Double]
        /// The runtime's own trace for the same inputs.
        public let ours: Trace
        public var pass: Bool { activations.allSatisfy(\.pass) }
        /// The first failing activation, if any.
        public var firstFailure: ActivationComparison? { activations.first { !$0.pass } }
    }

    /// Loads the trace's component of the checkpoint (or its whole pipeline for a `prima` trace), checks that the
    /// trace's inputs fit it, runs it `repeats` times on them and compares the first run's activations with the
    /// trace's. A trace that does not fit the checkpoint (``TraceContract``: inputs outside the vocabulary or the
    /// patch grid, an activation the runtime does not produce, another shape, another order, a required one
    /// missing) is bad input naming the trace; activations the runtime produces beyond the trace's optional
    /// ones are kept for `--dump` only.
    public static func run(checkpoint path: String, trace: Trace, tolerances: Tolerances, repeats: Int) throws -> Report {
        let checkpoint: Checkpoint
        do { checkpoint = try Checkpoint(path: path) } catch { throw ToolError.input("\(error)") }
        let loadStart = Date()
        let forward: ((String, Tensor) throws -> Void) throws -> Void
        let owner: String
        do {
            switch trace.subject {
            case .component(let role, let inputs):
                let model = try loadComponentModel(try checkpoint.component(role))
                owner = "the \(role.rawValue) of \(path)"
                try TraceContract.checkInputs(of: trace, inputs, model: model, owner: owner)
                forward = { observe in _ = try model.forward(inputs, observe: observe) }
            case .prima(let inputs, let classIds):
                let model = try PrimaModel(checkpoint: checkpoint)
                owner = "the prima pipeline of \(path)"
                try TraceContract.checkInputs(of: trace, inputs, classTokenIds: classIds, model: model, checkpoint: path)
                forward = { observe in _ = try model.forward(inputs, observe: observe) }
            case .primaBatch:
                throw ToolError.input("\(trace.path ?? "trace"): a trace over a batch of cases is checked with its gradients (Formats/prima-trace.md §11.11)")
            }
        } catch let error as RuntimeError {
            throw ToolError.input(TraceContract.located(error.description, in: path))
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError.input(TraceContract.located("\(error)", in: path))
        }
        let loadSeconds = Date().timeIntervalSince(loadStart)

        var produced: [(name: String, tensor: Tensor)] = []
        var pairs: [(name: String, reference: Tensor, ours: Tensor)] = []
        var runs: [Double] = []
        for run in 0..<max(1, repeats) {
            let start = Date()
            do {
                try forward { name, tensor in
                    if run == 0 { produced.append((name, tensor)) }
                }
            } catch let error as RuntimeError {
                throw ToolError.input(TraceContract.located(error.description, in: path))
            }
            runs.append(Date().timeIntervalSince(start))
            // The trace must fit what the runtime produces before anything is compared or timed further.
            if run == 0 { pairs = try TraceContract.pair(trace, with: produced, owner: owner) }
        }
        // Padding is excluded for a component's token-level activations (every one but BERT's pooler); a prima
        // trace has one unpadded text.
        let comparisons = pairs.map { pair in
            Comparison.compare(name: pair.name, ours: pair.ours, reference: pair.reference,
                               mask: pair.name == "pooler" ? nil : trace.attentionMask, tolerances: tolerances)
        }
        let ours = Trace(subject: trace.subject, activations: produced.map { item in
            (item.name, item.tensor.reshaped(TraceContract.traceShape(of: item.name, produced: item.tensor.shape, subject: trace.subject)))
        }, decoderInputs: trace.decoderInputs)
        let sorted = runs.sorted()
        return Report(component: trace.componentName, activations: comparisons, loadSeconds: loadSeconds,
                      forwardSeconds: sorted[sorted.count / 2], forwardRuns: runs, ours: ours)
    }
}
