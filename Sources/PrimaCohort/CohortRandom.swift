import Foundation

/// The one source of randomness of the cohort generator (Docs/cohort.md, "Determinism"): every draw comes from a
/// stream named by (seed, purpose, index, part), so a cohort is reproducible bit for bit, and an image's draws do
/// not depend on the order in which threads render the images.
///
/// A stream is SplitMix64 (Steele, Lea & Flood 2014) started from a key that mixes the four numbers with the
/// SplitMix64 finaliser, `key = mix(mix(mix(mix(seed) ^ purpose) ^ index) ^ part)`: the construction of
/// PrimaTrain's `TrainingRandom` (Formats/prima-training.md §1) without its epoch, kept separate so that the
/// generator does not depend on the training module.
public struct CohortRandom: RandomNumberGenerator, Sendable {
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

    private var state: UInt64

    public init(seed: UInt64, purpose: Purpose, index: Int, part: Int = 0) {
        var key = Self.mix(seed)
        for value in [purpose.rawValue, UInt64(truncatingIfNeeded: index), UInt64(truncatingIfNeeded: part)] {
            key = Self.mix(key ^ value)
        }
        state = key
    }

    /// The SplitMix64 finaliser (a bijection of UInt64).
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * unit() }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// Uniform in 0..<bound (bound ≥ 1), without modulo bias (Lemire's multiply-shift with rejection).
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound >= 1, "CohortRandom.below: bound \(bound) < 1")
        let range = UInt64(bound)
        let threshold = (0 &- range) % range
        while true {
            let product = next().multipliedFullWidth(by: range)
            if product.low >= threshold { return Int(product.high) }
        }
    }

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

    /// The indices 0..<count in an order drawn by Fisher–Yates from the last position down.
    public mutating func permutation(_ count: Int) -> [Int] {
        var order = Array(0..<count)
        var i = count - 1
        while i > 0 {
            order.swapAt(i, below(i + 1))
            i -= 1
        }
        return order
    }
}
