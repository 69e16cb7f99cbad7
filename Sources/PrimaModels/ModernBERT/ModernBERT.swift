import Foundation
import PrimaTensor

/// ModernBERT forward pass (transformers `ModernBertModel`, eager attention, fp32).
///
/// Token embedding → LayerNorm (no position embeddings). Per layer (pre-norm): `attn_norm` (Identity in layer 0)
/// → fused Wqkv split into q, k, v → rotate-half RoPE with the layer type's theta (global for `full_attention`,
/// local for `sliding_attention`; positions `arange(T)` in every row) → bidirectional attention, scale D^-0.5,
/// padded keys masked, and in sliding layers only keys with |i − j| ≤ `sliding_window` (= local_attention / 2)
/// → Wo and residual; `mlp_norm` → Wi split into [input | gate], `act(input) · gate` (GeGLU: the activation is on
/// the FIRST half) → Wo and residual. Then `final_norm`. Activations: `embeddings`, `layers.N`, `final_norm`.
public final class ModernBERTModel: TextEncoderModel {
    public let config: ModernBERTConfig
    public var textConfig: any TextEncoderConfig { config }
    let weights: ModelWeights
    let activation: Elementwise.Activation

    public init(config: ModernBERTConfig, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenActivation, field: "hidden_activation", weights: weights)
        try weights.require("embed.tokens")
    }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .tokens(let ids, let mask) = inputs else { throw RuntimeError("\(weights.origin): ModernBERT takes token ids") }
        // No position limit: rotary positions are computed, not looked up (transformers does not check either).
        let (batch, length) = try validateTokens(ids, mask, vocabulary: config.vocabSize)
        let c = config.hiddenSize, h = config.headCount, d = c / h
        let eps = Float(config.normEps)
        // torch multiplies the fp32 scores by the Python float head_dim**-0.5, rounded to f32.
        let scale = Float(pow(Double(d), -0.5))
        let global = RoPE.tables(positions: length, headDim: d, theta: config.globalRopeTheta)
        let local = RoPE.tables(positions: length, headDim: d, theta: config.localRopeTheta)
        let fullMask = AttentionMask.padding(mask)
        let slidingMask = AttentionMask.slidingWindow(radius: config.slidingWindow, padding: mask)

        func norm(_ x: Tensor, _ name: String) throws -> Tensor {
            Normalization.layerNorm(x, weight: try weights(name + ".weight"), bias: weights.optional(name + ".bias"), eps: eps)
        }
        func linear(_ x: Tensor, _ name: String) throws -> Tensor {
            Linear.forward(x, weight: try weights.linear(name + ".weight"), bias: weights.optional(name + ".bias"))
        }

        var x = try norm(try weights.embeddingRows("embed.tokens", ids.flatMap { $0 }), "embed.norm")      // [B·T, C]
        try observe("embeddings", x)
        for n in 0..<config.layerCount {
            let l = "layers.\(n)."
            let sliding = config.layerTypes[n] == "sliding_attention"
            let hidden = n == 0 ? x : try norm(x, l + "attn_norm")
            // Wqkv's output columns are [q | k | v], each C wide with head h at columns h·D..<(h+1)·D.
            let qkv = try linear(hidden, l + "attn.qkv")                                        // [B·T, 3C]
            let (cos, sin) = sliding ? local : global
            let q = RoPE.apply(qkv, start: 0, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let k = RoPE.apply(qkv, start: c, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let v = Elementwise.columns(qkv, start: 2 * c, count: c)
            let attended = Attention.forward(q: q, k: k, v: v, batch: batch, heads: h, kvHeads: h, headDim: d,
                                             scale: scale, mask: sliding ? slidingMask : fullMask)
            x = Elementwise.add(x, try linear(attended, l + "attn.o"))
            let wi = try linear(try norm(x, l + "mlp_norm"), l + "mlp.wi")                      // [B·T, 2I]
            x = Elementwise.add(x, try linear(Elementwise.gatedHalves(activation, wi), l + "mlp.down"))
            try observe("layers.\(n)", x)
        }
        x = try norm(x, "final_norm")
        try observe("final_norm", x)
        return x
    }
}
