import Foundation
import PrimaJSON
import PrimaTensor
import Testing
@testable import PrimaSafetensors

@Suite struct SafetensorsHostileFileTests {
    let directory: TemporaryDirectory
    init() throws { directory = try TemporaryDirectory() }

    /// A file holding one F32 tensor `w` of shape `[2]` with the given entry text, and `data`.
    func oneTensor(_ entry: String, data: [UInt8] = patternBytes(8)) throws -> String {
        try directory.writeSafetensors("t.safetensors", header: #"{"w":\#(entry)}"#, data: data)
    }

    @Test func fileAndHeaderLength() throws {
        let short = try directory.write("short.safetensors", [1, 0, 0, 0, 0])
        expectOpenFailure(short, "file is 5 bytes, too short for the 8-byte header length (truncated?)")

        let huge = try directory.writeSafetensors("huge.safetensors", header: "{}", data: [], declaredLength: 100_000_001)
        expectOpenFailure(huge, "header length 100000001 exceeds the 100 MB limit")
        let garbage = try directory.writeSafetensors("garbage.safetensors", header: "{}", data: [], declaredLength: .max)
        expectOpenFailure(garbage, "header length 18446744073709551615 exceeds the 100 MB limit")

        let truncated = try directory.writeSafetensors("trunc.safetensors", header: "{}  ", data: [], declaredLength: 1000)
        expectOpenFailure(truncated, "header length 1000 extends past end of file (file is 12 bytes; truncated?)")

        expectOpenFailure(directory.file("absent.safetensors"), "cannot open: No such file or directory")
        expectOpenFailure(directory.path, "not a regular file")
        let fifo = directory.file("fifo.safetensors")
        #expect(mkfifo(fifo, 0o600) == 0)
        expectOpenFailure(fifo, "not a regular file")  // without blocking on the open
    }

    @Test func headerIsNotJSON() throws {
        let empty = try directory.writeSafetensors("empty.safetensors", header: "", data: [])
        expectOpenFailure(empty, "header is not valid JSON: empty input at header byte 0")

        // Header {"a<FF>":1}.
        let badUTF8 = try directory.write("utf8.safetensors", [8, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x22, 0x61, 0xFF, 0x22, 0x3A, 0x31, 0x7D])
        expectOpenFailure(badUTF8, "header is not valid UTF-8 (header byte 3)")

        let cut = try directory.writeSafetensors("cut.safetensors", header: #"{"w":"#, data: [])
        expectOpenFailure(cut, "header is not valid JSON: unexpected end of input (expected a value) at header byte 5")

        let array = try directory.writeSafetensors("array.safetensors", header: "[1,2]", data: [])
        expectOpenFailure(array, "header is not a JSON object (it is an array)")

        let leading = try directory.writeSafetensors("leading.safetensors", header: " {}", data: [])
        expectOpenFailure(leading, "header starts with whitespace; it must start with '{'")

        let nested = try directory.writeSafetensors("nested.safetensors", header: #"{"w":{"dtype":"F32","dtype":"F16"}}"#, data: [])
        expectOpenFailure(nested, #"header is not valid JSON: duplicate key "dtype" at header byte 20"#)
    }

    @Test func duplicateTensorNames() throws {
        let first = entryJSON("F32", [1], 0, 4)
        let header = #"{"w":\#(first),"w":\#(entryJSON("F32", [1], 4, 8))}"#
        let path = try directory.writeSafetensors("dup.safetensors", header: header, data: patternBytes(8))
        let secondKeyOffset = #"{"w":"#.utf8.count + first.utf8.count + 1
        expectOpenFailure(path, tensor: "w", "appears twice in the header (header byte \(secondKeyOffset))")

        // In a header with enough tensors for hashed lookups, a repeat of the very first name.
        let many = (0..<20).map { #""t\#($0)":\#(entryJSON("U8", [1], $0, $0 + 1))"# }.joined(separator: ",")
        let late = try directory.writeSafetensors("late.safetensors", header: "{\(many),\"t0\":\(entryJSON("U8", [1], 20, 21))}",
                                                  data: patternBytes(21))
        expectOpenFailure(late, tensor: "t0", "appears twice in the header")

        let metadata = try directory.writeSafetensors("dupmeta.safetensors", header: #"{"__metadata__":{},"__metadata__":{}}"#, data: [])
        expectOpenFailure(metadata, #""__metadata__" appears twice in the header"#)
    }

    @Test func malformedEntries() throws {
        expectOpenFailure(try oneTensor("[1]"), tensor: "w", "entry is an array, expected an object with dtype, shape and data_offsets")
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","data_offsets":[0,8]}"#), tensor: "w", #"missing "shape""#)
        expectOpenFailure(try oneTensor(#"{"shape":[2],"data_offsets":[0,8]}"#), tensor: "w", #"missing "dtype""#)
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2]}"#), tensor: "w", #"missing "data_offsets""#)
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offsets":[0,8]}"#), tensor: "w",
                          #"unexpected field "offsets" (an entry has only dtype, shape and data_offsets)"#)
        expectOpenFailure(try oneTensor(#"{"dtype":4,"shape":[2],"data_offsets":[0,8]}"#), tensor: "w", #""dtype" is a number, expected a string"#)
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":"2","data_offsets":[0,8]}"#), tensor: "w",
                          #""shape" is a string, expected an array of non-negative integers"#)
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2],"data_offsets":{"begin":0}}"#), tensor: "w",
                          #"data_offsets must be two non-negative integers [begin, end], found {"begin":0}"#)
    }

    @Test func unknownDtype() throws {
        expectOpenFailure(try oneTensor(entryJSON("F8_E4M3", [8], 0, 8)), tensor: "w", #"unknown dtype "F8_E4M3""#)
        expectOpenFailure(try oneTensor(entryJSON("f32", [2], 0, 8)), tensor: "w", #"unknown dtype "f32""#)
    }

    @Test func badShapes() throws {
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}"#), tensor: "w", "shape dimension -1 is negative")
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}"#), tensor: "w", "shape dimension 1.5 is not an integer")
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}"#), tensor: "w", "shape dimension 2e0 is not an integer")
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}"#), tensor: "w",
                          #"shape dimension "2" is a string, expected a non-negative integer"#)
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}"#), tensor: "w",
                          "shape dimension 18446744073709551616 is too large")
        expectOpenFailure(try oneTensor(entryJSON("F32", [1 << 62, 4], 0, 8)), tensor: "w",
                          "shape [4611686018427387904, 4] of F32 overflows the byte count")
    }

    @Test func badOffsets() throws {
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}"#), tensor: "w",
                          "data_offsets must be two non-negative integers [begin, end], found [0,4,8]")
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}"#), tensor: "w", "found [-8,0]")
        expectOpenFailure(try oneTensor(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}"#), tensor: "w", "found [0,8.0]")
        expectOpenFailure(try oneTensor(entryJSON("F32", [2], 8, 0)), tensor: "w", "data_offsets [8, 0] has begin after end")
        expectOpenFailure(try oneTensor(entryJSON("F32", [2, 3], 0, 20), data: patternBytes(20)), tensor: "w",
                          "shape [2, 3] of F32 is 24 bytes but data_offsets [0, 20] span 20")
        expectOpenFailure(try oneTensor(entryJSON("F32", [4], 0, 16)), tensor: "w",
                          "data_offsets [0, 16] extend past end of file (the data region is 8 bytes; file truncated?)")
    }

    @Test func truncatedFileSaysTruncated() throws {
        let path = directory.file("whole.safetensors")
        let writer = try SafetensorsWriter(path: path, tensors: [
            SafetensorsTensorSpec(name: "a", dtype: .f32, shape: [4]),
            SafetensorsTensorSpec(name: "b", dtype: .f32, shape: [4]),
        ])
        try patternBytes(32).withUnsafeBytes { try writer.append($0) }
        try writer.finish()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let cut = try directory.write("cut.safetensors", Array(bytes.dropLast(5)))
        expectOpenFailure(cut, tensor: "b", "data_offsets [16, 32] extend past end of file (the data region is 27 bytes; file truncated?)")
    }

    @Test func overlapsAndHoles() throws {
        let overlap = try directory.writeSafetensors("overlap.safetensors",
            header: #"{"a":\#(entryJSON("F32", [2], 0, 8)),"b":\#(entryJSON("F32", [2], 4, 12))}"#, data: patternBytes(12))
        expectOpenFailure(overlap, tensor: "b", "data_offsets [4, 12] overlap tensor a [0, 8]")

        let same = try directory.writeSafetensors("same.safetensors",
            header: #"{"a":\#(entryJSON("F32", [2], 0, 8)),"b":\#(entryJSON("I32", [2], 0, 8))}"#, data: patternBytes(8))
        expectOpenFailure(same, tensor: "b", "data_offsets [0, 8] overlap tensor a [0, 8]")

        let emptyInside = try directory.writeSafetensors("inside.safetensors",
            header: #"{"a":\#(entryJSON("F32", [2], 0, 8)),"z":\#(entryJSON("F32", [0], 4, 4))}"#, data: patternBytes(8))
        expectOpenFailure(emptyInside, tensor: "z", "data_offsets [4, 4] overlap tensor a [0, 8]")

        let gap = try directory.writeSafetensors("gap.safetensors",
            header: #"{"a":\#(entryJSON("F32", [2], 0, 8)),"b":\#(entryJSON("F32", [2], 16, 24))}"#, data: patternBytes(24))
        expectOpenFailure(gap, "8 bytes of data not covered by any tensor, at data offsets [8, 16) between tensor a and tensor b")

        let late = try directory.writeSafetensors("late.safetensors", header: #"{"a":\#(entryJSON("F32", [2], 8, 16))}"#, data: patternBytes(16))
        expectOpenFailure(late, "8 bytes of data not covered by any tensor, at data offsets [0, 8) before tensor a, the first")

        let trailing = try directory.writeSafetensors("trailing.safetensors", header: #"{"a":\#(entryJSON("F32", [2], 0, 8))}"#, data: patternBytes(12))
        expectOpenFailure(trailing, "4 bytes of data not covered by any tensor, at data offsets [8, 12) after tensor a, the last")

        let noTensors = try directory.writeSafetensors("none.safetensors", header: "{}", data: patternBytes(3))
        expectOpenFailure(noTensors, "3 bytes of data not covered by any tensor, at data offsets [0, 3) and the header lists no tensors")
    }

    @Test func badMetadata() throws {
        let number = try directory.writeSafetensors("m1.safetensors", header: #"{"__metadata__":{"format":"pt","k":1}}"#, data: [])
        expectOpenFailure(number, #""__metadata__" must map strings to strings, but "k" is a number"#)
        let array = try directory.writeSafetensors("m2.safetensors", header: #"{"__metadata__":["pt"]}"#, data: [])
        expectOpenFailure(array, #""__metadata__" is an array, expected an object mapping strings to strings"#)
    }

    @Test func hostileNamesStayOnOneLine() throws {
        let path = try directory.writeSafetensors("names.safetensors", header: #"{"evil\nname":\#(entryJSON("X9", [1], 0, 1))}"#, data: [0])
        do {
            _ = try SafetensorsFile(path: path)
            Issue.record("accepted an unknown dtype")
        } catch {
            #expect(error.description == #"\#(path): tensor "evil\nname": unknown dtype "X9""#)
            #expect(error.tensor == "evil\nname")
        }
    }

    @Test func validEdgeCases() throws {
        // Zero-byte tensors are valid anywhere between others, including at offset 0 and at the very end;
        // trailing spaces pad the header; an empty file with "{}" is valid.
        let header = #"{"e0":\#(entryJSON("F16", [0, 4], 0, 0)),"a":\#(entryJSON("U8", [3], 0, 3)),"e1":\#(entryJSON("I64", [2, 0], 3, 3)),"s":\#(entryJSON("BOOL", [], 3, 4)),"e2":\#(entryJSON("F32", [0], 4, 4))}    "#
        let path = try directory.writeSafetensors("edges.safetensors", header: header, data: [7, 8, 9, 1])
        let file = try SafetensorsFile(path: path)
        #expect(file.entries.map(\.name) == ["e0", "a", "e1", "s", "e2"])
        #expect(file.metadata == nil)
        #expect(file.entry(named: "s")?.shape == [])
        let bytes = try file.readTensor(#require(file.entry(named: "a")))
        #expect(bytes.withUnsafeBytes { Array($0) } == [7, 8, 9])
        let empty = try file.readTensor(#require(file.entry(named: "e1")))
        #expect(empty.byteCount == 0 && empty.shape == [2, 0])
        #expect(file.entry(named: "missing") == nil)

        let emptyFile = try SafetensorsFile(path: directory.writeSafetensors("empty.safetensors", header: "{}", data: []))
        #expect(emptyFile.entries.isEmpty)
        #expect(emptyFile.dataStart == 10)
    }
}

@Suite struct SafetensorsRoundTripTests {
    let directory: TemporaryDirectory
    init() throws { directory = try TemporaryDirectory() }

    static let specs = [
        SafetensorsTensorSpec(name: "embed.weight", dtype: .f32, shape: [2, 3]),
        SafetensorsTensorSpec(name: "norm.weight", dtype: .bf16, shape: [5]),
        SafetensorsTensorSpec(name: "empty", dtype: .f16, shape: [0, 5]),
        SafetensorsTensorSpec(name: "step", dtype: .i64, shape: []),
        SafetensorsTensorSpec(name: "mask", dtype: .bool, shape: [3]),
        SafetensorsTensorSpec(name: "ids", dtype: .i32, shape: [2, 2]),
    ]

    @Test func writerThenReader() throws {
        let path = directory.file("model.safetensors")
        let metadata = ["format": "pt", "note": "written by \"tests\"\n"]
        let writer = try SafetensorsWriter(path: path, tensors: Self.specs, metadata: metadata)
        #expect(writer.dataStart % 8 == 0)
        #expect(writer.dataSize == 24 + 10 + 0 + 8 + 3 + 16)
        let data = patternBytes(writer.dataSize)
        // Chunks that split and span tensors.
        var offset = 0
        for chunk in [1, 7, 13, 0, 2, 30, 8] {
            try data[offset..<offset + chunk].withUnsafeBytes { try writer.append($0) }
            offset += chunk
        }
        #expect(offset == data.count)
        try writer.finish()

        let file = try SafetensorsFile(path: path)
        #expect(file.dataStart == writer.dataStart)
        #expect(file.dataStart % 8 == 0)
        #expect(file.fileSize == file.dataStart + data.count)
        #expect(file.metadata == metadata)
        #expect(file.entries == writer.layout)
        #expect(file.entries.map(\.name) == Self.specs.map(\.name))
        #expect(file.entries.map(\.shape) == Self.specs.map(\.shape))
        #expect(file.entries.map(\.dtype) == Self.specs.map(\.dtype))
        for entry in file.entries {
            #expect(try readBytes(file, entry) == Array(data[entry.begin..<entry.end]), "\(entry.name)")
            let tensor = try file.readTensor(entry)
            #expect(tensor.shape == entry.shape && tensor.dtype == entry.dtype)
            #expect(tensor.withUnsafeBytes { Array($0) } == Array(data[entry.begin..<entry.end]))
        }
        // The header is compact JSON in the given order, metadata first with sorted keys, then spaces up to a
        // multiple of 8; the data follows unchanged.
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        let header = String(decoding: bytes[8..<file.dataStart], as: UTF8.self)
        let json = header.replacingOccurrences(of: " +$", with: "", options: .regularExpression)
        #expect(json.hasPrefix(#"{"__metadata__":{"format":"pt","note":"written by \"tests\"\n"},"embed.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"norm.weight":{"dtype":"BF16","shape":[5],"data_offsets":[24,34]},"empty":"#))
        #expect(json.hasSuffix(#""ids":{"dtype":"I32","shape":[2,2],"data_offsets":[45,61]}}"#))
        #expect(header.utf8.count - json.utf8.count < 8)
        #expect(Array(bytes[file.dataStart...]) == data)
    }

    @Test func headerMatchesTheReferenceWriter() throws {
        // safetensors 0.8.0, `save_file({"b": f32 [2,3], "a": f16 [3], "c": i64 [0,4], "d": bool []},
        // metadata={"format": "pt", "z": "1", "a": "2"})`, which orders tensors by alignment then name. Written
        // in that order, our header is byte-for-byte the reference's (N = 272, three spaces of padding).
        let reference = #"{"__metadata__":{"a":"2","format":"pt","z":"1"},"c":{"dtype":"I64","shape":[0,4],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"a":{"dtype":"F16","shape":[3],"data_offsets":[24,30]},"d":{"dtype":"BOOL","shape":[],"data_offsets":[30,31]}}   "#
        let path = directory.file("ref.safetensors")
        let writer = try SafetensorsWriter(path: path, tensors: [
            SafetensorsTensorSpec(name: "c", dtype: .i64, shape: [0, 4]),
            SafetensorsTensorSpec(name: "b", dtype: .f32, shape: [2, 3]),
            SafetensorsTensorSpec(name: "a", dtype: .f16, shape: [3]),
            SafetensorsTensorSpec(name: "d", dtype: .bool, shape: []),
        ], metadata: ["format": "pt", "z": "1", "a": "2"])
        try patternBytes(31).withUnsafeBytes { try writer.append($0) }
        try writer.finish()
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.prefix(8) == [16, 1, 0, 0, 0, 0, 0, 0])
        #expect(String(decoding: bytes[8..<280], as: UTF8.self) == reference)
        #expect(writer.headerLength == 272)
    }

    @Test func readsByteSubRanges() throws {
        let path = directory.file("sub.safetensors")
        let writer = try SafetensorsWriter(path: path, tensors: Self.specs)
        let data = patternBytes(writer.dataSize, start: 100)
        try data.withUnsafeBytes { try writer.append($0) }
        try writer.finish()

        let file = try SafetensorsFile(path: path)
        let entry = try #require(file.entry(named: "embed.weight"))
        var middle = [UInt8](repeating: 0, count: 8)
        try middle.withUnsafeMutableBytes { try file.read(entry, byteRange: 4..<12, into: $0) }
        #expect(middle == Array(data[entry.begin + 4..<entry.begin + 12]))

        let ids = try #require(file.entry(named: "ids"))
        var last = [UInt8](repeating: 0, count: 4)
        try last.withUnsafeMutableBytes { try file.read(ids, byteRange: 12..<16, into: $0) }
        #expect(last == Array(data[ids.end - 4..<ids.end]))

        var nothing: [UInt8] = []
        try nothing.withUnsafeMutableBytes { try file.read(ids, byteRange: 16..<16, into: $0) }

        var lengthField = [UInt8](repeating: 0, count: 8)
        try lengthField.withUnsafeMutableBytes { try file.readRaw(fileOffset: 0, into: $0) }
        #expect(lengthField == (0..<8).map { UInt8(truncatingIfNeeded: file.headerLength >> (8 * $0)) })

        var pastEnd = [UInt8](repeating: 0, count: 8)
        expectFailure(path: path, "unexpected end of file at offset \(file.fileSize), 4 bytes short") {
            try pastEnd.withUnsafeMutableBytes { try file.readRaw(fileOffset: file.fileSize - 4, into: $0) }
        }
    }

    @Test func writerRefusals() throws {
        let path = directory.file("w.safetensors")
        expectFailure(path: path, tensor: "a", "listed twice") {
            _ = try SafetensorsWriter(path: path, tensors: [
                SafetensorsTensorSpec(name: "a", dtype: .f32, shape: [1]), SafetensorsTensorSpec(name: "a", dtype: .f32, shape: [1]),
            ])
        }
        expectFailure(path: path, tensor: "__metadata__", "the name is reserved") {
            _ = try SafetensorsWriter(path: path, tensors: [SafetensorsTensorSpec(name: "__metadata__", dtype: .u8, shape: [1])])
        }
        expectFailure(path: directory.file("no/such/dir.safetensors"), "cannot open: No such file or directory") {
            _ = try SafetensorsWriter(path: directory.file("no/such/dir.safetensors"), tensors: [])
        }

        let writer = try SafetensorsWriter(path: path, tensors: [
            SafetensorsTensorSpec(name: "a", dtype: .f32, shape: [2]), SafetensorsTensorSpec(name: "b", dtype: .f32, shape: [4]),
        ])
        try patternBytes(10).withUnsafeBytes { try writer.append($0) }
        expectFailure(path: path, "appending 30 bytes passes the 24 bytes of tensor data declared by 16") {
            try patternBytes(30).withUnsafeBytes { try writer.append($0) }
        }
        expectFailure(path: path, tensor: "b", "incomplete: 10 of 24 bytes of tensor data were appended") {
            try writer.finish()
        }
        try patternBytes(14).withUnsafeBytes { try writer.append($0) }
        try writer.finish()
        #expect(try SafetensorsFile(path: path).entries.count == 2)
    }
}

@Suite struct ReferenceFixtureTests {
    /// Files written by Python safetensors (Fixtures/models/*/model.safetensors in the main checkout) open, read,
    /// and come out byte-identical when written back by SafetensorsWriter in their own order.
    @Test func readsAndRewritesPythonWrittenFiles() throws {
        let root = "/work/main/Fixtures/models"
        let models = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
        let paths = models.map { "\(root)/\($0)/model.safetensors" }.filter { FileManager.default.fileExists(atPath: $0) }
        guard !paths.isEmpty else {
            print("note: no Python-written fixtures in \(root)/*/model.safetensors yet; skipping the reference-file test")
            return
        }
        let directory = try TemporaryDirectory()
        for path in paths {
            let file = try SafetensorsFile(path: path)
            let original = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
            let copy = directory.file("copy.safetensors")
            let writer = try SafetensorsWriter(path: copy, tensors: file.entries.map {
                SafetensorsTensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape)
            }, metadata: file.metadata)
            for entry in file.entries {
                let bytes = try readBytes(file, entry)
                #expect(bytes == Array(original[file.dataStart + entry.begin..<file.dataStart + entry.end]))
                try bytes.withUnsafeBytes { try writer.append($0) }
            }
            try writer.finish()
            let rewritten = try Array(Data(contentsOf: URL(fileURLWithPath: copy)))
            #expect(rewritten == original, "\(path): rewritten file differs (\(rewritten.count) vs \(original.count) bytes)")
        }
    }

    /// Every fixture model directory opens as a SafetensorsModel (for the sharded one: index checked against the
    /// shards), and a transformers-written index is laid out exactly as `serialized(indent: 2)` writes it.
    @Test func opensPythonWrittenModelDirectories() throws {
        let root = "/work/main/Fixtures/models"
        let models = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
            .map { "\(root)/\($0)" }
            .filter { (try? FileManager.default.contentsOfDirectory(atPath: $0))?.contains { $0.hasSuffix(".safetensors") } ?? false }
        guard !models.isEmpty else {
            print("note: no Python-written fixture models in \(root) yet; skipping the model-directory test")
            return
        }
        for directory in models {
            let model = try SafetensorsModel(directory: directory)
            #expect(!model.weights.isEmpty, "\(directory)")
            #expect(Set(model.weights.map(\.entry.name)).count == model.weights.count)
            guard let index = model.index else { continue }
            #expect(model.files.count > 1)
            let text = try String(contentsOfFile: index.path, encoding: .utf8)
            #expect(try JSON.parse(text).serialized(indent: 2) + "\n" == text)
        }
    }
}
