import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaModels
import PrimaTensor

/// A gradient trace (Formats/prima-trace.md §11, version 2): the forward trace of one component plus the
/// objective, its input, the loss, the gradient of the loss with respect to every activation, and the gradient of
/// every trainable tensor by checkpoint path.
public struct GradientTrace: Sendable {
    /// The training objectives of §11.4 a component trace may carry.
    public enum Objective: String, Sendable {
        case dot, mlm
        case causalLM = "causal_lm"
        /// Stage 3 (component `prima`): cross-entropy of the restricted class logits (§11.10).
        case classCE = "class_ce"
        /// Stage 2b (component `prima`, a batch of images): the image classifier's cross-entropy (§11.11).
        case imageCE = "image_ce"
        /// Stage 2 (component `prima`, a batch of cases with two views): the four alignment losses (§11.11).
        case alignment

        /// Whether the objective runs the whole pipeline or its encoders and heads (component `prima`).
        var isPipeline: Bool { self == .classCE || self == .imageCE || self == .alignment }
    }

    /// The file it was read from, for messages.
    public let path: String
    /// The forward part: inputs and activations in forward order.
    public let trace: Trace
    public let objective: Objective
    /// `dot`: the weights of final_norm, [B·T, C] (rows of the activation).
    public let outputWeights: Tensor?
    /// `mlm`, `causal_lm`: the labels [B][T] (−100 ignored); `class_ce`: [[y]], the case's class index;
    /// `image_ce`: [[y_0, …, y_{B−1}]], each image's class index.
    public let labels: [[Int]]?
    /// `alignment`: the metadata vectors [N, D] of L_soft, the loss's settings from the root attributes, and the
    /// reference's four unweighted terms (img, glo, loc, soft) from `/loss_terms`.
    public let softTargets: Tensor?
    public let alignmentSettings: AlignmentLoss.Settings?
    public let lossTerms: [Float]?
    public let loss: Float
    /// dLoss/d(activation), in forward order, each with the activation's shape.
    public let activationGradients: [(name: String, tensor: Tensor)]
    /// dLoss/d(tensor) by checkpoint path (`ROLE/tensors/NAME`, `ROLE/lora/ADAPTER/tensors/X.lora_a`): the
    /// trainable set.
    public let gradients: [(path: String, tensor: Tensor)]

    /// Whether the trace at `path` is a gradient trace (prima_trace_version 2), from its root attribute alone.
    public static func isGradientTrace(path: String) throws -> Bool {
        let file: HDF5File
        do { file = try HDF5File.open(path: path) } catch { throw ToolError.input("\(error)") }
        let root = try ToolError.classify(asInput: true) { try file.root() }
        return root.hasAttribute("prima_trace_version") && (try? root.intAttribute("prima_trace_version")) == 2
    }

