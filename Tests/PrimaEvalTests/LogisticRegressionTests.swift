import Foundation
@testable import PrimaEval
import PrimaIO
import PrimaJSON
import PrimaTestSupport
import Testing

@Suite struct LogisticRegressionTests {
    /// Largest |Δ| accepted between our coefficients (weights and intercepts) and scikit-learn's. scikit-learn's
    /// L-BFGS stops with max |∂L| of 7.4e-8 ("rare") and 4.5e-9 ("absent", Fixtures/eval/logreg.json `max_gradient`)
    /// while ours reaches 1e-10, so the two optima differ by about |∂L| / (smallest Hessian eigenvalue).
    /// Measured worst: 7.6e-7 ("rare"), 3.4e-8 ("absent").
    static let coefficientTolerance = 2e-6
    /// Largest |Δ| accepted between the held-out probabilities (the same stopping gap, through the softmax).
    /// Measured worst: 2.6e-7 ("rare"), 1.2e-8 ("absent").
    static let probabilityTolerance = 1e-6

    struct Problem {
        let name: String
        let c: Double
        let classCount: Int
        let features: [[Double]]
        let labels: [Int]
        let presentClasses: [Int]
        let coef: [[Double]]
        let intercept: [Double]
        let testFeatures: [[Double]]
        let testProbabilities: [[Double]]
    }

    /// The problems of Fixtures/eval/logreg.json (written by Fixtures/eval/make_logreg_fixture.py).
    static func problems() throws -> [Problem] {
        let path = TestProcess.repositoryRoot + "/Fixtures/eval/logreg.json"
        let root = try #require(try JSON.parse(String(contentsOfFile: path, encoding: .utf8)).object)
        func rows(_ value: JSONValue?) throws -> [[Double]] {
            try #require(value?.array).map { try #require($0.array).map { try #require($0.double) } }
        }
        func numbers(_ value: JSONValue?) throws -> [Double] { try #require(value?.array).map { try #require($0.double) } }
        return try #require(root["problems"]?.array).map { item in
            let object = try #require(item.object)
            return Problem(
                name: try #require(object["name"]?.string), c: try #require(object["c"]?.double),
                classCount: try #require(object["class_count"]?.int), features: try rows(object["features"]),
                labels: try numbers(object["labels"]).map { Int($0) },
                presentClasses: try numbers(object["present_classes"]).map { Int($0) },
                coef: try rows(object["coef"]), intercept: try numbers(object["intercept"]),
                testFeatures: try rows(object["test_features"]), testProbabilities: try rows(object["test_probabilities"]))
        }
    }

    @Test func matchesScikitLearnAtTheOptimum() throws {
        let problems = try Self.problems()
        #expect(problems.map(\.name) == ["rare", "absent"])
        for problem in problems {
            let model = try LogisticRegression(features: problem.features, labels: problem.labels,
                                               classCount: problem.classCount, c: problem.c)
            var coefficientWorst = 0.0
            for (row, k) in problem.presentClasses.enumerated() {
                for (ours, theirs) in zip(model.weights[k] + [model.intercepts[k]], problem.coef[row] + [problem.intercept[row]]) {
                    coefficientWorst = max(coefficientWorst, abs(ours - theirs))
                }
            }
            var probabilityWorst = 0.0
            let probabilities = model.probabilities(problem.testFeatures)
            for (ours, theirs) in zip(probabilities, problem.testProbabilities) {
                #expect(ours.count == problem.classCount)
                for (column, k) in problem.presentClasses.enumerated() {
                    probabilityWorst = max(probabilityWorst, abs(ours[k] - theirs[column]))
                }
                #expect(abs(ours.reduce(0, +) - 1) < 1e-12)
            }
            #expect(coefficientWorst <= Self.coefficientTolerance, "\(problem.name): coefficients differ by \(coefficientWorst)")
            #expect(probabilityWorst <= Self.probabilityTolerance, "\(problem.name): probabilities differ by \(probabilityWorst)")
            // An absent class: zero weights, intercept −∞, probability exactly 0.
            for k in 0..<problem.classCount where !problem.presentClasses.contains(k) {
                #expect(model.weights[k].allSatisfy { $0 == 0 })
                #expect(model.intercepts[k] == -.infinity)
                #expect(probabilities.allSatisfy { $0[k] == 0 })
            }
            let presentSum = problem.presentClasses.reduce(0) { $0 + model.intercepts[$1] }
            #expect(abs(presentSum) < 1e-12)
        }
    }

