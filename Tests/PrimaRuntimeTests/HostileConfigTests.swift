import Foundation
import PrimaJSON
import PrimaTestSupport
import Testing

/// Crafted checkpoints whose configuration or tensors contradict each other (Formats/prima-checkpoint.md §3.3,
/// §3.5, §4.6, §5.1), through the binaries: every tool that loads a component refuses them with one line and
/// exit 2 before building a model, `prima-verify` reports them (exit 1), and a checkpoint whose finite but huge
/// weights overflow makes `prima-diagnose` fail naming the stage. Each case is a copy of
/// Fixtures/prima/tiny-prima.h5 changed in one place by Fixtures/hostile/craft_checkpoint.py.
@Suite struct HostileConfigTests {
    static let fixture = RuntimeTestSupport.repositoryRoot + "/Fixtures/prima/tiny-prima.h5"
    static let script = RuntimeTestSupport.repositoryRoot + "/Fixtures/hostile/craft_checkpoint.py"
    static let image = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/preprocess/scene_rgb8.png"
    static let cases = RuntimeTestSupport.repositoryRoot + "/Fixtures/prima/cases"
    static let diagnose = RuntimeTestSupport.binary("prima-diagnose")
    static let verify = RuntimeTestSupport.binary("prima-verify")
    static let quantize = RuntimeTestSupport.binary("prima-quantize")
    static let convert = RuntimeTestSupport.binary("prima-convert")

    /// A copy of the fixture with one change (the script's operation and arguments).
    static func craft(_ arguments: String...) throws -> String {
        let output = RuntimeTestSupport.temporaryDirectory() + "/crafted.h5"
        let result = try RuntimeTestSupport.run("/usr/bin/python3", [script, fixture, output] + arguments)
        try #require(result.status == 0, "craft_checkpoint.py \(arguments): \(result.stderr)")
        return output
    }

