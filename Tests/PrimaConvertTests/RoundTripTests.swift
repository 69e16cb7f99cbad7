import Foundation
import PrimaCheckpoint
import PrimaConvert
import PrimaSafetensors
import Testing

/// Every tensor of a model directory, by name: dtype, shape and bytes.
func tensorBytes(of directory: String) throws -> [String: (dtype: String, shape: [Int], bytes: [UInt8])] {
    let model = try SafetensorsModel(directory: directory)
    var result: [String: (dtype: String, shape: [Int], bytes: [UInt8])] = [:]
    for weight in model.weights {
        let entry = weight.entry, file = weight.file
        var bytes = [UInt8](repeating: 0, count: entry.byteCount)
        try bytes.withUnsafeMutableBytes { try file.read(entry, byteRange: 0..<entry.byteCount, into: $0) }
        result[entry.name] = (entry.dtype.safetensorsName, entry.shape, bytes)
    }
    return result
}

@Suite struct RoundTripTests {
    @Test func manifestListsEveryFixtureDirectory() throws {
        let directories = try FileManager.default.contentsOfDirectory(atPath: TestSupport.fixtures).filter {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: TestSupport.fixtures + "/" + $0, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        #expect(Set(directories) == Set(TestSupport.manifest.map(\.name)))
        #expect(TestSupport.manifest.count >= 13)
    }

    /// import → export gives back every tensor bit for bit, the same tensor set, and the verbatim files.
    @Test(arguments: TestSupport.manifest)
    func importExportIsBitExact(_ fixture: TestSupport.Fixture) throws {
        let work = TestSupport.temporaryDirectory()
        let checkpoint = work + "/model.h5"
        let summary = try Importer.run([ImportSource(directory: fixture.directory, role: nil)], output: checkpoint,
                                       overwrite: false, showProgress: false, warn: { _ in })
        let role = try #require(summary.components.first?.role)
        let exported = work + "/exported"
        _ = try Exporter.run(checkpoint: checkpoint, role: role, output: exported, maxShardBytes: 5_000_000_000,
                             overwrite: false, showProgress: false)

        let original = try tensorBytes(of: fixture.directory)
        let roundTrip = try tensorBytes(of: exported)
        #expect(Set(roundTrip.keys) == Set(original.keys))
        #expect(Set(original.keys) == Set(fixture.tensorNames))
        for (name, source) in original {
            let back = try #require(roundTrip[name], "tensor \(name) missing after round trip")
            #expect(back.dtype == source.dtype && back.shape == source.shape, "tensor \(name)")
            #expect(back.bytes == source.bytes, "tensor \(name): bytes differ")
        }
        for name in CheckpointFormat.auxiliaryFileNames {
            let sourcePath = fixture.directory + "/" + name
            guard FileManager.default.fileExists(atPath: sourcePath) else {
                #expect(!FileManager.default.fileExists(atPath: exported + "/" + name))
                continue
            }
            #expect(FileManager.default.contents(atPath: exported + "/" + name) == FileManager.default.contents(atPath: sourcePath),
                    "\(name) differs")
        }
        // Nothing but the model files: no staging leftovers next to the export or the checkpoint.
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).sorted() == ["exported", "model.h5"])
    }

    @Test func shardedExportWritesAnIndexThatReadsBack() throws {
        let fixture = TestSupport.fixture("qwen3-untied-f16-sharded")
        let work = TestSupport.temporaryDirectory()
        _ = try Importer.run([ImportSource(directory: fixture.directory, role: nil)], output: work + "/m.h5",
                             overwrite: false, showProgress: false, warn: { _ in })
        let summary = try Exporter.run(checkpoint: work + "/m.h5", role: .decoder, output: work + "/out",
                                       maxShardBytes: 20_000, overwrite: false, showProgress: false)
        #expect(summary.shardCount > 1)
        #expect(FileManager.default.fileExists(atPath: work + "/out/model.safetensors.index.json"))
        let original = try tensorBytes(of: fixture.directory)
        let back = try tensorBytes(of: work + "/out")
        #expect(Set(back.keys) == Set(original.keys))
        for (name, source) in original { #expect(back[name]?.bytes == source.bytes, "tensor \(name)") }
    }

    @Test func tiedHeadIsStoredOnceAndReproducedOnlyWhenTheSourceHadIt() throws {
        let work = TestSupport.temporaryDirectory()
        for (name, headInSource) in [("qwen3-tied-headstored-bf16", true), ("qwen3-tied-bf16", false)] {
            let path = work + "/\(name).h5"
            _ = try Importer.run([ImportSource(directory: TestSupport.fixture(name).directory, role: nil)], output: path,
                                 overwrite: false, showProgress: false, warn: { _ in })
            let decoder = try Checkpoint(path: path).component(.decoder)
            let records = try decoder.tensorRecords()
            let head = try #require(records.first { $0.name == "lm_head.weight" })
            #expect(head.aliasOf == "embed.tokens")
            #expect(try decoder.group.intAttribute("tensor_count") == records.filter { $0.aliasOf == nil }.count)
            _ = try Exporter.run(checkpoint: path, role: .decoder, output: work + "/\(name)", maxShardBytes: 1 << 40,
                                 overwrite: false, showProgress: false)
            #expect((try tensorBytes(of: work + "/\(name)")["lm_head.weight"] != nil) == headInSource)
        }
    }

    @Test func assemblesSeveralComponentsIntoOneCheckpoint() throws {
        let work = TestSupport.temporaryDirectory()
        let path = work + "/prima.h5"
        let summary = try Importer.run([
            ImportSource(directory: TestSupport.fixture("dinov3-mlp-reg4-f32").directory, role: .imageEncoder),
            ImportSource(directory: TestSupport.fixture("bert-mlm-f32").directory, role: .textEncoder),
            ImportSource(directory: TestSupport.fixture("qwen3-tied-f32").directory, role: .decoder),
        ], output: path, overwrite: false, showProgress: false, warn: { _ in })
        #expect(summary.components.map(\.role) == [.imageEncoder, .textEncoder, .decoder])
        let checkpoint = try Checkpoint(path: path)
        #expect(checkpoint.roles == [.imageEncoder, .textEncoder, .decoder])
        let image = try checkpoint.component(.imageEncoder)
        #expect(try image.subgroup("preprocessing").intAttribute("height") == 32)
        #expect(try image.subgroup("config").intAttribute("num_register_tokens") == 4)
        let text = try checkpoint.component(.textEncoder)
        #expect(try text.attribute("architecture") == "bert")
        #expect(try text.fileNames().contains("tokenizer.json"))
        let sources = try text.attribute("source_files")
        #expect(sources.contains("\"model.safetensors\"") && sources.contains("\"sha256\""))
    }
}
