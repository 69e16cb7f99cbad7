import Foundation
import PrimaEval
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
