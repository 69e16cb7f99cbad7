import Foundation
import PrimaTensor

/// ModernBERT forward and backward passes (transformers `ModernBertModel`, eager attention, fp32).
///
/// Token embedding → LayerNorm (no position embeddings). Per layer (pre-norm): `attn_norm` (Identity in layer 0)
/// → fused Wqkv split into q, k, v → rotate-half RoPE with the layer type's theta (global for `full_attention`,
/// local for `sliding_attention`; positions `arange(T)` in every row) → bidirectional attention, scale D^-0.5,
/// padded keys masked, and in sliding layers only keys with |i − j| ≤ `sliding_window` (= local_attention / 2)
/// → Wo and residual; `mlp_norm` → Wi split into [input | gate], `act(input) · gate` (GeGLU: the activation is on
/// the FIRST half) → Wo and residual. Then `final_norm`. Activations: `embeddings`, `layers.N`, `final_norm`.
///
/// Weights are bound once at load; the inference forward and the training forward are one walk, the training one
/// recording what the backward walk (in reverse) needs.
public final class ModernBERTModel: TextEncoderModel, TrainableEncoder {
    public let config: ModernBERTConfig
    public var textConfig: any TextEncoderConfig { config }
    let weights: ModelWeights
    let activation: Elementwise.Activation
    let embedNorm: BoundNorm
    let layers: [Layer]
    let finalNorm: BoundNorm
    /// The masked-LM head, when the checkpoint has one (activation `classifier_activation`, eps `norm_eps`).
    let mlm: MaskedLMHead?

    /// One encoder block's weights (`attnNorm` is nil in layer 0, where transformers has an Identity).
    struct Layer {
        let attnNorm: BoundNorm?
        let mlpNorm: BoundNorm
        let qkv, o, wi, down: BoundLinear
    }

