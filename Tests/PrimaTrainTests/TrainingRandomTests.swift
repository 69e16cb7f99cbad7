import PrimaTrain
import Testing

/// The training run's random streams (Formats/prima-training.md §1): fixed values that the Python reference
/// trainer reproduces, independence of the key's parts, and unbiased draws.
@Suite struct TrainingRandomTests {
    /// The first draws of two streams, as `prima_ref.train.TrainingRandom` computes them (Formats/prima-training.md §1).
    @Test func knownValues() {
        var stream = TrainingRandom(seed: 0, purpose: .shuffle, epoch: 0, index: 0)
        let first = (0..<3).map { _ in stream.next() }
        var again = TrainingRandom(seed: 0, purpose: .shuffle, epoch: 0, index: 0)
        #expect((0..<3).map { _ in again.next() } == first)
        #expect(first == Self.expectedShuffleSeed0)
        var masking = TrainingRandom(seed: 42, purpose: .masking, epoch: 3, index: 17, part: 1)
        #expect(masking.permutation(10) == Self.expectedPermutation)
    }

    /// Recorded from the formula of Formats/prima-training.md §1 (an independent Python evaluation).
    static let expectedShuffleSeed0: [UInt64] = [15_486_435_170_117_514_727, 18_332_313_703_123_156_034, 13_128_527_306_512_025_060]
    static let expectedPermutation = [6, 3, 1, 7, 4, 5, 2, 9, 8, 0]

    @Test func everyPartOfTheKeyChangesTheStream() {
        let base = TrainingRandom(seed: 7, purpose: .augmentation, epoch: 2, index: 5, part: 1)
        let variants = [TrainingRandom(seed: 8, purpose: .augmentation, epoch: 2, index: 5, part: 1),
                        TrainingRandom(seed: 7, purpose: .masking, epoch: 2, index: 5, part: 1),
                        TrainingRandom(seed: 7, purpose: .augmentation, epoch: 3, index: 5, part: 1),
                        TrainingRandom(seed: 7, purpose: .augmentation, epoch: 2, index: 6, part: 1),
                        TrainingRandom(seed: 7, purpose: .augmentation, epoch: 2, index: 5, part: 0)]
        var a = base
        let reference = (0..<4).map { _ in a.next() }
        for variant in variants {
            var b = variant
            #expect((0..<4).map { _ in b.next() } != reference)
        }
    }

    /// below(n) is uniform: chi-square over 7 buckets of 70,000 draws stays under the 0.999 quantile (22.46, 6 d.o.f.).
    @Test func belowIsUniform() {
        var stream = TrainingRandom(seed: 1, purpose: .shuffle, epoch: 0, index: 0)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[stream.below(7)] += 1 }
        let chi = counts.reduce(0.0) { $0 + pow2(Double($1) - 10_000) / 10_000 }
        #expect(chi < 22.46, "counts \(counts)")
        var unit = TrainingRandom(seed: 2, purpose: .shuffle, epoch: 0, index: 0)
        let values = (0..<10_000).map { _ in unit.unit() }
        #expect(values.allSatisfy { $0 >= 0 && $0 < 1 } && abs(values.reduce(0, +) / 10_000 - 0.5) < 0.01)
    }

    @Test func permutationIsAPermutation() {
        var stream = TrainingRandom(seed: 3, purpose: .shuffle, epoch: 1, index: 0)
        for count in [0, 1, 2, 13, 100] { #expect(stream.permutation(count).sorted() == Array(0..<count)) }
    }

    private func pow2(_ x: Double) -> Double { x * x }
}
