import Foundation

/// Exact conversions between stored weight bytes and float32, for the three weight dtypes.
public enum WeightConversion {
    /// Widens raw little-endian f32/f16/bf16 bytes to float32 (exact). Other dtypes are a programming error.
    public static func widen(_ bytes: UnsafeRawBufferPointer, dtype: DType, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(dtype.isWeightFloat, "widen: \(dtype.rawValue) is not a weight dtype")
        precondition(bytes.count == output.count * dtype.byteSize, "widen: byte count does not match")
        switch dtype {
        case .f32:
            for i in 0..<output.count { output[i] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .f16:
            for i in 0..<output.count { output[i] = HalfPrecision.f16ToFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        default:
            for i in 0..<output.count { output[i] = HalfPrecision.bf16ToFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        }
    }

    /// Narrows float32 values to raw little-endian bytes of `dtype` (f32 exact; f16 and bf16 round to nearest,
    /// ties to even).
    public static func narrow(_ values: UnsafeBufferPointer<Float>, to dtype: DType, into bytes: UnsafeMutableRawBufferPointer) {
        precondition(dtype.isWeightFloat, "narrow: \(dtype.rawValue) is not a weight dtype")
        precondition(bytes.count == values.count * dtype.byteSize, "narrow: byte count does not match")
        switch dtype {
        case .f32:
            for i in 0..<values.count { bytes.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        case .f16:
            for i in 0..<values.count { bytes.storeBytes(of: HalfPrecision.floatToF16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        default:
            for i in 0..<values.count { bytes.storeBytes(of: HalfPrecision.floatToBF16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        }
    }

    /// Index of the first NaN or Inf among `values`, nil if all are finite.
    public static func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        values.firstIndex { !$0.isFinite }
    }
}
