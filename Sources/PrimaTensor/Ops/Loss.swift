import Foundation
import PrimaKernels

/// The row-wise ops at the top of a training graph: softmax, cross-entropy (over the whole vocabulary or a
/// restricted set of class columns) and L2 normalisation, each with its backward. Rows are the last dimension of
/// an [N, C] tensor (N = B·T positions, C = V vocabulary or K classes).
public enum Loss {
    /// The label that marks a row as not counted (transformers' and PyTorch's `ignore_index`).
    public static let ignoreIndex = -100

    // MARK: - Softmax

    /// Softmax of each row of x [N, C]: exp(x − max) / Σ exp(x − max), in f32 with the vectorised exp
    /// (`prima_exp`). Its output, the probabilities, is what ``softmaxBackward(_:probabilities:)`` needs.
    public static func softmax(_ x: Tensor) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let p = Tensor(uninitialized: x.shape, dtype: .f32)
        x.withFloat32 { input in p.withMutableFloat32 { out in
            for row in 0..<n {
                let sum = expShifted(input.baseAddress! + row * c, into: out.baseAddress! + row * c, c, shift: rowMax(input.baseAddress! + row * c, c))
                let inverse = 1 / sum
                for j in 0..<c { out[row * c + j] *= inverse }
            }
        } }
        return p
    }

    /// The reference for ``softmax(_:)``: exp and sums in double.
    public static func softmaxReference(_ x: Tensor) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let input = x.float32Values()
        var out = [Float](repeating: 0, count: n * c)
        for row in 0..<n {
            let top = Double(input[row * c..<row * c + c].max() ?? 0)
            let exps = (0..<c).map { exp(Double(input[row * c + $0]) - top) }
            let sum = exps.reduce(0, +)
            for j in 0..<c { out[row * c + j] = Float(exps[j] / sum) }
        }
        return Tensor(shape: x.shape, float32: out)
    }

    /// Backward of ``softmax(_:)`` from its saved output: dx = p ⊙ (dy − Σ_j dy_j p_j), per row. dy and p [N, C].
    public static func softmaxBackward(_ dy: Tensor, probabilities p: Tensor) -> Tensor {
        precondition(dy.shape == p.shape, "softmax backward: dy \(ShapeMath.describe(dy.shape)) for p \(ShapeMath.describe(p.shape))")
        let c = p.shape.last!, n = p.elementCount / max(c, 1)
        let dx = Tensor(uninitialized: p.shape, dtype: .f32)
        dy.withFloat32 { g in p.withFloat32 { probabilities in dx.withMutableFloat32 { out in
            for row in 0..<n {
                let (gr, pr, dr) = (g.baseAddress! + row * c, probabilities.baseAddress! + row * c, out.baseAddress! + row * c)
                var dot: Float = 0
                for j in 0..<c { dot += gr[j] * pr[j] }
                for j in 0..<c { dr[j] = pr[j] * (gr[j] - dot) }
            }
        } } }
        return dx
    }

    /// The reference for ``softmaxBackward(_:probabilities:)``: the Jacobian ∂p_j/∂x_i = p_j (δ_ij − p_i) applied
    /// in double.
    public static func softmaxBackwardReference(_ dy: Tensor, probabilities p: Tensor) -> Tensor {
        precondition(dy.shape == p.shape, "softmax backward: dy \(ShapeMath.describe(dy.shape)) for p \(ShapeMath.describe(p.shape))")
        let c = p.shape.last!, n = p.elementCount / max(c, 1)
        let g = dy.float32Values(), probabilities = p.float32Values()
        var out = [Float](repeating: 0, count: n * c)
        for row in 0..<n {
            for i in 0..<c {
                var sum = 0.0
                for j in 0..<c {
                    let pj = Double(probabilities[row * c + j]), pi = Double(probabilities[row * c + i])
                    sum += Double(g[row * c + j]) * pj * ((i == j ? 1 : 0) - pi)
                }
                out[row * c + i] = Float(sum)
            }
        }
        return Tensor(shape: p.shape, float32: out)
    }

    // MARK: - Cross-entropy

    /// A cross-entropy loss and its gradient with respect to the logits.
    public struct CrossEntropy: Sendable {
        /// The mean of −log softmax(logits)[label] over the counted rows (NaN when no row is counted, as PyTorch's
        /// 0/0); with class weights the weighted mean Σ w·l / Σ w; with a normalizer, the (weighted) sum divided by it.
        public let loss: Float
        /// The rows counted: those whose label is not ``Loss/ignoreIndex``.
        public let count: Int
        /// dLoss/dlogits, times the `lossGradient` given: w[label] · (softmax − onehot(label)) / divisor (w = 1 without
        /// class weights; the divisor the count, the total weight or the normalizer) on counted rows, zero on ignored rows (and on every column outside the class columns of the restricted form). Same shape as the
        /// logits.
        public let logitsGradient: Tensor
    }

    /// Cross-entropy of logits [N, V] against `labels` [N] (each in 0..<V, or ``ignoreIndex``), mean over the
    /// counted rows: `torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="mean")`,
    /// which transformers' ForMaskedLM and (after shifting the labels) ForCausalLM losses call. Each row's
    /// log-sum-exp is max + log Σ exp(x − max) (f32, vectorised exp); the rows' losses are summed in double. The
    /// returned gradient is multiplied by `lossGradient` (the weight of this loss in a sum of losses; 1 alone).
    ///
    /// `classWeights` [V], if given, is PyTorch's `weight=`: row r's loss and gradient are multiplied by
    /// w[label_r], and the mean divides by Σ_r w[label_r] over the counted rows instead of their count
    /// (`CrossEntropyLoss(weight=w)`, reduction mean). A row of weight 0 contributes nothing.
    ///
    /// `normalizer`, if given, replaces that divisor: transformers' losses divide by `num_items_in_batch` when it is
    /// passed, so that the micro-batches of one step add up to the mean over all of them (with class weights, the
    /// step's total weight).
    public static func crossEntropy(_ logits: Tensor, labels: [Int], classWeights: [Float]? = nil, lossGradient: Float = 1,
                                    normalizer: Double? = nil) -> CrossEntropy {
        crossEntropy(logits, columns: nil, labels: labels, classWeights: classWeights, lossGradient: lossGradient, normalizer: normalizer)
    }

    /// The reference for ``crossEntropy(_:labels:classWeights:lossGradient:normalizer:)``: log-sum-exp, softmax and
    /// the mean in double.
    public static func crossEntropyReference(_ logits: Tensor, labels: [Int], classWeights: [Float]? = nil, lossGradient: Float = 1,
                                             normalizer: Double? = nil) -> CrossEntropy {
        crossEntropyReference(logits, columns: nil, labels: labels, classWeights: classWeights, lossGradient: lossGradient, normalizer: normalizer)
    }

    /// Cross-entropy restricted to a vocabulary subset (PRIMA's class tokens, Docs/prima-model.md): for logits
    /// [N, V], `classColumns` [K] (distinct columns, e.g. each class's token id) and `labels` [N] (a class index in
    /// 0..<K, or ``ignoreIndex``), the cross-entropy of logits[:, classColumns] [N, K] as
    /// ``crossEntropy(_:labels:classWeights:lossGradient:normalizer:)`` computes it (unweighted). The gradient is [N, V]
    /// and zero outside the class columns. (When only the K class logits are computed, as the runtime's decoder
    /// does, call ``crossEntropy(_:labels:classWeights:lossGradient:normalizer:)`` on those [N, K] logits instead: the
    /// same numbers.)
    public static func restrictedCrossEntropy(_ logits: Tensor, classColumns: [Int], labels: [Int], lossGradient: Float = 1,
                                              normalizer: Double? = nil) -> CrossEntropy {
        crossEntropy(logits, columns: classColumns, labels: labels, classWeights: nil, lossGradient: lossGradient, normalizer: normalizer)
    }

    /// The reference for ``restrictedCrossEntropy(_:classColumns:labels:lossGradient:normalizer:)``, in double.
    public static func restrictedCrossEntropyReference(_ logits: Tensor, classColumns: [Int], labels: [Int],
                                                       lossGradient: Float = 1, normalizer: Double? = nil) -> CrossEntropy {
        crossEntropyReference(logits, columns: classColumns, labels: labels, classWeights: nil, lossGradient: lossGradient, normalizer: normalizer)
    }

    private static func crossEntropy(_ logits: Tensor, columns: [Int]?, labels: [Int], classWeights: [Float]?, lossGradient: Float,
                                     normalizer: Double?) -> CrossEntropy {
        let (n, v, k, count, totalWeight) = crossEntropyDimensions(logits, columns, labels, classWeights, normalizer)
        let divisor = normalizer ?? totalWeight
        // Every element is written: ignored rows and the columns outside the classes are zero.
        let gradient = Tensor(zeros: logits.shape, dtype: .f32)
        var total = 0.0
        let weight = lossGradient / Float(divisor)
        var gathered = [Float](repeating: 0, count: columns == nil ? 0 : k), exps = [Float](repeating: 0, count: k)
        logits.withFloat32 { input in gradient.withMutableFloat32 { out in
            gathered.withUnsafeMutableBufferPointer { gathered in exps.withUnsafeMutableBufferPointer { e in
                for row in 0..<n where labels[row] != ignoreIndex {
                    // A row of class weight 0 adds nothing (and 0 · ∞ must not reach the gradient when every weight is 0).
                    let classWeight = classWeights?[labels[row]] ?? 1
                    if classWeight == 0 { continue }
                    let source: UnsafePointer<Float>
                    if let columns {
                        for j in 0..<k { gathered[j] = input[row * v + columns[j]] }
                        source = UnsafePointer(gathered.baseAddress!)
                    } else {
                        source = input.baseAddress! + row * v
                    }
                    let top = rowMax(source, k)
                    let sum = expShifted(source, into: e.baseAddress!, k, shift: top)
                    let rowLoss = Double(top + log(sum) - source[labels[row]])
                    total += classWeights == nil ? rowLoss : Double(classWeight) * rowLoss
                    let rowWeight = classWeights == nil ? weight : weight * classWeight
                    let scale = rowWeight / sum
                    let target = out.baseAddress! + row * v
                    if let columns {
                        for j in 0..<k { target[columns[j]] = e[j] * scale }
                        target[columns[labels[row]]] -= rowWeight
                    } else {
                        for j in 0..<k { target[j] = e[j] * scale }
                        target[labels[row]] -= rowWeight
                    }
                }
            } }
        } }
        return CrossEntropy(loss: Float(total / divisor), count: count, logitsGradient: gradient)
    }

    private static func crossEntropyReference(_ logits: Tensor, columns: [Int]?, labels: [Int], classWeights: [Float]?, lossGradient: Float,
                                              normalizer: Double?) -> CrossEntropy {
        let (n, v, k, count, totalWeight) = crossEntropyDimensions(logits, columns, labels, classWeights, normalizer)
        let divisor = normalizer ?? totalWeight
        let input = logits.float32Values()
        var out = [Float](repeating: 0, count: n * v), total = 0.0
        for row in 0..<n where labels[row] != ignoreIndex {
            let w = Double(classWeights?[labels[row]] ?? 1)
            if w == 0 { continue }
            let index = (0..<k).map { columns?[$0] ?? $0 }
            let x = index.map { Double(input[row * v + $0]) }
            let top = x.max()!
            let sum = x.reduce(0) { $0 + exp($1 - top) }
            let logSumExp = top + log(sum)
            total += w * (logSumExp - x[labels[row]])
            for j in 0..<k {
                let p = exp(x[j] - logSumExp), onehot: Double = j == labels[row] ? 1 : 0
                out[row * v + index[j]] = Float(w * (p - onehot) * Double(lossGradient) / divisor)
            }
        }
        return CrossEntropy(loss: Float(total / divisor), count: count, logitsGradient: Tensor(shape: logits.shape, float32: out))
    }

    /// (N, V, K, counted rows, Σ of the counted rows' class weights (their count without weights)); K = V without
    /// class columns.
    private static func crossEntropyDimensions(_ logits: Tensor, _ columns: [Int]?, _ labels: [Int], _ classWeights: [Float]?,
                                               _ normalizer: Double?) -> (Int, Int, Int, Int, Double) {
        precondition(normalizer.map { $0 > 0 && $0.isFinite } ?? true, "cross-entropy: normalizer \(normalizer ?? 0) must be positive")
        precondition(logits.shape.count == 2, "cross-entropy: logits \(ShapeMath.describe(logits.shape)) must be [N, V]")
        let (n, v) = (logits.shape[0], logits.shape[1])
        precondition(labels.count == n, "cross-entropy: \(labels.count) labels for \(n) rows")
        if let columns {
            precondition(!columns.isEmpty && columns.allSatisfy { (0..<v).contains($0) } && Set(columns).count == columns.count,
                         "cross-entropy: class columns must be distinct columns of the \(v) logits")
        }
        let k = columns?.count ?? v
        precondition(labels.allSatisfy { $0 == ignoreIndex || (0..<k).contains($0) }, "cross-entropy: a label outside 0..<\(k) and not \(ignoreIndex)")
        if let classWeights {
            precondition(classWeights.count == k && classWeights.allSatisfy { $0 >= 0 && $0.isFinite },
                         "cross-entropy: \(classWeights.count) class weights for \(k) classes (each finite and ≥ 0)")
        }
        let counted = labels.filter { $0 != ignoreIndex }
        let totalWeight = classWeights.map { w in counted.reduce(0.0) { $0 + Double(w[$1]) } } ?? Double(counted.count)
        return (n, v, k, counted.count, totalWeight)
    }

    /// Cross-entropy against probability targets [N, C] (the alignment stage's soft targets, Docs/prima-model.md
    /// L_soft): `torch.nn.functional.cross_entropy(logits, targets, reduction="mean")` with float targets, i.e.
    /// −Σ_rows Σ_c t_c · log_softmax(x)_c / N. The gradient, times `lossGradient`, is (softmax(x) · Σ_c t_c − t) / N.
    /// ``CrossEntropy/count`` is N. f32 rows (vectorised exp), the loss summed in double.
    public static func softCrossEntropy(_ logits: Tensor, targets: Tensor, lossGradient: Float = 1) -> CrossEntropy {
        let (n, c) = softDimensions(logits, targets)
        let gradient = Tensor(uninitialized: logits.shape, dtype: .f32)
        var total = 0.0
        let weight = lossGradient / Float(n)
        logits.withFloat32 { input in targets.withFloat32 { t in gradient.withMutableFloat32 { out in
            for row in 0..<n {
                let (xr, tr, dr) = (input.baseAddress! + row * c, t.baseAddress! + row * c, out.baseAddress! + row * c)
                let top = rowMax(xr, c)
                let sum = expShifted(xr, into: dr, c, shift: top)
                let logSumExp = top + log(sum)
                var mass: Float = 0, dot: Float = 0
                for j in 0..<c {
                    mass += tr[j]
                    dot += tr[j] * (xr[j] - logSumExp)
                }
                total -= Double(dot)
                // dr holds exp(x − max); softmax = that / sum (not exp(x − logSumExp): an error of one ulp of a
                // large logSumExp would be many ulps of every probability).
                let scale = mass * weight / sum
                for j in 0..<c { dr[j] = dr[j] * scale - tr[j] * weight }
            }
        } } }
        return CrossEntropy(loss: Float(total / Double(n)), count: n, logitsGradient: gradient)
    }

    /// The reference for ``softCrossEntropy(_:targets:lossGradient:)``, in double.
    public static func softCrossEntropyReference(_ logits: Tensor, targets: Tensor, lossGradient: Float = 1) -> CrossEntropy {
        let (n, c) = softDimensions(logits, targets)
        let x = logits.float32Values().map(Double.init), t = targets.float32Values().map(Double.init)
        var out = [Float](repeating: 0, count: n * c), total = 0.0
        for row in 0..<n {
            let values = x[row * c..<(row + 1) * c], top = values.max()!
            let logSumExp = top + log(values.reduce(0) { $0 + exp($1 - top) })
            let mass = t[row * c..<(row + 1) * c].reduce(0, +)
            for j in 0..<c {
                total -= t[row * c + j] * (x[row * c + j] - logSumExp)
                out[row * c + j] = Float((exp(x[row * c + j] - logSumExp) * mass - t[row * c + j]) * Double(lossGradient) / Double(n))
            }
        }
        return CrossEntropy(loss: Float(total / Double(n)), count: n, logitsGradient: Tensor(shape: logits.shape, float32: out))
    }

    private static func softDimensions(_ logits: Tensor, _ targets: Tensor) -> (Int, Int) {
        precondition(logits.shape.count == 2 && targets.shape == logits.shape && logits.shape[0] > 0,
                     "soft cross-entropy: logits \(ShapeMath.describe(logits.shape)) and targets \(ShapeMath.describe(targets.shape)) must be one [N, C]")
        return (logits.shape[0], logits.shape[1])
    }

    // MARK: - L2 normalisation

    /// The default `eps` of `torch.nn.functional.normalize`.
    public static let normalizeEps: Float = 1e-12

    /// Each row of x [N, C] divided by max(‖row‖₂, eps), as `torch.nn.functional.normalize(x, dim=-1, eps=eps)`.
    /// Returns the rows and their norms ‖row‖₂ [N] (before the clamp), which the backward needs. The sum of
    /// squares is accumulated in double and the norm rounded once to f32; each value is then divided by it.
    public static func l2Normalize(_ x: Tensor, eps: Float = normalizeEps) -> (output: Tensor, norms: Tensor) {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        let y = Tensor(uninitialized: x.shape, dtype: .f32), norms = Tensor(uninitialized: [n], dtype: .f32)
        x.withFloat32 { input in y.withMutableFloat32 { out in norms.withMutableFloat32 { norm in
            for row in 0..<n {
                var squares = 0.0
                for j in 0..<c { squares += Double(input[row * c + j]) * Double(input[row * c + j]) }
                norm[row] = Float(squares.squareRoot())
                let denominator = max(norm[row], eps)
                for j in 0..<c { out[row * c + j] = input[row * c + j] / denominator }
            }
        } } }
        return (y, norms)
    }

    /// Backward of ``l2Normalize(_:eps:)`` from its output y and norms: where ‖x‖ ≥ eps (the norm is what divides),
    /// dx = (dy − y · ⟨y, dy⟩) / ‖x‖; where the clamp holds, the divisor is the constant eps and dx = dy / eps.
    /// dy and y [N, C], norms [N]. f32.
    public static func l2NormalizeBackward(_ dy: Tensor, output y: Tensor, norms: Tensor, eps: Float = normalizeEps) -> Tensor {
        let (n, c) = l2Dimensions(dy, y, norms)
        let dx = Tensor(uninitialized: y.shape, dtype: .f32)
        dy.withFloat32 { g in y.withFloat32 { output in norms.withFloat32 { norm in dx.withMutableFloat32 { out in
            for row in 0..<n {
                let (gr, yr, dr) = (g.baseAddress! + row * c, output.baseAddress! + row * c, out.baseAddress! + row * c)
                if norm[row] >= eps {
                    var dot: Float = 0
                    for j in 0..<c { dot += yr[j] * gr[j] }
                    let inverse = 1 / norm[row]
                    for j in 0..<c { dr[j] = (gr[j] - yr[j] * dot) * inverse }
                } else {
                    for j in 0..<c { dr[j] = gr[j] / eps }
                }
            }
        } } } }
        return dx
    }

    /// The reference for ``l2NormalizeBackward(_:output:norms:eps:)``: the Jacobian of x / ‖x‖,
    /// (δ_ij − x_i x_j / ‖x‖²) / ‖x‖, applied in double from x itself (not from the saved output).
    public static func l2NormalizeBackwardReference(_ dy: Tensor, x: Tensor, eps: Float = normalizeEps) -> Tensor {
        let c = x.shape.last!, n = x.elementCount / max(c, 1)
        precondition(dy.shape == x.shape, "l2Normalize backward: dy \(ShapeMath.describe(dy.shape)) for x \(ShapeMath.describe(x.shape))")
        let g = dy.float32Values(), input = x.float32Values()
        var out = [Float](repeating: 0, count: n * c)
        for row in 0..<n {
            let xs = (0..<c).map { Double(input[row * c + $0]) }, gs = (0..<c).map { Double(g[row * c + $0]) }
            let norm = xs.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for i in 0..<c {
                if norm >= Double(eps) {
                    var sum = 0.0
                    for j in 0..<c { sum += gs[j] * ((i == j ? 1 : 0) - xs[i] * xs[j] / (norm * norm)) / norm }
                    out[row * c + i] = Float(sum)
                } else {
                    out[row * c + i] = Float(gs[i] / Double(eps))
                }
            }
        }
        return Tensor(shape: x.shape, float32: out)
    }

    private static func l2Dimensions(_ dy: Tensor, _ y: Tensor, _ norms: Tensor) -> (Int, Int) {
        let c = y.shape.last!, n = y.elementCount / max(c, 1)
        precondition(dy.shape == y.shape && norms.elementCount == n,
                     "l2Normalize backward: dy \(ShapeMath.describe(dy.shape)), y \(ShapeMath.describe(y.shape)), \(norms.elementCount) norms")
        return (n, c)
    }

    // MARK: - Row helpers

    static func rowMax(_ x: UnsafePointer<Float>, _ c: Int) -> Float {
        var top = -Float.infinity
        for j in 0..<c { top = max(top, x[j]) }
        return top
    }

    /// out[j] = exp(x[j] − shift) with the vectorised exp; returns Σ out (f32, in order).
    static func expShifted(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, _ c: Int, shift: Float) -> Float {
        for j in 0..<c { out[j] = x[j] - shift }
        prima_exp(FloatISA.best.code, out, out, Int64(c))
        var sum: Float = 0
        for j in 0..<c { sum += out[j] }
        return sum
    }
}

