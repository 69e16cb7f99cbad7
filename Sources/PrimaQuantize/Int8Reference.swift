import Foundation
import PrimaCheckpoint
import PrimaTensor

/// The scalar reference int8 quantiser of §7, bit-exact: the definition that faster kernels and other readers
/// are tested against. Plain loops on purpose.
///
/// For one group g of float32 values w:
///
///     m = max |w| over g                 (float32)
///     s = m / 127                        (float32 division, round to nearest even)
///     s == 0:  q = 0 for every element   (scale stored as 0)
///     else:    q = clamp(rint(w / s), -127, 127)
///     ŵ = float32(q) * s
///
/// For a normal s (m ≥ 127 · 2⁻¹²⁶) every element satisfies |w − ŵ| ≤ s · (1/2 + 2⁻¹⁶): s/2 from rounding
/// to the integer grid, plus the float32 roundings of w / s and q · s (each at most 127 · 2⁻²⁴ of s). A
/// subnormal s carries fewer significant bits, so w / s can exceed 127.5 and the clamp engages; when
/// m < 63.5 · 2⁻¹⁴⁹, s underflows to 0 and the whole group dequantises to 0. Inputs must be finite (the tool
/// refuses NaN and Inf before quantising).
public enum Int8Reference {
    /// The bound on |w − ŵ| in units of the scale, for a normal scale (see the type's documentation).
    public static let errorBoundInScales: Double = 0.5 + 0x1p-16

    /// Quantises one group `w` into `q` (same count) and returns its scale.
    @inlinable
    public static func quantizeGroup(_ w: UnsafeBufferPointer<Float>, into q: UnsafeMutableBufferPointer<Int8>) -> Float {
        precondition(w.count == q.count, "group and output differ in length")
        var m: Float = 0
        for x in w { m = Swift.max(m, x.magnitude) }
        let s = m / 127
        if s == 0 {
            for i in 0..<q.count { q[i] = 0 }
            return 0
        }
        for i in 0..<w.count {
            let r = (w[i] / s).rounded(.toNearestOrEven)
            q[i] = Int8(Swift.min(Swift.max(r, -127), 127))
        }
        return s
    }

    /// Quantises `rows` rows of `columns` float32 weights (row-major) into `q` ([rows · columns]) and
    /// `scales` ([rows · scalesPerRow]).
    @inlinable
    public static func quantize(rows: Int, columns: Int, scheme: Int8Scheme, weights: UnsafeBufferPointer<Float>,
                                q: UnsafeMutableBufferPointer<Int8>, scales: UnsafeMutableBufferPointer<Float>) {
        let block = Swift.max(scheme.blockSize(columns: columns), 1)
        let perRow = scheme.scalesPerRow(columns: columns)
        precondition(weights.count == rows * columns && q.count == rows * columns && scales.count == rows * perRow,
                     "buffer sizes do not match [\(rows), \(columns)]")
        for row in 0..<rows {
            for b in 0..<perRow {
                let start = row * columns + b * block
                let end = Swift.min(start + block, (row + 1) * columns)
                scales[row * perRow + b] = quantizeGroup(
                    UnsafeBufferPointer(rebasing: weights[start..<end]), into: UnsafeMutableBufferPointer(rebasing: q[start..<end]))
            }
        }
    }

    /// Quantises a [rows, columns] float32 matrix (array form, for tests and small tensors).
    public static func quantize(_ weights: [Float], rows: Int, columns: Int, scheme: Int8Scheme) -> Int8Matrix {
        var q = [Int8](repeating: 0, count: rows * columns)
        var scales = [Float](repeating: 0, count: rows * scheme.scalesPerRow(columns: columns))
        weights.withUnsafeBufferPointer { w in
            q.withUnsafeMutableBufferPointer { q in
                scales.withUnsafeMutableBufferPointer { s in
                    quantize(rows: rows, columns: columns, scheme: scheme, weights: w, q: q, scales: s)
                }
            }
        }
        return Int8Matrix(rows: rows, columns: columns, scheme: scheme, q: q, scales: scales)
    }
}

/// A quantised [rows, columns] matrix: int8 values and the scales of their groups (§7).
public struct Int8Matrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public let scheme: Int8Scheme
    /// [rows · columns], row-major.
    public let q: [Int8]
    /// [rows] (per-channel) or [rows · ceil(columns/32)] (block32), row-major.
    public let scales: [Float]

    public init(rows: Int, columns: Int, scheme: Int8Scheme, q: [Int8], scales: [Float]) {
        precondition(q.count == rows * columns && scales.count == rows * scheme.scalesPerRow(columns: columns),
                     "int8 matrix sizes do not match [\(rows), \(columns)]")
        self.rows = rows
        self.columns = columns
        self.scheme = scheme
        self.q = q
        self.scales = scales
    }

    /// ŵ = Float(q) · s, row-major.
    public func dequantized() -> [Float] {
        var output = [Float](repeating: 0, count: rows * columns)
        q.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { s in
                output.withUnsafeMutableBufferPointer { o in
                    scheme.dequantize(rows: rows, columns: columns, q: q, scales: s, into: o)
                }
            }
        }
        return output
    }

    /// The scale of element (row, column).
    public func scale(row: Int, column: Int) -> Float {
        let perRow = scheme.scalesPerRow(columns: columns)
        return scales[row * perRow + column / Swift.max(scheme.blockSize(columns: columns), 1)]
    }
}

/// Signal-to-quantisation-noise ratio over a tensor, accumulated block by block in float64:
/// 10 · log10(Σw² / Σ(w − ŵ)²) dB.
public struct SQNR: Sendable {
    /// Σw².
    public private(set) var signal: Double = 0
    /// Σ(w − ŵ)².
    public private(set) var noise: Double = 0

    public init() {}

    /// Adds the elements of `original` and their dequantised values.
    public mutating func add(original: UnsafeBufferPointer<Float>, dequantized: UnsafeBufferPointer<Float>) {
        precondition(original.count == dequantized.count, "SQNR inputs differ in length")
        var signal = 0.0, noise = 0.0
        for i in 0..<original.count {
            let w = Double(original[i])
            let error = w - Double(dequantized[i])
            signal += w * w
            noise += error * error
        }
        self.signal += signal
        self.noise += noise
    }

    /// The ratio in dB; +inf when the quantisation is exact (no noise), which includes an all-zero tensor
    /// (Σw² = Σ(w − ŵ)² = 0: every scale is 0 and ŵ = w = 0).
    public var decibels: Double { noise == 0 ? .infinity : 10 * log10(signal / noise) }
}
