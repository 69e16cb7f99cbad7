import Foundation
import PrimaCheckpoint

/// Output files written whole or not at all.
public enum OutputFile {
    /// Writes `text` to a temporary file beside `path` (`path.tmp-PID`, so the rename stays within one file
    /// system), syncs it and renames it over `path`: a reader never sees a half-written file, and an existing file
    /// is only ever replaced by a complete one. Refuses an existing `path` unless `overwrite` is true. On failure, or
    /// if the process is interrupted, the temporary file is removed.
    public static func write(_ text: String, to path: String, overwrite: Bool) throws(DiagnoseError) {
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw DiagnoseError("\(path): already exists (use --force to overwrite)")
        }
        let temporary = path + ".tmp-\(getpid())"
        TemporaryFiles.register(temporary)
        func failure(_ what: String) -> DiagnoseError {
            let reason = String(cString: strerror(errno))
            TemporaryFiles.remove(temporary)
            return DiagnoseError("\(path): \(what): \(reason)")
        }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure("cannot create \(temporary)") }
        var remaining = Array(text.utf8)[...]
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                let error = failure("cannot write \(temporary)")
                close(descriptor)
                throw error
            }
            remaining = remaining.dropFirst(written)
        }
        guard fsync(descriptor) == 0 else {
            let error = failure("cannot sync \(temporary)")
            close(descriptor)
            throw error
        }
        guard close(descriptor) == 0 else { throw failure("cannot close \(temporary)") }
        guard rename(temporary, path) == 0 else { throw failure("cannot rename \(temporary) into place") }
        TemporaryFiles.unregister(temporary)
    }
}
