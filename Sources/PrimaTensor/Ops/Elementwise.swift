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

        /// The activation and its derivative at one value in double (the reference backwards use them).
        public func valueAndDerivative(_ x: Double) -> (value: Double, derivative: Double) {
            switch self {
            case .gelu:
                let cdf = 0.5 * (1 + erf(x / 2.0.squareRoot())), pdf = exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
                return (x * cdf, cdf + x * pdf)
            case .geluTanh:
                let k = (2 / Double.pi).squareRoot(), t = tanh(k * (x + 0.044715 * x * x * x))
                return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
            case .silu:
                let s = 1 / (1 + exp(-x))
                return (x * s, s * (1 + x * (1 - s)))
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

    // MARK: - Backward

    /// Values per block of the fast activation backwards: their scratch (two blocks of f32) stays in L1.
    static let backwardBlock = 512

    /// activation′(x) into `derivative` and, if given, activation(x) into `value`, for `count` ≤ ``backwardBlock``
    /// values: vectorisable f32 loops around one `prima_exp` call (the kernels' vector exp). GELU's erf is
    /// Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), as the forward kernel computes it, with exp(−x²/2) serving both
    /// erf(x/√2) and the density; tanh(u) is 1 − 2/(exp(2u) + 1), kept as 1 ± tanh.
    static func valuesAndDerivatives(_ activation: Activation, _ x: UnsafePointer<Float>, _ count: Int,
                                     derivative: UnsafeMutablePointer<Float>, value: UnsafeMutablePointer<Float>?,
                                     isa: FloatISA = .best) {
        let e = derivative   // the exp's argument and result, then overwritten by the derivative
        switch activation {
        case .gelu:
            for i in 0..<count { e[i] = -0.5 * x[i] * x[i] }
            prima_exp(isa.code, e, e, Int64(count))
            for i in 0..<count {
                let t = 1 / (1 + 0.3275911 * (abs(x[i]) * 0.70710678118654752))
                var r: Float = 1.061405429 * t - 1.453152027
                r = r * t + 1.421413741
                r = r * t - 0.284496736
                r = r * t + 0.254829592
                // Φ(x) = 0.5·(1 + erf(x/√2)) with 1 − |erf| = e·t·r taken as is: no cancellation in the left tail.
                let tail = 0.5 * (e[i] * t * r)
                let cdf = x[i] < 0 ? tail : 1 - tail
                value?[i] = x[i] * cdf
                derivative[i] = cdf + x[i] * (0.39894228040143268 * e[i])
            }
        case .geluTanh:
            let k: Float = 0.79788456080286536
            for i in 0..<count { e[i] = 2 * k * (x[i] + 0.044715 * x[i] * x[i] * x[i]) }
            prima_exp(isa.code, e, e, Int64(count))
            for i in 0..<count {
                // 1 − t = 2/(e + 1) and 1 + t = 2e/(e + 1) (= 2 − (1 − t) when e ≥ 1, where e may be +inf): each
                // without the cancellation of forming t first, so the left tail keeps its relative precision.
                let d = 1 / (e[i] + 1)
                let oneMinusT = 2 * d, onePlusT = e[i] < 1 ? 2 * e[i] * d : 2 - 2 * d
                value?[i] = 0.5 * x[i] * onePlusT
                derivative[i] = 0.5 * onePlusT + 0.5 * x[i] * (onePlusT * oneMinusT) * k * (1 + 3 * 0.044715 * x[i] * x[i])
            }
        case .silu:
            for i in 0..<count { e[i] = -x[i] }
            prima_exp(isa.code, e, e, Int64(count))
            for i in 0..<count {
                // 1 − σ = e·σ where σ is near 1 (e < 1; e may be +inf on the other side).
                let sigmoid = 1 / (1 + e[i])
                let complement = e[i] < 1 ? e[i] * sigmoid : 1 - sigmoid
                value?[i] = x[i] * sigmoid
                derivative[i] = sigmoid * (1 + x[i] * complement)
            }
        }
    }

    /// Backward of ``apply(_:_:isa:)``: dx = dy · activation′(x), from the saved input x (any shape; dy the same).
    /// f32 (``backwardBlock`` values at a time, the exps vectorised); ``backwardReference(_:_:x:)`` is in double.
    public static func backward(_ activation: Activation, _ dy: Tensor, x: Tensor) -> Tensor {
        precondition(dy.shape == x.shape, "activation backward: dy \(ShapeMath.describe(dy.shape)) for x \(ShapeMath.describe(x.shape))")
        let dx = Tensor(uninitialized: x.shape, dtype: .f32)
        dy.withFloat32 { g in x.withFloat32 { input in dx.withMutableFloat32 { out in
            var start = 0
            while start < out.count {
                let count = min(backwardBlock, out.count - start)
                let (gb, ob) = (g.baseAddress! + start, out.baseAddress! + start)
                valuesAndDerivatives(activation, input.baseAddress! + start, count, derivative: ob, value: nil)
                for i in 0..<count { ob[i] *= gb[i] }
                start += count
            }
        } } }
        return dx
    }

    /// The reference for ``backward(_:_:x:)``: the derivative in double (libm erf, exp, tanh).
    public static func backwardReference(_ activation: Activation, _ dy: Tensor, x: Tensor) -> Tensor {
        precondition(dy.shape == x.shape, "activation backward: dy \(ShapeMath.describe(dy.shape)) for x \(ShapeMath.describe(x.shape))")
        let g = dy.float32Values(), input = x.float32Values()
        return Tensor(shape: x.shape, float32: input.indices.map {
            Float(Double(g[$0]) * activation.valueAndDerivative(Double(input[$0])).derivative)
        })
    }

    /// Backward of ``gated(_:_:_:isa:)``, y = activation(x) · gate: dx = dy · gate · activation′(x) and
    /// dgate = dy · activation(x), all [same shape]. f32, as ``backward(_:_:x:)``.
    public static func gatedBackward(_ activation: Activation, _ dy: Tensor, x: Tensor, gate: Tensor) -> (dx: Tensor, dgate: Tensor) {
        precondition(dy.shape == x.shape && gate.shape == x.shape, "gated backward: shapes differ")
        let dx = Tensor(uninitialized: x.shape, dtype: .f32), dgate = Tensor(uninitialized: x.shape, dtype: .f32)
        dy.withFloat32 { g in x.withFloat32 { input in gate.withFloat32 { b in
            dx.withMutableFloat32 { da in dgate.withMutableFloat32 { db in
                gatedBackwardRow(activation, g.baseAddress!, input.baseAddress!, b.baseAddress!, da.baseAddress!,
                                 db.baseAddress!, input.count)
            } }
        } } }
        return (dx, dgate)
    }

    /// The reference for ``gatedBackward(_:_:x:gate:)``, in double.
    public static func gatedBackwardReference(_ activation: Activation, _ dy: Tensor, x: Tensor, gate: Tensor) -> (dx: Tensor, dgate: Tensor) {
        precondition(dy.shape == x.shape && gate.shape == x.shape, "gated backward: shapes differ")
        let g = dy.float32Values(), input = x.float32Values(), b = gate.float32Values()
        var da = [Float](repeating: 0, count: g.count), db = da
        for i in g.indices {
            let (value, derivative) = activation.valueAndDerivative(Double(input[i]))
            da[i] = Float(Double(g[i]) * Double(b[i]) * derivative)
            db[i] = Float(Double(g[i]) * value)
        }
        return (Tensor(shape: x.shape, float32: da), Tensor(shape: x.shape, float32: db))
    }

    /// Backward of ``gatedHalves(_:_:isa:)``: dy [N, I], the fused projection x [N, 2I] → dx [N, 2I], whose first
    /// half is the activated branch's gradient dy · x[:, I:] · activation′(x[:, :I]) and second half the gate's,
    /// dy · activation(x[:, :I]).
    public static func gatedHalvesBackward(_ activation: Activation, _ dy: Tensor, x: Tensor) -> Tensor {
        let (n, inner) = halvesDimensions(dy, x)
        let dx = Tensor(uninitialized: x.shape, dtype: .f32)
        dy.withFloat32 { g in x.withFloat32 { input in dx.withMutableFloat32 { out in
            for row in 0..<n {
                let base = input.baseAddress! + row * 2 * inner, target = out.baseAddress! + row * 2 * inner
                gatedBackwardRow(activation, g.baseAddress! + row * inner, base, base + inner, target, target + inner, inner)
            }
        } } }
        return dx
    }

    /// The reference for ``gatedHalvesBackward(_:_:x:)``: ``gatedBackwardReference(_:_:x:gate:)`` on the halves.
    public static func gatedHalvesBackwardReference(_ activation: Activation, _ dy: Tensor, x: Tensor) -> Tensor {
        let (n, inner) = halvesDimensions(dy, x)
        let (da, db) = gatedBackwardReference(activation, dy, x: columns(x, start: 0, count: inner),
                                              gate: columns(x, start: inner, count: inner))
        let a = da.float32Values(), b = db.float32Values()
        var out = [Float](repeating: 0, count: n * 2 * inner)
        for row in 0..<n {
            for i in 0..<inner {
                out[row * 2 * inner + i] = a[row * inner + i]
                out[row * 2 * inner + inner + i] = b[row * inner + i]
            }
        }
        return Tensor(shape: x.shape, float32: out)
    }

    private static func gatedBackwardRow(_ activation: Activation, _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                         _ gate: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                         _ dgate: UnsafeMutablePointer<Float>, _ count: Int) {
        var start = 0
        while start < count {
            let block = min(backwardBlock, count - start)
            let (gb, bb, da, db) = (g + start, gate + start, dx + start, dgate + start)
            valuesAndDerivatives(activation, x + start, block, derivative: da, value: db)
            for i in 0..<block {
                da[i] = gb[i] * bb[i] * da[i]
                db[i] = gb[i] * db[i]
            }
            start += block
        }
    }

    private static func halvesDimensions(_ dy: Tensor, _ x: Tensor) -> (Int, Int) {
        precondition(x.shape.count == 2 && x.shape[1] % 2 == 0 && dy.shape == [x.shape[0], x.shape[1] / 2],
                     "gatedHalves backward: x \(ShapeMath.describe(x.shape)) must be [N, 2I] and dy \(ShapeMath.describe(dy.shape)) [N, I]")
        return (x.shape[0], x.shape[1] / 2)
    }

    /// Backward of ``addScaled(_:_:scale:)``, y = a + scale ⊙ b (layer scale on a residual branch): da = dy (the
    /// same tensor, returned as is), db = dy · scale [N, C]; `scaleGradient` [C] += Σ_rows dy · b, accumulated in
    /// place (nil: frozen).
    public static func addScaledBackward(_ dy: Tensor, b: Tensor, scale: Tensor, scaleGradient: Tensor? = nil) -> (da: Tensor, db: Tensor) {
        precondition(dy.shape == b.shape, "addScaled backward: dy \(dy.shape) vs b \(b.shape)")
        let c = b.shape.last!, n = b.elementCount / max(c, 1)
        precondition(scale.elementCount == c && scaleGradient.map { $0.elementCount == c } ?? true,
                     "addScaled backward: scale or its gradient for width \(c)")
        let db = Tensor(uninitialized: b.shape, dtype: .f32)
        dy.withFloat32 { g in b.withFloat32 { z in scale.withFloat32 { s in db.withMutableFloat32 { out in
            for row in 0..<n {
                let (gr, or) = (g.baseAddress! + row * c, out.baseAddress! + row * c)
                for i in 0..<c { or[i] = gr[i] * s[i] }
            }
            scaleGradient?.withMutableFloat32 { ds in
                for row in 0..<n {
                    let (gr, zr) = (g.baseAddress! + row * c, z.baseAddress! + row * c)
                    for i in 0..<c { ds[i] += gr[i] * zr[i] }
                }
            }
        } } } }
        return (dy, db)
    }

    /// The reference for ``addScaledBackward(_:b:scale:scaleGradient:)``, sums in double.
    public static func addScaledBackwardReference(_ dy: Tensor, b: Tensor, scale: Tensor, scaleGradient: Tensor? = nil) -> (da: Tensor, db: Tensor) {
        precondition(dy.shape == b.shape, "addScaled backward: dy \(dy.shape) vs b \(b.shape)")
        let c = b.shape.last!, n = b.elementCount / max(c, 1)
        let g = dy.float32Values(), z = b.float32Values(), s = scale.float32Values()
        let db = (0..<n * c).map { Float(Double(g[$0]) * Double(s[$0 % c])) }
        scaleGradient?.withMutableFloat32 { ds in
            for i in 0..<c {
                var sum = 0.0
                for row in 0..<n { sum += Double(g[row * c + i]) * Double(z[row * c + i]) }
                ds[i] = Float(Double(ds[i]) + sum)
            }
        }
        return (dy, Tensor(shape: b.shape, float32: db))
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
