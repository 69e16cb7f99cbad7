import Foundation
import PrimaTensor

/// BERT forward and backward passes (transformers `BertModel` / `BertForMaskedLM`, eager attention, fp32); also
/// loads Clinical-ModernBERT-shaped checkpoints.
///
/// Embeddings: `(word[ids] + token_type[0]) + position[arange(T)]` (transformers' addition order) → LayerNorm.
/// Per layer (post-norm): q/k/v with bias → bidirectional attention with padded keys masked, scale D^-0.5 →
/// output dense → LayerNorm(dense + input) (`attn_out_norm`) → intermediate dense + activation → output dense →
/// LayerNorm(dense + attention output) (`mlp_out_norm`). Activations: `embeddings`, `layers.N`, `final_norm` (a copy
/// of the last layer's output: BERT has no separate final norm), and `pooler` = tanh(dense(first token)) [B, C]
/// only when the checkpoint has `pooler.dense` weights. The MLM head (training only): dense → activation →
/// LayerNorm → decoder (tied to the word embeddings or not) → `logits` [B·T, V].
///
/// Weights are bound once at load (``Layer``); the inference forward and the training forward are one walk, the
/// training one recording what the backward walk (in reverse) needs.
public final class BERTModel: TextEncoderModel, TrainableEncoder {
    public let config: BERTConfig
    public var textConfig: any TextEncoderConfig { config }
    let weights: ModelWeights
    let activation: Elementwise.Activation
    let layers: [Layer]
    let embedNorm: BoundNorm
    let pooler: BoundLinear?
    /// The masked-LM head, when the checkpoint has one (activation `hidden_act`, eps `layer_norm_eps`).
    let mlm: MaskedLMHead?

    /// One encoder block's weights.
    struct Layer {
        let q, k, v, o, up, down: BoundLinear
        let attnOutNorm, mlpOutNorm: BoundNorm
    }

