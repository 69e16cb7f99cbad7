import Foundation
import PrimaTensor
import PrimaTestSupport
import Testing

/// The stage-2 alignment losses (Formats/prima-trace.md §11.11): the f32 terms against the float64 reference
/// forward, and the gradient of every feature against float64 central finite differences of that reference, for
/// each term alone and for a weighted sum, in both L_loc modes, on odd sizes with cases of different lengths.
@Suite struct AlignmentLossTests {
    /// Terms, f32 against the float64 reference, relative: f32 normalisation, products over d ≤ 7 and row sums over
    /// ≤ 2N entries (a few ulps of values of order 1/tau). Measured worst: 2.5e-7.
    static let termsRelative = 5e-6
    /// Gradients against float64 differences, relative to max|grad|: the same f32 rounding carried through the
    /// normalisation backward (which divides by norms about 1) and the softmax backward. Measured worst: 3.1e-7.
    static let gradientRelative = 5e-6

    /// Seeded features of `cases` cases of width `d`, `np` patches per image and text rows of length `t` per case,
    /// case i holding `lengths[i]` local tokens from row i·t + 1.
    struct Problem {
        let n: Int, d: Int, np: Int, t: Int, targetWidth: Int
        let localRows: [Range<Int>]
        var imageGlobal, textGlobal, imageLocal, textLocal, softTargets: [Float]

        init(lengths: [Int], d: Int, np: Int, t: Int, targetWidth: Int = 5, seed: UInt64) {
            n = lengths.count
            (self.d, self.np, self.t, self.targetWidth) = (d, np, t, targetWidth)
            localRows = lengths.enumerated().map { i, length in (i * t + 1)..<(i * t + 1 + length) }
            imageGlobal = GradientCheck.random(2 * n * d, seed: seed)
            textGlobal = GradientCheck.random(n * d, seed: seed + 1)
            imageLocal = GradientCheck.random(2 * n * np * d, seed: seed + 2, scale: 2)
            textLocal = GradientCheck.random(n * t * d, seed: seed + 3, scale: 2)
            // Metadata-like targets: a class one-hot times 3 and an attribute one-hot.
            softTargets = (0..<n).flatMap { i in (0..<targetWidth).map { c in Float(c == i % 3 ? 3 : 0) + Float(c == 3 + (i / 2) % 2 ? 1 : 0) } }
        }

        var features: AlignmentLoss.Features {
            AlignmentLoss.Features(imageGlobal: Tensor(shape: [2 * n, d], float32: imageGlobal), textGlobal: Tensor(shape: [n, d], float32: textGlobal),
                                   imageLocal: Tensor(shape: [2 * n * np, d], float32: imageLocal),
                                   textLocal: Tensor(shape: [n * t, d], float32: textLocal), localRows: localRows,
                                   softTargets: Tensor(shape: [n, targetWidth], float32: softTargets))
        }

        /// The reference terms at the given (float64) features.
        func terms(_ parts: [[Double]], _ settings: AlignmentLoss.Settings) -> [Double] {
            AlignmentLoss.reference(imageGlobal: parts[0], textGlobal: parts[1], imageLocal: parts[2], textLocal: parts[3],
                                    localRows: localRows, softTargets: softTargets.map(Double.init), width: d, settings: settings)
        }

        var parts: [[Double]] { [imageGlobal, textGlobal, imageLocal, textLocal].map { $0.map(Double.init) } }
    }

    static let settings: [AlignmentLoss.Settings] = AlignmentLoss.LocalMode.allCases.flatMap { mode in
        // Each term alone, then a mix with a temperature other than the default.
        (0..<4).map { term in AlignmentLoss.Settings(weights: (0..<4).map { $0 == term ? 1 : 0 }, localMode: mode) }
            + [AlignmentLoss.Settings(tau: 0.3, tauLabel: 0.7, weights: [0.7, 0.4, 1.3, 0.9], localMode: mode)]
    }

    @Test(arguments: settings.indices)
    func gradientsMatchFiniteDifferences(_ index: Int) {
        let settings = Self.settings[index]
        let problem = Problem(lengths: [3, 1, 4], d: 7, np: 5, t: 6, seed: 11 + UInt64(index))
        let result = AlignmentLoss.evaluate(problem.features, settings: settings)
        let reference = problem.terms(problem.parts, settings)
        for (ours, exact) in zip(result.terms, reference) {
            #expect(abs(Double(ours) - exact) <= Self.termsRelative * max(abs(exact), 1e-3), "terms \(result.terms) vs \(reference)")
        }
        let ours = [result.imageGlobal, result.textGlobal, result.imageLocal, result.textLocal].map { $0.float32Values() }
        for part in 0..<4 {
            let numeric = GradientCheck.numeric({ values in
                var parts = problem.parts
                parts[part] = values
                return zip(settings.weights, problem.terms(parts, settings)).reduce(0) { $0 + Double($1.0) * $1.1 }
            }, at: problem.parts[part])
            let error = GradientCheck.relativeError(ours[part], numeric)
            #expect(error <= Self.gradientRelative, "\(settings.localMode) weights \(settings.weights): feature \(part) error \(error)")
        }
        // Text rows outside the local tokens ([CLS], [SEP], padding) get exactly zero.
        let local = Set(problem.localRows.flatMap { $0 })
        for row in 0..<(problem.n * problem.t) where !local.contains(row) {
            #expect(ours[3][(row * problem.d)..<((row + 1) * problem.d)].allSatisfy { $0 == 0 }, "row \(row)")
        }
    }

    /// One case: nothing to contrast across the batch, so L_img, L_glo, L_soft and the direct L_loc are exactly 0
    /// (a 1 × 1 cross-entropy), while the attention L_loc still contrasts the case's own tokens.
    @Test func oneCaseHasNoBatchContrast() {
        let problem = Problem(lengths: [3], d: 4, np: 3, t: 5, seed: 3)
        let attention = AlignmentLoss.evaluate(problem.features, settings: .init())
        let direct = AlignmentLoss.evaluate(problem.features, settings: .init(localMode: .direct))
        #expect(attention.terms[0] == 0 && attention.terms[1] == 0 && attention.terms[3] == 0 && attention.terms[2] > 0)
        #expect(direct.terms == [0, 0, 0, 0] && direct.loss == 0)
        #expect(direct.imageGlobal.float32Values().allSatisfy { $0 == 0 } && direct.textLocal.float32Values().allSatisfy { $0 == 0 })
    }

    /// The loss is the weighted sum of the stored terms, and the default settings are Docs/prima-model.md's.
    @Test func lossIsTheWeightedSum() {
        let problem = Problem(lengths: [2, 5, 1, 3], d: 6, np: 4, t: 7, seed: 5)
        let settings = AlignmentLoss.Settings()
        #expect(settings.tau == 0.07 && settings.tauLabel == 1 && settings.weights == [0.2, 0.3, 0.2, 0.3] && settings.localMode == .attention)
        let result = AlignmentLoss.evaluate(problem.features, settings: settings)
        let sum = zip(settings.weights, result.terms).reduce(Float(0)) { $0 + $1.0 * $1.1 }
        #expect(abs(result.loss - sum) <= 1e-6 * abs(sum) && result.terms.allSatisfy { $0 > 0 })
    }
}
