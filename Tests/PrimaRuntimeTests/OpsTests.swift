import PrimaTensor
import Testing

/// Fast paths against their plain-loop references (named tolerance: fp32 rounding of sums of a few hundred terms).
@Suite struct OpsTests {
    static let tolerance: Float = 2e-5

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 128, 96)])
    func linearMatchesReference(_ sizes: (Int, Int, Int)) {
        let (n, k, m) = sizes
        let x = RuntimeTestSupport.random([n, k], seed: 1), w = RuntimeTestSupport.random([m, k], seed: 2)
        let b = RuntimeTestSupport.random([m], seed: 3)
        #expect(RuntimeTestSupport.maxDifference(Linear.forward(x, weight: w, bias: b), Linear.reference(x, weight: w, bias: b)) < Self.tolerance)
        #expect(RuntimeTestSupport.maxDifference(Linear.forward(x, weight: w), Linear.reference(x, weight: w)) < Self.tolerance)
    }

    @Test(arguments: [("none", 1, 4, 4, 8), ("padding", 2, 4, 2, 8), ("causal", 2, 6, 3, 4), ("window", 3, 2, 1, 16)])
    func attentionMatchesReference(_ setup: (String, Int, Int, Int, Int)) {
        let (kind, batch, heads, kvHeads, headDim) = setup
        let t = 11
        let mask = (0..<batch).map { b in (0..<t).map { $0 < t - 2 * b ? 1 : 0 } }
        let attentionMask: AttentionMask
        switch kind {
        case "padding": attentionMask = .padding(mask)
        case "causal": attentionMask = .causal(padding: mask)
        case "window": attentionMask = .slidingWindow(radius: 2, padding: mask)
        default: attentionMask = .none
        }
        let q = RuntimeTestSupport.random([batch * t, heads * headDim], seed: 4)
        let k = RuntimeTestSupport.random([batch * t, kvHeads * headDim], seed: 5)
        let v = RuntimeTestSupport.random([batch * t, kvHeads * headDim], seed: 6)
        let scale = 1 / Float(headDim).squareRoot()
        let fast = Attention.forward(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                     scale: scale, mask: attentionMask)
        let reference = Attention.reference(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                            scale: scale, mask: attentionMask)
        #expect(RuntimeTestSupport.maxDifference(fast, reference) < Self.tolerance)
    }

    @Test func layerNormMatchesDefinition() {
        let x = Tensor(shape: [2, 4], float32: [1, 2, 3, 4, -1, 0, 1, 2])
        let y = Normalization.layerNorm(x, weight: Tensor(shape: [4], float32: [1, 2, 1, 1]),
                                        bias: Tensor(shape: [4], float32: [0, 0, 0, 1]), eps: 0).float32Values()
        // Row 0: mean 2.5, variance 1.25, so (x − 2.5)/√1.25 = [−1.342, −0.447, 0.447, 1.342].
        let expected: [Float] = [-1.3416408, -0.8944272, 0.4472136, 2.3416408]
        for (a, b) in zip(y.prefix(4), expected) { #expect(abs(a - b) < 1e-6) }
    }

    @Test func rmsNormAndActivations() {
        let x = Tensor(shape: [1, 2], float32: [3, 4])
        // mean(x²) = 12.5, 1/√12.5 = 0.28284271
        let y = Normalization.rmsNorm(x, weight: Tensor(shape: [2], float32: [1, 2]), eps: 0).float32Values()
        #expect(abs(y[0] - 0.8485281) < 1e-6 && abs(y[1] - 2.2627417) < 1e-6)
        #expect(abs(Elementwise.Activation.gelu(1) - 0.8413447) < 1e-6)
        #expect(abs(Elementwise.Activation.silu(1) - 0.7310586) < 1e-6)
        #expect(abs(Elementwise.Activation.geluTanh(1) - 0.8411920) < 1e-6)
    }

    @Test func ropeRotatesPairsHalfADimensionApart() {
        // One head of size 4 at position 1 with theta 1 (all inverse frequencies 1): angle 1 for both pairs.
        let (cos, sin) = RoPE.tables(positions: 2, headDim: 4, theta: 1)
        let x = Tensor(shape: [1, 4], float32: [1, 0, 0, 0])
        let y = RoPE.apply(x, heads: 1, headDim: 4, cos: cos, sin: sin) { _ in 1 }.float32Values()
        #expect(abs(y[0] - cosf(1)) < 1e-6 && abs(y[2] - sinf(1)) < 1e-6 && y[1] == 0 && y[3] == 0)
        let untouched = RoPE.apply(x, heads: 1, headDim: 4, cos: cos, sin: sin) { _ in nil }.float32Values()
        #expect(untouched == [1, 0, 0, 0])
    }
}

#if canImport(Glibc)
import Glibc
#endif

@Suite struct PoolingTests {
    @Test func maskedMeanSkipsPadding() {
        // Two sequences of 3 tokens, width 2; the second has one padded position holding a large value.
        let hidden = Tensor(shape: [6, 2], float32: [1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 1000, 1000])
        let pooled = Pooling.maskedMean(hidden, mask: [[1, 1, 1], [1, 1, 0]]).float32Values()
        #expect(pooled == [3, 4, 20, 30])
        #expect(Pooling.maskedMean(hidden, mask: [[0, 0, 0], [1, 0, 0]]).float32Values() == [0, 0, 10, 20])
    }
}
