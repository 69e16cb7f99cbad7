import Foundation

/// An input file, open for reading: it exists and is a regular file (after following symbolic links).
///
/// The path is checked with `stat` first, so that a FIFO, device, socket or directory is refused with a message
/// saying what it is without ever being opened; then it is opened `O_RDONLY | O_CLOEXEC | O_NONBLOCK` (a FIFO
/// swapped in meanwhile cannot block the open) and the descriptor itself is checked with `fstat`, so what is read
/// is what was checked. Every input is recorded in ``OpenedInputs`` by its identity: outputs refuse to replace
/// or contain it.
public final class InputFile {
    /// The path as given, for messages.
    public let path: String
    /// The open descriptor (blocking mode restored), closed when this object goes away.
    public let descriptor: Int32
    /// The file's device and inode.
    public let identity: FileIdentity
    /// Its size in bytes when opened.
    public let size: Int

    /// Opens `path` as an input, or throws a one-line ``ToolError`` (input) saying what is wrong.
    public init(_ path: String) throws(ToolError) {
        self.path = path
        try Self.requireRegular(path)
        let descriptor = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        guard descriptor >= 0 else { throw Self.openError(path, errno) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            close(descriptor)
            throw .input("\(path): cannot read: \(errnoText(code))")
        }
        if let kind = Self.nonRegularKind(status.st_mode) {
            close(descriptor)
            throw .input("\(path): is \(kind), not a regular file")
        }
        // Reads of a regular file never block anyway; clear O_NONBLOCK so that no reader sees EAGAIN.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        self.descriptor = descriptor
        self.identity = FileIdentity(status)
        self.size = Int(status.st_size)
        OpenedInputs.record(identity, path: path)
    }

    deinit { close(descriptor) }

    /// Checks that `path` names a regular file (symbolic links followed) and records it as an input, without
    /// keeping it open: for readers that must open the path themselves (libhdf5). Returns its identity.
    @discardableResult
    public static func check(_ path: String) throws(ToolError) -> FileIdentity {
        try InputFile(path).identity
    }

    /// The whole file, refused if it is larger than `limit` bytes.
    public func readAll(limit: Int = .max) throws(ToolError) -> [UInt8] {
        guard size <= limit else { throw .input("\(path): file of \(size) bytes exceeds the \(limit)-byte limit") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw .input("\(path): cannot read: \(errnoText())") }
            if count == 0 { break }
            guard bytes.count + count <= limit else {
                throw .input("\(path): file exceeds the \(limit)-byte limit")
            }
            bytes.append(contentsOf: chunk[0..<count])
        }
        // A regular file reads exactly its size. Kernel pseudo-files (/proc, /sys) report a size of 0 or 4096 and
        // generate other content (/proc/self/environ is the process's environment): not a user's file to store.
        guard bytes.count == size else {
            throw .input("\(path): read \(bytes.count) bytes from a file whose size is \(size) (a kernel pseudo-file such as /proc, or a file changing while read)")
        }
        return bytes
    }

    /// Reads the whole regular file at `path` (at most `limit` bytes).
    public static func read(_ path: String, limit: Int = .max) throws(ToolError) -> [UInt8] {
        try InputFile(path).readAll(limit: limit)
    }

    /// Reads the regular file at `path` as UTF-8 text (at most `limit` bytes).
    public static func readText(_ path: String, limit: Int = .max) throws(ToolError) -> String {
        let bytes = try read(path, limit: limit)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .input("\(path): not valid UTF-8 text") }
        return text
    }

    /// Throws unless `path` (symbolic links followed) is a regular file.
    static func requireRegular(_ path: String) throws(ToolError) {
        var status = stat()
        guard stat(path, &status) == 0 else { throw openError(path, errno) }
        if let kind = nonRegularKind(status.st_mode) { throw .input("\(path): is \(kind), not a regular file") }
    }

    /// "a FIFO", "a directory", … for anything but a regular file; nil for a regular file.
    public static func nonRegularKind(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: nil
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "an unknown kind of file"
        }
    }

    /// The message for a failed `stat` or `open` of an input.
    static func openError(_ path: String, _ code: Int32) -> ToolError {
        switch code {
        case ENOENT: .input("\(path): no such file")
        case ELOOP: .input("\(path): too many levels of symbolic links (a symbolic link loop?)")
        case ENOTDIR: .input("\(path): a component of the path is not a directory")
        default: .input("\(path): cannot open: \(errnoText(code))")
        }
    }
}
