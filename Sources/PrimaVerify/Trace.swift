import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaModels
import PrimaTensor

/// Sizes beyond which a trace is refused (Formats/prima-trace.md §1.2), checked from the dataset shapes before
/// anything is read. A trace records a model run on a few small inputs; these bounds are far above that and keep
/// what a hostile file can make a tool allocate to a few GB.
public enum TraceLimits {
    /// Largest batch B of the inputs: 256 (the reference traces use 1-3).
    public static let maxBatch = 256
    /// Longest sequence T of the token inputs: 65,536 (Qwen3 takes at most 40,960 positions).
    public static let maxSequenceLength = 65_536
    /// Largest height or width of `pixel_values`: 4096 (DINOv3 is run at 224-1024).
    public static let maxImageSide = 4096
    /// Largest activation dataset: 1 GiB of float32 (the largest real one, Qwen3-8B logits for B = 2, T = 512,
    /// is 0.6 GB).
    public static let maxActivationBytes = 1 << 30
    /// Largest sum of all activation datasets: 4 GiB.
    public static let maxTotalActivationBytes = 4 << 30
}

/// What a trace ran: one component on its inputs, or the whole PRIMA pipeline (component `prima`).
public enum TraceSubject: Sendable {
    case component(ComponentRole, ModelInputs)
    case prima(PrimaInputs, classTokenIds: [Int])
}

/// A reference trace (Formats/prima-trace.md): a component's (or the pipeline's) inputs and its named activations
/// in forward order.
public struct Trace: Sendable {
    /// The newest trace version this build reads.
    public static let version = 2

    public let subject: TraceSubject
    /// Activations in forward order (by their `order` attribute), each float32 with its stored shape.
    public let activations: [(name: String, tensor: Tensor)]

    /// The `component` attribute: `image_encoder`, `text_encoder`, `decoder` or `prima`.
    public var componentName: String {
        switch subject {
        case .component(let role, _): role.rawValue
        case .prima: "prima"
        }
    }

    /// The component's role; nil for a `prima` trace.
    public var role: ComponentRole? {
        if case .component(let role, _) = subject { return role }
        return nil
    }

    /// The component's inputs; nil for a `prima` trace.
    public var inputs: ModelInputs? {
        if case .component(_, let inputs) = subject { return inputs }
        return nil
    }

    /// The attention mask [B][T] of token-level activations, nil for images and for `prima` (batch 1, unpadded).
    public var attentionMask: [[Int]]? {
        if case .tokens(_, let mask) = inputs { return mask }
        return nil
    }

    public init(subject: TraceSubject, activations: [(name: String, tensor: Tensor)]) {
        self.subject = subject
        self.activations = activations
    }