    public init(config: ModernBERTConfig, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenActivation, field: "hidden_activation", weights: weights)
        try weights.require("embed.tokens")
        embedNorm = try BoundNorm(weights, "embed.norm")
        layers = try (0..<config.layerCount).map { n in
            let l = "layers.\(n)."
            return Layer(attnNorm: n == 0 ? nil : try BoundNorm(weights, l + "attn_norm"), mlpNorm: try BoundNorm(weights, l + "mlp_norm"),
                         qkv: try weights.bind(l + "attn.qkv"), o: try weights.bind(l + "attn.o"),
                         wi: try weights.bind(l + "mlp.wi"), down: try weights.bind(l + "mlp.down"))
        }
        finalNorm = try BoundNorm(weights, "final_norm")
        mlm = try MaskedLMHead(weights, activation: try requireActivation(config.classifierActivation, field: "classifier_activation",
                                                                          weights: weights), eps: Float(config.normEps))
    }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .tokens(let ids, let mask) = inputs else { throw RuntimeError("\(weights.origin): ModernBERT takes token ids") }
        return try run(ids: ids, mask: mask, tape: nil, observe: observe)
    }

    /// What the backward walk needs from a training forward pass.
    public final class Tape {
        let ids: [[Int]]
        let mask: [[Int]]
        var embedNorm: BoundNorm.Saved?
        var layers: [LayerTape] = []
        var finalNorm: BoundNorm.Saved?
        init(ids: [[Int]], mask: [[Int]]) {
            self.ids = ids
            self.mask = mask
        }
    }

    /// One block's saved tensors, in forward order.
    struct LayerTape {
        let attnNorm: BoundNorm.Saved?
        let attnInput: Tensor
        let qkv: BoundLinear.Saved
        let q, k, v: Tensor
        let attention: Attention.Saved
        let o: BoundLinear.Saved
        let mlpNorm: BoundNorm.Saved
        let mlpInput: Tensor
        let wi: BoundLinear.Saved
        let wiOut: Tensor
        let gated: Tensor
        let down: BoundLinear.Saved
    }

    /// The training forward: the final hidden state [B·T, C] (the inference forward's bits) and the tape.
    public func trainingForward(ids: [[Int]], mask: [[Int]], observe: (String, Tensor) throws -> Void) throws -> (Tensor, Tape) {
        let tape = Tape(ids: ids, mask: mask)
        return (try run(ids: ids, mask: mask, tape: tape, observe: observe), tape)
    }

    private func run(ids: [[Int]], mask: [[Int]], tape: Tape?, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        // No position limit: rotary positions are computed, not looked up (transformers does not check either).
        let (batch, length) = try validateTokens(ids, mask, vocabulary: config.vocabSize)
        let c = config.hiddenSize, h = config.headCount, d = c / h
        let eps = Float(config.normEps), training = tape != nil
        // torch multiplies the fp32 scores by the Python float head_dim**-0.5, rounded to f32.
        let scale = Float(pow(Double(d), -0.5))
        let global = RoPE.tables(positions: length, headDim: d, theta: config.globalRopeTheta)
        let local = RoPE.tables(positions: length, headDim: d, theta: config.localRopeTheta)
        let fullMask = AttentionMask.padding(mask)
        let slidingMask = AttentionMask.slidingWindow(radius: config.slidingWindow, padding: mask)

        var (x, saved) = embedNorm.forward(try weights.embeddingRows("embed.tokens", ids.flatMap { $0 }), eps: eps, training: training)
        tape?.embedNorm = saved                                                                  // x: [B·T, C]
        try observe("embeddings", x)
        for (n, layer) in layers.enumerated() {
            let sliding = config.layerTypes[n] == "sliding_attention"
            let (hidden, attnNorm) = layer.attnNorm?.forward(x, eps: eps, training: training) ?? (x, nil)
            // Wqkv's output columns are [q | k | v], each C wide with head h at columns h·D..<(h+1)·D.
            let qkv = layer.qkv.forward(hidden)                                                 // [B·T, 3C]
            let (cos, sin) = sliding ? local : global
            let q = RoPE.apply(qkv.output, start: 0, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let k = RoPE.apply(qkv.output, start: c, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let v = Elementwise.columns(qkv.output, start: 2 * c, count: c)
            let attention = Attention.forwardSaving(q: q, k: k, v: v, batch: batch, heads: h, kvHeads: h, headDim: d,
                                                    scale: scale, mask: sliding ? slidingMask : fullMask)
            let o = layer.o.forward(attention.output)
            let residual = Elementwise.add(x, o.output)
            let (mlpInput, mlpNorm) = layer.mlpNorm.forward(residual, eps: eps, training: training)
            let wi = layer.wi.forward(mlpInput)                                                 // [B·T, 2I]
            let gated = Elementwise.gatedHalves(activation, wi.output)
            let down = layer.down.forward(gated)
            x = Elementwise.add(residual, down.output)
            tape?.layers.append(LayerTape(attnNorm: attnNorm, attnInput: hidden, qkv: qkv.saved, q: q, k: k, v: v,
                                          attention: attention, o: o.saved, mlpNorm: mlpNorm!, mlpInput: mlpInput,
                                          wi: wi.saved, wiOut: wi.output, gated: gated, down: down.saved))
            try observe("layers.\(n)", x)
        }
        let (final, finalSaved) = finalNorm.forward(x, eps: eps, training: training)
        tape?.finalNorm = finalSaved
        try observe("final_norm", final)
        return final
    }

    /// The backward walk from dLoss/d(final hidden state) [B·T, C]: accumulates every trainable gradient, reports
    /// dLoss/d(activation) for `final_norm`, `layers.N` (last first) and `embeddings`, and returns dLoss/d(token
    /// embeddings) (also added to the `embed.tokens` rows when that table is trainable).
    @discardableResult
    public func backward(_ dOutput: Tensor, tape: Tape, gradients: GradientStore,
                         observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> Tensor {
        let (batch, length) = (tape.ids.count, tape.ids[0].count)
        let c = config.hiddenSize, h = config.headCount, d = c / h
        let scale = Float(pow(Double(d), -0.5))
        let global = RoPE.tables(positions: length, headDim: d, theta: config.globalRopeTheta)
        let local = RoPE.tables(positions: length, headDim: d, theta: config.localRopeTheta)
        let fullMask = AttentionMask.padding(tape.mask)
        let slidingMask = AttentionMask.slidingWindow(radius: config.slidingWindow, padding: tape.mask)
        try observe("final_norm", dOutput)
        var dx = finalNorm.backward(dOutput, saved: tape.finalNorm!, gradients: gradients)
        for (n, layer) in layers.enumerated().reversed() {
            try observe("layers.\(n)", dx)
            let t = tape.layers[n]
            let sliding = config.layerTypes[n] == "sliding_attention"
            let (cos, sin) = sliding ? local : global
            // x' = r + down(geglu(wi(norm(r)))); r = x + o(attn(rope(q), rope(k), v)), [q | k | v] = qkv(norm(x))
            let dGated = try layer.down.backward(dx, input: t.gated, saved: t.down, gradients: gradients)!
            let dWi = Elementwise.gatedHalvesBackward(activation, dGated, x: t.wiOut)
            let dMlpInput = try layer.wi.backward(dWi, input: t.mlpInput, saved: t.wi, gradients: gradients)!
            let dResidual = Elementwise.add(dx, layer.mlpNorm.backward(dMlpInput, saved: t.mlpNorm, gradients: gradients))
            let dAttended = try layer.o.backward(dResidual, input: t.attention.output, saved: t.o, gradients: gradients)!
            let g = Attention.backward(dAttended, q: t.q, k: t.k, v: t.v, saved: t.attention, batch: batch, heads: h, kvHeads: h,
                                       headDim: d, scale: scale, mask: sliding ? slidingMask : fullMask)
            let dq = RoPE.backward(g.q, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let dk = RoPE.backward(g.k, heads: h, headDim: d, cos: cos, sin: sin) { $0 % length }
            let dQKV = concatenateColumns([dq, dk, g.v])                                         // [B·T, 3C]
            let dHidden = try layer.qkv.backward(dQKV, input: t.attnInput, saved: t.qkv, gradients: gradients)!
            let dInput = layer.attnNorm.map { $0.backward(dHidden, saved: t.attnNorm!, gradients: gradients) } ?? dHidden
            dx = Elementwise.add(dResidual, dInput)
        }
        try observe("embeddings", dx)
        let dTokens = embedNorm.backward(dx, saved: tape.embedNorm!, gradients: gradients)
        if let table = gradients[GradientStore.path(role: weights.role, tensor: "embed.tokens")] {
            // nn.Embedding(padding_idx = pad_token_id): that row never receives a gradient.
            Embedding.backward(dTokens, ids: tape.ids.flatMap { $0 }, tableGradient: table, paddingId: config.padTokenID)
        }
        return dTokens
    }
}

extension ModernBERTModel: MaskedLanguageModel {
    /// `ModernBertForMaskedLM`'s head (dense prediction at every position): LayerNorm(act(dense(x))) → decoder.
    public func maskedLM(_ hidden: Tensor, gradients: GradientStore) throws -> (logits: Tensor, backward: (Tensor) throws -> Tensor) {
        try MaskedLMHead.run(mlm, origin: weights.origin, hidden: hidden, gradients: gradients)
    }
}

/// Rows side by side: [N, C₁], [N, C₂], … → [N, ΣCᵢ].
func concatenateColumns(_ parts: [Tensor]) -> Tensor {
    let n = parts[0].shape[0], widths = parts.map { $0.shape[1] }, total = widths.reduce(0, +)
    let out = Tensor(zeros: [n, total], dtype: .f32)
    out.withMutableFloat32 { dst in
        var offset = 0
        for (part, width) in zip(parts, widths) {
            part.withFloat32 { src in
                for row in 0..<n { (dst.baseAddress! + row * total + offset).update(from: src.baseAddress! + row * width, count: width) }
            }
            offset += width
        }
    }
    return out
}
