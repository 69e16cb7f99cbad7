import Foundation
import PrimaKernels

/// Activations and elementwise arithmetic on f32 tensors.
public enum Elementwise {
    /// An activation function by its transformers name.
    public enum Activation: String, Sendable {
        /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (transformers "gelu").
        case gelu
        /// Tanh-approximated GELU (transformers "gelu_pytorch_tanh", "gelu_new").
        case geluTanh = "gelu_pytorch_tanh"
        /// `x·sigmoid(x)` (transformers "silu", "swish").
        case silu

        /// The activation for a config's `hidden_act` string.
        public init?(configName: String) {
            switch configName {
            case "gelu": self = .gelu
            case "gelu_pytorch_tanh", "gelu_new": self = .geluTanh
            case "silu", "swish": self = .silu
            default: return nil
            }
        }

        /// The activation of one value.
        @inlinable public func callAsFunction(_ x: Float) -> Float {
            switch self {
            case .gelu: return 0.5 * x * (1 + erf(x * 0.70710678118654752))
            case .geluTanh:
                let inner: Float = 0.79788456080286536 * (x + 0.044715 * x * x * x)
                return 0.5 * x * (1 + tanh(inner))
            case .silu: return x / (1 + exp(-x))
            }
        }

        /// The `prima_activation` code, or nil for an activation without a vectorised kernel (tanh-GELU).
        var kernelCode: Int32? {
            switch self {
            case .gelu: Int32(PRIMA_ACTIVATION_GELU)
            case .silu: Int32(PRIMA_ACTIVATION_SILU)
            case .geluTanh: nil
            }
        }
    }

    /// `activation(x)` elementwise: GELU and SiLU vectorised (`prima_activation`: the vector exp, and for GELU the
    /// erf of Abramowitz & Stegun 7.1.26, as ATen's `Vectorized<float>::erf`), tanh-GELU as
    /// ``applyReference(_:_:)``. The bound on the difference is in Formats/prima-verify.md §5.
    public static func apply(_ activation: Activation, _ x: Tensor, isa: FloatISA = .best) -> Tensor {
        guard let code = activation.kernelCode else { return applyReference(activation, x) }
        let y = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            _ = prima_activation(isa.code, code, input.baseAddress!, out.baseAddress!, Int64(input.count))
        } }
        return y
    }

    /// The plain reference for ``apply(_:_:isa:)``: the scalar activation (libm erf, exp, tanh) of each value.
    public static func applyReference(_ activation: Activation, _ x: Tensor) -> Tensor {
        map(x) { activation($0) }
    }

    /// `activation(x) · gate` for equal shapes in one pass (gated MLPs: SwiGLU, GeGLU); the product of
    /// ``apply(_:_:isa:)`` and `gate`, bit for bit.
    public static func gated(_ activation: Activation, _ x: Tensor, _ gate: Tensor, isa: FloatISA = .best) -> Tensor {
        precondition(x.shape == gate.shape, "gated: shapes \(ShapeMath.describe(x.shape)) and \(ShapeMath.describe(gate.shape)) differ")
        guard let code = activation.kernelCode else { return multiply(applyReference(activation, x), gate) }
        let y = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in gate.withFloat32 { g in y.withMutableFloat32 { out in
            _ = prima_activation_gated(isa.code, code, input.baseAddress!, g.baseAddress!, out.baseAddress!, Int64(input.count))
        } } }
        return y
    }

    /// The GeGLU of a fused projection: x [N, 2I] → `activation(x[:, :I]) · x[:, I:]` [N, I] (ModernBERT's Wi, whose
    /// activation is on the first half), without copying the halves out; equal to ``gated(_:_:_:isa:)`` on them.
    public static func gatedHalves(_ activation: Activation, _ x: Tensor, isa: FloatISA = .best) -> Tensor {
        let width = x.shape.last!, n = x.elementCount / max(width, 1), inner = width / 2
        precondition(x.shape.count == 2 && width % 2 == 0, "gatedHalves: x \(ShapeMath.describe(x.shape)) must be [N, 2I]")
        guard let code = activation.kernelCode else {
            return multiply(applyReference(activation, columns(x, start: 0, count: inner)), columns(x, start: inner, count: inner))
        }
        let y = Tensor(uninitialized: [n, inner], dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            for row in 0..<n {
                let base = input.baseAddress! + row * width
                _ = prima_activation_gated(isa.code, code, base, base + inner, out.baseAddress! + row * inner, Int64(inner))
            }
        } }
        return y
    }

    /// `f(x)` elementwise.
    public static func map(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
        let y = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in for i in 0..<input.count { out[i] = f(input[i]) } } }
        return y
    }

    /// `a + b` for equal shapes.
    public static func add(_ a: Tensor, _ b: Tensor) -> Tensor { zip(a, b, +) }

    /// `a · b` for equal shapes.
    public static func multiply(_ a: Tensor, _ b: Tensor) -> Tensor { zip(a, b, *) }

    /// `a + scale ⊙ b`, with `scale` [C] broadcast over the rows of [N, C] tensors (DINOv3's layer scale).
    public static func addScaled(_ a: Tensor, _ b: Tensor, scale: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "addScaled: \(a.shape) vs \(b.shape)")
        let c = a.shape.last!, n = a.elementCount / max(c, 1)
        precondition(scale.elementCount == c, "addScaled: scale \(scale.elementCount) for width \(c)")
        let y = Tensor(uninitialized: a.shape, dtype: .f32)
        a.withFloat32 { x in b.withFloat32 { z in scale.withFloat32 { s in y.withMutableFloat32 { out in
            for row in 0..<n {
                let (xr, zr, yr) = (x.baseAddress! + row * c, z.baseAddress! + row * c, out.baseAddress! + row * c)
                for i in 0..<c { yr[i] = xr[i] + s[i] * zr[i] }
            }
        } } } }
        return y
    }

    private static func zip(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(a.shape == b.shape, "elementwise: shapes \(ShapeMath.describe(a.shape)) and \(ShapeMath.describe(b.shape)) differ")
        let y = Tensor(uninitialized: a.shape, dtype: .f32)
        a.withFloat32 { x in b.withFloat32 { z in y.withMutableFloat32 { out in
            for i in 0..<x.count { out[i] = f(x[i], z[i]) }
        } } }
        return y
    }

    /// Columns `[start, start + count)` of an [N, C] tensor, as a new [N, count] tensor.
    public static func columns(_ x: Tensor, start: Int, count: Int) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / c
        precondition(start >= 0 && start + count <= c, "columns out of range")
        let y = Tensor(uninitialized: [n, count], dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            for row in 0..<n { for i in 0..<count { out[row * count + i] = input[row * c + start + i] } }
        } }
        return y
    }
}
