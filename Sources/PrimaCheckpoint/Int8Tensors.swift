import Foundation
import PrimaTensor

// The int8 layout of Formats/prima-checkpoint.md §7.1 as a reader needs it: the two schemes, the attributes of a
// quantised dataset, its scales, and dequantisation. Writing (the reference quantiser) is PrimaQuantize's.

/// The two int8 weight schemes of Formats/prima-checkpoint.md §7.
///
/// A weight is a row-major matrix [N, K] (PyTorch's Linear layout: N output rows of K inputs). A group is the
/// set of weights that share one scale: a whole row (per-channel) or 32 consecutive inputs of a row (block32;
/// the last block of a row holds K mod 32 inputs when 32 does not divide K).
public enum Int8Scheme: String, Sendable, CaseIterable {
    case perChannel = "int8-per-channel"
    case block32 = "int8-block32"

    /// The spelling on the command line (`--scheme per-channel|block32`).
    public var optionName: String {
        switch self {
        case .perChannel: "per-channel"
        case .block32: "block32"
        }
    }

    /// The scheme for a command-line spelling, nil if unknown.
    public init?(optionName: String) {
        guard let match = Int8Scheme.allCases.first(where: { $0.optionName == optionName }) else { return nil }
        self = match
    }

    /// Inputs per group for rows of `columns` inputs: the `quant_block_size` attribute (K or 32).
    public func blockSize(columns: Int) -> Int {
        switch self {
        case .perChannel: columns
        case .block32: 32
        }
    }

    /// Scales per row: 1, or ceil(K/32).
    public func scalesPerRow(columns: Int) -> Int {
        switch self {
        case .perChannel: 1
        case .block32: (columns + 31) / 32
        }
    }

    /// The shape of the `.scales` dataset: [N] or [N, ceil(K/32)].
    public func scalesShape(rows: Int, columns: Int) -> [Int] {
        switch self {
        case .perChannel: [rows]
        case .block32: [rows, scalesPerRow(columns: columns)]
        }
    }

    /// Dequantises `rows` rows of `columns` int8 values with their group scales (§7.1): ŵ = Float(q) · s of each
    /// element's group, float32. The definition every reader and int8 kernel is tested against.
    @inlinable
    public func dequantize(rows: Int, columns: Int, q: UnsafeBufferPointer<Int8>,
                                  scales: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) {
        let block = Swift.max(blockSize(columns: columns), 1)
        let perRow = scalesPerRow(columns: columns)
        precondition(q.count == rows * columns && output.count == rows * columns && scales.count == rows * perRow,
                     "buffer sizes do not match [\(rows), \(columns)]")
        for row in 0..<rows {
            for column in 0..<columns {
                let index = row * columns + column
                output[index] = Float(q[index]) * scales[row * perRow + column / block]
            }
        }
    }
}

/// The §7 attributes of one quantised tensor, and how to read it back.
public struct QuantizedTensorInfo: Sendable, Equatable {
    /// Attribute names on the int8 dataset.
    public static let schemeAttribute = "quant_scheme"
    public static let blockSizeAttribute = "quant_block_size"
    public static let sourceDTypeAttribute = "quant_source_dtype"
    public static let sqnrAttribute = "quant_sqnr_db"

    /// The name of the scales dataset of tensor `name` (for a tied alias: of the dataset it points at).
    public static func scalesName(for name: String) -> String { name + ".scales" }

    public let scheme: Int8Scheme
    /// Inputs per group: K (per-channel) or 32.
    public let blockSize: Int
    /// The dtype the tensor had before quantisation (f32, f16 or bf16).
    public let sourceDType: DType
    /// The SQNR recorded at quantisation, in dB (+inf if exact).
    public let sqnrDecibels: Double

    public init(scheme: Int8Scheme, blockSize: Int, sourceDType: DType, sqnrDecibels: Double) {
        self.scheme = scheme
        self.blockSize = blockSize
        self.sourceDType = sourceDType
        self.sqnrDecibels = sqnrDecibels
    }

    /// Reads the attributes of `dataset`; nil if it carries no `quant_scheme` (not a quantised tensor).
    /// Throws on a quantised tensor whose attributes are malformed or inconsistent with its shape.
    public static func read(_ dataset: HDF5Dataset) throws -> QuantizedTensorInfo? {
        guard dataset.hasAttribute(schemeAttribute) else { return nil }
        let where_ = "\(dataset.file.path): \(dataset.path)"
        let schemeName = try dataset.stringAttribute(schemeAttribute)
        guard let scheme = Int8Scheme(rawValue: schemeName) else {
            throw CheckpointError("\(where_): unknown quant_scheme \"\(schemeName)\"")
        }
        guard dataset.shape.count == 2, dataset.storedTypeMatches(.i8) else {
            throw CheckpointError("\(where_): a quantised tensor must be a 2-D int8 dataset")
        }
        let blockSize = try dataset.intAttribute(blockSizeAttribute)
        guard blockSize == scheme.blockSize(columns: dataset.shape[1]) else {
            throw CheckpointError("\(where_): quant_block_size \(blockSize) does not fit \(schemeName) with \(dataset.shape[1]) inputs")
        }
        let sourceName = try dataset.stringAttribute(sourceDTypeAttribute)
        guard let source = DType(rawValue: sourceName), source.isWeightFloat else {
            throw CheckpointError("\(where_): quant_source_dtype \"\(sourceName)\" is not f32, f16 or bf16")
        }
        let sqnr = dataset.hasAttribute(sqnrAttribute) ? try dataset.doubleAttribute(sqnrAttribute) : .nan
        return QuantizedTensorInfo(scheme: scheme, blockSize: blockSize, sourceDType: source, sqnrDecibels: sqnr)
    }

