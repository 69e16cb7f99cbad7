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
    /// Most class token ids in a `prima` trace: 65,536 (PRIMA's task has 6 classes).
    public static let maxClasses = 65_536
}

/// What a trace ran: one component on its inputs, the whole PRIMA pipeline (component `prima`), or the encoders
/// and heads of a `prima` gradient trace on a batch of cases (objectives `image_ce`, `alignment`).
public enum TraceSubject: Sendable {
    case component(ComponentRole, ModelInputs)
    case prima(PrimaInputs, classTokenIds: [Int])
    case primaBatch(PrimaBatchInputs)
}

/// The model inputs of a `prima` gradient trace over a batch of cases (Formats/prima-trace.md §11.11).
public struct PrimaBatchInputs: Sendable {
    /// [B, 3, H, W] (`image_ce`) or [2N, 3, H, W], view 1 of each case then view 2 (`alignment`).
    public let pixelValues: Tensor
    /// `alignment`: the right-padded texts [N][T] and their attention mask; nil for `image_ce`.
    public let textIds: [[Int]]?
    public let textMask: [[Int]]?
}

/// A reference trace (Formats/prima-trace.md): a component's (or the pipeline's) inputs and its named activations
/// in forward order.
public struct Trace: Sendable {
    /// The newest trace version this build reads.
    public static let version = 2
    /// The version of forward traces (this writer's): gradient traces alone are version 2 (§11).
    public static let forwardVersion = 1

    public let subject: TraceSubject
    /// The file this trace was read from (nil for one made in memory): errors about the trace name it.
    public let path: String?
    /// Activations in forward order (by their `order` attribute), each float32 with its stored shape.
    public let activations: [(name: String, tensor: Tensor)]
    /// What the decoder read when a `prima` trace was made: its root attribute `decoder_inputs` (Formats/prima-trace.md
    /// §10.1; absent, and for a component trace: image and metadata). It must be the checkpoint's.
    public let decoderInputs: PrimaDecoderInputs

