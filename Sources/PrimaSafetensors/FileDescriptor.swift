import PrimaIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open POSIX file descriptor, closed when the last reference goes.
///
/// Owning the descriptor in its own object means a failed `init` of a type holding it (a class whose `deinit`
/// never runs when `init` throws) still closes it. Reads are positioned (`pread`) and keep no file offset, so
/// one descriptor can serve concurrent readers.
final class FileDescriptor: Sendable {
    let path: String
    let descriptor: Int32

    /// Opens `path` for reading.
    convenience init(readingFrom path: String) throws(SafetensorsError) {
        // O_NONBLOCK so that a FIFO planted under a weight file's name cannot hang the open (it then fails the
        // regular-file check); it changes nothing for reads of regular files.
        try self.init(path: path, flags: O_RDONLY | O_NONBLOCK, mode: 0)
    }

    /// Creates (or truncates) `path` for writing, with permissions 0644 before the umask.
    convenience init(writingTo path: String) throws(SafetensorsError) {
        try self.init(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
    }

    private init(path: String, flags: Int32, mode: mode_t) throws(SafetensorsError) {
        let descriptor = retryingOnInterrupt { open(path, flags | O_CLOEXEC, mode) }
        guard descriptor >= 0 else { throw SafetensorsError(path: path, "cannot open: \(lastSystemError())") }
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// The file's size, after checking it is a regular file (a directory or a pipe has no meaningful size).
    func regularFileSize() throws(SafetensorsError) -> Int {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw SafetensorsError(path: path, "cannot stat: \(lastSystemError())") }
        if let kind = InputFile.nonRegularKind(status.st_mode) {
            throw SafetensorsError(path: path, "is \(kind), not a regular file")
        }
        OpenedInputs.record(descriptor: descriptor, path: path)
        return Int(status.st_size)
    }

    /// Fills `buffer` from byte `offset` of the file, looping over short reads. Running into the end of the file
    /// is an error: every caller has already checked, against the size, that the bytes exist.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int, tensor: String? = nil) throws(SafetensorsError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let count = retryingOnInterrupt { pread(descriptor, base + done, buffer.count - done, off_t(offset + done)) }
            if count < 0 {
                throw SafetensorsError(path: path, tensor: tensor,
                                       "read of \(buffer.count - done) bytes at file offset \(offset + done) failed: \(lastSystemError())")
            }
            if count == 0 {
                throw SafetensorsError(path: path, tensor: tensor,
                                       "unexpected end of file at offset \(offset + done), \(buffer.count - done) bytes short (file truncated since it was opened?)")
            }
            done += count
        }
    }

    /// `count` bytes from byte `offset` of the file. The caller has checked `count` against the file size.
    func read(count: Int, at offset: Int) throws(SafetensorsError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        // Array's closure-taking methods rethrow untyped errors, so the typed error travels out as a Result.
        let result = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(SafetensorsError) in try read(into: buffer, at: offset) }
        }
        try result.get()
        return bytes
    }

    /// Writes all of `bytes` at the current file position.
    func write(_ bytes: [UInt8]) throws(SafetensorsError) {
        try bytes.withUnsafeBytes { buffer in Result { () throws(SafetensorsError) in try write(buffer) } }.get()
    }

    /// Writes all of `bytes` at the current file position, looping over short writes.
    func write(_ bytes: UnsafeRawBufferPointer, tensor: String? = nil) throws(SafetensorsError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let count = retryingOnInterrupt { systemWrite(descriptor, base + done, bytes.count - done) }
            guard count > 0 else {
                throw SafetensorsError(path: path, tensor: tensor, "write of \(bytes.count - done) bytes failed: \(lastSystemError())")
            }
            done += count
        }
    }

    /// Writes all of `bytes` at file offset `offset` (pwrite: the file position does not move), looping over
    /// short writes.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int, tensor: String? = nil) throws(SafetensorsError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let count = retryingOnInterrupt { pwrite(descriptor, base + done, bytes.count - done, off_t(offset + done)) }
            guard count > 0 else {
                throw SafetensorsError(path: path, tensor: tensor, "write of \(bytes.count - done) bytes failed: \(lastSystemError())")
            }
            done += count
        }
    }

    /// Flushes the file to stable storage: the caller renames it over the final name next, and without this a
    /// crash could leave an empty file under that name.
    func synchronize() throws(SafetensorsError) {
        guard retryingOnInterrupt({ fsync(descriptor) }) == 0 else {
            throw SafetensorsError(path: path, "fsync failed: \(lastSystemError())")
        }
    }
}

/// POSIX `write`, named apart from ``FileDescriptor/write(_:tensor:)``, which shadows it inside the class.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

/// Runs a system call again while it fails with EINTR (a signal arrived before it did anything).
func retryingOnInterrupt<Result: BinaryInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}

/// The text of the current `errno`.
func lastSystemError() -> String { String(cString: strerror(errno)) }

/// True if something is at `path` (opening it says whether it is a usable file).
func pathExists(_ path: String) -> Bool {
    // lstat: a dangling link or a link loop exists, and opening it then says what is wrong with it.
    var status = stat()
    return lstat(path, &status) == 0
}

/// `directory/name`, without doubling a trailing slash.
func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

/// The whole of the small file at `path` (an index or config), refusing one larger than `limit` bytes before
/// reading it.
func readSmallFile(_ path: String, limit: Int) throws(SafetensorsError) -> [UInt8] {
    let file = try FileDescriptor(readingFrom: path)
    let size = try file.regularFileSize()
    guard size <= limit else { throw SafetensorsError(path: path, "file is \(size) bytes, over the \(limit / 1_000_000) MB limit") }
    return try file.read(count: size, at: 0)
}