    /// Reads and validates a trace file; every problem is an error naming the file and the object.
    public init(path: String) throws {
        let file: HDF5File
        do { file = try HDF5File.open(path: path) } catch { throw ToolError.input("\(error)") }
        func fail(_ what: String) -> ToolError { .input("\(path): \(what)") }
        do {
            let root = try file.root()
            guard root.hasAttribute("prima_trace_version"), let version = try? root.intAttribute("prima_trace_version") else {
                throw fail("not a PRIMA trace (no integer root attribute prima_trace_version)")
            }
            guard version >= 1, version <= Trace.version else {
                throw fail("prima_trace_version \(version) is not supported (this build reads up to \(Trace.version))")
            }
            let componentName = try root.stringAttribute("component")
            let inputs = try root.group("inputs")
            if componentName == "prima" {
                subject = try Self.readPrimaInputs(inputs, path: path)
            } else {
                guard let role = ComponentRole(rawValue: componentName) else { throw fail("unknown component \"\(componentName)\"") }
                if role == .imageEncoder {
                    subject = .component(role, .pixels(try Self.readPixels(inputs, path: path, batch: nil)))
                } else {
                    let ids = try Self.readInt64Matrix(inputs, "input_ids", path: path)
                    let mask = try Self.readInt64Matrix(inputs, "attention_mask", path: path)
                    guard ids.count == mask.count, zip(ids, mask).allSatisfy({ $0.count == $1.count }) else {
                        throw fail("inputs/input_ids and inputs/attention_mask differ in shape")
                    }
                    subject = .component(role, .tokens(ids: ids, mask: mask))
                }
            }
            var found: [(order: Int?, name: String, tensor: Tensor)] = []
            if root.contains("activations") {
                let group = try root.group("activations")
                var totalBytes = 0
                for name in try group.linkNames() {
                    let dataset = try group.dataset(name)
                    var order: Int?
                    if dataset.hasAttribute("order") {
                        guard let value = try? dataset.intAttribute("order") else { throw fail("activations/\(name): order is not an integer") }
                        order = value
                    }
                    let bytes = ShapeMath.byteCount(dataset.shape, .f32) ?? Int.max
                    guard bytes <= TraceLimits.maxActivationBytes else {
                        throw fail("activations/\(name): shape \(ShapeMath.describe(dataset.shape)) is more than the "
                                   + "limit of \(TraceLimits.maxActivationBytes) bytes per activation")
                    }
                    totalBytes += bytes
                    guard totalBytes <= TraceLimits.maxTotalActivationBytes else {
                        throw fail("activations: more than the limit of \(TraceLimits.maxTotalActivationBytes) bytes in all")
                    }
                    found.append((order, name, try Self.readFloat32(group, name, path: path)))
                }
            }
            if found.allSatisfy({ $0.order == nil }) {
                // No `order` attributes: the names alone must fix the order (Formats/prima-trace.md §4.2).
                let ranked = try found.map { entry -> (rank: [Int], name: String, tensor: Tensor) in
                    guard let rank = Self.forwardRank(of: entry.name, prima: componentName == "prima") else {
                        throw fail("activations/\(entry.name) has no order attribute, and its name does not fix its place in the forward pass")
                    }
                    return (rank, entry.name, entry.tensor)
                }
                activations = ranked.sorted { $0.rank.lexicographicallyPrecedes($1.rank) }.map { ($0.name, $0.tensor) }
            } else {
                if let missing = found.first(where: { $0.order == nil }) {
                    throw fail("activations/\(missing.name) has no order attribute while others have one")
                }
                let orders = found.compactMap(\.order).sorted()
                guard orders == Array(0..<found.count) else { throw fail("activation order attributes are not 0..<\(found.count)") }
                activations = found.sorted { $0.order! < $1.order! }.map { ($0.name, $0.tensor) }
            }
        } catch let error as ToolError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }

    /// Where an activation named `name` stands in the forward pass, as a key that sorts in forward order, when the
    /// name alone fixes it (Formats/prima-trace.md §4.2): `embeddings`, `layers.N` by N (no leading zeros),
    /// `final_norm`, `pooler`, `logits` for a component; for a `prima` trace the names of §10.3, the encoders' and
    /// the decoder's names under their prefixes. nil for any other name.
    public static func forwardRank(of name: String, prima: Bool) -> [Int]? {
        func componentRank(_ name: String, tail: [String]) -> [Int]? {
            if name == "embeddings" { return [0, 0] }
            if name.hasPrefix("layers.") {
                let digits = name.dropFirst("layers.".count)
                guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
                      digits == "0" || digits.first != "0", let index = Int(digits) else { return nil }
                return [1, index]
            }
            return tail.firstIndex(of: name).map { [2, $0] }
        }
        guard prima else { return componentRank(name, tail: ["final_norm", "pooler", "logits"]) }
        let heads = ["alignment.image_global", "alignment.text_global", "alignment.image_local", "alignment.text_local",
                     "image_classifier.logits", "fusion.image_cls", "fusion.image_seq", "fusion.text_cls", "fusion.text_seq"]
        let prefixes: [(prefix: String, tail: [String])] = [
            ("image_encoder.", ["final_norm"]), ("text_encoder.", ["final_norm", "pooler"]),
        ]
        for (stage, entry) in prefixes.enumerated() where name.hasPrefix(entry.prefix) {
            return componentRank(String(name.dropFirst(entry.prefix.count)), tail: entry.tail).map { [stage] + $0 }
        }
        if let index = heads.firstIndex(of: name) { return [2, index, 0] }
        if name.hasPrefix("decoder.") {
            return componentRank(String(name.dropFirst("decoder.".count)), tail: ["final_norm"]).map { [3] + $0 }
        }
        return ["class_logits", "class_probs"].firstIndex(of: name).map { [4, $0, 0] }
    }