    static func metadata() throws -> String {
        let path = RuntimeTestSupport.temporaryDirectory() + "/case.json"
        try DiagnoseToolTests.record.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs prima-diagnose on one case of `checkpoint`.
    static func diagnoseOne(_ checkpoint: String, json: Bool = false) throws -> TestProcess.Result {
        try RuntimeTestSupport.run(diagnose, ["--checkpoint", checkpoint, "--image", image, "--metadata", try metadata()]
                                   + (json ? ["--json"] : []))
    }

    /// One line on stderr, `TOOL: error: CHECKPOINT: …`, containing every fragment.
    static func expectOneLineError(_ result: TestProcess.Result, status: Int32, _ fragments: [String],
                                   sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == status, "status \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n").filter { $0.contains("error:") }
        #expect(lines.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(result.stderr.contains(fragment), "missing \"\(fragment)\" in: \(result.stderr)", sourceLocation: sourceLocation)
        }
    }

    @Test func theFixtureItselfPasses() throws {
        let result = try RuntimeTestSupport.run(Self.verify, [Self.fixture])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(try Self.diagnoseOne(Self.fixture).status == 0)
    }

    @Test func aBillionLayersIsOneLineBeforeAnyAllocation() throws {
        let checkpoint = try Self.craft("config", "decoder", "num_hidden_layers", "1000000000", "both")
        let fragments = ["decoder", "files/config.json", "num_hidden_layers is 1000000000, above the limit of 1024"]
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2, fragments)
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.quantize, ["--int8", checkpoint, "-o", checkpoint + ".q.h5"]),
                                status: 2, fragments)
        #expect(!FileManager.default.fileExists(atPath: checkpoint + ".q.h5"))
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.convert, ["export", checkpoint, "--component", "decoder",
                                                                          "-o", checkpoint + ".out"]), status: 2, fragments)
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("decoder: qwen3: FAILED") && verified.stdout.contains("num_hidden_layers is 1000000000"))
    }

    @Test(arguments: [
        ("decoder", "rms_norm_eps", "-1e-06", "rms_norm_eps must be in (0, 1.0]"),
        ("text_encoder", "layer_norm_eps", "0.0", "layer_norm_eps must be in (0, 1.0]"),
        ("image_encoder", "rope_theta", "0.0", "rope_theta must be in [1.0, 1000000000000.0]"),
        ("decoder", "num_key_value_heads", "3", "num_attention_heads must be a multiple of num_key_value_heads"),
        ("text_encoder", "num_attention_heads", "5", "hidden_size must be a multiple of num_attention_heads"),
        ("image_encoder", "patch_size", "0", "patch_size must be a positive size"),
        ("image_encoder", "image_size", "1000000", "image_size is 1000000, above the limit of 16384"),
    ])
    func impossibleConfigurationsAreRefusedAtLoad(role: String, key: String, value: String, message: String) throws {
        let checkpoint = try Self.craft("config", role, key, value, "both")
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2, [role, "files/config.json", message])
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--json"])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains(message))
    }

    @Test func configContradictingConfigJSONNamesKeyBothValuesAndFile() throws {
        let checkpoint = try Self.craft("config", "text_encoder", "intermediate_size", "64")
        let fragments = ["text_encoder: config/intermediate_size is 64 but files/config.json gives 48"]
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2, fragments)
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("config/intermediate_size is 64 but files/config.json gives 48"))
        let boolean = try Self.craft("config", "text_encoder", "tie_word_embeddings", "7")
        Self.expectOneLineError(try Self.diagnoseOne(boolean), status: 2, ["config/tie_word_embeddings does not have the type"])
        // The h5py reader written from the spec derives config/ from the verbatim file and refuses both too.
        let reader = RuntimeTestSupport.repositoryRoot + "/Formats/python/prima_h5.py"
        for (crafted, fragment) in [(checkpoint, "config/intermediate_size is 64 but files/config.json gives 48"),
                                    (boolean, "config/tie_word_embeddings is 7 but files/config.json gives True")] {
            let read = try RuntimeTestSupport.run("/usr/bin/python3", [reader, crafted])
            #expect(read.status == 2 && read.stderr.contains("/text_encoder/config: " + fragment), "\(read.stderr)")
        }
        #expect(try RuntimeTestSupport.run("/usr/bin/python3", [reader, Self.fixture, "--verify"]).status == 0)
    }

    @Test func aWrongShapedTensorIsRefusedByEveryToolBeforeAnyModelIsBuilt() throws {
        let checkpoint = try Self.craft("reshape", "image_encoder", "layers.0.mlp.up.weight")
        let line = "image_encoder: tensor layers.0.mlp.up.weight: shape [64, 33] but the config implies [64, 32]"
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2, [checkpoint, line])
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint, json: true), status: 2, [line])
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", RuntimeTestSupport.trace("prima-tiny-bert")]),
                                status: 2, [line])
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.verify, [checkpoint, "--against", Self.fixture, "--component", "image_encoder"]),
                                status: 2, [line])
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.quantize, ["--int8", checkpoint, "-o", checkpoint + ".q.h5"]),
                                status: 2, [line])
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.convert, ["export", checkpoint, "--component", "image_encoder",
                                                                          "-o", checkpoint + ".out"]), status: 2, [line])
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("tensor layers.0.mlp.up.weight: shape [64, 33] but the config implies [64, 32]"))
    }

    @Test func aWrongShapedHeadTensorIsRefusedBeforeTheHeadsAreRead() throws {
        let checkpoint = try Self.craft("reshape", "prima", "image_classifier.weight")
        let line = "\(checkpoint): prima: tensor image_classifier.weight: f32 [6, 33] but the heads' attributes imply f32 [6, 32]"
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2, [line])
        Self.expectOneLineError(try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", RuntimeTestSupport.trace("prima-tiny-bert")]),
                                status: 2, [line])
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("prima: prima heads: FAILED") && verified.stdout.contains("image_classifier.weight: f32 [6, 33]"))
    }

    @Test(arguments: ["-1", "plus2^32", "delete"])
    func crcAttributesOutOfRangeOrMissingAreErrorsAndNeverLaundered(value: String) throws {
        let checkpoint = try Self.craft("crc", "decoder", "layers.0.attn.q.weight", value)
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 1, "\(verified.stdout)")
        let expected = value == "delete" ? "tensor layers.0.attn.q.weight: no crc32 attribute" : "crc32 attribute"
        #expect(verified.stdout.contains(expected), "\(verified.stdout)")
        let output = checkpoint + ".q.h5"
        let quantized = try RuntimeTestSupport.run(Self.quantize, ["--int8", checkpoint, "-o", output])
        Self.expectOneLineError(quantized, status: 2, ["layers.0.attn.q.weight", value == "delete" ? "no crc32 attribute" : "is outside 0...4294967295"])
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test(arguments: [
        (["attr", "text_encoder", "tied", "\"[]\""], "text_encoder: bert: FAILED",
         "tensor mlm.decoder.weight: a link to embed.tokens that the tied attribute does not list"),
        (["attr", "decoder", "tied", "\"[{\\\"name\\\": \\\"lm_head.weight\\\"}]\""], "decoder: qwen3: FAILED",
         "tied entry 0 is not an object with string name, target and hf_name"),
        (["file", "text_encoder", "tokenizer.json", "{\"model\": 3}"], "text_encoder: bert: FAILED", "files/tokenizer.json:"),
        (["file", "decoder", "generation_config.json", "{"], "decoder: qwen3: FAILED", "files/generation_config.json:"),
        (["attr", "image_encoder/preprocessing", "image_std", "[0.0, 0.0, 0.0]"], "image_encoder: dinov3_vit: FAILED", "image_std"),
        (["file", "prima", "metadata_schema.json", "[]"], "prima: prima heads", "metadata_schema.json"),
        (["attr", "decoder", "source_files", "\"{\""], "decoder: qwen3: FAILED", "attribute source_files is not a JSON list"),
    ])
    func verifyChecksEveryStoredPart(craft: [String], verdict: String, problem: String) throws {
        let output = RuntimeTestSupport.temporaryDirectory() + "/crafted.h5"
        let crafted = try RuntimeTestSupport.run("/usr/bin/python3", [Self.script, Self.fixture, output] + craft)
        try #require(crafted.status == 0, "\(crafted.stderr)")
        let verified = try RuntimeTestSupport.run(Self.verify, [output])
        #expect(verified.status == 1, "\(verified.stdout)\(verified.stderr)")
        #expect(verified.stdout.contains(verdict) && verified.stdout.contains(problem), "\(verified.stdout)")
    }

    @Test(arguments: [("text_encoder", "embed.norm.weight", "text_encoder"),
                      ("prima", "fusion.image_cls_projector.fc2.weight", "fusion"),
                      ("decoder", "final_norm.weight", "decoder")])
    func hugeWeightsInLaterStagesAreNamedToo(group: String, tensor: String, stage: String) throws {
        let checkpoint = try Self.craft("huge", group, tensor)
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint, json: true), status: 2,
                                ["\(checkpoint): \(stage): ", "non-finite values (NaN or Inf)"])
    }

    @Test func hugeWeightsMakeDiagnoseFailNamingTheStage() throws {
        let checkpoint = try Self.craft("huge", "image_encoder", "embed.patch.weight")
        // The weights are finite: integrity passes, the arithmetic overflows.
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 0, "\(verified.stdout)")
        let fragments = [checkpoint + ": image_encoder:", "non-finite values (NaN or Inf)"]
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2, fragments)
        let json = try Self.diagnoseOne(checkpoint, json: true)
        Self.expectOneLineError(json, status: 2, fragments)
        #expect(json.stdout.isEmpty)

        let results = RuntimeTestSupport.temporaryDirectory() + "/results.csv"
        let batch = try RuntimeTestSupport.run(Self.diagnose, ["--checkpoint", checkpoint, "--folder", Self.cases, "-o", results,
                                                               "--no-progress"])
        #expect(batch.status == 1, "\(batch.stderr)")
        #expect(batch.stderr.contains("skipped: \(checkpoint): image_encoder:"))
        #expect(batch.stderr.contains("error: \(Self.cases): every one of the"))
        let csv = (try? String(contentsOfFile: results, encoding: .utf8)) ?? ""
        #expect(!csv.lowercased().contains("nan") && !csv.contains("null"), "\(csv)")
    }

    /// A weight that already holds NaN is named, not blamed on float32 overflow.
    @Test func aStoredNaNIsNamedByDiagnose() throws {
        let checkpoint = try Self.craft("nan", "decoder", "layers.0.mlp.up.weight")
        Self.expectOneLineError(try Self.diagnoseOne(checkpoint), status: 2,
                                [checkpoint + ": decoder: tensor layers.0.mlp.up.weight holds NaN or Inf, so decoder computes"])
    }
}

