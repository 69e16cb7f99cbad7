/// The order of the examples in an epoch, and the two remedies for unbalanced classes: weights for the
/// cross-entropy, or a balanced sampler (Formats/prima-training.md §3.8). Every order is a function of
/// (seed, epoch) alone, so a resumed run needs only the epoch and its position in the order.
public enum Sampling {
    /// The part of the shuffle stream the balanced sampler draws from (part 0 is the plain shuffle).
    public static let balancedPart = 1

    /// The examples 0..<count in the order of `epoch`: `permutation(count)` of the stream (seed, shuffle, epoch, 0).
    public static func epochOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var stream = TrainingRandom(seed: seed, purpose: .shuffle, epoch: epoch, index: 0)
        return stream.permutation(count)
    }

    /// An epoch of `labels.count` draws with replacement in which every class present is equally likely, and
    /// within a class every example: from the stream (seed, shuffle, epoch, 0, part 1), per draw
    /// `c = present[below(K′)]`, then `members[c][below(n_c)]` (present: the classes with examples, ascending;
    /// members[c]: the examples of class c, ascending). torch's `WeightedRandomSampler` with weights 1/n_c and
    /// replacement draws from the same distribution.
    public static func balancedOrder(labels: [Int], seed: UInt64, epoch: Int) -> [Int] {
        var members: [Int: [Int]] = [:]
        for (example, label) in labels.enumerated() { members[label, default: []].append(example) }
        let present = members.keys.sorted()
        guard !present.isEmpty else { return [] }
        var stream = TrainingRandom(seed: seed, purpose: .shuffle, epoch: epoch, index: 0, part: balancedPart)
        return labels.indices.map { _ in
            let group = members[present[stream.below(present.count)]]!
            return group[stream.below(group.count)]
        }
    }

    /// scikit-learn's `compute_class_weight("balanced", classes=np.unique(y), y=y)` spread over `classCount`
    /// classes: w_c = n / (K′ · n_c) for the K′ classes present among the n labels (in double, then rounded to
    /// float), 0 for a class with no example (it never reaches the loss).
    public static func classWeights(labels: [Int], classCount: Int) -> [Float] {
        var counts = [Int](repeating: 0, count: classCount)
        for label in labels {
            precondition((0..<classCount).contains(label), "label \(label) outside 0..<\(classCount)")
            counts[label] += 1
        }
        let present = counts.filter { $0 > 0 }.count
        return counts.map { $0 == 0 ? 0 : Float(Double(labels.count) / (Double(present) * Double($0))) }
    }
}
