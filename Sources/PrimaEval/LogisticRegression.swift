import Foundation
import PrimaIO

/// Multinomial logistic regression with an L2 penalty on the weights, fitted to the optimum of scikit-learn's
/// `LogisticRegression(C: c, fit_intercept: true)` objective (solver lbfgs, scikit-learn 1.9.1,
/// sklearn/linear_model/_logistic.py with _linear_loss.py): for N samples x_i ∈ R^D with labels y_i,
///
///     L(W, b) = (1/N) Σ_i [logsumexp_k(z_ik) − z_i,y_i] + 1/(2·C·N) Σ_k ‖w_k‖²,   z_ik = x_i·w_k + b_k,
///
/// over the classes that occur in the labels (scikit-learn's `l2_reg_strength = 1 / (C · sw_sum)` with
/// `sw_sum = N`; the intercepts b are not penalised). The metadata-only sanity baseline of the evaluation
/// (Docs/evaluation.md) is this model on ``TabularFeatures`` rows.
///
/// Classes without a training sample: scikit-learn fits only the classes present (`classes_`) and its
/// `predict_proba` has no column for the others. Here the K columns are always the caller's classes; an absent
/// class gets a zero weight row and the intercept −∞, so its probability is exactly 0 and the present classes'
/// probabilities are scikit-learn's. Two present classes are fitted with the same multinomial objective (scikit-learn
/// switches to the binomial loss there, which equals this one with C doubled); the evaluation always has more.
///
/// Solver: damped Newton in Double from W = 0, b = 0 (deterministic; the objective is strictly convex in W and in b up
/// to a common shift of the intercepts, which the softmax ignores). The Hessian is singular along that shift, so
/// each step solves (H + u·uᵀ) s = −g with u = 1 on the intercepts: g ⊥ u gives s ⊥ u, the shift the step takes is
/// 0 and Σ_k b_k stays 0 — where scikit-learn's L-BFGS, started at 0 with gradients whose intercept part sums to 0,
/// also stays. Backtracking (Armijo, factor 1/2) keeps every step a descent. Stops when max |∂L| ≤ `tolerance`.
/// Cost per step: the Hessian over the non-zero feature pairs of each row, then a Cholesky of size K·(D+1); a
/// PAD-UFES-20-sized fold (1,840 rows, D = 90 mostly one-hot, K = 6) fits in 8 steps, 14 s in a debug build.
public struct LogisticRegression: Sendable {
    /// [K][D] weights w_k; zero rows for classes absent from training.
    public let weights: [[Double]]
    /// [K] intercepts b_k, summing to 0 over the present classes; −∞ for absent classes.
    public let intercepts: [Double]
    /// Newton steps taken.
    public let iterations: Int

    /// Fits on `features` [N][D] with `labels` [N] in `0..<classCount`. Errors (one line): no rows, rows of
    /// different lengths, a non-finite feature, a label out of range, fewer than two classes present, `c` not a
    /// positive number, or no convergence within `maxIterations` steps.
    public init(features: [[Double]], labels: [Int], classCount: Int, c: Double = 1.0, maxIterations: Int = 1000,
                tolerance: Double = 1e-10) throws(ToolError) {
        guard let first = features.first else { throw .input("logistic regression: no training rows") }
        let d = first.count
        for (row, values) in features.enumerated() {
            guard values.count == d else { throw .input("logistic regression: row \(row) has \(values.count) features, row 0 has \(d)") }
            guard values.allSatisfy(\.isFinite) else { throw .input("logistic regression: row \(row) has a feature that is not a finite number") }
        }
        guard labels.count == features.count else {
            throw .input("logistic regression: \(features.count) rows but \(labels.count) labels")
        }
        guard classCount >= 2 else { throw .input("logistic regression: \(classCount) classes; at least 2 are needed") }
        if let bad = labels.firstIndex(where: { !(0..<classCount).contains($0) }) {
            throw .input("logistic regression: label \(labels[bad]) of row \(bad) is outside 0..<\(classCount)")
        }
        guard c > 0, c.isFinite else { throw .input("logistic regression: C must be a positive number, got \(c)") }
        let present = (0..<classCount).filter(labels.contains)
        guard present.count >= 2 else {
            throw .input("logistic regression: every training row has class \(present[0]); a classifier needs two classes")
        }
        let problem = Problem(features: features, labels: labels.map { present.firstIndex(of: $0)! }, classCount: present.count,
                              penalty: 1 / (c * Double(features.count)))
        var theta = [Double](repeating: 0, count: problem.parameterCount)
        var (loss, gradient) = problem.lossAndGradient(theta)
        var steps = 0
        while gradient.map(abs).max()! > tolerance {
            guard steps < maxIterations else {
                throw .failed("logistic regression: no convergence in \(maxIterations) Newton steps (max |gradient| \(gradient.map(abs).max()!), tolerance \(tolerance))")
            }
            guard let step = problem.newtonStep(theta, gradient: gradient) else {
                throw .failed("logistic regression: the Newton system is not positive definite (features too large or too many?)")
            }
            let slope = zip(gradient, step).reduce(0) { $0 + $1.0 * $1.1 }
            var scale = 1.0
            var next: (theta: [Double], loss: Double, gradient: [Double])?
            for _ in 0..<60 {
                let candidate = zip(theta, step).map { $0 + scale * $1 }
                let (candidateLoss, candidateGradient) = problem.lossAndGradient(candidate)
                if candidateLoss <= loss + 1e-4 * scale * slope {
                    next = (candidate, candidateLoss, candidateGradient)
                    break
                }
                scale /= 2
            }
            guard let next else {
                throw .failed("logistic regression: the line search found no decrease at max |gradient| \(gradient.map(abs).max()!) (tolerance \(tolerance) below what Double reaches?)")
            }
            (theta, loss, gradient) = next
            steps += 1
        }
        // Rounding may leave Σ_k b_k a few ulps from 0; the softmax does not see the shift.
        let meanIntercept = (0..<problem.classCount).reduce(0) { $0 + theta[problem.index($1, d)] } / Double(problem.classCount)
        var weights = [[Double]](repeating: [Double](repeating: 0, count: d), count: classCount)
        var intercepts = [Double](repeating: -.infinity, count: classCount)
        for (local, k) in present.enumerated() {
            weights[k] = (0..<d).map { theta[problem.index(local, $0)] }
            intercepts[k] = theta[problem.index(local, d)] - meanIntercept
        }
        self.weights = weights
        self.intercepts = intercepts
        self.iterations = steps
    }

