import Foundation

/// PRIMA's stage-2 alignment losses (Docs/prima-model.md; the exact arithmetic is Formats/prima-trace.md §11.11):
/// L_img (view-1-anchored NT-Xent over the image CLS features), L_glo (symmetric image/text CLS InfoNCE), L_loc
/// (each text token against its attended visual context, or the mean-pooled `direct` ablation) and L_soft (soft
/// cross-entropy against metadata-similarity targets), weighted and summed.
///
/// ``evaluate(_:settings:)`` is the fast path: the loss and its gradient with respect to every feature together,
/// every matrix product an sgemm, every row op the ``Loss`` op (softmax, cross-entropy, L2 normalisation) whose
/// backward is tested on its own. ``reference(_:settings:)`` is the plain float64 forward the tests difference.
public enum AlignmentLoss {
    /// How L_loc pairs text tokens with the image (Formats/prima-trace.md §11.11).
    public enum LocalMode: String, Sendable, CaseIterable {
        /// Each text token against its attention-pooled patches, contrasted over the tokens of its own case.
        case attention
        /// The ablation without attention: mean-pooled tokens against mean-pooled patches, across the batch.
        case direct
    }

    /// The loss's hyper-parameters (defaults: Docs/prima-model.md).
    public struct Settings: Sendable, Equatable {
        /// The temperature of sim(a, b) = cos(a, b) / tau.
        public var tau: Float
        /// The temperature of the soft targets softmax(⟨y_i, y_j⟩ / tauLabel).
        public var tauLabel: Float
        /// β_img, β_glo, β_loc, β_soft; an ablation sets one to 0.
        public var weights: [Float]
        public var localMode: LocalMode

        public init(tau: Float = 0.07, tauLabel: Float = 1, weights: [Float] = [0.2, 0.3, 0.2, 0.3], localMode: LocalMode = .attention) {
            precondition(weights.count == 4, "alignment loss: four weights (img, glo, loc, soft), got \(weights.count)")
            self.tau = tau
            self.tauLabel = tauLabel
            self.weights = weights
            self.localMode = localMode
        }
    }

    /// The term names in the order of ``Result/terms`` and of `/loss_terms`.
    public static let termNames = ["img", "glo", "loc", "soft"]

    /// What the losses read for a batch of N cases, all projected to the alignment width d.
    public struct Features: Sendable {
        /// [2N, d]: the image CLS features, view 1 of cases 0..<N, then view 2 of the same cases.
        public let imageGlobal: Tensor
        /// [N, d]: the text CLS features.
        public let textGlobal: Tensor
        /// [2N·Np, d]: the patch features, image r's at rows r·Np ..< (r+1)·Np (images in imageGlobal's order).
        public let imageLocal: Tensor
        /// [R, d]: rows holding the text token features (R = N·T for a padded batch).
        public let textLocal: Tensor
        /// [N]: the rows of textLocal that are case i's local tokens; none empty.
        public let localRows: [Range<Int>]
        /// [N, D]: the metadata vectors y_i of L_soft.
        public let softTargets: Tensor

        public init(imageGlobal: Tensor, textGlobal: Tensor, imageLocal: Tensor, textLocal: Tensor, localRows: [Range<Int>],
                    softTargets: Tensor) {
            let n = textGlobal.shape[0], d = textGlobal.shape[1]
            precondition(imageGlobal.shape == [2 * n, d], "alignment: image features \(ShapeMath.describe(imageGlobal.shape)) for \(n) cases of width \(d)")
            precondition(imageLocal.shape.count == 2 && imageLocal.shape[1] == d && imageLocal.shape[0] % (2 * n) == 0,
                         "alignment: patch features \(ShapeMath.describe(imageLocal.shape)) are not [2·\(n)·Np, \(d)]")
            precondition(textLocal.shape.count == 2 && textLocal.shape[1] == d, "alignment: text token features \(ShapeMath.describe(textLocal.shape))")
            precondition(localRows.count == n && localRows.allSatisfy { !$0.isEmpty && $0.upperBound <= textLocal.shape[0] },
                         "alignment: every case needs a non-empty range of local text rows")
            precondition(softTargets.shape.count == 2 && softTargets.shape[0] == n, "alignment: soft targets \(ShapeMath.describe(softTargets.shape))")
            self.imageGlobal = imageGlobal.toFloat32()
            self.textGlobal = textGlobal.toFloat32()
            self.imageLocal = imageLocal.toFloat32()
            self.textLocal = textLocal.toFloat32()
            self.localRows = localRows
            self.softTargets = softTargets.toFloat32()
        }

