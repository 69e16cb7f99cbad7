/// Element types a tensor can hold, named as the checkpoint format names them (Formats/prima-checkpoint.md §5).
///
/// The raw values are the checkpoint's `dtype` attribute strings. Safetensors spells them in capitals
/// (`F32`, `BF16`, …); ``init(safetensorsName:)`` and ``safetensorsName`` translate.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f64, f32, f16, bf16
    case i64, i32, i16, i8
    case u8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }

    /// True for the floating-point types a model weight may have on import (f32, f16, bf16).
    public var isWeightFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }

    /// The safetensors header spelling of this type.
    public var safetensorsName: String {
        switch self {
        case .f64: "F64"
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .i64: "I64"
        case .i32: "I32"
        case .i16: "I16"
        case .i8: "I8"
        case .u8: "U8"
        case .bool: "BOOL"
        }
    }

    /// Parses a safetensors dtype string; nil for a type this toolkit does not know (FP8, U16, …).
    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
        self = match
    }
}

/// Element counts and byte sizes of shapes, with every multiplication checked: shapes come from files.
public enum ShapeMath {
    /// The number of elements of `shape`, or nil if a dimension is negative or the product overflows `Int`.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dim in shape {
            guard dim >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// The number of bytes of a `shape` tensor of `dtype`, or nil on a negative dimension or overflow.
    public static func byteCount(_ shape: [Int], _ dtype: DType) -> Int? {
        guard let count = elementCount(shape) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        return overflow ? nil : bytes
    }

    /// `[2, 3, 4]` as the text `[2, 3, 4]`, for messages.
    public static func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
}
