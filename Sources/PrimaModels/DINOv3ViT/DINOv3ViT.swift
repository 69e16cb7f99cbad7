import Foundation
import PrimaTensor

/// DINOv3 ViT forward pass (transformers `DINOv3ViTModel`, eval mode, eager attention, fp32).
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

    public init(config: DINOv3ViTConfig, weights: ModelWeights) throws {
        self.config = config
        self.weights = weights
        activation = try requireActivation(config.hiddenAct, field: "hidden_act", weights: weights)
        try weights.require("embed.cls_token")
        try weights.require("embed.patch.weight")
        if config.registerCount > 0 { try weights.require("embed.register_tokens") }
    }

    public func forward(_ inputs: ModelInputs, observe: (String, Tensor) throws -> Void) throws -> Tensor {
        guard case .pixels(let input) = inputs else { throw RuntimeError("\(weights.origin): DINOv3 takes pixel values") }
        let pixels = input.toFloat32()
        let (batch, gridHeight, gridWidth) = try validate(pixels)
        let c = config.hiddenSize, heads = config.headCount, d = c / heads
        let prefix = 1 + config.registerCount, patches = gridHeight * gridWidth, length = prefix + patches
        let eps = Float(config.layerNormEps)
        let (cos, sin) = Self.ropeTables(gridHeight: gridHeight, gridWidth: gridWidth, headDim: d, theta: config.ropeTheta)
        // Token t of each image: CLS and registers (t < prefix) keep their q/k; patch t − prefix is rotated.
        let ropeRow: (Int) -> Int? = { n in
            let t = n % length
            return t < prefix ? nil : t - prefix
        }
        // transformers' `head_dim ** -0.5` is a Python double; the score multiply rounds it to f32.
        let scale = Float(1 / Double(d).squareRoot())

        var x = try embeddings(pixels, batch: batch, patches: patches)             // [B·T, C]
        try observe("embeddings", x)
        for n in 0..<config.layerCount {
            let l = "layers.\(n)."
            let hidden = Normalization.layerNorm(x, weight: try weights(l + "attn_norm.weight"),
                                                 bias: try weights(l + "attn_norm.bias"), eps: eps)
            var q = Linear.forward(hidden, weight: try weights.linear(l + "attn.q.weight"), bias: weights.optional(l + "attn.q.bias"))
            var k = Linear.forward(hidden, weight: try weights.linear(l + "attn.k.weight"), bias: weights.optional(l + "attn.k.bias"))
            let v = Linear.forward(hidden, weight: try weights.linear(l + "attn.v.weight"), bias: weights.optional(l + "attn.v.bias"))
            q = RoPE.apply(q, heads: heads, headDim: d, cos: cos, sin: sin, tableRow: ropeRow)
            k = RoPE.apply(k, heads: heads, headDim: d, cos: cos, sin: sin, tableRow: ropeRow)
            let attended = Attention.forward(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: heads, headDim: d,
                                             scale: scale, mask: .none)
            let projected = Linear.forward(attended, weight: try weights.linear(l + "attn.o.weight"),
                                           bias: weights.optional(l + "attn.o.bias"))
            x = Elementwise.addScaled(x, projected, scale: try weights(l + "ls1"))
            let normed = Normalization.layerNorm(x, weight: try weights(l + "mlp_norm.weight"),
                                                 bias: try weights(l + "mlp_norm.bias"), eps: eps)
            let up = Linear.forward(normed, weight: try weights.linear(l + "mlp.up.weight"), bias: weights.optional(l + "mlp.up.bias"),
                                    activation: config.useGatedMLP ? nil : activation)
            let inner: Tensor
            if config.useGatedMLP {
                let gate = Linear.forward(normed, weight: try weights.linear(l + "mlp.gate.weight"),
                                          bias: weights.optional(l + "mlp.gate.bias"))
                inner = Elementwise.multiply(Elementwise.apply(activation, gate), up)
            } else {
                inner = up
            }
            let mlp = Linear.forward(inner, weight: try weights.linear(l + "mlp.down.weight"), bias: weights.optional(l + "mlp.down.bias"))
            x = Elementwise.addScaled(x, mlp, scale: try weights(l + "ls2"))
            try observe("layers.\(n)", x)
        }
        x = Normalization.layerNorm(x, weight: try weights("final_norm.weight"), bias: try weights("final_norm.bias"), eps: eps)
        try observe("final_norm", x)
        return x
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