        var cases: Int { textGlobal.shape[0] }
        var width: Int { textGlobal.shape[1] }
        var patches: Int { imageLocal.shape[0] / (2 * cases) }
    }

    /// The loss and its gradient.
    public struct Result: Sendable {
        /// L_img, L_glo, L_loc, L_soft, unweighted.
        public let terms: [Float]
        /// Σ β·term.
        public let loss: Float
        /// dLoss/d(feature), each of its feature's shape (zero at textLocal rows outside the local rows).
        public let imageGlobal, textGlobal, imageLocal, textLocal: Tensor
    }

    /// The four terms, the weighted loss and dLoss/d(every feature), in f32 (Formats/prima-trace.md §11.11).
    public static func evaluate(_ features: Features, settings: Settings) -> Result {
        let n = features.cases, d = features.width, np = features.patches
        let tau = settings.tau, w = settings.weights
        let image = Rows(features.imageGlobal), text = Rows(features.textGlobal)
        let (nImage, imageNorms) = image.normalized(), (nText, textNorms) = text.normalized()
        var dnImage = Rows(zeros: 2 * n, d), dnText = Rows(zeros: n, d)
        var terms = [Double](repeating: 0, count: 4)

        // L_img: rows of view 1 against [view 2; view 1], the anchor's own column left out.
        let view1 = nImage.rows(0..<n), candidates = nImage.rows(n..<(2 * n)).stacked(on: view1)
        let full = view1.times(candidates, transposed: true, scale: 1 / tau)                       // [N, 2N]
        let kept = (0..<n).map { i in Array(0..<n) + (0..<n).filter { $0 != i }.map { n + $0 } }  // [N][2N − 1]
        let imageEntropy = Loss.crossEntropy(full.gather(kept).tensor, labels: Array(0..<n), lossGradient: w[0])
        terms[0] = Double(imageEntropy.loss)
        let dFull = Rows(imageEntropy.logitsGradient).scatter(kept, columns: 2 * n)
        dnImage.add(dFull.times(candidates, scale: 1 / tau), at: 0)
        let dCandidates = dFull.transposedTimes(view1, scale: 1 / tau)                               // [2N, d]
        dnImage.add(dCandidates.rows(0..<n), at: n)
        dnImage.add(dCandidates.rows(n..<(2 * n)), at: 0)

        // L_glo and L_soft, per view: S(G_j, Q) and S(Q, G_j).
        let targets = Rows(Loss.softmax(Rows(features.softTargets).times(Rows(features.softTargets), transposed: true,
                                                                         scale: 1 / settings.tauLabel).tensor))
        let targetsT = targets.transposed()
        for view in 0..<2 {
            let g = nImage.rows((view * n)..<((view + 1) * n))
            let imageToText = g.times(nText, transposed: true, scale: 1 / tau), textToImage = nText.times(g, transposed: true, scale: 1 / tau)
            let glo1 = Loss.crossEntropy(imageToText.tensor, labels: Array(0..<n), lossGradient: w[1] / 4)
            let glo2 = Loss.crossEntropy(textToImage.tensor, labels: Array(0..<n), lossGradient: w[1] / 4)
            let soft1 = Loss.softCrossEntropy(imageToText.tensor, targets: targets.tensor, lossGradient: w[3] / Float(4 * n))
            let soft2 = Loss.softCrossEntropy(textToImage.tensor, targets: targetsT.tensor, lossGradient: w[3] / Float(4 * n))
            terms[1] += (Double(glo1.loss) + Double(glo2.loss)) / 4
            terms[3] += (Double(soft1.loss) + Double(soft2.loss)) / Double(4 * n)
            var dImageToText = Rows(glo1.logitsGradient), dTextToImage = Rows(glo2.logitsGradient)
            dImageToText.add(Rows(soft1.logitsGradient), at: 0)
            dTextToImage.add(Rows(soft2.logitsGradient), at: 0)
            var dg = dImageToText.times(nText, scale: 1 / tau)
            dg.add(dTextToImage.transposedTimes(nText, scale: 1 / tau), at: 0)
            dnImage.add(dg, at: view * n)
            dnText.add(dImageToText.transposedTimes(g, scale: 1 / tau), at: 0)
            dnText.add(dTextToImage.times(g, scale: 1 / tau), at: 0)
        }

        // L_loc.
        let patches = Rows(features.imageLocal), tokens = Rows(features.textLocal)
        var dPatches = Rows(zeros: 2 * n * np, d), dTokens = Rows(zeros: tokens.count, d)
        switch settings.localMode {
        case .attention:
            let scale = 1 / Float(d).squareRoot()
            for i in 0..<n {
                let q = tokens.rows(features.localRows[i]), length = q.count
                let (nq, qNorms) = q.normalized()
                for view in 0..<2 {
                    let image = view * n + i
                    let p = patches.rows((image * np)..<((image + 1) * np))
                    let attention = Rows(Loss.softmax(q.times(p, transposed: true, scale: scale).tensor))      // [L, Np]
                    let context = attention.times(p)                                                            // [L, d]
                    let (nc, contextNorms) = context.normalized()
                    let first = Loss.crossEntropy(nq.times(nc, transposed: true, scale: 1 / tau).tensor, labels: Array(0..<length),
                                                  lossGradient: w[2] / Float(4 * n))
                    let second = Loss.crossEntropy(nc.times(nq, transposed: true, scale: 1 / tau).tensor, labels: Array(0..<length),
                                                   lossGradient: w[2] / Float(4 * n))
                    terms[2] += (Double(first.loss) + Double(second.loss)) / Double(4 * n)
                    var dSimilarity = Rows(first.logitsGradient)                                              // d S(q, ĉ)
                    dSimilarity.add(Rows(second.logitsGradient).transposed(), at: 0)
                    let dnq = dSimilarity.times(nc, scale: 1 / tau), dnc = dSimilarity.transposedTimes(nq, scale: 1 / tau)
                    var dq = dnq.normalizeBackward(output: nq, norms: qNorms)
                    let dContext = dnc.normalizeBackward(output: nc, norms: contextNorms)
                    let dAttention = dContext.times(p, transposed: true)                                       // [L, Np]
                    var dp = attention.transposedTimes(dContext)                                                // [Np, d]
                    let dScores = Rows(Loss.softmaxBackward(dAttention.tensor, probabilities: attention.tensor))
                    dq.add(dScores.times(p, scale: scale), at: 0)
                    dp.add(dScores.transposedTimes(q, scale: scale), at: 0)
                    dTokens.add(dq, at: features.localRows[i].lowerBound)
                    dPatches.add(dp, at: image * np)
                }
            }
        case .direct:
            let textMeans = Rows(stacking: features.localRows.map { tokens.rows($0).meanRow() })
            let imageMeans = Rows(stacking: (0..<(2 * n)).map { patches.rows(($0 * np)..<(($0 + 1) * np)).meanRow() })
            let (nTextMeans, textMeanNorms) = textMeans.normalized()
            var dnTextMeans = Rows(zeros: n, d), dImageMeans = Rows(zeros: 2 * n, d)
            for view in 0..<2 {
                let (nImageMeans, imageMeanNorms) = imageMeans.rows((view * n)..<((view + 1) * n)).normalized()
                let first = Loss.crossEntropy(nImageMeans.times(nTextMeans, transposed: true, scale: 1 / tau).tensor, labels: Array(0..<n),
                                              lossGradient: w[2] / 4)
                let second = Loss.crossEntropy(nTextMeans.times(nImageMeans, transposed: true, scale: 1 / tau).tensor, labels: Array(0..<n),
                                               lossGradient: w[2] / 4)
                terms[2] += (Double(first.loss) + Double(second.loss)) / 4
                var dSimilarity = Rows(first.logitsGradient)                                                  // d S(p̄, q̄)
                dSimilarity.add(Rows(second.logitsGradient).transposed(), at: 0)
                let dnImageMeans = dSimilarity.times(nTextMeans, scale: 1 / tau)
                dnTextMeans.add(dSimilarity.transposedTimes(nImageMeans, scale: 1 / tau), at: 0)
                dImageMeans.add(dnImageMeans.normalizeBackward(output: nImageMeans, norms: imageMeanNorms), at: view * n)
            }
            let dTextMeans = dnTextMeans.normalizeBackward(output: nTextMeans, norms: textMeanNorms)
            for i in 0..<n {
                let rows = features.localRows[i]
                dTokens.add(Rows(repeating: dTextMeans.rows(i..<(i + 1)), count: rows.count, scale: 1 / Float(rows.count)), at: rows.lowerBound)
            }
            for image in 0..<(2 * n) {
                dPatches.add(Rows(repeating: dImageMeans.rows(image..<(image + 1)), count: np, scale: 1 / Float(np)), at: image * np)
            }
        }

        let loss = zip(w, terms).reduce(Float(0)) { $0 + $1.0 * Float($1.1) }
        return Result(terms: terms.map { Float($0) }, loss: loss,
                      imageGlobal: dnImage.normalizeBackward(output: nImage, norms: imageNorms).tensor(shape: features.imageGlobal.shape),
                      textGlobal: dnText.normalizeBackward(output: nText, norms: textNorms).tensor(shape: features.textGlobal.shape),
                      imageLocal: dPatches.tensor(shape: features.imageLocal.shape),
                      textLocal: dTokens.tensor(shape: features.textLocal.shape))
    }

