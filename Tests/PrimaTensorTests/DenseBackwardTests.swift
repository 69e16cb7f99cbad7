import Foundation
import PrimaTensor
import PrimaTestSupport
import Testing

/// Backward passes of the dense ops (Linear and LoRA, int8 input gradient, LayerNorm, RMSNorm, activations, gated
/// MLPs, softmax, cross-entropy, L2 normalisation, embedding lookup): each reference backward against float64
/// central finite differences of a float64 forward written here (GradientCheck), each fast backward against its
/// reference, on odd sizes, several seeds and every variant.
@Suite struct DenseBackwardTests {
    /// Reference backward vs float64 finite differences, relative to max|grad|. The references accumulate in
    /// double, so what remains is f32: the gradients rounded to f32 and, for the norms, the saved f32 mean/rstd
    /// (a few 1e-7 relative); the differences' own error is ~1e-10. Measured worst over this file 1.7e-7
    /// (LayerNorm dγ; PRIMA_PRINT_GRADIENT_ERRORS=1 prints every value): 2e-6 leaves a margin of about 10.
    static let referenceVersusNumeric = 2e-6
    /// Fast backward vs reference backward, relative to max|grad|: f32 sums of `length` terms (sgemm, row sums)
    /// each lose at most about length · 2⁻²⁴ relative in the worst case; real errors grow like √length, so
    /// 4 ulps · √length + 8 ulps is still well above what is measured and far below a wrong formula's O(1).
    static func fastVersusReference(length: Int) -> Double { (4 * Double(length).squareRoot() + 8) * 0x1p-24 }
    /// A gradient accumulated onto a buffer P against P + the gradient computed alone, over `length` summed terms:
    /// the row-by-row accumulations (LayerNorm dγ and dβ, RMSNorm dw, bias sums) round each of their `length`
    /// additions at the scale of P instead of once, and sgemm with beta = 1 may group alpha·AB + beta·C as it likes;
    /// so the same bound as a sum of that length (measured worst 0.7 of it, LayerNorm dβ over 9 rows).
    static func accumulation(length: Int) -> Double { fastVersusReference(length: length) }

    // MARK: - Helpers

    /// Float64 central differences of `loss` over the concatenation of `pieces`, split back into pieces.
    static func numeric(_ pieces: [[Float]], _ loss: ([[Double]]) -> Double) -> [[Double]] {
        let counts = pieces.map(\.count)
        func split(_ flat: [Double]) -> [[Double]] {
            var result: [[Double]] = [], start = 0
            for count in counts {
                result.append(Array(flat[start..<start + count]))
                start += count
            }
            return result
        }
        let flat = pieces.flatMap { $0.map(Double.init) }
        return split(GradientCheck.numeric({ loss(split($0)) }, at: flat))
    }

