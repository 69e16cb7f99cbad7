/// Sequence pooling for text encoders.
public enum Pooling {
    /// The masked mean of token states: hidden [B·T, C] with attention mask [B][T] → [B, C], the mean over the
    /// positions whose mask is 1 (`Σ_t h·m / Σ_t m`, as sentence-embedding code does over transformers'
    /// `last_hidden_state`). This is the sentence embedding for BERT-shaped encoders, whose pooler head is not
    /// trained (transformers initialises it at random when a checkpoint lacks it). A row with no real token gives 0.
    public static func maskedMean(_ hidden: Tensor, mask: [[Int]]) -> Tensor {
        let batch = mask.count, length = mask.first?.count ?? 0, c = hidden.shape.last ?? 0
        precondition(hidden.shape == [batch * length, c], "maskedMean: hidden \(ShapeMath.describe(hidden.shape)) for mask [\(batch), \(length)]")
        let out = Tensor(zeros: [batch, c], dtype: .f32)
        hidden.withFloat32 { h in out.withMutableFloat32 { y in
            for b in 0..<batch {
                var sums = [Double](repeating: 0, count: c)
                var count = 0
                for t in 0..<length where mask[b][t] != 0 {
                    count += 1
                    for i in 0..<c { sums[i] += Double(h[(b * length + t) * c + i]) }
                }
                for i in 0..<c { y[b * c + i] = count > 0 ? Float(sums[i] / Double(count)) : 0 }
            }
        } }
        return out
    }
}
