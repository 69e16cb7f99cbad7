import PrimaKernels

/// Linear layers, `y = x · Wᵀ + b`, as `torch.nn.Linear` computes them.
public enum Linear {
    /// x [N, K] · weight[M, K]ᵀ + bias [M] → [N, M], through OpenBLAS sgemm; then `activation`, if given, on the
    /// new output in place (as ``Elementwise/apply(_:_:isa:)``, the same bits, without a second tensor).
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                               activation: Elementwise.Activation? = nil) -> Tensor {
        let (n, k, m) = dimensions(x, weight, bias)
        // Every element is written: by the bias copy (then beta = 1), or by sgemm with beta = 0, which BLAS defines
        // as not reading C (OpenBLAS zeroes it first).
        let y = Tensor(uninitialized: [n, m], dtype: .f32)
        y.withMutableFloat32 { out in
            x.withFloat32 { input in
                weight.withFloat32 { w in
                    if let bias {
                        // Start every row from the bias and accumulate the product onto it (beta = 1).
                        bias.withFloat32 { b in
                            for row in 0..<n { (out.baseAddress! + row * m).update(from: b.baseAddress!, count: m) }
                        }
                    }
                    BLAS.sgemm(transB: true, m: n, n: m, k: k, a: input.baseAddress!, lda: k, b: w.baseAddress!, ldb: k,
                               beta: bias == nil ? 0 : 1, c: out.baseAddress!, ldc: m)
                }
            }
            if let code = activation?.kernelCode {
                _ = prima_activation(FloatISA.best.code, code, out.baseAddress!, out.baseAddress!, Int64(out.count))
            }
        }
        if let activation, activation.kernelCode == nil { return Elementwise.apply(activation, y) }
        return y
    }

    /// The plain-loop reference for ``forward(_:weight:bias:)`` (double accumulation).
    public static func reference(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        let (n, k, m) = dimensions(x, weight, bias)
        let input = x.float32Values(), w = weight.float32Values(), b = bias?.float32Values()
        var out = [Float](repeating: 0, count: n * m)
        for row in 0..<n {
            for column in 0..<m {
                var sum = Double(b?[column] ?? 0)
                for i in 0..<k { sum += Double(input[row * k + i]) * Double(w[column * k + i]) }
                out[row * m + column] = Float(sum)
            }
        }
        return Tensor(shape: [n, m], float32: out)
    }

    private static func dimensions(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> (Int, Int, Int) {
        precondition(x.shape.count == 2 && weight.shape.count == 2 && x.shape[1] == weight.shape[1],
                     "linear: x \(ShapeMath.describe(x.shape)) does not match weight \(ShapeMath.describe(weight.shape))")
        precondition(bias.map { $0.shape == [weight.shape[0]] } ?? true, "linear: bias does not match weight")
        return (x.shape[0], x.shape[1], weight.shape[0])
    }
}
