import Foundation

/// Owned, 64-byte aligned bytes behind one or more ``Tensor`` values.
///
/// Tensors are values that share storage by reference; an op that writes makes a new tensor (there is no
/// in-place mutation through a shared storage), which is what lets later modules record ops for a backward pass
/// without copy-on-write surprises.
public final class TensorStorage: @unchecked Sendable {
    /// The storage's bytes. Valid for the storage's lifetime.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Allocates `byteCount` zeroed bytes aligned to 64 (a cache line, and AVX-512's vector width).
    public convenience init(byteCount: Int) { self.init(byteCount: byteCount, zeroed: true) }

    /// As ``init(byteCount:)``; `zeroed: false` leaves the bytes unspecified, for ops that write every byte before
    /// anything reads them.
    init(byteCount: Int, zeroed: Bool) {
        precondition(byteCount >= 0, "negative tensor byte count \(byteCount)")
        let count = max(byteCount, 1)
        let raw = StoragePool.shared.take(count) ?? Self.allocate(count)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: count) }
        bytes = UnsafeMutableRawBufferPointer(start: raw, count: byteCount)
    }

    /// Buffers of at least this size are 2 MiB aligned and asked to be backed by transparent huge pages.
    static let hugePageBytes = 2 << 20

    /// `count` bytes aligned to 64, or for large buffers (weights, big activations) to 2 MiB with
    /// `MADV_HUGEPAGE`: streaming a gigabyte of weights through 4 KiB pages costs a page walk every 4 KiB, and
    /// once a multi-gigabyte model has been touched those walks miss the caches too (measured: a BERT text encoder
    /// ran 1.5x slower after a 7 GB decoder than alone). Where THP is off, madvise fails harmlessly.
    private static func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        guard count >= hugePageBytes else { return UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64) }
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: hugePageBytes)
        _ = madvise(raw, (count + hugePageBytes - 1) / hugePageBytes * hugePageBytes, MADV_HUGEPAGE)
        return raw
    }

    deinit {
        guard let raw = bytes.baseAddress else { return }
        if !StoragePool.shared.give(raw, count: max(bytes.count, 1)) { raw.deallocate() }
    }
}

/// Recently freed activation-sized buffers, reused by exact size. A forward pass allocates the same few sizes layer
/// after layer; given back to malloc, a buffer of a megabyte or so goes back to the kernel (glibc maps such blocks,
/// or trims its heap), and the next op page-faults on every 4 KiB of the new one (measured: about half the time of
/// the elementwise ops of an int8 ViT-S forward). Kept: buffers of 64 KiB to 128 MiB (a decoder's logits over a
/// 150k vocabulary are 78 MB at 128 positions), by default at most 4 per size and 256 MiB in all, so the pool adds
/// at most that much to the resident size. Training raises the limits for its loop (``StorageReuse``): a training
/// step's logits (an MLM head's 8 × 128 × 50,368, a decoder's 256 × 151,936) are larger still. There, a request
/// the pool cannot serve first frees its oldest buffers of other sizes, as many bytes as the request: steps whose
/// shapes vary (stage 3's token counts, a validation pass between epochs) would otherwise keep buffers no later
/// step takes, and the resident size would grow by up to the limit.
final class StoragePool: @unchecked Sendable {
    static let shared = StoragePool()
    static let smallest = 64 << 10

    /// How much the pool keeps.
    struct Limits {
        var bytes: Int
        var perSize: Int
        var largest: Int
        static let standard = Limits(bytes: 256 << 20, perSize: 4, largest: 128 << 20)
    }

    private let lock = NSLock()
    private var free: [Int: [(raw: UnsafeMutableRawPointer, given: Int)]] = [:]   // byte count → buffers, oldest first
    private var held = 0                                        // bytes in `free`
    private var gives = 0                                       // buffers given so far (their order)
    private var limits = Limits.standard
    private var stepLoops = 0                                   // training loops running (StorageReuse)

