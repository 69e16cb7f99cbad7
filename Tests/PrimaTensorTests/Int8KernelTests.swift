import PrimaKernels
import PrimaTensor
import PrimaTestSupport
import Testing

/// The int8 kernels against the contract in PrimaKernels.h: bit-exact equality with the references (C and
/// Swift), a hand-computed case, and the quantisation error against fp32 Linear within a named bound.
@Suite struct Int8KernelTests {
    /// ‖int8 − fp32‖_F / ‖fp32‖_F on random Gaussian-like data, both schemes. Activations and weights each carry
    /// about 0.5-0.8% rms quantisation noise at 127 levels (absmax of K ≈ 256 roughly-normal values); 2% leaves
    /// room while still catching a wrong scale or a dropped block. Measured: 0.88% per-channel, 0.80% block32.
    static let relativeFrobeniusBound: Float = 0.02

    /// M gives full and partial row tiles (AVX2 tiles: 4 rows with one block, 3 with several; every remainder of
    /// both), K and N odd sizes, short last blocks and the K padding; block sizes are the format's two schemes and
    /// 20, a multiple of 4 but not of 32 (the AVX2 workspace's per-block sums then take their scalar tail).
    @Test(arguments: [1, 3, 17, 130], [1, 31, 32, 33, 100, 257, 1024])
    func everyKernelEqualsReference(m: Int, k: Int) throws {
        for n in [1, 7, 16, 65] {
            var rng = SplitMix64(seed: UInt64(m * 100_003 + k * 101 + n))
            let x = Self.activations(m: m, k: k, rng: &rng)
            for blockSize in [k, 32, 20] {
                let (values, scales) = Self.weights(n: n, k: k, blockSize: blockSize, rng: &rng)
                let bias = Tensor(shape: [n], float32: (0..<n).map { _ in rng.float(in: -2...2) })
                let weight = try Int8Weight(values: values, scales: scales, blockSize: blockSize, kernel: .scalar)
                for b in [nil, bias] {
                    let swiftReference = Int8Linear.reference(x, values: values, scales: scales, blockSize: blockSize, bias: b)
                    let cReference = Self.cReference(x, values: values, scales: scales, blockSize: blockSize, bias: b)
                    let label = "M \(m) K \(k) N \(n) block \(blockSize) bias \(b != nil)"
                    Self.expectIdentical(cReference, swiftReference, "C reference vs Swift reference, \(label)")
                    for kernel in Int8Kernel.available {
                        let y = Int8Linear.forward(x, weight: weight, bias: b, kernel: kernel, threads: 1)
                        Self.expectIdentical(y, swiftReference, "\(kernel.rawValue), \(label)")
                    }
                }
            }
        }
    }

