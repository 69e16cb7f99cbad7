import Foundation
import PrimaCheckpoint
import PrimaJSON
import Testing

/// A fixture's single safetensors file split into header object and data bytes, for corrupting.
struct SafetensorsParts {
    var header: JSONObject
    var data: [UInt8]

    init(path: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        header = try #require(try JSON.parse(Array(bytes[8..<(8 + length)])).object)
        data = Array(bytes[(8 + length)...])
    }

    /// The entry of tensor `name` as a mutable object.
    func entry(_ name: String) -> JSONObject { header[name]!.object! }

    mutating func set(_ name: String, _ entry: JSONObject?) {
        var entries = header.entries.filter { $0.key != name }
        if let entry { entries.append((name, .object(entry))) }
        header = JSONObject(entries.map { ($0.key, $0.value) })
    }

    func write(_ path: String, headerText: String? = nil) throws {
        try TestSupport.writeRawSafetensors(path, header: headerText ?? JSONValue.object(header).serialized(), data: data)
    }
}

extension JSONObject {
    /// A copy with `key` set to `value`.
    func with(_ key: String, _ value: JSONValue) -> JSONObject {
        JSONObject(entries.filter { $0.key != key }.map { ($0.key, $0.value) } + [(key, value)])
    }
}

/// Every hostile input gives exit 2, one stderr line naming the file (and tensor), and no output file.
@Suite struct BadInputTests {
    static let base = "qwen3-tied-f32"
    static let probe = "model.layers.0.self_attn.q_proj.weight"