    /// The reference the solver rests on: its loss's gradient against central differences, and its Newton step s
    /// against the Hessian seen through the gradient, (g(θ + h·s) − g(θ − h·s)) / 2h = H·s = −g (the step has no
    /// intercept shift, so u·uᵀ·s = 0), at a seeded point away from the optimum.
    @Test func gradientAndNewtonStepMatchFiniteDifferences() throws {
        let fixture = try #require(try Self.problems().first)
        let problem = LogisticRegression.Problem(features: fixture.features, labels: fixture.labels, classCount: 4,
                                                 penalty: 1 / (fixture.c * Double(fixture.features.count)))
        var random = SplitMix64(seed: 7)
        let theta = (0..<problem.parameterCount).map { _ in Double(random.uniform()) }
        let (_, gradient) = problem.lossAndGradient(theta)
        let numeric = GradientCheck.numeric({ problem.lossAndGradient($0).0 }, at: theta)
        let gradientError = zip(gradient, numeric).map { abs($0 - $1) }.max()!
        // Central differences with h = 1e-5 on an O(1) loss: truncation and rounding near 1e-10. Measured 4.3e-11.
        #expect(gradientError < 1e-8, "gradient differs by \(gradientError)")

        let step = try #require(problem.newtonStep(theta, gradient: gradient))
        let h = 1e-5
        let up = problem.lossAndGradient(zip(theta, step).map { $0 + h * $1 }).1
        let down = problem.lossAndGradient(zip(theta, step).map { $0 - h * $1 }).1
        let curvatureError = zip(zip(up, down), gradient).map { abs(($0.0 - $0.1) / (2 * h) + $1) }.max()!
        // The same differences of the gradient along s (|s| of order 1). Measured 6.7e-11.
        #expect(curvatureError < 1e-7, "H·s differs from −g by \(curvatureError)")
        let shift = (0..<4).reduce(0) { $0 + step[problem.index($1, problem.dimension)] }
        #expect(abs(shift) < 1e-12)
    }

    @Test func isDeterministic() throws {
        let problem = try #require(try Self.problems().first)
        let first = try LogisticRegression(features: problem.features, labels: problem.labels, classCount: problem.classCount, c: problem.c)
        let second = try LogisticRegression(features: problem.features, labels: problem.labels, classCount: problem.classCount, c: problem.c)
        #expect(first.weights == second.weights && first.intercepts == second.intercepts)
    }

    @Test func refusesBadTrainingData() {
        let x: [[Double]] = [[0, 1], [1, 0], [1, 1]]
        expectError("no training rows") { _ = try LogisticRegression(features: [], labels: [], classCount: 2) }
        expectError("row 1 has 1 features, row 0 has 2") {
            _ = try LogisticRegression(features: [[0, 1], [1], [1, 1]], labels: [0, 1, 0], classCount: 2)
        }
        expectError("row 2", "not a finite number") {
            _ = try LogisticRegression(features: [[0, 1], [1, 0], [.nan, 1]], labels: [0, 1, 0], classCount: 2)
        }
        expectError("label 3 of row 1 is outside 0..<3") { _ = try LogisticRegression(features: x, labels: [0, 3, 1], classCount: 3) }
        expectError("3 rows but 2 labels") { _ = try LogisticRegression(features: x, labels: [0, 1], classCount: 2) }
        expectError("C must be a positive number") { _ = try LogisticRegression(features: x, labels: [0, 1, 0], classCount: 2, c: 0) }
        expectError("C must be a positive number") { _ = try LogisticRegression(features: x, labels: [0, 1, 0], classCount: 2, c: -1) }
        expectError("every training row has class 1") { _ = try LogisticRegression(features: x, labels: [1, 1, 1], classCount: 3) }
    }
}