    @Test func extremeActivationsStayBitExact() throws {
        // Rows: ordinary; all zero; one infinity; one NaN; denormals whose scale underflows to 0; denormals with a
        // denormal scale; values near Float.greatestFiniteMagnitude; exact halves for round-half-to-even.
        let k = 70, n = 33
        var rng = SplitMix64(seed: 7)
        var rows: [[Float]] = []
        rows.append((0..<k).map { _ in rng.float(in: -1...1) })
        rows.append([Float](repeating: 0, count: k))
        rows.append((0..<k).map { $0 == 5 ? .infinity : rng.float(in: -1...1) })
        rows.append((0..<k).map { $0 == 69 ? .nan : rng.float(in: -1...1) })
        rows.append((0..<k).map { Float(bitPattern: UInt32($0 % 3)) })
        rows.append((0..<k).map { Float(bitPattern: UInt32(($0 * 7919) % 50_000)) * ($0 % 2 == 0 ? 1 : -1) })
        rows.append((0..<k).map { _ in Float.greatestFiniteMagnitude * rng.float(in: -1...1) })
        rows.append((0..<k).map { [127, 62.5, -0.5, 1.5, -2.5, 126.5][$0 % 6] })
        let x = Tensor(shape: [rows.count, k], float32: rows.flatMap { $0 })
        for blockSize in [k, 32] {
            let (values, scales) = Self.weights(n: n, k: k, blockSize: blockSize, rng: &rng)
            let bias = Tensor(shape: [n], float32: (0..<n).map { _ in rng.float(in: -2...2) })
            let weight = try Int8Weight(values: values, scales: scales, blockSize: blockSize, kernel: .scalar)
            let reference = Int8Linear.reference(x, values: values, scales: scales, blockSize: blockSize, bias: bias)
            Self.expectIdentical(Self.cReference(x, values: values, scales: scales, blockSize: blockSize, bias: bias),
                                 reference, "C reference, extreme rows, block \(blockSize)")
            for kernel in Int8Kernel.available {
                Self.expectIdentical(Int8Linear.forward(x, weight: weight, bias: bias, kernel: kernel), reference,
                                     "\(kernel.rawValue), extreme rows, block \(blockSize)")
            }
            // The contract's NaN rule: rows with an infinity or a NaN give NaN everywhere.
            let y = reference.float32Values()
            #expect(y[2 * n..<4 * n].allSatisfy { $0.isNaN })
            #expect(y[n..<2 * n].allSatisfy { !$0.isNaN })
        }
    }

