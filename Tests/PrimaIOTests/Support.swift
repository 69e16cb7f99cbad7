import Foundation
import PrimaJSON
import PrimaTestSupport
import Testing

/// Running the tools with a deadline, files to plant, and a large model for tests that must catch a tool mid-write.
enum IOSupport {
    static let root = TestProcess.repositoryRoot
    static let models = root + "/Fixtures/models"
    static let tinyPrima = root + "/Fixtures/prima/tiny-prima.h5"
    static let cases = root + "/Fixtures/prima/cases"
    static let traces = root + "/Fixtures/traces"
    /// A refusal must come at once; a tool still running after this long is taken to hang.
    static let refusalDeadline: TimeInterval = 10

    static func work() -> String { TestProcess.temporaryDirectory("prima-io-tests") }

    /// How a tool ended.
    struct Outcome: Sendable {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// A running tool, its output going to files.
    final class Running {
        let process = Process()
        let directory = TestProcess.temporaryDirectory("prima-io-process")
        var pid: pid_t { process.processIdentifier }

        init(_ executable: String, _ arguments: [String]) throws {
            _ = FileManager.default.createFile(atPath: directory + "/stdout", contents: nil)
            _ = FileManager.default.createFile(atPath: directory + "/stderr", contents: nil)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/stdout"))
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/stderr"))
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        /// Waits for the end (killing the process after `deadline` seconds, which the caller reports).
        func finish(deadline: TimeInterval) -> (result: Outcome, timedOut: Bool) {
            let end = Date().addingTimeInterval(deadline)
            var timedOut = false
            while process.isRunning {
                if Date() > end {
                    timedOut = true
                    kill(pid, SIGKILL)
                    break
                }
                usleep(2000)
            }
            process.waitUntilExit()
            let read = { (name: String) in String(decoding: FileManager.default.contents(atPath: self.directory + "/" + name) ?? Data(), as: UTF8.self) }
            let result = Outcome(status: process.terminationStatus, stdout: read("stdout"), stderr: read("stderr"))
            try? FileManager.default.removeItem(atPath: directory)
            return (result, timedOut)
        }
    }

    /// Runs a tool and records a failure if it does not end within `deadline` seconds.
    static func run(_ tool: String, _ arguments: [String], deadline: TimeInterval = refusalDeadline,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        let (result, timedOut) = try Running(TestProcess.binary(tool), arguments).finish(deadline: deadline)
        #expect(!timedOut, "\(tool) \(arguments) still running after \(deadline) s", sourceLocation: sourceLocation)
        return result
    }

    /// Expects exit status 2 with one error line on stderr (warnings aside) holding every fragment.
    static func expectRefusal(_ result: Outcome, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 2, "status \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let errors = result.stderr.split(separator: "\n").filter { $0.contains(": error: ") }
        #expect(errors.count == 1, "not one error line: \(result.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(result.stderr.contains(fragment), "\(result.stderr) lacks \(fragment)", sourceLocation: sourceLocation)
        }
    }

    static func mkfifo(_ path: String) {
        let status = Foundation.mkfifo(path, 0o600)
        precondition(status == 0, "mkfifo \(path): \(String(cString: strerror(errno)))")
    }

    static func symlink(_ target: String, _ path: String) {
        precondition(Foundation.symlink(target, path) == 0, "symlink \(path): \(String(cString: strerror(errno)))")
    }

    static func hardLink(_ target: String, _ path: String) {
        precondition(link(target, path) == 0, "link \(path): \(String(cString: strerror(errno)))")
    }

    static func copy(_ source: String, _ destination: String) throws {
        try FileManager.default.copyItem(atPath: source, toPath: destination)
    }

    static func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    /// Entries of `directory` carrying the temporary-name marker.
    static func temporaries(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.contains(".prima-tmp-") }.sorted()
    }

    /// Polls until `directory` holds a temporary (true) or `process` ends or 60 s pass (false).
    static func waitForTemporary(in directory: String, of running: Running) -> Bool {
        let end = Date().addingTimeInterval(60)
        while Date() < end && running.process.isRunning {
            if !temporaries(in: directory).isEmpty { return true }
            usleep(500)
        }
        return false
    }

    /// Rows of the large model's two embedding tables: 2 × 2^20 × 32 float32 = 256 MiB of tensors, so that an
    /// import or export runs long enough (a good fraction of a second) to be interrupted while its temporary exists.
    static let largeRows = 1 << 20

    /// A copy of bert-pooler-f32 in `work/large` whose word and position embeddings have `largeRows` rows
    /// (zeros, written sparse), with config.json to match.
    static func largeModel(in work: String) throws -> String {
        let source = models + "/bert-pooler-f32"
        let directory = work + "/large"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        for name in try FileManager.default.contentsOfDirectory(atPath: source) where name != "model.safetensors" && name != "config.json" {
            try copy(source + "/" + name, directory + "/" + name)
        }
        let configBytes = try #require(bytes(source + "/config.json"))
        var config = try #require(try JSON.parse([UInt8](configBytes)).object)
        config["vocab_size"] = .int(largeRows)
        config["max_position_embeddings"] = .int(largeRows)
        try Data(JSONValue.object(config).serialized().utf8).write(to: URL(fileURLWithPath: directory + "/config.json"))

        let original = [UInt8](try #require(bytes(source + "/model.safetensors")))
        let headerLength = original[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try #require(try JSON.parse(Array(original[8..<(8 + headerLength)])).object)
        let large: Set<String> = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"]
        var newHeader = JSONObject()
        var pieces: [(offset: Int, bytes: ArraySlice<UInt8>)] = []
        var offset = 0
        for (name, value) in header {
            guard var entry = value.object, let shape = entry["shape"]?.array?.compactMap(\.int),
                  let offsets = entry["data_offsets"]?.array?.compactMap(\.int) else {
                newHeader[name] = value
                continue
            }
            var count = offsets[1] - offsets[0]
            if large.contains(name) {
                entry["shape"] = .array([.int(largeRows), .int(shape[1])])
                count = largeRows * shape[1] * 4
            } else {
                pieces.append((offset, original[(8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1])]))
            }
            entry["data_offsets"] = .array([.int(offset), .int(offset + count)])
            newHeader[name] = .object(entry)
            offset += count
        }
        var text = Array(JSONValue.object(newHeader).serialized().utf8)
        while text.count % 8 != 0 { text.append(0x20) }
        let path = directory + "/model.safetensors"
        let file = withUnsafeBytes(of: UInt64(text.count).littleEndian) { Array($0) } + text
        let dataStart = file.count
        try Data(file).write(to: URL(fileURLWithPath: path))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        for piece in pieces {
            try handle.seek(toOffset: UInt64(dataStart + piece.offset))
            try handle.write(contentsOf: Data(piece.bytes))
        }
        try handle.truncate(atOffset: UInt64(dataStart + offset))
        try handle.close()
        return directory
    }
}