/// Embedding tables: the lookup and its backward, the scatter-add of gradient rows.
public enum Embedding {
    /// Rows `ids` [N] of table [V, C] → [N, C] (each id in 0..<V).
    public static func lookup(_ table: Tensor, ids: [Int]) -> Tensor {
        let c = table.shape[1]
        precondition(table.shape.count == 2 && ids.allSatisfy { (0..<table.shape[0]).contains($0) }, "embedding: an id outside the table")
        let out = Tensor(uninitialized: [ids.count, c], dtype: .f32)
        table.withFloat32 { rows in out.withMutableFloat32 { dst in
            for (n, id) in ids.enumerated() { (dst.baseAddress! + n * c).update(from: rows.baseAddress! + id * c, count: c) }
        } }
        return out
    }

    /// Backward of ``lookup(_:ids:)``: tableGradient [V, C] += dy [N, C] row n into row ids[n], ACCUMULATED in place
    /// (an id repeated gets the sum of its rows). Positions with `mask[n] == false` (padding) and, if given, every
    /// position holding `paddingId` (PyTorch's `padding_idx`: that row never gets a gradient from the lookup) are
    /// skipped. f32, rows added in order.
    public static func backward(_ dy: Tensor, ids: [Int], tableGradient: Tensor, mask: [Bool]? = nil, paddingId: Int? = nil) {
        let c = dimensions(dy, ids, tableGradient, mask)
        dy.withFloat32 { g in tableGradient.withMutableFloat32 { table in
            for (n, id) in ids.enumerated() where mask?[n] ?? true && id != paddingId {
                let (source, target) = (g.baseAddress! + n * c, table.baseAddress! + id * c)
                for j in 0..<c { target[j] += source[j] }
            }
        } }
    }

