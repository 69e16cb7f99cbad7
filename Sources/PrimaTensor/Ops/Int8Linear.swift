import Foundation
import PrimaKernels

// int8 linear layers over the C kernels of PrimaKernels (int8_gemm.c). Shapes: x [M, K] activations, weight
// values [N, K] int8 with scales [N, nb], y [M, N]; M rows, K inputs, N outputs (the brief's GEMM names; note
// that `Linear` names its dimensions the other way round). The numeric contract, which every kernel meets bit
// for bit, is written out in PrimaKernels.h and followed line by line by ``Int8Linear/reference``.

/// Why an int8 weight or kernel was refused.
public enum Int8Error: Error, Equatable, CustomStringConvertible {
    /// `PRIMA_INT8_KERNEL` holds a name that is no kernel.
    case unknownKernel(String)
    /// The kernel needs instructions this CPU (or build) lacks.
    case unsupportedKernel(Int8Kernel)
    /// A weight value is -128, outside the format's [-127, 127] (prima-checkpoint.md §7).
    case valueOutOfRange(row: Int, column: Int)
    /// The values, scales or block size do not fit together.
    case shape(String)
    /// The packed copy could not be allocated.
    case outOfMemory(bytes: Int)

    public var description: String {
        switch self {
        case .unknownKernel(let name):
            "PRIMA_INT8_KERNEL=\(name) names no int8 kernel (use one of \(Int8Kernel.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .unsupportedKernel(let kernel):
            "int8 kernel \(kernel.rawValue) needs instructions this CPU lacks (available: \(Int8Kernel.available.map(\.rawValue).joined(separator: ", ")))"
        case .valueOutOfRange(let row, let column):
            "int8 weight value -128 at [\(row), \(column)]: the format allows [-127, 127] only"
        case .shape(let message):
            "int8 weight: \(message)"
        case .outOfMemory(let bytes):
            "int8 weight: cannot allocate about \(bytes) bytes for the packed copy"
        }
    }
}

/// The int8 GEMM kernels. All return the same bits (the contract in PrimaKernels.h); they differ in speed.
/// Raw values are the spellings `PRIMA_INT8_KERNEL` accepts.
public enum Int8Kernel: String, Sendable, CaseIterable {
    /// Plain C loops; runs everywhere.
    case scalar
    /// AVX2: vpmaddubsw on |a| and w with its bits flipped where a < 0, then vpmaddwd, plus a per-row correction
    /// (exact: no int16 pair can saturate; int8_gemm.c explains it).
    case avx2
    /// AVX-VNNI: vpdpbusd on ymm.
    case avxVNNI = "avxvnni"
    /// AVX512-VNNI: vpdpbusd on zmm.
    case avx512VNNI = "avx512vnni"

    var code: Int32 {
        switch self {
        case .scalar: Int32(PRIMA_INT8_KERNEL_SCALAR)
        case .avx2: Int32(PRIMA_INT8_KERNEL_AVX2)
        case .avxVNNI: Int32(PRIMA_INT8_KERNEL_AVXVNNI)
        case .avx512VNNI: Int32(PRIMA_INT8_KERNEL_AVX512VNNI)
        }
    }

    init?(code: Int32) {
        guard let kernel = Int8Kernel.allCases.first(where: { $0.code == code }) else { return nil }
        self = kernel
    }

    /// The kernels this CPU can run, slowest first (``scalar`` always).
    public static var available: [Int8Kernel] {
        let bits = prima_int8_kernels_available()
        return allCases.filter { bits & (1 << UInt32($0.code)) != 0 }
    }

    /// Whether this CPU can run the kernel.
    public var isAvailable: Bool { Int8Kernel.available.contains(self) }

    /// The fastest available kernel.
    public static var best: Int8Kernel { Int8Kernel(code: prima_int8_kernel_best()) ?? .scalar }

    /// The kernel `PRIMA_INT8_KERNEL` forces, or ``best`` when it is unset or empty. Throws for a name that is
    /// no kernel and for a kernel this CPU cannot run.
    public static var selected: Int8Kernel {
        get throws(Int8Error) { try named(ProcessInfo.processInfo.environment["PRIMA_INT8_KERNEL"]) }
    }

