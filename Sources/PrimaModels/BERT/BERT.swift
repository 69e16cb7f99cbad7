import Foundation
import PrimaTensor

/// BERT forward pass (transformers `BertModel`, eager attention, fp32); also loads Clinical-ModernBERT-shaped
/// checkpoints.
///
/// Embeddings: `(word[ids] + token_type[0]) + position[arange(T)]` (transformers' addition order) → LayerNorm.
/// Per layer (post-norm): q/k/v with bias → bidirectional attention with padded keys masked, scale D^-0.5 →
/// output dense → LayerNorm(dense + input) (`attn_out_norm`) → intermediate dense + activation → output dense →
/// LayerNorm(dense + attention output) (`mlp_out_norm`). Activations: `embeddings`, `layers.N`, `final_norm` (a copy
/// of the last layer's output: BERT has no separate final norm), and `pooler` = tanh(dense(first token)) [B, C]
/// only when the checkpoint has `pooler.dense` weights.
public final class BERTModel: TextEncoderModel {
    public let config: BERTConfig
    public var textConfig: any TextEncoderConfig { config }
    let weights: ModelWeights
    let activation: Elementwise.Activation

    public init(config: BERTConfig, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenAct, field: "hidden_act", weights: weights)
        try weights.require("embed.tokens")
        try weights.require("embed.positions")
        try weights.require("embed.token_types")
    }

    /// Whether the checkpoint has a pooler (BertModel with `add_pooling_layer`); MLM checkpoints do not.
    public var hasPooler: Bool { weights.optional("pooler.dense.weight") != nil }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .tokens(let ids, let mask) = inputs else { throw RuntimeError("\(weights.origin): BERT takes token ids") }
        let (batch, length) = try validateTokens(ids, mask, vocabulary: config.vocabSize,
                                                 maxPositions: config.maxPositionEmbeddings)
        let c = config.hiddenSize, h = config.headCount, d = c / h
        let eps = Float(config.layerNormEps)
        let scale = Float(pow(Double(d), -0.5))
        let attentionMask = AttentionMask.padding(mask)

        func norm(_ x: Tensor, _ name: String) throws -> Tensor {
            Normalization.layerNorm(x, weight: try weights(name + ".weight"), bias: weights.optional(name + ".bias"), eps: eps)
        }
        func linear(_ x: Tensor, _ name: String, activation: Elementwise.Activation? = nil) throws -> Tensor {
            Linear.forward(x, weight: try weights.linear(name + ".weight"), bias: weights.optional(name + ".bias"),
                           activation: activation)
        }

        // token_type_ids are all zeros and position_ids arange(T) for every row (Formats/prima-trace.md §3).
        let words = try weights.embeddingRows("embed.tokens", ids.flatMap { $0 })
        let types = try weights.embeddingRows("embed.token_types", (Array(repeating: Array(repeating: 0, count: length), count: batch)).flatMap { $0 })
        let positions = try weights.embeddingRows("embed.positions", (Array(repeating: Array(0..<length), count: batch)).flatMap { $0 })
        var x = try norm(Elementwise.add(Elementwise.add(words, types), positions), "embed.norm")   // [B·T, C]
        try observe("embeddings", x)
        for n in 0..<config.layerCount {
            let l = "layers.\(n)."
            let q = try linear(x, l + "attn.q"), k = try linear(x, l + "attn.k"), v = try linear(x, l + "attn.v")
            let attended = Attention.forward(q: q, k: k, v: v, batch: batch, heads: h, kvHeads: h, headDim: d,
                                             scale: scale, mask: attentionMask)
            let a = try norm(Elementwise.add(try linear(attended, l + "attn.o"), x), l + "attn_out_norm")
            let up = try linear(a, l + "mlp.up", activation: activation)
            x = try norm(Elementwise.add(try linear(up, l + "mlp.down"), a), l + "mlp_out_norm")
            try observe("layers.\(n)", x)
        }
        try observe("final_norm", x)
        if hasPooler {
            let first = Tensor(zeros: [batch, c], dtype: .f32)
            x.withFloat32 { rows in first.withMutableFloat32 { out in
                for b in 0..<batch { (out.baseAddress! + b * c).update(from: rows.baseAddress! + b * length * c, count: c) }
            } }
            try observe("pooler", Elementwise.map(try linear(first, "pooler.dense")) { tanhf($0) })
        }
        return x
    }
}
