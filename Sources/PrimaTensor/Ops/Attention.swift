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
        run(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale, mask: mask,
            isa: isa, threads: threads, logSumExp: nil)
    }

    /// ``forward(q:k:v:batch:heads:kvHeads:headDim:scale:mask:isa:threads:)`` (the same output bits: the same kernel,
    /// which only also stores each query's log-sum-exp) recording what
    /// ``backward(_:q:k:v:saved:batch:heads:kvHeads:headDim:scale:mask:isa:threads:queryBlock:)``
    /// needs: the output and the per-row log-sum-exp of the masked, scaled scores.
    public static func forwardSaving(q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int, kvHeads: Int, headDim: Int,
                                     scale: Float, mask: AttentionMask, isa: FloatISA = .best, threads: Int? = nil) -> Saved {
        let t = batch > 0 ? q.shape[0] / batch : 0
        var logSumExp = [Float](repeating: 0, count: batch * heads * t)
        let output = logSumExp.withUnsafeMutableBufferPointer { lse in
            run(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale, mask: mask,
                isa: isa, threads: threads, logSumExp: lse.baseAddress)
        }
        return Saved(output: output, logSumExp: logSumExp)
    }

    /// The forward pass, storing the log-sum-exp [B·H, T] too when `logSumExp` is not nil.
    private static func run(q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int, kvHeads: Int, headDim: Int,
                            scale: Float, mask: AttentionMask, isa: FloatISA, threads: Int?,
                            logSumExp: UnsafeMutablePointer<Float>?) -> Tensor {
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
                                             keyBias: bp, logSumExp: logSumExp, status: status.baseAddress!)
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
        let logSumExp: UnsafeMutablePointer<Float>?
        let status: UnsafeMutablePointer<Int32>

        func run(pairs: Range<Int>, statusIndex: Int) {
            status[statusIndex] = prima_attention(isa, q, k, v, out, Int64(batch), Int64(t), Int64(heads), Int64(kvHeads),
                                                  Int64(headDim), scale, lo, hi, keyBias, Int64(pairs.lowerBound),
                                                  Int64(pairs.upperBound), logSumExp)
        }
    }

    private static func withOptionalArray<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let values else { return body(nil) }
        return values.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

// MARK: - Backward

extension Attention {
    /// What ``backward(_:q:k:v:saved:batch:heads:kvHeads:headDim:scale:mask:isa:threads:queryBlock:)`` needs from the
    /// forward pass (``forwardSaving(q:k:v:batch:heads:kvHeads:headDim:scale:mask:isa:threads:)``).
    ///
    /// The per-row log-sum-exp rather than the probabilities: P is [B, H, T, T], quadratic in T (a 8192-token
    /// ModernBERT sequence would keep 256 MiB per head for every layer), while the log-sum-exp is [B, H, T]. The
    /// backward pass recomputes P = exp(s − lse) at the cost of one more Q·Kᵀ product per (sequence, head), the
    /// fifth of its five products; PyTorch's SDPA (flash) backward saves the same.
    public struct Saved: Sendable {
        /// The forward output [B·T, H·D] (its rows give Σ_d dO⊙O, the softmax backward's row term).
        public let output: Tensor
        /// [B·H, T]: entry (b·H + h)·T + i is log Σ_j exp(s_ij) over the keys query i of sequence b sees, with
        /// s = (q·k)·scale as the forward computed it; +inf for a query that sees no key (only a padded query can).
        public let logSumExp: [Float]

        /// Wraps a forward output [B·T, H·D] and its log-sum-exp [B·H, T].
        public init(output: Tensor, logSumExp: [Float]) {
            self.output = output
            self.logSumExp = logSumExp
        }
    }

    /// The input gradients of attention: dq [B·T, H·D], dk and dv [B·T, KV·D].
    public struct Gradients: Sendable {
        /// dLoss/dq [B·T, H·D].
        public let q: Tensor
        /// dLoss/dk [B·T, KV·D], summed over the query heads of each GQA group.
        public let k: Tensor
        /// dLoss/dv [B·T, KV·D], summed over the query heads of each GQA group.
        public let v: Tensor
    }

