import Foundation
import PrimaCheckpoint
import PrimaConvert
import PrimaDiagnose
import PrimaJSON
import PrimaMetadata
import PrimaModels
import PrimaTensor
import PrimaVerify
import Testing

/// The whole PRIMA pipeline against the PyTorch reference (Fixtures/make_prima_fixtures.py): checkpoints assembled
/// from the tiny fixtures and the committed heads files pass the `prima` traces layer by layer, and the toolkit's own
/// preprocessing, rendering and tokenization reproduce the traces' inputs from the committed case files.
@Suite struct PrimaTraceTests {
    struct Variant: Sendable, CustomStringConvertible {
        let trace: String
        let image: String
        let text: String
        let heads: String
        var description: String { trace }
    }

    static let variants = [
        Variant(trace: "prima-tiny-bert", image: "dinov3-mlp-reg4-f32", text: "bert-mlm-f32", heads: "heads-bert.safetensors"),
        Variant(trace: "prima-tiny-modernbert", image: "dinov3-gated-noreg-f32", text: "modernbert-mlm-f32",
                heads: "heads-modernbert.safetensors"),
    ]
    static let prima = RuntimeTestSupport.repositoryRoot + "/Fixtures/prima"

    /// Assembles the variant's checkpoint with its heads file and PAD-UFES-20's six classes.
    static func assemble(_ variant: Variant) throws -> String {
        let path = RuntimeTestSupport.temporaryDirectory() + "/\(variant.trace).h5"
        let options = PrimaAssemblyOptions(labels: try PrimaAssemblyOptions.parseLabels("ACK,BCC,MEL,NEV,SCC,SEK"),
                                           headsFile: prima + "/" + variant.heads)
        _ = try Importer.run([ImportSource(directory: RuntimeTestSupport.model(variant.image), role: .imageEncoder),
                              ImportSource(directory: RuntimeTestSupport.model(variant.text), role: .textEncoder),
                              ImportSource(directory: RuntimeTestSupport.model("qwen3-prima-f32"), role: .decoder)],
                             output: path, overwrite: false, showProgress: false, prima: options, warn: { _ in })
        return path
    }

    @Test(arguments: variants)
    func verifyPassesThePipelineTrace(_ variant: Variant) throws {
        let checkpoint = try Self.assemble(variant)
        let verify = RuntimeTestSupport.binary("prima-verify")
        let integrity = try RuntimeTestSupport.run(verify, [checkpoint])
        // The modernbert heads file leaves the special tokens out: they take the embedding-based initialisation.
        let state = variant.heads == "heads-bert.safetensors" ? "trained" : "untrained"
        #expect(integrity.status == 0 && integrity.stdout.contains("prima: prima heads, \(state)"), "\(integrity.stdout)")
        let result = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", RuntimeTestSupport.trace(variant.trace), "--json"])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let json = try JSON.parse(result.stdout).object
        #expect(json?["component"]?.string == "prima")
        let activations = json?["activations"]?.array?.compactMap(\.object) ?? []
        let names = activations.compactMap { $0["name"]?.string }
        for required in ["image_encoder.final_norm", "text_encoder.final_norm", "alignment.text_local", "image_classifier.logits",
                         "fusion.image_seq", "fusion.text_seq", "decoder.embeddings", "decoder.final_norm", "class_probs"] {
            #expect(names.contains(required), "\(required) not compared")
        }
        for item in activations {
            #expect((item["cosine"]?.double ?? 0) >= 0.99999, "\(variant) \(item["name"]?.string ?? "?")")
        }
    }

