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

    // MARK: - Backward

    /// Backward of ``forward(_:weight:bias:activation:)`` without activation (apply ``Elementwise/backward(_:_:x:)``
    /// first when the forward fused one). dy [N, M] is dLoss/dy, x [N, K] the forward's input, weight [M, K]:
    /// - returns dx = dy · W [N, K] (one sgemm), or nil when `needsInputGradient` is false (the first layer);
    /// - `weightGradient` [M, K], if given, is ACCUMULATED in place: dW += dyᵀ · x (one sgemm, beta = 1);
    /// - `biasGradient` [M], if given, is accumulated in place: db += Σ_rows dy.
    /// Pass nil for a frozen weight or bias: its gradient is then not computed at all. The gradient buffers belong
    /// to the caller (a parameter-gradient store that sums micro-batches); zero them at the start of a step.
    @discardableResult
    public static func backward(_ dy: Tensor, x: Tensor, weight: Tensor, weightGradient: Tensor? = nil,
                                biasGradient: Tensor? = nil, needsInputGradient: Bool = true) -> Tensor? {
        let (n, k, m) = backwardDimensions(dy, x, weight, weightGradient, biasGradient)
        dy.withFloat32 { g in
            if let weightGradient {
                // dW[M, K] += dy[N, M]ᵀ · x[N, K]
                x.withFloat32 { input in weightGradient.withMutableFloat32 { dw in
                    BLAS.sgemm(transA: true, m: m, n: k, k: n, a: g.baseAddress!, lda: m, b: input.baseAddress!, ldb: k,
                               beta: 1, c: dw.baseAddress!, ldc: k)
                } }
            }
            if let biasGradient {
                biasGradient.withMutableFloat32 { db in
                    for row in 0..<n {
                        let source = g.baseAddress! + row * m
                        for j in 0..<m { db[j] += source[j] }
                    }
                }
            }
        }
        guard needsInputGradient else { return nil }
        // dx[N, K] = dy[N, M] · W[M, K]
        let dx = Tensor(uninitialized: [n, k], dtype: .f32)
        dy.withFloat32 { g in weight.withFloat32 { w in dx.withMutableFloat32 { out in
            BLAS.sgemm(m: n, n: k, k: m, a: g.baseAddress!, lda: m, b: w.baseAddress!, ldb: k, beta: 0,
                       c: out.baseAddress!, ldc: k)
        } } }
        return dx
    }

    /// The plain-loop reference for ``backward(_:x:weight:weightGradient:biasGradient:needsInputGradient:)``:
    /// the same contract, every sum accumulated in double.
    @discardableResult
    public static func backwardReference(_ dy: Tensor, x: Tensor, weight: Tensor, weightGradient: Tensor? = nil,
                                         biasGradient: Tensor? = nil, needsInputGradient: Bool = true) -> Tensor? {
        let (n, k, m) = backwardDimensions(dy, x, weight, weightGradient, biasGradient)
        let g = dy.float32Values(), input = x.float32Values(), w = weight.float32Values()
        if let weightGradient {
            weightGradient.withMutableFloat32 { dw in
                for o in 0..<m {
                    for i in 0..<k {
                        var sum = 0.0
                        for row in 0..<n { sum += Double(g[row * m + o]) * Double(input[row * k + i]) }
                        dw[o * k + i] = Float(Double(dw[o * k + i]) + sum)
                    }
                }
            }
        }
        if let biasGradient {
            biasGradient.withMutableFloat32 { db in
                for o in 0..<m {
                    var sum = 0.0
                    for row in 0..<n { sum += Double(g[row * m + o]) }
                    db[o] = Float(Double(db[o]) + sum)
                }
            }
        }
        guard needsInputGradient else { return nil }
        var out = [Float](repeating: 0, count: n * k)
        for row in 0..<n {
            for i in 0..<k {
                var sum = 0.0
                for o in 0..<m { sum += Double(g[row * m + o]) * Double(w[o * k + i]) }
                out[row * k + i] = Float(sum)
            }
        }
        return Tensor(shape: [n, k], float32: out)
    }

    private static func backwardDimensions(_ dy: Tensor, _ x: Tensor, _ weight: Tensor, _ weightGradient: Tensor?,
                                           _ biasGradient: Tensor?) -> (Int, Int, Int) {
        let (n, k, m) = dimensions(x, weight, nil)
        precondition(dy.shape == [n, m], "linear backward: dy \(ShapeMath.describe(dy.shape)) for output [\(n), \(m)]")
        precondition(weightGradient.map { $0.shape == weight.shape } ?? true, "linear backward: weight gradient shape")
        precondition(biasGradient.map { $0.elementCount == m } ?? true, "linear backward: bias gradient shape")
        return (n, k, m)
    }

    // MARK: - LoRA

    /// A LoRA adapter on a Linear layer, unmerged as PEFT applies it (Formats/prima-checkpoint.md §6):
    /// `y = x · Wᵀ + b + scaling · (x · Aᵀ) · Bᵀ`, with A [r, K] (`lora_A`), B [M, r] (`lora_B`) and
    /// scaling = alpha / r (alpha / √r with rsLoRA). The base weight may be f32 or int8: the adapter's forward and
    /// backward only add to what the base layer produced.
    public struct LoRA: Sendable {
        /// A [r, K], PEFT's `lora_A.weight`.
        public let a: Tensor
        /// B [M, r], PEFT's `lora_B.weight`.
        public let b: Tensor
        /// The factor on the adapter's term: alpha / r, or alpha / √r with rsLoRA.
        public let scaling: Float
        /// The rank r.
        public var rank: Int { a.shape[0] }

        /// An adapter with an explicit scaling.
        public init(a: Tensor, b: Tensor, scaling: Float) {
            precondition(a.shape.count == 2 && b.shape.count == 2 && b.shape[1] == a.shape[0],
                         "LoRA: A \(ShapeMath.describe(a.shape)) and B \(ShapeMath.describe(b.shape)) must be [r, K] and [M, r]")
            (self.a, self.b, self.scaling) = (a, b, scaling)
        }

        /// An adapter with PEFT's scaling: `lora_alpha / r`, or `lora_alpha / √r` when `useRSLoRA`.
        public init(a: Tensor, b: Tensor, alpha: Float, useRSLoRA: Bool = false) {
            let r = Float(a.shape[0])
            self.init(a: a, b: b, scaling: useRSLoRA ? alpha / r.squareRoot() : alpha / r)
        }
    }

    /// `y = x · Wᵀ + b + scaling · (x · Aᵀ) · Bᵀ` for x [N, K], weight [M, K]: the base ``forward(_:weight:bias:activation:)``
    /// then ``addLoRA(_:input:to:)``. Returns y [N, M] and `hidden` = x · Aᵀ [N, r], which the backward needs.
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, lora: LoRA) -> (output: Tensor, hidden: Tensor) {
        let y = forward(x, weight: weight, bias: bias)
        let hidden = addLoRA(lora, input: x, to: y)
        return (y, hidden)
    }

    /// Adds `scaling · (x · Aᵀ) · Bᵀ` to y [N, M] IN PLACE and returns hidden = x · Aᵀ [N, r] (two sgemms). y must
    /// be the output the base layer (f32 or int8) has just produced, not a tensor anything else holds.
    @discardableResult
    public static func addLoRA(_ lora: LoRA, input x: Tensor, to y: Tensor) -> Tensor {
        let (n, k, r, m) = loraDimensions(lora, x)
        precondition(y.shape == [n, m], "LoRA: output \(ShapeMath.describe(y.shape)) for [\(n), \(m)]")
        let hidden = Tensor(uninitialized: [n, r], dtype: .f32)
        x.withFloat32 { input in lora.a.withFloat32 { a in lora.b.withFloat32 { b in
            hidden.withMutableFloat32 { h in y.withMutableFloat32 { out in
                // h[N, r] = x[N, K] · A[r, K]ᵀ ; y[N, M] += scaling · h · B[M, r]ᵀ
                BLAS.sgemm(transB: true, m: n, n: r, k: k, a: input.baseAddress!, lda: k, b: a.baseAddress!, ldb: k,
                           beta: 0, c: h.baseAddress!, ldc: r)
                BLAS.sgemm(transB: true, m: n, n: m, k: r, alpha: lora.scaling, a: h.baseAddress!, lda: r,
                           b: b.baseAddress!, ldb: r, beta: 1, c: out.baseAddress!, ldc: m)
            } }
        } } }
        return hidden
    }

    /// The plain-loop reference of the LoRA forward (base and adapter in double, as PEFT: the scaling multiplies
    /// B(A x)). Returns y [N, M] and hidden = x · Aᵀ [N, r].
    public static func forwardReference(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, lora: LoRA) -> (output: Tensor, hidden: Tensor) {
        let (n, k, r, m) = loraDimensions(lora, x)
        let (_, _, mw) = dimensions(x, weight, bias)
        precondition(mw == m, "LoRA: B has \(m) outputs, the weight \(mw)")
        let input = x.float32Values(), w = weight.float32Values(), b = bias?.float32Values()
        let a = lora.a.float32Values(), bl = lora.b.float32Values()
        var hidden = [Double](repeating: 0, count: n * r)
        for row in 0..<n {
            for j in 0..<r {
                var sum = 0.0
                for i in 0..<k { sum += Double(input[row * k + i]) * Double(a[j * k + i]) }
                hidden[row * r + j] = sum
            }
        }
        var out = [Float](repeating: 0, count: n * m)
        for row in 0..<n {
            for o in 0..<m {
                var base = Double(b?[o] ?? 0)
                for i in 0..<k { base += Double(input[row * k + i]) * Double(w[o * k + i]) }
                var adapter = 0.0
                for j in 0..<r { adapter += hidden[row * r + j] * Double(bl[o * r + j]) }
                out[row * m + o] = Float(base + Double(lora.scaling) * adapter)
            }
        }
        return (Tensor(shape: [n, m], float32: out), Tensor(shape: [n, r], float32: hidden.map { Float($0) }))
    }

    /// Backward of the adapter term `scaling · (x · Aᵀ) · Bᵀ`, given dy [N, M], the forward's x [N, K] and its
    /// `hidden` = x · Aᵀ [N, r]. With dh = scaling · dy · B [N, r]:
    /// - `bGradient` [M, r] += scaling · dyᵀ · hidden; `aGradient` [r, K] += dhᵀ · x (accumulated in place; nil skips);
    /// - `inputGradient` [N, K], if given, gets dh · A ADDED in place: pass the dx the base layer's backward
    ///   (``backward(_:x:weight:weightGradient:biasGradient:needsInputGradient:)`` or
    ///   ``Int8Linear/inputGradient(_:values:scales:blockSize:)``) has just returned, and it becomes the whole dx.
    /// Four sgemms (three when no input gradient is needed).
    public static func loraBackward(_ dy: Tensor, x: Tensor, hidden: Tensor, lora: LoRA, aGradient: Tensor? = nil,
                                    bGradient: Tensor? = nil, addingInputGradientTo inputGradient: Tensor? = nil) {
        let (n, k, r, m) = loraBackwardDimensions(dy, x, hidden, lora, aGradient, bGradient, inputGradient)
        dy.withFloat32 { g in hidden.withFloat32 { h in
            if let bGradient {
                // dB[M, r] += scaling · dy[N, M]ᵀ · h[N, r]
                bGradient.withMutableFloat32 { db in
                    BLAS.sgemm(transA: true, m: m, n: r, k: n, alpha: lora.scaling, a: g.baseAddress!, lda: m,
                               b: h.baseAddress!, ldb: r, beta: 1, c: db.baseAddress!, ldc: r)
                }
            }
            guard aGradient != nil || inputGradient != nil else { return }
            // dh[N, r] = scaling · dy[N, M] · B[M, r]
            var dh = [Float](repeating: 0, count: n * r)
            lora.b.withFloat32 { b in dh.withUnsafeMutableBufferPointer { d in
                BLAS.sgemm(m: n, n: r, k: m, alpha: lora.scaling, a: g.baseAddress!, lda: m, b: b.baseAddress!, ldb: r,
                           beta: 0, c: d.baseAddress!, ldc: r)
            } }
            dh.withUnsafeBufferPointer { d in
                if let aGradient {
                    // dA[r, K] += dh[N, r]ᵀ · x[N, K]
                    x.withFloat32 { input in aGradient.withMutableFloat32 { da in
                        BLAS.sgemm(transA: true, m: r, n: k, k: n, a: d.baseAddress!, lda: r, b: input.baseAddress!, ldb: k,
                                   beta: 1, c: da.baseAddress!, ldc: k)
                    } }
                }
                if let inputGradient {
                    // dx[N, K] += dh[N, r] · A[r, K]
                    lora.a.withFloat32 { a in inputGradient.withMutableFloat32 { dx in
                        BLAS.sgemm(m: n, n: k, k: r, a: d.baseAddress!, lda: r, b: a.baseAddress!, ldb: k, beta: 1,
                                   c: dx.baseAddress!, ldc: k)
                    } }
                }
            }
        } }
    }

    /// The plain-loop reference for ``loraBackward(_:x:hidden:lora:aGradient:bGradient:addingInputGradientTo:)``,
    /// every sum in double (dh kept in double).
    public static func loraBackwardReference(_ dy: Tensor, x: Tensor, hidden: Tensor, lora: LoRA, aGradient: Tensor? = nil,
                                             bGradient: Tensor? = nil, addingInputGradientTo inputGradient: Tensor? = nil) {
        let (n, k, r, m) = loraBackwardDimensions(dy, x, hidden, lora, aGradient, bGradient, inputGradient)
        let g = dy.float32Values(), input = x.float32Values(), h = hidden.float32Values()
        let a = lora.a.float32Values(), b = lora.b.float32Values(), s = Double(lora.scaling)
        if let bGradient {
            bGradient.withMutableFloat32 { db in
                for o in 0..<m {
                    for j in 0..<r {
                        var sum = 0.0
                        for row in 0..<n { sum += Double(g[row * m + o]) * Double(h[row * r + j]) }
                        db[o * r + j] = Float(Double(db[o * r + j]) + s * sum)
                    }
                }
            }
        }
        var dh = [Double](repeating: 0, count: n * r)
        for row in 0..<n {
            for j in 0..<r {
                var sum = 0.0
                for o in 0..<m { sum += Double(g[row * m + o]) * Double(b[o * r + j]) }
                dh[row * r + j] = s * sum
            }
        }
        if let aGradient {
            aGradient.withMutableFloat32 { da in
                for j in 0..<r {
                    for i in 0..<k {
                        var sum = 0.0
                        for row in 0..<n { sum += dh[row * r + j] * Double(input[row * k + i]) }
                        da[j * k + i] = Float(Double(da[j * k + i]) + sum)
                    }
                }
            }
        }
        if let inputGradient {
            inputGradient.withMutableFloat32 { dx in
                for row in 0..<n {
                    for i in 0..<k {
                        var sum = 0.0
                        for j in 0..<r { sum += dh[row * r + j] * Double(a[j * k + i]) }
                        dx[row * k + i] = Float(Double(dx[row * k + i]) + sum)
                    }
                }
            }
        }
    }

    private static func loraDimensions(_ lora: LoRA, _ x: Tensor) -> (n: Int, k: Int, r: Int, m: Int) {
        precondition(x.shape.count == 2 && x.shape[1] == lora.a.shape[1],
                     "LoRA: x \(ShapeMath.describe(x.shape)) does not match A \(ShapeMath.describe(lora.a.shape))")
        return (x.shape[0], x.shape[1], lora.rank, lora.b.shape[0])
    }

    private static func loraBackwardDimensions(_ dy: Tensor, _ x: Tensor, _ hidden: Tensor, _ lora: LoRA, _ aGradient: Tensor?,
                                               _ bGradient: Tensor?, _ inputGradient: Tensor?) -> (Int, Int, Int, Int) {
        let (n, k, r, m) = loraDimensions(lora, x)
        precondition(dy.shape == [n, m] && hidden.shape == [n, r],
                     "LoRA backward: dy \(ShapeMath.describe(dy.shape)), hidden \(ShapeMath.describe(hidden.shape)) for N \(n), M \(m), r \(r)")
        precondition(aGradient.map { $0.shape == lora.a.shape } ?? true && bGradient.map { $0.shape == lora.b.shape } ?? true,
                     "LoRA backward: gradient buffers must match A and B")
        precondition(inputGradient.map { $0.shape == x.shape } ?? true, "LoRA backward: input gradient must match x")
        return (n, k, r, m)
    }

    private static func dimensions(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> (Int, Int, Int) {
        precondition(x.shape.count == 2 && weight.shape.count == 2 && x.shape[1] == weight.shape[1],
                     "linear: x \(ShapeMath.describe(x.shape)) does not match weight \(ShapeMath.describe(weight.shape))")
        precondition(bias.map { $0.shape == [weight.shape[0]] } ?? true, "linear: bias does not match weight")
        return (x.shape[0], x.shape[1], weight.shape[0])
    }
}