/// `prima-convert import` of a Hugging Face directory whose config.json is impossible or beyond the limits of
/// Formats/prima-checkpoint.md §3.5 (one line, exit 2, nothing written), and of weights holding NaN (imported
/// with a warning and the count recorded in the tensor's `non_finite` attribute, which `prima-verify` reports).
@Suite struct ImportConfigTests {
    /// A copy of fixture `name` with config.json's `key` set to `value` (JSON text).
    static func withConfig(_ name: String, _ key: String, _ value: String) throws -> String {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/" + name
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model(name), toPath: directory)
        let path = directory + "/config.json"
        let config = try #require(try JSON.parse(try String(contentsOfFile: path, encoding: .utf8)).object)
        let edited = JSONObject(config.entries.filter { $0.key != key }.map { ($0.key, $0.value) } + [(key, try JSON.parse(value))])
        let text = JSONValue.object(edited).serialized()
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return directory
    }

    @Test(arguments: [
        ("qwen3-tied-f32", "num_hidden_layers", "1000000000", "field num_hidden_layers is 1000000000, above the limit of 1024"),
        ("qwen3-tied-f32", "vocab_size", "1000000000", "field vocab_size is 1000000000, above the limit of 2097152"),
        ("qwen3-tied-f32", "rms_norm_eps", "-1e-06", "field rms_norm_eps must be in (0, 1.0], got -1e-06"),
        ("qwen3-tied-f32", "rope_theta", "0", "field rope_theta must be in [1.0, 1000000000000.0], got 0.0"),
        ("qwen3-tied-f32", "head_dim", "0", "field head_dim must be a positive size, got 0"),
        ("qwen3-tied-f32", "head_dim", "7", "head_dim 7 must be even"),
        ("qwen3-tied-f32", "num_key_value_heads", "3", "num_attention_heads must be a multiple of num_key_value_heads"),
        ("bert-mlm-f32", "num_attention_heads", "5", "hidden_size must be a multiple of num_attention_heads"),
        ("bert-mlm-f32", "layer_norm_eps", "-1", "field layer_norm_eps must be in (0, 1.0]"),
        ("bert-mlm-f32", "max_position_embeddings", "100000000", "field max_position_embeddings is 100000000, above the limit of 1048576"),
        ("bert-mlm-f32", "intermediate_size", "0", "field intermediate_size must be a positive size, got 0"),
        ("dinov3-mlp-reg4-f32", "image_size", "1000000", "field image_size is 1000000, above the limit of 16384"),
        ("dinov3-mlp-reg4-f32", "patch_size", "64", "patch_size 64 is larger than image_size 32"),
        ("dinov3-mlp-reg4-f32", "hidden_size", "0", "field hidden_size must be a positive size, got 0"),
        ("dinov3-mlp-reg4-f32", "rope_theta", "-100", "field rope_theta must be in [1.0, 1000000000000.0], got -100.0"),
        ("dinov3-mlp-reg4-f32", "head_dim", "3", "head_dim 3 contradicts hidden_size / num_attention_heads = 8"),
        ("dinov3-mlp-reg4-f32", "num_register_tokens", "-1", "field num_register_tokens must be in 0...1024, got -1"),
        ("modernbert-mlm-f32", "local_attention", "1", "local_attention must be at least 2"),
        ("modernbert-mlm-f32", "norm_eps", "0", "field norm_eps must be in (0, 1.0], got 0.0"),
        ("modernbert-mlm-f32", "num_attention_heads", "32", "head size (hidden_size / num_attention_heads) must be even"),
        ("modernbert-mlm-f32", "local_attention", "3000000", "field local_attention is 3000000, above the limit of 1048576"),
        ("modernbert-mlm-f32", "layer_types", "[\"full_attention\"]", "layer_types must list full_attention/sliding_attention for each of the"),
    ])
    func impossibleConfigurationsAreRefusedAtImport(fixture: String, key: String, value: String, message: String) throws {
        let directory = try Self.withConfig(fixture, key, value)
        let output = RuntimeTestSupport.temporaryDirectory() + "/out.h5"
        let result = try RuntimeTestSupport.run(HostileConfigTests.convert, ["import", directory, "-o", output, "--no-progress"])
        HostileConfigTests.expectOneLineError(result, status: 2, [directory + "/config.json", message])
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func nonFiniteWeightsAreImportedWithAWarningAndRecorded() throws {
        let name = "qwen3-tied-f32"
        let directory = RuntimeTestSupport.temporaryDirectory() + "/" + name
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model(name), toPath: directory)
        let file = directory + "/model.safetensors"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try #require(try JSON.parse(Array(bytes[8..<(8 + length)])).object)
        let probe = "model.layers.0.self_attn.q_proj.weight"
        let begin = try #require(header[probe]?.object?["data_offsets"]?.array?.first?.int)
        // Two NaNs and one +Inf (f32 little-endian), at elements 0, 1 and 5.
        for (element, pattern) in [(0, [0x00, 0x00, 0xC0, 0x7F]), (1, [0x01, 0x00, 0xC0, 0x7F]), (5, [0x00, 0x00, 0x80, 0x7F])] as [(Int, [UInt8])] {
            let offset = 8 + length + begin + 4 * element
            bytes.replaceSubrange(offset..<(offset + 4), with: pattern)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let output = RuntimeTestSupport.temporaryDirectory() + "/nan.h5"
        let imported = try RuntimeTestSupport.run(HostileConfigTests.convert, ["import", directory, "-o", output, "--no-progress"])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stderr.contains("warning: \(file): tensor \(probe): 3 NaN/Inf values"), "\(imported.stderr)")
        let attribute = try RuntimeTestSupport.run("/usr/bin/python3", ["-c", """
            import h5py, sys
            print(int(h5py.File(sys.argv[1], "r")["decoder/tensors/layers.0.attn.q.weight"].attrs["non_finite"]))
            """, output])
        #expect(attribute.stdout == "3\n", "\(attribute.stderr)")
        let verified = try RuntimeTestSupport.run(HostileConfigTests.verify, [output])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("tensor layers.0.attn.q.weight: 3 NaN/Inf values (recorded at import)"), "\(verified.stdout)")
    }
}
