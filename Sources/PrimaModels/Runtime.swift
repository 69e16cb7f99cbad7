import PrimaCheckpoint
import PrimaJSON
import PrimaTensor

/// A runtime failure that names the component and tensor (missing weight, bad input shape, …).
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A component's weights by canonical name: float tensors as f32 (f16 and bf16 widened exactly on load),
/// int8-quantised ones (Formats/prima-checkpoint.md §7) packed for the int8 kernels; tied aliases share their
/// target. One copy of each weight is kept.
public struct ModelWeights: Sendable {
    /// Where the weights came from, for messages.
    public let origin: String
    private let tensors: [String: Tensor]
    private let quantized: [String: QuantizedWeight]
    /// The unmerged LoRA adapters of each adapted weight (§6), by adapter name, in adapter storage order.
    let adapters: [String: [(name: String, lora: Linear.LoRA)]]
    /// The component's role (the group name), the first part of every parameter's checkpoint path.
    public let role: String
    /// Tied aliases → the stored tensor they share (§5.3).
    let aliases: [String: String]
    /// Loaded for training: int8 weights keep their plain values and run weight-only (``BoundLinear``).
    let training: Bool

    /// An int8 weight, held in the form its uses need: packed for the int8 kernels when it multiplies (a Linear
    /// weight, or an embedding table with a tied head), and as plain values with scales when rows are looked up
    /// (an `embed.*` table). Keeping only what is used keeps one copy of a Linear weight.
    struct QuantizedWeight: Sendable {
        let packed: Int8Weight?
        let rows: (values: Tensor, scales: Tensor, blockSize: Int)?   // [N, K] i8, [N, blocks] f32
    }

    /// Reads every tensor of `component` but those named in `excluding` (non-weight tensors its owner reads itself).
    /// With `training`, int8 weights also keep their plain values and scales, which the input gradient through them
    /// needs (``BoundLinear/backward(_:input:saved:gradients:needsInputGradient:)``); inference keeps one copy.
    ///
    /// `extraAdapters` adds adapters that are not stored (a training stage's new adapter, before its first save),
    /// applied like stored ones.
    public init(component: ComponentReader, excluding: Set<String> = [], training: Bool = false, extraAdapters: [TrainingAdapter] = []) throws {
        origin = "\(component.checkpoint.path): \(component.name)"
        role = component.name
        self.training = training
        var tensors: [String: Tensor] = [:]
        var quantized: [String: QuantizedWeight] = [:]
        let records = try component.tensorRecords()
        let int8Names = Set(records.filter { $0.aliasOf == nil && $0.dtype == .i8 }.map(\.name))
        let companions = Set(int8Names.map(QuantizedTensorInfo.scalesName(for:)))
        let aliased = Set(records.compactMap(\.aliasOf))
        for record in records where record.aliasOf == nil && !companions.contains(record.name) && !excluding.contains(record.name) {
            if record.dtype == .i8 {
                let (info, values, scales) = try Int8Dequantizer.read(record.name, in: component)
                let table = record.name.hasPrefix("embed.")
                do {
                    let packed = !table || aliased.contains(record.name)
                        ? try Int8Weight(values: values, scales: scales.reshaped([values.shape[0], scales.elementCount / max(values.shape[0], 1)]),
                                         blockSize: info.blockSize)
                        : nil
                    quantized[record.name] = QuantizedWeight(packed: packed,
                                                             rows: table || training ? (values, scales, info.blockSize) : nil)
                } catch {
                    throw RuntimeError("\(origin): tensor \(record.name): \(error)")
                }
                continue
            }
            guard record.dtype.isWeightFloat else {
                throw RuntimeError("\(origin): tensor \(record.name) is \(record.dtype.rawValue); the runtime reads f32, f16, bf16 and int8 weights")
            }
            tensors[record.name] = try component.readTensor(record).toFloat32()
        }
        for record in records {
            guard let target = record.aliasOf else { continue }
            tensors[record.name] = tensors[target]
            quantized[record.name] = quantized[target]
        }
        self.tensors = tensors
        self.quantized = quantized
        aliases = Dictionary(records.compactMap { record in record.aliasOf.map { (record.name, $0) } }, uniquingKeysWith: { first, _ in first })
        var adapters = try Self.readAdapters(component)
        for extra in extraAdapters {
            if adapters.values.contains(where: { $0.contains { $0.name == extra.name } }) {
                throw RuntimeError("\(origin): adapter \(extra.name) is already stored")
            }
            for (target, lora) in extra.targets {
                guard let weight = tensors[target] ?? quantized[target]?.rows?.values, weight.shape == [lora.b.shape[0], lora.a.shape[1]] else {
                    throw RuntimeError("\(origin): adapter \(extra.name): no linear weight \(target) of shape [\(lora.b.shape[0]), \(lora.a.shape[1])]")
                }
                adapters[target, default: []].append((extra.name, lora))
            }
        }
        self.adapters = adapters
    }

