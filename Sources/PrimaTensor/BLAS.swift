import Foundation
import PrimaKernels

/// OpenBLAS, loaded at first use with the fastest kernels this CPU supports.
///
/// Debian's OpenBLAS 0.3.21 misdetects some current CPUs (AMD EPYC with AVX-512, for one) as "Prescott" and then
/// runs generic kernels about 5x slower. OpenBLAS picks its kernels once, when the library is loaded, from
/// `OPENBLAS_CORETYPE` if set, else from its own detection. So the toolkit does not link OpenBLAS: it opens it
/// here, after setting `OPENBLAS_CORETYPE` from the CPU's features — unless the variable is already set, by the
/// user or the machine (some machines set it on purpose, because older OpenBLAS builds miscompute on them).
public enum BLAS {
    /// What was loaded and how the kernels were chosen.
    public struct Info: Sendable {
        /// `openblas_get_corename()`: the kernel family in use.
        public let coreName: String
        /// `openblas_get_config()`: build options and version.
        public let config: String
        /// The `OPENBLAS_CORETYPE` this process set, or nil if it set none.
        public let chosenCoreType: String?
        /// The `OPENBLAS_CORETYPE` found already set (and respected), or nil.
        public let presetCoreType: String?
        /// Threads OpenBLAS uses.
        public let threads: Int
    }

    private typealias Sgemm = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?,
                                             Int32, UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private typealias NameFunction = @convention(c) () -> UnsafeMutablePointer<CChar>?
    private typealias GetThreads = @convention(c) () -> Int32

    private typealias SetThreads = @convention(c) (Int32) -> Void

    private struct Library: @unchecked Sendable {
        let sgemm: Sgemm
        let info: Info
        let getThreads: GetThreads
        let setThreads: SetThreads
    }

    /// The OpenBLAS core type for this CPU's features, or nil to let OpenBLAS detect it.
    public static func coreType(forFeatures features: UInt32) -> String? {
        let avx512: UInt32 = UInt32(PRIMA_CPU_AVX512F | PRIMA_CPU_AVX512BW | PRIMA_CPU_AVX512VL | PRIMA_CPU_AVX512DQ | PRIMA_CPU_AVX512CD)
        if features & avx512 == avx512 { return "SkylakeX" }
        let avx2: UInt32 = UInt32(PRIMA_CPU_AVX2 | PRIMA_CPU_FMA)
        if features & avx2 == avx2 { return "Haswell" }
        return nil
    }

    private static let library: Library = {
        let preset = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].flatMap { $0.isEmpty ? nil : $0 }
        var chosen: String?
        if preset == nil, let type = coreType(forFeatures: prima_cpu_features()) {
            setenv("OPENBLAS_CORETYPE", type, 0)
            chosen = type
        }
        var handle: UnsafeMutableRawPointer?
        for name in ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"] {
            handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL)
            if handle != nil { break }
        }
        guard let handle else {
            preconditionFailure("cannot load OpenBLAS (libopenblas.so.0): install libopenblas0 (Debian: libopenblas-dev)")
        }
        func symbol<T>(_ name: String, as type: T.Type) -> T {
            guard let pointer = dlsym(handle, name) else { preconditionFailure("OpenBLAS lacks \(name)") }
            return unsafeBitCast(pointer, to: type)
        }
        let coreName = symbol("openblas_get_corename", as: NameFunction.self)().map { String(cString: $0) } ?? "unknown"
        let config = symbol("openblas_get_config", as: NameFunction.self)().map { String(cString: $0) } ?? "unknown"
        let threads = Int(symbol("openblas_get_num_threads", as: GetThreads.self)())
        return Library(sgemm: symbol("cblas_sgemm", as: Sgemm.self),
                       info: Info(coreName: coreName, config: config, chosenCoreType: chosen, presetCoreType: preset,
                                  threads: threads),
                       getThreads: symbol("openblas_get_num_threads", as: GetThreads.self),
                       setThreads: symbol("openblas_set_num_threads", as: SetThreads.self))
    }()

    /// Runs `body` with OpenBLAS limited to one thread, then restores its thread count: for ops made of many small
    /// independent products (attention per head) that split them over the PrimaKernels pool themselves, where
    /// OpenBLAS's own threads would only wait on each other and on the pool. OpenBLAS's setting is process-wide: call
    /// it only where no other thread is running products.
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        let threads = library.getThreads()
        guard threads > 1 else { return try body() }
        library.setThreads(1)
        defer { library.setThreads(threads) }
        return try body()
    }

    /// The thread count OpenBLAS uses now.
    public static var threads: Int { Int(library.getThreads()) }

    /// Runs every later product on `threads` threads: OpenBLAS's and the PrimaKernels pool's (the pool only if it has
    /// not started yet: call this first thing). Results are bit-identical at a given thread count.
    public static func useThreads(_ threads: Int) {
        precondition(threads >= 1, "at least one thread")
        library.setThreads(Int32(threads))
        _ = prima_pool_request_threads(Int32(threads))
    }

    /// Loads OpenBLAS (if not yet loaded) and describes it.
    public static var info: Info { library.info }

    /// C[M, N] = alpha · op(A) · op(B) + beta · C, row-major, where op(A) is [M, K] (A is [K, M] if `transA`) and
    /// op(B) is [K, N] (B is [N, K] if `transB`); `lda`, `ldb`, `ldc` are row strides in elements.
    @inlinable
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    @usableFromInline
    static func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>,
                     _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112
        library.sgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, Int32(m), Int32(n), Int32(k), alpha,
                      a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