    /// As ``selected`` for the environment value `name` (nil for unset).
    public static func named(_ name: String?) throws(Int8Error) -> Int8Kernel {
        let code = name.map { prima_int8_kernel_named($0) } ?? prima_int8_kernel_best()
        if let kernel = Int8Kernel(code: code) { return kernel }
        if code == Int32(PRIMA_INT8_ERROR_UNSUPPORTED), let name, let kernel = Int8Kernel(rawValue: name) {
            throw .unsupportedKernel(kernel)
        }
        throw .unknownKernel(name ?? "")
    }
}

/// int8 weights W[N, K] packed once for the kernels (16-column panels; the layout is documented with
/// `prima_int8_weight` in PrimaKernels.h). Immutable after init, so one instance may serve several threads.
public final class Int8Weight: @unchecked Sendable {
    /// Outputs N (rows of W).
    public let outputs: Int
    /// Inputs K (columns of W).
    public let inputs: Int
    /// Inputs per scale: K for "int8-per-channel", 32 for "int8-block32".
    public let blockSize: Int
    /// Scales per row: 1, or ceil(K / blockSize).
    public let blockCount: Int
    /// The kernel ``Int8Linear/forward(_:weight:bias:kernel:threads:)`` uses unless told otherwise.
    public let kernel: Int8Kernel
    /// Bytes of the packed copy.
    public var packedByteCount: Int { prima_int8_weight_bytes(packed) }
    /// [N, K], as the int8 dataset's shape.
    public var shape: [Int] { [outputs, inputs] }

    let packed: OpaquePointer

    /// Packs `values` (i8 [N, K], in [-127, 127]) and `scales` (f32 [N, nb], or [N] per-channel) with
    /// `blockSize` inputs per scale (K or more: one scale per row; otherwise a multiple of 4, the format's 32).
    /// `kernel` defaults to ``Int8Kernel/selected``. The tensors are not retained.
    public init(values: Tensor, scales: Tensor, blockSize: Int, kernel: Int8Kernel? = nil) throws(Int8Error) {
        guard values.dtype == .i8, values.shape.count == 2 else {
            throw .shape("values must be i8 [N, K], got \(values.dtype) \(ShapeMath.describe(values.shape))")
        }
        let (n, k) = (values.shape[0], values.shape[1])
        guard n >= 1, k >= 1, k <= Int(PRIMA_INT8_MAX_K) else {
            throw .shape("values \(ShapeMath.describe(values.shape)) need N ≥ 1 and 1 ≤ K ≤ \(PRIMA_INT8_MAX_K)")
        }
        guard blockSize >= 1, blockSize >= k || blockSize % 4 == 0 else {
            throw .shape("block size \(blockSize) must be K (\(k)) or more, or a multiple of 4")
        }
        let blocks = blockSize >= k ? 1 : (k + blockSize - 1) / blockSize
        guard scales.dtype == .f32, scales.shape == [n, blocks] || (blocks == 1 && scales.shape == [n]) else {
            throw .shape("scales must be f32 [\(n), \(blocks)] for block size \(blockSize), got \(scales.dtype) \(ShapeMath.describe(scales.shape))")
        }
        let chosen: Int8Kernel
        if let kernel { chosen = kernel } else { chosen = try Int8Kernel.selected }
        guard chosen.isAvailable else { throw .unsupportedKernel(chosen) }
        var result: OpaquePointer?
        var badIndex: Int64 = 0
        let status = values.withUnsafeBytes { raw in
            scales.withFloat32 { s in
                prima_int8_pack(raw.baseAddress!.assumingMemoryBound(to: Int8.self), s.baseAddress!, Int64(n), Int64(k),
                                Int64(blockSize), &result, &badIndex)
            }
        }
        switch status {
        case Int32(PRIMA_INT8_OK): break
        case Int32(PRIMA_INT8_ERROR_VALUE): throw .valueOutOfRange(row: Int(badIndex) / k, column: Int(badIndex) % k)
        case Int32(PRIMA_INT8_ERROR_MEMORY): throw .outOfMemory(bytes: n * k + 2 * n * blocks * 4)
        default: throw .shape("prima_int8_pack refused [\(n), \(k)] block \(blockSize) (code \(status))")
        }
        packed = result!
        outputs = n
        inputs = k
        self.blockSize = min(blockSize, k)
        blockCount = blocks
        self.kernel = chosen
    }