    /// Expects `a` within `tolerance` of `b` relative to max|b|, naming the first differing value on failure.
    static func expectClose(_ a: [Float], _ b: [Double], _ tolerance: Double, _ what: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        let error = GradientCheck.relativeError(a, b)
        // PRIMA_PRINT_GRADIENT_ERRORS=1 prints every measured error, to see the tolerances' margins.
        if ProcessInfo.processInfo.environment["PRIMA_PRINT_GRADIENT_ERRORS"] != nil {
            print("gradient error \(what): \(error) (tolerance \(tolerance))")
        }
        let bound = tolerance * max(b.map(abs).max() ?? 0, 1e-30)
        let first = a.indices.first { abs(Double(a[$0]) - b[$0]) > bound }
        #expect(error <= tolerance,
                "\(what): relative error \(error) > \(tolerance); first at \(first ?? -1): \(first.map { "\(a[$0]) vs \(b[$0])" } ?? "")",
                sourceLocation: sourceLocation)
    }

    static func expectClose(_ a: [Float], _ b: [Float], _ tolerance: Double, _ what: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        expectClose(a, b.map(Double.init), tolerance, what, sourceLocation: sourceLocation)
    }


    static func tensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        Tensor(shape: shape, float32: GradientCheck.random(shape.reduce(1, *), seed: seed, scale: scale))
    }

    static func zeros(_ shape: [Int]) -> Tensor { Tensor(zeros: shape, dtype: .f32) }

    static func copy(_ t: Tensor) -> Tensor { Tensor(shape: t.shape, float32: t.float32Values()) }

    /// x [N, K] · W[M, K]ᵀ in double.
    static func matmulT(_ x: [Double], _ w: [Double], n: Int, k: Int, m: Int) -> [Double] {
        var out = [Double](repeating: 0, count: n * m)
        for row in 0..<n { for o in 0..<m {
            var sum = 0.0
            for i in 0..<k { sum += x[row * k + i] * w[o * k + i] }
            out[row * m + o] = sum
        } }
        return out
    }

    // MARK: - Linear

    struct LinearCase: CustomTestStringConvertible, Sendable {
        let n: Int, k: Int, m: Int, bias: Bool, seed: UInt64
        var testDescription: String { "N\(n) K\(k) M\(m)\(bias ? " bias" : "") seed \(seed)" }
    }

    static let linearCases: [LinearCase] = [
        LinearCase(n: 7, k: 13, m: 11, bias: true, seed: 1), LinearCase(n: 7, k: 13, m: 11, bias: false, seed: 2),
        LinearCase(n: 1, k: 9, m: 7, bias: true, seed: 3), LinearCase(n: 5, k: 17, m: 3, bias: true, seed: 4),
    ]

    @Test(arguments: linearCases)
    func linearReferenceMatchesFiniteDifferences(_ c: LinearCase) {
        let x = Self.tensor([c.n, c.k], seed: c.seed), w = Self.tensor([c.m, c.k], seed: c.seed + 100)
        let b = c.bias ? Self.tensor([c.m], seed: c.seed + 200) : nil
        let g = GradientCheck.random(c.n * c.m, seed: c.seed + 300)
        let dw = Self.zeros([c.m, c.k]), db = c.bias ? Self.zeros([c.m]) : nil
        let dx = Linear.backwardReference(Tensor(shape: [c.n, c.m], float32: g), x: x, weight: w, weightGradient: dw,
                                          biasGradient: db)!
        let pieces = [x.float32Values(), w.float32Values()] + (b.map { [$0.float32Values()] } ?? [])
        let numeric = Self.numeric(pieces) { p in
            var y = Self.matmulT(p[0], p[1], n: c.n, k: c.k, m: c.m)
            if c.bias { for row in 0..<c.n { for o in 0..<c.m { y[row * c.m + o] += p[2][o] } } }
            return GradientCheck.contract(y, with: g.map(Double.init))
        }
        Self.expectClose(dx.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx")
        Self.expectClose(dw.float32Values(), numeric[1], Self.referenceVersusNumeric, "dW")
        if let db { Self.expectClose(db.float32Values(), numeric[2], Self.referenceVersusNumeric, "db") }
    }

    @Test(arguments: [(7, 13, 11, UInt64(1)), (33, 97, 65, 2), (97, 33, 7, 3), (1, 129, 31, 4)])
    func linearFastMatchesReference(_ n: Int, _ k: Int, _ m: Int, _ seed: UInt64) {
        let x = Self.tensor([n, k], seed: seed), w = Self.tensor([m, k], seed: seed + 1)
        let dy = Self.tensor([n, m], seed: seed + 2)
        let fast = (dw: Self.zeros([m, k]), db: Self.zeros([m])), reference = (dw: Self.zeros([m, k]), db: Self.zeros([m]))
        let dx = Linear.backward(dy, x: x, weight: w, weightGradient: fast.dw, biasGradient: fast.db)!
        let dxReference = Linear.backwardReference(dy, x: x, weight: w, weightGradient: reference.dw, biasGradient: reference.db)!
        Self.expectClose(dx.float32Values(), dxReference.float32Values(), Self.fastVersusReference(length: m), "dx")
        Self.expectClose(fast.dw.float32Values(), reference.dw.float32Values(), Self.fastVersusReference(length: n), "dW")
        Self.expectClose(fast.db.float32Values(), reference.db.float32Values(), Self.fastVersusReference(length: n), "db")
    }

    @Test func linearAccumulatesAndSkipsFrozenParameters() {
        let (n, k, m) = (9, 21, 13)
        let x = Self.tensor([n, k], seed: 5), w = Self.tensor([m, k], seed: 6), dy = Self.tensor([n, m], seed: 7)
        let priorW = Self.tensor([m, k], seed: 8), priorB = Self.tensor([m], seed: 9)
        for backward in [Linear.backward, Linear.backwardReference] {
            let aloneW = Self.zeros([m, k]), aloneB = Self.zeros([m])
            let dx = backward(dy, x, w, aloneW, aloneB, true)!
            let dw = Self.copy(priorW), db = Self.copy(priorB)
            #expect(backward(dy, x, w, dw, db, false) == nil, "no dx was asked for")
            let expectW = zip(priorW.float32Values(), aloneW.float32Values()).map { Double($0) + Double($1) }
            let expectB = zip(priorB.float32Values(), aloneB.float32Values()).map { Double($0) + Double($1) }
            Self.expectClose(dw.float32Values(), expectW, Self.accumulation(length: n), "dW accumulated")
            Self.expectClose(db.float32Values(), expectB, Self.accumulation(length: n), "db accumulated")
            // Frozen weight and bias: the same dx, bit for bit.
            let frozen = backward(dy, x, w, nil, nil, true)!
            #expect(frozen.float32Values() == dx.float32Values())
        }
    }

    // MARK: - LoRA

    @Test(arguments: [(7, 13, 11, 3, true, UInt64(1)), (5, 17, 9, 1, false, 2), (3, 8, 5, 4, true, 3)])
    func loraReferenceMatchesFiniteDifferences(_ n: Int, _ k: Int, _ m: Int, _ r: Int, _ bias: Bool, _ seed: UInt64) {
        let x = Self.tensor([n, k], seed: seed), w = Self.tensor([m, k], seed: seed + 1)
        let b = bias ? Self.tensor([m], seed: seed + 2) : nil
        let lora = Linear.LoRA(a: Self.tensor([r, k], seed: seed + 3), b: Self.tensor([m, r], seed: seed + 4), alpha: 2 * Float(r) + 1)
        let g = GradientCheck.random(n * m, seed: seed + 5)
        let dy = Tensor(shape: [n, m], float32: g)
        let (_, hidden) = Linear.forwardReference(x, weight: w, bias: b, lora: lora)
        let da = Self.zeros([r, k]), dbl = Self.zeros([m, r])
        let dx = Linear.backwardReference(dy, x: x, weight: w)!
        Linear.loraBackwardReference(dy, x: x, hidden: hidden, lora: lora, aGradient: da, bGradient: dbl, addingInputGradientTo: dx)
        let s = Double(lora.scaling), bv = b?.float32Values().map(Double.init)
        let numeric = Self.numeric([x.float32Values(), lora.a.float32Values(), lora.b.float32Values()]) { p in
            var y = Self.matmulT(p[0], w.float32Values().map(Double.init), n: n, k: k, m: m)
            let h = Self.matmulT(p[0], p[1], n: n, k: k, m: r)
            let adapter = Self.matmulT(h, p[2], n: n, k: r, m: m)
            for row in 0..<n { for o in 0..<m { y[row * m + o] += (bv?[o] ?? 0) + s * adapter[row * m + o] } }
            return GradientCheck.contract(y, with: g.map(Double.init))
        }
        Self.expectClose(dx.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx")
        Self.expectClose(da.float32Values(), numeric[1], Self.referenceVersusNumeric, "dA")
        Self.expectClose(dbl.float32Values(), numeric[2], Self.referenceVersusNumeric, "dB")
    }

    @Test(arguments: [(33, 97, 65, 8, UInt64(1)), (7, 13, 11, 3, 2), (97, 45, 31, 16, 3)])
    func loraFastMatchesReference(_ n: Int, _ k: Int, _ m: Int, _ r: Int, _ seed: UInt64) {
        let x = Self.tensor([n, k], seed: seed), w = Self.tensor([m, k], seed: seed + 1), bias = Self.tensor([m], seed: seed + 2)
        let lora = Linear.LoRA(a: Self.tensor([r, k], seed: seed + 3), b: Self.tensor([m, r], seed: seed + 4), alpha: 16, useRSLoRA: seed == 2)
        // Forward: sgemm + sgemm against the double reference, sums of K and r terms.
        let (y, hidden) = Linear.forward(x, weight: w, bias: bias, lora: lora)
        let (yReference, hiddenReference) = Linear.forwardReference(x, weight: w, bias: bias, lora: lora)
        Self.expectClose(y.float32Values(), yReference.float32Values(), Self.fastVersusReference(length: k + r), "y")
        Self.expectClose(hidden.float32Values(), hiddenReference.float32Values(), Self.fastVersusReference(length: k), "hidden")
        let dy = Self.tensor([n, m], seed: seed + 5)
        let (daFast, dbFast, daReference, dbReference) = (Self.zeros([r, k]), Self.zeros([m, r]), Self.zeros([r, k]), Self.zeros([m, r]))
        let dx = Linear.backward(dy, x: x, weight: w)!
        Linear.loraBackward(dy, x: x, hidden: hidden, lora: lora, aGradient: daFast, bGradient: dbFast, addingInputGradientTo: dx)
        let dxReference = Linear.backwardReference(dy, x: x, weight: w)!
        Linear.loraBackwardReference(dy, x: x, hidden: hidden, lora: lora, aGradient: daReference, bGradient: dbReference,
                                     addingInputGradientTo: dxReference)
        Self.expectClose(dx.float32Values(), dxReference.float32Values(), Self.fastVersusReference(length: m + r), "dx")
        Self.expectClose(daFast.float32Values(), daReference.float32Values(), Self.fastVersusReference(length: n + m), "dA")
        Self.expectClose(dbFast.float32Values(), dbReference.float32Values(), Self.fastVersusReference(length: n), "dB")
        // Only B trains (A frozen): dB identical, dA untouched.
        let dbOnly = Self.zeros([m, r])
        Linear.loraBackward(dy, x: x, hidden: hidden, lora: lora, bGradient: dbOnly)
        #expect(dbOnly.float32Values() == dbFast.float32Values())
    }

    @Test func loraWithZeroBEqualsBaseLayer() {
        // PEFT initialises B to zero: the adapted layer's output is then the base layer's, bit for bit.
        let x = Self.tensor([7, 13], seed: 1), w = Self.tensor([11, 13], seed: 2), bias = Self.tensor([11], seed: 3)
        let lora = Linear.LoRA(a: Self.tensor([4, 13], seed: 4), b: Self.zeros([11, 4]), alpha: 8)
        #expect(Linear.forward(x, weight: w, bias: bias, lora: lora).output.float32Values()
                == Linear.forward(x, weight: w, bias: bias).float32Values())
        #expect(lora.scaling == 2 && Linear.LoRA(a: lora.a, b: lora.b, alpha: 8, useRSLoRA: true).scaling == 4)
    }

    // MARK: - Int8 input gradient

    /// Seeded int8 values in [-127, 127] and positive scales.
    static func int8Weight(n: Int, k: Int, blockSize: Int, seed: UInt64) -> (values: Tensor, scales: Tensor) {
        var rng = SplitMix64(seed: seed)
        let values = Tensor(zeros: [n, k], dtype: .i8)
        let q = values.storage.bytes.bindMemory(to: Int8.self)
        for i in 0..<n * k { q[i] = Int8(Int(rng.next() % 255) - 127) }
        let blocks = (k + min(blockSize, k) - 1) / min(blockSize, k)
        let scales = Tensor(shape: [n, blocks], float32: (0..<n * blocks).map { _ in (rng.uniform() + 1.5) / 127 })
        return (values, scales)
    }

    @Test(arguments: [(7, 11, 37, 8, UInt64(1)), (5, 9, 13, 13, 2), (3, 70, 33, 32, 3)])
    func int8InputGradient(_ rows: Int, _ n: Int, _ k: Int, _ blockSize: Int, _ seed: UInt64) {
        // n = 70 > dequantizedRowsPerBlock exercises a second, partial block of weight rows.
        let (values, scales) = Self.int8Weight(n: n, k: k, blockSize: blockSize, seed: seed)
        let x = Self.tensor([rows, k], seed: seed + 1), g = GradientCheck.random(rows * n, seed: seed + 2)
        let dy = Tensor(shape: [rows, n], float32: g)
        let reference = Int8Linear.inputGradientReference(dy, values: values, scales: scales, blockSize: blockSize)
        let q = values.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) }, s = scales.float32Values()
        let blocks = scales.shape[1], block = min(blockSize, k)
        let dequantised = (0..<n * k).map { Double(Float(q[$0]) * s[($0 / k) * blocks + ($0 % k) / block]) }
        let numeric = Self.numeric([x.float32Values()]) { p in
            GradientCheck.contract(Self.matmulT(p[0], dequantised, n: rows, k: k, m: n), with: g.map(Double.init))
        }
        Self.expectClose(reference.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx (reference)")
        let fast = Int8Linear.inputGradient(dy, values: values, scales: scales, blockSize: blockSize)
        Self.expectClose(fast.float32Values(), reference.float32Values(), Self.fastVersusReference(length: n), "dx (fast)")
    }

    /// The weight-only int8 forward training uses equals the dequantised linear layer (against its double reference),
    /// with and without bias, across a partial block of weight rows.
    @Test(arguments: [(5, 70, 33, 33, UInt64(3)), (3, 9, 40, 8, UInt64(4))])
    func int8DequantizedForward(_ rows: Int, _ n: Int, _ k: Int, _ blockSize: Int, _ seed: UInt64) {
        let (values, scales) = Self.int8Weight(n: n, k: k, blockSize: blockSize, seed: seed)
        let x = Self.tensor([rows, k], seed: seed + 1)
        for bias in [nil, Self.tensor([n], seed: seed + 2)] {
            let reference = Int8Linear.dequantizedForwardReference(x, values: values, scales: scales, blockSize: blockSize, bias: bias)
            let fast = Int8Linear.dequantizedForward(x, values: values, scales: scales, blockSize: blockSize, bias: bias)
            Self.expectClose(fast.float32Values(), reference.float32Values(), Self.fastVersusReference(length: k), "y")
        }
    }

    // MARK: - LayerNorm and RMSNorm

    struct NormCase: CustomTestStringConvertible, Sendable {
        let n: Int, c: Int, weight: Bool, bias: Bool, seed: UInt64, offset: Float
        var testDescription: String { "N\(n) C\(c)\(weight ? " weight" : "")\(bias ? " bias" : "") seed \(seed) offset \(offset)" }
    }

    /// Every variant of LayerNorm (γ and β present or not), odd widths below and above one 16-lane vector, and rows
    /// with a mean far from zero (offset), where a careless backward cancels.
    static let layerNormCases: [NormCase] = [
        NormCase(n: 7, c: 13, weight: true, bias: true, seed: 1, offset: 0), NormCase(n: 5, c: 33, weight: true, bias: false, seed: 2, offset: 3),
        NormCase(n: 3, c: 17, weight: false, bias: false, seed: 3, offset: 0), NormCase(n: 4, c: 7, weight: false, bias: true, seed: 4, offset: -2),
    ]

    static func normInputs(_ c: NormCase) -> (x: Tensor, weight: Tensor?, bias: Tensor?, g: [Float]) {
        let x = Tensor(shape: [c.n, c.c], float32: GradientCheck.random(c.n * c.c, seed: c.seed, scale: 2).map { $0 + c.offset })
        let weight = c.weight ? Tensor(shape: [c.c], float32: GradientCheck.random(c.c, seed: c.seed + 1).map { $0 + 1 }) : nil
        let bias = c.bias ? Self.tensor([c.c], seed: c.seed + 2) : nil
        return (x, weight, bias, GradientCheck.random(c.n * c.c, seed: c.seed + 3))
    }

    @Test(arguments: layerNormCases)
    func layerNormReferenceMatchesFiniteDifferences(_ c: NormCase) {
        let eps: Float = 1e-5
        let (x, weight, bias, g) = Self.normInputs(c)
        let (_, mean, rstd) = Normalization.layerNormTraining(x, weight: weight, bias: bias, eps: eps)
        let dw = weight.map { Self.zeros($0.shape) }, db = bias.map { Self.zeros($0.shape) }
        let dx = Normalization.layerNormBackwardReference(Tensor(shape: x.shape, float32: g), x: x, weight: weight, mean: mean,
                                                          rstd: rstd, weightGradient: dw, biasGradient: db)
        var pieces = [x.float32Values()]
        if let weight { pieces.append(weight.float32Values()) }
        if let bias { pieces.append(bias.float32Values()) }
        let numeric = Self.numeric(pieces) { p in
            var y = [Double](repeating: 0, count: c.n * c.c)
            for row in 0..<c.n {
                let values = p[0][row * c.c..<(row + 1) * c.c]
                let m = values.reduce(0, +) / Double(c.c)
                let variance = values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(c.c)
                for j in 0..<c.c {
                    y[row * c.c + j] = (p[0][row * c.c + j] - m) / (variance + Double(eps)).squareRoot() * (c.weight ? p[1][j] : 1)
                        + (c.bias ? p[c.weight ? 2 : 1][j] : 0)
                }
            }
            return GradientCheck.contract(y, with: g.map(Double.init))
        }
        Self.expectClose(dx.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx")
        if let dw { Self.expectClose(dw.float32Values(), numeric[1], Self.referenceVersusNumeric, "dγ") }
        if let db { Self.expectClose(db.float32Values(), numeric[c.weight ? 2 : 1], Self.referenceVersusNumeric, "dβ") }
    }

    @Test(arguments: layerNormCases + [NormCase(n: 33, c: 97, weight: true, bias: true, seed: 5, offset: 10),
                                       NormCase(n: 13, c: 768, weight: true, bias: false, seed: 6, offset: 0)])
    func layerNormFastMatchesReference(_ c: NormCase) {
        let (x, weight, bias, g) = Self.normInputs(c)
        let dy = Tensor(shape: x.shape, float32: g)
        let (y, mean, rstd) = Normalization.layerNormTraining(x, weight: weight, bias: bias, eps: 1e-5)
        let dw = weight.map { _ in Self.zeros([c.c]) }, db = bias.map { _ in Self.zeros([c.c]) }
        let dwReference = weight.map { _ in Self.zeros([c.c]) }, dbReference = bias.map { _ in Self.zeros([c.c]) }
        let dx = Normalization.layerNormBackward(dy, x: x, weight: weight, mean: mean, rstd: rstd, weightGradient: dw, biasGradient: db)
        let dxReference = Normalization.layerNormBackwardReference(dy, x: x, weight: weight, mean: mean, rstd: rstd,
                                                                   weightGradient: dwReference, biasGradient: dbReference)
        // dx: two f32 row sums of C terms; dγ, dβ: sums over N rows.
        Self.expectClose(dx.float32Values(), dxReference.float32Values(), Self.fastVersusReference(length: c.c), "dx")
        if let dw, let dwReference { Self.expectClose(dw.float32Values(), dwReference.float32Values(), Self.fastVersusReference(length: c.n), "dγ") }
        if let db, let dbReference { Self.expectClose(db.float32Values(), dbReference.float32Values(), Self.fastVersusReference(length: c.n), "dβ") }
        // The saved statistics are the kernel's: the training forward's output is the inference forward's, bit for bit,
        // and re-applying the saved mean and rstd with the kernel's arithmetic reproduces those bits.
        let inference = Normalization.layerNorm(x, weight: weight, bias: bias, eps: 1e-5).float32Values()
        #expect(y.float32Values().map(\.bitPattern) == inference.map(\.bitPattern))
        let (xs, means, rstds, gamma, beta) = (x.float32Values(), mean.float32Values(), rstd.float32Values(),
                                                weight?.float32Values(), bias?.float32Values())
        let rebuilt = xs.indices.map { i -> Float in
            let row = i / c.c, j = i % c.c
            var v = xs[i] * rstds[row] + (-means[row] * rstds[row])
            if let gamma { v *= gamma[j] }
            if let beta { v += beta[j] }
            return v
        }
        #expect(rebuilt.map(\.bitPattern) == inference.map(\.bitPattern), "saved mean/rstd are not the kernel's")
        // Frozen γ and β: the same dx, bit for bit.
        #expect(Normalization.layerNormBackward(dy, x: x, weight: weight, mean: mean, rstd: rstd).float32Values() == dx.float32Values())
    }

    /// RMSNorm rows: a plain [N, C] case and Qwen3's per-head q/k norm shape [N·H, D] (one weight [D] for all heads).
    static let rmsNormCases: [NormCase] = [
        NormCase(n: 7, c: 13, weight: true, bias: false, seed: 1, offset: 0), NormCase(n: 5 * 3, c: 16, weight: true, bias: false, seed: 2, offset: 0.5),
        NormCase(n: 3, c: 33, weight: true, bias: false, seed: 3, offset: -1),
    ]

    @Test(arguments: rmsNormCases)
    func rmsNormReferenceMatchesFiniteDifferences(_ c: NormCase) {
        let eps: Float = 1e-6
        let (x, weight, _, g) = Self.normInputs(c)
        let (_, rstd) = Normalization.rmsNormTraining(x, weight: weight!, eps: eps)
        let dw = Self.zeros([c.c])
        let dx = Normalization.rmsNormBackwardReference(Tensor(shape: x.shape, float32: g), x: x, weight: weight!, rstd: rstd, weightGradient: dw)
        let numeric = Self.numeric([x.float32Values(), weight!.float32Values()]) { p in
            var y = [Double](repeating: 0, count: c.n * c.c)
            for row in 0..<c.n {
                let squares = p[0][row * c.c..<(row + 1) * c.c].reduce(0) { $0 + $1 * $1 }
                let scale = 1 / (squares / Double(c.c) + Double(eps)).squareRoot()
                for j in 0..<c.c { y[row * c.c + j] = p[1][j] * p[0][row * c.c + j] * scale }
            }
            return GradientCheck.contract(y, with: g.map(Double.init))
        }
        Self.expectClose(dx.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx")
        Self.expectClose(dw.float32Values(), numeric[1], Self.referenceVersusNumeric, "dw")
    }

    @Test(arguments: rmsNormCases + [NormCase(n: 33 * 4, c: 128, weight: true, bias: false, seed: 4, offset: 0),
                                     NormCase(n: 13, c: 97, weight: true, bias: false, seed: 5, offset: 2)])
    func rmsNormFastMatchesReference(_ c: NormCase) {
        let (x, weight, _, g) = Self.normInputs(c)
        let dy = Tensor(shape: x.shape, float32: g)
        let (y, rstd) = Normalization.rmsNormTraining(x, weight: weight!, eps: 1e-6)
        let (dw, dwReference) = (Self.zeros([c.c]), Self.zeros([c.c]))
        let dx = Normalization.rmsNormBackward(dy, x: x, weight: weight!, rstd: rstd, weightGradient: dw)
        let dxReference = Normalization.rmsNormBackwardReference(dy, x: x, weight: weight!, rstd: rstd, weightGradient: dwReference)
        Self.expectClose(dx.float32Values(), dxReference.float32Values(), Self.fastVersusReference(length: c.c), "dx")
        Self.expectClose(dw.float32Values(), dwReference.float32Values(), Self.fastVersusReference(length: c.n), "dw")
        let inference = Normalization.rmsNorm(x, weight: weight!, eps: 1e-6).float32Values()
        #expect(y.float32Values().map(\.bitPattern) == inference.map(\.bitPattern))
        let (xs, rstds, w) = (x.float32Values(), rstd.float32Values(), weight!.float32Values())
        let rebuilt = xs.indices.map { w[$0 % c.c] * (xs[$0] * rstds[$0 / c.c]) }
        #expect(rebuilt.map(\.bitPattern) == inference.map(\.bitPattern), "saved rstd is not the kernel's")
        #expect(Normalization.rmsNormBackward(dy, x: x, weight: weight!, rstd: rstd).float32Values() == dx.float32Values())
    }

    @Test func normGradientsAccumulate() {
        let c = NormCase(n: 9, c: 21, weight: true, bias: true, seed: 7, offset: 0)
        let (x, weight, bias, g) = Self.normInputs(c)
        let dy = Tensor(shape: x.shape, float32: g)
        let (_, mean, rstd) = Normalization.layerNormTraining(x, weight: weight, bias: bias, eps: 1e-5)
        let (_, rmsRstd) = Normalization.rmsNormTraining(x, weight: weight!, eps: 1e-6)
        let (priorW, priorB) = (Self.tensor([c.c], seed: 8), Self.tensor([c.c], seed: 9))
        func sum(_ a: Tensor, _ b: Tensor) -> [Double] { zip(a.float32Values(), b.float32Values()).map { Double($0) + Double($1) } }
        for reference in [false, true] {
            let layer = reference ? Normalization.layerNormBackwardReference : Normalization.layerNormBackward
            let rms = reference ? Normalization.rmsNormBackwardReference : Normalization.rmsNormBackward
            let (aloneW, aloneB, dw, db) = (Self.zeros([c.c]), Self.zeros([c.c]), Self.copy(priorW), Self.copy(priorB))
            _ = layer(dy, x, weight, mean, rstd, aloneW, aloneB)
            _ = layer(dy, x, weight, mean, rstd, dw, db)
            Self.expectClose(dw.float32Values(), sum(priorW, aloneW), Self.accumulation(length: c.n), "LayerNorm dγ accumulated")
            Self.expectClose(db.float32Values(), sum(priorB, aloneB), Self.accumulation(length: c.n), "LayerNorm dβ accumulated")
            let (aloneRMS, dwRMS) = (Self.zeros([c.c]), Self.copy(priorW))
            _ = rms(dy, x, weight!, rmsRstd, aloneRMS)
            _ = rms(dy, x, weight!, rmsRstd, dwRMS)
            Self.expectClose(dwRMS.float32Values(), sum(priorW, aloneRMS), Self.accumulation(length: c.n), "RMSNorm dw accumulated")
        }
    }

    // MARK: - Activations and gated MLPs

    static let activations: [Elementwise.Activation] = [.gelu, .geluTanh, .silu]

    /// Inputs over the activations' interesting range: around 0, the knees near ±2, the tails out to ±9.
    static func activationInput(_ count: Int, seed: UInt64) -> [Float] {
        GradientCheck.random(count, seed: seed, scale: 4) + [0, -0.5, 0.5, 9, -9]
    }

    @Test(arguments: activations)
    func activationBackward(_ activation: Elementwise.Activation) {
        for seed in UInt64(1)...3 {
            let values = Self.activationInput(97, seed: seed)
            let x = Tensor(shape: [values.count], float32: values), g = GradientCheck.random(values.count, seed: seed + 10)
            let reference = Elementwise.backwardReference(activation, Tensor(shape: x.shape, float32: g), x: x)
            // The activation is elementwise, so the whole gradient comes from one pass of differences.
            let numeric = Self.numeric([values]) { p in
                GradientCheck.contract(p[0].map { activation.valueAndDerivative($0).value }, with: g.map(Double.init))
            }
            Self.expectClose(reference.float32Values(), numeric[0], Self.referenceVersusNumeric, "\(activation) dx (reference)")
            let fast = Elementwise.backward(activation, Tensor(shape: x.shape, float32: g), x: x)
            Self.expectClose(fast.float32Values(), reference.float32Values(), Self.activationFastVersusReference, "\(activation) dx (fast)")
        }
    }

    /// The f32 derivative against the double one, relative to max|grad|: the vector exp (≤ 1.3 ulps), for GELU
    /// the erf approximation's 1.5e-7 (2.5 ulps of the derivative's ~1), and a handful of roundings (measured
    /// worst 1.6e-7, SiLU over ±100).
    static let activationFastVersusReference = 16 * 0x1p-24

    @Test(arguments: activations)
    func activationFastBackwardOverSeveralBlocks(_ activation: Elementwise.Activation) {
        // 1031 values: two whole blocks of Elementwise.backwardBlock and a partial one; tails out to ±20 and ±100,
        // where exp under- and overflows.
        let values = Self.activationInput(1026, seed: 7).enumerated().map { $0.offset % 7 == 0 ? $0.element * 5 : $0.element } + [100, -100]
        let x = Tensor(shape: [values.count], float32: values), dy = Self.tensor([values.count], seed: 8)
        let fast = Elementwise.backward(activation, dy, x: x), reference = Elementwise.backwardReference(activation, dy, x: x)
        Self.expectClose(fast.float32Values(), reference.float32Values(), Self.activationFastVersusReference, "\(activation) dx (fast, long)")
        let gate = Self.tensor([values.count], seed: 9)
        let (da, db) = Elementwise.gatedBackward(activation, dy, x: x, gate: gate)
        let (daReference, dbReference) = Elementwise.gatedBackwardReference(activation, dy, x: x, gate: gate)
        Self.expectClose(da.float32Values(), daReference.float32Values(), Self.activationFastVersusReference, "\(activation) gated dx (long)")
        Self.expectClose(db.float32Values(), dbReference.float32Values(), Self.activationFastVersusReference, "\(activation) gated dgate (long)")
        #expect(fast.float32Values().allSatisfy(\.isFinite) && da.float32Values().allSatisfy(\.isFinite))
    }

    @Test(arguments: activations)
    func gatedBackward(_ activation: Elementwise.Activation) {
        let (n, inner) = (5, 13)
        for seed in UInt64(1)...2 {
            let values = GradientCheck.random(n * 2 * inner, seed: seed, scale: 4)
            let fused = Tensor(shape: [n, 2 * inner], float32: values), g = GradientCheck.random(n * inner, seed: seed + 10)
            let dy = Tensor(shape: [n, inner], float32: g)
            // Halves: the activated first half times the second (ModernBERT's GeGLU; Qwen3's SwiGLU with gate_proj
            // and up_proj as the halves).
            let reference = Elementwise.gatedHalvesBackwardReference(activation, dy, x: fused)
            let numeric = Self.numeric([values]) { p in
                var y = [Double](repeating: 0, count: n * inner)
                for row in 0..<n { for i in 0..<inner {
                    y[row * inner + i] = activation.valueAndDerivative(p[0][row * 2 * inner + i]).value * p[0][row * 2 * inner + inner + i]
                } }
                return GradientCheck.contract(y, with: g.map(Double.init))
            }
            Self.expectClose(reference.float32Values(), numeric[0], Self.referenceVersusNumeric, "\(activation) gated halves (reference)")
            let fast = Elementwise.gatedHalvesBackward(activation, dy, x: fused)
            Self.expectClose(fast.float32Values(), reference.float32Values(), Self.activationFastVersusReference, "\(activation) gated halves (fast)")
            // Separate tensors: the same numbers as the halves.
            let (a, b) = (Elementwise.columns(fused, start: 0, count: inner), Elementwise.columns(fused, start: inner, count: inner))
            let (da, db) = Elementwise.gatedBackward(activation, dy, x: a, gate: b)
            let (daReference, dbReference) = Elementwise.gatedBackwardReference(activation, dy, x: a, gate: b)
            #expect(da.float32Values() == Elementwise.columns(fast, start: 0, count: inner).float32Values()
                    && db.float32Values() == Elementwise.columns(fast, start: inner, count: inner).float32Values(), "gated vs halves (fast)")
            #expect(daReference.float32Values() == Elementwise.columns(reference, start: 0, count: inner).float32Values()
                    && dbReference.float32Values() == Elementwise.columns(reference, start: inner, count: inner).float32Values(),
                    "gated vs halves (reference)")
        }
    }

    @Test func layerScaleBackward() {
        let (n, c) = (7, 13)
        let a = Self.tensor([n, c], seed: 1), b = Self.tensor([n, c], seed: 2), scale = Self.tensor([c], seed: 3)
        let g = GradientCheck.random(n * c, seed: 4), dy = Tensor(shape: [n, c], float32: g)
        let ds = Self.zeros([c])
        let (da, db) = Elementwise.addScaledBackwardReference(dy, b: b, scale: scale, scaleGradient: ds)
        let numeric = Self.numeric([a.float32Values(), b.float32Values(), scale.float32Values()]) { p in
            GradientCheck.contract((0..<n * c).map { p[0][$0] + p[2][$0 % c] * p[1][$0] }, with: g.map(Double.init))
        }
        Self.expectClose(da.float32Values(), numeric[0], Self.referenceVersusNumeric, "da")
        Self.expectClose(db.float32Values(), numeric[1], Self.referenceVersusNumeric, "db")
        Self.expectClose(ds.float32Values(), numeric[2], Self.referenceVersusNumeric, "dscale")
        let dsFast = Self.zeros([c])
        let (daFast, dbFast) = Elementwise.addScaledBackward(dy, b: b, scale: scale, scaleGradient: dsFast)
        #expect(daFast.float32Values() == da.float32Values() && dbFast.float32Values() == db.float32Values())
        Self.expectClose(dsFast.float32Values(), ds.float32Values(), Self.fastVersusReference(length: n), "dscale (fast)")
    }

    // MARK: - Softmax, cross-entropy, L2 normalisation

    @Test(arguments: [(7, 13, UInt64(1)), (3, 33, 2), (5, 1, 3)])
    func softmaxBackward(_ n: Int, _ c: Int, _ seed: UInt64) {
        let x = Self.tensor([n, c], seed: seed, scale: 5), g = GradientCheck.random(n * c, seed: seed + 1)
        let dy = Tensor(shape: [n, c], float32: g)
        let p = Loss.softmax(x)
        // The forward: f32 with the vectorised exp against double (a few ulps of each probability).
        Self.expectClose(p.float32Values(), Loss.softmaxReference(x).float32Values(), Self.fastVersusReference(length: c), "softmax")
        let reference = Loss.softmaxBackwardReference(dy, probabilities: p)
        let numeric = Self.numeric([x.float32Values()]) { q in
            var y = [Double](repeating: 0, count: n * c)
            for row in 0..<n {
                let values = q[0][row * c..<(row + 1) * c], top = values.max()!
                let total = values.reduce(0) { $0 + exp($1 - top) }
                for j in 0..<c { y[row * c + j] = exp(q[0][row * c + j] - top) / total }
            }
            return GradientCheck.contract(y, with: g.map(Double.init))
        }
        // c = 1: softmax is constant, the gradient exactly zero (relativeError then is the absolute difference).
        Self.expectClose(reference.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx (reference)")
        let fast = Loss.softmaxBackward(dy, probabilities: p)
        Self.expectClose(fast.float32Values(), reference.float32Values(), Self.fastVersusReference(length: c), "dx (fast)")
    }

    /// Float64 mean cross-entropy of rows of `x` restricted to `columns` (all columns when nil).
    static func crossEntropy64(_ x: [Double], v: Int, columns: [Int]?, labels: [Int]) -> Double {
        var total = 0.0, count = 0
        for (row, label) in labels.enumerated() where label != Loss.ignoreIndex {
            let values = (columns ?? Array(0..<v)).map { x[row * v + $0] }
            let top = values.max()!
            total += top + log(values.reduce(0) { $0 + exp($1 - top) }) - values[label]
            count += 1
        }
        return total / Double(count)
    }

    struct CrossEntropyCase: CustomTestStringConvertible, Sendable {
        let n: Int, v: Int, labels: [Int], columns: [Int]?, seed: UInt64
        var testDescription: String { "N\(n) V\(v) labels \(labels)\(columns.map { " columns \($0)" } ?? "") seed \(seed)" }
    }

    /// Full vocabulary and restricted, with ignored rows (-100) among counted ones, a label repeated, a single row.
    static let crossEntropyCases: [CrossEntropyCase] = [
        CrossEntropyCase(n: 7, v: 13, labels: [3, -100, 0, 12, 3, -100, 7], columns: nil, seed: 1),
        CrossEntropyCase(n: 1, v: 33, labels: [32], columns: nil, seed: 2),
        CrossEntropyCase(n: 5, v: 17, labels: [2, 0, -100, 4, 1], columns: [16, 3, 9, 0, 5], seed: 3),
        CrossEntropyCase(n: 3, v: 11, labels: [1, 1, -100], columns: [7, 2], seed: 4),
    ]

    @Test(arguments: crossEntropyCases)
    func crossEntropyBackward(_ c: CrossEntropyCase) {
        // Logits spread over ±8 and shifted by 50: the log-sum-exp must subtract the maximum.
        let x = Tensor(shape: [c.n, c.v], float32: GradientCheck.random(c.n * c.v, seed: c.seed, scale: 8).map { $0 + 50 })
        let reference = c.columns.map { Loss.restrictedCrossEntropyReference(x, classColumns: $0, labels: c.labels) }
            ?? Loss.crossEntropyReference(x, labels: c.labels)
        let fast = c.columns.map { Loss.restrictedCrossEntropy(x, classColumns: $0, labels: c.labels) } ?? Loss.crossEntropy(x, labels: c.labels)
        let exact = Self.crossEntropy64(x.float32Values().map(Double.init), v: c.v, columns: c.columns, labels: c.labels)
        // The loss itself is differenced: no cotangent.
        let numeric = Self.numeric([x.float32Values()]) { p in Self.crossEntropy64(p[0], v: c.v, columns: c.columns, labels: c.labels) }
        Self.expectClose(reference.logitsGradient.float32Values(), numeric[0], Self.referenceVersusNumeric, "dlogits (reference)")
        Self.expectClose(fast.logitsGradient.float32Values(), reference.logitsGradient.float32Values(),
                         Self.fastVersusReference(length: c.columns?.count ?? c.v), "dlogits (fast)")
        let counted = c.labels.count(where: { $0 != Loss.ignoreIndex })
        #expect(reference.count == counted && fast.count == counted)
        // Losses: the reference's double rounded once; the fast one's f32 log-sum-exp of values near 50.
        #expect(abs(Double(reference.loss) - exact) <= Self.lossReferenceVersusExact * abs(exact))
        #expect(abs(Double(fast.loss) - exact) <= Self.lossFastVersusExact * abs(exact), "loss \(fast.loss) vs \(exact)")
        // Ignored rows and columns outside the classes get exactly zero.
        let gradient = fast.logitsGradient.float32Values()
        for row in 0..<c.n {
            for j in 0..<c.v where c.labels[row] == Loss.ignoreIndex || !(c.columns?.contains(j) ?? true) {
                #expect(gradient[row * c.v + j] == 0 && reference.logitsGradient.float32Values()[row * c.v + j] == 0)
            }
        }
        // A loss weight scales the gradient.
        let weighted = c.columns.map { Loss.restrictedCrossEntropy(x, classColumns: $0, labels: c.labels, lossGradient: 0.25) }
            ?? Loss.crossEntropy(x, labels: c.labels, lossGradient: 0.25)
        #expect(weighted.logitsGradient.float32Values() == gradient.map { $0 * 0.25 } && weighted.loss == fast.loss)
        // A normalizer (transformers' num_items_in_batch) divides the sum instead of the count.
        let normalized = c.columns.map { Loss.restrictedCrossEntropy(x, classColumns: $0, labels: c.labels, normalizer: 10) }
            ?? Loss.crossEntropy(x, labels: c.labels, normalizer: 10)
        let normalizedReference = c.columns.map { Loss.restrictedCrossEntropyReference(x, classColumns: $0, labels: c.labels, normalizer: 10) }
            ?? Loss.crossEntropyReference(x, labels: c.labels, normalizer: 10)
        let ratio = Double(counted) / 10
        #expect(abs(Double(normalized.loss) - exact * ratio) <= Self.lossFastVersusExact * abs(exact * ratio))
        Self.expectClose(normalizedReference.logitsGradient.float32Values(), numeric[0].map { $0 * ratio }, Self.referenceVersusNumeric,
                         "dlogits (reference, normalizer)")
        Self.expectClose(normalized.logitsGradient.float32Values(), normalizedReference.logitsGradient.float32Values(),
                         Self.fastVersusReference(length: c.columns?.count ?? c.v), "dlogits (fast, normalizer)")
    }

    /// PyTorch's `cross_entropy(weight=w)`: Σ w_y·l / Σ w_y over the counted rows, with an ignored row, a label of
    /// weight 0 (no loss, zero gradient) and a class with no row; with a normalizer, Σ w_y·l / normalizer.
    @Test func classWeightedCrossEntropyBackward() {
        let (n, v) = (6, 5)
        let labels = [0, 3, -100, 3, 1, 4], weights: [Float] = [2, 0.5, 0.75, 1.25, 0]
        let x = Tensor(shape: [n, v], float32: GradientCheck.random(n * v, seed: 11, scale: 8).map { $0 + 50 })
        func loss64(_ p: [Double], normalizer: Double? = nil) -> Double {
            var total = 0.0, mass = 0.0
            for (row, label) in labels.enumerated() where label != Loss.ignoreIndex {
                let values = p[row * v..<(row + 1) * v], top = values.max()!
                total += Double(weights[label]) * (top + log(values.reduce(0) { $0 + exp($1 - top) }) - p[row * v + label])
                mass += Double(weights[label])
            }
            return total / (normalizer ?? mass)
        }
        let reference = Loss.crossEntropyReference(x, labels: labels, classWeights: weights)
        let fast = Loss.crossEntropy(x, labels: labels, classWeights: weights)
        let numeric = Self.numeric([x.float32Values()]) { loss64($0[0]) }
        Self.expectClose(reference.logitsGradient.float32Values(), numeric[0], Self.referenceVersusNumeric, "weighted dlogits (reference)")
        Self.expectClose(fast.logitsGradient.float32Values(), reference.logitsGradient.float32Values(), Self.fastVersusReference(length: v),
                         "weighted dlogits (fast)")
        let exact = loss64(x.float32Values().map(Double.init))
        #expect(abs(Double(reference.loss) - exact) <= Self.lossReferenceVersusExact * abs(exact))
        #expect(abs(Double(fast.loss) - exact) <= Self.lossFastVersusExact * abs(exact), "loss \(fast.loss) vs \(exact)")
        #expect(fast.count == 5 && reference.count == 5)
        // The row of weight 0 (label 4) and the ignored row get exactly zero.
        for row in [2, 5] {
            #expect((0..<v).allSatisfy { fast.logitsGradient.float32Values()[row * v + $0] == 0 && reference.logitsGradient.float32Values()[row * v + $0] == 0 })
        }
        // Unit weights are the unweighted loss, bit for bit.
        let unit = Loss.crossEntropy(x, labels: labels, classWeights: [Float](repeating: 1, count: v)), plain = Loss.crossEntropy(x, labels: labels)
        #expect(unit.loss == plain.loss && unit.logitsGradient.float32Values() == plain.logitsGradient.float32Values())
        // A normalizer (a step's total weight) divides the weighted sum.
        let normalized = Loss.crossEntropy(x, labels: labels, classWeights: weights, normalizer: 10)
        let normalizedExact = loss64(x.float32Values().map(Double.init), normalizer: 10)
        #expect(abs(Double(normalized.loss) - normalizedExact) <= Self.lossFastVersusExact * abs(normalizedExact))
        Self.expectClose(normalized.logitsGradient.float32Values(), Loss.crossEntropyReference(x, labels: labels, classWeights: weights, normalizer: 10)
                            .logitsGradient.float32Values(), Self.fastVersusReference(length: v), "weighted dlogits (fast, normalizer)")
        // Every counted row of weight 0: PyTorch's 0/0, and no gradient.
        for result in [Loss.crossEntropy(x, labels: [4, -100, 4, 4, 4, 4], classWeights: weights),
                       Loss.crossEntropyReference(x, labels: [4, -100, 4, 4, 4, 4], classWeights: weights)] {
            #expect(result.loss.isNaN && result.logitsGradient.float32Values().allSatisfy { $0 == 0 })
        }
    }

    /// The reference's loss against float64: one rounding to f32.
    static let lossReferenceVersusExact = 0x1p-23
    /// The fast loss: f32 log-sum-exp per row (max + log of an f32 sum of exps of ≤ 1–2 ulps each) minus the label's
    /// logit, rows summed in double. Logits near 50 with losses of a few units: the subtraction of two values near 50
    /// leaves an error of a few ulps of 50, relative to a loss near 1 that is a few hundred ulps of the loss.
    static let lossFastVersusExact = 2e-5

    @Test(arguments: [(7, 13, UInt64(1)), (1, 33, 2), (5, 4, 3)])
    func softCrossEntropyBackward(_ n: Int, _ c: Int, _ seed: UInt64) {
        // Targets: a softmax of random scores per row (mass 1), except the last row scaled to mass 0.7, so that the
        // Σ_c t_c factor of the gradient is exercised.
        let x = Tensor(shape: [n, c], float32: GradientCheck.random(n * c, seed: seed, scale: 8).map { $0 - 30 })
        var t = Loss.softmaxReference(Self.tensor([n, c], seed: seed + 1, scale: 3)).float32Values()
        for j in 0..<c { t[(n - 1) * c + j] *= 0.7 }
        let targets = Tensor(shape: [n, c], float32: t)
        func loss64(_ p: [Double]) -> Double {
            var total = 0.0
            for row in 0..<n {
                let values = p[row * c..<(row + 1) * c], top = values.max()!
                let logSumExp = top + log(values.reduce(0) { $0 + exp($1 - top) })
                for j in 0..<c { total -= Double(t[row * c + j]) * (p[row * c + j] - logSumExp) }
            }
            return total / Double(n)
        }
        let reference = Loss.softCrossEntropyReference(x, targets: targets)
        let numeric = Self.numeric([x.float32Values()]) { loss64($0[0]) }
        Self.expectClose(reference.logitsGradient.float32Values(), numeric[0], Self.referenceVersusNumeric, "soft dlogits (reference)")
        let fast = Loss.softCrossEntropy(x, targets: targets)
        Self.expectClose(fast.logitsGradient.float32Values(), reference.logitsGradient.float32Values(),
                         Self.fastVersusReference(length: c), "soft dlogits (fast)")
        let exact = loss64(x.float32Values().map(Double.init))
        #expect(abs(Double(reference.loss) - exact) <= Self.lossReferenceVersusExact * abs(exact))
        #expect(abs(Double(fast.loss) - exact) <= Self.lossFastVersusExact * abs(exact), "loss \(fast.loss) vs \(exact)")
        #expect(fast.count == n && reference.count == n)
    }

    @Test func crossEntropyOfOnlyIgnoredRowsIsNaNWithZeroGradient() {
        let x = Self.tensor([3, 5], seed: 1)
        for result in [Loss.crossEntropy(x, labels: [-100, -100, -100]), Loss.crossEntropyReference(x, labels: [-100, -100, -100])] {
            #expect(result.loss.isNaN && result.count == 0 && result.logitsGradient.float32Values().allSatisfy { $0 == 0 })
        }
    }

    @Test(arguments: [(7, 13, Float(1e-12), UInt64(1)), (3, 33, 1e-12, 2), (4, 5, 0.5, 3)])
    func l2NormalizeBackward(_ n: Int, _ c: Int, _ eps: Float, _ seed: UInt64) {
        // With eps = 0.5, row 0 is scaled to norm ≈ 0.2: it stays clamped under the differences' steps.
        var values = GradientCheck.random(n * c, seed: seed)
        if eps > 0.1 {
            let norm = values[0..<c].reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<c { values[j] *= 0.2 / norm }
        }
        let x = Tensor(shape: [n, c], float32: values), g = GradientCheck.random(n * c, seed: seed + 1)
        let dy = Tensor(shape: [n, c], float32: g)
        let (y, norms) = Loss.l2Normalize(x, eps: eps)
        let reference = Loss.l2NormalizeBackwardReference(dy, x: x, eps: eps)
        let numeric = Self.numeric([values]) { p in
            var out = [Double](repeating: 0, count: n * c)
            for row in 0..<n {
                let norm = p[0][row * c..<(row + 1) * c].reduce(0) { $0 + $1 * $1 }.squareRoot()
                for j in 0..<c { out[row * c + j] = p[0][row * c + j] / max(norm, Double(eps)) }
            }
            return GradientCheck.contract(out, with: g.map(Double.init))
        }
        Self.expectClose(reference.float32Values(), numeric[0], Self.referenceVersusNumeric, "dx (reference)")
        // The forward: the norm from a double sum rounded once, then one division per value.
        let exact = (0..<n * c).map { i -> Double in
            let row = i / c, norm = values[row * c..<(row + 1) * c].reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            return Double(values[i]) / max(norm, Double(eps))
        }
        Self.expectClose(y.float32Values(), exact, Self.fastVersusReference(length: 1), "normalised rows")
        let fast = Loss.l2NormalizeBackward(dy, output: y, norms: norms, eps: eps)
        Self.expectClose(fast.float32Values(), reference.float32Values(), Self.fastVersusReference(length: c), "dx (fast)")
        if eps > 0.1 { #expect(norms.float32Values()[0] < eps) }
    }

    // MARK: - Embedding lookup

    @Test(arguments: [false, true])
    func embeddingBackward(_ masked: Bool) {
        let (v, c) = (11, 13)
        let ids = [3, 7, 3, 0, 10, 3, 7, 5, 1]   // repeated ids; 5 is the padding id below
        let mask = masked ? [true, true, false, true, true, true, false, true, true] : nil
        let table = Self.tensor([v, c], seed: 1), g = GradientCheck.random(ids.count * c, seed: 2)
        let dy = Tensor(shape: [ids.count, c], float32: g)
        #expect(Embedding.lookup(table, ids: ids).float32Values() == ids.flatMap { Array(table.float32Values()[$0 * c..<($0 + 1) * c]) })
        let reference = Self.zeros([v, c])
        Embedding.backwardReference(dy, ids: ids, tableGradient: reference, mask: mask, paddingId: 5)
        let numeric = Self.numeric([table.float32Values()]) { p in
            var total = 0.0
            for (n, id) in ids.enumerated() where (mask?[n] ?? true) && id != 5 {
                for j in 0..<c { total += p[0][id * c + j] * Double(g[n * c + j]) }
            }
            return total
        }
        Self.expectClose(reference.float32Values(), numeric[0], Self.referenceVersusNumeric, "dtable (reference)")
        // Accumulating onto a buffer that already holds gradients (a tied table gets the output projection's too).
        let prior = Self.tensor([v, c], seed: 3)
        let (fast, referenceOnPrior) = (Self.copy(prior), Self.copy(prior))
        Embedding.backward(dy, ids: ids, tableGradient: fast, mask: mask, paddingId: 5)
        Embedding.backwardReference(dy, ids: ids, tableGradient: referenceOnPrior, mask: mask, paddingId: 5)
        Self.expectClose(fast.float32Values(), referenceOnPrior.float32Values(), Self.fastVersusReference(length: ids.count), "dtable (fast)")
        // The padding row and the rows nobody looked up keep their prior bits.
        for row in [5, 2, 4, 6, 8, 9] {
            #expect(fast.float32Values()[row * c..<(row + 1) * c] == prior.float32Values()[row * c..<(row + 1) * c])
        }
    }
}
