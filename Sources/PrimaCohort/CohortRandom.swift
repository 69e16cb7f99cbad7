import Foundation
import PrimaRandom

/// The one source of randomness of the cohort generator (Docs/cohort.md, "Determinism"): every draw comes from a
/// stream named by (seed, purpose, index, part), so a cohort is reproducible bit for bit, and an image's draws do
/// not depend on the order in which threads render the images.
///
/// A stream is `SplitMix64Stream` (PrimaRandom, shared with PrimaTrain's `TrainingRandom`) keyed by the four
/// numbers, `key = mix(mix(mix(mix(seed) ^ purpose) ^ index) ^ part)`: Formats/prima-training.md §1's construction
/// without its epoch.
public struct CohortRandom: KeyedStream, Sendable {
    /// What a stream is drawn for; the raw value enters the key, so streams of different purposes never coincide.
    public enum Purpose: UInt64, Sendable {
        /// Which lesions found patients and which join one (index 0), and the patient each joins.
        case grouping = 1
        /// Images per lesion (index 0).
        case imagesPerLesion = 2
        /// A patient's own fields (index = patient).
        case patient = 3
        /// A lesion's fields (index = lesion).
        case lesion = 4
        /// The drawing of one image (index = image).
        case image = 5
        /// Patient, lesion and image numbers (index 0; part 0 patients, 1 lesions, 2 images, 3 lesion-id reuse).
        case identifiers = 6
        /// The order of the rows in metadata.csv (index 0).
        case rowOrder = 7
    }

    private var stream: SplitMix64Stream

    public init(seed: UInt64, purpose: Purpose, index: Int, part: Int = 0) {
        stream = SplitMix64Stream(seed: seed, words: [purpose.rawValue, UInt64(truncatingIfNeeded: index), UInt64(truncatingIfNeeded: part)])
    }

    /// The next 64 bits. `unit()`, `below(_:)` and `permutation(_:)` are ``KeyedStream``'s.
    public mutating func next() -> UInt64 { stream.next() }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * unit() }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// A standard normal deviate (Box–Muller, one of the pair; two draws).
    public mutating func normal() -> Double {
        let u1 = 1 - unit()  // (0, 1]
        let u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// An index drawn with the given (non-negative, not all zero) weights.
    public mutating func weighted(_ weights: [Double]) -> Int {
        let total = weights.reduce(0, +)
        precondition(total > 0, "CohortRandom.weighted: no positive weight")
        var target = unit() * total
        for (index, weight) in weights.enumerated() {
            target -= weight
            if target < 0 { return index }
        }
        return weights.lastIndex(where: { $0 > 0 })!
    }
}
