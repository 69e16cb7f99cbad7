import Foundation
import PrimaMetadata
import PrimaTestSupport
import PrimaTokenizers
import Testing

/// Hostile text inside and around a checkpoint, through the tools: tokenizer.json regexes nested thousands deep
/// (which overflowed the parser's stack), Replace normalizers that grow the text without bound, metadata numbers
/// in hexadecimal and metadata that is not UTF-8. Each is one line and exit status 2, in bounded time and memory
/// (InputLimitTests.expectRefusal runs the tool under `ulimit -v` and `timeout`). The crafted tokenizer.json files
/// are the fixtures' own with one section replaced, written by this code (deterministic, no randomness).
@Suite struct HostileTextInputTests {
    static let convert = RuntimeTestSupport.binary("prima-convert")
    static let diagnose = RuntimeTestSupport.binary("prima-diagnose")
    static let verify = RuntimeTestSupport.binary("prima-verify")
    static let image = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/preprocess/scene_rgb8.png"
    static let deepPattern = String(repeating: "(?:", count: 5000) + "a" + String(repeating: ")", count: 5000)

    /// The tokenizer.json of fixture model `model` with `edit` applied, as JSON text.
    static func tokenizer(of model: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: RuntimeTestSupport.model(model) + "/tokenizer.json"))
        var json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        edit(&json)
        let text = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        return String(decoding: text, as: UTF8.self)
    }

    /// A Split on the 5,000-deep pattern before the file's own pre-tokenizer.
    static func deepSplit(_ json: inout [String: Any]) {
        let split: [String: Any] = ["type": "Split", "pattern": ["Regex": deepPattern], "behavior": "Isolated", "invert": false]
        json["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [split, json["pre_tokenizer"] ?? NSNull()]]
    }

    /// A normalizer of `count` Replaces of `letter` by 1,000 of it (the campaign's growth cases).
    static func growth(_ letter: String, count: Int) -> (inout [String: Any]) -> Void {
        { json in
            let replace: [String: Any] = ["type": "Replace", "pattern": ["String": letter],
                                          "content": String(repeating: letter, count: 1000)]
            json["normalizer"] = ["type": "Sequence", "normalizers": Array(repeating: replace, count: count)]
        }
    }

    /// tiny-prima.h5 with the text encoder's stored tokenizer.json replaced (Fixtures/hostile/craft_checkpoint.py).
    static func checkpoint(textTokenizer: String) throws -> String {
        let output = RuntimeTestSupport.temporaryDirectory() + "/crafted.h5"
        let result = try RuntimeTestSupport.run("/usr/bin/python3", [HostileConfigTests.script, HostileConfigTests.fixture,
                                                                     output, "file", "text_encoder", "tokenizer.json", textTokenizer])
        try #require(result.status == 0, "\(result.stderr)")
        return output
    }

    static func record() throws -> String { try DiagnoseToolTests.writeRecord(DiagnoseToolTests.record) }

    /// verify names the stored tokenizer's problem as one verdict line (its status for a defective stored part, 1);
    /// diagnose refuses with one line and exit 2. Neither crashes.
    @Test func deeplyNestedStoredRegexIsRefused() throws {
        let checkpoint = try Self.checkpoint(textTokenizer: try Self.tokenizer(of: "bert-mlm-f32", Self.deepSplit))
        let verified = try RuntimeTestSupport.run(Self.verify, [checkpoint])
        #expect(verified.status == 1, "\(verified.stdout)\(verified.stderr)")
        let problems = verified.stdout.split(separator: "\n").filter { $0.contains("nest more than") }
        #expect(problems.count == 1 && problems[0].contains("files/tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex"),
                "\(verified.stdout)")
        try InputLimitTests.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", try Self.record()],
                                          contains: [checkpoint, "text_encoder: files/tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex",
                                                     "nest more than \(TokenizerLimits.maxRegexNesting) deep"])
    }

    /// The campaign's tok_replace_growth_in_text: two Replaces of `e` by 1,000 `e`s took diagnose 30 s and 3 GB;
    /// the second is refused before it allocates.
    @Test func growingStoredNormalizerIsRefusedByDiagnose() throws {
        let checkpoint = try Self.checkpoint(textTokenizer: try Self.tokenizer(of: "bert-mlm-f32", Self.growth("e", count: 2)))
        try InputLimitTests.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", try Self.record()],
                                          contains: [checkpoint, "text_encoder/files/tokenizer.json: normalizer.normalizers[1]",
                                                     "past the limit of \(TokenizerLimits.maxTextGrowth) characters"])
    }

    /// `import --labels` encodes the class tokens with the decoder's tokenizer: a deep regex or five chained
    /// Replaces (which aborted allocating 4 GB) are refused with one line, and no checkpoint is written.
    @Test(arguments: [("deep", "nest more than"), ("growth", "past the limit of")])
    func hostileDecoderTokenizerIsRefusedAtImport(_ kind: String, _ message: String) throws {
        let directory = RuntimeTestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let decoder = directory + "/decoder"
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model("qwen3-tied-f32"), toPath: decoder)
        let text = try Self.tokenizer(of: "qwen3-tied-f32", kind == "deep" ? Self.deepSplit : Self.growth("a", count: 5))
        try FileManager.default.removeItem(atPath: decoder + "/tokenizer.json")
        try text.write(toFile: decoder + "/tokenizer.json", atomically: true, encoding: .utf8)
        let output = directory + "/out.h5"
        try InputLimitTests.expectRefusal(Self.convert, [
            "import", "--image-encoder", RuntimeTestSupport.model("dinov3-mlp-reg4-f32"), "--text-encoder",
            RuntimeTestSupport.model("bert-mlm-f32"), "--decoder", decoder, "--labels", PrimaPipelineTests.labels,
            "-o", output, "--no-progress"], contains: [decoder + "/tokenizer.json", message])
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    /// Metadata numbers are JSON numbers or decimal strings: "0x3d" was read as 61.
    @Test func hexadecimalNumberStringsAreRefused() throws {
        let record = try DiagnoseToolTests.writeRecord(#"{"age": "0x3d", "gender": "MALE"}"#)
        let checkpoint = try PrimaPipelineTests.assemble()
        try InputLimitTests.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", record],
                                          contains: [record, "field 'age': expected a number, got \"0x3d\""])
    }

    /// Invalid UTF-8 (Latin-1 "é") is refused in a JSON record and in metadata.csv alike, naming the file, the
    /// line and the field.
    @Test func latin1MetadataIsRefused() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let directory = RuntimeTestSupport.temporaryDirectory()
        let record = directory + "/record.json"
        try Data(#"{"age": 62,"#.utf8 + [0x0A] + #"  "background_father": "M"#.utf8 + [0xE9] + #"xico"}"#.utf8)
            .write(to: URL(fileURLWithPath: record))
        try InputLimitTests.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", record],
                                          contains: [record + " line 2: field 'background_father': not UTF-8 text"])

        let folder = directory + "/cases"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data("img_id,age,background_father\nPAT_1.png,62,ITALY\nPAT_2.png,40,M".utf8 + [0xE9] + "xico\n".utf8)
            .write(to: URL(fileURLWithPath: folder + "/metadata.csv"))
        try InputLimitTests.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--folder", folder],
                                          contains: [folder + "/metadata.csv line 3: field 'background_father': not UTF-8 text"])
    }
}
