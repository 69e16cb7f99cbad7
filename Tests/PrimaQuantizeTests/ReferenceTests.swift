import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaQuantize
import PrimaTensor
import PrimaTestSupport
import Testing

/// The scalar reference quantiser of Formats/prima-checkpoint.md §7.3 against hand-computed cases, and the
/// round-trip error bound and SQNR on random matrices.
@Suite struct ReferenceTests {
    /// 2⁻¹⁴⁹, the smallest subnormal float32.
    static let u = Float.leastNonzeroMagnitude

    /// One group through the reference: (q, scale).
    func group(_ w: [Float]) -> ([Int8], Float) {
        let m = Int8Reference.quantize(w, rows: 1, columns: w.count, scheme: .perChannel)
        return (m.q, m.scales[0])
    }

    @Test func tiesRoundToEven() {
        // m = 127, so s = 1 exactly and q = rint(w).
        let (q, s) = group([127, 2.5, 3.5, -2.5, 0.5, -0.5, 1.5, 126.5, -126.5, -1.5, 4.4999995])
        #expect(s == 1)
        #expect(q == [127, 2, 4, -2, 0, 0, 2, 126, -126, -2, 4])
    }

    @Test func allZeroGroupHasScaleZero() {
        let (q, s) = group([0, -0.0, 0, 0])
        #expect(q == [0, 0, 0, 0])
        #expect(s.bitPattern == 0)  // +0, as §7.3 stores it
        // One zero row among others: only its own scale is 0.
        let m = Int8Reference.quantize([1, -2, 0, 0, 3, 0.5], rows: 3, columns: 2, scheme: .perChannel)
        #expect(m.scales == [Float(2) / 127, 0, Float(3) / 127])
        #expect(m.q == [64, -127, 0, 0, 127, 21])  // 1 / (2/127) = 63.5 → 64 (even); 0.5 / (3/127) = 21.17 → 21
        #expect(m.dequantized()[2...3] == [0, 0])
    }

    @Test func extremesMapToPlusMinus127() {
        // A value equal to −m maps to −127, never −128.
        let (q1, s1) = group([-3, 1, 2])
        #expect(s1 == Float(3) / 127)
        #expect(q1 == [-127, 42, 85])  // 42.33 → 42, 84.67 → 85
        let (q2, _) = group([0.1, -0.05, 0.7])
        #expect(q2 == [18, -9, 127])   // 18.14, −9.07
        // Random groups over a wide range of magnitudes: the largest |w| gets |q| = 127 exactly, −128 never occurs.
        var generator = SplitMix64(seed: 7)
        for trial in 0..<2000 {
            let count = 1 + Int(generator.next() % 80)
            let magnitude = Float(pow(10.0, Double(Int(generator.next() % 60)) - 30))
            let w = (0..<count).map { _ in generator.uniform() * magnitude }
            let (q, s) = group(w)
            let top = w.indices.max { abs(w[$0]) < abs(w[$1]) }!
            #expect(s > 0)
            #expect(abs(Int(q[top])) == 127, "trial \(trial): \(w[top]) → \(q[top])")
            #expect(q.allSatisfy { $0 != -128 })
            #expect(q[top] == (w[top] < 0 ? -127 : 127))
        }
    }

