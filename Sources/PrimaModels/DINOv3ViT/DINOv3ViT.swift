import Foundation
import PrimaTensor

/// DINOv3 ViT forward and backward passes (transformers `DINOv3ViTModel`, eval mode, eager attention, fp32).
///
/// Embeddings: the patch convolution (kernel = stride = p) flattened row-major, after CLS and the R register tokens
/// ([B·T, C], T = 1 + R + h·w; no position embedding). Per layer: LayerNorm → q/k/v projections (biases as the
/// config says) → 2D RoPE on the patch tokens only (CLS and registers are not rotated) → attention over all tokens
/// with no mask, scale D^-0.5 → output projection → residual with layer scale `ls1`; LayerNorm → MLP (up, activation,
/// down; or gated: down(act(gate)·up)) → residual with `ls2`. Then the final LayerNorm on every token.
/// Activations: `embeddings`, `layers.N`, `final_norm`.
///
/// Any image whose height and width are positive multiples of the patch size is accepted, square or not; the RoPE
/// grid is recomputed for each (h, w).
public final class DINOv3ViTModel: ComponentModel {
    public let config: DINOv3ViTConfig
    let weights: ModelWeights
    let activation: Elementwise.Activation
    let layers: [Layer]
    let finalNorm: BoundNorm

    /// One block's weights (`gate` only in a gated MLP).
    struct Layer {
        let attnNorm, mlpNorm: BoundNorm
        let q, k, v, o, up, down: BoundLinear
        let gate: BoundLinear?
        let ls1, ls2: Tensor
    }

