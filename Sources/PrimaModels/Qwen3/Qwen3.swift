import PrimaTensor

/// Qwen3 forward pass (transformers `Qwen3ForCausalLM`, eager attention, fp32).
///
/// Per layer: RMSNorm → q/k/v projections → per-head RMSNorm on q and k (before RoPE) → rotate-half RoPE
/// (theta from the config) → causal + padding attention with grouped KV heads, scale D^-0.5 → output projection
/// and residual; RMSNorm → SwiGLU MLP (silu on gate) → residual. Then the final RMSNorm and the LM head (tied to
/// the embeddings or not). Activations: `embeddings`, `layers.N`, `final_norm`, `logits`.
public final class Qwen3Model: ComponentModel {
    public let config: Qwen3Config
    let weights: ModelWeights
    let activation: Elementwise.Activation

    public init(config: Qwen3Config, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenAct, field: "hidden_act", weights: weights)
        try weights.require("embed.tokens")
        _ = try lmHead()
    }

    /// The output projection [V, C]: lm_head, or the embeddings when tied.
    func lmHead() throws -> LinearWeight {
        try weights.optionalLinear("lm_head.weight") ?? weights.linear("embed.tokens")
    }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .tokens(let ids, let mask) = inputs else { throw RuntimeError("\(weights.origin): Qwen3 takes token ids") }
        _ = try validateTokens(ids, mask, vocabulary: config.vocabSize)        // forward(embeddings:) checks the length
        let x = try weights.embeddingRows("embed.tokens", ids.flatMap { $0 })            // [B·T, C]
        let hidden = try forward(embeddings: x, mask: mask, observe: observe)
        try observe("logits", Linear.forward(hidden, weight: try lmHead(), bias: nil))
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
        let batch = mask.count, length = mask.first?.count ?? 0
        guard batch > 0, length > 0, mask.allSatisfy({ $0.count == length }), input.shape == [batch * length, config.hiddenSize] else {
            throw RuntimeError("\(weights.origin): input embeddings \(input.shape) do not match a [B·T, \(config.hiddenSize)] batch of \(batch)×\(length)")
        }
        guard length <= config.maxPositionEmbeddings else {
            throw RuntimeError("\(weights.origin): sequence of \(length) tokens exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let h = config.headCount, kv = config.kvHeadCount, d = config.headDim
        let eps = Float(config.rmsNormEps)
        let (cos, sin) = RoPE.tables(positions: length, headDim: d, theta: config.ropeTheta)
        let attentionMask = AttentionMask.causal(padding: mask)

        var x = input
        try observe("embeddings", x)
        for n in 0..<config.layerCount {
            let l = "layers.\(n)."
            let hidden = Normalization.rmsNorm(x, weight: try weights(l + "attn_norm.weight"), eps: eps)
            var q = Linear.forward(hidden, weight: try weights.linear(l + "attn.q.weight"), bias: weights.optional(l + "attn.q.bias"))
            var k = Linear.forward(hidden, weight: try weights.linear(l + "attn.k.weight"), bias: weights.optional(l + "attn.k.bias"))
            let v = Linear.forward(hidden, weight: try weights.linear(l + "attn.v.weight"), bias: weights.optional(l + "attn.v.bias"))
            q = headwiseRMSNorm(q, heads: h, headDim: d, weight: try weights(l + "attn.q_norm.weight"), eps: eps)
            k = headwiseRMSNorm(k, heads: kv, headDim: d, weight: try weights(l + "attn.k_norm.weight"), eps: eps)
            q = RoPE.apply(q, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            k = RoPE.apply(k, heads: kv, headDim: d, cos: cos, sin: sin) { $0 % length }
            let attended = Attention.forward(q: q, k: k, v: v, batch: batch, heads: h, kvHeads: kv, headDim: d,
                                             scale: 1 / Float(d).squareRoot(), mask: attentionMask)
            x = Elementwise.add(x, Linear.forward(attended, weight: try weights.linear(l + "attn.o.weight"),
                                                  bias: weights.optional(l + "attn.o.bias")))
            let normed = Normalization.rmsNorm(x, weight: try weights(l + "mlp_norm.weight"), eps: eps)
            let gate = Elementwise.apply(activation, Linear.forward(normed, weight: try weights.linear(l + "mlp.gate.weight")))
            let up = Linear.forward(normed, weight: try weights.linear(l + "mlp.up.weight"))
            x = Elementwise.add(x, Linear.forward(Elementwise.multiply(gate, up), weight: try weights.linear(l + "mlp.down.weight")))
            try observe("layers.\(n)", x)
        }
        x = Normalization.rmsNorm(x, weight: try weights("final_norm.weight"), eps: eps)
        try observe("final_norm", x)
        return x
    }

    /// Logits of the vocabulary entries `ids` for each row of a final hidden state [N, C] → [N, ids.count]: only
    /// those rows of the output projection are used when it is float (the full projection otherwise).
    public func logits(_ hidden: Tensor, vocabulary ids: [Int]) throws -> Tensor {
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw RuntimeError("\(weights.origin): token id \(bad) is outside the vocabulary of \(config.vocabSize)")
        }
        switch try lmHead() {
        case .float(let head):
            return Linear.forward(hidden, weight: embeddingLookup(head, [ids]), bias: nil)
        case let head:
            let all = Linear.forward(hidden, weight: head, bias: nil)                   // [N, V]
            return gatherColumns(all, ids)
        }
    }
}
