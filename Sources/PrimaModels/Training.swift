import PrimaTensor

/// The trainable tensors of a run and their gradients, keyed by checkpoint path: `ROLE/tensors/NAME` for a stored
/// tensor, `ROLE/lora/ADAPTER/tensors/STEM.lora_a` (and `.lora_b`) for a LoRA matrix (Formats/prima-checkpoint.md
/// §5, §6). A tensor without an entry is frozen: backward passes compute no gradient for it, only the input
/// gradients that reach trainable tensors. Gradients accumulate (a step sums its micro-batches); ``zero()`` starts
/// a step. A tied alias has no path of its own: its gradient is added to the stored tensor's, as PyTorch sums the
/// gradients of a shared parameter.
public final class GradientStore: @unchecked Sendable {
    /// Gradient buffers by path, f32, each of its tensor's shape.
    public private(set) var gradients: [String: Tensor] = [:]

    /// A store with a zero gradient for each (path, shape).
    public init(trainable: [(path: String, shape: [Int])]) {
        for (path, shape) in trainable { gradients[path] = Tensor(zeros: shape, dtype: .f32) }
    }

    /// The gradient buffer of `path`, nil when the tensor is frozen.
    public subscript(path: String) -> Tensor? { gradients[path] }

    /// Sets every gradient to zero.
    public func zero() {
        for tensor in gradients.values { tensor.withMutableFloat32 { $0.update(repeating: 0) } }
    }

    /// The path of stored tensor `name` of component `role`.
    public static func path(role: String, tensor name: String) -> String { "\(role)/tensors/\(name)" }

    /// The path of LoRA matrix `matrix` (`lora_a` or `lora_b`) of adapter `adapter` on weight stem `stem` (`X` of `X.weight`).
    public static func path(role: String, adapter: String, stem: String, matrix: String) -> String {
        "\(role)/lora/\(adapter)/tensors/\(stem).\(matrix)"
    }
}

/// A linear layer bound once at load: the stored weight (f32, or int8 for inference), its bias, its unmerged
/// adapters, and the checkpoint paths their gradients go to.
public struct BoundLinear: Sendable {
    /// The weight's canonical stem (`layers.0.attn.q` for `layers.0.attn.q.weight`).
    public let stem: String
    /// The component's role.
    public let role: String
    /// The stored weight without adapters.
    public let weight: LinearWeight
    /// The stored name the weight's gradient goes to (the tied target for an alias).
    public let weightName: String
    public let bias: Tensor?
    /// Unmerged adapters in storage order.
    public let adapters: [(name: String, lora: Linear.LoRA)]
    /// An int8 weight's plain values [M, K], scales and block size, kept for training (its input gradient).
    let int8Values: (values: Tensor, scales: Tensor, blockSize: Int)?

    /// What ``backward(_:input:saved:gradients:needsInputGradient:)`` needs from the forward pass: the input is the
    /// caller's; these are the adapters' hidden states x·Aᵀ [N, r].
    public struct Saved: Sendable {
        let hiddens: [Tensor]
    }

    /// y = x·Wᵀ + b + Σ scaling·(x·Aᵀ)·Bᵀ for x [N, K] → [N, M], and what backward needs. The output bits are those of
    /// the inference forward (`Linear.forward(_:weight:bias:activation:)` with the adapted weight).
    public func forward(_ x: Tensor) -> (output: Tensor, saved: Saved) {
        // An int8 weight loaded for training runs weight-only (x · W̃ᵀ in f32, QLoRA's forward), so that the backward
        // is its exact gradient; inference keeps the int8 × int8 kernels.
        let y = int8Values.map { Int8Linear.dequantizedForward(x, values: $0.values, scales: $0.scales, blockSize: $0.blockSize, bias: bias) }
            ?? Linear.forward(x, weight: weight, bias: bias)
        let hiddens = adapters.map { Linear.addLoRA($0.lora, input: x, to: y) }
        return (y, Saved(hiddens: hiddens))
    }