    /// Runs `prima-convert import DIR -o OUT` and checks the refusal contract.
    func expectRefusal(_ directory: String, mentioning fragments: [String], sourceFile: String? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let output = TestSupport.temporaryDirectory() + "/out.h5"
        let result = try TestSupport.convert("import", directory, "-o", output, "--no-progress")
        #expect(result.status == 2, "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n").filter { !$0.contains("warning:") }
        #expect(lines.count == 1, "expected one error line, got: \(result.stderr)", sourceLocation: sourceLocation)
        let line = String(lines.first ?? "")
        #expect(line.hasPrefix("prima-convert: error: "), sourceLocation: sourceLocation)
        for fragment in fragments + [sourceFile ?? directory] {
            #expect(line.contains(fragment), "\"\(fragment)\" not in: \(line)", sourceLocation: sourceLocation)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (output as NSString).deletingLastPathComponent)
        #expect(leftovers.isEmpty, "left behind: \(leftovers)", sourceLocation: sourceLocation)
    }

    /// A copy of the base fixture whose model.safetensors is rewritten by `corrupt`.
    func corrupted(_ corrupt: (inout SafetensorsParts, String) throws -> Void) throws -> (directory: String, file: String) {
        let directory = try TestSupport.copyFixture(Self.base)
        let file = directory + "/model.safetensors"
        var parts = try SafetensorsParts(path: file)
        try corrupt(&parts, file)
        return (directory, file)
    }

    @Test func truncatedFile() throws {
        let (directory, file) = try corrupted { parts, path in
            parts.data.removeLast(100)
            try parts.write(path)
        }
        try expectRefusal(directory, mentioning: ["past end of file"], sourceFile: file)
    }

    @Test func fileShorterThanTheLengthPrefix() throws {
        let (directory, file) = try corrupted { _, path in try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path)) }
        try expectRefusal(directory, mentioning: ["too short"], sourceFile: file)
    }

    @Test func headerLengthBeyondTheFile() throws {
        let (directory, file) = try corrupted { parts, path in
            try TestSupport.writeRawSafetensors(path, header: JSONValue.object(parts.header).serialized(), data: parts.data,
                                                declaredLength: 10_000_000)
        }
        try expectRefusal(directory, mentioning: ["header length"], sourceFile: file)
    }

    @Test func headerLengthAboveTheLimit() throws {
        // A sparse 120 MB file, so the length fits in the file but exceeds the 100 MB cap.
        let (directory, file) = try corrupted { parts, path in
            try TestSupport.writeRawSafetensors(path, header: JSONValue.object(parts.header).serialized(), data: parts.data,
                                                declaredLength: 110_000_000)
            truncate(path, 120_000_000)
        }
        try expectRefusal(directory, mentioning: ["100 MB"], sourceFile: file)
    }

    @Test func headerNotJSON() throws {
        let (directory, file) = try corrupted { parts, path in
            try parts.write(path, headerText: "{\"a\": [1, 2" + String(repeating: " ", count: 20))
        }
        try expectRefusal(directory, mentioning: ["JSON"], sourceFile: file)
    }

    @Test func unknownDtype() throws {
        let (directory, file) = try corrupted { parts, path in
            parts.set(Self.probe, parts.entry(Self.probe).with("dtype", "F8_E4M3"))
            try parts.write(path)
        }
        try expectRefusal(directory, mentioning: [Self.probe, "F8_E4M3"], sourceFile: file)
    }

    @Test func offsetsOutOfBounds() throws {
        let (directory, file) = try corrupted { parts, path in
            let size = parts.data.count
            parts.set(Self.probe, parts.entry(Self.probe).with("data_offsets", [.int(size - 4), .int(size + 1000)]))
            try parts.write(path)
        }
        try expectRefusal(directory, mentioning: [Self.probe], sourceFile: file)
    }

    @Test func overlappingTensors() throws {
        let (directory, file) = try corrupted { parts, path in
            // Shift the tensor that follows the probe 4 bytes back, into the probe's last element.
            let probeEnd = parts.entry(Self.probe)["data_offsets"]!.array![1].int!
            let (next, entry) = parts.header.entries.first { $0.value.object?["data_offsets"]?.array?[0].int == probeEnd }!
            let offsets = entry.object!["data_offsets"]!.array!.compactMap(\.int)
            parts.set(next, entry.object!.with("data_offsets", [.int(offsets[0] - 4), .int(offsets[1] - 4)]))
            try parts.write(path)
        }
        try expectRefusal(directory, mentioning: ["overlap"], sourceFile: file)
    }

    @Test func holeBetweenTensors() throws {
        let (directory, file) = try corrupted { parts, path in
            parts.data.append(contentsOf: [UInt8](repeating: 0, count: 64))
            try parts.write(path)
        }
        try expectRefusal(directory, mentioning: ["not covered"], sourceFile: file)
    }

    @Test func shapeDisagreesWithByteRange() throws {
        let (directory, file) = try corrupted { parts, path in
            parts.set(Self.probe, parts.entry(Self.probe).with("shape", [.int(7), .int(3)]))
            try parts.write(path)
        }
        try expectRefusal(directory, mentioning: [Self.probe], sourceFile: file)
    }

    @Test func duplicateTensorNames() throws {
        let (directory, file) = try corrupted { parts, path in
            // Serialise, then repeat the first entry's key with its own value: valid JSON text, duplicate key.
            let first = parts.header.entries.first { $0.key != "__metadata__" }!
            var text = JSONValue.object(parts.header).serialized()
            text.removeLast()
            text += ",\(JSON.quoted(first.key)):\(first.value.serialized())}"
            try parts.write(path, headerText: text)
        }
        try expectRefusal(directory, mentioning: ["appears twice"], sourceFile: file)
    }

    @Test func missingTensor() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try rewrite(directory, dropping: "model.norm.weight")
        try expectRefusal(directory, mentioning: ["model.norm.weight", "missing"])
    }

    @Test func unmappedTensor() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try rewrite(directory, adding: "model.layers.0.mystery.weight")
        try expectRefusal(directory, mentioning: ["model.layers.0.mystery.weight", "not a known qwen3 tensor"])
    }

    @Test func layerBeyondTheConfig() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try rewrite(directory, adding: "model.layers.7.input_layernorm.weight")
        try expectRefusal(directory, mentioning: ["model.layers.7.input_layernorm.weight", "not expected"])
    }

    @Test func unknownModelType() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try editConfig(directory) { $0.with("model_type", "llama") }
        try expectRefusal(directory, mentioning: ["unknown model_type \"llama\""], sourceFile: directory + "/config.json")
    }

    @Test func shapeContradictsConfig() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try editConfig(directory) { $0.with("intermediate_size", 96) }
        try expectRefusal(directory, mentioning: ["mlp", "contradicts config.json"])
    }

    @Test func malformedConfig() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try Data("{\"model_type\": \"qwen3\",}".utf8).write(to: URL(fileURLWithPath: directory + "/config.json"))
        try expectRefusal(directory, mentioning: ["malformed JSON"], sourceFile: directory + "/config.json")
    }

    @Test func configFieldOfTheWrongType() throws {
        let directory = try TestSupport.copyFixture(Self.base)
        try editConfig(directory) { $0.with("hidden_size", "thirty-two") }
        try expectRefusal(directory, mentioning: ["hidden_size"])
    }

    @Test func shardIndexNamingAMissingShard() throws {
        let directory = try TestSupport.copyFixture("qwen3-untied-f16-sharded")
        let shards = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("model-") }.sorted()
        try FileManager.default.removeItem(atPath: directory + "/" + shards[1])
        try expectRefusal(directory, mentioning: [shards[1]])
    }

    // MARK: helpers

    /// Rewrites the fixture's model.safetensors without `dropping` or with an extra small tensor `adding`.
    func rewrite(_ directory: String, dropping: String? = nil, adding: String? = nil) throws {
        let path = directory + "/model.safetensors"
        var parts = try SafetensorsParts(path: path)
        var entries: [(String, JSONObject, [UInt8])] = []
        for (name, value) in parts.header.entries where name != "__metadata__" && name != dropping {
            let object = value.object!
            let offsets = object["data_offsets"]!.array!.compactMap(\.int)
            entries.append((name, object, Array(parts.data[offsets[0]..<offsets[1]])))
        }
        if let adding {
            entries.append((adding, JSONObject([("dtype", "F32"), ("shape", [.int(32)]), ("data_offsets", [0, 0])]),
                            [UInt8](repeating: 0, count: 128)))
        }
        var header: [(String, JSONValue)] = [("__metadata__", .object(JSONObject([("format", "pt")])))]
        var data: [UInt8] = []
        for (name, object, bytes) in entries {
            header.append((name, .object(object.with("data_offsets", [.int(data.count), .int(data.count + bytes.count)]))))
            data += bytes
        }
        parts.header = JSONObject(header)
        parts.data = data
        try parts.write(path)
    }

    func editConfig(_ directory: String, _ edit: (JSONObject) -> JSONObject) throws {
        let path = directory + "/config.json"
        let config = try #require(try JSON.parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))).object)
        try Data(JSONValue.object(edit(config)).serialized().utf8).write(to: URL(fileURLWithPath: path))
    }
}