    /// The fast backward pass: dq, dk, dv from the upstream gradient `dOut` [B·T, H·D].
    ///
    /// Padded queries (`padding[b][i] == 0`) are outside the computation, as the trainers' losses treat them: their
    /// upstream gradient is ignored, so their rows of dq are exactly zero and they add nothing to dk and dv. Padded
    /// keys get exactly zero dk and dv (every unpadded query sees itself, so no unpadded row is blind, and each
    /// gives a padded key probability exactly 0). This equals PyTorch's gradient whenever the loss gives padded
    /// positions no gradient (labels −100); an objective that weights padded rows (a `dot` trace) must zero them
    /// for the two to agree, since PyTorch would carry their garbage outputs' gradient into the real keys.
    ///
    /// Per (sequence, query head), in blocks of `queryBlock` query rows against the key columns the block's
    /// unpadded queries see: S = Q·Kᵀ (sgemm), P = exp(S·scale − lse) (masked entries exactly 0), dV += Pᵀ·dO,
    /// dP = dO·Vᵀ, dS = P ⊙ (dP − Σ_d dO⊙O), dQ = scale·dS·K, dK += scale·dSᵀ·Q (sgemm each). One task per
    /// (sequence, KV head) runs the group's query heads in order, so dk and dv of a GQA group are summed in one
    /// fixed order and the bits do not depend on `threads` (default: the active processor count for large
    /// problems, else 1). The products are small (T × T × D per head), so OpenBLAS runs single-threaded meanwhile
    /// (``BLAS/singleThreaded(_:)``) and the parallelism is the pool's: on 2 cores, OpenBLAS threading each
    /// product made a ViT-B batch-8 backward 4x slower. `queryBlock` bounds the workspace (2·queryBlock·T floats per
    /// task), skips the key columns no query of a block sees (causal and sliding-window masks), and changes only the
    /// rounding; 64 measured best or near it on ViT-B, BERT and Qwen3 shapes.
    public static func backward(_ dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, saved: Saved, batch: Int, heads: Int,
                                kvHeads: Int, headDim: Int, scale: Float, mask: AttentionMask, isa: FloatISA = .best,
                                threads: Int? = nil, queryBlock: Int = 64) -> Gradients {
        check(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim)
        let t = q.shape[0] / batch
        precondition(dOut.shape == q.shape && saved.output.shape == q.shape, "attention backward: dOut or output shape")
        precondition(saved.logSumExp.count == batch * heads * t, "attention backward: log-sum-exp is not [B·H, T]")
        precondition(mask.padding.map { $0.count == batch && $0.allSatisfy { $0.count == t } } ?? true,
                     "attention backward: padding mask is not [\(batch)][\(t)]")
        precondition(queryBlock > 0, "attention backward: query block \(queryBlock)")
        let dq = Tensor(zeros: q.shape, dtype: .f32), dk = Tensor(zeros: k.shape, dtype: .f32)
        let dv = Tensor(zeros: k.shape, dtype: .f32)
        guard t > 0 else { return Gradients(q: dq, k: dk, v: dv) }
        var lo = [Int](repeating: 0, count: t), hi = lo
        for i in 0..<t {
            let visible = mask.keyRange(query: i, count: t)
            (lo[i], hi[i]) = (visible.lowerBound, visible.upperBound)
        }
        // keyBias [B·T]: −inf where a key is padding (exp gives exactly 0); padded [B·T]: 1 where a query is padding.
        let keyBias = mask.padding.map { $0.flatMap { $0.map { $0 == 0 ? -Float.infinity : 0 } } }
            ?? [Float](repeating: 0, count: batch * t)
        let padded = mask.padding.map { $0.flatMap { $0.map { $0 == 0 } } } ?? [Bool](repeating: false, count: batch * t)
        let tasks = batch * kvHeads
        let wanted = threads ?? (batch * heads * t * t * headDim >= 1 << 20 ? ProcessInfo.processInfo.activeProcessorCount : 1)
        let chunks = wanted > 1 ? max(1, min(4 * wanted, tasks)) : 1
        dOut.withFloat32 { gp in q.withFloat32 { qp in k.withFloat32 { kp in v.withFloat32 { vp in
            saved.output.withFloat32 { op in saved.logSumExp.withUnsafeBufferPointer { lp in
                dq.withMutableFloat32 { dqp in dk.withMutableFloat32 { dkp in dv.withMutableFloat32 { dvp in
                    lo.withUnsafeBufferPointer { lop in hi.withUnsafeBufferPointer { hip in
                        keyBias.withUnsafeBufferPointer { bp in padded.withUnsafeBufferPointer { pp in
                            // Every pointer outlives the calls; each task writes only its own (sequence, KV head)
                            // columns of dk and dv and its query heads' columns of dq.
                            let call = BackwardCall(isa: isa.code, dOut: gp.baseAddress!, q: qp.baseAddress!,
                                                    k: kp.baseAddress!, v: vp.baseAddress!, out: op.baseAddress!,
                                                    logSumExp: lp.baseAddress!, dq: dqp.baseAddress!,
                                                    dk: dkp.baseAddress!, dv: dvp.baseAddress!, t: t, heads: heads,
                                                    kvHeads: kvHeads, headDim: headDim, scale: scale,
                                                    lo: lop.baseAddress!, hi: hip.baseAddress!, keyBias: bp.baseAddress!,
                                                    padded: pp.baseAddress!, queryBlock: min(queryBlock, t))
                            BLAS.singleThreaded {
                                parallelFor(chunks) { @Sendable chunk in
                                    for task in tasks * chunk / chunks..<tasks * (chunk + 1) / chunks { call.run(task: task) }
                                }
                            }
                        } }
                    } }
                } } }
            } }
        } } } }
        return Gradients(q: dq, k: dk, v: dv)
    }

