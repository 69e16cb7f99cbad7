import Foundation
import PrimaTestSupport
import Testing

/// One verdict per bad checkpoint, whichever tool reads it (Formats/prima-checkpoint.md §10): a stored part that
/// contradicts the format or another part is refused by `prima-convert inspect` and `export`, `prima-quantize`
/// (which must never copy it on) and `prima-diagnose` with the same one line and exit 2, and reported by plain
/// `prima-verify` as a failed check (exit 1). Each case is Fixtures/prima/tiny-prima.h5 changed in one place by
/// Fixtures/hostile/craft_checkpoint.py (seeded).
@Suite struct StoredPartsTests {
    static let labelsWithARepeatedCode = """
        [{"code": "ACK", "name": "A"}, {"code": "ACK", "name": "B"}, {"code": "MEL", "name": "M"}, {"code": "SCC", "name": "S"}]
        """

    /// (craft operation, group, problem as every tool words it after `FILE: GROUP: `).
    static let cases: [([String], String, String)] = [
        (["file", "prima", "labels.json", labelsWithARepeatedCode], "prima", "files/labels.json: class ACK appears twice"),
        (["preprocessing", "2048", "2048"], "image_encoder",
         "preprocessing: 2048x2048 pixels at patch size 8 make 65536 patch tokens, above the image encoder's limit of 4096"),
        (["vocab", "text_encoder", "8"], "text_encoder",
         "files/tokenizer.json: 504 of its 512 tokens have ids at or above vocab_size 8 (files/config.json)"),
        (["classids", "10"], "prima", "tensor task.class_token_ids: class ACK has token 10, but the first decoder token of \" ACK\" is"),
        (["attr", "decoder", "role", "\"image_encoder\""], "decoder", "attribute role is \"image_encoder\", not the group's name decoder"),
        (["attr", "decoder", "parameter_count", "\"many\""], "decoder", "attribute parameter_count is not an integer"),
        (["attr", "prima", "heads_trained", "2"], "prima", "attribute heads_trained is 2, not 0 or 1"),
        (["attr", "prima", "decoder_inputs", "\"text\""], "prima", "attribute decoder_inputs is \"text\", not \"image+metadata\" or \"image\""),
        (["attr", "prima", "decoder_inputs", "1"], "prima", "attribute decoder_inputs is not a string"),
        (["attr", "prima", "initialised_tensors", "\"[\\\"nope\\\"]\""], "prima",
         "attribute initialised_tensors is not a JSON list of distinct heads tensor names"),
        (["schema_empty_category"], "prima", "files/metadata_schema.json: field 'gender': a category with no values"),
        (["addfile", "decoder", "vocab.txt", "67108865"], "decoder", "files/vocab.txt: 67108865 bytes, above the limit of 67108864"),
        (["addfile", "decoder", "model.safetensors.index.json", "16"], "decoder",
         "files/model.safetensors.index.json: not a file name the format stores here"),
        (["addfile", "decoder", "..", "5"], "decoder", "files/..: not a file name the format stores here"),
        (["filegroup", "decoder", "vocab.txt"], "decoder", "files/vocab.txt: not a dataset"),
        (["delete", "decoder"], "prima", "the heads need an image_encoder, a text_encoder and a decoder; the checkpoint has no decoder"),
        (["delete", "image_encoder", "text_encoder", "decoder"], "prima",
         "the heads need an image_encoder, a text_encoder and a decoder; the checkpoint has no image_encoder, text_encoder, decoder"),
        (["retype", "decoder/config", "hidden_size", "int32"], "decoder",
         "config/hidden_size is stored as a 32-bit signed integer, not the int64 §3.3 gives it"),
        (["attr", "decoder", "tied", "\"[{\\\"name\\\":\""], "decoder", "attribute tied is not a JSON list"),
        (["nullattr", "decoder", "hf_prefix"], "decoder", "attribute hf_prefix is not a string"),
        (["crc", "decoder", "final_norm.weight", "plus2^32"], "decoder", "tensor final_norm.weight: crc32 attribute"),
    ]

    /// A copy of tiny-prima.h5 with one change (the script's operation and arguments).
    static func craft(_ arguments: [String]) throws -> String {
        let output = RuntimeTestSupport.temporaryDirectory() + "/crafted.h5"
        let result = try RuntimeTestSupport.run("/usr/bin/python3", [HostileConfigTests.script, HostileConfigTests.fixture, output] + arguments)
        try #require(result.status == 0, "craft_checkpoint.py \(arguments): \(result.stderr)")
        return output
    }