    /// A kept buffer of exactly `count` bytes, or nil.
    func take(_ count: Int) -> UnsafeMutableRawPointer? {
        guard count >= Self.smallest else { return nil }
        lock.lock()
        defer { lock.unlock() }
        guard let kept = free[count]?.popLast() else {
            if stepLoops > 0 { evictOldest(atLeast: count) }
            return nil
        }
        held -= count
        return kept.raw
    }

    /// Deallocates the oldest kept buffers until `bytes` are freed or none is left. Called with `lock` held.
    private func evictOldest(atLeast bytes: Int) {
        var freed = 0
        while freed < bytes, let count = free.filter({ !$0.value.isEmpty }).min(by: { $0.value[0].given < $1.value[0].given })?.key {
            free[count]!.removeFirst().raw.deallocate()
            held -= count
            freed += count
        }
    }

    /// Keeps `raw` (`count` bytes, from `allocate(byteCount: count, alignment: 64)`) if there is room; false if
    /// the caller must deallocate it.
    func give(_ raw: UnsafeMutableRawPointer, count: Int) -> Bool {
        guard count >= Self.smallest else { return false }
        lock.lock()
        defer { lock.unlock() }
        guard count <= limits.largest, held + count <= limits.bytes, free[count, default: []].count < limits.perSize else {
            return false
        }
        free[count, default: []].append((raw, gives))
        gives += 1
        held += count
        return true
    }

    /// Raises the limits to `bytes` in all, no bound per size or on a buffer's size while any training loop runs (`entering`), and
    /// returns to the standard limits when the last one ends, deallocating the buffers beyond them.
    func stepLoop(entering: Bool, bytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        stepLoops += entering ? 1 : -1
        limits = stepLoops > 0 ? Limits(bytes: bytes, perSize: .max, largest: bytes) : .standard
        for count in free.keys.sorted(by: >) {
            while let buffers = free[count], !buffers.isEmpty,
                  held > limits.bytes || buffers.count > limits.perSize || count > limits.largest {
                free[count]!.removeLast().raw.deallocate()
                held -= count
            }
        }
    }

    /// The number of kept buffers of `count` bytes (for tests).
    func keptCount(_ count: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return free[count]?.count ?? 0
    }
}

/// Reuse of tensor memory from one training step to the next.
///
/// A training step keeps its forward's activations for the backward, so the whole working set (1.6 GB for a
/// ViT-B/16 LoRA step at batch 8) is allocated anew every step; freed into malloc, those buffers go back to the
/// kernel and the next step takes a page fault and a zeroed huge page for each. Measured on that step
/// (Docs/benchmarks.md, "Training step"): 38,700 page faults per step and the kernel's page zeroing the
/// largest cost after sgemm; with the buffers kept, 3,300.
public enum StorageReuse {
    /// The default bound: a quarter of the machine's memory.
    public static var defaultBytes: Int { Int(clamping: ProcessInfo.processInfo.physicalMemory / 4) }

    /// Runs `body` (a loop of training steps) with every freed activation-sized buffer kept for reuse, up to
    /// ``defaultBytes`` in all; when the last such loop of the process ends, the standard limits return and the
    /// buffers beyond them are freed. Loops may nest or run on several threads.
    public static func acrossSteps<R>(_ body: () throws -> R) rethrows -> R {
        StoragePool.shared.stepLoop(entering: true, bytes: defaultBytes)
        defer { StoragePool.shared.stepLoop(entering: false, bytes: defaultBytes) }
        return try body()
    }
}

/// A dense tensor: shape, element type and contiguous row-major storage in PyTorch dimension order.
///
/// A weight `[out, in]` is stored as PyTorch stores it: row `o` holds the `in` weights of output `o`.
/// Shapes in comments across the toolkit use one vocabulary: B batch, T tokens, C channels, H heads,
/// D head size, V vocabulary, K classes.
public struct Tensor: Sendable {
    /// Dimensions, outermost first. `[]` is a scalar.
    public let shape: [Int]
    /// Element type.
    public let dtype: DType
    /// The bytes; exactly ``byteCount`` of them belong to this tensor.
    public let storage: TensorStorage