    public init(config: BERTConfig, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenAct, field: "hidden_act", weights: weights)
        try weights.require("embed.tokens")
        try weights.require("embed.positions")
        try weights.require("embed.token_types")
        embedNorm = try BoundNorm(weights, "embed.norm")
        layers = try (0..<config.layerCount).map { n in
            let l = "layers.\(n)."
            return Layer(q: try weights.bind(l + "attn.q"), k: try weights.bind(l + "attn.k"), v: try weights.bind(l + "attn.v"),
                         o: try weights.bind(l + "attn.o"), up: try weights.bind(l + "mlp.up"), down: try weights.bind(l + "mlp.down"),
                         attnOutNorm: try BoundNorm(weights, l + "attn_out_norm"), mlpOutNorm: try BoundNorm(weights, l + "mlp_out_norm"))
        }
        pooler = weights.optional("pooler.dense.weight") != nil ? try weights.bind("pooler.dense") : nil
        mlm = try MaskedLMHead(weights, activation: activation, eps: Float(config.layerNormEps))
    }

    /// Whether the checkpoint has a pooler (BertModel with `add_pooling_layer`); MLM checkpoints do not.
    public var hasPooler: Bool { pooler != nil }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .tokens(let ids, let mask) = inputs else { throw RuntimeError("\(weights.origin): BERT takes token ids") }
        let x = try run(ids: ids, mask: mask, tape: nil, observe: observe)
        if let pooler {
            let (batch, length, c) = (ids.count, ids[0].count, config.hiddenSize)
            let first = Tensor(zeros: [batch, c], dtype: .f32)
            x.withFloat32 { rows in first.withMutableFloat32 { out in
                for b in 0..<batch { (out.baseAddress! + b * c).update(from: rows.baseAddress! + b * length * c, count: c) }
            } }
            try observe("pooler", Elementwise.map(pooler.forward(first).output) { tanhf($0) })
        }
        return x
    }

    /// What the backward walk needs from a training forward pass.
    public final class Tape {
        let ids: [[Int]]
        let mask: [[Int]]
        var embeddingSum: Tensor?
        var embedNorm: BoundNorm.Saved?
        var layers: [LayerTape] = []
        init(ids: [[Int]], mask: [[Int]]) {
            self.ids = ids
            self.mask = mask
        }
    }

    /// One block's saved tensors, in forward order.
    struct LayerTape {
        let input: Tensor
        let q, k, v: (output: Tensor, saved: BoundLinear.Saved)
        let attention: Attention.Saved
        let o: BoundLinear.Saved
        let attnOutNorm: BoundNorm.Saved
        let attnOut: Tensor
        let up: BoundLinear.Saved
        let preActivation: Tensor
        let activated: Tensor
        let down: BoundLinear.Saved
        let mlpOutNorm: BoundNorm.Saved
    }

    /// The training forward: the encoder's final hidden state [B·T, C] (as ``forward(_:observe:)`` computes it, bit
    /// for bit) and the tape for ``backward(_:tape:gradients:observe:)``.
    public func trainingForward(ids: [[Int]], mask: [[Int]], observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> (Tensor, Tape) {
        let tape = Tape(ids: ids, mask: mask)
        let x = try run(ids: ids, mask: mask, tape: tape, observe: observe)
        return (x, tape)
    }

    /// The embeddings and blocks; records into `tape` when given.
    private func run(ids: [[Int]], mask: [[Int]], tape: Tape?, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        let (batch, length) = try validateTokens(ids, mask, vocabulary: config.vocabSize, maxPositions: config.maxPositionEmbeddings)
        let c = config.hiddenSize, h = config.headCount, d = c / h
        let eps = Float(config.layerNormEps)
        let scale = Float(pow(Double(d), -0.5))
        let attentionMask = AttentionMask.padding(mask)

        // token_type_ids are all zeros and position_ids arange(T) for every row (Formats/prima-trace.md §3).
        let words = try weights.embeddingRows("embed.tokens", ids.flatMap { $0 })
        let types = try weights.embeddingRows("embed.token_types", Array(repeating: 0, count: batch * length))
        let positions = try weights.embeddingRows("embed.positions", (0..<batch).flatMap { _ in Array(0..<length) })
        let sum = Elementwise.add(Elementwise.add(words, types), positions)                              // [B·T, C]
        var (x, saved) = embedNorm.forward(sum, eps: eps, training: tape != nil)
        tape?.embeddingSum = sum
        tape?.embedNorm = saved
        try observe("embeddings", x)
        for (n, layer) in layers.enumerated() {
            let q = layer.q.forward(x), k = layer.k.forward(x), v = layer.v.forward(x)
            let attention = Attention.forwardSaving(q: q.output, k: k.output, v: v.output, batch: batch, heads: h, kvHeads: h,
                                                    headDim: d, scale: scale, mask: attentionMask)
            let o = layer.o.forward(attention.output)
            let (a, attnOutNorm) = layer.attnOutNorm.forward(Elementwise.add(o.output, x), eps: eps, training: tape != nil)
            let up = layer.up.forward(a)
            let activated = Elementwise.apply(activation, up.output)
            let down = layer.down.forward(activated)
            let (next, mlpOutNorm) = layer.mlpOutNorm.forward(Elementwise.add(down.output, a), eps: eps, training: tape != nil)
            tape?.layers.append(LayerTape(input: x, q: q, k: k, v: v, attention: attention, o: o.saved, attnOutNorm: attnOutNorm!,
                                          attnOut: a, up: up.saved, preActivation: up.output, activated: activated,
                                          down: down.saved, mlpOutNorm: mlpOutNorm!))
            x = next
            try observe("layers.\(n)", x)
        }
        try observe("final_norm", x)
        return x
    }

    /// The backward walk: from dLoss/d(final hidden state) [B·T, C], accumulates the gradient of every trainable
    /// tensor into `gradients`, reports dLoss/d(activation) for `final_norm`, `layers.N` (last first) and
    /// `embeddings`, and returns dLoss/d(sum of the three embeddings). Padded positions get exactly zero gradient
    /// (the attention backward leaves them out, and nothing downstream reads them).
    @discardableResult
    public func backward(_ dOutput: Tensor, tape: Tape, gradients: GradientStore,
                         observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> Tensor {
        let (batch, c, h) = (tape.ids.count, config.hiddenSize, config.headCount)
        let d = c / h
        let scale = Float(pow(Double(d), -0.5))
        let attentionMask = AttentionMask.padding(tape.mask)
        var dx = dOutput
        try observe("final_norm", dx)
        for (n, layer) in layers.enumerated().reversed() {
            try observe("layers.\(n)", dx)
            let t = tape.layers[n]
            // x' = LN(down(act(up(a))) + a), a = LN(o(attn(q, k, v)) + x)
            let dSum2 = layer.mlpOutNorm.backward(dx, saved: t.mlpOutNorm, gradients: gradients)
            let dActivated = try layer.down.backward(dSum2, input: t.activated, saved: t.down, gradients: gradients)!
            let dPre = Elementwise.backward(activation, dActivated, x: t.preActivation)
            let dA = try layer.up.backward(dPre, input: t.attnOut, saved: t.up, gradients: gradients)!
            let dSum1 = layer.attnOutNorm.backward(Elementwise.add(dA, dSum2), saved: t.attnOutNorm, gradients: gradients)
            let dAttended = try layer.o.backward(dSum1, input: t.attention.output, saved: t.o, gradients: gradients)!
            let g = Attention.backward(dAttended, q: t.q.output, k: t.k.output, v: t.v.output, saved: t.attention, batch: batch,
                                       heads: h, kvHeads: h, headDim: d, scale: scale, mask: attentionMask)
            var dInput = dSum1
            for (linear, dy, saved) in [(layer.q, g.q, t.q.saved), (layer.k, g.k, t.k.saved), (layer.v, g.v, t.v.saved)] {
                dInput = Elementwise.add(dInput, try linear.backward(dy, input: t.input, saved: saved, gradients: gradients)!)
            }
            dx = dInput
        }
        try observe("embeddings", dx)
        let dSum = embedNorm.backward(dx, saved: tape.embedNorm!, gradients: gradients)
        let role = weights.role
        let ids = tape.ids.flatMap { $0 }, count = ids.count, length = tape.ids[0].count
        if let table = gradients[GradientStore.path(role: role, tensor: "embed.tokens")] {
            // nn.Embedding(padding_idx = pad_token_id): that row never receives a gradient.
            Embedding.backward(dSum, ids: ids, tableGradient: table, paddingId: config.padTokenID)
        }
        if let table = gradients[GradientStore.path(role: role, tensor: "embed.token_types")] {
            Embedding.backward(dSum, ids: Array(repeating: 0, count: count), tableGradient: table)
        }
        if let table = gradients[GradientStore.path(role: role, tensor: "embed.positions")] {
            Embedding.backward(dSum, ids: (0..<tape.ids.count).flatMap { _ in Array(0..<length) }, tableGradient: table)
        }
        return dSum
    }
}

extension BERTModel: MaskedLanguageModel {
    /// `BertForMaskedLM`'s head: LayerNorm(act(dense(x))) → decoder (the word embeddings when tied) + bias.
    public func maskedLM(_ hidden: Tensor, gradients: GradientStore) throws -> (logits: Tensor, backward: (Tensor) throws -> Tensor) {
        try MaskedLMHead.run(mlm, origin: weights.origin, hidden: hidden, gradients: gradients)
    }
}

/// A LayerNorm with its affine parameters bound at load, with the checkpoint paths
/// of its gradients.
struct BoundNorm {
    let role: String
    let name: String
    let weight: Tensor?
    let bias: Tensor?

    /// What the backward needs: the input and the kernel's row statistics.
    struct Saved {
        let input: Tensor
        let mean: Tensor
        let rstd: Tensor
    }

    init(_ weights: ModelWeights, _ name: String) throws {
        role = weights.role
        self.name = name
        weight = try weights(name + ".weight")
        bias = weights.optional(name + ".bias")
    }

    /// LayerNorm of x [N, C]; with `training`, also the saved statistics (same output bits either way).
    func forward(_ x: Tensor, eps: Float, training: Bool) -> (Tensor, Saved?) {
        guard training else { return (Normalization.layerNorm(x, weight: weight, bias: bias, eps: eps), nil) }
        let (y, mean, rstd) = Normalization.layerNormTraining(x, weight: weight, bias: bias, eps: eps)
        return (y, Saved(input: x, mean: mean, rstd: rstd))
    }

    /// dx from dy; the weight and bias gradients accumulate into `gradients` when trainable.
    func backward(_ dy: Tensor, saved: Saved, gradients: GradientStore) -> Tensor {
        Normalization.layerNormBackward(dy, x: saved.input, weight: weight, mean: saved.mean, rstd: saved.rstd,
                                        weightGradient: gradients[GradientStore.path(role: role, tensor: name + ".weight")],
                                        biasGradient: gradients[GradientStore.path(role: role, tensor: name + ".bias")])
    }
}
