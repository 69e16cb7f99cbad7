import PrimaIO
import PrimaTokenizers

/// Stage 1's masking: transformers' `DataCollatorForLanguageModeling.torch_mask_tokens` (mlm_probability 0.15,
/// 80% [MASK], 10% a random token, 10% unchanged; special tokens never selected; label −100 where not selected),
/// with the draws of the stream (seed, masking, epoch, index = the example's place in the corpus) in a fixed
/// order instead of torch's generator (Formats/prima-training.md §3.7):
///
/// ```
/// pass 1, every position t that is not special, in order:   u1[t] = unit(); selected if u1[t] < p_mlm
/// if no position is selected: select the eligible position with the smallest u1 (the first of equals)
/// pass 2, every selected position t, in order:                 u2 = unit()
///     u2 < p_mask                  → input[t] = [MASK]
///     p_mask ≤ u2 < p_mask + p_rnd → input[t] = below(vocabularySize)   (may equal the original, as in transformers)
///     otherwise                    → input[t] unchanged
/// labels[t] = original id at selected positions, −100 elsewhere
/// ```
/// Unlike transformers, every example has at least one masked position, so that no example contributes a
/// loss of 0/0.
public enum MaskedLMMasking {
    /// The probabilities (defaults: transformers' collator and Docs/prima-model.md).
    public struct Settings: Sendable, Equatable {
        /// p_mlm: a position's chance of being selected.
        public var mlmProbability: Double
        /// p_mask: a selected position's chance of becoming [MASK].
        public var maskProbability: Double
        /// p_rnd: a selected position's chance of becoming a random token.
        public var randomProbability: Double

        public init(mlmProbability: Double = 0.15, maskProbability: Double = 0.8, randomProbability: Double = 0.1) {
            precondition(mlmProbability > 0 && mlmProbability <= 1, "mlm probability \(mlmProbability)")
            precondition(maskProbability >= 0 && randomProbability >= 0 && maskProbability + randomProbability <= 1,
                         "mask \(maskProbability) and random \(randomProbability) probabilities")
            self.mlmProbability = mlmProbability
            self.maskProbability = maskProbability
            self.randomProbability = randomProbability
        }

        public static let standard = Settings()
    }

    /// The label of a position that carries no loss (PyTorch's cross-entropy `ignore_index`).
    public static let ignoreLabel = -100

    /// A masked example.
    public struct Masked: Sendable, Equatable {
        /// The input ids after masking.
        public let inputIds: [Int]
        /// The original id at masked positions, ``MaskedLMMasking/ignoreLabel`` elsewhere.
        public let labels: [Int]
    }

    /// Masks `example` (the `index`-th of the corpus) for `epoch`. `vocabularySize` bounds the random tokens
    /// (transformers: `len(tokenizer)`, ``Tokenizer/vocabularySize``).
    public static func mask(_ example: RiskFactorCorpus.Example, maskTokenId: Int, vocabularySize: Int,
                            settings: Settings = .standard, seed: UInt64, epoch: Int, index: Int) -> Masked {
        precondition(example.special.contains(false), "an example with no maskable token")
        var stream = TrainingRandom(seed: seed, purpose: .masking, epoch: epoch, index: index)
        var selected = [Bool](repeating: false, count: example.ids.count)
        var smallest: (value: Double, position: Int)?
        for t in example.ids.indices where !example.special[t] {
            let u = stream.unit()
            selected[t] = u < settings.mlmProbability
            if smallest == nil || u < smallest!.value { smallest = (u, t) }
        }
        if !selected.contains(true), let smallest { selected[smallest.position] = true }

        var inputs = example.ids
        var labels = [Int](repeating: ignoreLabel, count: example.ids.count)
        for t in example.ids.indices where selected[t] {
            labels[t] = example.ids[t]
            let u = stream.unit()
            if u < settings.maskProbability {
                inputs[t] = maskTokenId
            } else if u < settings.maskProbability + settings.randomProbability {
                inputs[t] = stream.below(vocabularySize)
            }
        }
        return Masked(inputIds: inputs, labels: labels)
    }

    /// The ids of the tokenizer's special added tokens (`"special": true` in tokenizer.json): what transformers'
    /// `get_special_tokens_mask(..., already_has_special_tokens=True)` excludes.
    public static func specialIds(_ tokenizer: Tokenizer) -> Set<Int> {
        Set(tokenizer.addedTokens.filter(\.special).map(\.id))
    }

    /// The mask token's id: the special added token `[MASK]` (BERT, ModernBERT) or `<mask>` (RoBERTa-style).
    public static func maskTokenId(_ tokenizer: Tokenizer) throws(ToolError) -> Int {
        guard let token = tokenizer.addedTokens.first(where: { $0.special && ($0.content == "[MASK]" || $0.content == "<mask>") }) else {
            throw ToolError.input("\(tokenizer.source): no special [MASK] or <mask> token; masked-LM training needs one")
        }
        return token.id
    }
}
