import Foundation
import PrimaJSON

/// Paths and helpers shared by the converter tests.
enum TestSupport {
    /// The repository root (this file is Tests/PrimaConvertTests/Support.swift).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The fixture models directory.
    static let fixtures = repositoryRoot + "/Fixtures/models"

    /// One fixture's manifest entry.
    struct Fixture: Sendable, CustomStringConvertible {
        let name: String
        let modelType: String
        let dtype: String
        let sharded: Bool
        let tensorNames: [String]
        var directory: String { TestSupport.fixtures + "/" + name }
        var description: String { name }
    }

    /// Every fixture in Fixtures/models/manifest.json.
    static let manifest: [Fixture] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/manifest.json"),
              let list = try? JSON.parse([UInt8](data)).array else { return [] }
        return list.compactMap { item in
            guard let object = item.object, let name = object["name"]?.string, let type = object["model_type"]?.string,
                  let dtype = object["dtype"]?.string else { return nil }
            return Fixture(name: name, modelType: type, dtype: dtype, sharded: object["sharded"]?.bool ?? false,
                           tensorNames: object["tensor_names"]?.array?.compactMap(\.string) ?? [])
        }
    }()

    static func fixture(_ name: String) -> Fixture { manifest.first { $0.name == name }! }

    /// A fresh temporary directory.
    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "prima-convert-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Copies a fixture directory to a temporary place for corruption.
    static func copyFixture(_ name: String) throws -> String {
        let destination = temporaryDirectory() + "/" + name
        try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: destination)
        return destination
    }

    /// The built `prima-convert` binary, next to the test bundle.
    static let convertBinary: String = {
        let executable = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // The XCTest bundle is a directory on some platforms: climb out of it.
        while directory.pathExtension == "xctest" || directory.lastPathComponent == "Contents" || directory.lastPathComponent == "MacOS" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("prima-convert").path
    }()

    /// The result of running a tool.
    struct RunResult {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs `executable` with `arguments`, capturing output. Output goes through temporary files rather than
    /// pipes: Foundation's pipe reads trap on EINTR, which parallel tests starting processes can cause.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> RunResult {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outPath = directory + "/stdout", errPath = directory + "/stderr"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return RunResult(status: process.terminationStatus,
                         stdout: String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self),
                         stderr: String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self))
    }

    /// Runs prima-convert.
    static func convert(_ arguments: String...) throws -> RunResult { try run(convertBinary, arguments) }

    /// A Python with the named modules, if the machine has one (tests that need it say so when skipping).
    static func python(with modules: [String]) -> String? {
        var candidates = [String]()
        if let configured = ProcessInfo.processInfo.environment["PRIMA_PYTHON"] { candidates.append(configured) }
        candidates += ["/work/venv-ref/bin/python", "/usr/bin/python3"]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            let check = try? run(candidate, ["-c", "import " + modules.joined(separator: ", ")])
            if check?.status == 0 { return candidate }
        }
        return nil
    }

    /// Writes a safetensors file from a header text and data bytes (no validation: for hostile cases).
    static func writeRawSafetensors(_ path: String, header: String, data: [UInt8], declaredLength: UInt64? = nil) throws {
        var bytes = [UInt8]()
        var length = (declaredLength ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: header.utf8)
        bytes.append(contentsOf: data)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