    /// Reads and validates a version-2 trace; every problem is an error naming the file and the object.
    public init(path: String) throws {
        self.path = path
        trace = try Trace(path: path)
        let file: HDF5File
        do { file = try HDF5File.open(path: path) } catch { throw ToolError.input("\(error)") }
        func fail(_ what: String) -> ToolError { .input("\(path): \(what)") }
        do {
            let root = try file.root()
            guard try root.intAttribute("prima_trace_version") == 2, root.hasAttribute("objective") else {
                throw fail("not a gradient trace (prima_trace_version 2 with an objective attribute)")
            }
            let name = try root.stringAttribute("objective")
            guard let objective = Objective(rawValue: name) else {
                throw fail("objective \"\(name)\" is not dot, mlm, causal_lm, class_ce, image_ce or alignment")
            }
            self.objective = objective
            let children = Set(try root.linkNames())
            let expected = Set(["inputs", "activations", "activation_gradients", "loss", "gradients"] + (objective == .alignment ? ["loss_terms"] : []))
            if let extra = children.subtracting(expected).sorted().first {
                throw fail("/\(extra) is not part of a \(name) gradient trace (§11.1\(extra == "loss_terms" ? ", §11.11" : ""))")
            }
            if let missing = expected.subtracting(children).sorted().first { throw fail("/\(missing) is missing (§11.1\(missing == "loss_terms" ? ", §11.11" : ""))") }
            var isBatch = false
            if case .primaBatch = trace.subject { isBatch = true }
            guard (trace.role == nil) == objective.isPipeline, isBatch == (objective == .imageCE || objective == .alignment) else {
                throw fail("objective \(name) does not apply to component \(trace.componentName) (§11.3)")
            }
            let inputs = try root.group("inputs")
            let finalName = switch objective {
            case .classCE: "class_logits"
            case .imageCE: "image_classifier.logits"
            case .alignment: "alignment.text_local"
            default: "final_norm"
            }
            guard let final = trace.activations.first(where: { $0.name == finalName })?.tensor else {
                throw fail("activations/\(finalName) is missing")
            }
            let mask = trace.attentionMask
            var alignmentParts: (targets: Tensor, settings: AlignmentLoss.Settings, terms: [Float])?
            switch objective {
            case .dot:
                let weights = try Trace.readFloat32(inputs, "output_weights", path: path)
                guard weights.shape == final.shape else {
                    throw fail("inputs/output_weights has shape \(ShapeMath.describe(weights.shape)), final_norm \(ShapeMath.describe(final.shape))")
                }
                if let mask {
                    let c = weights.shape.last ?? 0, values = weights.float32Values()
                    for (b, row) in mask.enumerated() {
                        for (t, m) in row.enumerated() where m == 0 {
                            let start = (b * row.count + t) * c
                            if values[start..<(start + c)].contains(where: { $0 != 0 }) {
                                throw fail("inputs/output_weights is not zero at padded position [\(b), \(t)]")
                            }
                        }
                    }
                }
                outputWeights = weights.reshaped([weights.elementCount / max(weights.shape.last ?? 1, 1), weights.shape.last ?? 0])
                labels = nil
            case .classCE:
                guard inputs.contains("labels") else { throw fail("inputs/labels is missing") }
                let dataset = try inputs.dataset("labels")
                guard dataset.storedTypeMatches(.i64), dataset.shape == [1] else { throw fail("inputs/labels must be int64 of shape (1,)") }
                let label = try dataset.readAllBytes().withUnsafeBytes { Int($0.load(as: Int64.self)) }
                guard (0..<final.elementCount).contains(label) else {
                    throw fail("inputs/labels holds \(label), not a class index 0..<\(final.elementCount)")
                }
                labels = [[label]]
                outputWeights = nil
            case .imageCE:
                guard case .primaBatch(let batch) = trace.subject, inputs.contains("labels") else { throw fail("inputs/labels is missing") }
                let dataset = try inputs.dataset("labels")
                let images = batch.pixelValues.shape[0]
                guard dataset.storedTypeMatches(.i64), dataset.shape == [images] else {
                    throw fail("inputs/labels must be int64 of shape (\(images),), one class index per image")
                }
                let values = try dataset.readAllBytes().withUnsafeBytes { Array($0.bindMemory(to: Int64.self)).map(Int.init) }
                let classes = final.shape.last ?? 0
                guard final.shape == [images, classes] else {
                    throw fail("activations/image_classifier.logits has shape \(ShapeMath.describe(final.shape)), not (\(images), K)")
                }
                if let bad = values.first(where: { !(0..<classes).contains($0) }) {
                    throw fail("inputs/labels holds \(bad), not a class index 0..<\(classes)")
                }
                labels = [values]
                outputWeights = nil
            case .alignment:
                guard case .primaBatch(let batch) = trace.subject, let ids = batch.textIds, let textMask = batch.textMask else {
                    throw fail("inputs/input_ids is missing")
                }
                let n = ids.count
                guard batch.pixelValues.shape[0] == 2 * n else {
                    throw fail("inputs/pixel_values holds \(batch.pixelValues.shape[0]) images, not two views of each of the \(n) cases (§11.11)")
                }
                if let short = textMask.firstIndex(where: { $0.reduce(0, +) < 3 }) {
                    throw fail("inputs/attention_mask row \(short) has fewer than 3 real tokens (each case needs a local token, §11.11)")
                }
                let targets = try Trace.readFloat32(inputs, "soft_targets", path: path)
                guard targets.shape.count == 2, targets.shape[0] == n, targets.shape[1] >= 1 else {
                    throw fail("inputs/soft_targets has shape \(ShapeMath.describe(targets.shape)), not (\(n), D) with D ≥ 1")
                }
                alignmentParts = (targets, try Self.alignmentSettings(root, fail), try Self.lossTerms(try root.group("loss_terms"), path: path, fail))
                labels = nil
                outputWeights = nil
            case .mlm, .causalLM:
                let values = try Trace.readInt64Matrix(inputs, "labels", path: path)
                guard let mask, values.count == mask.count, zip(values, mask).allSatisfy({ $0.count == $1.count }) else {
                    throw fail("inputs/labels must have the shape of input_ids")
                }
                for (b, row) in values.enumerated() {
                    for (t, label) in row.enumerated() where label != -100 {
                        guard mask[b][t] == 1 else { throw fail("inputs/labels[\(b), \(t)] counts a padded position") }
                        guard label >= 0 else { throw fail("inputs/labels[\(b), \(t)] is \(label), neither −100 nor a token id") }
                    }
                }
                let counted = objective == .mlm ? values.joined().contains { $0 != -100 }
                                                : values.contains { $0.dropFirst().contains { $0 != -100 } }
                guard counted else { throw fail("inputs/labels counts no position") }
                labels = values
                outputWeights = nil
            }
            (softTargets, alignmentSettings, lossTerms) = (alignmentParts?.targets, alignmentParts?.settings, alignmentParts?.terms)
            let lossData = try root.dataset("loss")
            guard lossData.storedTypeMatches(.f32), lossData.shape.isEmpty else { throw fail("/loss is not a float32 scalar (shape ())") }
            loss = try Trace.readFloat32(root, "loss", path: path).float32Values()[0]
            guard loss.isFinite else { throw fail("/loss is \(loss)") }

            let group = try root.group("activation_gradients")
            activationGradients = try trace.activations.enumerated().map { index, activation in
                let gradient = try Trace.readFloat32(group, activation.name, path: path)
                guard gradient.shape == activation.tensor.shape else {
                    throw fail("activation_gradients/\(activation.name) has shape \(ShapeMath.describe(gradient.shape)), the activation \(ShapeMath.describe(activation.tensor.shape))")
                }
                let dataset = try group.dataset(activation.name)
                guard dataset.hasAttribute("order"), (try? dataset.intAttribute("order")) == index else {
                    throw fail("activation_gradients/\(activation.name): order is not \(index), the activation's place (§11.5)")
                }
                try Self.requireFinite(gradient, "activation_gradients/\(activation.name)", fail)
                return (activation.name, gradient)
            }
            guard try group.linkNames().count == trace.activations.count else {
                throw fail("activation_gradients holds other names than activations")
            }
            var found: [(String, Tensor)] = []
            try Self.collect(try root.group("gradients"), prefix: "", into: &found, path: path, depth: 0)
            guard !found.isEmpty else { throw fail("gradients holds no tensor (the trainable set is empty)") }
            gradients = found
        } catch let error as ToolError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }

