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
        let (batch, length) = try validateTokens(ids, mask, vocabulary: config.vocabSize, maxPositions: config.maxPositionEmbeddings)
        let h = config.headCount, kv = config.kvHeadCount, d = config.headDim
        let eps = Float(config.rmsNormEps)
        let (cos, sin) = RoPE.tables(positions: length, headDim: d, theta: config.ropeTheta)
        let attentionMask = AttentionMask.causal(padding: mask)

        var x = try weights.embeddingRows("embed.tokens", ids.flatMap { $0 })              // [B·T, C]
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
        try observe("logits", Linear.forward(x, weight: try lmHead(), bias: nil))
        return x
    }
}