    /// Writes the attributes onto `dataset`.
    public func write(to dataset: HDF5Dataset) throws {
        try dataset.setAttribute(Self.schemeAttribute, string: scheme.rawValue)
        try dataset.setAttribute(Self.blockSizeAttribute, int: blockSize)
        try dataset.setAttribute(Self.sourceDTypeAttribute, string: sourceDType.rawValue)
        try dataset.setAttribute(Self.sqnrAttribute, double: sqnrDecibels)
    }
}

/// Reads quantised tensors of a component back as float.
public enum Int8Dequantizer {
    /// The quantisation of stored tensor `name` (resolve aliases first), nil if it is not quantised.
    public static func info(of name: String, in component: ComponentReader) throws -> QuantizedTensorInfo? {
        try QuantizedTensorInfo.read(try component.dataset(forTensor: name))
    }

    /// A quantised stored tensor as its int8 values ([N, K], dtype i8) and scales ([N] or [N, ceil(K/32)], f32),
    /// for int8 kernels. Throws if `name` is not quantised or its scales are missing or mis-shaped.
    public static func read(_ name: String, in component: ComponentReader) throws
        -> (info: QuantizedTensorInfo, q: Tensor, scales: Tensor) {
        let (dataset, info, scales) = try open(name, in: component)
        let q = Tensor(zeros: dataset.shape, dtype: .i8)
        let s = Tensor(zeros: scales.shape, dtype: .f32)
        if q.byteCount > 0 { try dataset.readRows(start: 0, count: dataset.shape[0], into: q.storage.bytes) }
        if s.byteCount > 0 { try scales.readRows(start: 0, count: scales.shape[0], into: s.storage.bytes) }
        return (info, q, s)
    }

    /// A quantised stored tensor dequantised to a float32 [N, K] tensor (ŵ = Float(q) · s).
    public static func dequantized(_ name: String, in component: ComponentReader) throws -> Tensor {
        let (dataset, _, _) = try open(name, in: component)
        let tensor = Tensor(zeros: dataset.shape, dtype: .f32)
        var offset = 0
        try stream(name, in: component, as: .f32) { block in
            UnsafeMutableRawBufferPointer(rebasing: tensor.storage.bytes[offset..<(offset + block.count)]).copyMemory(from: block)
            offset += block.count
        }
        return tensor
    }

    /// The int8 dataset, its attributes and its scales dataset, checked against each other.
    private static func open(_ name: String, in component: ComponentReader) throws
        -> (dataset: HDF5Dataset, info: QuantizedTensorInfo, scales: HDF5Dataset) {
        let path = component.checkpoint.path
        let dataset = try component.dataset(forTensor: name)
        guard let info = try QuantizedTensorInfo.read(dataset) else {
            throw CheckpointError("\(path): \(component.name): tensor \(name) is not quantised")
        }
        let (rows, columns) = (dataset.shape[0], dataset.shape[1])
        let scalesName = QuantizedTensorInfo.scalesName(for: name)
        let tensors = try component.subgroup("tensors")
        guard tensors.contains(scalesName) else {
            throw CheckpointError("\(path): \(component.name): tensor \(name) is quantised but \(scalesName) is missing")
        }
        let scales = try tensors.dataset(scalesName)
        let expected = info.scheme.scalesShape(rows: rows, columns: columns)
        guard scales.shape == expected, scales.storedTypeMatches(.f32) else {
            throw CheckpointError("\(path): \(component.name): \(scalesName) must be f32 \(ShapeMath.describe(expected)), found \(ShapeMath.describe(scales.shape))")
        }
        return (dataset, info, scales)
    }

    /// Streams the dequantised values of the quantised stored tensor `name` ([N, K]) in blocks of whole rows,
    /// converted to `dtype` (f32 exact; f16 and bf16 rounded to nearest even), as raw little-endian bytes.
    public static func stream(_ name: String, in component: ComponentReader, as dtype: DType, blockBytes: Int = 16 << 20,
                              _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (dataset, info, scales) = try open(name, in: component)
        let (rows, columns) = (dataset.shape[0], dataset.shape[1])
        let perRow = info.scheme.scalesPerRow(columns: columns)
        guard rows > 0, columns > 0 else { return }
        // Buffers of one size whatever the tensor's shape, so that a long export reuses the same memory
        // (see CheckpointQuantizer.Scratch on glibc's adaptive mmap threshold).
        let elements = max(blockBytes / 4, columns)
        let rowsPerBlock = elements / columns
        let q = UnsafeMutableBufferPointer<Int8>.allocate(capacity: elements)
        let s = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        let w = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: elements * 4, alignment: 64)
        defer { q.deallocate(); s.deallocate(); w.deallocate(); out.deallocate() }
        var start = 0
        while start < rows {
            let n = min(rowsPerBlock, rows - start)
            try dataset.readRows(start: start, count: n, into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(q)[0..<(n * columns)]))
            try scales.readRows(start: start, count: n, into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(s)[0..<(n * perRow)]))
            let values = UnsafeMutableBufferPointer(rebasing: w[0..<(n * columns)])
            info.scheme.dequantize(rows: n, columns: columns, q: UnsafeBufferPointer(rebasing: q[0..<(n * columns)]),
                                   scales: UnsafeBufferPointer(rebasing: s[0..<(n * perRow)]), into: values)
            let bytes = UnsafeMutableRawBufferPointer(rebasing: out[0..<(n * columns * dtype.byteSize)])
            WeightConversion.narrow(UnsafeBufferPointer(values), to: dtype, into: bytes)
            try body(UnsafeRawBufferPointer(bytes))
            start += n
        }
    }
}
