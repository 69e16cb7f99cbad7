import Foundation
import Testing
@testable import PrimaSafetensors

/// A fresh directory under the system temporary directory, removed with its contents when released.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("prima-safetensors-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The path of `name` in this directory.
    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to `name` and returns its path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let target = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: target))
        return target
    }

    /// Writes a safetensors file by hand: the length field (`declaredLength` or the header's true length), the
    /// header text and `data`.
    @discardableResult
    func writeSafetensors(_ name: String, header: String, data: [UInt8], declaredLength: UInt64? = nil) throws -> String {
        try write(name, safetensorsBytes(header: header, data: data, declaredLength: declaredLength))
    }
}

/// The bytes of a safetensors file with `header` and `data`.
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    let length = declaredLength ?? UInt64(headerBytes.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + headerBytes + data
}

/// A header entry's JSON text.
func entryJSON(_ dtype: String, _ shape: [Int], _ begin: Int, _ end: Int) -> String {
    #"{"dtype":"\#(dtype)","shape":[\#(shape.map(String.init).joined(separator: ","))],"data_offsets":[\#(begin),\#(end)]}"#
}

/// `count` bytes counting up from `start` (wrapping), so misplaced bytes show.
func patternBytes(_ count: Int, start: UInt8 = 1) -> [UInt8] { (0..<count).map { start &+ UInt8(truncatingIfNeeded: $0) } }

/// Runs `body`, expecting a `SafetensorsError` whose one-line description starts with `path: ` (and
/// `tensor <name>: ` if `tensor` is given) and contains `fragment`.
func expectFailure(path: String, tensor: String? = nil, _ fragment: String,
                   sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("no error; expected \"\(fragment)\"", sourceLocation: sourceLocation)
    } catch {
        guard let error = error as? SafetensorsError else {
            Issue.record("\(error) is not a SafetensorsError", sourceLocation: sourceLocation)
            return
        }
        let prefix = path + ": " + (tensor.map { "tensor \($0): " } ?? "")
        let text = error.description
        #expect(text.hasPrefix(prefix), "\(text) does not start with \(prefix)", sourceLocation: sourceLocation)
        #expect(text.contains(fragment), "\(text)", sourceLocation: sourceLocation)
        #expect(!text.contains("\n"), "multi-line: \(text)", sourceLocation: sourceLocation)
        #expect(error.path == path && error.tensor == tensor, sourceLocation: sourceLocation)
    }
}

/// Expects opening `path` as a safetensors file to fail (see ``expectFailure(path:tensor:_:sourceLocation:_:)``).
func expectOpenFailure(_ path: String, tensor: String? = nil, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectFailure(path: path, tensor: tensor, fragment, sourceLocation: sourceLocation) { _ = try SafetensorsFile(path: path) }
}

/// The whole of `entry`'s data in `file`.
func readBytes(_ file: SafetensorsFile, _ entry: SafetensorsEntry) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: entry.byteCount)
    try bytes.withUnsafeMutableBytes { try file.read(entry, byteRange: 0..<entry.byteCount, into: $0) }
    return bytes
}
