// prima-bench-int8 [M K N] [--repeat R] [--kernels a,b]: Int8Linear.forward with each available kernel, per-channel and block32,
// on 1 and 2 threads, against fp32 Linear.forward (OpenBLAS sgemm, OPENBLAS_NUM_THREADS threads) on the same
// shape. Prints the median time of R runs after one warm-up, and GOPS = 2·M·N·K / time. Both sides are whole
// layer calls: output allocation included, and for int8 the on-the-fly activation quantisation.
import Foundation
import PrimaTensor

var arguments = Array(CommandLine.arguments.dropFirst())
var repeats = 30
if let index = arguments.firstIndex(of: "--repeat"), index + 1 < arguments.count, let r = Int(arguments[index + 1]) {
    repeats = r
    arguments.removeSubrange(index...index + 1)
}
var kernels = Int8Kernel.available
if let index = arguments.firstIndex(of: "--kernels"), index + 1 < arguments.count {
    let names = arguments[index + 1].split(separator: ",").map(String.init)
    kernels = kernels.filter { names.contains($0.rawValue) }
    arguments.removeSubrange(index...index + 1)
}
let sizes = arguments.compactMap(Int.init)
guard sizes.isEmpty || sizes.count == 3, sizes.allSatisfy({ $0 > 0 }) else {
    FileHandle.standardError.write(Data("usage: prima-bench-int8 [M K N] [--repeat R] [--kernels scalar,avx2,avxvnni,avx512vnni]\n".utf8))
    exit(2)
}
let (m, k, n) = sizes.isEmpty ? (128, 1024, 3072) : (sizes[0], sizes[1], sizes[2])

var state: UInt64 = 0x1234_5678
@MainActor func uniform() -> Float {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(state >> 40) / Float(1 << 24) * 2 - 1
}

@MainActor func median(_ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
    }
    return times.sorted()[times.count / 2]
}

@MainActor func report(_ name: String, _ seconds: Double) {
    let gops = 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9
    print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%9.3f ms %9.1f GOPS", seconds * 1e3, gops))
}

let x = Tensor(shape: [m, k], float32: (0..<m * k).map { _ in uniform() })
let w = Tensor(shape: [n, k], float32: (0..<n * k).map { _ in uniform() * 0.05 })
let info = BLAS.info
print("M \(m) K \(k) N \(n), median of \(repeats); OpenBLAS \(info.coreName), \(info.threads) threads; "
      + "int8 kernels available: \(Int8Kernel.available.map(\.rawValue).joined(separator: " "))")
report("fp32 Linear.forward (OpenBLAS sgemm, \(info.threads)t)", median { _ = Linear.forward(x, weight: w) })

for blockSize in [k, 32] {
    // Weights quantised with the prima-checkpoint §7 rule (the activation rule, one block as one row).
    let blocks = (k + blockSize - 1) / blockSize
    precondition(k % blockSize == 0, "the benchmark quantises whole blocks: K must be a multiple of 32")
    let (values, scales) = Int8Linear.quantizeRowsReference(w.reshaped([n * blocks, k / blocks]))
    let scheme = blockSize == k ? "per-channel" : "block32"
    for kernel in kernels {
        let weight = try Int8Weight(values: values.reshaped([n, k]), scales: scales.reshaped([n, blocks]),
                                    blockSize: blockSize, kernel: kernel)
        for threads in [1, 2] where kernel != .scalar || threads == 1 {
            let seconds = median { _ = Int8Linear.forward(x, weight: weight, threads: threads) }
            report("int8 \(scheme) \(kernel.rawValue) \(threads)t", seconds)
        }
    }
}
