// prima-bench-int8 [M K N | --model NAME] [--repeat R] [--kernels a,b] [--threads 1,2]: Int8Linear.forward with
// each available kernel, per-channel and block32, against fp32 Linear.forward (OpenBLAS sgemm) on the same shape
// and thread count. Both sides are whole layer calls: output allocation included, and for int8 the on-the-fly
// activation quantisation. The variants run in turn, one call each per round, so that a change in the machine's
// load hits all of them alike; each prints the best and the median of R rounds (after one warm-up round) and
// GOPS = 2·M·N·K / median.
//
// --model runs the distinct linear layers of one forward pass of a model (see `models`) and adds a total over the
// layers, each layer's time multiplied by how often a forward pass calls it; the ratio to sgemm on that total is
// the one that matters for the model.
import Foundation
import PrimaTensor

/// A linear layer shape: M rows (tokens), K inputs, N outputs, and how many times one forward pass runs it.
struct Shape {
    let m, k, n, count: Int
    var operations: Double { 2 * Double(m) * Double(n) * Double(k) }
}

/// The linear layers of one forward pass per model (per transformer layer; the counts are per layer, and the
/// total is per layer too, which gives the same ratios): projections at the token count of the benchmark tables.
let models: [String: [Shape]] = [
    // Qwen3-0.6B at 128 tokens: q 1024→2048, k and v 1024→1024, o 2048→1024, gate and up 1024→3072, down 3072→1024.
    "qwen3-0.6b": [Shape(m: 128, k: 1024, n: 2048, count: 1), Shape(m: 128, k: 1024, n: 1024, count: 2),
                   Shape(m: 128, k: 2048, n: 1024, count: 1), Shape(m: 128, k: 1024, n: 3072, count: 2),
                   Shape(m: 128, k: 3072, n: 1024, count: 1)],
    // ModernBERT-base at 64 tokens: Wqkv 768→2304, attention Wo 768→768, Wi 768→2304 (gate and up), mlp Wo 1152→768.
    "modernbert-base": [Shape(m: 64, k: 768, n: 2304, count: 2), Shape(m: 64, k: 768, n: 768, count: 1),
                        Shape(m: 64, k: 1152, n: 768, count: 1)],
    // ViT-S/16 at 197 tokens: q, k, v and o 384→384, up 384→1536, down 1536→384.
    "vit-s16": [Shape(m: 197, k: 384, n: 384, count: 4), Shape(m: 197, k: 384, n: 1536, count: 1),
                Shape(m: 197, k: 1536, n: 384, count: 1)],
]

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("prima-bench-int8: \(message)\n".utf8))
    exit(2)
}

/// Removes `--flag VALUE` from `arguments` and returns VALUE.
func option(_ flag: String, _ arguments: inout [String]) -> String? {
    guard let index = arguments.firstIndex(of: flag) else { return nil }
    guard index + 1 < arguments.count else { fail("\(flag) needs a value") }
    defer { arguments.removeSubrange(index...index + 1) }
    return arguments[index + 1]
}

var arguments = Array(CommandLine.arguments.dropFirst())
let repeats = option("--repeat", &arguments).map { Int($0) ?? 0 } ?? 30
guard repeats >= 1 else { fail("--repeat needs a positive count") }
var kernels = Int8Kernel.available
if let names = option("--kernels", &arguments)?.split(separator: ",").map(String.init) {
    kernels = kernels.filter { names.contains($0.rawValue) }
}
let threadCounts = option("--threads", &arguments).map { $0.split(separator: ",").compactMap { Int($0) } } ?? [1, 2]
guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 }) else { fail("--threads needs counts like 1,2") }
let modelName = option("--model", &arguments)
let sizes = arguments.compactMap(Int.init)
guard sizes.count == arguments.count, sizes.isEmpty || sizes.count == 3, sizes.allSatisfy({ $0 > 0 }),
      modelName == nil || sizes.isEmpty else {
    fail("usage: prima-bench-int8 [M K N | --model \(models.keys.sorted().joined(separator: "|"))] [--repeat R] "
         + "[--kernels scalar,avx2,avxvnni,avx512vnni] [--threads 1,2]")
}
let shapes: [Shape]
if let modelName {
    guard let layers = models[modelName] else { fail("unknown model \(modelName) (\(models.keys.sorted().joined(separator: ", ")))") }
    shapes = layers
} else {
    shapes = [sizes.isEmpty ? Shape(m: 128, k: 1024, n: 3072, count: 1) : Shape(m: sizes[0], k: sizes[1], n: sizes[2], count: 1)]
}

/// The CPU's model name and the vector features that decide the kernels, from /proc/cpuinfo.
func cpuDescription() -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
    func field(_ name: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) }
    }
    let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
    let vector = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni"].filter(flags.contains)
    return "\(field("model name") ?? "unknown CPU"), \(ProcessInfo.processInfo.activeProcessorCount) CPUs, "
        + "flags \(vector.joined(separator: " "))"
}