    deinit { prima_int8_weight_free(packed) }
}

/// Linear layers with int8 weights, `y = x · Wᵀ + b`, activations quantised per row on the fly.
public enum Int8Linear {
    /// x [M, K] f32 · weightᵀ + bias [N] → f32 [M, N], with `kernel` (default: the weight's) on up to `threads`
    /// threads (default: the active processor count; small products use one), in up to 4 pieces per thread. With a
    /// weight of at most ``rowSplitWeightBytes`` the pieces are tiles of 12 rows, each quantised by the thread that
    /// takes it; a larger weight is split in 32-column slices, so that each thread streams only its share of it,
    /// after one quantisation of x. Each output depends only on its own row and column, so the bits depend on
    /// neither the split nor the thread count.
    ///
    /// `activation`, if given, is applied to y by the thread that computed each piece (as
    /// ``Elementwise/apply(_:_:isa:)``, the same bits), saving a pass over y on one thread.
    public static func forward(_ x: Tensor, weight: Int8Weight, bias: Tensor? = nil, kernel: Int8Kernel? = nil,
                               threads: Int? = nil, activation: Elementwise.Activation? = nil) -> Tensor {
        let (m, k, n) = dimensions(x, weight, bias)
        let kernel = kernel ?? weight.kernel
        precondition(kernel.isAvailable, "int8 kernel \(kernel.rawValue) is not available on this CPU")
        let y = Tensor(uninitialized: [m, n], dtype: .f32)
        guard m > 0 else { return y }
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: m * k)
        let s = UnsafeMutablePointer<Float>.allocate(capacity: m)
        defer { q.deallocate(); s.deallocate() }