    // MARK: - Reference

    /// The plain float64 forward of the four terms (img, glo, loc, soft), written from the formulas of
    /// Formats/prima-trace.md §11.11 with loops: what the tests difference to check ``evaluate(_:settings:)``'s
    /// gradients, and compare its terms with. The features are flat row-major arrays of the shapes of ``Features``.
    public static func reference(imageGlobal: [Double], textGlobal: [Double], imageLocal: [Double], textLocal: [Double],
                                 localRows: [Range<Int>], softTargets: [Double], width d: Int, settings: Settings) -> [Double] {
        let n = textGlobal.count / d, np = imageLocal.count / (2 * n * d), targetWidth = softTargets.count / n
        let tau = Double(settings.tau)
        func row(_ x: [Double], _ r: Int) -> [Double] { Array(x[(r * d)..<((r + 1) * d)]) }
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        func unit(_ a: [Double]) -> [Double] { let norm = max(dot(a, a).squareRoot(), 1e-12); return a.map { $0 / norm } }
        func sim(_ a: [Double], _ b: [Double]) -> Double { dot(unit(a), unit(b)) / tau }
        /// −log softmax(logits)[target].
        func negativeLogSoftmax(_ logits: [Double], _ target: Int) -> Double {
            let top = logits.max()!
            return top + log(logits.reduce(0) { $0 + exp($1 - top) }) - logits[target]
        }
        /// CE of the square matrix S(A, B) with diagonal targets, rows A.
        func contrast(_ a: [[Double]], _ b: [[Double]]) -> Double {
            a.indices.reduce(0) { sum, r in sum + negativeLogSoftmax(b.map { sim(a[r], $0) }, r) } / Double(a.count)
        }
        let g = (0..<(2 * n)).map { row(imageGlobal, $0) }, q = (0..<n).map { row(textGlobal, $0) }
        let views = [Array(g[0..<n]), Array(g[n..<(2 * n)])]

        var img = 0.0
        for i in 0..<n {
            let logits = (0..<n).map { sim(g[i], g[n + $0]) } + (0..<n).filter { $0 != i }.map { sim(g[i], g[$0]) }
            img += negativeLogSoftmax(logits, i)
        }
        img /= Double(n)
        let glo = views.reduce(0) { $0 + contrast($1, q) + contrast(q, $1) } / 4

        var targets = [[Double]]()
        for i in 0..<n {
            let yi = Array(softTargets[(i * targetWidth)..<((i + 1) * targetWidth)])
            let logits = (0..<n).map { j in dot(yi, Array(softTargets[(j * targetWidth)..<((j + 1) * targetWidth)])) / Double(settings.tauLabel) }
            let top = logits.max()!, total = logits.reduce(0) { $0 + exp($1 - top) }
            targets.append(logits.map { exp($0 - top) / total })
        }
        var soft = 0.0
        for view in views {
            for i in 0..<n {
                for j in 0..<n {
                    soft += targets[i][j] * (negativeLogSoftmax(q.map { sim(view[i], $0) }, j)
                                             + negativeLogSoftmax(view.map { sim(q[j], $0) }, i))
                }
            }
        }
        soft /= Double(4 * n * n)

        let tokens = localRows.map { $0.map { row(textLocal, $0) } }
        let patches = (0..<(2 * n)).map { image in (0..<np).map { row(imageLocal, image * np + $0) } }
        func mean(_ rows: [[Double]]) -> [Double] { (0..<d).map { c in rows.reduce(0) { $0 + $1[c] } / Double(rows.count) } }
        var loc = 0.0
        switch settings.localMode {
        case .attention:
            for i in 0..<n {
                for view in 0..<2 {
                    let p = patches[view * n + i]
                    let context = tokens[i].map { token -> [Double] in
                        let scores = p.map { dot(token, $0) / Double(d).squareRoot() }
                        let top = scores.max()!, total = scores.reduce(0) { $0 + exp($1 - top) }
                        return (0..<d).map { c in p.indices.reduce(0) { $0 + exp(scores[$1] - top) / total * p[$1][c] } }
                    }
                    loc += contrast(tokens[i], context) + contrast(context, tokens[i])
                }
            }
            loc /= Double(4 * n)
        case .direct:
            let textMeans = tokens.map(mean)
            for view in 0..<2 {
                let imageMeans = (0..<n).map { mean(patches[view * n + $0]) }
                loc += contrast(imageMeans, textMeans) + contrast(textMeans, imageMeans)
            }
            loc /= 4
        }
        return [img, glo, loc, soft]
    }
}