    /// The live tensor behind `path` inside this component (a gradient path without the role:
    /// `tensors/NAME` or `lora/ADAPTER/tensors/STEM.lora_a|lora_b`): the storage the model computes with, so an
    /// optimiser updates it in place. nil when there is none (or it is int8, which does not train).
    public func parameter(_ path: String) -> Tensor? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 2, parts[0] == "tensors" { return tensors[storedName(parts[1])] }
        guard parts.count == 4, parts[0] == "lora", parts[2] == "tensors" else { return nil }
        for suffix in [".lora_a", ".lora_b"] where parts[3].hasSuffix(suffix) {
            let target = String(parts[3].dropLast(suffix.count)) + ".weight"
            guard let lora = adapters[target]?.first(where: { $0.name == parts[1] })?.lora else { return nil }
            return suffix == ".lora_a" ? lora.a : lora.b
        }
        return nil
    }

    /// Every unmerged adapter of `component` as f32 updates by target (merged ones are already in the weights).
    private static func readAdapters(_ component: ComponentReader) throws -> [String: [(name: String, lora: Linear.LoRA)]] {
        var adapters: [String: [(name: String, lora: Linear.LoRA)]] = [:]
        for name in try component.loraAdapterNames() {
            let (info, reader) = try component.loraAdapter(name)
            guard !info.merged else { continue }
            let records = Dictionary(try reader.tensorRecords().map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for target in info.targets {
                guard let a = records[LoraAdapterInfo.aName(for: target)], let b = records[LoraAdapterInfo.bName(for: target)] else {
                    throw RuntimeError("\(component.checkpoint.path): \(component.name)/lora/\(name): target \(target) has no lora_a/lora_b")
                }
                adapters[target, default: []].append(
                    (name, Linear.LoRA(a: try reader.readTensor(a).toFloat32(), b: try reader.readTensor(b).toFloat32(), scaling: info.scale)))
            }
        }
        return adapters
    }

    /// The tensor `name` as f32; an int8 `embed.*` table is dequantised (ŵ = q · s); throws naming it if absent
    /// or if it is an int8 weight that only multiplies.
    public func callAsFunction(_ name: String) throws -> Tensor {
        // An adapter applies where the weight multiplies as a linear layer; read any other way it would be lost.
        if adapters[name] != nil { throw RuntimeError("\(origin): tensor \(name) has a LoRA adapter but is not used as a linear weight") }
        if let tensor = tensors[name] { return tensor }
        if let rows = quantized[name]?.rows { return Self.dequantize(rows, rows: Array(0..<rows.values.shape[0])) }
        if quantized[name] != nil { throw RuntimeError("\(origin): tensor \(name) is int8 and only usable as a linear weight") }
        throw RuntimeError("\(origin): missing tensor \(name)")
    }

    /// Throws naming `name` unless the weights hold it (float or int8), without materialising anything.
    public func require(_ name: String) throws {
        guard tensors[name] != nil || quantized[name] != nil else { throw RuntimeError("\(origin): missing tensor \(name)") }
    }

    /// Rows `ids` of embedding table `name` [V, C] as [ids.count, C] f32, dequantising only those rows of an int8
    /// table.
    public func embeddingRows(_ name: String, _ ids: [Int]) throws -> Tensor {
        if adapters[name] != nil { throw RuntimeError("\(origin): tensor \(name) has a LoRA adapter but is read as an embedding table") }
        if let rows = quantized[name]?.rows { return Self.dequantize(rows, rows: ids) }
        return embeddingLookup(try self(name), [ids])
    }

    /// ŵ[row] = Float(q[row]) · s[row, block] for the given rows.
    private static func dequantize(_ table: (values: Tensor, scales: Tensor, blockSize: Int), rows: [Int]) -> Tensor {
        let k = table.values.shape[1], blocks = table.scales.elementCount / max(table.values.shape[0], 1)
        let out = Tensor(zeros: [rows.count, k], dtype: .f32)
        let scales = table.scales.float32Values()
        table.values.withUnsafeBytes { raw in
            let q = raw.bindMemory(to: Int8.self)
            out.withMutableFloat32 { y in
                for (n, row) in rows.enumerated() {
                    for i in 0..<k { y[n * k + i] = Float(q[row * k + i]) * scales[row * blocks + i / table.blockSize] }
                }
            }
        }
        return out
    }

    /// The tensor `name` if present.
    public func optional(_ name: String) -> Tensor? { tensors[name] }

    /// The int8 form of weight `name`, if it is int8.
    func quantized(_ name: String) -> QuantizedWeight? { quantized[name] }

    /// The weight of a linear layer, `name` ending in `.weight`; throws naming it if absent.
    public func linear(_ name: String) throws -> LinearWeight {
        guard let weight = optionalLinear(name) else { throw RuntimeError("\(origin): missing tensor \(name)") }
        return weight
    }

    /// The weight of a linear layer if present.
    public func optionalLinear(_ name: String) -> LinearWeight? {
        guard let base = baseLinear(name) else { return nil }
        if let updates = adapters[name] { return .adapted(base, updates.map(\.lora)) }
        return base
    }

    /// The stored weight of a linear layer, without adapters.
    func baseLinear(_ name: String) -> LinearWeight? {
        if let weight = quantized[name] {
            // An int8 table without a tied head is never multiplied; dequantise it if a model does (a rare path).
            if let packed = weight.packed { return .int8(packed) }
            return weight.rows.map { .float(Self.dequantize($0, rows: Array(0..<$0.values.shape[0]))) }
        }
        return tensors[name].map { .float($0) }
    }

}