    /// The root attributes `tau`, `tau_label`, `loss_weights` and `loc_mode` of an `alignment` trace (§11.11).
    private static func alignmentSettings(_ root: HDF5Group, _ fail: (String) -> ToolError) throws -> AlignmentLoss.Settings {
        func number(_ name: String) throws -> Double {
            guard root.hasAttribute(name), root.attribute(name, isStoredAs: .float64), let value = try? root.doubleAttribute(name) else {
                throw fail("root attribute \(name) is missing or not a float64 (§11.11)")
            }
            guard value.isFinite, value > 0 else { throw fail("root attribute \(name) is \(value), not a positive number") }
            return value
        }
        let tau = try number("tau"), tauLabel = try number("tau_label")
        guard root.hasAttribute("loss_weights"), root.attribute("loss_weights", isStoredAs: .float64List) || root.attribute("loss_weights", isStoredAs: .float64),
              let weights = try? root.doublesAttribute("loss_weights"), weights.count == 4 else {
            throw fail("root attribute loss_weights is missing or not four float64 values (img, glo, loc, soft; §11.11)")
        }
        guard weights.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw fail("root attribute loss_weights \(weights) holds a negative or non-finite weight") }
        guard root.hasAttribute("loc_mode"), let modeName = try? root.stringAttribute("loc_mode") else { throw fail("root attribute loc_mode is missing or not a string (§11.11)") }
        guard let mode = AlignmentLoss.LocalMode(rawValue: modeName) else {
            throw fail("root attribute loc_mode is \"\(modeName)\", not attention or direct")
        }
        return AlignmentLoss.Settings(tau: Float(tau), tauLabel: Float(tauLabel), weights: weights.map { Float($0) }, localMode: mode)
    }

    /// `/loss_terms`: exactly img, glo, loc and soft, each a finite float32 scalar (§11.11).
    private static func lossTerms(_ group: HDF5Group, path: String, _ fail: (String) -> ToolError) throws -> [Float] {
        let names = try group.linkNames()
        if let extra = names.first(where: { !AlignmentLoss.termNames.contains($0) }) { throw fail("loss_terms/\(extra) is not a loss term (img, glo, loc, soft)") }
        return try AlignmentLoss.termNames.map { name in
            guard group.contains(name) else { throw fail("loss_terms/\(name) is missing") }
            let dataset = try group.dataset(name)
            guard dataset.storedTypeMatches(.f32), dataset.shape.isEmpty else { throw fail("loss_terms/\(name) is not a float32 scalar (shape ())") }
            let value = try Trace.readFloat32(group, name, path: path).float32Values()[0]
            guard value.isFinite else { throw fail("loss_terms/\(name) is \(value)") }
            return value
        }
    }

    /// Refuses a reference tensor holding NaN or Inf: a defect of the trace, never a comparison that fails.
    private static func requireFinite(_ tensor: Tensor, _ name: String, _ fail: (String) -> ToolError) throws {
        if let index = tensor.float32Values().firstIndex(where: { !$0.isFinite }) {
            throw fail("\(name) holds a non-finite value at element \(index)")
        }
    }

    /// The datasets below `group` by path relative to `/gradients` (at most six levels: `ROLE/lora/NAME/tensors/X`).
    private static func collect(_ group: HDF5Group, prefix: String, into found: inout [(String, Tensor)], path: String, depth: Int) throws {
        guard depth < 6 else { throw ToolError.input("\(path): \(group.path) is nested too deeply for a tensor path") }
        for name in try group.linkNames() {
            switch try group.linkKind(name) {
            case .dataset:
                let tensor = try Trace.readFloat32(group, name, path: path)
                try requireFinite(tensor, "gradients/\(prefix)\(name)") { ToolError.input("\(path): \($0)") }
                found.append((prefix + name, tensor))
            case .group:
                try collect(try group.group(name), prefix: prefix + name + "/", into: &found, path: path, depth: depth + 1)
            default:
                throw ToolError.input("\(path): \(group.path)/\(name) is neither a group nor a dataset")
            }
        }
    }
}