    /// Number of elements (the product of ``shape``).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Number of bytes (``elementCount`` × the dtype's size).
    public var byteCount: Int { elementCount * dtype.byteSize }

    /// A zero-filled tensor. The shape must be valid (non-negative, no overflow): check file-supplied shapes
    /// with ``ShapeMath`` first.
    public init(zeros shape: [Int], dtype: DType) {
        guard let bytes = ShapeMath.byteCount(shape, dtype) else {
            preconditionFailure("invalid tensor shape \(ShapeMath.describe(shape)) for \(dtype)")
        }
        self.shape = shape
        self.dtype = dtype
        self.storage = TensorStorage(byteCount: bytes)
    }

    /// A tensor whose elements are unspecified, for ops that write every element before returning it.
    init(uninitialized shape: [Int], dtype: DType) {
        guard let bytes = ShapeMath.byteCount(shape, dtype) else {
            preconditionFailure("invalid tensor shape \(ShapeMath.describe(shape)) for \(dtype)")
        }
        self.shape = shape
        self.dtype = dtype
        self.storage = TensorStorage(byteCount: bytes, zeroed: false)
    }

    /// A tensor over existing storage (which must hold at least the shape's bytes).
    public init(shape: [Int], dtype: DType, storage: TensorStorage) {
        precondition(ShapeMath.byteCount(shape, dtype).map { $0 <= storage.bytes.count } ?? false,
                     "storage too small for \(ShapeMath.describe(shape)) \(dtype)")
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
    }

    /// An f32 tensor holding `values` in row-major order.
    public init(shape: [Int], float32 values: [Float]) {
        self.init(zeros: shape, dtype: .f32)
        precondition(values.count == elementCount, "\(values.count) values for shape \(ShapeMath.describe(shape))")
        values.withUnsafeBytes { storage.bytes.copyMemory(from: $0) }
    }

    /// This tensor's raw bytes, read-only.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage.bytes[0..<byteCount]))
    }

    /// The elements of an f32 tensor, read-only.
    public func withFloat32<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .f32, "withFloat32 on a \(dtype) tensor")
        return try body(UnsafeBufferPointer(start: storage.bytes.baseAddress!.assumingMemoryBound(to: Float.self),
                                            count: elementCount))
    }

    /// The elements of an f32 tensor, writable. Only for filling a tensor an op has just created: tensors share
    /// storage, so writing into one that other code holds would change it under that code.
    public func withMutableFloat32<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .f32, "withMutableFloat32 on a \(dtype) tensor")
        return try body(UnsafeMutableBufferPointer(start: storage.bytes.baseAddress!.assumingMemoryBound(to: Float.self),
                                                   count: elementCount))
    }

    /// The same storage viewed with another shape of the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(ShapeMath.elementCount(newShape) == elementCount,
                     "cannot reshape \(ShapeMath.describe(shape)) to \(ShapeMath.describe(newShape))")
        return Tensor(shape: newShape, dtype: dtype, storage: storage)
    }

    /// The elements as `[Float]`, widening f16 and bf16 exactly. Precondition: a float dtype.
    public func float32Values() -> [Float] {
        let count = elementCount
        let base = UnsafeRawPointer(storage.bytes.baseAddress!)
        switch dtype {
        case .f32:
            return Array(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: count))
        case .f16:
            let bits = base.assumingMemoryBound(to: UInt16.self)
            return (0..<count).map { HalfPrecision.f16ToFloat(bits[$0]) }
        case .bf16:
            let bits = base.assumingMemoryBound(to: UInt16.self)
            return (0..<count).map { HalfPrecision.bf16ToFloat(bits[$0]) }
        default:
            preconditionFailure("float32Values on a \(dtype) tensor")
        }
    }

    /// An f32 copy of a float tensor (f16 and bf16 widen exactly; f32 is returned as is).
    public func toFloat32() -> Tensor {
        if dtype == .f32 { return self }
        return Tensor(shape: shape, float32: float32Values())
    }
}