    /// [N][K] softmax(x·wᵀ + b) per row of `features` [N][D]; 0 in the columns of classes absent from training.
    /// Precondition: every row has D features.
    public func probabilities(_ features: [[Double]]) -> [[Double]] {
        features.map { x in
            precondition(x.count == weights[0].count, "a row has \(x.count) features; the model has \(weights[0].count)")
            return Self.softmax(zip(weights, intercepts).map { w, b in b + zip(w, x).reduce(0) { $0 + $1.0 * $1.1 } })
        }
    }

    /// softmax of `logits`, stable for large values; −∞ entries give 0 as long as one entry is finite.
    static func softmax(_ logits: [Double]) -> [Double] {
        let top = logits.max()!
        let exps = logits.map { exp($0 - top) }
        let sum = exps.reduce(0, +)
        return exps.map { $0 / sum }
    }

    /// The objective over the P present classes. Parameters θ: per class its D weights then its intercept,
    /// θ[k·(D+1) + j] (j = D is the intercept).
    struct Problem {
        let features: [[Double]]
        /// Labels as indices of the present classes.
        let labels: [Int]
        /// P.
        let classCount: Int
        /// λ = 1 / (C·N).
        let penalty: Double
        /// Per sample, the non-zero entries of x̃ = (x, 1) in index order: one-hot metadata rows are mostly zero, and
        /// the Hessian's Gram matrices only need the products of non-zero pairs.
        let nonZeros: [[(index: Int, value: Double)]]

        init(features: [[Double]], labels: [Int], classCount: Int, penalty: Double) {
            (self.features, self.labels, self.classCount, self.penalty) = (features, labels, classCount, penalty)
            nonZeros = features.map { x in
                x.enumerated().filter { $0.element != 0 }.map { (index: $0.offset, value: $0.element) } + [(index: x.count, value: 1)]
            }
        }

        var dimension: Int { features[0].count }
        var parameterCount: Int { classCount * (dimension + 1) }
        func index(_ k: Int, _ j: Int) -> Int { k * (dimension + 1) + j }

        /// [N][P] class probabilities at θ.
        func probabilities(_ theta: [Double]) -> [[Double]] {
            let d = dimension
            return features.map { x in
                softmax((0..<classCount).map { k in
                    var z = theta[index(k, d)]
                    for j in 0..<d { z += x[j] * theta[index(k, j)] }
                    return z
                })
            }
        }

        /// L(θ) and ∂L/∂θ (formula in the type's documentation).
        func lossAndGradient(_ theta: [Double]) -> (Double, [Double]) {
            let d = dimension, n = Double(features.count)
            var loss = 0.0
            var gradient = [Double](repeating: 0, count: parameterCount)
            for (x, (y, p)) in zip(features, zip(labels, probabilities(theta))) {
                loss -= log(p[y])
                for k in 0..<classCount {
                    let residual = (p[k] - (k == y ? 1 : 0)) / n
                    for j in 0..<d { gradient[index(k, j)] += residual * x[j] }
                    gradient[index(k, d)] += residual
                }
            }
            loss /= n
            for k in 0..<classCount {
                for j in 0..<d {
                    let w = theta[index(k, j)]
                    loss += penalty / 2 * w * w
                    gradient[index(k, j)] += penalty * w
                }
            }
            return (loss, gradient)
        }