    @Test(arguments: cases)
    func everyToolGivesABadStoredPartOneVerdict(craft: [String], group: String, problem: String) throws {
        let checkpoint = try Self.craft(craft)
        let verified = try RuntimeTestSupport.run(HostileConfigTests.verify, [checkpoint])
        #expect(verified.status == 1, "\(craft): \(verified.stdout)\(verified.stderr)")
        #expect(verified.stdout.contains("\(group): ") && verified.stdout.contains("FAILED") && verified.stdout.contains(problem),
                "\(craft): \(verified.stdout)")
        let line = "\(checkpoint): \(group): \(problem)"
        let directory = (checkpoint as NSString).deletingLastPathComponent
        let runs: [(String, [String])] = [
            (HostileConfigTests.convert, ["inspect", checkpoint, "--json"]),
            (HostileConfigTests.quantize, ["--int8", checkpoint, "-o", directory + "/q.h5"]),
            (HostileConfigTests.convert, ["export", checkpoint, "--component", "image_encoder", "-o", directory + "/out"]),
        ]
        for (tool, arguments) in runs {
            HostileConfigTests.expectOneLineError(try RuntimeTestSupport.run(tool, arguments), status: 2, [line])
        }
        HostileConfigTests.expectOneLineError(try HostileConfigTests.diagnoseOne(checkpoint), status: 2, [line])
        // Nothing written, nothing left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasSuffix(".json") } == ["crafted.h5"])
    }

    @Test func anAttributeHoldingReferencesIsRefusedByEveryToolAtOpen() throws {
        let checkpoint = try Self.craft(["refattr", "decoder", "weird"])
        let line = "\(checkpoint): /decoder: attribute weird holds HDF5 references"
        let directory = (checkpoint as NSString).deletingLastPathComponent
        HostileConfigTests.expectOneLineError(try RuntimeTestSupport.run(HostileConfigTests.verify, [checkpoint]), status: 2, [line])
        HostileConfigTests.expectOneLineError(try RuntimeTestSupport.run(HostileConfigTests.convert, ["inspect", checkpoint]), status: 2, [line])
        HostileConfigTests.expectOneLineError(try RuntimeTestSupport.run(HostileConfigTests.quantize, ["--int8", checkpoint, "-o", directory + "/q.h5"]),
                                              status: 2, [line])
        HostileConfigTests.expectOneLineError(try HostileConfigTests.diagnoseOne(checkpoint), status: 2, [line])
    }

    /// With `do_resize` 0 an image keeps its own size, which the image encoder's input limit (§3.4) bounds before
    /// the encoder runs: a 1024 × 1024 PNG at patch 8 is 16,384 tokens.
    @Test func anImageKeptAtItsOwnSizeIsBoundedBeforeEncoding() throws {
        let checkpoint = try Self.craft(["attr", "image_encoder/preprocessing", "do_resize", "0"])
        let directory = (checkpoint as NSString).deletingLastPathComponent
        let image = directory + "/large.png"
        // A black 1024 × 1024 RGB PNG, written with the standard library (no randomness).
        let script = """
            import struct, sys, zlib
            w = h = 1024
            def chunk(kind, data): return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
            raw = b"".join(b"\\x00" + bytes(3 * w) for _ in range(h))
            png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
            open(sys.argv[1], "wb").write(png)
            """
        let written = try RuntimeTestSupport.run("/usr/bin/python3", ["-c", script, image])
        try #require(written.status == 0, "\(written.stderr)")
        #expect(try RuntimeTestSupport.run(HostileConfigTests.verify, [checkpoint]).status == 0)
        let result = try RuntimeTestSupport.run(HostileConfigTests.diagnose, ["--checkpoint", checkpoint, "--image", image,
                                                                            "--metadata", try HostileConfigTests.metadata()])
        HostileConfigTests.expectOneLineError(result, status: 2, [
            "\(image): 1024x1024 pixels at patch size 8 make 16384 patch tokens, above the image encoder's limit of 4096"])
    }

    @Test(arguments: ["", "/q.h5/"])
    func aFileOutputWithoutAFileNameIsAUsageError(suffix: String) throws {
        let directory = RuntimeTestSupport.temporaryDirectory()
        let output = suffix.isEmpty ? "" : directory + suffix
        let result = try RuntimeTestSupport.run(HostileConfigTests.quantize, ["--int8", HostileConfigTests.fixture, "-o", output])
        HostileConfigTests.expectOneLineError(result, status: 2, ["\"\(output)\": not a file name to write"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test(arguments: [("{\"height\": 1099511627776, \"width\": 1099511627776}", "1099511627776x1099511627776 pixels"),
                      ("{\"shortest_edge\": 1000000}", "1000000x1000000 pixels"),
                      ("{\"height\": 36, \"width\": 32}", "36x32 pixels: each side must be a positive multiple of the patch size 8")])
    func importRefusesAPreprocessingSizeEveryReaderRefuses(size: String, fragment: String) throws {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/dinov3"
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model("dinov3-mlp-reg4-f32"), toPath: directory)
        let path = directory + "/preprocessor_config.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let start = try #require(text.range(of: "\"size\": {")), end = try #require(text.range(of: "}", range: start.upperBound..<text.endIndex))
        try text.replacingCharacters(in: start.lowerBound..<end.upperBound, with: "\"size\": " + size).write(toFile: path, atomically: true, encoding: .utf8)
        let output = RuntimeTestSupport.temporaryDirectory() + "/out.h5"
        let result = try RuntimeTestSupport.run(HostileConfigTests.convert, ["import", directory, "-o", output, "--no-progress"])
        HostileConfigTests.expectOneLineError(result, status: 2, [path + ": size " + fragment])
        #expect(!FileManager.default.fileExists(atPath: output))
    }
}
