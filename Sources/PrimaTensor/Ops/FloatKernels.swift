import Foundation
import PrimaKernels

/// The builds of the f32 kernels in PrimaKernels (float_ops.c: exp, activations, normalisations, attention). All
/// give the same bits (each lane does the same IEEE operations in the same order); they differ only in speed. Ops
/// use ``best``; tests run every available build.
public enum FloatISA: String, Sendable, CaseIterable {
    /// Plain C on 16-lane vectors, split into whatever the target has; runs everywhere.
    case generic
    /// AVX2 + FMA.
    case avx2
    /// AVX-512F.
    case avx512

    var code: Int32 {
        switch self {
        case .generic: Int32(PRIMA_FLOAT_ISA_GENERIC)
        case .avx2: Int32(PRIMA_FLOAT_ISA_AVX2)
        case .avx512: Int32(PRIMA_FLOAT_ISA_AVX512)
        }
    }

    /// The builds this CPU can run (``generic`` always).
    public static var available: [FloatISA] {
        let bits = prima_float_isas_available()
        return allCases.filter { bits & (1 << UInt32($0.code)) != 0 }
    }

    /// The fastest build this CPU can run.
    public static let fastest: FloatISA = allCases.first { $0.code == prima_float_isa_best() } ?? .generic

    /// The build the ops use: ``fastest``, or the one `PRIMA_FLOAT_KERNEL` names (`generic`, `avx2`, `avx512`) if this
    /// CPU can run it. The bits are the same either way; forcing a smaller build measures on this machine what a CPU
    /// without AVX-512 would run (Docs/benchmarks.md, the AVX2 tables). Tools refuse any other value at start-up
    /// (``environmentProblem``); the library ignores it.
    public static let best: FloatISA = {
        guard case .success(let forced?) = fromEnvironment else { return fastest }
        return forced
    }()

    /// Why `PRIMA_FLOAT_KERNEL` cannot be honoured (no such build, or not on this CPU), or nil.
    public static var environmentProblem: String? {
        guard case .failure(let problem) = fromEnvironment else { return nil }
        return problem.message
    }

    private struct Problem: Error { let message: String }

    /// `PRIMA_FLOAT_KERNEL`'s build: nil when unset or empty.
    private static var fromEnvironment: Result<FloatISA?, Problem> {
        guard let name = ProcessInfo.processInfo.environment["PRIMA_FLOAT_KERNEL"], !name.isEmpty else { return .success(nil) }
        guard let isa = FloatISA(rawValue: name) else {
            return .failure(Problem(message: "PRIMA_FLOAT_KERNEL=\(name) names no f32 kernel build (use one of \(allCases.map(\.rawValue).joined(separator: ", ")))"))
        }
        guard available.contains(isa) else {
            return .failure(Problem(message: "PRIMA_FLOAT_KERNEL=\(name): this CPU cannot run that build (it can run \(available.map(\.rawValue).joined(separator: ", ")))"))
        }
        return .success(isa)
    }
}

/// `body` with the f32 elements of `tensor`, or with nil for no tensor (optional weights and biases for C calls).
func withOptionalFloat32<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let tensor else { return body(nil) }
    return tensor.withFloat32 { body($0.baseAddress!) }
}

/// Runs `body(i)` for every i in 0..<count on the calling thread and the PrimaKernels pool (`prima_parallel_for`:
/// workers stay awake between the loops of a forward pass), returning when all calls have returned.
func parallelFor(_ count: Int, _ body: @Sendable (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        var task = body
        withUnsafeMutablePointer(to: &task) { pointer in
            prima_parallel_for(Int64(count), { context, index in
                context!.assumingMemoryBound(to: (@Sendable (Int) -> Void).self).pointee(Int(index))
            }, pointer)
        }
    }
}
