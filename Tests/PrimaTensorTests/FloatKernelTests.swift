import Foundation
import PrimaKernels
import PrimaTensor
import PrimaTestSupport
import Testing

/// The f32 kernels (float_ops.c) against their plain references, within the named bounds of
/// Formats/prima-verify.md §5 (RoPE: bit for bit), and the three builds (generic, AVX2, AVX-512) against each other
/// bit for bit.
@Suite struct FloatKernelTests {
    /// exp: ulps of the exact value (PRIMA_EXP_MAX_ULP; the worst over every float of the range is 1.26).
    static let expMaxULP = Double(PRIMA_EXP_MAX_ULP)
    /// GELU and SiLU against libm at x: the erf approximation's 1.5e-7 plus a few f32 roundings, times (1 + |x|).
    static func activationBound(_ x: Float) -> Float { 2.5e-7 * (1 + abs(x)) }
    /// LayerNorm and RMSNorm against the double-accumulating references, relative to 1 + |reference|: f32 moments
    /// over at most a few thousand values (measured worst 3.5e-7).
    static let normalizationBound: Float = 2e-6
    /// Attention against its double-accumulating reference (as OpsTests.tolerance: f32 sums of a few hundred terms).
    static let attentionBound: Float = 2e-5

    @Test func expEveryBuildEqualsScalarTwin() {
        var inputs: [Float] = [0, -0, 1, -1, 0.5, 88.72283, 88.72284, 89, -87.33654, -87.4, -103, -200, 1e-30, -1e-30,
                               .infinity, -.infinity, .nan, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        var rng = SplitMix64(seed: 11)
        inputs += (0..<10_000).map { _ in rng.uniform() * 100 }
        let expected = inputs.map { prima_exp_reference($0) }
        for isa in FloatISA.available {
            var y = [Float](repeating: 0, count: inputs.count)
            prima_exp(Self.isaCode(isa), inputs, &y, Int64(inputs.count))
            #expect(zip(y, expected).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(isa.rawValue)")
        }
        #expect(prima_exp_reference(-.infinity) == 0 && prima_exp_reference(.infinity) == .infinity)
        #expect(prima_exp_reference(.nan).isNaN && prima_exp_reference(-88) == 0 && prima_exp_reference(89) == .infinity)
    }

    @Test func expWithinItsULPBound() {
        // Every 1021st float of [ln FLT_MIN, ln FLT_MAX] (about 2 million values), against exp in double.
        let lowest = Float(-87.33654475), highest = Float(88.72283172)
        var worst = 0.0, worstX: Float = 0
        for range in [(Float(0), highest), (Float(-0.0), lowest)] {
            var bits = range.0.bitPattern
            while true {
                let x = Float(bitPattern: bits)
                if range.1 > 0 ? x > range.1 : x < range.1 { break }
                let exact = Foundation.exp(Double(x))
                let ulp = Double(Float(exact).ulp)
                let error = abs(Double(prima_exp_reference(x)) - exact) / ulp
                if error > worst { (worst, worstX) = (error, x) }
                bits += 1021
            }
        }
        #expect(worst <= Self.expMaxULP, "worst \(worst) ulp at \(worstX)")
    }

    @Test(arguments: [Elementwise.Activation.gelu, .silu])
    func activationsWithinBoundOfReference(_ activation: Elementwise.Activation) {
        // A dense sweep of [−12, 12], large values, and a length that leaves a tail.
        let values = (0..<24_001).map { Float($0 - 12_000) / 1000 } + [40, -40, 100, -100, 1e-20, -1e-20]
        let x = Tensor(shape: [values.count], float32: values)
        let reference = Elementwise.applyReference(activation, x).float32Values()
        let outputs = FloatISA.available.map { Elementwise.apply(activation, x, isa: $0).float32Values() }
        for (isa, y) in zip(FloatISA.available, outputs) {
            #expect(y.map(\.bitPattern) == outputs[0].map(\.bitPattern), "\(isa.rawValue) differs from generic")
        }
        var worst: Float = 0
        for (i, v) in values.enumerated() {
            let excess = abs(outputs[0][i] - reference[i]) / Self.activationBound(v)
            worst = max(worst, excess)
        }
        #expect(worst <= 1, "\(activation): worst difference is \(worst)x the bound")
        let gate = Tensor(shape: [values.count], float32: values.map { $0 * 0.25 - 1 })
        #expect(Elementwise.gated(activation, x, gate).float32Values().map(\.bitPattern)
                == Elementwise.multiply(Elementwise.apply(activation, x), gate).float32Values().map(\.bitPattern))
    }

    @Test func gatedHalvesEqualsGatedOnColumns() {
        var rng = SplitMix64(seed: 3)
        let x = Tensor(shape: [5, 2 * 37], float32: (0..<5 * 74).map { _ in rng.uniform() * 4 })
        for activation in [Elementwise.Activation.gelu, .silu, .geluTanh] {
            let halves = Elementwise.gatedHalves(activation, x).float32Values()
            let columns = Elementwise.gated(activation, Elementwise.columns(x, start: 0, count: 37),
                                            Elementwise.columns(x, start: 37, count: 37)).float32Values()
            #expect(halves.map(\.bitPattern) == columns.map(\.bitPattern), "\(activation)")
        }
    }

