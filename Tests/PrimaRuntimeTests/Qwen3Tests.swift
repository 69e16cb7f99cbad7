import PrimaCheckpoint
import PrimaModels
import PrimaTensor
import PrimaVerify
import Testing

/// Every Qwen3 fixture (tied, untied, GQA, head_dim·heads ≠ hidden; f32, f16, bf16; sharded) against its
/// transformers trace, through the library.
@Suite struct Qwen3Tests {
    @Test(arguments: ["qwen3-tied-f32", "qwen3-untied-f32", "qwen3-tied-bf16", "qwen3-tied-headstored-bf16",
                      "qwen3-untied-f16-sharded"])
    func matchesTransformersLayerByLayer(_ fixture: String) throws {
        let checkpoint = try RuntimeTestSupport.importFixture(fixture)
        let trace = try Trace(path: RuntimeTestSupport.trace(fixture))
        let report = try TraceVerifier.run(checkpoint: checkpoint, trace: trace, tolerances: .fp32, repeats: 1)
        #expect(report.activations.map(\.name) == ["embeddings", "layers.0", "layers.1", "final_norm", "logits"])
        for item in report.activations {
            #expect(item.pass, "\(fixture) \(item.name): \(item.failure ?? "")")
            #expect(item.cosine >= 0.99999 && item.maxAbs <= 1e-4 * (1 + item.referenceScale))
        }
    }

    /// A right-padded batch gives, at real tokens, what each sequence gives alone.
    @Test func paddedBatchEqualsSequencesRunAlone() throws {
        let checkpoint = try Checkpoint(path: try RuntimeTestSupport.importFixture("qwen3-untied-f32"))
        let model = try loadComponentModel(try checkpoint.component(.decoder))
        let ids = [[5, 17, 200, 3, 99, 1], [42, 8, 7, 0, 0, 0]]
        let mask = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
        let batched = try model.forward(.tokens(ids: ids, mask: mask)) { _, _ in }.float32Values()
        let c = batched.count / 12
        for (row, length) in [(0, 6), (1, 3)] {
            let alone = try model.forward(.tokens(ids: [Array(ids[row].prefix(length))], mask: [Array(repeating: 1, count: length)])) { _, _ in }
            let values = alone.float32Values()
            for i in 0..<(length * c) {
                #expect(abs(values[i] - batched[row * 6 * c + i]) < 1e-5)
            }
        }
    }

    @Test func rejectsOutOfVocabularyIds() throws {
        let checkpoint = try Checkpoint(path: try RuntimeTestSupport.importFixture("qwen3-tied-f32"))
        let model = try loadComponentModel(try checkpoint.component(.decoder))
        #expect(throws: RuntimeError.self) { _ = try model.forward(.tokens(ids: [[1, 100_000]], mask: [[1, 1]])) { _, _ in } }
        #expect(throws: RuntimeError.self) { _ = try model.forward(.tokens(ids: [[1, 2]], mask: [[1]])) { _, _ in } }
    }
}
