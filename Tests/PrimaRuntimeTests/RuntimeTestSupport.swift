import Foundation
import PrimaConvert
import PrimaTensor

/// Paths and helpers for the runtime tests.
enum RuntimeTestSupport {
    /// The repository root (this file is Tests/PrimaRuntimeTests/RuntimeTestSupport.swift).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func model(_ name: String) -> String { repositoryRoot + "/Fixtures/models/" + name }
    static func trace(_ name: String) -> String { repositoryRoot + "/Fixtures/traces/" + name + ".h5" }

    /// A fresh temporary directory.
    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "prima-runtime-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Imports a fixture model into a new checkpoint and returns its path.
    static func importFixture(_ name: String) throws -> String {
        let path = temporaryDirectory() + "/\(name).h5"
        _ = try Importer.run([ImportSource(directory: model(name), role: nil)], output: path, overwrite: false,
                             showProgress: false, warn: { _ in })
        return path
    }

    /// The built tool `name`, next to the test bundle.
    static func binary(_ name: String) -> String {
        var directory = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        while directory.pathExtension == "xctest" || ["Contents", "MacOS"].contains(directory.lastPathComponent) {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent(name).path
    }

    /// Runs a tool with output captured through files (pipes trap on EINTR under parallel tests).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil)
        throws -> (status: Int32, stdout: String, stderr: String) {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outPath = directory + "/out", errPath = directory + "/err"
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
        return (process.terminationStatus,
                String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self),
                String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self))
    }

    /// A seeded tensor of uniform values in [-1, 1).
    static func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        let count = shape.reduce(1, *)
        let values = (0..<count).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_000) / 1_000_000 - 1
        }
        return Tensor(shape: shape, float32: values)
    }

    /// Max |a − b| over two tensors of equal element count.
    static func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.float32Values(), b.float32Values()).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
}