    @Test func subnormalGroups() {
        let u = Self.u
        // m = 254u: s = 2u exactly; 3u / 2u = 1.5 → 2, −5u / 2u = −2.5 → −2.
        let (q1, s1) = group([254 * u, 3 * u, -5 * u, 0])
        #expect(s1 == 2 * u)
        #expect(q1 == [127, 2, -2, 0])
        #expect(Int8Reference.quantize([254 * u, 3 * u, -5 * u, 0], rows: 1, columns: 4, scheme: .perChannel).dequantized()
                == [254 * u, 4 * u, -4 * u, 0])
        // m = 63u: s = 63u/127 = 0.496u rounds to 0, so the group is stored as zeros with scale 0.
        let (q2, s2) = group([63 * u, u])
        #expect(s2 == 0 && q2 == [0, 0])
        // m = 64u: s = 0.504u rounds to u; every q is exact.
        let (q3, s3) = group([64 * u, -64 * u, 32 * u])
        #expect(s3 == u && q3 == [64, -64, 32])
        // m = 190u: s = 1.496u rounds to u; 190u / u = 190 is clamped to 127.
        let (q4, s4) = group([190 * u, 95 * u])
        #expect(s4 == u && q4 == [127, 95])
    }

    @Test func shortLastBlock() {
        // One row of K = 70: blocks of 32, 32 and 6 with maxima 127, 63.5, 31.75 → scales 1, 0.5, 0.25 exactly.
        let block0: [Float] = [127] + (1..<32).map { Float($0) }
        let block1: [Float] = [63.5] + (1..<32).map { Float($0) * 0.5 }
        let block2: [Float] = [31.75, -3, 0.125, 0.375, -31.75, 1]
        let w = block0 + block1 + block2
        let m = Int8Reference.quantize(w, rows: 1, columns: 70, scheme: .block32)
        #expect(m.scales == [1, 0.5, 0.25])
        #expect(Array(m.q[0..<32]) == [127] + (1..<32).map { Int8($0) })
        #expect(Array(m.q[32..<64]) == [127] + (1..<32).map { Int8($0) })
        #expect(Array(m.q[64..<70]) == [127, -12, 0, 2, -127, 4])  // 0.5 → 0 and 1.5 → 2 (ties to even)
        #expect(m.dequantized() == w.enumerated().map { $0.offset >= 64 && ($0.offset == 66 || $0.offset == 67) ? [0, 0.5][$0.offset - 66] : $0.element })
        #expect(Int8Scheme.block32.scalesShape(rows: 3, columns: 70) == [3, 3])
        // Per-channel on the same row: one scale, s = 1, q = rint(w).
        let p = Int8Reference.quantize(w, rows: 1, columns: 70, scheme: .perChannel)
        #expect(p.scales == [1])
        #expect(Array(p.q[32..<36]) == [64, 0, 1, 2])       // 63.5 → 64, 0.5 → 0, 1.0, 1.5 → 2
        #expect(Array(p.q[64..<70]) == [32, -3, 0, 0, -32, 1])
    }

    @Test func halfPrecisionIsWidenedExactly() {
        let bf16: [UInt16] = [0x3F80, 0xC000, 0x0001, 0x7F7F]   // 1, −2, the smallest bf16 subnormal, max bf16
        let f16: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7BFF]    // 1, −2, 2⁻²⁴, 65504
        var out = [Float](repeating: 0, count: 4)
        bf16.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { WeightConversion.widen(raw, dtype: .bf16, into: $0) } }
        #expect(out == [1, -2, Float(bitPattern: 0x0001_0000), Float(bitPattern: 0x7F7F_0000)])
        f16.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { WeightConversion.widen(raw, dtype: .f16, into: $0) } }
        #expect(out == [1, -2, 0x1p-24, 65504])
        // Narrowing back is exact for values the type holds, and rounds to nearest even otherwise.
        var bytes = [UInt8](repeating: 0, count: 8)
        let values: [Float] = [1, -2, 1 + 0x1p-8, 1 + 0x1p-7 + 0x1p-8]
        values.withUnsafeBufferPointer { v in bytes.withUnsafeMutableBytes { WeightConversion.narrow(v, to: .bf16, into: $0) } }
        #expect(bytes == [0x80, 0x3F, 0x00, 0xC0, 0x80, 0x3F, 0x82, 0x3F])  // 1+2⁻⁸ → 1 (tie, even); 1+3·2⁻⁸ → 1+2⁻⁶
    }

    /// |w − ŵ| ≤ s · (1/2 + 2⁻¹⁶) per element for normal scales, on random matrices of awkward widths.
    @Test(arguments: Int8Scheme.allCases)
    func roundTripErrorBound(scheme: Int8Scheme) {
        var generator = SplitMix64(seed: scheme == .perChannel ? 1 : 2)
        for (rows, columns) in [(1, 1), (3, 31), (4, 32), (2, 33), (5, 100), (7, 257)] {
            for magnitude: Float in [1e-20, 0.02, 1, 3e4] {
                let w = (0..<(rows * columns)).map { _ in generator.uniform() * magnitude }
                let m = Int8Reference.quantize(w, rows: rows, columns: columns, scheme: scheme)
                let back = m.dequantized()
                var worst = 0.0
                for row in 0..<rows {
                    for column in 0..<columns {
                        let i = row * columns + column
                        let s = m.scale(row: row, column: column)
                        #expect(s.isNormal || s == 0)
                        let error = abs(Double(w[i]) - Double(back[i]))
                        worst = max(worst, error / Double(s))
                        #expect(error <= Double(s) * Int8Reference.errorBoundInScales,
                                "[\(rows), \(columns)] \(scheme) at (\(row), \(column)): w \(w[i]) ŵ \(back[i]) s \(s)")
                    }
                }
                if rows * columns >= 64 {
                    #expect(worst > 0.3, "rounding errors should come near s/2 on random data, worst \(worst)")
                }
            }
        }
    }

    @Test func sqnr() {
        // [127, 0.5]: s = 1, ŵ = [127, 0]; Σw² = 16129.25, Σ(w − ŵ)² = 0.25.
        let w: [Float] = [127, 0.5]
        let back = Int8Reference.quantize(w, rows: 1, columns: 2, scheme: .perChannel).dequantized()
        var ratio = SQNR()
        w.withUnsafeBufferPointer { a in back.withUnsafeBufferPointer { b in ratio.add(original: a, dequantized: b) } }
        #expect(abs(ratio.decibels - 10 * log10(16129.25 / 0.25)) < 1e-12)
        // Exact quantisation and an all-zero tensor are +inf.
        for exact: [Float] in [[127, 1, -3], [0, 0, 0]] {
            let back = Int8Reference.quantize(exact, rows: 1, columns: 3, scheme: .perChannel).dequantized()
            var ratio = SQNR()
            exact.withUnsafeBufferPointer { a in back.withUnsafeBufferPointer { b in ratio.add(original: a, dequantized: b) } }
            #expect(ratio.decibels == .infinity)
        }
        // Gaussian-like weights at int8 per-channel: near the textbook 6.02·8 − 10·log10(3·127²/…) range (≈ 40 dB).
        var generator = SplitMix64(seed: 3)
        let g = (0..<(64 * 256)).map { _ in (0..<4).reduce(Float(0)) { acc, _ in acc + generator.uniform() } }
        let m = Int8Reference.quantize(g, rows: 64, columns: 256, scheme: .perChannel)
        var gaussian = SQNR()
        let gb = m.dequantized()
        g.withUnsafeBufferPointer { a in gb.withUnsafeBufferPointer { b in gaussian.add(original: a, dequantized: b) } }
        #expect(gaussian.decibels > 35 && gaussian.decibels < 50, "\(gaussian.decibels)")
    }

    @Test func keepFloatRules() throws {
        let defaults = try KeepFloatRules()
        #expect(try defaults.decision(for: "layers.3.attn.q.weight") == .quantize)
        #expect(try defaults.decision(for: "layers.0.mlp.wi.weight") == .quantize)
        #expect(try defaults.decision(for: "embed.tokens") == .keepFloat(reason: "embeddings"))
        #expect(try defaults.decision(for: "embed.patch.weight") == .keepFloat(reason: "patch embedding"))
        #expect(try defaults.decision(for: "lm_head.weight") == .keepFloat(reason: "output heads"))
        #expect(try defaults.decision(for: "mlm.dense.weight") == .keepFloat(reason: "output heads"))
        #expect(try defaults.decision(for: "pooler.dense.weight") == .keepFloat(reason: "output heads"))
        #expect(try defaults.decision(for: "layers.0.attn.q_norm.weight") == .keepFloat(reason: "norms"))
        #expect(try defaults.decision(for: "final_norm.weight") == .keepFloat(reason: "norms"))
        #expect(try defaults.decision(for: "layers.0.attn.q.bias") == .keepFloat(reason: "biases"))
        #expect(try defaults.decision(for: "layers.11.ls2") == .keepFloat(reason: "layer scales"))
        #expect(try defaults.decision(for: "embed.register_tokens") == .keepFloat(reason: "CLS, register and mask tokens"))

        let embeddings = try KeepFloatRules(quantizeEmbeddings: true)
        #expect(try embeddings.decision(for: "embed.tokens") == .quantize)
        #expect(try embeddings.decision(for: "embed.patch.weight") == .keepFloat(reason: "patch embedding"))
        #expect(try embeddings.decision(for: "embed.tokens", aliases: ["lm_head.weight"])
                == .keepFloat(reason: "tied to lm_head.weight (output heads)"))
        let both = try KeepFloatRules(quantizeEmbeddings: true, quantizeHeads: true)
        #expect(try both.decision(for: "embed.tokens", aliases: ["lm_head.weight"]) == .quantize)
        #expect(both.patterns.count == KeepFloatRules.defaults.count - 2)

        let user = try KeepFloatRules(userPatterns: [#"^layers\.0\."#, "mlp"])
        #expect(try user.decision(for: "layers.0.attn.q.weight") == .keepFloat(reason: #"--keep-float ^layers\.0\."#))
        #expect(try user.decision(for: "layers.1.mlp.up.weight") == .keepFloat(reason: "--keep-float mlp"))
        #expect(try user.decision(for: "layers.10.attn.q.weight") == .quantize)
        #expect(user.patterns.suffix(2) == [#"^layers\.0\."#, "mlp"])
        #expect(throws: ToolError.self) { try KeepFloatRules(userPatterns: ["layers.(0"]) }
    }
}

