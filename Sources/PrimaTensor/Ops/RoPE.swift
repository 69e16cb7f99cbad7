import Foundation

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

    /// Rotates every head of x [N, H·D]; row n uses table row `tableRow(n)`, or is left as is when that is nil
    /// (DINOv3's CLS and register tokens).
    public static func apply(_ x: Tensor, heads: Int, headDim: Int, cos: [Float], sin: [Float],
                             tableRow: (Int) -> Int?) -> Tensor {
        precondition(x.shape.count == 2 && x.shape[1] == heads * headDim, "rope: x \(ShapeMath.describe(x.shape))")
        let half = headDim / 2, width = heads * headDim
        let y = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in cos.withUnsafeBufferPointer { cosTable in
            sin.withUnsafeBufferPointer { sinTable in
                for n in 0..<x.shape[0] {
                    let source = input.baseAddress! + n * width, target = out.baseAddress! + n * width
                    guard let row = tableRow(n) else {
                        target.update(from: source, count: width)
                        continue
                    }
                    precondition((row + 1) * headDim <= cosTable.count && (row + 1) * headDim <= sinTable.count,
                                 "rope: table row \(row) out of range")
                    let c = cosTable.baseAddress! + row * headDim, s = sinTable.baseAddress! + row * headDim
                    for h in 0..<heads {
                        let a = source + h * headDim, b = a + half, ya = target + h * headDim, yb = ya + half
                        for i in 0..<half {
                            ya[i] = a[i] * c[i] - b[i] * s[i]
                            yb[i] = b[i] * c[i + half] + a[i] * s[i + half]
                        }
                    }
                }
            }
        } } }
        return y
    }
}