    /// The AVX2 kernel multiplies |a| by w with its bits flipped where a < 0 (w ^ 0xFF = -w - 1) in vpmaddubsw's
    /// saturating int16 pairs: a pair reaches 2·127·(-128) = -32512 when |a| = 127 meets w = 127 under a negative
    /// a, the closest any input comes to -32768/32767. Rows of ±127 (every x of a row is ±1 or 0, so q = ±127·x)
    /// against weight rows of ±127 in several sign patterns hit that bound in every pair, over a K whose block sums
    /// pass 2^24 (so the conversion to float rounds); every kernel must still equal the reference bit for bit.
    @Test(arguments: [1031, 4096])
    func extremeValuesDoNotSaturate(k: Int) throws {
        let rowPatterns: [(Int) -> Float] = [
            { _ in 1 }, { _ in -1 }, { $0 % 2 == 0 ? 1 : -1 }, { $0 % 4 < 2 ? -1 : 1 }, { $0 % 5 == 0 ? 0 : -1 },
            { $0 % 3 == 0 ? 1 : -1 }, { $0 < 8 ? -1 : 1 },
        ]
        let weightPatterns: [(Int) -> Int8] = [
            { _ in 127 }, { _ in -127 }, { $0 % 2 == 0 ? 127 : -127 }, { $0 % 4 < 2 ? -127 : 127 },
            { $0 % 3 == 0 ? -127 : 127 }, { $0 % 7 == 0 ? 0 : -127 },
        ]
        let x = Tensor(shape: [rowPatterns.count, k], float32: rowPatterns.flatMap { f in (0..<k).map(f) })
        var rng = SplitMix64(seed: UInt64(k))
        // 17 output rows: every pattern, then the patterns again with the sign of random elements flipped.
        let n = 17
        var q: [Int8] = []
        for row in 0..<n {
            let pattern = weightPatterns[row % weightPatterns.count]
            q += (0..<k).map { i in row < weightPatterns.count || rng.next() % 2 == 0 ? pattern(i) : -pattern(i) }
        }
        let values = Self.int8Tensor([n, k], q)
        #expect(Self.cReference(x, values: values, scales: Tensor(shape: [n, 1], float32: [Float](repeating: 1, count: n)),
                                blockSize: k, bias: nil).float32Values()[n] == Float(-127 * 127 * k) * (1 / 127 as Float),
                "row 1 (all -127) against weight row 0 (all 127) sums -127·127·K")
        for blockSize in [k, 32, 20] {
            let blocks = (k + blockSize - 1) / blockSize
            let scales = Tensor(shape: [n, blocks], float32: (0..<n * blocks).map { _ in rng.float(in: 0.001...0.01) })
            let bias = Tensor(shape: [n], float32: (0..<n).map { _ in rng.float(in: -1...1) })
            let reference = Int8Linear.reference(x, values: values, scales: scales, blockSize: blockSize, bias: bias)
            Self.expectIdentical(Self.cReference(x, values: values, scales: scales, blockSize: blockSize, bias: bias),
                                 reference, "C reference, ±127, K \(k) block \(blockSize)")
            for kernel in Int8Kernel.available {
                let weight = try Int8Weight(values: values, scales: scales, blockSize: blockSize, kernel: kernel)
                Self.expectIdentical(Int8Linear.forward(x, weight: weight, bias: bias, threads: 1), reference,
                                     "\(kernel.rawValue), ±127, K \(k) block \(blockSize)")
            }
        }
    }

    @Test func quantizeRowsVectorPathEqualsReference() {
        var rng = SplitMix64(seed: 11)
        for (m, k) in [(1, 1), (3, 7), (5, 8), (4, 31), (6, 32), (3, 33), (2, 100), (9, 257), (2, 1024)] {
            var values = (0..<m * k).map { _ in rng.float(in: -1...1) * Float(1 << Int(rng.next() % 20)) }
            if m > 1 { for i in k..<2 * k { values[i] = 0 } }
            if m > 2 { values[2 * k + k / 2] = -.infinity }
            let x = Tensor(shape: [m, k], float32: values)
            let fast = Int8Linear.quantizeRows(x), reference = Int8Linear.quantizeRowsReference(x)
            #expect(Self.bytes(fast.values) == Self.bytes(reference.values), "quantised values, [\(m), \(k)]")
            #expect(Self.bytes(fast.scales) == Self.bytes(reference.scales), "scales, [\(m), \(k)]")
            // The C reference too, with a padded row stride (the padding must be zeroed).
            var q = [Int8](repeating: 99, count: m * (k + 3)), s = [Float](repeating: 0, count: m)
            values.withUnsafeBufferPointer { prima_quantize_rows_reference($0.baseAddress!, Int64(m), Int64(k), Int64(k), &q, Int64(k + 3), &s) }
            let unpadded = (0..<m).flatMap { q[$0 * (k + 3)..<$0 * (k + 3) + k] }
            #expect(unpadded.map { UInt8(bitPattern: $0) } == Self.bytes(reference.values), "C reference values, [\(m), \(k)]")
            #expect((0..<m).allSatisfy { r in q[r * (k + 3) + k..<(r + 1) * (k + 3)].allSatisfy { $0 == 0 } })
            #expect(s.map(\.bitPattern) == reference.scales.float32Values().map(\.bitPattern))
        }
    }

    @Test func quantizeRowsRoundsHalfToEven() {
        // max |x| = 127 so the scale is exactly 1 and q = rint(x): 62.5 → 62, -2.5 → -2, 1.5 → 2, 126.5 → 126.
        let x = Tensor(shape: [1, 7], float32: [127, 62.5, -0.5, 1.5, -2.5, 126.5, -127])
        for (values, scales) in [Int8Linear.quantizeRows(x), Int8Linear.quantizeRowsReference(x)] {
            #expect(values.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) } == [127, 62, 0, 2, -2, 126, -127])
            #expect(scales.float32Values() == [1])
        }
    }

    @Test func handComputedCase() throws {
        // x = [1, -2, 0.5], w = [[127, 0, -127]] with scale 1/127 (so ŵ = [1, 0, -1] and the fp32 answer is 0.5).
        // s_a = 2/127 = 0.015748031 (f32); x / s_a = [63.5, -127, 31.75] → q_a = [64, -127, 32] (63.5 rounds
        // half to even, up to 64); isum = 64·127 − 32·127 = 4064; acc = 0 + 4064 · f32(1/127) = 32 exactly;
        // y = 32 · f32(2/127) = 0.503937 = 0x1.020408p-1.
        let x = Tensor(shape: [1, 3], float32: [1, -2, 0.5])
        let values = Self.int8Tensor([1, 3], [127, 0, -127])
        let scales = Tensor(shape: [1, 1], float32: [1 / Float(127)])
        let expected = Float(bitPattern: 0x3F01_0204)
        #expect(expected == 0x1.020408p-1)
        #expect(Int8Linear.reference(x, values: values, scales: scales, blockSize: 3).float32Values() == [expected])
        for kernel in Int8Kernel.available {
            let weight = try Int8Weight(values: values, scales: scales, blockSize: 3, kernel: kernel)
            #expect(Int8Linear.forward(x, weight: weight).float32Values() == [expected], "\(kernel.rawValue)")
            // With a bias the sum is rounded once more: 0.503937 + 0.25.
            let biased = Int8Linear.forward(x, weight: weight, bias: Tensor(shape: [1], float32: [0.25])).float32Values()
            #expect(biased == [expected + 0.25], "\(kernel.rawValue) with bias")
        }
    }

    /// Split by rows (37 rows: 4 tiles of 12; a small weight), by columns (11 rows: one tile), and by columns for
    /// a weight above `rowSplitWeightBytes` (1040 × 1024).
    @Test(arguments: [(37, 96, 200), (11, 96, 200), (25, 1024, 1040)])
    func threadCountDoesNotChangeTheBits(_ shape: (Int, Int, Int)) throws {
        var rng = SplitMix64(seed: 3)
        let (m, k, n) = shape
        let x = Self.activations(m: m, k: k, rng: &rng)
        let (values, scales) = Self.weights(n: n, k: k, blockSize: 32, rng: &rng)
        let weight = try Int8Weight(values: values, scales: scales, blockSize: 32, kernel: Int8Kernel.best)
        let one = Int8Linear.forward(x, weight: weight, threads: 1)
        for threads in [2, 3, 7, 64] {
            Self.expectIdentical(Int8Linear.forward(x, weight: weight, threads: threads), one, "\(shape) \(threads) threads")
        }
        Self.expectIdentical(one, Int8Linear.reference(x, values: values, scales: scales, blockSize: 32), "\(shape) reference")
    }

    /// The activation fused into the product's threads gives the bits of a separate pass, for both splits and for
    /// the float Linear.
    @Test(arguments: [Elementwise.Activation.gelu, .silu, .geluTanh])
    func fusedActivationEqualsSeparatePass(_ activation: Elementwise.Activation) throws {
        for (m, k, n) in [(37, 96, 200), (11, 96, 200), (25, 1024, 1040)] {
            var rng = SplitMix64(seed: 9)
            let x = Self.activations(m: m, k: k, rng: &rng)
            let (values, scales) = Self.weights(n: n, k: k, blockSize: k, rng: &rng)
            let bias = Tensor(shape: [n], float32: (0..<n).map { _ in rng.float(in: -2...2) })
            let weight = try Int8Weight(values: values, scales: scales, blockSize: k, kernel: Int8Kernel.best)
            let separate = Elementwise.apply(activation, Int8Linear.forward(x, weight: weight, bias: bias, threads: 2))
            for threads in [1, 2] {
                let fused = Int8Linear.forward(x, weight: weight, bias: bias, threads: threads, activation: activation)
                Self.expectIdentical(fused, separate, "\(activation) [\(m), \(k)] × [\(n), \(k)]ᵀ, \(threads) threads")
            }
            let floatWeight = Tensor(shape: [n, k], float32: (0..<n * k).map { _ in rng.float(in: -1...1) })
            Self.expectIdentical(Linear.forward(x, weight: floatWeight, bias: bias, activation: activation),
                                 Elementwise.apply(activation, Linear.forward(x, weight: floatWeight, bias: bias)),
                                 "\(activation) float [\(m), \(k)] × [\(n), \(k)]ᵀ")
        }
    }

    @Test(arguments: [256, 32])
    func closeToFloatLinear(blockSize: Int) throws {
        var rng = SplitMix64(seed: 5)
        let (m, k, n) = (24, 256, 48)
        let x = Tensor(shape: [m, k], float32: (0..<m * k).map { _ in rng.normal() })
        let w = Tensor(shape: [n, k], float32: (0..<n * k).map { _ in rng.normal() * 0.05 })
        let bias = Tensor(shape: [n], float32: (0..<n).map { _ in rng.normal() * 0.1 })
        // Quantise W with the §7 rule, which is the activation rule applied to each block as a row.
        let (blockValues, blockScales) = Int8Linear.quantizeRowsReference(w.reshaped([n * k / blockSize, blockSize]))
        let values = blockValues.reshaped([n, k]), scales = blockScales.reshaped([n, k / blockSize])
        let weight = try Int8Weight(values: values, scales: scales, blockSize: blockSize)
        let exact = Linear.forward(x, weight: w, bias: bias).float32Values()
        let approximate = Int8Linear.forward(x, weight: weight, bias: bias).float32Values()
        let error = zip(exact, approximate).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        let norm = exact.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        #expect(error / norm < Self.relativeFrobeniusBound, "relative Frobenius error \(error / norm), block \(blockSize)")
    }

    @Test func kernelSelection() throws {
        #expect(Int8Kernel.available.contains(.scalar))
        #expect(Int8Kernel.available.contains(Int8Kernel.best))
        #expect(try Int8Kernel.named(nil) == Int8Kernel.best)
        #expect(try Int8Kernel.named("") == Int8Kernel.best)
        for kernel in Int8Kernel.allCases {
            if kernel.isAvailable {
                #expect(try Int8Kernel.named(kernel.rawValue) == kernel)
            } else {
                #expect(throws: Int8Error.unsupportedKernel(kernel)) { try Int8Kernel.named(kernel.rawValue) }
            }
        }
        #expect(throws: Int8Error.unknownKernel("avx1024")) { try Int8Kernel.named("avx1024") }
        #expect(throws: Int8Error.unknownKernel("AVX2")) { try Int8Kernel.named("AVX2") }
        #expect(prima_int8_kernel_named("avx1024") == Int32(PRIMA_INT8_ERROR_UNKNOWN_KERNEL))
        #expect(prima_int8_kernel_name(99) == nil)
    }

    @Test func refusesBadWeights() throws {
        let scales = Tensor(shape: [2, 1], float32: [1, 1])
        #expect(throws: Int8Error.valueOutOfRange(row: 1, column: 2)) {
            try Int8Weight(values: Self.int8Tensor([2, 3], [1, 2, 3, 4, 5, -128]), scales: scales, blockSize: 3)
        }
        #expect(throws: Int8Error.self) {
            try Int8Weight(values: Self.int8Tensor([2, 40], [Int8](repeating: 1, count: 80)), scales: scales, blockSize: 32)
        }
        #expect(throws: Int8Error.self) {
            try Int8Weight(values: Self.int8Tensor([2, 40], [Int8](repeating: 1, count: 80)),
                           scales: Tensor(shape: [2, 2], float32: [1, 1, 1, 1]), blockSize: 30)
        }
        #expect(throws: Int8Error.self) { try Int8Weight(values: Tensor(shape: [2, 1], float32: [1, 1]), scales: scales, blockSize: 1) }
        // Per-channel scales may be [N] (the file's shape) or [N, 1].
        let weight = try Int8Weight(values: Self.int8Tensor([2, 3], [1, 2, 3, 4, 5, 6]),
                                    scales: Tensor(shape: [2], float32: [1, 2]), blockSize: 3)
        #expect(weight.shape == [2, 3] && weight.blockCount == 1 && weight.packedByteCount > 0)
    }

    // MARK: - Helpers

    /// The C reference (prima_int8_linear_reference) on the unpacked layout.
    static func cReference(_ x: Tensor, values: Tensor, scales: Tensor, blockSize: Int, bias: Tensor?) -> Tensor {
        let (m, k, n) = (x.shape[0], x.shape[1], values.shape[0])
        let y = Tensor(zeros: [m, n], dtype: .f32)
        let b = bias?.float32Values()
        let status = x.withFloat32 { xs in
            values.withUnsafeBytes { q in
                scales.withFloat32 { s in
                    y.withMutableFloat32 { out in
                        b.withOptionalPointer { bp in
                            prima_int8_linear_reference(xs.baseAddress!, Int64(m), Int64(k), q.baseAddress!.assumingMemoryBound(to: Int8.self),
                                                        s.baseAddress!, Int64(n), Int64(blockSize), bp, out.baseAddress!)
                        }
                    }
                }
            }
        }
        #expect(status == Int32(PRIMA_INT8_OK))
        return y
    }

    /// Expects bit-identical floats; on failure names the first differing element and the largest difference.
    static func expectIdentical(_ actual: Tensor, _ expected: Tensor, _ what: String,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let a = actual.float32Values(), e = expected.float32Values()
        guard a.map(\.bitPattern) != e.map(\.bitPattern) else { return }
        let first = zip(a, e).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }!
        let maxDifference = zip(a, e).map { abs($0 - $1) }.filter { !$0.isNaN }.max() ?? 0
        let (got, want) = first.element
        let message = "\(what): first difference at \(first.offset): \(got) vs \(want) (bits "
            + "\(String(got.bitPattern, radix: 16)) vs \(String(want.bitPattern, radix: 16))), max difference \(maxDifference)"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }

    /// Activations [m, k] spanning several magnitudes, with row 1 all zero.
    static func activations(m: Int, k: Int, rng: inout SplitMix64) -> Tensor {
        var values = (0..<m * k).map { _ in rng.float(in: -1...1) }
        for row in 0..<m {
            let magnitude = Float(sign: .plus, exponent: Int(rng.next() % 40) - 20, significand: 1)
            for i in 0..<k { values[row * k + i] *= row == 1 ? 0 : magnitude }
        }
        return Tensor(shape: [m, k], float32: values)
    }

    /// Random int8 values in [-127, 127] (the ends included) and positive scales (one of them 0) for [n, k].
    static func weights(n: Int, k: Int, blockSize: Int, rng: inout SplitMix64) -> (Tensor, Tensor) {
        let blocks = (k + blockSize - 1) / blockSize
        var q = (0..<n * k).map { _ in Int8(Int(rng.next() % 255) - 127) }
        q[0] = 127
        q[q.count - 1] = -127
        var s = (0..<n * blocks).map { _ in rng.float(in: 0.0001...0.05) }
        if s.count > 2 { s[1] = 0 }
        return (int8Tensor([n, k], q), Tensor(shape: [n, blocks], float32: s))
    }

    static func int8Tensor(_ shape: [Int], _ values: [Int8]) -> Tensor {
        let t = Tensor(zeros: shape, dtype: .i8)
        values.withUnsafeBytes { t.storage.bytes.copyMemory(from: $0) }
        return t
    }

    static func bytes(_ t: Tensor) -> [UInt8] { t.withUnsafeBytes { Array($0) } }
}


extension Optional where Wrapped == [Float] {
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: body(nil)
        case .some(let array): array.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
    }
}

extension SplitMix64 {
    mutating func float(in range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * Float(next() >> 40) / Float(1 << 24)
    }

    /// Approximately normal (sum of 4 uniforms, rescaled to unit variance).
    mutating func normal() -> Float {
        (0..<4).reduce(Float(0)) { sum, _ in sum + float(in: -1...1) } * (3 as Float).squareRoot() / 2
    }
}
