import Foundation
import PrimaTensor
import PrimaTestSupport
import Testing

/// Backward passes of the sequence and image ops (attention, RoPE, patch embedding, the token convolutions of the
/// PRIMA projectors): each reference backward against float64 central finite differences of a float64 forward
/// written here, each fast backward against its reference, on odd sizes, several seeds and every variant.
@Suite struct SequenceBackwardTests {
    /// Reference backward vs finite differences, relative to max|grad|: the references sum in double and round once
    /// to f32 (6e-8 of max|grad|); the float64 differences are good to about 1e-10. Measured worst: 7.4e-8 (RoPE,
    /// whose reference rounds each product in f32), 5e-8 (attention, patch embedding).
    static let referenceVersusFiniteDifferences = 1e-6

    // MARK: - Attention

    /// Fast attention backward vs the reference, relative to max|grad|: f32 sums over D (scores, Σ dO⊙O) and over up
    /// to T ≤ 97 keys or queries (dq, dk, dv), and P recomputed as exp(s − lse) from an f32 log-sum-exp (an error of
    /// about ε·|lse| in each probability). Measured worst 4.8e-7; the bound leaves a factor 10.
    static let attentionFastVersusReference = 5e-6

    /// One attention problem: sizes, mask and seeded inputs q [B·T, H·D], k, v [B·T, KV·D], upstream gradient g.
    struct AttentionCase: CustomStringConvertible {
        let batch: Int, t: Int, heads: Int, kvHeads: Int, d: Int
        let mask: AttentionMask
        let kind: String
        let q: [Float], k: [Float], v: [Float], g: [Float]
        var scale: Float { 1 / Float(d).squareRoot() }
        var description: String { "\(kind) B \(batch) T \(t) H \(heads) KV \(kvHeads) D \(d)" }

        /// `kind`: band ("all", "causal", "window") and "+padding" for right padding of 1 + 2·b tokens in sequence
        /// b (sequence 0 of a batch of 3 or more is also left-padded by one token, so both ends are tested).
        init(_ kind: String, batch: Int, t: Int, heads: Int, kvHeads: Int, d: Int, radius: Int = 2, seed: UInt64,
             inputScale: Float = 1) {
            (self.batch, self.t, self.heads, self.kvHeads, self.d, self.kind) = (batch, t, heads, kvHeads, d, kind)
            let padding: [[Int]]? = kind.hasSuffix("+padding")
                ? (0..<batch).map { b in (0..<t).map { i in i < t - 1 - 2 * b && !(batch >= 3 && b == 0 && i == 0) ? 1 : 0 } }
                : nil
            let band: AttentionMask.Band = kind.hasPrefix("causal") ? .causal
                : kind.hasPrefix("window") ? .window(radius: radius) : .all
            mask = AttentionMask(band: band, padding: padding)
            q = GradientCheck.random(batch * t * heads * d, seed: seed, scale: inputScale)
            k = GradientCheck.random(batch * t * kvHeads * d, seed: seed + 1, scale: inputScale)
            v = GradientCheck.random(batch * t * kvHeads * d, seed: seed + 2)
            g = GradientCheck.random(batch * t * heads * d, seed: seed + 3)
        }

        var tensors: (q: Tensor, k: Tensor, v: Tensor, g: Tensor) {
            (Tensor(shape: [batch * t, heads * d], float32: q), Tensor(shape: [batch * t, kvHeads * d], float32: k),
             Tensor(shape: [batch * t, kvHeads * d], float32: v), Tensor(shape: [batch * t, heads * d], float32: g))
        }

        func isPadding(_ b: Int, _ i: Int) -> Bool { mask.padding.map { $0[b][i] == 0 } ?? false }