        /// s solving (H + u·uᵀ) s = −g, H the Hessian at θ:
        /// H[(k,a),(l,b)] = (1/N) Σ_i p_ik (δ_kl − p_il) x̃_ia x̃_ib + λ δ_kl δ_ab [a < D], x̃ = (x, 1);
        /// nil when the Cholesky factorisation fails.
        func newtonStep(_ theta: [Double], gradient: [Double]) -> [Double]? {
            let d = dimension, m = parameterCount, n = Double(features.count)
            let probabilities = probabilities(theta)
            var hessian = [Double](repeating: 0, count: m * m)
            // One weighted Gram matrix per class pair (k ≤ l): G_kl = Σ_i c_ikl x̃_i x̃_iᵀ, c_ikl = p_ik (δ_kl − p_il) / N,
            // upper triangle only, [pairs][(D+1)·(D+1)]. Per sample, the products x̃_a x̃_b (a ≤ b) of its non-zero
            // entries are formed once and added to every pair's matrix (unsafe buffers: this is the solver's hot loop).
            let width = d + 1
            let pairs = (0..<classCount).flatMap { k in (k..<classCount).map { (k, $0) } }
            var grams = [Double](repeating: 0, count: pairs.count * width * width)
            var positions: [Int] = [], products: [Double] = []
            grams.withUnsafeMutableBufferPointer { g in
                for (entries, p) in zip(nonZeros, probabilities) {
                    positions.removeAll(keepingCapacity: true)
                    products.removeAll(keepingCapacity: true)
                    for first in entries.indices {
                        for second in first..<entries.count {
                            positions.append(entries[first].index * width + entries[second].index)
                            products.append(entries[first].value * entries[second].value)
                        }
                    }
                    positions.withUnsafeBufferPointer { position in
                        products.withUnsafeBufferPointer { product in
                            for (pair, (k, l)) in pairs.enumerated() {
                                let weight = p[k] * ((k == l ? 1 : 0) - p[l]) / n
                                let base = pair * width * width
                                for t in 0..<position.count { g[base + position[t]] += weight * product[t] }
                            }
                        }
                    }
                }
            }
            for (pair, (k, l)) in pairs.enumerated() {
                for a in 0...d {
                    for b in a...d {
                        let value = grams[pair * width * width + a * width + b]
                        for (r, s) in [(index(k, a), index(l, b)), (index(k, b), index(l, a)),
                                       (index(l, a), index(k, b)), (index(l, b), index(k, a))] {
                            hessian[r * m + s] = value
                        }
                    }
                }
            }
            for k in 0..<classCount {
                for j in 0..<d { hessian[index(k, j) * m + index(k, j)] += penalty }
                for l in 0..<classCount { hessian[index(k, d) * m + index(l, d)] += 1 }
            }
            return choleskySolve(hessian, size: m, rightHandSide: gradient.map { -$0 })
        }
    }
}

/// x solving A x = b for a symmetric positive definite A (row-major [m][m]) by Cholesky, A = L·Lᵀ; nil if a pivot
/// is not positive. (Unsafe buffers: m is about 550 for the PAD-UFES-20 baseline, m³/6 multiply-adds per step.)
func choleskySolve(_ a: [Double], size m: Int, rightHandSide b: [Double]) -> [Double]? {
    var lower = [Double](repeating: 0, count: m * m)
    let factored = lower.withUnsafeMutableBufferPointer { l in
        a.withUnsafeBufferPointer { a in
            for i in 0..<m {
                for j in 0...i {
                    var sum = a[i * m + j]
                    for k in 0..<j { sum -= l[i * m + k] * l[j * m + k] }
                    if i == j {
                        guard sum > 0 else { return false }
                        l[i * m + i] = sum.squareRoot()
                    } else {
                        l[i * m + j] = sum / l[j * m + j]
                    }
                }
            }
            return true
        }
    }
    guard factored else { return nil }
    var y = b
    for i in 0..<m {
        for k in 0..<i { y[i] -= lower[i * m + k] * y[k] }
        y[i] /= lower[i * m + i]
    }
    for i in stride(from: m - 1, through: 0, by: -1) {
        for k in (i + 1)..<m { y[i] -= lower[k * m + i] * y[k] }
        y[i] /= lower[i * m + i]
    }
    return y
}
