/// Exact conversions between the 16-bit float encodings and `Float`.
///
/// bf16 is the upper half of an IEEE binary32, so widening is a shift and exact. Narrowing rounds to nearest,
/// ties to even, as PyTorch's `tensor.to(torch.bfloat16)` does; NaN stays a (quiet) NaN.
public enum HalfPrecision {
    /// Widens bf16 bits to the `Float` they encode (exact).
    @inlinable public static func bf16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// Rounds `value` to the nearest bf16, ties to even.
    @inlinable public static func floatToBF16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let roundingBias = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }

    /// Widens IEEE binary16 bits to the `Float` they encode (exact).
    @inlinable public static func f16ToFloat(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

    /// Rounds `value` to the nearest IEEE binary16, ties to even (overflow gives ±inf).
    @inlinable public static func floatToF16(_ value: Float) -> UInt16 { Float16(value).bitPattern }
}