var state: UInt64 = 0x1234_5678
@MainActor func uniform() -> Float {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(state >> 40) / Float(1 << 24) * 2 - 1
}

/// One measured variant: a name, its thread count (for the ratio to sgemm) and the call.
struct Variant {
    let name: String
    let threads: Int
    let isFloat: Bool
    let call: () -> Void
}

/// Runs every variant once per round, `repeats` rounds after a warm-up; returns each variant's sorted times.
@MainActor func measure(_ variants: [Variant]) -> [[Double]] {
    for variant in variants { variant.call() }
    var times = [[Double]](repeating: [], count: variants.count)
    for _ in 0..<repeats {
        for (index, variant) in variants.enumerated() {
            let start = DispatchTime.now().uptimeNanoseconds
            variant.call()
            times[index].append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
    }
    return times.map { $0.sorted() }
}

let environment = ProcessInfo.processInfo.environment
print("CPU: \(cpuDescription())")
print("OpenBLAS \(BLAS.info.coreName) (OPENBLAS_CORETYPE=\(environment["OPENBLAS_CORETYPE"] ?? "unset")), "
      + "PRIMA_INT8_KERNEL=\(environment["PRIMA_INT8_KERNEL"] ?? "unset"); int8 kernels available: "
      + Int8Kernel.available.map(\.rawValue).joined(separator: " ") + "; best and median of \(repeats) rounds")

/// Σ count · time per variant name over the shapes: (best, median).
var totals: [String: (best: Double, median: Double)] = [:]
var order: [Variant] = []
for shape in shapes {
    let (m, k, n) = (shape.m, shape.k, shape.n)
    let x = Tensor(shape: [m, k], float32: (0..<m * k).map { _ in uniform() })
    let w = Tensor(shape: [n, k], float32: (0..<n * k).map { _ in uniform() * 0.05 })
    var variants: [Variant] = []
    for threads in threadCounts {
        variants.append(Variant(name: "fp32 sgemm \(threads)t", threads: threads, isFloat: true) {
            if threads == 1 { _ = BLAS.singleThreaded { Linear.forward(x, weight: w) } } else { _ = Linear.forward(x, weight: w) }
        })
    }
    for blockSize in [k, 32] {
        // Weights quantised with the prima-checkpoint §7 rule (the activation rule, one block as one row).
        guard k % blockSize == 0 else { fail("the benchmark quantises whole blocks: K must be a multiple of 32") }
        let blocks = k / blockSize
        let (values, scales) = Int8Linear.quantizeRowsReference(w.reshaped([n * blocks, blockSize]))
        let scheme = blockSize == k ? "per-channel" : "block32"
        for kernel in kernels {
            let weight = try Int8Weight(values: values.reshaped([n, k]), scales: scales.reshaped([n, blocks]),
                                        blockSize: blockSize, kernel: kernel)
            for threads in threadCounts where kernel != .scalar || threads == 1 {
                variants.append(Variant(name: "int8 \(scheme) \(kernel.rawValue) \(threads)t", threads: threads, isFloat: false) {
                    _ = Int8Linear.forward(x, weight: weight, threads: threads)
                })
            }
        }
    }
    if order.isEmpty { order = variants }
    let times = measure(variants)
    print("\nM \(m) K \(k) N \(n)" + (shape.count > 1 ? " (×\(shape.count) per layer)" : ""))
    print("variant".padding(toLength: 36, withPad: " ", startingAt: 0) + "   best ms  median ms  median GOPS  sgemm/this best, median")
    for (variant, sorted) in zip(variants, times) {
        let best = sorted[0], median = sorted[sorted.count / 2]
        let peer = zip(variants, times).first { $0.0.isFloat && $0.0.threads == variant.threads }?.1
        let ratio = peer.map { String(format: "%6.2f %6.2f", $0[0] / best, $0[$0.count / 2] / median) } ?? ""
        print(variant.name.padding(toLength: 36, withPad: " ", startingAt: 0)
              + String(format: "%10.3f %10.3f %12.1f   ", best * 1e3, median * 1e3, shape.operations / median / 1e9) + ratio)
        let total = totals[variant.name] ?? (0, 0)
        totals[variant.name] = (total.best + Double(shape.count) * best, total.median + Double(shape.count) * median)
    }
}

if shapes.count > 1 {
    print("\nTotal per layer of \(modelName!) (Σ count × time)")
    print("variant".padding(toLength: 36, withPad: " ", startingAt: 0) + "   best ms  median ms  sgemm/this best, median")
    for variant in order {
        let total = totals[variant.name]!
        let peer = order.first { $0.isFloat && $0.threads == variant.threads }.flatMap { totals[$0.name] }
        let ratio = peer.map { String(format: "%6.2f %6.2f", $0.best / total.best, $0.median / total.median) } ?? ""
        print(variant.name.padding(toLength: 36, withPad: " ", startingAt: 0)
              + String(format: "%10.3f %10.3f   ", total.best * 1e3, total.median * 1e3) + ratio)
    }
}