/// A linear layer's weight [N, K] as the runtime holds it.
public indirect enum LinearWeight: Sendable {
    /// f32 (widened from f16/bf16 on load).
    case float(Tensor)
    /// int8 with f32 scales, packed for the int8 kernels (activations quantised per row on the fly).
    case int8(Int8Weight)
    /// A base weight with unmerged LoRA adapters (§6): `W x + Σ scaling · B (A x)`.
    case adapted(LinearWeight, [Linear.LoRA])
}

extension Linear {
    /// x [M, K] · weight [N, K]ᵀ + bias [N] → [M, N], then `activation` if given (fused into the product's
    /// threads), on the path the weight's storage calls for. LoRA adapters are added before the activation
    /// (``Linear/addLoRA(_:input:to:)``).
    public static func forward(_ x: Tensor, weight: LinearWeight, bias: Tensor? = nil,
                               activation: Elementwise.Activation? = nil) -> Tensor {
        switch weight {
        case .float(let tensor):
            return forward(x, weight: tensor, bias: bias, activation: activation)
        case .int8(let weight):
            return Int8Linear.forward(x, weight: weight, bias: bias, activation: activation)
        case .adapted(let base, let adapters):
            let y = forward(x, weight: base, bias: bias)
            for adapter in adapters { addLoRA(adapter, input: x, to: y) }
            return activation.map { Elementwise.apply($0, y) } ?? y
        }
    }
}

/// The inputs of one forward pass.
public enum ModelInputs: Sendable {
    /// Token ids and attention mask, both [B][T], right-padded.
    case tokens(ids: [[Int]], mask: [[Int]])
    /// Pixel values [B, 3, H, W], already preprocessed.
    case pixels(Tensor)

    /// The batch size.
    public var batch: Int {
        switch self {
        case .tokens(let ids, _): ids.count
        case .pixels(let tensor): tensor.shape.first ?? 0
        }
    }
}

/// A component that runs forward, reporting each named activation (Formats/prima-trace.md) to `observe` as a
/// tensor [B·T, C] (or [B·T, V] for logits), in order.
public protocol ComponentModel: Sendable {
    /// Runs the component and returns its final hidden state [B·T, C].
    func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor
}

/// A runtime text encoder (BERT or ModernBERT), with its configuration as PRIMA sees it.
public protocol TextEncoderModel: ComponentModel {
    var textConfig: any TextEncoderConfig { get }
}

/// Loads the runtime model of a checkpoint component: every stored part through `StoredValidation` (the typed
/// `config/` checked against files/config.json, every tensor's shape and dtype) before a weight is read, then the
/// weights (for `training`, with what backward passes need of int8 weights).
public func loadComponentModel(_ component: ComponentReader, training: Bool = false, extraAdapters: [TrainingAdapter] = []) throws
    -> any ComponentModel {
    try StoredValidation.validate(component)
    let config = try StoredConfig.read(component)
    let weights = try ModelWeights(component: component, training: training, extraAdapters: extraAdapters)
    switch config {
    case let config as Qwen3Config: return try Qwen3Model(config: config, weights: weights)
    case let config as ModernBERTConfig: return try ModernBERTModel(config: config, weights: weights)
    case let config as BERTConfig: return try BERTModel(config: config, weights: weights)
    case let config as DINOv3ViTConfig: return try DINOv3ViTModel(config: config, weights: weights)
    default: throw RuntimeError("\(component.checkpoint.path): \(component.name): no runtime for \(type(of: config).architecture.rawValue)")
    }
}