    /// The trace's inputs come from the committed PNG and record through our preprocessing, schema and tokenizers.
    @Test(arguments: variants)
    func diagnoserReproducesTheTraceInputs(_ variant: Variant) throws {
        let trace = try Trace(path: RuntimeTestSupport.trace(variant.trace))
        guard case .prima(let reference, let classIds) = trace.subject else { Issue.record("not a prima trace"); return }
        let recipe = try JSON.parse(try Self.inputRecipe(RuntimeTestSupport.trace(variant.trace))).object
        let imageName = try #require(recipe?["image"]?.string)
        let record = try #require(recipe?["record"]?.object)
        let imagePath = imageName == "sample.png" ? Self.prima + "/cases/sample.png" : Self.prima + "/cases/imgs/" + imageName

        let diagnoser = try Diagnoser(checkpoint: try Self.assemble(variant))
        // The record as a CSV row holds the label and ids too; the JSON form of the schema ignores those keys.
        let prepared = try diagnoser.prepare(imagePath: imagePath, record: try diagnoser.schema.record(from: record, source: imageName))
        #expect(prepared.text == recipe?["text"]?.string)
        #expect(prepared.inputs.textIds == reference.textIds)
        #expect(prepared.inputs.promptIds == reference.promptIds)
        #expect(prepared.inputs.answerPrefixIds == reference.answerPrefixIds)
        #expect(diagnoser.model.heads.classTokenIds == classIds)
        #expect(prepared.inputs.pixelValues.shape == reference.pixelValues.shape)
        #expect(RuntimeTestSupport.maxDifference(prepared.inputs.pixelValues, reference.pixelValues) <= 1e-5)

        // And the diagnosis from the files gives the trace's class probabilities.
        let result = try diagnoser.diagnose(imagePath: imagePath, record: try diagnoser.schema.record(from: record, source: imageName))
        let expected = try #require(trace.activations.first { $0.name == "class_probs" }?.tensor.float32Values())
        for (ours, theirs) in zip(result.diagnosis.probabilities, expected) { #expect(abs(ours - theirs) <= 1e-5) }
    }

    /// The trace's `input_recipe` root attribute.
    static func inputRecipe(_ path: String) throws -> String {
        let file = try HDF5File.open(path: path)
        return try file.root().stringAttribute("input_recipe")
    }

    /// The README's demo checkpoint (Fixtures/prima/tiny-prima.h5) is what today's assembly writes from the
    /// fixtures: the same tensors bit for bit and the same files, in every group.
    @Test func bundledCheckpointIsCurrent() throws {
        let fresh = RuntimeTestSupport.temporaryDirectory() + "/tiny-prima.h5"
        let options = PrimaAssemblyOptions(labels: try PrimaAssemblyOptions.parseLabels("ACK,BCC,MEL,NEV,SCC,SEK"))
        _ = try Importer.run([ImportSource(directory: RuntimeTestSupport.model("dinov3-mlp-reg4-f32"), role: .imageEncoder),
                              ImportSource(directory: RuntimeTestSupport.model("bert-mlm-f32"), role: .textEncoder),
                              ImportSource(directory: RuntimeTestSupport.model("qwen3-prima-f32"), role: .decoder)],
                             output: fresh, overwrite: false, showProgress: false, prima: options, warn: { _ in })
        let bundled = try Checkpoint(path: Self.prima + "/tiny-prima.h5"), current = try Checkpoint(path: fresh)
        #expect(bundled.roles == current.roles && bundled.extraGroups == current.extraGroups)
        let groups = try bundled.roles.map { try ($0.rawValue, bundled.component($0), current.component($0)) }
            + [("prima", try bundled.group("prima"), try current.group("prima"))]
        for (name, a, b) in groups {
            let (x, y) = (try a.tensorRecords(), try b.tensorRecords())
            #expect(x.map(\.name) == y.map(\.name), "\(name)")
            for (left, right) in zip(x, y) where left.aliasOf == nil {
                #expect(left.crc32 == right.crc32 && left.shape == right.shape && left.dtype == right.dtype, "\(name): \(left.name)")
            }
            #expect(try a.fileNames() == b.fileNames(), "\(name)")
            for file in try a.fileNames() { #expect(try a.file(file) == b.file(file), "\(name): \(file)") }
        }
    }
}
