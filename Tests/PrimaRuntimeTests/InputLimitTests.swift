import Foundation
import PrimaImage
import PrimaMetadata
import PrimaModels
import PrimaTestSupport
import PrimaVerify
import Testing

/// Small inputs that declare or hold huge sizes: each is refused with one line and exit status 2 before anything
/// of that size is allocated (MetadataLimits, ImageLimits, TraceLimits). The tools run under `ulimit -v`, so an
/// allocation of the declared size would fail instead of the clean refusal, and under `timeout`, so a hang fails
/// the test instead of stalling it.
@Suite struct InputLimitTests {
    static let diagnose = RuntimeTestSupport.binary("prima-diagnose")
    static let image = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/preprocess/scene_rgb8.png"
    /// Address-space limit (KiB) for the bounded-memory runs: 1 GB, enough for a whole diagnosis with the tiny
    /// checkpoint on 2 cores (the refusals all come before the forward pass and its threads), too little for an
    /// image of the declared size.
    static let addressSpaceKiB = 1_000_000

    /// Runs `tool` with `arguments` under the address-space limit, and checks a one-line refusal with status 2
    /// naming every part, within `seconds`.
    static func expectRefusal(_ tool: String, _ arguments: [String], contains parts: [String], seconds: Double = 30,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let start = Date()
        let result = try RuntimeTestSupport.run(
            "/bin/sh", ["-c", "ulimit -v \(addressSpaceKiB); exec timeout \(Int(seconds) * 2) \"$@\"", "sh", tool] + arguments)
        let elapsed = Date().timeIntervalSince(start)
        #expect(result.status == 2, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(elapsed < seconds, "took \(elapsed) s", sourceLocation: sourceLocation)
        let errors = result.stderr.split(separator: "\n").filter { !$0.contains("warning:") }
        #expect(errors.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        for part in parts { #expect(result.stderr.contains(part), "\(part) in \(result.stderr)", sourceLocation: sourceLocation) }
    }

    /// A 100 MB record file is refused from its size before it is read; a 2 MB field inside the file-size limit is
    /// refused by the field limit.
    @Test func hugeMetadataFieldsAreRefused() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let directory = RuntimeTestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func record(_ name: String, fieldBytes: Int) throws -> String {
            let path = directory + "/" + name
            var data = Data(#"{"background_father": ""#.utf8)
            data.append(Data(repeating: UInt8(ascii: "x"), count: fieldBytes))
            data.append(Data(#""}"#.utf8))
            try data.write(to: URL(fileURLWithPath: path))
            return path
        }
        let huge = try record("huge.json", fieldBytes: 100_000_000)
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", huge],
                               contains: [huge, "larger than the limit of \(MetadataLimits.maxRecordFileBytes) bytes"])
        let long = try record("long.json", fieldBytes: 2_000_000)
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", Self.image, "--metadata", long],
                               contains: [long, "field 'background_father'", "limit of \(MetadataLimits.maxFieldBytes) bytes"])
    }