    /// The reference for ``backward(_:ids:tableGradient:mask:paddingId:)``: for every table row, the sum in double of
    /// the dy rows that looked it up, added to the buffer.
    public static func backwardReference(_ dy: Tensor, ids: [Int], tableGradient: Tensor, mask: [Bool]? = nil, paddingId: Int? = nil) {
        let c = dimensions(dy, ids, tableGradient, mask)
        let g = dy.float32Values(), v = tableGradient.shape[0]
        tableGradient.withMutableFloat32 { table in
            for row in 0..<v {
                let positions = ids.indices.filter { ids[$0] == row && (mask?[$0] ?? true) && row != paddingId }
                guard !positions.isEmpty else { continue }
                for j in 0..<c {
                    var sum = Double(table[row * c + j])
                    for n in positions { sum += Double(g[n * c + j]) }
                    table[row * c + j] = Float(sum)
                }
            }
        }
    }

    private static func dimensions(_ dy: Tensor, _ ids: [Int], _ tableGradient: Tensor, _ mask: [Bool]?) -> Int {
        precondition(tableGradient.shape.count == 2 && dy.shape == [ids.count, tableGradient.shape[1]],
                     "embedding backward: dy \(ShapeMath.describe(dy.shape)) for \(ids.count) ids into \(ShapeMath.describe(tableGradient.shape))")
        precondition(ids.allSatisfy { (0..<tableGradient.shape[0]).contains($0) }, "embedding backward: an id outside the table")
        precondition(mask.map { $0.count == ids.count } ?? true, "embedding backward: mask of \(mask?.count ?? 0) for \(ids.count) ids")
        return tableGradient.shape[1]
    }
}
