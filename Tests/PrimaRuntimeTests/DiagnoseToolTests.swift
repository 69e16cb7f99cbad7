import Foundation
import PrimaJSON
import PrimaTestSupport
import Testing

/// `prima-diagnose` on one case: the report, the untrained-heads warning, int8 checkpoints, and hostile inputs.
@Suite struct DiagnoseToolTests {
    static let tool = RuntimeTestSupport.binary("prima-diagnose")
    static let image = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/preprocess/scene_rgb8.png"

    static func writeRecord(_ text: String) throws -> String {
        let path = RuntimeTestSupport.temporaryDirectory() + "/case.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let record = #"{"age": 62, "gender": "MALE", "smoke": false, "region": "FACE", "diameter_1": 12, "bleed": true, "itch": "UNK"}"#

    @Test func diagnosesOneCaseAndWarnsAboutUntrainedHeads() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let metadata = try Self.writeRecord(Self.record)
        let result = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", metadata,
                                                            "--json", "--repeat", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("warning") && result.stderr.contains("untrained"))
        let parsed = try JSON.parse(result.stdout)
        let json = try #require(parsed.object)
        #expect(json["heads_trained"]?.bool == false)
        #expect(json["text"]?.string == "smokes: no; age: 62 years; gender: male; region: face; diameter 1: 12 mm; bleeds: yes")
        let classes = json["classes"]?.array?.compactMap(\.object) ?? []
        try #require(classes.count == 4)
        let probabilities = classes.compactMap { $0["probability"]?.double }
        #expect(Set(classes.compactMap { $0["code"]?.string }) == ["ACK", "BCC", "MEL", "SCC"])
        #expect(abs(probabilities.reduce(0, +) - 1) < 1e-6)
        #expect(probabilities == probabilities.sorted(by: >))
        #expect(json["prediction"]?.string == classes[0]["code"]?.string)
        let timings = json["timings_ms"]?.object
        #expect(timings?.keys == ["image", "text", "image_encoder", "text_encoder", "fusion", "decoder", "total"])
        #expect(json["runs"]?.int == 2)

        let text = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", metadata])
        #expect(text.status == 0)
        #expect(text.stdout.contains(" 1. ") && text.stdout.contains("Basal cell carcinoma") && text.stdout.contains("timings"))
    }

    @Test func int8CheckpointsDiagnoseCloseToFloat() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let quantized = RuntimeTestSupport.temporaryDirectory() + "/q.h5"
        let quantize = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-quantize"), ["--int8", checkpoint, "-o", quantized])
        #expect(quantize.status == 0, "\(quantize.stderr)")
        let metadata = try Self.writeRecord(Self.record)
        func probabilities(_ path: String) throws -> [String: Double] {
            let result = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", path, "--image", Self.image, "--metadata", metadata, "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let classes = try JSON.parse(result.stdout).object?["classes"]?.array?.compactMap(\.object) ?? []
            return Dictionary(uniqueKeysWithValues: classes.map { ($0["code"]?.string ?? "", $0["probability"]?.double ?? -1) })
        }
        let float = try probabilities(checkpoint), int8 = try probabilities(quantized)
        #expect(float.count == 4)
        for (code, p) in float { #expect(abs(p - (int8[code] ?? -1)) < 0.01, "\(code): \(p) vs \(int8[code] ?? -1)") }
    }

    @Test func hostileInputsGetOneLineErrors() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let good = try Self.writeRecord(Self.record)
        let directory = RuntimeTestSupport.temporaryDirectory()
        let truncated = directory + "/truncated.h5"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let componentOnly = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let corrupt = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/corrupt"
        let cases: [(checkpoint: String, image: String, metadata: String, message: String)] = [
            (checkpoint, corrupt + "/truncated.png", good, "truncated.png"),
            (checkpoint, corrupt + "/text.png", good, "text.png"),
            (checkpoint, corrupt + "/huge_side.png", good, "huge_side.png"),
            (checkpoint, directory + "/absent.png", good, "absent.png"),
            (checkpoint, Self.image, try Self.writeRecord("{\"age\": 62,"), "malformed JSON"),
            (checkpoint, Self.image, try Self.writeRecord("[1, 2]"), "expected a JSON object"),
            (checkpoint, Self.image, try Self.writeRecord("{\"colour\": \"red\"}"), "unknown field 'colour'"),
            (checkpoint, Self.image, try Self.writeRecord("{\"age\": \"old\"}"), "age"),
            (checkpoint, Self.image, directory + "/absent.json", "absent.json"),
            (truncated, Self.image, good, "truncated.h5"),
            (componentOnly, Self.image, good, "not a PRIMA checkpoint"),
            (directory + "/absent.h5", Self.image, good, "absent.h5"),
        ]
        for item in cases {
            let result = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", item.checkpoint, "--image", item.image, "--metadata", item.metadata])
            #expect(result.status == 2, "\(item.message): \(result.stderr)")
            #expect(result.stderr.contains(item.message), "\(result.stderr)")
            let errorLines = result.stderr.split(separator: "\n").filter { !$0.contains("warning:") }
            #expect(errorLines.count == 1, "\(result.stderr)")
            #expect(result.stdout.isEmpty)
        }
    }
}
