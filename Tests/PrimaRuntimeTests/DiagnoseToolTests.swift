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

    /// A checkpoint whose decoder reads the image only (`decoder_inputs` "image"): the metadata is rendered and shown
    /// as not read, the text encoder does not run, and the probabilities are the same whatever the metadata says —
    /// while the same checkpoint with the default decoder inputs does read it.
    @Test func anImageOnlyDecoderIgnoresTheMetadata() throws {
        let imageOnly = try StoredPartsTests.craft(["attr", "prima", "decoder_inputs", "\"image\""])
        let records = [try Self.writeRecord(Self.record),
                       try Self.writeRecord(#"{"age": 19, "gender": "FEMALE", "smoke": true, "region": "BACK", "bleed": false}"#)]
        func run(_ checkpoint: String, _ metadata: String) throws -> JSONObject {
            let result = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", metadata, "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            return try #require(try JSON.parse(result.stdout).object)
        }
        func probabilities(_ json: JSONObject) -> [String: Double] {
            Dictionary(uniqueKeysWithValues: (json["classes"]?.array?.compactMap(\.object) ?? []).map {
                ($0["code"]?.string ?? "", $0["probability"]?.double ?? -1)
            })
        }
        let first = try run(imageOnly, records[0]), second = try run(imageOnly, records[1])
        #expect(first["decoder_inputs"]?.string == "image" && first["text"]?.string != second["text"]?.string)
        #expect(probabilities(first).count > 1 && probabilities(first) == probabilities(second))
        #expect(first["timings_ms"]?.object?.keys == ["image", "text", "image_encoder", "fusion", "decoder", "total"])
        let full = HostileConfigTests.fixture
        let fullFirst = try run(full, records[0]), fullSecond = try run(full, records[1])
        #expect(fullFirst["decoder_inputs"]?.string == "image+metadata" && probabilities(fullFirst) != probabilities(fullSecond))

        let text = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", imageOnly, "--image", Self.image, "--metadata", records[0]])
        #expect(text.status == 0 && text.stdout.contains("(not read: this checkpoint's decoder sees the image only"), "\(text.stdout)")
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

    /// A PAD-UFES-20-style folder: two good images in a subfolder, a corrupt one, and a row without an image.
    static func makeFolder(extraRow: String = "") throws -> String {
        let folder = RuntimeTestSupport.temporaryDirectory() + "/cases"
        let part = folder + "/imgs_part_1"
        try FileManager.default.createDirectory(atPath: part, withIntermediateDirectories: true)
        let images = RuntimeTestSupport.repositoryRoot + "/Fixtures/images"
        for (source, name) in [("preprocess/scene_rgb8.png", "PAT_1_1_1.png"), ("preprocess/small_rgb8.png", "PAT_2_2_2.png"),
                               ("corrupt/truncated.png", "PAT_3_3_3.png")] {
            try FileManager.default.copyItem(atPath: images + "/" + source, toPath: part + "/" + name)
        }
        let csv = """
            patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed
            PAT_1,1,False,False,POMERANIA,POMERANIA,62,False,MALE,True,True,True,True,2,FACE,12,8,BCC,True,UNK,False,False,True,True,PAT_1_1_1.png,True
            PAT_2,2,,,,,55,,,,,,,,BACK,,,ACK,False,False,False,False,False,False,PAT_2_2_2.png,False
            PAT_3,3,,,,,40,,,,,,,,ARM,,,MEL,False,False,False,False,False,False,PAT_3_3_3.png,True
            PAT_4,4,,,,,33,,,,,,,,ARM,,,SCC,False,False,False,False,False,False,PAT_4_4_4.png,True

            """ + extraRow
        try csv.write(toFile: folder + "/metadata.csv", atomically: true, encoding: .utf8)
        return folder
    }

    @Test func batchModeWritesResultsAndMetricsAndSkipsBrokenCases() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let folder = try Self.makeFolder()
        let out = RuntimeTestSupport.temporaryDirectory()
        let result = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--folder", folder, "-o", out + "/r.csv",
                                                            "--summary", out + "/s.json", "--no-progress"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("macro F1") && result.stdout.contains("balanced accuracy"))
        #expect(result.stderr.contains("skipped: ") && result.stderr.contains("PAT_3_3_3.png") && result.stderr.contains("PAT_4_4_4.png"))
        let rows = try String(contentsOfFile: out + "/r.csv", encoding: .utf8).split(separator: "\r\n")
        #expect(rows.first == "img_id,predicted,p_ACK,p_BCC,p_MEL,p_SCC,true_label,correct,error")
        #expect(rows.count == 5)
        #expect(rows[1].hasPrefix("PAT_1_1_1.png,") && rows[1].contains(",BCC,"))
        let summary = try JSON.parse(try String(contentsOfFile: out + "/s.json", encoding: .utf8)).object
        #expect(summary?["cases"]?.int == 4 && summary?["failed"]?.int == 2 && summary?["scored"]?.int == 2)

        // The JSON results agree with the single-case tool on the first case.
        let json = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--folder", folder, "-o", out + "/r.json", "--no-progress"])
        #expect(json.status == 0)
        #expect(FileManager.default.fileExists(atPath: out + "/r.json"))

        // Existing outputs need --force; a label outside the checkpoint's classes stops the batch; nothing is written.
        let again = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--folder", folder, "-o", out + "/r.csv", "--no-progress"])
        #expect(again.status == 2 && again.stderr.contains("already exists"))
        let foreign = try Self.makeFolder(extraRow: "PAT_5,5,,,,,33,,,,,,,,ARM,,,NEV,False,False,False,False,False,False,PAT_1_1_1.png,True\n")
        let refused = try RuntimeTestSupport.run(Self.tool, ["--checkpoint", checkpoint, "--folder", foreign, "-o", out + "/n.csv", "--no-progress"])
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/n.csv"))
    }
}
