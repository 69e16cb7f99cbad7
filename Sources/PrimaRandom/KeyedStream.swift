/// SplitMix64 (Steele, Lea & Flood 2014) started from a key, the generator behind every seeded stream of the
/// toolkit (Formats/prima-training.md §1; Docs/cohort.md): the key mixes the seed and the words that name the
/// stream with the SplitMix64 finaliser, `key = mix(…mix(mix(seed) ^ w₀) ^ w₁ … ^ wₙ)`, so a draw depends only on
/// its name, never on what was drawn before.
public struct SplitMix64Stream: Sendable {
    private var state: UInt64

    /// The stream named by `seed` and `words`, in order.
    public init(seed: UInt64, words: [UInt64]) {
        var key = Self.mix(seed)
        for word in words { key = Self.mix(key ^ word) }
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
}

/// A named stream of 64-bit draws and the draws built on them, the same for every stream type of the toolkit.
public protocol KeyedStream: RandomNumberGenerator {}

extension KeyedStream {
    /// Uniform in [0, 1) with 53 random bits: `(next() >> 11) · 2⁻⁵³`.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in 0..<bound (bound ≥ 1), without modulo bias: Lemire's multiply-shift with rejection.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound >= 1, "below: bound \(bound) < 1")
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