    /// The `component` attribute: `image_encoder`, `text_encoder`, `decoder` or `prima`.
    public var componentName: String {
        switch subject {
        case .component(let role, _): role.rawValue
        case .prima, .primaBatch: "prima"
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

    /// The mask restricting the comparison of activation `name` of rank `rank` to real positions (§6 rule 1,
    /// §10.4, §11.11): a component's (B, T, …) tensors; in a `prima` trace only the text encoder's activations and
    /// `alignment.text_local` of a padded batch. nil: compare everything.
    public func comparisonMask(for name: String, rank: Int) -> [[Int]]? {
        switch subject {
        case .component: rank == 3 ? attentionMask : nil
        case .prima: nil
        case .primaBatch(let inputs): name.hasPrefix("text_encoder.") || name == "alignment.text_local" ? inputs.textMask : nil
        }
    }

    /// A trace made in memory (the runtime's own, or a test's), to be written with ``write(to:source:overwrite:)``.
    public init(subject: TraceSubject, activations: [(name: String, tensor: Tensor)], decoderInputs: PrimaDecoderInputs = .imageAndMetadata) {
        self.subject = subject
        self.activations = activations
        self.decoderInputs = decoderInputs
        path = nil
    }

    /// Reads and validates a trace file against Formats/prima-trace.md §1-§4 (and §10 for `prima`): the root
    /// attributes of §2 with `attn_implementation` = `eager` and `dtype` = `float32`, exactly the groups `/inputs` and
    /// `/activations` under the root, exactly the component's inputs (§3, §10.2) with right-padded 0/1 attention
    /// masks, finite float32 values, and activation names and `order` attributes as §4 says. Every problem is one
    /// error naming this file and the object (bad input). What depends on the checkpoint (vocabulary, patch size,
    /// the activations the runtime produces) is checked when the trace is run (``TraceContract``).
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
            func rootString(_ name: String) throws -> String {
                guard root.hasAttribute(name) else { throw fail("root attribute \(name) is missing (Formats/prima-trace.md §2)") }
                guard let value = try? root.stringAttribute(name) else { throw fail("root attribute \(name) is not a string") }
                return value
            }
            let componentName = try rootString("component")
            let role = ComponentRole(rawValue: componentName)
            guard role != nil || componentName == "prima" else { throw fail("unknown component \"\(componentName)\"") }
            do {
                decoderInputs = role == nil ? try PrimaDecoderInputs.read(from: root, origin: path) : .imageAndMetadata
            } catch {
                throw ToolError.input("\(error)")
            }
            for name in ["source", "torch_version", "transformers_version"] { _ = try rootString(name) }
            for (name, required, meaning) in [("attn_implementation", "eager", "the explicit softmax attention"),
                                              ("dtype", "float32", "a float32 computation")] {
                let value = try rootString(name)
                guard value == required else {
                    throw fail("root attribute \(name) is \"\(value)\", not \"\(required)\": a trace records \(meaning) (Formats/prima-trace.md §2)")
                }
            }
            // §1: the root holds the two groups and nothing else (a gradient trace, version 2, the five of §11.1,
            // which GradientTrace checks).
            let alignment = version == 2 && componentName == "prima" && (try? root.stringAttribute("objective")) == "alignment"
            let rootChildren = Set(version == 2 ? ["inputs", "activations", "activation_gradients", "loss", "gradients"] + (alignment ? ["loss_terms"] : [])
                                                : ["inputs", "activations"])
            for name in try root.linkNames() where !rootChildren.contains(name) {
                throw fail(version == 2 ? "/\(name) is not part of a gradient trace (Formats/prima-trace.md §11.1)"
                                        : "/\(name): the root of a trace holds only the groups inputs and activations (Formats/prima-trace.md §1)")
            }
            for name in ["inputs", "activations"] {
                guard root.contains(name) else { throw fail("/\(name) is missing (Formats/prima-trace.md §1)") }
                guard case .group = try root.linkKind(name) else { throw fail("/\(name) is not a group") }
            }
            let inputs = try root.group("inputs")
            // A prima gradient trace over a batch of cases has its own inputs (§11.11).
            let batchObjective = componentName == "prima" && version == 2 && root.hasAttribute("objective")
                ? Self.batchInputNames[(try? root.stringAttribute("objective")) ?? ""] : nil
            // A gradient trace adds its objective's input (§11.3; GradientTrace checks which).
            let expected = batchObjective ?? ((componentName == "prima" ? Self.primaInputNames
                : role == .imageEncoder ? ["pixel_values"] : ["input_ids", "attention_mask"])
                + (version == 2 ? ["output_weights", "labels"] : []))
            for name in try inputs.linkNames() where !expected.contains(name) {
                throw fail("/inputs/\(name) is not an input of component \(componentName) (its trace holds \(expected.joined(separator: ", ")) "
                           + "and nothing else; Formats/prima-trace.md \(componentName == "prima" ? "§10.2" : "§3"))")
            }
            if let role {
                if role == .imageEncoder {
                    subject = .component(role, .pixels(try Self.readPixels(inputs, path: path, batch: nil)))
                } else {
                    let ids = try Self.readInt64Matrix(inputs, "input_ids", path: path)
                    let mask = try Self.readInt64Matrix(inputs, "attention_mask", path: path)
                    guard ids.count == mask.count, zip(ids, mask).allSatisfy({ $0.count == $1.count }) else {
                        throw fail("/inputs/input_ids and /inputs/attention_mask differ in shape")
                    }
                    try Self.checkMask(mask, path: path)
                    subject = .component(role, .tokens(ids: ids, mask: mask))
                }
            } else if let batchObjective {
                let pixels = try Self.readPixels(inputs, path: path, batch: nil)
                var ids: [[Int]]?, mask: [[Int]]?
                if batchObjective.contains("input_ids") {
                    let (readIds, readMask) = (try Self.readInt64Matrix(inputs, "input_ids", path: path), try Self.readInt64Matrix(inputs, "attention_mask", path: path))
                    guard readIds.count == readMask.count, zip(readIds, readMask).allSatisfy({ $0.count == $1.count }) else {
                        throw fail("/inputs/input_ids and /inputs/attention_mask differ in shape")
                    }
                    try Self.checkMask(readMask, path: path)
                    (ids, mask) = (readIds, readMask)
                }
                subject = .primaBatch(PrimaBatchInputs(pixelValues: pixels, textIds: ids, textMask: mask))
            } else {
                subject = try Self.readPrimaInputs(inputs, path: path)
            }
            let group = try root.group("activations")
            var found: [(order: Int?, name: String, tensor: Tensor)] = []
            var totalBytes = 0
            for name in try group.linkNames() {
                guard Self.isActivationName(name) else {
                    throw fail("/activations/\(name): not an activation name ([A-Za-z_][A-Za-z0-9_]*(.[A-Za-z0-9_]+)*, Formats/prima-trace.md §4.1)")
                }
                let dataset = try group.dataset(name)
                var order: Int?
                if dataset.hasAttribute("order") {
                    guard let value = try? dataset.intAttribute("order") else { throw fail("/activations/\(name): order is not an integer") }
                    order = value
                }
                let bytes = ShapeMath.byteCount(dataset.shape, .f32) ?? Int.max
                guard bytes <= TraceLimits.maxActivationBytes else {
                    throw fail("/activations/\(name): shape \(ShapeMath.describe(dataset.shape)) is more than the "
                               + "limit of \(TraceLimits.maxActivationBytes) bytes per activation")
                }
                totalBytes += bytes
                guard totalBytes <= TraceLimits.maxTotalActivationBytes else {
                    throw fail("/activations: more than the limit of \(TraceLimits.maxTotalActivationBytes) bytes in all")
                }
                found.append((order, name, try Self.readFloat32(group, name, path: path)))
            }
            if found.allSatisfy({ $0.order == nil }) {
                // No `order` attributes: the names alone must fix the order (Formats/prima-trace.md §4.2).
                let ranked = try found.map { entry -> (rank: [Int], name: String, tensor: Tensor) in
                    guard let rank = Self.forwardRank(of: entry.name, prima: componentName == "prima") else {
                        throw fail("/activations/\(entry.name) has no order attribute, and its name does not fix its place in the forward pass")
                    }
                    return (rank, entry.name, entry.tensor)
                }
                activations = ranked.sorted { $0.rank.lexicographicallyPrecedes($1.rank) }.map { ($0.name, $0.tensor) }
            } else {
                if let missing = found.first(where: { $0.order == nil }) {
                    throw fail("/activations/\(missing.name) has no order attribute while others have one")
                }
                let orders = found.compactMap(\.order).sorted()
                guard orders == Array(0..<found.count) else { throw fail("activation order attributes are not 0..<\(found.count)") }
                activations = found.sorted { $0.order! < $1.order! }.map { ($0.name, $0.tensor) }
            }
            self.path = path
        } catch let error as ToolError {
            throw error
        } catch let error as HDF5Error where error.file == path {
            throw ToolError.input(error.description)
        } catch {
            throw fail("\(error)")
        }
    }