    /// metadata.csv: a 100 MB field is refused after the first MiB of it, a file over the size limit before it is
    /// read, and a column named twice with the column's name.
    @Test func hostileMetadataCSVIsRefused() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let header = "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed"
        func folder(_ write: (String) throws -> Void) throws -> String {
            let folder = RuntimeTestSupport.temporaryDirectory() + "/cases"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try write(folder + "/metadata.csv")
            return folder
        }
        let longField = try folder { path in
            var data = Data((header + "\nPAT_1,1,,,").utf8)
            data.append(Data(repeating: UInt8(ascii: "x"), count: 100_000_000))
            data.append(Data(",,,,,,,,,,,,,,,,,,,,,,PAT_1.png,\n".utf8))
            try data.write(to: URL(fileURLWithPath: path))
        }
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--folder", longField],
                               contains: ["metadata.csv line 2", "field 5", "limit of \(MetadataLimits.maxFieldBytes) bytes"])
        // A sparse file: 300 MB long without using the disk.
        let huge = try folder { path in
            #expect(FileManager.default.createFile(atPath: path, contents: Data((header + "\n").utf8)))
            #expect(truncate(path, 300_000_000) == 0)
        }
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--folder", huge],
                               contains: ["metadata.csv", "larger than the limit of \(MetadataLimits.maxCSVBytes) bytes"], seconds: 15)
        let duplicated = try folder { path in
            try "img_id,age,age\nPAT_1.png,5,6\n".write(toFile: path, atomically: true, encoding: .utf8)
        }
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--folder", duplicated],
                               contains: ["metadata.csv line 1", "column 'age' appears more than once"])
    }

    /// PNG headers declaring images over the limits are refused before libpng allocates rows or pixels:
    /// 10000 x 10000 16-bit RGB (600 MB decoded, under the pixel limit, over the decoded-bytes limit) and
    /// 20000 x 20000 16-bit RGB (2.4 GB decoded).
    @Test(arguments: [(10_000, "600000000 bytes"), (20_000, "pixels per side")])
    func hugeDeclaredImagesAreRefused(_ side: Int, _ message: String) throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let record = try DiagnoseToolTests.writeRecord(DiagnoseToolTests.record)
        let path = RuntimeTestSupport.temporaryDirectory() + "/huge.png"
        try Self.pngHeader(width: side, height: side, bitDepth: 16, colorType: 2).write(to: URL(fileURLWithPath: path))
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", path, "--metadata", record],
                               contains: [path, "image too large", message])
    }

    /// A PNG file over ImageLimits.maxFileBytes (sparse: 600 MB long without using the disk) is refused from its
    /// size before it is read, and so is a metadata schema file over MetadataLimits.maxSchemaBytes at import.
    @Test func oversizedImageAndSchemaFilesAreRefusedBeforeReading() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let record = try DiagnoseToolTests.writeRecord(DiagnoseToolTests.record)
        let directory = RuntimeTestSupport.temporaryDirectory()
        let png = directory + "/long.png"
        try Self.pngHeader(width: 8, height: 8, bitDepth: 8, colorType: 2).write(to: URL(fileURLWithPath: png))
        #expect(truncate(png, 600_000_000) == 0)
        try Self.expectRefusal(Self.diagnose, ["--checkpoint", checkpoint, "--image", png, "--metadata", record],
                               contains: [png, "exceeds the \(ImageLimits.standard.maxFileBytes)-byte limit"], seconds: 15)

        let schema = directory + "/schema.json"
        #expect(FileManager.default.createFile(atPath: schema, contents: Data("{".utf8)))
        #expect(truncate(schema, off_t(MetadataLimits.maxSchemaBytes + 1)) == 0)
        try Self.expectRefusal(RuntimeTestSupport.binary("prima-convert"),
                               ["import", "--image-encoder", RuntimeTestSupport.model("dinov3-mlp-reg4-f32"),
                                "--text-encoder", RuntimeTestSupport.model("bert-mlm-f32"),
                                "--decoder", RuntimeTestSupport.model("qwen3-tied-f32"), "--labels", PrimaPipelineTests.labels,
                                "--metadata-schema", schema, "-o", directory + "/out.h5", "--no-progress"],
                               contains: [schema, "exceeds the \(MetadataLimits.maxSchemaBytes)-byte limit"])
        #expect(!FileManager.default.fileExists(atPath: directory + "/out.h5"))
    }

    /// A PNG signature, an IHDR chunk and an empty IEND: enough for the header checks, which come first.
    static func pngHeader(width: Int, height: Int, bitDepth: UInt8, colorType: UInt8) -> Data {
        func be32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
        func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
            let typed = Array(type.utf8) + body
            return be32(body.count) + typed + be32(Int(crc32(typed)))
        }
        let ihdr = be32(width) + be32(height) + [bitDepth, colorType, 0, 0, 0]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IEND", []))
    }

    /// The PNG chunk CRC (ISO 3309, as zlib's crc32).
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// A decoder trace whose inputs have batch 100000 (a real 3 MB file) is refused from its shape before the
    /// inputs are read, as is a pixel_values input over the side limit.
    @Test func oversizedTraceInputsAreRefused() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let directory = RuntimeTestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let rows = Array(repeating: [1, 2], count: 100_000)
        let batch = Trace(subject: .component(.decoder, .tokens(ids: rows, mask: Array(repeating: [1, 1], count: rows.count))),
                          activations: [])
        try batch.write(to: directory + "/batch.h5", source: "test")
        try Self.expectRefusal(RuntimeTestSupport.binary("prima-verify"), [checkpoint, "--trace", directory + "/batch.h5"],
                               contains: [directory + "/batch.h5", "inputs/input_ids", "over the limits",
                                          "batch \(TraceLimits.maxBatch)"])
        let image = try RuntimeTestSupport.importFixture("dinov3-mlp-reg4-f32")
        let pixels = Trace(subject: .component(.imageEncoder, .pixels(RuntimeTestSupport.random([1, 3, 8, 5000], seed: 1))),
                           activations: [])
        try pixels.write(to: directory + "/pixels.h5", source: "test")
        try Self.expectRefusal(RuntimeTestSupport.binary("prima-verify"), [image, "--trace", directory + "/pixels.h5"],
                               contains: [directory + "/pixels.h5", "inputs/pixel_values", "\(TraceLimits.maxImageSide) pixels a side"])
    }
}