    /// Backward of ``forward(_:)`` from dy [N, M] and the forward's input x [N, K]: accumulates the gradients of the
    /// trainable weight, bias and adapter matrices into `gradients`, and returns dx [N, K] (nil when not needed).
    /// Every product is an sgemm (`Linear.backward`, `Linear.loraBackward`).
    public func backward(_ dy: Tensor, input x: Tensor, saved: Saved, gradients: GradientStore,
                         needsInputGradient: Bool = true) throws -> Tensor? {
        let weightGradient = gradients[GradientStore.path(role: role, tensor: weightName)]
        let biasGradient = gradients[GradientStore.path(role: role, tensor: stem + ".bias")]
        var dx: Tensor?
        switch (weight, int8Values) {
        case (.float(let w), _):
            dx = Linear.backward(dy, x: x, weight: w, weightGradient: weightGradient, biasGradient: biasGradient,
                                 needsInputGradient: needsInputGradient)
        case (.int8, let q?):
            // QLoRA-style: the int8 weight stays frozen; the input gradient goes through its dequantised values.
            guard weightGradient == nil, biasGradient == nil else {
                throw RuntimeError("\(role): \(stem) is int8: train adapters on it, or the float checkpoint")
            }
            dx = needsInputGradient ? Int8Linear.inputGradient(dy, values: q.values, scales: q.scales, blockSize: q.blockSize) : nil
        default:
            throw RuntimeError("\(role): \(stem): an int8 weight loaded for inference has no backward (load it for training)")
        }
        for ((name, lora), hidden) in zip(adapters, saved.hiddens) {
            Linear.loraBackward(dy, x: x, hidden: hidden, lora: lora,
                                aGradient: gradients[GradientStore.path(role: role, adapter: name, stem: stem, matrix: "lora_a")],
                                bGradient: gradients[GradientStore.path(role: role, adapter: name, stem: stem, matrix: "lora_b")],
                                addingInputGradientTo: dx)
        }
        return dx
    }
}

extension ModelWeights {
    /// Binds linear layer `stem` (`stem.weight`, optional `stem.bias`, its adapters); throws naming it if absent.
    public func bind(_ stem: String) throws -> BoundLinear {
        let name = stem + ".weight"
        guard let weight = baseLinear(name) else { throw RuntimeError("\(origin): missing tensor \(name)") }
        return BoundLinear(stem: stem, role: role, weight: weight, weightName: aliases[name] ?? name,
                           bias: optional(stem + ".bias"), adapters: adapters[name] ?? [], int8Values: int8Values(name))
    }

    /// Binds linear layer `stem` if it is stored, else the table `table` [V, C] as its weight (an LM head that
    /// multiplies by the embeddings without a stored alias).
    public func bind(_ stem: String, orTable table: String) throws -> BoundLinear {
        if baseLinear(stem + ".weight") != nil { return try bind(stem) }
        guard let weight = baseLinear(table) else { throw RuntimeError("\(origin): missing tensor \(table)") }
        return BoundLinear(stem: stem, role: role, weight: weight, weightName: storedName(table), bias: nil,
                           adapters: adapters[stem + ".weight"] ?? [], int8Values: int8Values(table))
    }

    /// The plain values [N, K], scales and block size of int8 weight `name` when they were kept (a training load).
    func int8Values(_ name: String) -> (values: Tensor, scales: Tensor, blockSize: Int)? { training ? quantized(name)?.rows : nil }

    /// The stored name a tensor's gradient goes to: its tied target, or itself.
    public func storedName(_ name: String) -> String { aliases[name] ?? name }
}

/// A component whose forward pass can be trained from token ids: a training forward that records a tape, and the
/// reverse walk.
public protocol TrainableEncoder: AnyObject {
    associatedtype Tape
    /// The final hidden state [B·T, C] (the inference forward's bits) and the tape; reports activations as the
    /// inference forward does.
    func trainingForward(ids: [[Int]], mask: [[Int]], observe: (String, Tensor) throws -> Void) throws -> (Tensor, Tape)
    /// From dLoss/d(final hidden state), accumulates trainable gradients, reports activation gradients, and returns
    /// dLoss/d(input embeddings) [B·T, C].
    @discardableResult
    func backward(_ dOutput: Tensor, tape: Tape, gradients: GradientStore, observe: (String, Tensor) throws -> Void) throws -> Tensor
}

/// A masked-LM head as BertForMaskedLM and ModernBertForMaskedLM compute it (Formats/prima-trace.md §11.4):
/// `decoder(LayerNorm(act(dense(x))))`, the decoder's weight usually the tied word embeddings.
struct MaskedLMHead {
    let dense: BoundLinear
    let norm: BoundNorm
    let decoder: BoundLinear
    let activation: Elementwise.Activation
    let eps: Float

