import Foundation

/// Helpers every test target shares: the repository root, temporary directories, the built tools, and running
/// a tool with its output captured.
public enum TestProcess {
    /// The repository root (this file is Tests/Support/TestProcess.swift).
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// A fresh temporary directory whose name starts with `prefix`.
    public static func temporaryDirectory(_ prefix: String = "prima-tests") -> String {
        let path = NSTemporaryDirectory() + prefix + "-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The built tool `name` (prima-convert, prima-verify, …), next to the test bundle.
    public static func binary(_ name: String) -> String {
        var directory = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        // The XCTest bundle is a directory on some platforms: climb out of it.
        while directory.pathExtension == "xctest" || ["Contents", "MacOS"].contains(directory.lastPathComponent) {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent(name).path
    }

    /// What a finished process printed and how it exited.
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs `executable` with `arguments`, and `standardInput` (if given) as its stdin. Input and output go through
    /// temporary files rather than pipes: Foundation's pipe reads trap on EINTR, which parallel tests starting
    /// processes can cause.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           standardInput: String? = nil) throws -> Result {
        let directory = temporaryDirectory("prima-process")
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
        if let standardInput {
            let inPath = directory + "/stdin"
            FileManager.default.createFile(atPath: inPath, contents: Data(standardInput.utf8))
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Result(status: process.terminationStatus,
                      stdout: String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self),
                      stderr: String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self))
    }
}