/// A row-major f32 matrix [count, width] for the loss's small products (each an sgemm) and row ops.
private struct Rows {
    var values: [Float]
    let count: Int
    let width: Int

    init(_ tensor: Tensor) {
        values = tensor.float32Values()
        width = tensor.shape.last ?? 0
        count = width == 0 ? 0 : values.count / width
    }

    init(zeros count: Int, _ width: Int) {
        values = [Float](repeating: 0, count: count * width)
        self.count = count
        self.width = width
    }

    init(values: [Float], count: Int, width: Int) {
        self.values = values
        self.count = count
        self.width = width
    }

    /// The rows of `parts`, in order (each one row).
    init(stacking parts: [Rows]) {
        self.init(values: parts.flatMap(\.values), count: parts.reduce(0) { $0 + $1.count }, width: parts[0].width)
    }

    /// `count` copies of the one row `row`, times `scale`.
    init(repeating row: Rows, count: Int, scale: Float) {
        let scaled = row.values.map { $0 * scale }
        self.init(values: Array((0..<count).map { _ in scaled }.joined()), count: count, width: row.width)
    }

    var tensor: Tensor { Tensor(shape: [count, width], float32: values) }
    func tensor(shape: [Int]) -> Tensor { Tensor(shape: shape, float32: values) }

