import Foundation

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
    }

    /// `activation(x)` elementwise.
    public static func apply(_ activation: Activation, _ x: Tensor) -> Tensor {
        map(x) { activation($0) }
    }

    /// `f(x)` elementwise.
    public static func map(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
        let y = Tensor(zeros: x.shape, dtype: .f32)
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
        let c = a.shape.last!, s = scale.float32Values()
        precondition(s.count == c, "addScaled: scale \(s.count) for width \(c)")
        let y = Tensor(zeros: a.shape, dtype: .f32)
        a.withFloat32 { x in b.withFloat32 { z in y.withMutableFloat32 { out in
            for i in 0..<x.count { out[i] = x[i] + s[i % c] * z[i] }
        } } }
        return y
    }

    private static func zip(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(a.shape == b.shape, "elementwise: shapes \(ShapeMath.describe(a.shape)) and \(ShapeMath.describe(b.shape)) differ")
        let y = Tensor(zeros: a.shape, dtype: .f32)
        a.withFloat32 { x in b.withFloat32 { z in y.withMutableFloat32 { out in
            for i in 0..<x.count { out[i] = f(x[i], z[i]) }
        } } }
        return y
    }

    /// Columns `[start, start + count)` of an [N, C] tensor, as a new [N, count] tensor.
    public static func columns(_ x: Tensor, start: Int, count: Int) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / c
        precondition(start >= 0 && start + count <= c, "columns out of range")
        let y = Tensor(zeros: [n, count], dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            for row in 0..<n { for i in 0..<count { out[row * count + i] = input[row * c + start + i] } }
        } }
        return y
    }
}