/// A LoRA adapter that a training stage adds to a component before it is stored (Formats/prima-training.md §4):
/// its name and, per target weight `X.weight`, the f32 matrices the optimiser will update in place.
public struct TrainingAdapter: Sendable {
    public let name: String
    public let targets: [(target: String, lora: Linear.LoRA)]

    public init(name: String, targets: [(target: String, lora: Linear.LoRA)]) {
        self.name = name
        self.targets = targets
    }
}

/// The live tensor of `model` at `path` (``ModelWeights/parameter(_:)``).
public func parameter(of model: any ComponentModel, _ path: String) -> Tensor? {
    switch model {
    case let model as DINOv3ViTModel: model.weights.parameter(path)
    case let model as BERTModel: model.weights.parameter(path)
    case let model as ModernBERTModel: model.weights.parameter(path)
    case let model as Qwen3Model: model.weights.parameter(path)
    default: nil
    }
}

/// The activation a config's `field` names; throws naming the component if the runtime does not implement it.
func requireActivation(_ name: String, field: String, weights: ModelWeights) throws -> Elementwise.Activation {
    guard let activation = Elementwise.Activation(configName: name) else {
        throw RuntimeError("\(weights.origin): unsupported \(field) \(name)")
    }
    return activation
}

/// Checks token inputs: B ≥ 1 rows of equal length T ≥ 1, ids in [0, vocab), mask values 0 or 1.
func validateTokens(_ ids: [[Int]], _ mask: [[Int]], vocabulary: Int, maxPositions: Int? = nil) throws -> (batch: Int, length: Int) {
    guard let length = ids.first?.count, length > 0, ids.allSatisfy({ $0.count == length }),
          mask.count == ids.count, mask.allSatisfy({ $0.count == length }) else {
        throw RuntimeError("input_ids and attention_mask must be non-empty [B, T] arrays of the same shape")
    }
    if let bad = ids.joined().first(where: { $0 < 0 || $0 >= vocabulary }) {
        throw RuntimeError("input id \(bad) is outside the vocabulary of \(vocabulary)")
    }
    guard mask.joined().allSatisfy({ $0 == 0 || $0 == 1 }) else { throw RuntimeError("attention_mask values must be 0 or 1") }
    if let maxPositions, length > maxPositions {
        throw RuntimeError("sequence of \(length) tokens exceeds max_position_embeddings \(maxPositions)")
    }
    return (ids.count, length)
}

/// Gathers embedding rows: table [V, C], ids [B][T] → [B·T, C].
func embeddingLookup(_ table: Tensor, _ ids: [[Int]]) -> Tensor {
    let c = table.shape[1]
    let flat = ids.flatMap { $0 }
    let out = Tensor(zeros: [flat.count, c], dtype: .f32)
    table.withFloat32 { rows in out.withMutableFloat32 { dst in
        for (n, id) in flat.enumerated() { (dst.baseAddress! + n * c).update(from: rows.baseAddress! + id * c, count: c) }
    } }
    return out
}

/// Writes row r of `source` [R, C] into row rows[r] of `target` [M, C] (the backward of gathering those rows).
public func scatterRows(_ source: Tensor, into target: Tensor, rows: [Int]) {
    let c = target.shape[1]
    source.withFloat32 { src in target.withMutableFloat32 { dst in
        for (r, row) in rows.enumerated() { (dst.baseAddress! + row * c).update(from: src.baseAddress! + r * c, count: c) }
    } }
}

/// Columns `ids` of x [N, C] → [N, ids.count].
func gatherColumns(_ x: Tensor, _ ids: [Int]) -> Tensor {
    let c = x.shape[1], n = x.shape[0]
    let out = Tensor(zeros: [n, ids.count], dtype: .f32)
    x.withFloat32 { input in out.withMutableFloat32 { dst in
        for row in 0..<n { for (j, id) in ids.enumerated() { dst[row * ids.count + j] = input[row * c + id] } }
    } }
    return out
}

/// RMSNorm applied to each D-wide head slice of x [N, H·D] with one shared weight [D] (Qwen3's q/k norms).
func headwiseRMSNorm(_ x: Tensor, heads: Int, headDim: Int, weight: Tensor, eps: Float) -> Tensor {
    Normalization.rmsNorm(x.reshaped([x.shape[0] * heads, headDim]), weight: weight, eps: eps).reshaped(x.shape)
}
