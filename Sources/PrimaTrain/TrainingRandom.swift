/// The one source of randomness of a training run (Formats/prima-training.md §1): every draw comes from a stream
/// named by (seed, purpose, epoch, index, part), so a run is reproducible bit for bit, a resumed run draws exactly
/// what the uninterrupted one would have, and the Python reference trainer reproduces the same draws.
///
/// A stream is SplitMix64 (Steele, Lea & Flood 2014) started from a key that mixes the five numbers with the
/// SplitMix64 finaliser: `key = mix(mix(mix(mix(mix(seed) ^ purpose) ^ epoch) ^ index) ^ part)`.
public struct TrainingRandom: RandomNumberGenerator, Sendable {
    /// What a stream is drawn for; the raw value enters the key, so streams of different purposes never coincide.
    public enum Purpose: UInt64, Sendable {
        /// The order of the training examples in an epoch (index 0).
        case shuffle = 1
        /// Stage 1's masked-LM masking of one corpus example (index = its position in the corpus).
        case masking = 2
        /// One view's augmentation of one case (index = the case, part = the view).
        case augmentation = 3
        /// The initialisation of new trainable tensors (LoRA matrices, heads; index = the tensor's position).
        case initialisation = 4
        /// Fold assignment of the cross-validation splits (epoch 0, index 0).
        case split = 5
    }

    private var state: UInt64

    /// The stream of `purpose` for `index` in `epoch` (part: a sub-stream, e.g. the view of a case).
    public init(seed: UInt64, purpose: Purpose, epoch: Int, index: Int, part: Int = 0) {
        var key = Self.mix(seed)
        for value in [purpose.rawValue, UInt64(truncatingIfNeeded: epoch), UInt64(truncatingIfNeeded: index), UInt64(truncatingIfNeeded: part)] {
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

    /// The next 64 bits: SplitMix64's step.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits: `(next() >> 11) · 2⁻⁵³`.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in 0..<bound (bound ≥ 1), without modulo bias: Lemire's multiply-shift with rejection.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound >= 1, "TrainingRandom.below: bound \(bound) < 1")
        let range = UInt64(bound)
        let threshold = (0 &- range) % range
        while true {
            let product = next().multipliedFullWidth(by: range)
            if product.low >= threshold { return Int(product.high) }
        }
    }

    /// The indices 0..<count in an order drawn by Fisher–Yates from the last position down
    /// (`for i in count−1 … 1: swap(i, below(i + 1))`).
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