    /// `pixel_values` (B, 3, H, W), with B = `batch` when given.
    static func readPixels(_ group: HDF5Group, path: String, batch: Int?) throws -> Tensor {
        guard group.contains("pixel_values") else { throw ToolError.input("\(path): \(group.path)/pixel_values is missing") }
        let shape = try group.dataset("pixel_values").shape
        guard shape.count == 4, shape[1] == 3, shape[0] > 0, batch.map({ $0 == shape[0] }) ?? true else {
            throw ToolError.input("\(path): inputs/pixel_values must be float32 (\(batch.map(String.init) ?? "B"), 3, H, W), found \(ShapeMath.describe(shape))")
        }
        guard shape[0] <= TraceLimits.maxBatch, shape[2] <= TraceLimits.maxImageSide, shape[3] <= TraceLimits.maxImageSide else {
            throw ToolError.input("\(path): inputs/pixel_values shape \(ShapeMath.describe(shape)) is over the limits "
                                    + "(batch \(TraceLimits.maxBatch), \(TraceLimits.maxImageSide) pixels a side)")
        }
        return try readFloat32(group, "pixel_values", path: path)
    }

    /// The inputs of a `prima` trace (Formats/prima-trace.md §10): one image, one unpadded text, the decoder's
    /// prompt and answer-prefix tokens and the class token ids.
    static func readPrimaInputs(_ group: HDF5Group, path: String) throws -> TraceSubject {
        func row(_ name: String) throws -> [Int] {
            let matrix = try readInt64Matrix(group, name, path: path)
            guard matrix.count == 1 else { throw ToolError.input("\(path): inputs/\(name) must have batch 1 in a prima trace") }
            return matrix[0]
        }
        let pixels = try readPixels(group, path: path, batch: 1)
        let ids = try row("input_ids")
        guard try row("attention_mask") == Array(repeating: 1, count: ids.count) else {
            throw ToolError.input("\(path): inputs/attention_mask must be all ones (one unpadded text) in a prima trace")
        }
        guard group.contains("class_token_ids") else { throw ToolError.input("\(path): inputs/class_token_ids is missing") }
        let classDataset = try group.dataset("class_token_ids")
        guard classDataset.storedTypeMatches(.i64), classDataset.shape.count == 1, classDataset.shape[0] > 0, classDataset.shape[0] < 1 << 20 else {
            throw ToolError.input("\(path): inputs/class_token_ids must be a non-empty 1-D int64 array")
        }
        let classIds = try classDataset.readAllBytes().withUnsafeBytes { Array($0.bindMemory(to: Int64.self)).map(Int.init) }
        return .prima(PrimaInputs(pixelValues: pixels, textIds: ids, promptIds: try row("prompt_ids"),
                                  answerPrefixIds: try row("answer_prefix_ids")), classTokenIds: classIds)
    }

    static func readFloat32(_ group: HDF5Group, _ name: String, path: String) throws -> Tensor {
        guard group.contains(name) else { throw ToolError.input("\(path): \(group.path)/\(name) is missing") }
        let dataset = try group.dataset(name)
        guard dataset.storedTypeMatches(.f32) else { throw ToolError.input("\(path): \(group.path)/\(name) is not float32") }
        guard let bytes = ShapeMath.byteCount(dataset.shape, .f32), bytes < 1 << 34 else {
            throw ToolError.input("\(path): \(group.path)/\(name) has an impossible shape")
        }
        let tensor = Tensor(zeros: dataset.shape, dtype: .f32)
        if bytes > 0 {
            try dataset.readRows(start: 0, count: dataset.shape.first ?? 1,
                                 into: UnsafeMutableRawBufferPointer(rebasing: tensor.storage.bytes[0..<bytes]))
        }
        return tensor
    }

