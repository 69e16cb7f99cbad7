import PrimaJSON
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.8: epoch orders, the balanced sampler and class weights.
@Suite struct SamplingTests {
    typealias Draws = MaskedLMMaskingTests

    @Test func sameAsThePythonReference() throws {
        let draws = try Draws.draws()
        for entry in try #require(draws["epoch_orders"]?.array) {
            let object = try #require(entry.object)
            let order = Sampling.epochOrder(count: try #require(object["count"]?.int), seed: 5, epoch: try #require(object["epoch"]?.int))
            #expect(order == (try Draws.ints(object["order"])))
        }
        let labels = try Draws.ints(draws["labels"])
        for entry in try #require(draws["balanced_orders"]?.array) {
            let object = try #require(entry.object)
            #expect(Sampling.balancedOrder(labels: labels, seed: 5, epoch: try #require(object["epoch"]?.int)) == (try Draws.ints(object["order"])))
        }
        let weights = (draws["class_weights"]?.array ?? []).compactMap(\.double)
        #expect(weights.count == 6)
        #expect(Sampling.classWeights(labels: labels, classCount: 6).map(Double.init) == weights)
    }

    /// scikit-learn's "balanced" weights for y = [0, 0, 0, 1, 2, 2, 0, 4, 4, 0, 0, 2] (12 samples, 4 classes
    /// present): 12 / (4 · n_c); class 3 and 5 absent → 0.
    @Test func classWeightsAsScikitLearn() {
        let weights = Sampling.classWeights(labels: [0, 0, 0, 1, 2, 2, 0, 4, 4, 0, 0, 2], classCount: 6)
        #expect(weights == [Float(12.0 / 24), 3, 1, 0, 1.5, 0])
    }

    @Test func epochOrderIsAPermutationThatChangesWithTheEpoch() {
        let a = Sampling.epochOrder(count: 100, seed: 1, epoch: 0)
        #expect(a.sorted() == Array(0..<100))
        #expect(Sampling.epochOrder(count: 100, seed: 1, epoch: 1) != a)
        #expect(Sampling.epochOrder(count: 100, seed: 1, epoch: 0) == a)
    }

    /// 20,000 draws over classes of 1, 10 and 89 examples: each class near 1/3 (4.5 binomial standard deviations).
    @Test func balancedOrderEqualisesTheClasses() {
        let labels = [2] + [Int](repeating: 0, count: 10) + [Int](repeating: 5, count: 89)
        var counts = [Int: Int]()
        for epoch in 0..<200 {
            for example in Sampling.balancedOrder(labels: labels, seed: 3, epoch: epoch) { counts[labels[example], default: 0] += 1 }
        }
        let n = 20_000.0, p = 1.0 / 3
        for label in [0, 2, 5] {
            #expect(abs(Double(counts[label]!) - n * p) <= 4.5 * (n * p * (1 - p)).squareRoot(), "class \(label): \(counts[label]!)")
        }
    }
}