    public init(config: DINOv3ViTConfig, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenAct, field: "hidden_act", weights: weights)
        try weights.require("embed.cls_token")
        try weights.require("embed.patch.weight")
        if config.registerCount > 0 { try weights.require("embed.register_tokens") }
        layers = try (0..<config.layerCount).map { n in
            let l = "layers.\(n)."
            return Layer(attnNorm: try BoundNorm(weights, l + "attn_norm"), mlpNorm: try BoundNorm(weights, l + "mlp_norm"),
                         q: try weights.bind(l + "attn.q"), k: try weights.bind(l + "attn.k"), v: try weights.bind(l + "attn.v"),
                         o: try weights.bind(l + "attn.o"), up: try weights.bind(l + "mlp.up"), down: try weights.bind(l + "mlp.down"),
                         gate: config.useGatedMLP ? try weights.bind(l + "mlp.gate") : nil,
                         ls1: try weights(l + "ls1"), ls2: try weights(l + "ls2"))
        }
        finalNorm = try BoundNorm(weights, "final_norm")
    }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .pixels(let input) = inputs else { throw RuntimeError("\(weights.origin): DINOv3 takes pixel values") }
        return try run(input.toFloat32(), tape: nil, observe: observe)
    }

    /// What the backward walk needs from a training forward pass.
    public final class Tape {
        let pixels: Tensor
        var layers: [LayerTape] = []
        var finalNorm: BoundNorm.Saved?
        init(pixels: Tensor) { self.pixels = pixels }
    }

    /// One block's saved tensors, in forward order.
    struct LayerTape {
        let attnNorm: BoundNorm.Saved
        let normed: Tensor
        let q, k, v: BoundLinear.Saved
        let qRotated, kRotated, values: Tensor
        let attention: Attention.Saved
        let o: BoundLinear.Saved
        let projected: Tensor
        let mlpNorm: BoundNorm.Saved
        let mlpInput: Tensor
        let up: BoundLinear.Saved
        let upOut: Tensor
        let gate: BoundLinear.Saved?
        let gateOut: Tensor?
        let inner: Tensor
        let down: BoundLinear.Saved
        let mlpOut: Tensor
    }

    /// The training forward on pixels [B, 3, H, W]: the final hidden state [B·T, C] (the inference forward's bits)
    /// and the tape for ``backward(_:tape:gradients:observe:)``.
    public func trainingForward(pixels: Tensor, observe: (String, Tensor) throws -> Void) throws -> (Tensor, Tape) {
        let tape = Tape(pixels: pixels.toFloat32())
        return (try run(tape.pixels, tape: tape, observe: observe), tape)
    }

    private func run(_ pixels: Tensor, tape: Tape?, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        let (batch, gridHeight, gridWidth) = try validate(pixels)
        let c = config.hiddenSize, heads = config.headCount, d = c / heads
        let prefix = 1 + config.registerCount, patches = gridHeight * gridWidth
        let eps = Float(config.layerNormEps), training = tape != nil
        let (cos, sin) = Self.ropeTables(gridHeight: gridHeight, gridWidth: gridWidth, headDim: d, theta: config.ropeTheta)
        let ropeRow = ropeRows(prefix: prefix, length: prefix + patches)
        // transformers' `head_dim ** -0.5` is a Python double; the score multiply rounds it to f32.
        let scale = Float(1 / Double(d).squareRoot())

        var x = try embeddings(pixels, batch: batch, patches: patches)             // [B·T, C]
        try observe("embeddings", x)
        for (n, layer) in layers.enumerated() {
            let (normed, attnNorm) = layer.attnNorm.forward(x, eps: eps, training: training)
            let q = layer.q.forward(normed), k = layer.k.forward(normed), v = layer.v.forward(normed)
            let qr = RoPE.apply(q.output, heads: heads, headDim: d, cos: cos, sin: sin, tableRow: ropeRow)
            let kr = RoPE.apply(k.output, heads: heads, headDim: d, cos: cos, sin: sin, tableRow: ropeRow)
            let attention = Attention.forwardSaving(q: qr, k: kr, v: v.output, batch: batch, heads: heads, kvHeads: heads,
                                                    headDim: d, scale: scale, mask: .none)
            let o = layer.o.forward(attention.output)
            let residual = Elementwise.addScaled(x, o.output, scale: layer.ls1)
            let (mlpInput, mlpNorm) = layer.mlpNorm.forward(residual, eps: eps, training: training)
            let up = layer.up.forward(mlpInput)
            let gate = layer.gate?.forward(mlpInput)
            let inner = gate.map { Elementwise.multiply(Elementwise.apply(activation, $0.output), up.output) }
                ?? Elementwise.apply(activation, up.output)
            let down = layer.down.forward(inner)
            x = Elementwise.addScaled(residual, down.output, scale: layer.ls2)
            tape?.layers.append(LayerTape(attnNorm: attnNorm!, normed: normed, q: q.saved, k: k.saved, v: v.saved, qRotated: qr,
                                          kRotated: kr, values: v.output, attention: attention, o: o.saved, projected: o.output,
                                          mlpNorm: mlpNorm!, mlpInput: mlpInput, up: up.saved, upOut: up.output, gate: gate?.saved,
                                          gateOut: gate?.output, inner: inner, down: down.saved, mlpOut: down.output))
            try observe("layers.\(n)", x)
        }
        let (final, saved) = finalNorm.forward(x, eps: eps, training: training)
        tape?.finalNorm = saved
        try observe("final_norm", final)
        return final
    }

    /// Token t of each image: CLS and registers (t < prefix) keep their q/k; patch t − prefix is rotated.
    private func ropeRows(prefix: Int, length: Int) -> (Int) -> Int? {
        { n in
            let t = n % length
            return t < prefix ? nil : t - prefix
        }
    }

    /// The backward walk from dLoss/d(final hidden state) [B·T, C]: accumulates every trainable gradient (CLS and
    /// register tokens, patch embedding, blocks, final norm) and reports dLoss/d(activation) for `final_norm`,
    /// `layers.N` (last first) and `embeddings`; returns dLoss/d(embeddings) [B·T, C].
    @discardableResult
    public func backward(_ dOutput: Tensor, tape: Tape, gradients: GradientStore,
                         observe: (String, Tensor) throws -> Void = { _, _ in }) throws -> Tensor {
        let (batch, gridHeight, gridWidth) = try validate(tape.pixels)
        let c = config.hiddenSize, heads = config.headCount, d = c / heads
        let prefix = 1 + config.registerCount, patches = gridHeight * gridWidth, length = prefix + patches
        let (cos, sin) = Self.ropeTables(gridHeight: gridHeight, gridWidth: gridWidth, headDim: d, theta: config.ropeTheta)
        let ropeRow = ropeRows(prefix: prefix, length: length)
        let scale = Float(1 / Double(d).squareRoot())
        let role = weights.role
        func gradient(_ name: String) -> Tensor? { gradients[GradientStore.path(role: role, tensor: name)] }

        try observe("final_norm", dOutput)
        var dx = finalNorm.backward(dOutput, saved: tape.finalNorm!, gradients: gradients)
        for (n, layer) in layers.enumerated().reversed() {
            try observe("layers.\(n)", dx)
            let t = tape.layers[n]
            // x' = r + ls2 ⊙ down(mlp(norm(r))); r = x + ls1 ⊙ o(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(x)
            let (_, dMlpOut) = Elementwise.addScaledBackward(dx, b: t.mlpOut, scale: layer.ls2, scaleGradient: gradient("layers.\(n).ls2"))
            let dInner = try layer.down.backward(dMlpOut, input: t.inner, saved: t.down, gradients: gradients)!
            var dMlpInput: Tensor
            if let gate = layer.gate, let gateSaved = t.gate, let gateOut = t.gateOut {
                let (dGate, dUp) = Elementwise.gatedBackward(activation, dInner, x: gateOut, gate: t.upOut)
                dMlpInput = try gate.backward(dGate, input: t.mlpInput, saved: gateSaved, gradients: gradients)!
                dMlpInput = Elementwise.add(dMlpInput, try layer.up.backward(dUp, input: t.mlpInput, saved: t.up, gradients: gradients)!)
            } else {
                let dUp = Elementwise.backward(activation, dInner, x: t.upOut)
                dMlpInput = try layer.up.backward(dUp, input: t.mlpInput, saved: t.up, gradients: gradients)!
            }
            let dResidual = Elementwise.add(dx, layer.mlpNorm.backward(dMlpInput, saved: t.mlpNorm, gradients: gradients))
            let (_, dProjected) = Elementwise.addScaledBackward(dResidual, b: t.projected, scale: layer.ls1,
                                                                scaleGradient: gradient("layers.\(n).ls1"))
            let dAttended = try layer.o.backward(dProjected, input: t.attention.output, saved: t.o, gradients: gradients)!
            let g = Attention.backward(dAttended, q: t.qRotated, k: t.kRotated, v: t.values, saved: t.attention, batch: batch,
                                       heads: heads, kvHeads: heads, headDim: d, scale: scale, mask: .none)
            let dq = RoPE.backward(g.q, heads: heads, headDim: d, cos: cos, sin: sin, tableRow: ropeRow)
            let dk = RoPE.backward(g.k, heads: heads, headDim: d, cos: cos, sin: sin, tableRow: ropeRow)
            var dNormed = try layer.q.backward(dq, input: t.normed, saved: t.q, gradients: gradients)!
            dNormed = Elementwise.add(dNormed, try layer.k.backward(dk, input: t.normed, saved: t.k, gradients: gradients)!)
            dNormed = Elementwise.add(dNormed, try layer.v.backward(g.v, input: t.normed, saved: t.v, gradients: gradients)!)
            dx = Elementwise.add(dResidual, layer.attnNorm.backward(dNormed, saved: t.attnNorm, gradients: gradients))
        }
        try observe("embeddings", dx)
        // [CLS, registers, patches] per image: the prefix rows sum into the token parameters, the patch rows go to
        // the patch convolution.
        let r = config.registerCount
        let dPatches = Tensor(zeros: [batch * patches, c], dtype: .f32)
        let clsGradient = gradient("embed.cls_token"), registerGradient = r > 0 ? gradient("embed.register_tokens") : nil
        dx.withFloat32 { rows in dPatches.withMutableFloat32 { out in
            for b in 0..<batch {
                let base = rows.baseAddress! + b * length * c
                (out.baseAddress! + b * patches * c).update(from: base + prefix * c, count: patches * c)
                clsGradient?.withMutableFloat32 { cls in for i in 0..<c { cls[i] += base[i] } }
                registerGradient?.withMutableFloat32 { registers in for i in 0..<(r * c) { registers[i] += base[c + i] } }
            }
        } }
        if gradient("embed.patch.weight") != nil || gradient("embed.patch.bias") != nil {
            PatchEmbedding.backward(dPatches, pixels: tape.pixels, weight: try weights("embed.patch.weight"),
                                    weightGradient: gradient("embed.patch.weight"), biasGradient: gradient("embed.patch.bias"))
        }
        return dx
    }

    /// Checks pixels [B, Cin, H, W]: B ≥ 1, Cin from the config, H and W positive multiples of the patch size.
    /// Returns (B, h, w) with h = H / p, w = W / p.
    func validate(_ pixels: Tensor) throws -> (batch: Int, height: Int, width: Int) {
        let p = config.patchSize, shape = pixels.shape
        guard shape.count == 4, shape[0] > 0, shape[1] == config.channelCount else {
            throw RuntimeError("\(weights.origin): pixel_values \(ShapeMath.describe(shape)) must be [B, \(config.channelCount), H, W] with B ≥ 1")
        }
        guard shape[2] >= p, shape[3] >= p, shape[2] % p == 0, shape[3] % p == 0 else {
            throw RuntimeError("\(weights.origin): pixel_values \(ShapeMath.describe(shape)): H \(shape[2]) and W \(shape[3]) must be positive multiples of the patch size \(p)")
        }
        if let problem = ImageEncoderLimits.problem(height: shape[2], width: shape[3], patchSize: p) {
            throw RuntimeError("\(weights.origin): pixel_values \(ShapeMath.describe(shape)): \(problem)")
        }
        return (shape[0], shape[2] / p, shape[3] / p)
    }

    /// `cat([CLS, registers, patches])` per image: [B·T, C] with T = 1 + R + h·w.
    func embeddings(_ pixels: Tensor, batch: Int, patches: Int) throws -> Tensor {
        let c = config.hiddenSize, r = config.registerCount, length = 1 + r + patches
        let patchRows = PatchEmbedding.forward(pixels, weight: try weights("embed.patch.weight"),
                                               bias: try weights("embed.patch.bias"))   // [B·h·w, C]
        let cls = try weights("embed.cls_token")                                         // [1, 1, C]
        let registers = r > 0 ? try weights("embed.register_tokens") : nil               // [1, R, C]
        let x = Tensor(zeros: [batch * length, c], dtype: .f32)
        x.withMutableFloat32 { out in
            cls.withFloat32 { clsRow in patchRows.withFloat32 { patchValues in
                for b in 0..<batch {
                    let base = out.baseAddress! + b * length * c
                    base.update(from: clsRow.baseAddress!, count: c)
                    if let registers {
                        registers.withFloat32 { (base + c).update(from: $0.baseAddress!, count: r * c) }
                    }
                    (base + (1 + r) * c).update(from: patchValues.baseAddress! + b * patches * c, count: patches * c)
                }
            } }
        }
        return x
    }

    /// RoPE angles [h·w][D/2] as transformers' `DINOv3ViTRopePositionEmbedding` computes them in f32 (eval mode):
    /// row n = r·w + c holds `[2π·y_r·inv_freq[0..<D/4] | 2π·x_c·inv_freq[0..<D/4]]` with patch-centre coordinates
    /// `y_r = 2·((r + 0.5) / h) − 1`, `x_c = 2·((c + 0.5) / w) − 1` (each axis normalised by its own patch count) and
    /// `inv_freq[j] = 1 / theta^(4j/D)`.
    ///
    /// Evaluation order, each step rounded to f32 as torch does: the exponent `arange(0, 1, 4/D)[j]` is j·(4/D) in
    /// double (torch's scalar CPU arange accumulates in double; every value is exact for power-of-two D); `theta ** e`
    /// is taken in double and rounded, i.e. correctly rounded (torch's vectorised pow gave the same bits for
    /// D = 8, 48, 64, 128); `1 / ·` in f32; the angle is `(f32(2π) · coord) · inv_freq`, left to right. These angles
    /// are bit-equal to transformers' for the grids checked; cos and sin (glibc) may differ from torch's (SLEEF) by
    /// 1 ulp.
    public static func ropeAngles(gridHeight: Int, gridWidth: Int, headDim: Int, theta: Double) -> [[Float]] {
        let quarter = headDim / 4
        let step = 4 / Double(headDim)
        let inverseFrequency = (0..<quarter).map { j -> Float in
            let exponent = Float(Double(j) * step)
            return 1 / Float(pow(theta, Double(exponent)))
        }
        let twoPi = Float(2 * Double.pi)
        func centre(_ index: Int, _ count: Int) -> Float {
            let unit = (Float(index) + 0.5) / Float(count)      // arange(0.5, count) / count
            return 2 * unit - 1                                 // 2.0 * coords - 1.0
        }
        var angles: [[Float]] = []
        angles.reserveCapacity(gridHeight * gridWidth)
        for r in 0..<gridHeight {
            let y = twoPi * centre(r, gridHeight)
            for c in 0..<gridWidth {
                let x = twoPi * centre(c, gridWidth)
                angles.append(inverseFrequency.map { y * $0 } + inverseFrequency.map { x * $0 })
            }
        }
        return angles
    }

    /// cos and sin tables [h·w, D] laid out `[y | x | y | x]` (transformers' `angles.tile(2)`), for `RoPE.apply`.
    public static func ropeTables(gridHeight: Int, gridWidth: Int, headDim: Int, theta: Double) -> (cos: [Float], sin: [Float]) {
        RoPE.tables(angles: ropeAngles(gridHeight: gridHeight, gridWidth: gridWidth, headDim: headDim, theta: theta),
                    headDim: headDim)
    }
}
