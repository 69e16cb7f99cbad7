import Foundation
import PrimaCheckpoint
import PrimaConvert
import PrimaModels
import PrimaTensor
import PrimaVerify
import Testing

/// Fixture paths and import for the encoder tests (kept file-private so the target's other files may define
/// their own helpers).
private enum EncoderFixtures {
    /// The repository root (this file is Tests/PrimaRuntimeTests/EncoderTests.swift).
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let modernBERT = ["modernbert-mlm-f32", "modernbert-mlm-f16"]
    static let bert = ["bert-mlm-f32", "bert-mlm-bf16", "bert-pooler-f32"]
    static let all = modernBERT + bert

    static func trace(_ name: String) -> String { root + "/Fixtures/traces/\(name).h5" }

    /// Imports Fixtures/models/`name` into a fresh temporary checkpoint; returns its path.
    static func importModel(_ name: String) throws -> String {
        let directory = NSTemporaryDirectory() + "prima-encoder-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/\(name).h5"
        _ = try Importer.run([ImportSource(directory: root + "/Fixtures/models/\(name)", role: nil)], output: path,
                             overwrite: false, showProgress: false, warn: { _ in })
        return path
    }

    /// The text encoder of a checkpoint, with the `Checkpoint` it reads from (a component keeps only an unowned
    /// reference to its checkpoint, so the caller must hold on to both).
    static func load(_ path: String) throws -> (checkpoint: Checkpoint, model: any ComponentModel) {
        let checkpoint = try Checkpoint(path: path)
        return (checkpoint, try loadComponentModel(try checkpoint.component(.textEncoder)))
    }

    static func remove(_ checkpoint: String) {
        try? FileManager.default.removeItem(atPath: (checkpoint as NSString).deletingLastPathComponent)
    }
}

@Suite struct EncoderTests {
    /// Every activation of the fixture's reference trace matches transformers within the fp32 bar.
    @Test(arguments: EncoderFixtures.all)
    func matchesReferenceTrace(_ name: String) throws {
        let checkpoint = try EncoderFixtures.importModel(name)
        defer { EncoderFixtures.remove(checkpoint) }
        let trace = try Trace(path: EncoderFixtures.trace(name))
        let report = try TraceVerifier.run(checkpoint: checkpoint, trace: trace, tolerances: .fp32, repeats: 1)
        #expect(report.activations.count == trace.activations.count)
        for comparison in report.activations where !comparison.pass {
            Issue.record("\(name) \(comparison.name): \(comparison.failure ?? "failed")")
        }
        #expect(report.pass)
        let worst = try #require(report.activations.max { $0.maxAbs < $1.maxAbs })
        let lowestCosine = report.activations.map(\.cosine).min() ?? 1
        print("\(name): worst max_abs \(worst.maxAbs) (\(worst.name)), lowest cosine \(lowestCosine), "
              + "\(report.activations.count) activations")
        if name == "bert-pooler-f32" { #expect(report.activations.contains { $0.name == "pooler" }) }
    }

    /// A right-padded batch gives, at each sequence's real tokens, what the sequence gives alone and unpadded.
    @Test(arguments: EncoderFixtures.all)
    func paddingDoesNotLeak(_ name: String) throws {
        let checkpoint = try EncoderFixtures.importModel(name)
        defer { EncoderFixtures.remove(checkpoint) }
        let trace = try Trace(path: EncoderFixtures.trace(name))
        guard let inputs = trace.inputs, case .tokens(let ids, let mask) = inputs else { Issue.record("not a text trace"); return }
        let (opened, model) = try EncoderFixtures.load(checkpoint)
        defer { withExtendedLifetime(opened) {} }
        var batched: [String: Tensor] = [:]
        _ = try model.forward(inputs) { batched[$0] = $1 }
        let length = ids[0].count
        #expect(mask.contains { $0.contains(0) }, "the fixture batch should be padded")
        for b in ids.indices {
            let real = mask[b].reduce(0, +)
            var alone: [String: Tensor] = [:]
            _ = try model.forward(.tokens(ids: [Array(ids[b][0..<real])], mask: [Array(repeating: 1, count: real)])) { alone[$0] = $1 }
            #expect(Set(alone.keys) == Set(batched.keys))
            for (activation, single) in alone {
                let together = try #require(batched[activation])
                let c = single.shape[1]
                let a = together.float32Values(), s = single.float32Values()
                // Token-level activations are [B·T, C]; the pooler is [B, C].
                let tokenLevel = together.shape[0] == ids.count * length
                let rows = tokenLevel ? real : 1
                let offset = tokenLevel ? b * length : b
                var difference: Float = 0
                for t in 0..<rows { for i in 0..<c { difference = max(difference, abs(a[(offset + t) * c + i] - s[t * c + i])) } }
                #expect(difference <= 1e-5, "\(name) sequence \(b) \(activation): batched vs alone differ by \(difference)")
            }
        }
    }

    /// BERT's learned positions end at max_position_embeddings; longer inputs are refused, not read out of bounds.
    @Test func bertRefusesTooManyPositions() throws {
        let checkpoint = try EncoderFixtures.importModel("bert-mlm-f32")
        defer { EncoderFixtures.remove(checkpoint) }
        let (opened, model) = try EncoderFixtures.load(checkpoint)
        defer { withExtendedLifetime(opened) {} }
        let config = try #require((model as? BERTModel)?.config)
        let ids = [Array(repeating: 5, count: config.maxPositionEmbeddings + 1)]
        #expect(throws: RuntimeError.self) {
            _ = try model.forward(.tokens(ids: ids, mask: ids.map { $0.map { _ in 1 } })) { _, _ in }
        }
        let fits = [Array(repeating: 5, count: config.maxPositionEmbeddings)]
        _ = try model.forward(.tokens(ids: fits, mask: fits.map { $0.map { _ in 1 } })) { _, _ in }
    }

    /// Both encoders load through `loadComponentModel` as their own runtime classes.
    @Test func architecturesAreRegistered() throws {
        for (name, isModernBERT) in [("modernbert-mlm-f32", true), ("bert-mlm-f32", false)] {
            let checkpoint = try EncoderFixtures.importModel(name)
            defer { EncoderFixtures.remove(checkpoint) }
            let (opened, model) = try EncoderFixtures.load(checkpoint)
        defer { withExtendedLifetime(opened) {} }
            #expect((model is ModernBERTModel) == isModernBERT)
            #expect((model is BERTModel) == !isModernBERT)
        }
    }
}