    /// What ``backward(_:tape:gradients:)`` needs.
    struct Tape {
        let input: Tensor
        let dense: BoundLinear.Saved
        let preActivation: Tensor
        let norm: BoundNorm.Saved
        let normed: Tensor
        let decoder: BoundLinear.Saved
    }

    /// The head bound from `mlm.dense`, `mlm.norm`, `mlm.decoder`, or nil when the checkpoint has none.
    init?(_ weights: ModelWeights, activation: Elementwise.Activation, eps: Float) throws {
        guard weights.optional("mlm.dense.weight") != nil else { return nil }
        dense = try weights.bind("mlm.dense")
        norm = try BoundNorm(weights, "mlm.norm")
        decoder = try weights.bind("mlm.decoder")
        self.activation = activation
        self.eps = eps
    }

    /// Logits [N, V] of the final hidden state [N, C].
    func forward(_ hidden: Tensor) -> (Tensor, Tape) {
        let dense = self.dense.forward(hidden)
        let (normed, norm) = self.norm.forward(Elementwise.apply(activation, dense.output), eps: eps, training: true)
        let decoder = self.decoder.forward(normed)
        return (decoder.output, Tape(input: hidden, dense: dense.saved, preActivation: dense.output, norm: norm!,
                                     normed: normed, decoder: decoder.saved))
    }

    /// dLoss/d(hidden) [N, C] from dLoss/d(logits) [N, V]; the head's trainable gradients accumulate.
    func backward(_ dLogits: Tensor, tape: Tape, gradients: GradientStore) throws -> Tensor {
        let dNormed = try decoder.backward(dLogits, input: tape.normed, saved: tape.decoder, gradients: gradients)!
        let dActivated = norm.backward(dNormed, saved: tape.norm, gradients: gradients)
        let dPre = Elementwise.backward(activation, dActivated, x: tape.preActivation)
        return try dense.backward(dPre, input: tape.input, saved: tape.dense, gradients: gradients)!
    }
}

/// A text encoder with a masked-LM head (the `mlm` objective).
public protocol MaskedLanguageModel: TrainableEncoder {
    /// Logits [N, V] of the head on the final hidden state [N, C], and the backward from dLoss/d(logits) to
    /// dLoss/d(hidden) (the head's trainable gradients accumulate into `gradients`).
    func maskedLM(_ hidden: Tensor, gradients: GradientStore) throws -> (logits: Tensor, backward: (Tensor) throws -> Tensor)
}

/// A row-wise head (masked-LM, LM head) on rows `rows` of the final hidden state [N, C] (or [B, T, C]) only: logits
/// [R, V], row r being what the head gives for row rows[r], and the backward from dLoss/d(logits) [R, V] to
/// dLoss/d(hidden) (hidden's shape), zero in the other rows. A loss over the labelled positions has the same value
/// and gradients as with the head on every position, which computes every position's V logits only to give most
/// of them zero gradient (at 15% masking, 85% of a masked-LM head's work).
public func headOnRows(_ hidden: Tensor, rows: [Int], head: (Tensor) throws -> (logits: Tensor, backward: (Tensor) throws -> Tensor))
    rethrows -> (logits: Tensor, backward: (Tensor) throws -> Tensor) {
    let c = hidden.shape.last ?? 0, flat = [hidden.elementCount / max(c, 1), c]   // [N, C]
    let (logits, backward) = try head(embeddingLookup(hidden.reshaped(flat), [rows]))
    return (logits, { dLogits in
        let dHidden = Tensor(zeros: hidden.shape, dtype: .f32)
        scatterRows(try backward(dLogits), into: dHidden.reshaped(flat), rows: rows)
        return dHidden
    })
}

extension MaskedLMHead {
    /// ``MaskedLanguageModel/maskedLM(_:gradients:)`` for a model whose head is `head` (nil: none, an error naming `origin`).
    static func run(_ head: MaskedLMHead?, origin: String, hidden: Tensor, gradients: GradientStore) throws
        -> (logits: Tensor, backward: (Tensor) throws -> Tensor) {
        guard let head else { throw RuntimeError("\(origin): no masked-LM head (mlm.dense, mlm.norm, mlm.decoder)") }
        let (logits, tape) = head.forward(hidden)
        return (logits, { try head.backward($0, tape: tape, gradients: gradients) })
    }
}
