import Foundation
import PrimaKernels

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
    /// The fast path, `prima_attention`: per block of 4 query rows, the scores against the keys the block may see, the
    /// mask, the softmax (vector exp) and P·V in one pass, in f32. The (sequence, head) pairs are split over up to
    /// `threads` threads (default: the active processor count; small problems use one), in up to 4 pieces per
    /// thread; each output element depends only on its own pair, so the bits do not depend on the thread count.
    public static func forward(q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int, kvHeads: Int, headDim: Int,
                               scale: Float, mask: AttentionMask, isa: FloatISA = .best, threads: Int? = nil) -> Tensor {
        let t = q.shape[0] / batch
        check(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim)
        precondition(mask.padding.map { $0.count == batch && $0.allSatisfy { $0.count == t } } ?? true,
                     "attention: padding mask is not [\(batch)][\(t)]")
        let out = Tensor(uninitialized: q.shape, dtype: .f32)
        guard t > 0 else { return out }
        // Query i sees keys [lo[i], hi[i]) before padding; keyBias [B·T] is −FLT_MAX where a key is padding.
        var lo = [Int32](repeating: 0, count: t), hi = lo
        for i in 0..<t {
            let visible = mask.keyRange(query: i, count: t)
            (lo[i], hi[i]) = (Int32(visible.lowerBound), Int32(visible.upperBound))
        }
        let keyBias = mask.padding.map { rows in rows.flatMap { $0.map { $0 == 0 ? -Float.greatestFiniteMagnitude : 0 } } }
        let pairs = batch * heads
        let wanted = threads ?? (pairs * t * t * headDim >= 1 << 20 ? ProcessInfo.processInfo.activeProcessorCount : 1)
        // Up to 4 pieces per thread, taken in turn: a thread that wakes late takes fewer.
        let chunks = wanted > 1 ? max(1, min(4 * wanted, pairs)) : 1
        let status = UnsafeMutableBufferPointer<Int32>.allocate(capacity: chunks)
        defer { status.deallocate() }
        q.withFloat32 { qp in k.withFloat32 { kp in v.withFloat32 { vp in out.withMutableFloat32 { op in
            lo.withUnsafeBufferPointer { lp in hi.withUnsafeBufferPointer { hp in
                withOptionalArray(keyBias) { bp in
                    // Every pointer outlives the calls; the threads write disjoint (sequence, head) columns of out.
                    let call = AttentionCall(isa: isa.code, q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!,
                                             out: op.baseAddress!, batch: batch, t: t, heads: heads, kvHeads: kvHeads,
                                             headDim: headDim, scale: scale, lo: lp.baseAddress!, hi: hp.baseAddress!,
                                             keyBias: bp, status: status.baseAddress!)
                    let run = { @Sendable (chunk: Int) in
                        call.run(pairs: pairs * chunk / chunks..<pairs * (chunk + 1) / chunks, statusIndex: chunk)
                    }
                    parallelFor(chunks, run)
                }
            } }
        } } } }
        precondition(status.allSatisfy { $0 == 0 }, "attention: prima_attention failed (workspace for T = \(t), D = \(headDim))")
        return out
    }

    /// The plain-loop reference for ``forward(q:k:v:batch:heads:kvHeads:headDim:scale:mask:isa:threads:)``.
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

    /// One prima_attention call's arguments, shared by the threads that each take a range of (sequence, head) pairs.
    private struct AttentionCall: @unchecked Sendable {
        let isa: Int32
        let q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>
        let out: UnsafeMutablePointer<Float>
        let batch: Int, t: Int, heads: Int, kvHeads: Int, headDim: Int
        let scale: Float
        let lo: UnsafePointer<Int32>, hi: UnsafePointer<Int32>
        let keyBias: UnsafePointer<Float>?
        let status: UnsafeMutablePointer<Int32>

        func run(pairs: Range<Int>, statusIndex: Int) {
            status[statusIndex] = prima_attention(isa, q, k, v, out, Int64(batch), Int64(t), Int64(heads), Int64(kvHeads),
                                                  Int64(headDim), scale, lo, hi, keyBias, Int64(pairs.lowerBound),
                                                  Int64(pairs.upperBound))
        }
    }

    private static func withOptionalArray<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let values else { return body(nil) }
        return values.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