    /// The plain-loop reference for ``backward(_:q:k:v:saved:batch:heads:kvHeads:headDim:scale:mask:isa:threads:queryBlock:)``:
    /// the softmax recomputed from q and k and every product summed in double, with the same treatment of padding
    /// (padded queries ignored). dS = P ⊙ (dP − Σ_j P·dP) here, the exact-arithmetic twin of Σ_d dO⊙O.
    public static func backwardReference(_ dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, batch: Int, heads: Int,
                                         kvHeads: Int, headDim: Int, scale: Float, mask: AttentionMask) -> Gradients {
        check(q: q, k: k, v: v, batch: batch, heads: heads, kvHeads: kvHeads, headDim: headDim)
        let t = q.shape[0] / batch
        precondition(dOut.shape == q.shape, "attention backward: dOut shape")
        let g = dOut.float32Values(), qv = q.float32Values(), kv = k.float32Values(), vv = v.float32Values()
        let qStride = heads * headDim, kvStride = kvHeads * headDim, group = heads / kvHeads, s = Double(scale)
        var dq = [Double](repeating: 0, count: qv.count), dk = [Double](repeating: 0, count: kv.count), dv = dk
        for b in 0..<batch {
            for h in 0..<heads {
                let kvHead = h / group
                func qi(_ i: Int, _ d: Int) -> Int { (b * t + i) * qStride + h * headDim + d }
                func kj(_ j: Int, _ d: Int) -> Int { (b * t + j) * kvStride + kvHead * headDim + d }
                for i in 0..<t where mask.padding?[b][i] ?? 1 != 0 {
                    let keys = mask.keyRange(query: i, count: t).filter { mask.padding?[b][$0] ?? 1 != 0 }
                    var p = keys.map { j in
                        var dot = 0.0
                        for d in 0..<headDim { dot += Double(qv[qi(i, d)]) * Double(kv[kj(j, d)]) }
                        return dot * s
                    }
                    let maximum = p.max() ?? 0
                    p = p.map { exp($0 - maximum) }
                    let total = p.reduce(0, +)
                    p = p.map { $0 / total }
                    let dp = keys.map { j in
                        var dot = 0.0
                        for d in 0..<headDim { dot += Double(g[qi(i, d)]) * Double(vv[kj(j, d)]) }
                        return dot
                    }
                    var delta = 0.0
                    for n in keys.indices { delta += p[n] * dp[n] }
                    for (n, j) in keys.enumerated() {
                        let ds = p[n] * (dp[n] - delta)
                        for d in 0..<headDim {
                            dq[qi(i, d)] += s * ds * Double(kv[kj(j, d)])
                            dk[kj(j, d)] += s * ds * Double(qv[qi(i, d)])
                            dv[kj(j, d)] += p[n] * Double(g[qi(i, d)])
                        }
                    }
                }
            }
        }
        return Gradients(q: Tensor(shape: q.shape, float32: dq.map(Float.init)),
                         k: Tensor(shape: k.shape, float32: dk.map(Float.init)),
                         v: Tensor(shape: k.shape, float32: dv.map(Float.init)))
    }

    /// One backward call's arguments, shared by the threads that each take a range of (sequence, KV head) tasks.
    private struct BackwardCall: @unchecked Sendable {
        let isa: Int32
        let dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>
        let out: UnsafePointer<Float>, logSumExp: UnsafePointer<Float>
        let dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>
        let t: Int, heads: Int, kvHeads: Int, headDim: Int
        let scale: Float
        let lo: UnsafePointer<Int>, hi: UnsafePointer<Int>
        let keyBias: UnsafePointer<Float>, padded: UnsafePointer<Bool>
        let queryBlock: Int