/// Bad checkpoints given to `inspect` and `export`: exit 2, one line naming the file.
@Suite struct BadCheckpointTests {
    func expectRefusal(_ path: String, mentioning fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for arguments in [["inspect", path], ["export", path, "--component", "decoder", "-o", path + "-out"]] {
            let result = try TestSupport.run(TestSupport.convertBinary, arguments)
            #expect(result.status == 2, "\(arguments[0]): exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].contains(path) && lines[0].contains(fragment),
                    "\(arguments[0]): \(result.stderr)", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: path + "-out"), sourceLocation: sourceLocation)
        }
    }

    func importedCheckpoint() throws -> String {
        let path = TestSupport.temporaryDirectory() + "/m.h5"
        let result = try TestSupport.convert("import", TestSupport.fixture("qwen3-tied-f32").directory, "-o", path)
        #expect(result.status == 0, "\(result.stderr)")
        return path
    }

    @Test func notHDF5() throws {
        let path = TestSupport.temporaryDirectory() + "/x.h5"
        try Data("definitely not an HDF5 file".utf8).write(to: URL(fileURLWithPath: path))
        try expectRefusal(path, mentioning: "not an HDF5 file")
    }

    @Test func truncated() throws {
        let path = try importedCheckpoint()
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber
        truncate(path, off_t(size.intValue * 2 / 3))
        try expectRefusal(path, mentioning: "truncated")
    }

    @Test func wrongFormatName() throws {
        let path = try importedCheckpoint()
        try HDF5File.open(path: path, writable: true).root().setAttribute("format", string: "gguf")
        try expectRefusal(path, mentioning: "not a PRIMA checkpoint")
    }

    @Test func futureVersion() throws {
        let path = try importedCheckpoint()
        try HDF5File.open(path: path, writable: true).root().setAttribute("format_version", int: CheckpointFormat.version + 1)
        try expectRefusal(path, mentioning: "newer toolkit")
    }

    /// `/training` exists from version 2 on: a version-1 file holding one has an unknown top-level group.
    @Test func trainingGroupNeedsVersionTwo() throws {
        let path = try importedCheckpoint()
        try HDF5File.open(path: path, writable: true).root().createGroup("training")
        try expectRefusal(path, mentioning: "unknown top-level group \"training\"")
    }
}
