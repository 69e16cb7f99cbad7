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

    /// Loads `component` of the checkpoint, runs it `repeats` times on the trace's inputs (the first run's
    /// activations are compared), and compares. An activation in the trace that the runtime does not produce is
    /// an error; activations the runtime produces beyond the trace's are kept for `--dump` only.
    public static func run(checkpoint path: String, trace: Trace, tolerances: Tolerances, repeats: Int) throws -> Report {
        let checkpoint: Checkpoint
        do { checkpoint = try Checkpoint(path: path) } catch { throw ToolError.input("\(error)") }
        let loadStart = Date()
        let forward: ((String, Tensor) throws -> Void) throws -> Void
        do {
            switch trace.subject {
            case .component(let role, let inputs):
                let model = try loadComponentModel(try checkpoint.component(role))
                forward = { observe in _ = try model.forward(inputs, observe: observe) }
            case .prima(let inputs, let classIds):
                let model = try PrimaModel(checkpoint: checkpoint)
                guard model.heads.classTokenIds == classIds else {
                    throw ToolError.input("\(path): class token ids \(model.heads.classTokenIds) differ from the trace's \(classIds)")
                }
                forward = { observe in _ = try model.forward(inputs, observe: observe) }
            }
        } catch let error as RuntimeError {
            throw ToolError.input(error.description)
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError.input("\(error)")
        }
        let loadSeconds = Date().timeIntervalSince(loadStart)

        var produced: [(name: String, tensor: Tensor)] = []
        var runs: [Double] = []
        for run in 0..<max(1, repeats) {
            let start = Date()
            do {
                try forward { name, tensor in
                    if run == 0 { produced.append((name, tensor)) }
                }
            } catch let error as RuntimeError {
                throw ToolError.input("\(path): \(error.description)")
            }
            runs.append(Date().timeIntervalSince(start))
        }
        let byName = Dictionary(produced.map { ($0.name, $0.tensor) }, uniquingKeysWith: { first, _ in first })
        var comparisons: [ActivationComparison] = []
        for (name, reference) in trace.activations {
            guard let ours = byName[name] else {
                let known = produced.map(\.name).joined(separator: ", ")
                throw ToolError.input("trace activation \(name) is not one the \(trace.componentName) runtime produces (it produces: \(known))")
            }
            guard ours.elementCount == reference.elementCount, ours.shape.last == reference.shape.last else {
                throw ToolError.input("trace activation \(name) has shape \(ShapeMath.describe(reference.shape)); the runtime produced \(ShapeMath.describe(ours.shape))")
            }
            // Padding is excluded for activations with a (B, T) leading pair (every token-level activation).
            let tokenLevel = reference.shape.count == 3
            comparisons.append(Comparison.compare(name: name, ours: ours, reference: reference,
                                                  mask: tokenLevel ? trace.attentionMask : nil, tolerances: tolerances))
        }
        // Our activations in the trace layout: (B, T, C) for token-level ones, (B, C) as produced otherwise. In a
        // prima trace (batch 1) the token-level ones are those the reference stores with three axes.
        let referenceRanks = Dictionary(trace.activations.map { ($0.name, $0.tensor.shape.count) }, uniquingKeysWith: { first, _ in first })
        let batch = trace.inputs?.batch ?? 1
        let ours = Trace(subject: trace.subject, activations: produced.map { item in
            let rows = item.tensor.shape[0]
            let tokenLevel = trace.role == nil ? referenceRanks[item.name] == 3 : rows != batch && rows % batch == 0
            guard tokenLevel, item.tensor.shape.count == 2 else { return item }
            return (item.name, item.tensor.reshaped([batch, rows / batch, item.tensor.shape[1]]))
        })
        let sorted = runs.sorted()
        return Report(component: trace.componentName, activations: comparisons, loadSeconds: loadSeconds,
                      forwardSeconds: sorted[sorted.count / 2], forwardRuns: runs, ours: ours)
    }
}