    @Test(arguments: [1, 7, 16, 33, 384, 2048])
    func normalizationsWithinBoundOfReference(width: Int) {
        var rng = SplitMix64(seed: UInt64(width))
        let rows = 5
        // An offset mean and a spread of scales, as residual streams have.
        let x = Tensor(shape: [rows, width], float32: (0..<rows * width).map { i in rng.uniform() * Float(1 + i % 7) + 3 })
        let gamma = Tensor(shape: [width], float32: (0..<width).map { _ in rng.uniform() + 1 })
        let beta = Tensor(shape: [width], float32: (0..<width).map { _ in rng.uniform() })
        for (weight, bias) in [(gamma, beta), (nil, nil)] as [(Tensor?, Tensor?)] {
            let reference = Normalization.layerNormReference(x, weight: weight, bias: bias, eps: 1e-5)
            let outputs = FloatISA.available.map { Normalization.layerNorm(x, weight: weight, bias: bias, eps: 1e-5, isa: $0) }
            Self.expectSameBits(outputs, "layerNorm width \(width)")
            Self.expectClose(outputs[0], reference, Self.normalizationBound, "layerNorm width \(width)")
        }
        let reference = Normalization.rmsNormReference(x, weight: gamma, eps: 1e-6)
        let outputs = FloatISA.available.map { Normalization.rmsNorm(x, weight: gamma, eps: 1e-6, isa: $0) }
        Self.expectSameBits(outputs, "rmsNorm width \(width)")
        Self.expectClose(outputs[0], reference, Self.normalizationBound, "rmsNorm width \(width)")
    }

    @Test func ropeEqualsReference() {
        // Head sizes with and without a whole vector per half, rows left unrotated, and q/k read from inside a
        // wider qkv row.
        for (heads, headDim) in [(3, 10), (2, 64), (1, 128)] {
            var rng = SplitMix64(seed: UInt64(headDim))
            let width = 3 * heads * headDim, rows = 9
            let x = Tensor(shape: [rows, width], float32: (0..<rows * width).map { _ in rng.uniform() * 3 })
            let (cos, sin) = RoPE.tables(positions: rows, headDim: headDim, theta: 10_000)
            let tableRow: (Int) -> Int? = { $0 % 4 == 1 ? nil : $0 }
            for start in [0, heads * headDim] {
                let reference = RoPE.applyReference(x, start: start, heads: heads, headDim: headDim, cos: cos, sin: sin,
                                                    tableRow: tableRow)
                let outputs = FloatISA.available.map {
                    RoPE.apply(x, start: start, heads: heads, headDim: headDim, cos: cos, sin: sin, isa: $0, tableRow: tableRow)
                }
                Self.expectSameBits(outputs + [reference], "rope H \(heads) D \(headDim) from \(start)")
            }
        }
    }

    @Test(arguments: ["none", "padding", "causal", "window"])
    func attentionEveryBuildAndThreadCount(kind: String) {
        // Sizes with tails everywhere (T not a multiple of 4 or 16, D not a multiple of 16) and the real ones.
        for (batch, t, heads, kvHeads, d) in [(2, 37, 4, 2, 20), (1, 50, 2, 2, 64), (1, 21, 2, 1, 128)] {
            let mask = (0..<batch).map { b in (0..<t).map { $0 < t - 5 * b ? 1 : 0 } }
            let attentionMask: AttentionMask
            switch kind {
            case "padding": attentionMask = .padding(mask)
            case "causal": attentionMask = .causal(padding: mask)
            case "window": attentionMask = .slidingWindow(radius: 3, padding: mask)
            default: attentionMask = .none
            }
            var rng = SplitMix64(seed: UInt64(t * d))
            func random(_ width: Int) -> Tensor {
                Tensor(shape: [batch * t, width], float32: (0..<batch * t * width).map { _ in rng.uniform() * 2 })
            }
            let q = random(heads * d), k = random(kvHeads * d), v = random(kvHeads * d)
            let scale = 1 / Float(d).squareRoot()
            let reference = Attention.reference(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: d,
                                                scale: scale, mask: attentionMask)
            var outputs: [Tensor] = []
            for isa in FloatISA.available {
                for threads in [1, 3] {
                    outputs.append(Attention.forward(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads,
                                                     headDim: d, scale: scale, mask: attentionMask, isa: isa, threads: threads))
                }
            }
            let label = "\(kind) B \(batch) T \(t) H \(heads) KV \(kvHeads) D \(d)"
            Self.expectSameBits(outputs, label)
            let difference = zip(outputs[0].float32Values(), reference.float32Values()).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            #expect(difference < Self.attentionBound, "\(label): max difference \(difference)")
        }
    }

    static func isaCode(_ isa: FloatISA) -> Int32 {
        switch isa {
        case .generic: Int32(PRIMA_FLOAT_ISA_GENERIC)
        case .avx2: Int32(PRIMA_FLOAT_ISA_AVX2)
        case .avx512: Int32(PRIMA_FLOAT_ISA_AVX512)
        }
    }

    static func expectSameBits(_ outputs: [Tensor], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let first = outputs[0].float32Values().map(\.bitPattern)
        for (n, output) in outputs.enumerated().dropFirst() {
            #expect(output.float32Values().map(\.bitPattern) == first, "\(what): output \(n) differs from output 0",
                    sourceLocation: sourceLocation)
        }
    }

    static func expectClose(_ actual: Tensor, _ expected: Tensor, _ bound: Float, _ what: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        let a = actual.float32Values(), e = expected.float32Values()
        var worst: Float = 0, at = 0
        for i in a.indices where abs(a[i] - e[i]) / (1 + abs(e[i])) > worst { (worst, at) = (abs(a[i] - e[i]) / (1 + abs(e[i])), i) }
        #expect(worst <= bound, "\(what): relative difference \(worst) at \(at) (\(a[at]) vs \(e[at]))",
                sourceLocation: sourceLocation)
    }
}