        /// Task b·KV + kvHead: every query head of the group, in order, accumulating into that KV head's dk and dv.
        func run(task: Int) {
            let b = task / kvHeads, kvHead = task % kvHeads, group = heads / kvHeads
            let ldq = heads * headDim, ldkv = kvHeads * headDim
            // p [queryBlock, width] scores then probabilities; dp [queryBlock, width] dP then dS (width ≤ T).
            let p = UnsafeMutablePointer<Float>.allocate(capacity: queryBlock * t)
            let dp = UnsafeMutablePointer<Float>.allocate(capacity: queryBlock * t)
            defer { p.deallocate(); dp.deallocate() }
            let kb = k + b * t * ldkv + kvHead * headDim, vb = v + b * t * ldkv + kvHead * headDim
            let dkb = dk + b * t * ldkv + kvHead * headDim, dvb = dv + b * t * ldkv + kvHead * headDim
            let bias = keyBias + b * t, skip = padded + b * t
            for h in kvHead * group..<(kvHead + 1) * group {
                let qh = q + b * t * ldq + h * headDim, gh = dOut + b * t * ldq + h * headDim
                let oh = out + b * t * ldq + h * headDim, dqh = dq + b * t * ldq + h * headDim
                let lse = logSumExp + (b * heads + h) * t
                for i0 in stride(from: 0, to: t, by: queryBlock) {
                    let rows = min(queryBlock, t - i0)
                    // The key columns [c0, c1) some unpadded query of the block sees; none: dq stays zero.
                    var c0 = t, c1 = 0
                    for i in i0..<i0 + rows where !skip[i] { (c0, c1) = (min(c0, lo[i]), max(c1, hi[i])) }
                    guard c1 > c0 else { continue }
                    let width = c1 - c0
                    // S = Q·Kᵀ, then P = exp(S·scale − lse) with masked keys and padded queries at −inf (P = 0).
                    BLAS.sgemm(transB: true, m: rows, n: width, k: headDim, a: qh + i0 * ldq, lda: ldq,
                               b: kb + c0 * ldkv, ldb: ldkv, c: p, ldc: width)
                    for r in 0..<rows {
                        let i = i0 + r, row = p + r * width   // row[j − c0] is key j
                        guard !skip[i] else {
                            row.update(repeating: -.infinity, count: width)
                            continue
                        }
                        let shift = lse[i], keyBias = bias + c0
                        for j in 0..<lo[i] - c0 { row[j] = -.infinity }
                        for j in lo[i] - c0..<hi[i] - c0 { row[j] = row[j] * scale - shift + keyBias[j] }
                        for j in hi[i] - c0..<width { row[j] = -.infinity }
                    }
                    prima_exp(isa, p, p, Int64(rows * width))
                    // dV[c0..<c1] += Pᵀ·dO
                    BLAS.sgemm(transA: true, m: width, n: headDim, k: rows, a: p, lda: width, b: gh + i0 * ldq, ldb: ldq,
                               beta: 1, c: dvb + c0 * ldkv, ldc: ldkv)
                    // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ_d dO⊙O) in place (rows of padded queries: 0).
                    BLAS.sgemm(transB: true, m: rows, n: width, k: headDim, a: gh + i0 * ldq, lda: ldq,
                               b: vb + c0 * ldkv, ldb: ldkv, c: dp, ldc: width)
                    for r in 0..<rows {
                        let i = i0 + r, pr = p + r * width, dr = dp + r * width
                        guard !skip[i] else {
                            dr.update(repeating: 0, count: width)
                            continue
                        }
                        var delta: Float = 0
                        for e in 0..<headDim { delta += gh[i * ldq + e] * oh[i * ldq + e] }
                        for j in 0..<width { dr[j] = pr[j] * (dr[j] - delta) }
                    }
                    // dQ = scale·dS·K ; dK[c0..<c1] += scale·dSᵀ·Q
                    BLAS.sgemm(m: rows, n: headDim, k: width, alpha: scale, a: dp, lda: width, b: kb + c0 * ldkv,
                               ldb: ldkv, c: dqh + i0 * ldq, ldc: ldq)
                    BLAS.sgemm(transA: true, m: width, n: headDim, k: rows, alpha: scale, a: dp, lda: width,
                               b: qh + i0 * ldq, ldb: ldq, beta: 1, c: dkb + c0 * ldkv, ldc: ldkv)
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