        /// The float64 forward: softmax over the keys each unpadded query sees (its band minus padded keys) times V;
        /// padded queries give 0 (the backward ignores them).
        func forward64(q: [Double], k: [Double], v: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: q.count)
            let group = heads / kvHeads
            var weights = [Double](repeating: 0, count: t)
            for b in 0..<batch {
                for h in 0..<heads {
                    let kvHead = h / group
                    for i in 0..<t where !isPadding(b, i) {
                        var total = 0.0
                        for j in 0..<t {
                            let inBand: Bool
                            switch mask.band {
                            case .all: inBand = true
                            case .causal: inBand = j <= i
                            case .window(let radius): inBand = abs(i - j) <= radius
                            }
                            weights[j] = 0
                            guard inBand && !isPadding(b, j) else { continue }
                            var score = 0.0
                            for e in 0..<d { score += q[(b * t + i) * heads * d + h * d + e] * k[(b * t + j) * kvHeads * d + kvHead * d + e] }
                            weights[j] = exp(score * Double(scale))
                            total += weights[j]
                        }
                        for j in 0..<t where weights[j] != 0 {
                            for e in 0..<d {
                                out[(b * t + i) * heads * d + h * d + e] += weights[j] / total * v[(b * t + j) * kvHeads * d + kvHead * d + e]
                            }
                        }
                    }
                }
            }
            return out
        }

        func reference() -> Attention.Gradients {
            let (q, k, v, g) = tensors
            return Attention.backwardReference(g, q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads,
                                               headDim: d, scale: scale, mask: mask)
        }

