import Foundation
import PrimaIO

/// Output files written whole or not at all.
public enum OutputFile {
    /// Writes `text` through an ``OutputTarget``: a temporary file beside `path` (exclusive, unpredictable name,
    /// removed on failure or interruption), synced and renamed into place, so a reader never sees a half-written
    /// file and an existing file is only ever replaced by a complete one. Refuses an existing `path` unless
    /// `overwrite` is true, and always an input of this run (for example the metadata file).
    public static func write(_ text: String, to path: String, overwrite: Bool) throws(ToolError) {
        try write(Array(text.utf8), to: path, overwrite: overwrite)
    }

    /// Writes `bytes` (a binary file, such as a PNG chart) the same way: whole or not at all.
    public static func write(_ bytes: [UInt8], to path: String, overwrite: Bool) throws(ToolError) {
        do throws(ToolError) {
            let target = try OutputTarget(destination: path, kind: .file, overwrite: overwrite)
            let descriptor = try target.createFile()
            var remaining = bytes[...]
            while !remaining.isEmpty {
                let written = remaining.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else {
                    let reason = String(cString: strerror(errno))
                    close(descriptor)
                    throw ToolError.failed("\(path): cannot write \(target.temporaryPath): \(reason)")
                }
                remaining = remaining.dropFirst(written)
            }
            guard close(descriptor) == 0 else {
                throw ToolError.failed("\(path): cannot close \(target.temporaryPath): \(String(cString: strerror(errno)))")
            }
            try target.commit()
        } catch {
            throw error
        }
    }
}
