import PrimaRandom

/// The one source of randomness of a training run (Formats/prima-training.md §1): every draw comes from a stream
/// named by (seed, purpose, epoch, index, part), so a run is reproducible bit for bit, a resumed run draws exactly
/// what the uninterrupted one would have, and the Python reference trainer reproduces the same draws.
///
/// A stream is `SplitMix64Stream` (PrimaRandom) keyed by the five numbers:
/// `key = mix(mix(mix(mix(mix(seed) ^ purpose) ^ epoch) ^ index) ^ part)`.
public struct TrainingRandom: KeyedStream, Sendable {
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

    private var stream: SplitMix64Stream

    /// The stream of `purpose` for `index` in `epoch` (part: a sub-stream, e.g. the view of a case).
    public init(seed: UInt64, purpose: Purpose, epoch: Int, index: Int, part: Int = 0) {
        stream = SplitMix64Stream(seed: seed, words: [purpose.rawValue, UInt64(truncatingIfNeeded: epoch),
                                                      UInt64(truncatingIfNeeded: index), UInt64(truncatingIfNeeded: part)])
    }

    /// The next 64 bits: SplitMix64's step. `unit()`, `below(_:)` and `permutation(_:)` are ``KeyedStream``'s.
    public mutating func next() -> UInt64 { stream.next() }
}
