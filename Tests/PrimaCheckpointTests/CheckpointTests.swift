import Foundation
import PrimaIO
import PrimaTensor
import Testing
@testable import PrimaCheckpoint

/// A fresh temporary directory per test.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "prima-ckpt-tests-" + UUID().uuidString
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct CheckpointRoundTripTests {
    /// Writes a small checkpoint with every dtype the format stores, an alias and a verbatim file.
    func writeSample(to path: String) throws -> [String: [UInt8]] {
        let writer = try CheckpointWriter(destination: path, overwrite: false)
        var expected: [String: [UInt8]] = [:]
        do {
            let component = try writer.addComponent(.decoder)
            try component.group.setAttribute("role", string: "decoder")
            try component.group.setAttribute("architecture", string: "qwen3")
            try component.group.setAttribute("tensor_count", int: 7)
            try component.group.setAttribute("parameter_count", int: 91)
            try component.group.setAttribute("tied", string: #"[{"name": "alias", "target": "t.f32", "hf_name": null}]"#)
            _ = try component.subgroup("config")
            try component.addFile("config.json", bytes: Array("{\"model_type\": \"qwen3\"}".utf8))
            for (index, dtype) in [DType.f32, .f16, .bf16, .i8, .i64, .u8].enumerated() {
                let shape = [3, 5]
                let bytes = (0..<(15 * dtype.byteSize)).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }
                let name = "t.\(dtype.rawValue)"
                // Feed in awkward chunks to exercise rows split across appends.
                let tensor = try component.beginTensor(name: name, dtype: dtype, shape: shape, hfName: "hf." + name)
                try bytes.withUnsafeBytes { all in
                    var offset = 0
                    for step in [1, 6, 2, 13, 1000] where offset < all.count {
                        let end = min(all.count, offset + step)
                        try tensor.append(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
                        offset = end
                    }
                }
                try tensor.finish()
                expected[name] = bytes
            }
            var scalar: Float = 2.5
            try withUnsafeBytes(of: &scalar) {
                try component.writeTensor(name: "scalar", dtype: .f32, shape: [], hfName: nil, bytes: $0)
            }
            expected["scalar"] = withUnsafeBytes(of: &scalar) { Array($0) }
            try component.addTiedAlias(name: "alias", target: "t.f32")
        }
        try writer.commit()
        return expected
    }

    @Test func writesAndReadsBackEveryDtype() throws {
        let directory = temporaryDirectory()
        let path = directory + "/sample.h5"
        let expected = try writeSample(to: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["sample.h5"])  // no temporary left
        let checkpoint = try Checkpoint(path: path)
        #expect(checkpoint.formatVersion == 1)
        #expect(checkpoint.roles == [.decoder])
        let decoder = try checkpoint.component(.decoder)
        #expect(try decoder.attribute("architecture") == "qwen3")
        #expect(try String(decoding: decoder.file("config.json"), as: UTF8.self) == "{\"model_type\": \"qwen3\"}")
        let records = try decoder.tensorRecords()
        #expect(records.map(\.name) == ["t.f32", "t.f16", "t.bf16", "t.i8", "t.i64", "t.u8", "scalar", "alias"])
        for record in records {
            let tensor = try decoder.readTensor(record)
            let bytes = tensor.withUnsafeBytes { Array($0) }
            #expect(tensor.shape == record.shape)
            let source = record.aliasOf ?? record.name
            #expect(bytes == expected[source], "tensor \(record.name)")
            #expect(record.crc32 == bytes.withUnsafeBytes { CRC32.checksum($0) })
        }
        #expect(records.last?.aliasOf == "t.f32")
        #expect(records.filter { $0.aliasOf == nil }.count == (try decoder.group.intAttribute("tensor_count")))
        #expect(records.first?.hfName == "hf.t.f32")
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        let path = temporaryDirectory() + "/a.h5"
        _ = try writeSample(to: path)
        #expect(throws: ToolError.input(path + ": already exists (use --force to overwrite)")) {
            _ = try CheckpointWriter(destination: path, overwrite: false)
        }
    }

    @Test func abandonedWriterLeavesNothing() throws {
        let directory = temporaryDirectory()
        do {
            let writer = try CheckpointWriter(destination: directory + "/x.h5", overwrite: false)
            _ = try writer.addComponent(.decoder)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test func crc32MatchesZlibReference() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the CRC-32 check value.
        let value = Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }
        #expect(value == 0xCBF4_3926)
    }
}

@Suite struct CheckpointRefusalTests {
    @Test func refusesNonHDF5() throws {
        let path = temporaryDirectory() + "/not.h5"
        try Data("hello, this is not HDF5".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: CheckpointError.self) { _ = try Checkpoint(path: path) }
        #expect(error?.description == "\(path): not an HDF5 file")
    }

    @Test func refusesTruncatedFile() throws {
        let directory = temporaryDirectory()
        let path = directory + "/full.h5"
        _ = try CheckpointRoundTripTests().writeSample(to: path)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let truncated = directory + "/truncated.h5"
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: truncated))
        let error = #expect(throws: CheckpointError.self) { _ = try Checkpoint(path: truncated) }
        #expect(error?.description.hasPrefix(truncated + ":") == true)
    }

    @Test func refusesWrongFormatAndFutureVersion() throws {
        let directory = temporaryDirectory()
        for (attribute, value, message) in [("format", "other-format", "not a PRIMA checkpoint"),
                                            ("format_version", "99", "written by a newer toolkit")] {
            let path = directory + "/\(attribute).h5"
            _ = try CheckpointRoundTripTests().writeSample(to: path)
            do {
                let file = try HDF5File.open(path: path, writable: true)
                let root = try file.root()
                if attribute == "format" { try root.setAttribute("format", string: value) } else { try root.setAttribute("format_version", int: 99) }
            }
            let error = #expect(throws: CheckpointError.self) { _ = try Checkpoint(path: path) }
            #expect(error?.description.contains(message) == true, "\(error?.description ?? "")")
            #expect(error?.description.hasPrefix(path) == true)
        }
    }
}
