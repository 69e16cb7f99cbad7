import PrimaTensor

/// Qwen3 forward and backward passes (transformers `Qwen3ForCausalLM`, eager attention, fp32).
///
/// Per layer: RMSNorm → q/k/v projections → per-head RMSNorm on q and k (before RoPE) → rotate-half RoPE
/// (theta from the config) → causal + padding attention with grouped KV heads, scale D^-0.5 → output projection
/// and residual; RMSNorm → SwiGLU MLP (silu on gate) → residual. Then the final RMSNorm and the LM head (tied to
/// the embeddings or not). Activations: `embeddings`, `layers.N`, `final_norm`, `logits`.
///
/// Weights are bound once at load; the inference forward and the training forward are one walk, the training one
/// recording what the backward walk (in reverse) needs.
public final class Qwen3Model: ComponentModel, TrainableEncoder {
    public let config: Qwen3Config
    let weights: ModelWeights
    let activation: Elementwise.Activation
    let layers: [Layer]
    let finalNorm: BoundRMSNorm
    /// The output projection [V, C]: lm_head, or the embeddings when tied.
    let head: BoundLinear

    /// One decoder block's weights.
    struct Layer {
        let attnNorm, mlpNorm, qNorm, kNorm: BoundRMSNorm
        let q, k, v, o, gate, up, down: BoundLinear
    }