    /// The inputs of a `prima` trace, in the order of Formats/prima-trace.md §10.2.
    static let primaInputNames = ["pixel_values", "input_ids", "attention_mask", "prompt_ids", "answer_prefix_ids", "class_token_ids"]
    /// The inputs of a `prima` gradient trace over a batch of cases, by objective (§11.11).
    static let batchInputNames = ["image_ce": ["pixel_values", "labels"],
                                  "alignment": ["pixel_values", "input_ids", "attention_mask", "soft_targets"]]

    /// Whether `name` has the form of Formats/prima-trace.md §4.1: `[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*`.
    static func isActivationName(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        func word(_ part: Substring) -> Bool {
            !part.isEmpty && part.unicodeScalars.allSatisfy { $0.isASCII && ($0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0)) }
        }
        guard let first = parts.first?.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return false }
        return parts.allSatisfy(word)
    }

    /// The text rules of Formats/prima-trace.md §3: attention_mask holds only 0 and 1, every row right-padded
    /// (`1…1 0…0`) with at least one 1, and T the longest row's length (some row has no padding).
    static func checkMask(_ mask: [[Int]], path: String) throws {
        for (b, row) in mask.enumerated() {
            if let bad = row.first(where: { $0 != 0 && $0 != 1 }) {
                throw ToolError.input("\(path): /inputs/attention_mask holds \(bad) in row \(b); its values are 0 and 1 (Formats/prima-trace.md §3)")
            }
            guard row.contains(1) else {
                throw ToolError.input("\(path): /inputs/attention_mask row \(b) has no real token (every row holds at least one 1; Formats/prima-trace.md §3)")
            }
            let length = row.prefix { $0 == 1 }.count
            if let position = row[length...].firstIndex(of: 1) {
                throw ToolError.input("\(path): /inputs/attention_mask row \(b) is not right-padded: a 1 at position \(position) follows a 0 "
                                      + "(rows are 1…1 0…0; Formats/prima-trace.md §3)")
            }
        }
        guard mask.contains(where: { $0.last == 1 }) else {
            throw ToolError.input("\(path): /inputs/attention_mask: every row ends in padding, but T is the longest sequence's length (Formats/prima-trace.md §3)")
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

    /// `pixel_values` (B, 3, H, W) of finite values, with B = `batch` when given.
    static func readPixels(_ group: HDF5Group, path: String, batch: Int?) throws -> Tensor {
        guard group.contains("pixel_values") else { throw ToolError.input("\(path): /inputs/pixel_values is missing") }
        let shape = try group.dataset("pixel_values").shape
        guard shape.count == 4, shape[1] == 3, shape[0] > 0, batch.map({ $0 == shape[0] }) ?? true else {
            throw ToolError.input("\(path): /inputs/pixel_values must be float32 (\(batch.map(String.init) ?? "B"), 3, H, W), found \(ShapeMath.describe(shape))")
        }
        guard shape[0] <= TraceLimits.maxBatch, shape[2] <= TraceLimits.maxImageSide, shape[3] <= TraceLimits.maxImageSide else {
            throw ToolError.input("\(path): /inputs/pixel_values shape \(ShapeMath.describe(shape)) is over the limits "
                                    + "(batch \(TraceLimits.maxBatch), \(TraceLimits.maxImageSide) pixels a side)")
        }
        return try readFloat32(group, "pixel_values", path: path)
    }

    /// The inputs of a `prima` trace (Formats/prima-trace.md §10.2): one image, one unpadded text, the decoder's
    /// prompt and answer-prefix tokens (either may be empty) and distinct class token ids.
    static func readPrimaInputs(_ group: HDF5Group, path: String) throws -> TraceSubject {
        func row(_ name: String, mayBeEmpty: Bool = false) throws -> [Int] {
            let matrix = try readInt64Matrix(group, name, path: path, mayBeEmpty: mayBeEmpty)
            guard matrix.count == 1 else { throw ToolError.input("\(path): /inputs/\(name) must have batch 1 in a prima trace") }
            return matrix[0]
        }
        let pixels = try readPixels(group, path: path, batch: 1)
        let ids = try row("input_ids")
        guard try row("attention_mask") == Array(repeating: 1, count: ids.count) else {
            throw ToolError.input("\(path): /inputs/attention_mask must be all ones (one unpadded text) in a prima trace")
        }
        let promptIds = try row("prompt_ids", mayBeEmpty: true), answerPrefixIds = try row("answer_prefix_ids", mayBeEmpty: true)
        guard group.contains("class_token_ids") else { throw ToolError.input("\(path): /inputs/class_token_ids is missing") }
        let classDataset = try group.dataset("class_token_ids")
        guard classDataset.storedTypeMatches(.i64), classDataset.shape.count == 1, classDataset.shape[0] > 0,
              classDataset.shape[0] <= TraceLimits.maxClasses else {
            throw ToolError.input("\(path): /inputs/class_token_ids must be a 1-D int64 array of 1 to \(TraceLimits.maxClasses) ids, "
                                  + "found \(ShapeMath.describe(classDataset.shape))")
        }
        let classIds = try classDataset.readAllBytes().withUnsafeBytes { Array($0.bindMemory(to: Int64.self)).map(Int.init) }
        var seen = Set<Int>()
        if let repeated = classIds.first(where: { !seen.insert($0).inserted }) {
            throw ToolError.input("\(path): /inputs/class_token_ids holds \(repeated) twice (the ids are distinct; Formats/prima-trace.md §10.2)")
        }
        return .prima(PrimaInputs(pixelValues: pixels, textIds: ids, promptIds: promptIds, answerPrefixIds: answerPrefixIds),
                      classTokenIds: classIds)
    }

    /// A float32 dataset of `group` with finite values (Formats/prima-trace.md §3, §4.1).
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
        let nonFinite = tensor.withFloat32 { values in values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
        guard nonFinite == 0 else {
            throw ToolError.input("\(path): \(group.path)/\(name) holds \(nonFinite) NaN or infinite values (a trace's values are "
                                  + "finite, padded positions included; Formats/prima-trace.md §1.3)")
        }
        return tensor
    }

    /// An int64 (B, T) dataset of `group` within the limits; T may be 0 only when `mayBeEmpty`.
    static func readInt64Matrix(_ group: HDF5Group, _ name: String, path: String, mayBeEmpty: Bool = false) throws -> [[Int]] {
        guard group.contains(name) else { throw ToolError.input("\(path): \(group.path)/\(name) is missing") }
        let dataset = try group.dataset(name)
        guard dataset.storedTypeMatches(.i64), dataset.shape.count == 2, dataset.shape[0] > 0, mayBeEmpty || dataset.shape[1] > 0 else {
            throw ToolError.input("\(path): \(group.path)/\(name) must be a\(mayBeEmpty ? "n" : " non-empty") int64 (B, T) array")
        }
        guard dataset.shape[0] <= TraceLimits.maxBatch, dataset.shape[1] <= TraceLimits.maxSequenceLength else {
            throw ToolError.input("\(path): \(group.path)/\(name) shape \(ShapeMath.describe(dataset.shape)) is over the "
                                    + "limits (batch \(TraceLimits.maxBatch), sequence \(TraceLimits.maxSequenceLength))")
        }
        let columns = dataset.shape[1]
        guard columns > 0 else { return Array(repeating: [], count: dataset.shape[0]) }
        let values = try dataset.readAllBytes().withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
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
            try root.setAttribute("prima_trace_version", int: Trace.forwardVersion)
            try root.setAttribute("component", string: componentName)
            try root.setAttribute("source", string: source)
            try root.setAttribute("torch_version", string: "")
            try root.setAttribute("transformers_version", string: "")
            try root.setAttribute("attn_implementation", string: "eager")
            try root.setAttribute("dtype", string: "float32")
            try root.setAttribute("producer", string: CheckpointFormat.tool)
            try decoderInputs.write(to: root)
            let inputGroup = try root.createGroup("inputs")
            func writeIds(_ name: String, _ matrix: [[Int]]) throws {
                let dataset = try inputGroup.createDataset(name, dtype: .i64, shape: [matrix.count, matrix.first?.count ?? 0])
                let flat = matrix.flatMap { $0.map(Int64.init) }
                if !flat.isEmpty { try flat.withUnsafeBytes { try dataset.writeAll($0) } }   // a prompt may be empty (§10.2)
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
            case .primaBatch:
                throw ToolError.input("a trace over a batch of cases is a gradient trace (Formats/prima-trace.md §11.11); this writer writes forward traces")
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