    static func readInt64Matrix(_ group: HDF5Group, _ name: String, path: String) throws -> [[Int]] {
        guard group.contains(name) else { throw ToolError.input("\(path): \(group.path)/\(name) is missing") }
        let dataset = try group.dataset(name)
        guard dataset.storedTypeMatches(.i64), dataset.shape.count == 2, dataset.shape.allSatisfy({ $0 > 0 }),
              dataset.elementCount < 1 << 26 else {
            throw ToolError.input("\(path): \(group.path)/\(name) must be a non-empty int64 (B, T) array")
        }
        guard dataset.shape[0] <= TraceLimits.maxBatch, dataset.shape[1] <= TraceLimits.maxSequenceLength else {
            throw ToolError.input("\(path): \(group.path)/\(name) shape \(ShapeMath.describe(dataset.shape)) is over the "
                                    + "limits (batch \(TraceLimits.maxBatch), sequence \(TraceLimits.maxSequenceLength))")
        }
        let bytes = try dataset.readAllBytes()
        let values = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        let columns = dataset.shape[1]
        return (0..<dataset.shape[0]).map { row in values[(row * columns)..<((row + 1) * columns)].map { Int($0) } }
    }

    /// Writes this trace to `path` as a non-PyTorch writer, through an ``OutputTarget`` (temporary file beside
    /// it, renamed into place when complete). Refuses an existing `path` unless `overwrite`, and always an input
    /// of this run (the checkpoint, the trace read).
    public func write(to path: String, source: String, overwrite: Bool = false) throws {
        let target = try OutputTarget(destination: path, kind: .file, overwrite: overwrite)
        do {
            let file = try HDF5File.create(path: target.temporaryPath)
            try writeContents(into: file.root(), source: source)
            try file.close()
        } catch {
            throw ToolError.failed("\(path): cannot write trace: \(error)")
        }
        try target.commit()
    }

    /// Fills a new trace file's root group (kept apart so every group is closed before the file).
    private func writeContents(into root: HDF5Group, source: String) throws {
            try root.setAttribute("prima_trace_version", int: Trace.version)
            try root.setAttribute("component", string: componentName)
            try root.setAttribute("source", string: source)
            try root.setAttribute("torch_version", string: "")
            try root.setAttribute("transformers_version", string: "")
            try root.setAttribute("attn_implementation", string: "eager")
            try root.setAttribute("dtype", string: "float32")
            try root.setAttribute("producer", string: CheckpointFormat.tool)
            let inputGroup = try root.createGroup("inputs")
            func writeIds(_ name: String, _ matrix: [[Int]]) throws {
                let dataset = try inputGroup.createDataset(name, dtype: .i64, shape: [matrix.count, matrix.first?.count ?? 0])
                let flat = matrix.flatMap { $0.map(Int64.init) }
                try flat.withUnsafeBytes { try dataset.writeAll($0) }
            }
            switch subject {
            case .component(_, .pixels(let pixels)):
                try Self.writeTensor(inputGroup, "pixel_values", pixels)
            case .component(_, .tokens(let ids, let mask)):
                try writeIds("input_ids", ids)
                try writeIds("attention_mask", mask)
            case .prima(let inputs, let classIds):
                try Self.writeTensor(inputGroup, "pixel_values", inputs.pixelValues)
                try writeIds("input_ids", [inputs.textIds])
                try writeIds("attention_mask", [Array(repeating: 1, count: inputs.textIds.count)])
                try writeIds("prompt_ids", [inputs.promptIds])
                try writeIds("answer_prefix_ids", [inputs.answerPrefixIds])
                let dataset = try inputGroup.createDataset("class_token_ids", dtype: .i64, shape: [classIds.count])
                try classIds.map(Int64.init).withUnsafeBytes { try dataset.writeAll($0) }
            }
            let activationGroup = try root.createGroup("activations")
            for (order, activation) in activations.enumerated() {
                try Self.writeTensor(activationGroup, activation.name, activation.tensor)
                try activationGroup.dataset(activation.name).setAttribute("order", int: order)
            }
    }

    static func writeTensor(_ group: HDF5Group, _ name: String, _ tensor: Tensor) throws {
        let dataset = try group.createDataset(name, dtype: .f32, shape: tensor.shape)
        if tensor.elementCount > 0 { try tensor.withUnsafeBytes { try dataset.writeAll($0) } }
    }
}