        func fast(isa: FloatISA = .best, threads: Int? = nil, queryBlock: Int = 256) -> Attention.Gradients {
            let (q, k, v, g) = tensors
            let saved = Attention.forwardSaving(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: d,
                                                scale: scale, mask: mask, isa: isa, threads: threads)
            return Attention.backward(g, q: q, k: k, v: v, saved: saved, batch: batch, heads: heads, kvHeads: kvHeads,
                                      headDim: d, scale: scale, mask: mask, isa: isa, threads: threads,
                                      queryBlock: queryBlock)
        }
    }

    static let maskKinds = ["all", "all+padding", "causal", "causal+padding", "window", "window+padding"]

    @Test(arguments: maskKinds)
    func attentionReferenceMatchesFiniteDifferences(kind: String) {
        for (n, (batch, t, heads, kvHeads, d)) in [(2, 7, 4, 2, 3), (3, 5, 3, 1, 2)].enumerated() {
            let c = AttentionCase(kind, batch: batch, t: t, heads: heads, kvHeads: kvHeads, d: d, seed: 100 + UInt64(n) * 10,
                                  inputScale: 2)
            let q = c.q.map(Double.init), k = c.k.map(Double.init), v = c.v.map(Double.init), g = c.g.map(Double.init)
            let nq = q.count, nk = k.count
            let numeric = GradientCheck.numeric({ x in
                GradientCheck.contract(c.forward64(q: Array(x[0..<nq]), k: Array(x[nq..<nq + nk]), v: Array(x[(nq + nk)...])),
                                       with: g)
            }, at: q + k + v)
            let reference = c.reference()
            let errors = [GradientCheck.relativeError(reference.q.float32Values(), Array(numeric[0..<nq])),
                          GradientCheck.relativeError(reference.k.float32Values(), Array(numeric[nq..<nq + nk])),
                          GradientCheck.relativeError(reference.v.float32Values(), Array(numeric[(nq + nk)...]))]
            #expect(errors.allSatisfy { $0 <= Self.referenceVersusFiniteDifferences }, "\(c): dq, dk, dv errors \(errors)")
            #expect(numeric.contains { $0 != 0 }, "\(c): all-zero gradient")
        }
    }

    @Test(arguments: maskKinds)
    func attentionFastMatchesReference(kind: String) {
        // (B, T, H, KV, D, radius, query block): GQA ratios 1, 2, 3; blocks that split T unevenly.
        // The T = 97 case, slow in the reference, runs with one seed.
        let shapes = [(2, 13, 4, 2, 7, 3, 256), (1, 33, 3, 3, 16, 5, 8), (1, 97, 2, 1, 5, 7, 16), (3, 7, 2, 1, 13, 1, 3)]
        for (n, (batch, t, heads, kvHeads, d, radius, block)) in shapes.enumerated() {
            for seed in t > 50 ? [UInt64(7)] : [UInt64(7), 8] {
                let c = AttentionCase(kind, batch: batch, t: t, heads: heads, kvHeads: kvHeads, d: d, radius: radius,
                                      seed: seed * 1000 + UInt64(n), inputScale: 2)
                let reference = c.reference(), fast = c.fast(queryBlock: block)
                let errors = [GradientCheck.relativeError(fast.q.float32Values(), reference.q.float32Values()),
                              GradientCheck.relativeError(fast.k.float32Values(), reference.k.float32Values()),
                              GradientCheck.relativeError(fast.v.float32Values(), reference.v.float32Values())]
                #expect(errors.allSatisfy { $0 <= Self.attentionFastVersusReference }, "\(c) block \(block): errors \(errors)")
            }
        }
    }

    @Test(arguments: maskKinds)
    func attentionForwardSavingKeepsForwardBits(kind: String) {
        for (batch, t, heads, kvHeads, d) in [(2, 37, 4, 2, 20), (3, 21, 2, 1, 9)] {
            let c = AttentionCase(kind, batch: batch, t: t, heads: heads, kvHeads: kvHeads, d: d, seed: 5, inputScale: 2)
            let (q, k, v, _) = c.tensors
            for isa in FloatISA.available {
                for threads in [1, 3] {
                    let plain = Attention.forward(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: d,
                                                  scale: c.scale, mask: c.mask, isa: isa, threads: threads)
                    let saved = Attention.forwardSaving(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads,
                                                        headDim: d, scale: c.scale, mask: c.mask, isa: isa, threads: threads)
                    #expect(saved.output.float32Values().map(\.bitPattern) == plain.float32Values().map(\.bitPattern),
                            "\(c) \(isa.rawValue) threads \(threads)")
                    #expect(saved.logSumExp.count == batch * heads * t)
                }
            }
        }
    }

    @Test func attentionBackwardDoesNotDependOnThreadsOrBuild() {
        for kind in ["all+padding", "causal+padding", "window"] {
            let c = AttentionCase(kind, batch: 3, t: 29, heads: 6, kvHeads: 2, d: 11, radius: 4, seed: 77)
            let first = c.fast(isa: .generic, threads: 1, queryBlock: 8)
            for isa in FloatISA.available {
                for threads in [1, 2, 3, 7] {
                    let other = c.fast(isa: isa, threads: threads, queryBlock: 8)
                    for (a, b, name) in [(first.q, other.q, "dq"), (first.k, other.k, "dk"), (first.v, other.v, "dv")] {
                        #expect(a.float32Values().map(\.bitPattern) == b.float32Values().map(\.bitPattern),
                                "\(c) \(isa.rawValue) threads \(threads): \(name) differs")
                    }
                }
            }
        }
    }

    @Test(arguments: ["all+padding", "causal+padding", "window+padding"])
    func attentionPaddingGetsExactlyZeroGradient(kind: String) {
        let c = AttentionCase(kind, batch: 3, t: 19, heads: 4, kvHeads: 2, d: 6, seed: 31)
        for (name, gradients) in [("fast", c.fast(queryBlock: 5)), ("reference", c.reference())] {
            let dq = gradients.q.float32Values(), dk = gradients.k.float32Values(), dv = gradients.v.float32Values()
            var paddedRows = 0
            for b in 0..<c.batch {
                for i in 0..<c.t {
                    let qRow = Array(dq[(b * c.t + i) * c.heads * c.d..<(b * c.t + i + 1) * c.heads * c.d])
                    let kRow = Array(dk[(b * c.t + i) * c.kvHeads * c.d..<(b * c.t + i + 1) * c.kvHeads * c.d])
                    let vRow = Array(dv[(b * c.t + i) * c.kvHeads * c.d..<(b * c.t + i + 1) * c.kvHeads * c.d])
                    if c.isPadding(b, i) {
                        paddedRows += 1
                        #expect((qRow + kRow + vRow).allSatisfy { $0 == 0 }, "\(c) \(name): padded token \(b), \(i)")
                    } else {
                        // dv of an unpadded key is never zero (its own query sees it); dq and dk may be: a query
                        // that sees one key only (the first unpadded token under a causal mask) has P = 1 whatever
                        // its scores.
                        #expect(vRow.contains { $0 != 0 }, "\(c) \(name): token \(b), \(i) got no value gradient")
                    }
                }
            }
            #expect(paddedRows == 1 + 3 + 5 + 1, "\(c): \(paddedRows) padded tokens")
            #expect(dq.contains { $0 != 0 } && dk.contains { $0 != 0 }, "\(c) \(name): no query or key gradient")
        }
    }

    // MARK: - RoPE

    /// One RoPE problem: x [N, H·D], tables [P, D], table row per row (nil: not rotated), upstream gradient g.
    struct RoPECase: CustomStringConvertible {
        let n: Int, heads: Int, d: Int
        let cos: [Float], sin: [Float]
        let rows: [Int?]
        let x: [Float], g: [Float]
        let kind: String
        var description: String { "\(kind) N \(n) H \(heads) D \(d)" }

        /// 1D RoPE (Qwen3, ModernBERT): positions 0..<T in each of `batch` sequences, theta 10⁴.
        static func oneDimensional(batch: Int, t: Int, heads: Int, d: Int, seed: UInt64) -> RoPECase {
            let (cos, sin) = RoPE.tables(positions: t, headDim: d, theta: 10_000)
            return RoPECase(n: batch * t, heads: heads, d: d, cos: cos, sin: sin, rows: (0..<batch * t).map { $0 % t },
                            seed: seed, kind: "1D")
        }

        /// DINOv3's 2D RoPE: per image, `prefix` unrotated tokens (CLS and registers) then a gridH × gridW patch grid
        /// whose angles are laid out [y | x] (D/4 frequencies each, coordinates in [−1, 1] as DINOv3's), tiled twice.
        static func twoDimensional(batch: Int, prefix: Int, gridH: Int, gridW: Int, heads: Int, d: Int,
                                   seed: UInt64) -> RoPECase {
            let quarter = d / 4
            let periods = (0..<quarter).map { pow(100.0, 2 * Double($0) / Double(d / 2)) }
            var angles: [[Float]] = []
            for r in 0..<gridH {
                for c in 0..<gridW {
                    let y = (Double(r) + 0.5) / Double(gridH) * 2 - 1, x = (Double(c) + 0.5) / Double(gridW) * 2 - 1
                    angles.append(periods.map { Float(2 * Double.pi * y / $0) } + periods.map { Float(2 * Double.pi * x / $0) })
                }
            }
            let (cos, sin) = RoPE.tables(angles: angles, headDim: d)
            let tokens = prefix + gridH * gridW
            return RoPECase(n: batch * tokens, heads: heads, d: d, cos: cos, sin: sin,
                            rows: (0..<batch * tokens).map { $0 % tokens < prefix ? nil : $0 % tokens - prefix },
                            seed: seed, kind: "2D prefix \(prefix) grid \(gridH)×\(gridW)")
        }

        init(n: Int, heads: Int, d: Int, cos: [Float], sin: [Float], rows: [Int?], seed: UInt64, kind: String) {
            (self.n, self.heads, self.d, self.cos, self.sin, self.rows, self.kind) = (n, heads, d, cos, sin, rows, kind)
            x = GradientCheck.random(n * heads * d, seed: seed)
            g = GradientCheck.random(n * heads * d, seed: seed + 1)
        }

        /// The float64 forward: each pair (i, i + D/2) of each head rotated by its table row (rows without one copied).
        func forward64(_ x: [Double]) -> [Double] {
            var y = x
            let half = d / 2
            for r in 0..<n {
                guard let row = rows[r] else { continue }
                for h in 0..<heads {
                    let base = (r * heads + h) * d
                    for i in 0..<half {
                        let a = x[base + i], b = x[base + half + i]
                        y[base + i] = a * Double(cos[row * d + i]) - b * Double(sin[row * d + i])
                        y[base + half + i] = b * Double(cos[row * d + half + i]) + a * Double(sin[row * d + half + i])
                    }
                }
            }
            return y
        }
    }

    static let ropeCases: [RoPECase] = [
        .oneDimensional(batch: 2, t: 7, heads: 3, d: 10, seed: 1),
        .oneDimensional(batch: 1, t: 5, heads: 1, d: 34, seed: 2),        // D/2 = 17: a 16-lane vector and a tail
        .twoDimensional(batch: 2, prefix: 5, gridH: 3, gridW: 5, heads: 1, d: 12, seed: 3),
        .twoDimensional(batch: 1, prefix: 1, gridH: 3, gridW: 3, heads: 1, d: 68, seed: 4),
    ]

    @Test func ropeReferenceMatchesFiniteDifferences() {
        for c in Self.ropeCases {
            let numeric = GradientCheck.numeric({ GradientCheck.contract(c.forward64($0), with: c.g.map(Double.init)) },
                                                at: c.x.map(Double.init))
            let reference = RoPE.backwardReference(Tensor(shape: [c.n, c.heads * c.d], float32: c.g), heads: c.heads,
                                                   headDim: c.d, cos: c.cos, sin: c.sin) { c.rows[$0] }
            let error = GradientCheck.relativeError(reference.float32Values(), numeric)
            #expect(error <= Self.referenceVersusFiniteDifferences, "\(c): error \(error)")
        }
    }

    @Test func ropeFastEqualsReferenceAndUnrotatesForward() {
        for c in Self.ropeCases {
            let dy = Tensor(shape: [c.n, c.heads * c.d], float32: c.g)
            let reference = RoPE.backwardReference(dy, heads: c.heads, headDim: c.d, cos: c.cos, sin: c.sin) { c.rows[$0] }
            for isa in FloatISA.available {
                let fast = RoPE.backward(dy, heads: c.heads, headDim: c.d, cos: c.cos, sin: c.sin, isa: isa) { c.rows[$0] }
                #expect(fast.float32Values().map(\.bitPattern) == reference.float32Values().map(\.bitPattern),
                        "\(c) \(isa.rawValue): fast differs from reference")
            }
            // The backward is the inverse rotation: backward(forward(x)) = x up to two roundings per value, and
            // the unrotated prefix rows come back bit for bit.
            let x = Tensor(shape: [c.n, c.heads * c.d], float32: c.x)
            let roundTrip = RoPE.backward(RoPE.apply(x, heads: c.heads, headDim: c.d, cos: c.cos, sin: c.sin) { c.rows[$0] },
                                          heads: c.heads, headDim: c.d, cos: c.cos, sin: c.sin) { c.rows[$0] }
            #expect(GradientCheck.relativeError(roundTrip.float32Values(), c.x) <= Self.ropeRoundTrip, "\(c): round trip")
            let width = c.heads * c.d, back = roundTrip.float32Values()
            for r in 0..<c.n where c.rows[r] == nil {
                #expect(Array(back[r * width..<(r + 1) * width]) == Array(c.x[r * width..<(r + 1) * width]), "\(c): row \(r)")
            }
        }
    }

    /// backward(forward(x)) vs x, relative to max|x|: four f32 roundings per value and cos²+sin² of f32 tables
    /// (≈ 1 within a few ulps); measured worst 1.2e-7.
    static let ropeRoundTrip = 1e-6

    // MARK: - Patch embedding

    /// Fast patch-embedding backward vs the reference, relative to max|grad|: f32 sums of at most B·h·w = 45 terms
    /// (dW, db) or C = 5 (d(pixels)), each within n·ε ≈ 45 × 6e-8 of the double sum in the worst case (measured
    /// worst 3.2e-7).
    static let patchFastVersusReference = 3e-6

    /// (B, Cin, H, W, pH, pW, C): odd images that are multiples of the patch, images with rows and columns past the
    /// last whole patch, rectangular patches, batch > 1.
    static let patchShapes = [(2, 2, 9, 15, 3, 3, 5), (3, 3, 10, 7, 3, 2, 4), (1, 3, 14, 7, 7, 7, 3)]

    /// The float64 patch embedding: y[b·h·w + r·w + c, o] = bias[o] + Σ pixels[b, ch, r·pH + ky, c·pW + kx]·W[o, ch, ky, kx].
    static func patchForward64(pixels x: [Double], weight: [Double], bias: [Double]?,
                               shape: (Int, Int, Int, Int, Int, Int, Int)) -> [Double] {
        let (batch, channels, height, width, ph, pw, out) = shape
        let h = height / ph, w = width / pw
        var y = [Double](repeating: 0, count: batch * h * w * out)
        for b in 0..<batch {
            for r in 0..<h {
                for c in 0..<w {
                    for o in 0..<out {
                        var sum = bias?[o] ?? 0
                        for ch in 0..<channels {
                            for ky in 0..<ph {
                                for kx in 0..<pw {
                                    sum += x[((b * channels + ch) * height + r * ph + ky) * width + c * pw + kx]
                                        * weight[((o * channels + ch) * ph + ky) * pw + kx]
                                }
                            }
                        }
                        y[((b * h + r) * w + c) * out + o] = sum
                    }
                }
            }
        }
        return y
    }

    @Test(arguments: [true, false])
    func patchEmbeddingReferenceMatchesFiniteDifferences(withBias: Bool) {
        for (n, shape) in Self.patchShapes.enumerated() {
            let (batch, channels, height, width, ph, pw, out) = shape
            let seed = 300 + UInt64(n) * 10
            let x = GradientCheck.random(batch * channels * height * width, seed: seed)
            let weight = GradientCheck.random(out * channels * ph * pw, seed: seed + 1)
            let bias = GradientCheck.random(out, seed: seed + 2)
            let rows = batch * (height / ph) * (width / pw)
            let g = GradientCheck.random(rows * out, seed: seed + 3)
            let nx = x.count, nw = weight.count
            let numeric = GradientCheck.numeric({ v in
                GradientCheck.contract(Self.patchForward64(pixels: Array(v[0..<nx]), weight: Array(v[nx..<nx + nw]),
                                                           bias: withBias ? Array(v[(nx + nw)...]) : nil, shape: shape),
                                       with: g.map(Double.init))
            }, at: (x + weight + bias).map(Double.init))
            let dw = Tensor(zeros: [out, channels, ph, pw], dtype: .f32), db = Tensor(zeros: [out], dtype: .f32)
            let dx = PatchEmbedding.backwardReference(Tensor(shape: [rows, out], float32: g),
                                                      pixels: Tensor(shape: [batch, channels, height, width], float32: x),
                                                      weight: Tensor(shape: [out, channels, ph, pw], float32: weight),
                                                      weightGradient: dw, biasGradient: withBias ? db : nil,
                                                      inputGradient: true)!
            var errors = [GradientCheck.relativeError(dx.float32Values(), Array(numeric[0..<nx])),
                          GradientCheck.relativeError(dw.float32Values(), Array(numeric[nx..<nx + nw]))]
            if withBias { errors.append(GradientCheck.relativeError(db.float32Values(), Array(numeric[(nx + nw)...]))) }
            #expect(errors.allSatisfy { $0 <= Self.referenceVersusFiniteDifferences }, "\(shape) bias \(withBias): \(errors)")
            // Pixels past the last whole patch never reach the output.
            let back = dx.float32Values()
            for i in back.indices where (i / width) % height >= height / ph * ph || i % width >= width / pw * pw {
                #expect(back[i] == 0, "\(shape): pixel \(i) past the patches has gradient \(back[i])")
            }
        }
    }

    @Test func patchEmbeddingFastMatchesReferenceAndAccumulates() {
        for (n, shape) in Self.patchShapes.enumerated() {
            let (batch, channels, height, width, ph, pw, out) = shape
            for seed in [UInt64(400 + n), UInt64(500 + n)] {
                let pixels = Tensor(shape: [batch, channels, height, width],
                                    float32: GradientCheck.random(batch * channels * height * width, seed: seed))
                let weight = Tensor(shape: [out, channels, ph, pw], float32: GradientCheck.random(out * channels * ph * pw, seed: seed + 1))
                let rows = batch * (height / ph) * (width / pw)
                let dy = Tensor(shape: [rows, out], float32: GradientCheck.random(rows * out, seed: seed + 2))
                // Both start from the same nonzero buffers: the gradients are added to them.
                let startW = GradientCheck.random(weight.elementCount, seed: seed + 3), startB = GradientCheck.random(out, seed: seed + 4)
                let referenceW = Tensor(shape: weight.shape, float32: startW), referenceB = Tensor(shape: [out], float32: startB)
                let fastW = Tensor(shape: weight.shape, float32: startW), fastB = Tensor(shape: [out], float32: startB)
                let referenceX = PatchEmbedding.backwardReference(dy, pixels: pixels, weight: weight, weightGradient: referenceW,
                                                                  biasGradient: referenceB, inputGradient: true)!
                let fastX = PatchEmbedding.backward(dy, pixels: pixels, weight: weight, weightGradient: fastW,
                                                    biasGradient: fastB, inputGradient: true)!
                let errors = [GradientCheck.relativeError(fastX.float32Values(), referenceX.float32Values()),
                              GradientCheck.relativeError(fastW.float32Values(), referenceW.float32Values()),
                              GradientCheck.relativeError(fastB.float32Values(), referenceB.float32Values())]
                #expect(errors.allSatisfy { $0 <= Self.patchFastVersusReference }, "\(shape) seed \(seed): \(errors)")
                // The accumulated buffers differ from their start by the gradient alone.
                let freshW = Tensor(zeros: weight.shape, dtype: .f32)
                PatchEmbedding.backward(dy, pixels: pixels, weight: weight, weightGradient: freshW)
                let expected = zip(startW, freshW.float32Values()).map { $0 + $1 }
                #expect(fastW.float32Values() == expected, "\(shape): weight gradient not added to the buffer")
                // Frozen weight and bias, input gradient only: the same pixels gradient, nothing else computed.
                let inputOnly = PatchEmbedding.backward(dy, pixels: pixels, weight: weight, inputGradient: true)!
                #expect(inputOnly.float32Values() == fastX.float32Values(), "\(shape): input-only gradient differs")
                #expect(PatchEmbedding.backward(dy, pixels: pixels, weight: weight, weightGradient: freshW) == nil)
            }
        }
    }

    // MARK: - Token convolution (the PRIMA sequence projectors)

    /// (grid height, grid width, C, O, weight shape): Conv2d 2×2 on an odd grid (its last row and column dropped),
    /// Conv1d k = 2 on an odd sequence (its last token dropped), Conv2d 3×1.
    static let tokenConvolutionShapes: [(Int, Int, Int, Int, [Int])] = [
        (5, 7, 3, 4, [4, 3, 2, 2]), (1, 9, 5, 3, [3, 5, 2]), (7, 3, 2, 5, [5, 2, 3, 1]),
    ]

    /// Fast token-convolution backward vs the reference, relative to max|grad|: f32 sums of at most 9 cells (dW, db)
    /// or O = 5 (d(tokens)), as for the patch embedding (measured worst 1.1e-7; the forward against float64: 9e-8).
    static let tokenConvolutionFastVersusReference = 3e-6

    /// The float64 convolution with stride = kernel over channels-last tokens on a gh × gw grid.
    static func tokenConvolution64(tokens x: [Double], weight: [Double], bias: [Double]?,
                                   shape: (Int, Int, Int, Int, [Int])) -> [Double] {
        let (gh, gw, c, out, weightShape) = shape
        let (kh, kw) = weightShape.count == 4 ? (weightShape[2], weightShape[3]) : (1, weightShape[2])
        let oh = gh / kh, ow = gw / kw
        var y = [Double](repeating: 0, count: oh * ow * out)
        for i in 0..<oh {
            for j in 0..<ow {
                for o in 0..<out {
                    var sum = bias?[o] ?? 0
                    for ch in 0..<c {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                sum += x[((kh * i + ky) * gw + kw * j + kx) * c + ch] * weight[((o * c + ch) * kh + ky) * kw + kx]
                            }
                        }
                    }
                    y[(i * ow + j) * out + o] = sum
                }
            }
        }
        return y
    }

    @Test(arguments: [true, false])
    func tokenConvolutionReferenceMatchesFiniteDifferences(withBias: Bool) {
        for (n, shape) in Self.tokenConvolutionShapes.enumerated() {
            let (gh, gw, c, out, weightShape) = shape
            let seed = 600 + UInt64(n) * 10
            let x = GradientCheck.random(gh * gw * c, seed: seed)
            let weight = GradientCheck.random(weightShape.reduce(1, *), seed: seed + 1)
            let bias = GradientCheck.random(out, seed: seed + 2)
            let cells = (gh / (weightShape.count == 4 ? weightShape[2] : 1)) * (gw / weightShape.last!)
            let g = GradientCheck.random(cells * out, seed: seed + 3)
            let nx = x.count, nw = weight.count
            let numeric = GradientCheck.numeric({ v in
                GradientCheck.contract(Self.tokenConvolution64(tokens: Array(v[0..<nx]), weight: Array(v[nx..<nx + nw]),
                                                               bias: withBias ? Array(v[(nx + nw)...]) : nil, shape: shape),
                                       with: g.map(Double.init))
            }, at: (x + weight + bias).map(Double.init))
            let dw = Tensor(zeros: weightShape, dtype: .f32), db = Tensor(zeros: [out], dtype: .f32)
            let dx = TokenConvolution.backwardReference(Tensor(shape: [cells, out], float32: g),
                                                        tokens: Tensor(shape: [gh * gw, c], float32: x), gridHeight: gh,
                                                        gridWidth: gw, weight: Tensor(shape: weightShape, float32: weight),
                                                        weightGradient: dw, biasGradient: withBias ? db : nil,
                                                        inputGradient: true)!
            var errors = [GradientCheck.relativeError(dx.float32Values(), Array(numeric[0..<nx])),
                          GradientCheck.relativeError(dw.float32Values(), Array(numeric[nx..<nx + nw]))]
            if withBias { errors.append(GradientCheck.relativeError(db.float32Values(), Array(numeric[(nx + nw)...]))) }
            #expect(errors.allSatisfy { $0 <= Self.referenceVersusFiniteDifferences }, "\(shape) bias \(withBias): \(errors)")
            // The forward against the float64 convolution (f32 sums of at most C·kH·kW = 12 products).
            let y = TokenConvolution.forward(Tensor(shape: [gh * gw, c], float32: x), gridHeight: gh, gridWidth: gw,
                                             weight: Tensor(shape: weightShape, float32: weight),
                                             bias: withBias ? Tensor(shape: [out], float32: bias) : nil)
            let exact = Self.tokenConvolution64(tokens: x.map(Double.init), weight: weight.map(Double.init),
                                                bias: withBias ? bias.map(Double.init) : nil, shape: shape)
            #expect(GradientCheck.relativeError(y.float32Values(), exact) <= Self.tokenConvolutionFastVersusReference,
                    "\(shape): forward")
        }
    }

    @Test func tokenConvolutionFastMatchesReferenceAndAccumulates() {
        for (n, shape) in Self.tokenConvolutionShapes.enumerated() {
            let (gh, gw, c, out, weightShape) = shape
            for seed in [UInt64(700 + n), UInt64(800 + n)] {
                let tokens = Tensor(shape: [gh * gw, c], float32: GradientCheck.random(gh * gw * c, seed: seed))
                let weight = Tensor(shape: weightShape, float32: GradientCheck.random(weightShape.reduce(1, *), seed: seed + 1))
                let cells = (gh / (weightShape.count == 4 ? weightShape[2] : 1)) * (gw / weightShape.last!)
                let dy = Tensor(shape: [cells, out], float32: GradientCheck.random(cells * out, seed: seed + 2))
                let startW = GradientCheck.random(weight.elementCount, seed: seed + 3), startB = GradientCheck.random(out, seed: seed + 4)
                let referenceW = Tensor(shape: weightShape, float32: startW), referenceB = Tensor(shape: [out], float32: startB)
                let fastW = Tensor(shape: weightShape, float32: startW), fastB = Tensor(shape: [out], float32: startB)
                let referenceX = TokenConvolution.backwardReference(dy, tokens: tokens, gridHeight: gh, gridWidth: gw, weight: weight,
                                                                    weightGradient: referenceW, biasGradient: referenceB,
                                                                    inputGradient: true)!
                let fastX = TokenConvolution.backward(dy, tokens: tokens, gridHeight: gh, gridWidth: gw, weight: weight,
                                                      weightGradient: fastW, biasGradient: fastB, inputGradient: true)!
                let errors = [GradientCheck.relativeError(fastX.float32Values(), referenceX.float32Values()),
                              GradientCheck.relativeError(fastW.float32Values(), referenceW.float32Values()),
                              GradientCheck.relativeError(fastB.float32Values(), referenceB.float32Values())]
                #expect(errors.allSatisfy { $0 <= Self.tokenConvolutionFastVersusReference }, "\(shape) seed \(seed): \(errors)")
                let freshW = Tensor(zeros: weightShape, dtype: .f32)
                TokenConvolution.backward(dy, tokens: tokens, gridHeight: gh, gridWidth: gw, weight: weight, weightGradient: freshW)
                #expect(fastW.float32Values() == zip(startW, freshW.float32Values()).map { $0 + $1 },
                        "\(shape): weight gradient not added to the buffer")
                let inputOnly = TokenConvolution.backward(dy, tokens: tokens, gridHeight: gh, gridWidth: gw, weight: weight,
                                                          inputGradient: true)!
                #expect(inputOnly.float32Values() == fastX.float32Values(), "\(shape): input-only gradient differs")
            }
        }
    }
}
