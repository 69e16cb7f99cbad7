import PrimaTensor

/// Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2) computes it
/// (Formats/prima-training.md §2, "Clipping").
public enum GradientClipping {
    /// torch's `clip_coef = max_norm / (total_norm + 1e-6)`, clamped to 1: float32, the Python floats rounded to f32.
    public static func coefficient(norm: Float, maxNorm: Double) -> Float {
        precondition(maxNorm > 0, "clipping needs a positive max norm")
        return min(Float(maxNorm) / (norm + Float(1e-6)), 1)
    }

    /// Multiplies every gradient by `coefficient` in place (torch's `g.mul_(clip_coef_clamped)`); 1 changes nothing.
    public static func scale(_ gradients: [Tensor], by coefficient: Float) {
        guard coefficient != 1 else { return }
        for gradient in gradients {
            gradient.withMutableFloat32 { g in for i in g.indices { g[i] *= coefficient } }
        }
    }

    /// The global L2 norm: the norm of the per-tensor norms, each rounded to f32 as torch's per-tensor
    /// `vector_norm` returns it. Sums of squares are accumulated in double (torch accumulates in float32 lanes,
    /// so the two agree within ``normRelativeBound``); the order is fixed, so the result does not depend on threads.
    public static func globalNorm(_ gradients: [Tensor]) -> Float {
        norm(of: gradients.map { tensor in tensor.withFloat32 { norm($0) } })
    }

    /// How far ``globalNorm(_:)`` may be from torch's float32 norm, relatively: torch sums squares in float32
    /// (16 FMA lanes, then a sequential tail) while we sum in double; measured 2 ulps (1.8e-7) over the fixture's
    /// twelve steps, each ulp 2⁻²³ ≈ 1.2e-7 relative at worst.
    public static let normRelativeBound: Float = 4e-7

    /// ‖x‖₂ of float32 values, squares summed in double in eight interleaved partial sums (in that fixed order), the
    /// square root rounded to f32.
    static func norm(_ x: UnsafeBufferPointer<Float>) -> Float {
        var partial = SIMD8<Double>(repeating: 0)
        let blocks = x.count / 8
        for block in 0..<blocks {
            let base = block * 8
            var lanes = SIMD8<Double>()
            for lane in 0..<8 { lanes[lane] = Double(x[base + lane]) }
            partial += lanes * lanes  // a float's square is exact in double: no fused multiply-add needed
        }
        var sum = partial.sum()
        for i in (blocks * 8)..<x.count { sum += Double(x[i]) * Double(x[i]) }
        return Float(sum.squareRoot())
    }

    /// ‖x‖₂ of a few norms (the stacked per-tensor norms).
    static func norm(of norms: [Float]) -> Float { norms.withUnsafeBufferPointer { norm($0) } }

    /// The plain reference of ``globalNorm(_:)``: every square summed in double in index order, per tensor, then
    /// over the tensors' f32 norms.
    public static func referenceGlobalNorm(_ gradients: [[Float]]) -> Float {
        func plain(_ values: [Float]) -> Float {
            var sum = 0.0
            for value in values { sum += Double(value) * Double(value) }
            return Float(sum.squareRoot())
        }
        return plain(gradients.map(plain))
    }
}