    func rows(_ range: Range<Int>) -> Rows {
        Rows(values: Array(values[(range.lowerBound * width)..<(range.upperBound * width)]), count: range.count, width: width)
    }

    /// [self; other].
    func stacked(on other: Rows) -> Rows { Rows(values: values + other.values, count: count + other.count, width: width) }

    func transposed() -> Rows {
        var out = [Float](repeating: 0, count: values.count)
        for r in 0..<count { for c in 0..<width { out[c * count + r] = values[r * width + c] } }
        return Rows(values: out, count: width, width: count)
    }

    /// scale · self · other (other [width, n]) or, `transposed`, scale · self · otherᵀ (other [n, width]).
    func times(_ other: Rows, transposed: Bool = false, scale: Float = 1) -> Rows {
        let n = transposed ? other.count : other.width
        precondition((transposed ? other.width : other.count) == width, "alignment: product of \(count)×\(width) and \(other.count)×\(other.width)")
        var out = Rows(zeros: count, n)
        values.withUnsafeBufferPointer { a in other.values.withUnsafeBufferPointer { b in out.values.withUnsafeMutableBufferPointer { c in
            BLAS.sgemm(transB: transposed, m: count, n: n, k: width, alpha: scale, a: a.baseAddress!, lda: width,
                       b: b.baseAddress!, ldb: other.width, c: c.baseAddress!, ldc: n)
        } } }
        return out
    }

