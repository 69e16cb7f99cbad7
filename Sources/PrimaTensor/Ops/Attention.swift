/// Which keys each query may attend to: an optional padding mask per sequence (key j of sequence b is hidden
/// when `padding[b][j] == 0`) combined with a band of key positions around each query (everything, causal, or a
/// sliding window). Disallowed scores get `-Float.greatestFiniteMagnitude` added, as transformers' eager masks
/// do, so a row with no allowed key becomes a uniform average (garbage, as in transformers: such rows are
/// padding and never compared).
public struct AttentionMask: Sendable {
    /// The band of keys a query sees.
    public enum Band: Sendable, Equatable {
        /// Every key.
        case all
        /// Keys j ≤ i.
        case causal
        /// Keys with |i − j| ≤ radius.
        case window(radius: Int)
    }

    public let band: Band
    /// [B][T] attention mask, or nil for none.
    public let padding: [[Int]]?

    public init(band: Band, padding: [[Int]]?) {
        self.band = band
        self.padding = padding
    }

    /// No mask (DINOv3).
    public static let none = AttentionMask(band: .all, padding: nil)

    /// Keys whose attention_mask is 0 are hidden (bidirectional encoders).
    public static func padding(_ mask: [[Int]]) -> AttentionMask { AttentionMask(band: .all, padding: mask) }

    /// Causal plus padding (Qwen3).
    public static func causal(padding mask: [[Int]]) -> AttentionMask { AttentionMask(band: .causal, padding: mask) }

    /// Bidirectional sliding window plus padding (ModernBERT local layers).
    public static func slidingWindow(radius: Int, padding mask: [[Int]]) -> AttentionMask {
        AttentionMask(band: .window(radius: radius), padding: mask)
    }

    /// The keys `[lower, upper)` query `i` may see among `count`, before padding.
    func keyRange(query i: Int, count: Int) -> Range<Int> {
        switch band {
        case .all: return 0..<count
        case .causal: return 0..<min(i + 1, count)
        case .window(let radius): return max(0, i - radius)..<min(count, i + radius + 1)
        }
    }
}

/// Multi-head scaled dot-product attention with grouped KV heads, eager softmax in f32.
///
/// Layouts: q [B·T, H·D], k and v [B·T, KV·D] (rows are tokens, head h occupies columns h·D..<(h+1)·D); query
/// head h reads KV head h / (H / KV). Output [B·T, H·D] (heads merged, before the output projection).
public enum Attention {
    /// The fast path: two sgemm calls per (sequence, head) on strided head views.
    public static func forward(q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int, kvHeads: Int, headDim: Int,
                               scale: Float, mask: AttentionMask) -> Tensor {
        let t = q.shape[0] / batch
        check(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim)
        let qStride = heads * headDim, kvStride = kvHeads * headDim, group = heads / kvHeads
        let out = Tensor(zeros: q.shape, dtype: .f32)
        var scores = [Float](repeating: 0, count: t * t)
        q.withFloat32 { qp in k.withFloat32 { kp in v.withFloat32 { vp in out.withMutableFloat32 { op in
            scores.withUnsafeMutableBufferPointer { sp in
                for b in 0..<batch {
                    for h in 0..<heads {
                        let kvHead = h / group
                        let qBase = qp.baseAddress! + b * t * qStride + h * headDim
                        let kBase = kp.baseAddress! + b * t * kvStride + kvHead * headDim
                        let vBase = vp.baseAddress! + b * t * kvStride + kvHead * headDim
                        // scores [T, T] = scale · Q_h · K_hᵀ
                        BLAS.sgemm(transB: true, m: t, n: t, k: headDim, alpha: scale, a: qBase, lda: qStride,
                                   b: kBase, ldb: kvStride, c: sp.baseAddress!, ldc: t)
                        softmaxRows(sp, rows: t, columns: t, batchIndex: b, mask: mask)
                        // out_h [T, D] = P · V_h
                        BLAS.sgemm(m: t, n: headDim, k: t, a: sp.baseAddress!, lda: t, b: vBase, ldb: kvStride,
                                   c: op.baseAddress! + b * t * qStride + h * headDim, ldc: qStride)
                    }
                }
            }
        } } } }
        return out
    }

    /// The plain-loop reference for ``forward(q:k:v:batch:heads:kvHeads:headDim:scale:mask:)``.
    public static func reference(q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int, kvHeads: Int, headDim: Int,
                                 scale: Float, mask: AttentionMask) -> Tensor {
        let t = q.shape[0] / batch
        check(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim)
        let qv = q.float32Values(), kv = k.float32Values(), vv = v.float32Values()
        let qStride = heads * headDim, kvStride = kvHeads * headDim, group = heads / kvHeads
        var out = [Float](repeating: 0, count: qv.count)
        var row = [Float](repeating: 0, count: t)
        for b in 0..<batch {
            for h in 0..<heads {
                let kvHead = h / group
                for i in 0..<t {
                    for j in 0..<t {
                        var dot = 0.0
                        for d in 0..<headDim {
                            dot += Double(qv[(b * t + i) * qStride + h * headDim + d]) * Double(kv[(b * t + j) * kvStride + kvHead * headDim + d])
                        }
                        row[j] = Float(dot) * scale
                    }
                    row.withUnsafeMutableBufferPointer { softmaxRow($0.baseAddress!, columns: t, batchIndex: b, query: i, mask: mask) }
                    for d in 0..<headDim {
                        var sum = 0.0
                        for j in 0..<t { sum += Double(row[j]) * Double(vv[(b * t + j) * kvStride + kvHead * headDim + d]) }
                        out[(b * t + i) * qStride + h * headDim + d] = Float(sum)
                    }
                }
            }
        }
        return Tensor(shape: q.shape, float32: out)
    }

    private static func check(q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int, kvHeads: Int, headDim: Int) {
        precondition(heads % kvHeads == 0, "attention: \(heads) heads over \(kvHeads) KV heads")
        precondition(q.shape.count == 2 && q.shape[1] == heads * headDim && q.shape[0] % batch == 0, "attention: q shape")
        precondition(k.shape == [q.shape[0], kvHeads * headDim] && v.shape == k.shape, "attention: k/v shape")
    }

    private static func softmaxRows(_ scores: UnsafeMutableBufferPointer<Float>, rows: Int, columns: Int, batchIndex: Int,
                                    mask: AttentionMask) {
        for i in 0..<rows { softmaxRow(scores.baseAddress! + i * columns, columns: columns, batchIndex: batchIndex, query: i, mask: mask) }
    }

    /// Masks (additively, as transformers does) and softmaxes one row of scores in place.
    private static func softmaxRow(_ row: UnsafeMutablePointer<Float>, columns: Int, batchIndex: Int, query: Int,
                                   mask: AttentionMask) {
        let visible = mask.keyRange(query: query, count: columns)
        for j in 0..<visible.lowerBound { row[j] += -Float.greatestFiniteMagnitude }
        for j in visible.upperBound..<columns { row[j] += -Float.greatestFiniteMagnitude }
        if let padding = mask.padding?[batchIndex] {
            for j in visible where padding[j] == 0 { row[j] += -Float.greatestFiniteMagnitude }
        }
        var maximum = -Float.infinity
        for j in 0..<columns { maximum = max(maximum, row[j]) }
        var sum: Float = 0
        for j in 0..<columns {
            row[j] = expf(row[j] - maximum)
            sum += row[j]
        }
        let inverse = 1 / sum
        for j in 0..<columns { row[j] *= inverse }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
