/// Owned, 64-byte aligned bytes behind one or more ``Tensor`` values.
///
/// Tensors are values that share storage by reference; an op that writes makes a new tensor (there is no
/// in-place mutation through a shared storage), which is what lets later modules record ops for a backward pass
/// without copy-on-write surprises.
public final class TensorStorage: @unchecked Sendable {
    /// The storage's bytes. Valid for the storage's lifetime.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Allocates `byteCount` zeroed bytes aligned to 64 (a cache line, and AVX-512's vector width).
    public init(byteCount: Int) {
        precondition(byteCount >= 0, "negative tensor byte count \(byteCount)")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        bytes = UnsafeMutableRawBufferPointer(start: raw, count: byteCount)
    }

    deinit { bytes.baseAddress.map { $0.deallocate() } }
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