    public init(config: Qwen3Config, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenAct, field: "hidden_act", weights: weights)
        try weights.require("embed.tokens")
        layers = try (0..<config.layerCount).map { n in
            let l = "layers.\(n)."
            return Layer(attnNorm: try BoundRMSNorm(weights, l + "attn_norm"), mlpNorm: try BoundRMSNorm(weights, l + "mlp_norm"),
                         qNorm: try BoundRMSNorm(weights, l + "attn.q_norm"), kNorm: try BoundRMSNorm(weights, l + "attn.k_norm"),
                         q: try weights.bind(l + "attn.q"), k: try weights.bind(l + "attn.k"), v: try weights.bind(l + "attn.v"),
                         o: try weights.bind(l + "attn.o"), gate: try weights.bind(l + "mlp.gate"), up: try weights.bind(l + "mlp.up"),
                         down: try weights.bind(l + "mlp.down"))
        }
        finalNorm = try BoundRMSNorm(weights, "final_norm")
        head = try weights.bind("lm_head", orTable: "embed.tokens")
    }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .tokens(let ids, let mask) = inputs else { throw RuntimeError("\(weights.origin): Qwen3 takes token ids") }
        _ = try validateTokens(ids, mask, vocabulary: config.vocabSize)        // forward(embeddings:) checks the length
        let x = try weights.embeddingRows("embed.tokens", ids.flatMap { $0 })            // [B·T, C]
        let hidden = try forward(embeddings: x, mask: mask, observe: observe)
        try observe("logits", head.forward(hidden).output)
        return hidden
    }

    /// Rows `ids` of the input embedding table as [ids.count, C] (dequantised rows of an int8 table).
    public func inputEmbeddings(_ ids: [Int]) throws -> Tensor {
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw RuntimeError("\(weights.origin): token id \(bad) is outside the vocabulary of \(config.vocabSize)")
        }
        return try weights.embeddingRows("embed.tokens", ids)
    }

    /// Runs the decoder blocks on input embeddings x [B·T, C] (right-padded rows, `mask` [B][T]) and returns the
    /// final hidden state [B·T, C]; reports `embeddings`, `layers.N` and `final_norm`, not `logits`.
    public func forward(embeddings input: Tensor, mask: [[Int]], observe: (String, Tensor) throws -> Void) throws -> Tensor {
        try run(embeddings: input, mask: mask, tape: nil, observe: observe)
    }

    /// What the backward walk needs from a training forward pass.
    public final class Tape {
        let mask: [[Int]]
        /// The token ids, when the forward started from them (their embedding rows get the input gradient).
        var ids: [Int]?
        var layers: [LayerTape] = []
        var finalNorm: BoundRMSNorm.Saved?
        init(mask: [[Int]]) { self.mask = mask }
    }

    /// One block's saved tensors, in forward order.
    struct LayerTape {
        let attnNorm: BoundRMSNorm.Saved
        let normed: Tensor
        let q, k, v: BoundLinear.Saved
        let qNorm, kNorm: BoundRMSNorm.Saved
        let qRotated, kRotated, values: Tensor
        let attention: Attention.Saved
        let o: BoundLinear.Saved
        let mlpNorm: BoundRMSNorm.Saved
        let mlpInput: Tensor
        let gate, up, down: BoundLinear.Saved
        let gatePre, upOut, product: Tensor
    }

    /// The training forward from token ids: the final hidden state [B·T, C] (the inference forward's bits) and the
    /// tape for ``backward(_:tape:gradients:observe:)``.
    public func trainingForward(ids: [[Int]], mask: [[Int]], observe: (String, Tensor) throws -> Void) throws -> (Tensor, Tape) {
        _ = try validateTokens(ids, mask, vocabulary: config.vocabSize)
        let flat = ids.flatMap { $0 }
        let tape = Tape(mask: mask)
        tape.ids = flat
        let x = try run(embeddings: try weights.embeddingRows("embed.tokens", flat), mask: mask, tape: tape, observe: observe)
        return (x, tape)
    }

    /// The training forward from input embeddings [B·T, C] (PRIMA's fused sequence): as ``trainingForward(ids:mask:observe:)``;
    /// its backward returns the embeddings' gradient.
    public func trainingForward(embeddings: Tensor, mask: [[Int]], observe: (String, Tensor) throws -> Void) throws -> (Tensor, Tape) {
        let tape = Tape(mask: mask)
        return (try run(embeddings: embeddings, mask: mask, tape: tape, observe: observe), tape)
    }

    private func run(embeddings input: Tensor, mask: [[Int]], tape: Tape?, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        let batch = mask.count, length = mask.first?.count ?? 0
        guard batch > 0, length > 0, mask.allSatisfy({ $0.count == length }), input.shape == [batch * length, config.hiddenSize] else {
            throw RuntimeError("\(weights.origin): input embeddings \(input.shape) do not match a [B·T, \(config.hiddenSize)] batch of \(batch)×\(length)")
        }
        guard length <= config.maxPositionEmbeddings else {
            throw RuntimeError("\(weights.origin): sequence of \(length) tokens exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let h = config.headCount, kv = config.kvHeadCount, d = config.headDim
        let eps = Float(config.rmsNormEps), training = tape != nil
        let (cos, sin) = RoPE.tables(positions: length, headDim: d, theta: config.ropeTheta)
        let attentionMask = AttentionMask.causal(padding: mask)

        var x = input
        try observe("embeddings", x)
        for (n, layer) in layers.enumerated() {
            let (normed, attnNorm) = layer.attnNorm.forward(x, eps: eps, training: training)
            let q = layer.q.forward(normed), k = layer.k.forward(normed), v = layer.v.forward(normed)
            let (qn, qNorm) = layer.qNorm.forward(q.output, heads: h, eps: eps, training: training)
            let (kn, kNorm) = layer.kNorm.forward(k.output, heads: kv, eps: eps, training: training)
            let qr = RoPE.apply(qn, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let kr = RoPE.apply(kn, heads: kv, headDim: d, cos: cos, sin: sin) { $0 % length }
            let attention = Attention.forwardSaving(q: qr, k: kr, v: v.output, batch: batch, heads: h, kvHeads: kv, headDim: d,
                                                    scale: 1 / Float(d).squareRoot(), mask: attentionMask)
            let o = layer.o.forward(attention.output)
            let residual = Elementwise.add(x, o.output)
            let (mlpInput, mlpNorm) = layer.mlpNorm.forward(residual, eps: eps, training: training)
            let gate = layer.gate.forward(mlpInput), up = layer.up.forward(mlpInput)
            let product = Elementwise.multiply(Elementwise.apply(activation, gate.output), up.output)
            let down = layer.down.forward(product)
            x = Elementwise.add(residual, down.output)
            tape?.layers.append(LayerTape(attnNorm: attnNorm!, normed: normed, q: q.saved, k: k.saved, v: v.saved,
                                          qNorm: qNorm!, kNorm: kNorm!, qRotated: qr, kRotated: kr, values: v.output,
                                          attention: attention, o: o.saved, mlpNorm: mlpNorm!, mlpInput: mlpInput,
                                          gate: gate.saved, up: up.saved, down: down.saved, gatePre: gate.output,
                                          upOut: up.output, product: product))
            try observe("layers.\(n)", x)
        }
        let (final, saved) = finalNorm.forward(x, eps: eps, training: training)
        tape?.finalNorm = saved
        try observe("final_norm", final)
        return final
    }

    /// The LM head on a final hidden state [N, C] → logits [N, V], with what its backward needs.
    public func headForward(_ hidden: Tensor) -> (logits: Tensor, saved: BoundLinear.Saved) {
        let (logits, saved) = head.forward(hidden)
        return (logits, saved)
    }

    /// What ``classHeadBackward(_:hidden:saved:gradients:)`` needs: the K rows of a float head, or (an int8 or
    /// adapted head) the full head's saved state.
    public enum ClassHeadSaved: Sendable {
        case rows(ids: [Int], weight: Tensor)
        case full(ids: [Int], saved: BoundLinear.Saved)
    }

    /// The LM head restricted to the vocabulary rows `ids` (PRIMA's class tokens): logits [N, K] computed from those
    /// K rows of the head alone, as the restricted cross-entropy needs (an int8 or adapted head runs whole and its
    /// columns are taken).
    public func classHeadForward(_ hidden: Tensor, rows ids: [Int]) -> (logits: Tensor, saved: ClassHeadSaved) {
        if case .float(let table) = head.weight, head.adapters.isEmpty {
            let weight = embeddingLookup(table, [ids])                                            // [K, C]
            return (Linear.forward(hidden, weight: weight, bias: nil), .rows(ids: ids, weight: weight))
        }
        let (logits, saved) = head.forward(hidden)
        return (gatherColumns(logits, ids), .full(ids: ids, saved: saved))
    }

    /// Backward of ``classHeadForward(_:rows:)``: dLoss/d(hidden) from dLoss/d(logits) [N, K]; a trainable head
    /// weight (or the tied embedding table) gets gradient in the K rows only, as autograd gives it.
    public func classHeadBackward(_ dLogits: Tensor, hidden: Tensor, saved: ClassHeadSaved, gradients: GradientStore) throws -> Tensor {
        switch saved {
        case .rows(let ids, let weight):
            let tableGradient = gradients[GradientStore.path(role: weights.role, tensor: head.weightName)]
            let rowsGradient = tableGradient.map { _ in Tensor(zeros: weight.shape, dtype: .f32) }
            let dHidden = Linear.backward(dLogits, x: hidden, weight: weight, weightGradient: rowsGradient)!
            if let tableGradient, let rowsGradient { Embedding.backward(rowsGradient, ids: ids, tableGradient: tableGradient) }
            return dHidden
        case .full(let ids, let full):
            let n = dLogits.shape[0], v = config.vocabSize, k = ids.count
            let dFull = Tensor(zeros: [n, v], dtype: .f32)
            dLogits.withFloat32 { g in dFull.withMutableFloat32 { out in
                for row in 0..<n { for (column, id) in ids.enumerated() { out[row * v + id] += g[row * k + column] } }
            } }
            return try headBackward(dFull, hidden: hidden, saved: full, gradients: gradients)
        }
    }

    /// The LM head's backward: dLoss/d(hidden) from dLoss/d(logits); its trainable gradients accumulate.
    public func headBackward(_ dLogits: Tensor, hidden: Tensor, saved: BoundLinear.Saved, gradients: GradientStore) throws -> Tensor {
        try head.backward(dLogits, input: hidden, saved: saved, gradients: gradients)!
    }

    /// The backward walk from dLoss/d(final hidden state) [B·T, C]: accumulates every trainable gradient, reports
    /// dLoss/d(activation) for `final_norm`, `layers.N` (last first) and `embeddings`, and returns dLoss/d(input
    /// embeddings) (also added to the `embed.tokens` rows when the forward started from ids and the table is trainable).
    @discardableResult
    public func backward(_ dOutput: Tensor, tape: Tape, gradients: GradientStore,
                         observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> Tensor {
        let batch = tape.mask.count, length = tape.mask[0].count
        let h = config.headCount, kv = config.kvHeadCount, d = config.headDim
        let (cos, sin) = RoPE.tables(positions: length, headDim: d, theta: config.ropeTheta)
        let attentionMask = AttentionMask.causal(padding: tape.mask)
        try observe("final_norm", dOutput)
        var dx = finalNorm.backward(dOutput, saved: tape.finalNorm!, gradients: gradients)
        for (n, layer) in layers.enumerated().reversed() {
            try observe("layers.\(n)", dx)
            let t = tape.layers[n]
            // x' = r + down(act(gate(m)) · up(m)), m = norm(r); r = x + o(attn(rope(qnorm(q(a))), rope(knorm(k(a))), v(a))), a = norm(x)
            let dProduct = try layer.down.backward(dx, input: t.product, saved: t.down, gradients: gradients)!
            let (dGate, dUp) = Elementwise.gatedBackward(activation, dProduct, x: t.gatePre, gate: t.upOut)
            let dMlpInput = Elementwise.add(try layer.gate.backward(dGate, input: t.mlpInput, saved: t.gate, gradients: gradients)!,
                                            try layer.up.backward(dUp, input: t.mlpInput, saved: t.up, gradients: gradients)!)
            let dResidual = Elementwise.add(dx, layer.mlpNorm.backward(dMlpInput, saved: t.mlpNorm, gradients: gradients))
            let dAttended = try layer.o.backward(dResidual, input: t.attention.output, saved: t.o, gradients: gradients)!
            let g = Attention.backward(dAttended, q: t.qRotated, k: t.kRotated, v: t.values, saved: t.attention, batch: batch,
                                       heads: h, kvHeads: kv, headDim: d, scale: 1 / Float(d).squareRoot(), mask: attentionMask)
            let dq = layer.qNorm.backward(RoPE.backward(g.q, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length },
                                          saved: t.qNorm, gradients: gradients)
            let dk = layer.kNorm.backward(RoPE.backward(g.k, heads: kv, headDim: d, cos: cos, sin: sin) { $0 % length },
                                          saved: t.kNorm, gradients: gradients)
            var dNormed = try layer.q.backward(dq, input: t.normed, saved: t.q, gradients: gradients)!
            dNormed = Elementwise.add(dNormed, try layer.k.backward(dk, input: t.normed, saved: t.k, gradients: gradients)!)
            dNormed = Elementwise.add(dNormed, try layer.v.backward(g.v, input: t.normed, saved: t.v, gradients: gradients)!)
            dx = Elementwise.add(dResidual, layer.attnNorm.backward(dNormed, saved: t.attnNorm, gradients: gradients))
        }
        try observe("embeddings", dx)
        if let ids = tape.ids, let table = gradients[GradientStore.path(role: weights.role, tensor: "embed.tokens")] {
            Embedding.backward(dx, ids: ids, tableGradient: table)
        }
        return dx
    }

    /// Logits of the vocabulary entries `ids` for each row of a final hidden state [N, C] → [N, ids.count]: only
    /// those rows of the output projection are used when it is float and unadapted (the full projection otherwise).
    public func logits(_ hidden: Tensor, vocabulary ids: [Int]) throws -> Tensor {
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw RuntimeError("\(weights.origin): token id \(bad) is outside the vocabulary of \(config.vocabSize)")
        }
        if case .float(let table) = head.weight, head.adapters.isEmpty {
            return Linear.forward(hidden, weight: embeddingLookup(table, [ids]), bias: nil)
        }
        return gatherColumns(head.forward(hidden).output, ids)
    }
}

/// An RMSNorm with its weight bound at load, over rows or (Qwen3's q/k norms) over each D-wide head slice.
struct BoundRMSNorm {
    let role: String
    let name: String
    let weight: Tensor

    /// What the backward needs: the input rows [N, D] and their rstd.
    struct Saved {
        let input: Tensor
        let rstd: Tensor
        let shape: [Int]
    }

    init(_ weights: ModelWeights, _ name: String) throws {
        role = weights.role
        self.name = name
        weight = try weights(name + ".weight")
    }

    /// RMSNorm of x [N, C]; with `heads`, of each of the H slices of x [N, H·D] with the shared weight [D]. With
    /// `training`, also the saved state (same output bits either way).
    func forward(_ x: Tensor, heads: Int = 1, eps: Float, training: Bool) -> (Tensor, Saved?) {
        let rows = x.reshaped([x.elementCount / weight.elementCount, weight.elementCount])
        guard training else { return (Normalization.rmsNorm(rows, weight: weight, eps: eps).reshaped(x.shape), nil) }
        let (y, rstd) = Normalization.rmsNormTraining(rows, weight: weight, eps: eps)
        return (y.reshaped(x.shape), Saved(input: rows, rstd: rstd, shape: x.shape))
    }

    /// dx from dy; the weight's gradient accumulates into `gradients` when trainable.
    func backward(_ dy: Tensor, saved: Saved, gradients: GradientStore) -> Tensor {
        Normalization.rmsNormBackward(dy.reshaped(saved.input.shape), x: saved.input, weight: weight, rstd: saved.rstd,
                                      weightGradient: gradients[GradientStore.path(role: role, tensor: name + ".weight")])
            .reshaped(saved.shape)
    }
}
