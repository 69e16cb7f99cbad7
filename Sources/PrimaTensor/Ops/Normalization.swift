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
}
