import Foundation
import PrimaKernels

/// Rotary position embeddings in transformers' rotate-half convention: for each head, the pair (i, i + D/2) is
/// rotated by the angle of frequency i: `out[i] = x[i]·cos − x[i+D/2]·sin`, `out[i+D/2] = x[i+D/2]·cos + x[i]·sin`.
public enum RoPE {
    /// cos and sin tables [P, D] (row p for position p, as `cat(angles, angles)`) for positions 0..<P with
    /// `inv_freq[j] = 1 / theta^(2j/D)`, computed in f32 as transformers' default rope does.
    public static func tables(positions: Int, headDim: Int, theta: Double) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        let inverseFrequency = (0..<half).map { j -> Float in
            1 / powf(Float(theta), Float(2 * j) / Float(headDim))
        }
        return tables(angles: (0..<positions).map { p in inverseFrequency.map { Float(p) * $0 } }, headDim: headDim)
    }

    /// cos and sin tables [rows, D] from per-row angles [rows][D/2] (duplicated as `cat(angles, angles)`).
    public static func tables(angles: [[Float]], headDim: Int) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var cosTable = [Float](repeating: 0, count: angles.count * headDim)
        var sinTable = cosTable
        for (row, rowAngles) in angles.enumerated() {
            precondition(rowAngles.count == half, "rope: \(rowAngles.count) angles for head size \(headDim)")
            for j in 0..<half {
                let c = cosf(rowAngles[j]), s = sinf(rowAngles[j])
                cosTable[row * headDim + j] = c
                cosTable[row * headDim + j + half] = c
                sinTable[row * headDim + j] = s
                sinTable[row * headDim + j + half] = s
            }
        }
        return (cosTable, sinTable)
    }

    /// Rotates every head of x [N, H·D], or of columns `start ..< start + H·D` of a wider x (q and k read straight
    /// out of a fused qkv projection), into a new [N, H·D]; row n uses table row `tableRow(n)`, or is copied as is
    /// when that is nil (DINOv3's CLS and register tokens). Vectorised (`prima_rope`); the same bits as
    /// ``applyReference(_:start:heads:headDim:cos:sin:tableRow:)``.
    public static func apply(_ x: Tensor, start: Int = 0, heads: Int, headDim: Int, cos: [Float], sin: [Float],
                             isa: FloatISA = .best, tableRow: (Int) -> Int?) -> Tensor {
        let (n, stride, rows) = prepare(x, start: start, heads: heads, headDim: headDim, cos: cos, sin: sin, tableRow: tableRow)
        let y = Tensor(uninitialized: [n, heads * headDim], dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in
            prima_rope(isa.code, input.baseAddress! + start, Int64(stride), out.baseAddress!, Int64(n), Int64(heads),
                       Int64(headDim), cos, sin, rows)
        } }
        return y
    }

    /// The plain-loop reference for ``apply(_:start:heads:headDim:cos:sin:isa:tableRow:)``.
    public static func applyReference(_ x: Tensor, start: Int = 0, heads: Int, headDim: Int, cos: [Float], sin: [Float],
                                      tableRow: (Int) -> Int?) -> Tensor {
        let (n, stride, rows) = prepare(x, start: start, heads: heads, headDim: headDim, cos: cos, sin: sin, tableRow: tableRow)
        let input = x.float32Values(), half = headDim / 2, width = heads * headDim
        var out = [Float](repeating: 0, count: n * width)
        for r in 0..<n {
            let source = r * stride + start
            guard rows[r] >= 0 else {
                for i in 0..<width { out[r * width + i] = input[source + i] }
                continue
            }
            let table = Int(rows[r]) * headDim
            for h in 0..<heads {
                for i in 0..<half {
                    let a = input[source + h * headDim + i], b = input[source + h * headDim + half + i]
                    out[r * width + h * headDim + i] = a * cos[table + i] - b * sin[table + i]
                    out[r * width + h * headDim + half + i] = b * cos[table + half + i] + a * sin[table + half + i]
                }
            }
        }
        return Tensor(shape: [n, width], float32: out)
    }

    // MARK: Backward

    /// The fast backward of ``apply(_:start:heads:headDim:cos:sin:isa:tableRow:)``: dx [N, H·D] from dy [N, H·D] (for
    /// a forward that read columns `start ..<` of a wider x, dx is the gradient of those columns).
    ///
    /// The forward is linear and, per pair (i, i + D/2), the rotation [[c, −s], [s′, c′]] (c = cos[i], c′ = cos[i+D/2],
    /// s = sin[i], s′ = sin[i+D/2]); its transpose, dx[i] = dy[i]·c + dy[i+D/2]·s′ and dx[i+D/2] = dy[i+D/2]·c′ −
    /// dy[i]·s, is the rotation by −angle for tables built as `cat(angles, angles)` (1D RoPE and DINOv3's 2D RoPE
    /// alike). So it is `prima_rope` on dy with the sin table's halves swapped and negated (−s′ | −s): negation is
    /// exact, so this gives the same bits as ``backwardReference(_:heads:headDim:cos:sin:tableRow:)``. Rows whose
    /// `tableRow` is nil (DINOv3's CLS and register tokens, copied by the forward) pass dy through.
    public static func backward(_ dy: Tensor, heads: Int, headDim: Int, cos: [Float], sin: [Float], isa: FloatISA = .best,
                                tableRow: (Int) -> Int?) -> Tensor {
        let (n, rowStride, rows) = prepare(dy, start: 0, heads: heads, headDim: headDim, cos: cos, sin: sin, tableRow: tableRow)
        precondition(rowStride == heads * headDim, "rope backward: dy \(ShapeMath.describe(dy.shape)) is not [N, \(heads * headDim)]")
        let half = headDim / 2
        var transposedSin = [Float](repeating: 0, count: sin.count)
        for base in stride(from: 0, to: sin.count - headDim + 1, by: headDim) {
            for i in 0..<half {
                transposedSin[base + i] = -sin[base + half + i]
                transposedSin[base + half + i] = -sin[base + i]
            }
        }
        let dx = Tensor(uninitialized: [n, heads * headDim], dtype: .f32)
        dy.withFloat32 { input in dx.withMutableFloat32 { out in
            prima_rope(isa.code, input.baseAddress!, Int64(rowStride), out.baseAddress!, Int64(n), Int64(heads),
                       Int64(headDim), cos, transposedSin, rows)
        } }
        return dx
    }

    /// The plain-loop reference for ``backward(_:heads:headDim:cos:sin:isa:tableRow:)``: the transpose of each pair's
    /// rotation, written out (dx[i] = dy[i]·c + dy[i+D/2]·s′, dx[i+D/2] = dy[i+D/2]·c′ − dy[i]·s).
    public static func backwardReference(_ dy: Tensor, heads: Int, headDim: Int, cos: [Float], sin: [Float],
                                         tableRow: (Int) -> Int?) -> Tensor {
        let (n, _, rows) = prepare(dy, start: 0, heads: heads, headDim: headDim, cos: cos, sin: sin, tableRow: tableRow)
        let g = dy.float32Values(), half = headDim / 2, width = heads * headDim
        precondition(dy.shape[1] == width, "rope backward: dy \(ShapeMath.describe(dy.shape)) is not [N, \(width)]")
        var dx = g
        for r in 0..<n where rows[r] >= 0 {
            let table = Int(rows[r]) * headDim
            for h in 0..<heads {
                for i in 0..<half {
                    let a = g[r * width + h * headDim + i], b = g[r * width + h * headDim + half + i]
                    dx[r * width + h * headDim + i] = a * cos[table + i] + b * sin[table + half + i]
                    dx[r * width + h * headDim + half + i] = b * cos[table + half + i] - a * sin[table + i]
                }
            }
        }
        return Tensor(shape: [n, width], float32: dx)
    }

    /// (N, row stride of x, table row per row or −1) after checking shapes and table rows.
    private static func prepare(_ x: Tensor, start: Int, heads: Int, headDim: Int, cos: [Float], sin: [Float],
                                tableRow: (Int) -> Int?) -> (Int, Int, [Int64]) {
        precondition(x.shape.count == 2 && start >= 0 && start + heads * headDim <= x.shape[1] && headDim % 2 == 0,
                     "rope: x \(ShapeMath.describe(x.shape)) has no \(heads)×\(headDim) columns from \(start)")
        let rows = (0..<x.shape[0]).map { n -> Int64 in
            guard let row = tableRow(n) else { return -1 }
            precondition(row >= 0 && (row + 1) * headDim <= cos.count && (row + 1) * headDim <= sin.count,
                         "rope: table row \(row) out of range")
            return Int64(row)
        }
        return (x.shape[0], x.shape[1], rows)
    }
}
