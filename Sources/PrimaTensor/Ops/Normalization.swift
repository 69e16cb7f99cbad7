import Foundation
import PrimaKernels

/// Row-wise normalisations over the last dimension of an [N, C] tensor.
public enum Normalization {
    /// LayerNorm as PyTorch's CPU kernel computes it: biased variance, `rstd = 1/sqrt(var + eps)`,
    /// `y = (x·rstd − mean·rstd) · γ + β` (γ = 1 and β = 0 when absent). Moments in f32 with 16 lane sums
    /// (`prima_layer_norm`); ``layerNormReference(_:weight:bias:eps:)`` is the plain double-accumulating loop.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float, isa: FloatISA = .best) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        precondition(weight.map { $0.elementCount == c } ?? true && bias.map { $0.elementCount == c } ?? true,
                     "layerNorm: weight or bias does not match width \(c)")
        let y = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            withOptionalFloat32(weight) { gamma in withOptionalFloat32(bias) { beta in
                prima_layer_norm(isa.code, input.baseAddress!, Int64(n), Int64(c), gamma, beta, eps, out.baseAddress!)
            } }
        } }
        return y
    }

    /// The plain-loop reference for ``layerNorm(_:weight:bias:eps:isa:)``: moments accumulated in double.
    public static func layerNormReference(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let y = Tensor(zeros: x.shape, dtype: .f32)
        let gamma = weight?.float32Values(), beta = bias?.float32Values()
        x.withFloat32 { input in
            y.withMutableFloat32 { out in
                for row in 0..<n {
                    let base = row * c
                    var sum = 0.0
                    for i in 0..<c { sum += Double(input[base + i]) }
                    let mean = sum / Double(c)
                    var squares = 0.0
                    for i in 0..<c {
                        let d = Double(input[base + i]) - mean
                        squares += d * d
                    }
                    let rstd = Float(1 / (squares / Double(c) + Double(eps)).squareRoot())
                    let shift = -Float(mean) * rstd
                    for i in 0..<c {
                        var v = input[base + i] * rstd + shift
                        if let gamma { v *= gamma[i] }
                        if let beta { v += beta[i] }
                        out[base + i] = v
                    }
                }
            }
        }
        return y
    }

    /// RMSNorm as Qwen3 computes it: `y = w · (x · rsqrt(mean(x²) + eps))`, the mean of squares in f32 with 16 lane
    /// sums (`prima_rms_norm`); ``rmsNormReference(_:weight:eps:)`` is the plain double-accumulating loop.
    public static func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, isa: FloatISA = .best) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        precondition(weight.elementCount == c, "rmsNorm: weight \(weight.elementCount) for width \(c)")
        let y = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in weight.withFloat32 { w in
            prima_rms_norm(isa.code, input.baseAddress!, Int64(n), Int64(c), w.baseAddress!, eps, out.baseAddress!)
        } } }
        return y
    }

    /// The plain-loop reference for ``rmsNorm(_:weight:eps:isa:)``: the mean of squares accumulated in double.
    public static func rmsNormReference(_ x: Tensor, weight: Tensor, eps: Float) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let y = Tensor(zeros: x.shape, dtype: .f32)
        let w = weight.float32Values()
        precondition(w.count == c, "rmsNorm: weight \(w.count) for width \(c)")
        x.withFloat32 { input in
            y.withMutableFloat32 { out in
                for row in 0..<n {
                    let base = row * c
                    var squares = 0.0
                    for i in 0..<c { squares += Double(input[base + i]) * Double(input[base + i]) }
                    let scale = Float(1 / (squares / Double(c) + Double(eps)).squareRoot())
                    for i in 0..<c { out[base + i] = w[i] * (input[base + i] * scale) }
                }
            }
        }
        return y
    }

    // MARK: - Training: forwards that save their statistics, and backwards

    /// ``layerNorm(_:weight:bias:eps:isa:)`` that also returns what the backward needs: the row means and
    /// `rstd = 1/sqrt(var + eps)` [N] (x [N, C], or any shape whose last dimension is C). The output is the same
    /// tensor bits as ``layerNorm(_:weight:bias:eps:isa:)`` (it is that kernel's output), and the statistics are
    /// the kernel's own: computed with its arithmetic (16 lane sums, the fixed lane tree, then the tail in order).
    public static func layerNormTraining(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
                                         isa: FloatISA = .best) -> (output: Tensor, mean: Tensor, rstd: Tensor) {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let y = layerNorm(x, weight: weight, bias: bias, eps: eps, isa: isa)
        let mean = Tensor(uninitialized: [n], dtype: .f32), rstd = Tensor(uninitialized: [n], dtype: .f32)
        x.withFloat32 { input in mean.withMutableFloat32 { m in rstd.withMutableFloat32 { r in
            for row in 0..<n {
                let xr = input.baseAddress! + row * c
                m[row] = KernelSums.rowSum(xr, c) / Float(c)
                r[row] = 1 / (KernelSums.rowSquares(xr, c, around: m[row]) / Float(c) + eps).squareRoot()
            }
        } } }
        return (y, mean, rstd)
    }

    /// Backward of LayerNorm, y = x̂ · γ + β with x̂ = (x − mean) · rstd, from the saved `mean` and `rstd` [N].
    /// dy and x [N, C] (or any shape with last dimension C), weight γ [C] or nil → dx [N, C]. `weightGradient` [C]
    /// += Σ_rows dy · x̂ and `biasGradient` [C] += Σ_rows dy are ACCUMULATED in place; nil skips them (frozen, or
    /// absent). With g = dy · γ: dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), the form of PyTorch's
    /// layer_norm_kernel.cpp backward written around x̂, which avoids its b·x + c cancellation when |mean| ≫ std.
    /// f32; x̂ is recomputed from the saved statistics as the forward computed it.
    public static func layerNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor?, mean: Tensor, rstd: Tensor,
                                         weightGradient: Tensor? = nil, biasGradient: Tensor? = nil) -> Tensor {
        let (n, c) = normBackwardDimensions(dy, x, weight, [mean, rstd], weightGradient, biasGradient)
        let dx = Tensor(uninitialized: x.shape, dtype: .f32)
        dy.withFloat32 { g in x.withFloat32 { input in mean.withFloat32 { mu in rstd.withFloat32 { r in
            withOptionalFloat32(weight) { gamma in withOptionalMutableFloat32(weightGradient) { dGamma in
                withOptionalMutableFloat32(biasGradient) { dBeta in dx.withMutableFloat32 { out in
                    // x̂ and g = dy · γ of one row, so that the loops below are plain vectorisable ones.
                    let xhat = UnsafeMutablePointer<Float>.allocate(capacity: c), scaled = UnsafeMutablePointer<Float>.allocate(capacity: c)
                    defer { xhat.deallocate(); scaled.deallocate() }
                    for row in 0..<n {
                        let (gr, xr, dr) = (g.baseAddress! + row * c, input.baseAddress! + row * c, out.baseAddress! + row * c)
                        let a = r[row], shift = -mu[row] * a
                        // x̂ as the forward computes it (x · rstd + (−mean · rstd)).
                        for j in 0..<c { xhat[j] = xr[j] * a + shift }
                        if let gamma { for j in 0..<c { scaled[j] = gr[j] * gamma[j] } } else { scaled.update(from: gr, count: c) }
                        var sumG: Float = 0, sumGX: Float = 0
                        for j in 0..<c {
                            sumG += scaled[j]
                            sumGX += scaled[j] * xhat[j]
                        }
                        let meanG = sumG / Float(c), meanGX = sumGX / Float(c)
                        for j in 0..<c { dr[j] = a * (scaled[j] - meanG - xhat[j] * meanGX) }
                        if let dGamma { for j in 0..<c { dGamma[j] += gr[j] * xhat[j] } }
                        if let dBeta { for j in 0..<c { dBeta[j] += gr[j] } }
                    }
                } }
            } }
        } } } }
        return dx
    }

    /// The plain-loop reference for ``layerNormBackward(_:x:weight:mean:rstd:weightGradient:biasGradient:)``: the
    /// chain rule through x̂ = (x − mean) · rstd, rstd = (var + eps)^(-1/2) written out, every sum in double.
    public static func layerNormBackwardReference(_ dy: Tensor, x: Tensor, weight: Tensor?, mean: Tensor, rstd: Tensor,
                                                  weightGradient: Tensor? = nil, biasGradient: Tensor? = nil) -> Tensor {
        let (n, c) = normBackwardDimensions(dy, x, weight, [mean, rstd], weightGradient, biasGradient)
        let g = dy.float32Values(), input = x.float32Values(), mu = mean.float32Values(), r = rstd.float32Values()
        let gamma = weight?.float32Values()
        var out = [Float](repeating: 0, count: n * c)
        var dGamma = [Double](repeating: 0, count: c), dBeta = [Double](repeating: 0, count: c)
        for row in 0..<n {
            let (m, a) = (Double(mu[row]), Double(r[row]))
            // y_j = x̂_j γ_j + β_j; ∂L/∂x̂_j = dy_j γ_j; x̂_j = (x_j − m) a with m = mean(x), a = (var + eps)^(-1/2):
            // ∂L/∂x_i = a (ĝ_i − Σ_j ĝ_j / C) + (∂a/∂x_i) Σ_j ĝ_j (x_j − m), ∂a/∂x_i = −a³ (x_i − m) / C.
            var sumG = 0.0, sumGD = 0.0
            for j in 0..<c {
                let gj = Double(g[row * c + j]) * Double(gamma?[j] ?? 1)
                sumG += gj
                sumGD += gj * (Double(input[row * c + j]) - m)
            }
            for i in 0..<c {
                let gi = Double(g[row * c + i]) * Double(gamma?[i] ?? 1), d = Double(input[row * c + i]) - m
                out[row * c + i] = Float(a * (gi - sumG / Double(c)) - a * a * a * d / Double(c) * sumGD)
                dGamma[i] += Double(g[row * c + i]) * d * a
                dBeta[i] += Double(g[row * c + i])
            }
        }
        accumulate(dGamma, into: weightGradient)
        accumulate(dBeta, into: biasGradient)
        return Tensor(shape: x.shape, float32: out)
    }

    /// ``rmsNorm(_:weight:eps:isa:)`` that also returns `rstd = 1/sqrt(mean(x²) + eps)` [N], the kernel's own value
    /// (its arithmetic, as ``layerNormTraining(_:weight:bias:eps:isa:)``); the output is that kernel's, bit for bit.
    /// Qwen3's per-head q/k norm is this on x viewed as [N·H, D] with the shared weight [D].
    public static func rmsNormTraining(_ x: Tensor, weight: Tensor, eps: Float, isa: FloatISA = .best) -> (output: Tensor, rstd: Tensor) {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let y = rmsNorm(x, weight: weight, eps: eps, isa: isa)
        let rstd = Tensor(uninitialized: [n], dtype: .f32)
        x.withFloat32 { input in rstd.withMutableFloat32 { r in
            for row in 0..<n {
                r[row] = 1 / (KernelSums.rowSquares(input.baseAddress! + row * c, c, around: 0) / Float(c) + eps).squareRoot()
            }
        } }
        return (y, rstd)
    }

    /// Backward of RMSNorm, y = w · x̂ with x̂ = x · rstd, from the saved `rstd` [N]. dy and x [N, C], weight [C]
    /// → dx [N, C]; `weightGradient` [C] += Σ_rows dy · x̂ ACCUMULATED in place (nil: frozen). With g = dy · w:
    /// dx = rstd · (g − x̂ · mean(g · x̂)). f32.
    public static func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, rstd: Tensor,
                                       weightGradient: Tensor? = nil) -> Tensor {
        let (n, c) = normBackwardDimensions(dy, x, weight, [rstd], weightGradient, nil)
        let dx = Tensor(uninitialized: x.shape, dtype: .f32)
        dy.withFloat32 { g in x.withFloat32 { input in rstd.withFloat32 { r in weight.withFloat32 { w in
            withOptionalMutableFloat32(weightGradient) { dw in dx.withMutableFloat32 { out in
                for row in 0..<n {
                    let (gr, xr, dr) = (g.baseAddress! + row * c, input.baseAddress! + row * c, out.baseAddress! + row * c)
                    let a = r[row]
                    var sumGX: Float = 0
                    for j in 0..<c { sumGX += (gr[j] * w[j]) * (xr[j] * a) }
                    let meanGX = sumGX / Float(c)
                    for j in 0..<c { dr[j] = a * (gr[j] * w[j] - (xr[j] * a) * meanGX) }
                    if let dw { for j in 0..<c { dw[j] += gr[j] * (xr[j] * a) } }
                }
            } }
        } } } }
        return dx
    }

    /// The plain-loop reference for ``rmsNormBackward(_:x:weight:rstd:weightGradient:)``: the chain rule through
    /// rstd = (mean(x²) + eps)^(-1/2) written out, every sum in double.
    public static func rmsNormBackwardReference(_ dy: Tensor, x: Tensor, weight: Tensor, rstd: Tensor,
                                                weightGradient: Tensor? = nil) -> Tensor {
        let (n, c) = normBackwardDimensions(dy, x, weight, [rstd], weightGradient, nil)
        let g = dy.float32Values(), input = x.float32Values(), r = rstd.float32Values(), w = weight.float32Values()
        var out = [Float](repeating: 0, count: n * c), dw = [Double](repeating: 0, count: c)
        for row in 0..<n {
            let a = Double(r[row])
            // y_j = w_j x_j a; ∂a/∂x_i = −a³ x_i / C.
            var sumGX = 0.0
            for j in 0..<c { sumGX += Double(g[row * c + j]) * Double(w[j]) * Double(input[row * c + j]) }
            for i in 0..<c {
                let xi = Double(input[row * c + i])
                out[row * c + i] = Float(a * Double(g[row * c + i]) * Double(w[i]) - a * a * a * xi / Double(c) * sumGX)
                dw[i] += Double(g[row * c + i]) * xi * a
            }
        }
        accumulate(dw, into: weightGradient)
        return Tensor(shape: x.shape, float32: out)
    }

    private static func normBackwardDimensions(_ dy: Tensor, _ x: Tensor, _ weight: Tensor?, _ saved: [Tensor],
                                               _ weightGradient: Tensor?, _ biasGradient: Tensor?) -> (Int, Int) {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        precondition(dy.shape == x.shape, "norm backward: dy \(ShapeMath.describe(dy.shape)) for x \(ShapeMath.describe(x.shape))")
        precondition(saved.allSatisfy { $0.elementCount == n }, "norm backward: saved statistics must hold one value per row (\(n))")
        precondition(weight.map { $0.elementCount == c } ?? true && weightGradient.map { $0.elementCount == c } ?? true
                     && biasGradient.map { $0.elementCount == c } ?? true, "norm backward: weight or gradients do not match width \(c)")
        precondition(weightGradient == nil || weight != nil, "norm backward: a weight gradient without a weight")
        return (n, c)
    }

    /// `body` with the elements of a gradient buffer, or nil when there is none.
    private static func withOptionalMutableFloat32<R>(_ tensor: Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
        guard let tensor else { return body(nil) }
        return tensor.withMutableFloat32 { body($0.baseAddress!) }
    }

    private static func accumulate(_ values: [Double], into buffer: Tensor?) {
        buffer?.withMutableFloat32 { b in for i in values.indices { b[i] = Float(Double(b[i]) + values[i]) } }
    }
}

/// The row sums of float_ops.c (`row_sum`, `row_squares`) in Swift, operation for operation, so that the saved
/// statistics of the training forwards are the kernels' own: 16 lane sums over whole vectors (fused multiply-add
/// for the squares), the lanes added as ((l0+l8) + (l4+l12)) + …, then the tail in order.
enum KernelSums {
    static func rowSum(_ x: UnsafePointer<Float>, _ c: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= c {
            acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16
        }
        var s = laneTree(acc)
        while i < c {
            s += x[i]
            i += 1
        }
        return s
    }

    /// Σ (x[i] − m)².
    static func rowSquares(_ x: UnsafePointer<Float>, _ c: Int, around m: Float) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= c {
            let d = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) - SIMD16(repeating: m)
            acc = acc.addingProduct(d, d)
            i += 16
        }
        var s = laneTree(acc)
        while i < c {
            let d = x[i] - m
            s = s.addingProduct(d, d)
            i += 1
        }
        return s
    }

    /// `sum16` of float_ops.c.
    static func laneTree(_ v: SIMD16<Float>) -> Float {
        let h = v.lowHalf + v.highHalf
        let q = h.lowHalf + h.highHalf
        return (q[0] + q[2]) + (q[1] + q[3])
    }
}