    /// scale · selfᵀ · other (self [k, m], other [k, n]).
    func transposedTimes(_ other: Rows, scale: Float = 1) -> Rows {
        precondition(other.count == count, "alignment: product of (\(count)×\(width))ᵀ and \(other.count)×\(other.width)")
        var out = Rows(zeros: width, other.width)
        values.withUnsafeBufferPointer { a in other.values.withUnsafeBufferPointer { b in out.values.withUnsafeMutableBufferPointer { c in
            BLAS.sgemm(transA: true, m: width, n: other.width, k: count, alpha: scale, a: a.baseAddress!, lda: width,
                       b: b.baseAddress!, ldb: other.width, c: c.baseAddress!, ldc: other.width)
        } } }
        return out
    }

    /// Adds `other` to rows start ..< start + other.count.
    mutating func add(_ other: Rows, at start: Int) {
        precondition(other.width == width && start + other.count <= count, "alignment: adding \(other.count)×\(other.width) at row \(start) of \(count)×\(width)")
        for i in 0..<other.values.count { values[start * width + i] += other.values[i] }
    }

    /// Row r keeps the columns columns[r], in that order.
    func gather(_ columns: [[Int]]) -> Rows {
        Rows(values: columns.enumerated().flatMap { r, kept in kept.map { values[r * width + $0] } }, count: count, width: columns[0].count)
    }

    /// The inverse of ``gather(_:)`` for gradients: row r's values go back to columns[r] of a `columns`-wide zero row.
    func scatter(_ columns: [[Int]], columns total: Int) -> Rows {
        var out = Rows(zeros: count, total)
        for (r, kept) in columns.enumerated() { for (k, c) in kept.enumerated() { out.values[r * total + c] = values[r * width + k] } }
        return out
    }

    /// The mean row [1, width], summed in f32 in row order.
    func meanRow() -> Rows {
        var sum = [Float](repeating: 0, count: width)
        for r in 0..<count { for c in 0..<width { sum[c] += values[r * width + c] } }
        return Rows(values: sum.map { $0 / Float(count) }, count: 1, width: width)
    }

    func normalized() -> (Rows, norms: Tensor) {
        let (output, norms) = Loss.l2Normalize(tensor)
        return (Rows(output), norms)
    }

    func normalizeBackward(output: Rows, norms: Tensor) -> Rows {
        Rows(Loss.l2NormalizeBackward(tensor, output: output.tensor, norms: norms))
    }
}