        let tiles = (m + 11) / 12, slices = (n + 31) / 32
        let wanted = threads ?? (m * n * k >= 1 << 22 ? ProcessInfo.processInfo.activeProcessorCount : 1)
        let byRows = wanted > 1 && tiles > 1 && weight.packedByteCount <= rowSplitWeightBytes
        // Up to 4 pieces per thread, taken in turn: a thread that wakes late takes fewer instead of leaving its
        // whole half to the caller's thread.
        let chunks = wanted > 1 ? max(1, min(4 * wanted, byRows ? tiles : slices)) : 1
        let status = UnsafeMutableBufferPointer<Int32>.allocate(capacity: chunks)
        defer { status.deallocate() }
        x.withFloat32 { input in y.withMutableFloat32 { out in
            withOptionalFloat32(bias) { biasBase in
                // Every pointer outlives the call; the threads write disjoint rows or columns of y, q, s and `status`.
                let call = GEMMCall(kernel: kernel.code, x: input.baseAddress!, q: q, s: s, m: m, k: k, n: n,
                                    weight: weight.packed, bias: biasBase, activation: activation?.kernelCode,
                                    y: out.baseAddress!, status: status.baseAddress!)
                if !byRows { call.quantize(rows: 0..<m) }
                let run = { @Sendable (chunk: Int) in
                    if byRows {
                        let rows = min(m, tiles * chunk / chunks * 12)..<min(m, tiles * (chunk + 1) / chunks * 12)
                        call.quantize(rows: rows)
                        call.run(rows: rows, begin: 0, end: n, statusIndex: chunk)
                    } else {
                        call.run(rows: 0..<m, begin: min(n, slices * chunk / chunks * 32),
                                 end: min(n, slices * (chunk + 1) / chunks * 32), statusIndex: chunk)
                    }
                }
                parallelFor(chunks, run)
            }
        } }
        for code in status where code != Int32(PRIMA_INT8_OK) {
            preconditionFailure("prima_int8_gemm (\(kernel.rawValue), [\(m), \(k)] × [\(n), \(k)]ᵀ) failed with code \(code)")
        }
        if let activation, activation.kernelCode == nil { return Elementwise.apply(activation, y) }
        return y
    }

    /// The largest packed weight that ``forward(_:weight:bias:kernel:threads:)`` splits by rows: every thread then
    /// reads all of it, which costs little while it stays in a core's L2 cache (1-2 MiB on current x86 cores).
    public static let rowSplitWeightBytes = 1 << 20

    /// The plain-loop reference of the contract (PrimaKernels.h), in Swift, on the unpacked weight: `values` i8
    /// [N, K], `scales` f32 [N, nb] (or [N]), `blockSize` as for ``Int8Weight``. Every kernel equals it bit for
    /// bit; it is independent of the C code, so agreeing with it checks the C reference too.
    public static func reference(_ x: Tensor, values: Tensor, scales: Tensor, blockSize: Int, bias: Tensor? = nil) -> Tensor {
        precondition(values.dtype == .i8 && values.shape.count == 2 && x.shape.count == 2 && x.shape[1] == values.shape[1],
                     "int8 linear: x \(ShapeMath.describe(x.shape)) does not match values \(ShapeMath.describe(values.shape))")
        let (m, k, n) = (x.shape[0], x.shape[1], values.shape[0])
        let block = min(blockSize, k), blocks = (k + block - 1) / block
        precondition(scales.elementCount == n * blocks, "int8 linear: scales \(ShapeMath.describe(scales.shape)) for [\(n), \(blocks)]")
        precondition(bias.map { $0.shape == [n] } ?? true, "int8 linear: bias does not match the weight")
        let (qa, sa) = quantizeRowsReference(x)
        let qw = values.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) }
        let sw = scales.float32Values(), b = bias?.float32Values()
        let qaValues = qa.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) }, saValues = sa.float32Values()
        var out = [Float](repeating: 0, count: m * n)
        for row in 0..<m {
            for column in 0..<n {
                var acc: Float = 0
                for blockIndex in 0..<blocks {
                    var isum: Int32 = 0
                    for i in blockIndex * block..<min(blockIndex * block + block, k) {
                        isum += Int32(qaValues[row * k + i]) * Int32(qw[column * k + i])
                    }
                    let term = Float(isum) * sw[column * blocks + blockIndex]
                    acc = acc + term
                }
                var y = acc * saValues[row]
                if let b { y = y + b[column] }
                out[row * n + column] = y
            }
        }
        return Tensor(shape: [m, n], float32: out)
    }

    // MARK: - Backward (input gradient only: int8 weights are frozen)

    /// Rows of the weight dequantised per sgemm in ``inputGradient(_:values:scales:blockSize:)``: 64 rows of a
    /// K = 4096 weight are 1 MiB of f32, which stays in L2 while sgemm reads it.
    static let dequantizedRowsPerBlock = 64

    /// dx = dy · W̃ for y = x · W̃ᵀ + b, where W̃[n, i] = values[n, i] · scales[n, i / blockSize] is the dequantised
    /// weight (f32 product). dy [M, N] (M rows of output gradient), values i8 [N, K], scales f32 [N, nb] (or [N]),
    /// `blockSize` as for ``Int8Weight`` → dx [M, K]. This is the gradient of the dequantised-weight linear layer
    /// (the forward's on-the-fly quantisation of x is treated as the identity, as QLoRA does); int8 weights are
    /// frozen, so there is no weight gradient. The weight is dequantised ``dequantizedRowsPerBlock`` rows at a
    /// time into a scratch block, each block one accumulating sgemm.
    public static func inputGradient(_ dy: Tensor, values: Tensor, scales: Tensor, blockSize: Int) -> Tensor {
        let (m, n, k, block, blocks) = inputGradientDimensions(dy, values, scales, blockSize)
        let dx = Tensor(zeros: [m, k], dtype: .f32)
        dy.withFloat32 { g in dx.withMutableFloat32 { out in
            forEachDequantizedBlock(values, scales, n: n, k: k, block: block, blocks: blocks) { first, count, w in
                // dx[M, K] += dy[M, first..<first+count] · W̃[first..<first+count, K]
                BLAS.sgemm(m: m, n: k, k: count, a: g.baseAddress! + first, lda: n, b: w, ldb: k, beta: 1,
                           c: out.baseAddress!, ldc: k)
            }
        } }
        return dx
    }

    /// Dequantises the weight ``dequantizedRowsPerBlock`` rows at a time into one scratch block and calls
    /// `body(first, count, W̃[first..<first+count, K])` for each block, in row order.
    private static func forEachDequantizedBlock(_ values: Tensor, _ scales: Tensor, n: Int, k: Int, block: Int, blocks: Int,
                                                _ body: (Int, Int, UnsafePointer<Float>) -> Void) {
        var scratch = [Float](repeating: 0, count: min(dequantizedRowsPerBlock, max(n, 1)) * k)
        values.withUnsafeBytes { raw in
            let q = raw.bindMemory(to: Int8.self)
            scales.withFloat32 { s in scratch.withUnsafeMutableBufferPointer { w in
                var first = 0
                while first < n {
                    let count = min(dequantizedRowsPerBlock, n - first)
                    dequantizeRows(q.baseAddress!, s.baseAddress!, first: first, count: count, k: k, block: block,
                                   blocks: blocks, into: w.baseAddress!)
                    body(first, count, w.baseAddress!)
                    first += count
                }
            } }
        }
    }

    /// y = x · W̃ᵀ + b in f32, with W̃ the dequantised weight (W̃[n, i] = values[n, i] · scales[n, i / blockSize]):
    /// the weight-only-quantised forward that training uses on an int8 base (QLoRA's: activations stay f32, so the
    /// forward is exactly the dequantised model's and ``inputGradient(_:values:scales:blockSize:)`` is its exact
    /// input gradient). x [M, K], values i8 [N, K], scales [N, nb] (or [N]), bias [N] → [M, N]. The weight is
    /// dequantised ``dequantizedRowsPerBlock`` rows at a time, each block one sgemm into its output columns.
    public static func dequantizedForward(_ x: Tensor, values: Tensor, scales: Tensor, blockSize: Int, bias: Tensor? = nil) -> Tensor {
        precondition(x.shape.count == 2, "int8 weight-only forward: x must be [M, K], got \(ShapeMath.describe(x.shape))")
        let (n, k, block, blocks) = weightDimensions(values, scales, blockSize)
        let m = x.shape[0]
        precondition(x.shape[1] == k && (bias.map { $0.elementCount == n } ?? true),
                     "int8 weight-only forward: x \(ShapeMath.describe(x.shape)) or bias does not match values \(ShapeMath.describe(values.shape))")
        let y = Tensor(zeros: [m, n], dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            if let bias { bias.withFloat32 { b in for row in 0..<m { (out.baseAddress! + row * n).update(from: b.baseAddress!, count: n) } } }
            forEachDequantizedBlock(values, scales, n: n, k: k, block: block, blocks: blocks) { first, count, w in
                // y[M, first..<first+count] (+)= x[M, K] · W̃[first..<first+count, K]ᵀ
                BLAS.sgemm(transB: true, m: m, n: count, k: k, a: input.baseAddress!, lda: k, b: w, ldb: k,
                           beta: bias == nil ? 0 : 1, c: out.baseAddress! + first, ldc: n)
            }
        } }
        return y
    }

    /// The plain-loop reference for ``dequantizedForward(_:values:scales:blockSize:bias:)``: the sums in double.
    public static func dequantizedForwardReference(_ x: Tensor, values: Tensor, scales: Tensor, blockSize: Int,
                                                   bias: Tensor? = nil) -> Tensor {
        let (n, k, block, blocks) = weightDimensions(values, scales, blockSize)
        let q = values.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) }
        let s = scales.float32Values(), input = x.float32Values(), b = bias?.float32Values()
        let m = x.shape[0]
        var out = [Float](repeating: 0, count: m * n)
        for row in 0..<m {
            for o in 0..<n {
                var sum = Double(b?[o] ?? 0)
                for i in 0..<k { sum += Double(input[row * k + i]) * Double(Float(q[o * k + i]) * s[o * blocks + i / block]) }
                out[row * n + o] = Float(sum)
            }
        }
        return Tensor(shape: [m, n], float32: out)
    }

    /// (N, K, block, blocks) of an int8 weight and its scales.
    private static func weightDimensions(_ values: Tensor, _ scales: Tensor, _ blockSize: Int) -> (Int, Int, Int, Int) {
        precondition(values.dtype == .i8 && values.shape.count == 2 && blockSize >= 1, "int8 weight: values \(ShapeMath.describe(values.shape))")
        let (n, k) = (values.shape[0], values.shape[1])
        let block = min(blockSize, k), blocks = (k + block - 1) / block
        precondition(scales.dtype == .f32 && scales.elementCount == n * blocks, "int8 weight: scales \(ShapeMath.describe(scales.shape)) for [\(n), \(blocks)]")
        return (n, k, block, blocks)
    }

    /// Weight rows first..<first+count dequantised into `target` [count, K]: W̃[n, i] = values[n, i] · scales[n, i / block].
    private static func dequantizeRows(_ values: UnsafePointer<Int8>, _ scales: UnsafePointer<Float>, first: Int, count: Int,
                                       k: Int, block: Int, blocks: Int, into target: UnsafeMutablePointer<Float>) {
        for row in 0..<count {
            let source = values + (first + row) * k, destination = target + row * k, rowScales = scales + (first + row) * blocks
            for i in 0..<k { destination[i] = Float(source[i]) * rowScales[i / block] }
        }
    }

    /// The plain-loop reference for ``inputGradient(_:values:scales:blockSize:)``: Σ_n dy[m, n] · W̃[n, i] in double.
    public static func inputGradientReference(_ dy: Tensor, values: Tensor, scales: Tensor, blockSize: Int) -> Tensor {
        let (m, n, k, block, blocks) = inputGradientDimensions(dy, values, scales, blockSize)
        let q = values.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) }
        let s = scales.float32Values(), g = dy.float32Values()
        var out = [Float](repeating: 0, count: m * k)
        for row in 0..<m {
            for i in 0..<k {
                var sum = 0.0
                for o in 0..<n {
                    let w = Float(q[o * k + i]) * s[o * blocks + i / block]
                    sum += Double(g[row * n + o]) * Double(w)
                }
                out[row * k + i] = Float(sum)
            }
        }
        return Tensor(shape: [m, k], float32: out)
    }

    private static func inputGradientDimensions(_ dy: Tensor, _ values: Tensor, _ scales: Tensor,
                                                _ blockSize: Int) -> (Int, Int, Int, Int, Int) {
        precondition(values.dtype == .i8 && values.shape.count == 2 && dy.shape.count == 2 && dy.shape[1] == values.shape[0],
                     "int8 linear backward: dy \(ShapeMath.describe(dy.shape)) does not match values \(ShapeMath.describe(values.shape))")
        let (m, n, k) = (dy.shape[0], values.shape[0], values.shape[1])
        precondition(blockSize >= 1, "int8 linear backward: block size \(blockSize)")
        let block = min(blockSize, k), blocks = (k + block - 1) / block
        precondition(scales.dtype == .f32 && scales.elementCount == n * blocks,
                     "int8 linear backward: scales \(ShapeMath.describe(scales.shape)) for [\(n), \(blocks)]")
        return (m, n, k, block, blocks)
    }

    /// Step 1 of the contract, vectorised (`prima_quantize_rows`): x f32 [M, K] → (i8 [M, K], f32 scales [M]).
    public static func quantizeRows(_ x: Tensor) -> (values: Tensor, scales: Tensor) {
        precondition(x.shape.count == 2, "quantizeRows: x must be [M, K], got \(ShapeMath.describe(x.shape))")
        let (m, k) = (x.shape[0], x.shape[1])
        let q = Tensor(zeros: [m, k], dtype: .i8), s = Tensor(zeros: [m], dtype: .f32)
        x.withFloat32 { input in
            s.withMutableFloat32 { scales in
                prima_quantize_rows(input.baseAddress!, Int64(m), Int64(k), Int64(k),
                                    q.storage.bytes.baseAddress!.assumingMemoryBound(to: Int8.self), Int64(k), scales.baseAddress!)
            }
        }
        return (q, s)
    }

    /// Step 1 of the contract in plain Swift loops: per row, a = max |x| (f32); s = a / 127; a row holding an
    /// infinity or NaN gets s = NaN and q = 0; s == 0 gives q = 0; else q = clamp(rint(x / s), -127, 127).
    public static func quantizeRowsReference(_ x: Tensor) -> (values: Tensor, scales: Tensor) {
        precondition(x.shape.count == 2, "quantizeRows: x must be [M, K], got \(ShapeMath.describe(x.shape))")
        let (m, k) = (x.shape[0], x.shape[1])
        let input = x.float32Values()
        var q = [Int8](repeating: 0, count: m * k), s = [Float](repeating: 0, count: m)
        for row in 0..<m {
            var amax: Float = 0, finite = true
            for i in 0..<k {
                let v = input[row * k + i].magnitude
                if !(v <= .greatestFiniteMagnitude) { finite = false } else if v > amax { amax = v }
            }
            let scale: Float = finite ? amax / 127 : .nan
            s[row] = scale
            guard finite, scale != 0 else { continue }
            for i in 0..<k {
                let v = (input[row * k + i] / scale).rounded(.toNearestOrEven)
                q[row * k + i] = Int8(min(max(v, -127), 127))
            }
        }
        let values = Tensor(zeros: [m, k], dtype: .i8)
        q.withUnsafeBytes { values.storage.bytes.copyMemory(from: $0) }
        return (values, Tensor(shape: [m], float32: s))
    }

    /// One prima_int8_gemm call's arguments, shared by the threads that each compute a range of columns.
    private struct GEMMCall: @unchecked Sendable {
        let kernel: Int32
        let x: UnsafePointer<Float>
        let q: UnsafeMutablePointer<Int8>, s: UnsafeMutablePointer<Float>
        let m: Int, k: Int, n: Int
        let weight: OpaquePointer
        let bias: UnsafePointer<Float>?
        let activation: Int32?
        let y: UnsafeMutablePointer<Float>
        let status: UnsafeMutablePointer<Int32>

        /// Step 1 of the contract for `rows` of x, into the same rows of q and s.
        func quantize(rows: Range<Int>) {
            prima_quantize_rows(x + rows.lowerBound * k, Int64(rows.count), Int64(k), Int64(k), q + rows.lowerBound * k,
                                Int64(k), s + rows.lowerBound)
        }

        /// y[rows, begin..<end] from the quantised rows, then the activation on them.
        func run(rows: Range<Int>, begin: Int, end: Int, statusIndex: Int) {
            status[statusIndex] = prima_int8_gemm(kernel, q + rows.lowerBound * k, Int64(k), s + rows.lowerBound,
                                                  Int64(rows.count), weight, bias, y + rows.lowerBound * n, Int64(n),
                                                  Int64(begin), Int64(end))
            guard let activation else { return }
            if begin == 0 && end == n {
                let first = y + rows.lowerBound * n
                _ = prima_activation(FloatISA.best.code, activation, first, first, Int64(rows.count * n))
            } else {
                for row in rows {
                    let first = y + row * n + begin
                    _ = prima_activation(FloatISA.best.code, activation, first, first, Int64(end - begin))
                }
            }
        }
    }

    private static func dimensions(_ x: Tensor, _ weight: Int8Weight, _ bias: Tensor?) -> (Int, Int, Int) {
        precondition(x.shape.count == 2 && x.shape[1] == weight.inputs,
                     "int8 linear: x \(ShapeMath.describe(x.shape)) does not match weight \(ShapeMath.describe(weight.shape))")
        precondition(bias.map { $0.shape == [weight.outputs] && $0.dtype == .f32 } ?? true,
                     "int8 linear: bias must be f32 [\(weight.outputs)]")
        return (x.shape[0], x.shape[1], weight.outputs)
    }
}
