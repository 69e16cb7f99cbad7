import Foundation

/// The one way the toolkit writes an output file or directory: built under a temporary name beside the
/// destination, synced, and renamed into place only when complete.
///
/// - The temporary is a directory `.NAME.prima-tmp-PID-RANDOM` in the destination's directory (RANDOM: 12
///   characters from the system's random generator), created exclusively with `mkdir` mode 0700, so nothing
///   else can be planted at or inside it. A directory output is built in it directly; a file output is the file
///   `NAME` inside it (created `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, or by libhdf5 under the 0700
///   directory). At commit the file is `fsync`ed and given ``fileMode`` (0644 under the usual umask; a
///   directory ``directoryMode``, 0755), renamed, and the destination's directory `fsync`ed.
/// - The final rename never clobbers: without `overwrite`, a destination that appeared meanwhile makes the
///   commit fail (`renameat2(RENAME_NOREPLACE)`; `link` + `unlink` for a file where the file system lacks it).
///   With `overwrite`, a file is replaced atomically and a directory is exchanged (`RENAME_EXCHANGE`) and the
///   old one removed.
/// - No output may be, or (a directory output) contain, an input this process opened (``OpenedInputs``),
///   compared by device and inode.
/// - The temporary is registered with ``TemporaryFiles`` (removed on SIGINT/SIGTERM/SIGHUP or when this object
///   goes away uncommitted). Temporaries left in the destination's directory by a killed run (SIGKILL, power
///   loss) whose process no longer exists are reported as a warning through ``OutputTarget/warn``, never
///   removed: whether a process id on a shared or network file system is really gone cannot be known from here.
public final class OutputTarget {
    /// A file or a directory.
    public enum Kind: Sendable { case file, directory }

    /// Where the output will be once committed.
    public let destination: String
    /// Where to write: the file to create (``Kind/file``) or the staging directory (``Kind/directory``).
    public let temporaryPath: String
    public let kind: Kind
    private let overwrite: Bool
    /// The private directory holding the temporary (for a directory output, the staging directory itself).
    private let privateDirectory: String
    private var committed = false

    /// Receives warnings (stale temporaries); the tools route it to their `TOOL: warning:` lines.
    nonisolated(unsafe) public static var warn: (String) -> Void = { message in
        FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }

    /// The marker in every temporary name.
    public static let marker = ".prima-tmp-"

    /// Checks that `destination` may be written and creates its temporary.
    ///
    /// Refuses (input errors) a destination whose directory does not exist, one that is an input of this run or
    /// (for a directory) holds one, one of the wrong kind, and an existing one unless `overwrite` (an empty
    /// directory counts as absent).
    public init(destination: String, kind: Kind, overwrite: Bool) throws(ToolError) {
        self.destination = destination
        self.kind = kind
        self.overwrite = overwrite
        let parent = Self.parentDirectory(of: destination)
        try Self.check(destination: destination, kind: kind, overwrite: overwrite)
        Self.reportStaleTemporaries(for: destination)

        let name = (destination as NSString).lastPathComponent
        var created: String?
        for _ in 0..<16 {
            let candidate = (parent as NSString).appendingPathComponent(".\(name)\(Self.marker)\(getpid())-\(Self.randomSuffix())")
            if TemporaryFiles.create(candidate, isDirectory: true, { mkdir(candidate, 0o700) == 0 }) { created = candidate; break }
            guard errno == EEXIST else {
                // A directory that cannot hold files (missing, not a directory, read-only, /proc) is a bad output path
                // (exit 2); a full or failing disk is a failed job (exit 1).
                let code = errno
                let message = "\(destination): cannot create a temporary directory in \(parent): \(errnoText(code))"
                throw [ENOENT, ENOTDIR, EACCES, EPERM, EROFS].contains(code) ? .input(message) : .failed(message)
            }
        }
        guard let created else { throw .failed("\(destination): cannot create a temporary directory in \(parent)") }
        privateDirectory = created
        temporaryPath = kind == .file ? (created as NSString).appendingPathComponent(name) : created
    }

    deinit {
        if !committed { TemporaryFiles.remove(privateDirectory) }
    }

    /// Creates the temporary file (``Kind/file`` only) exclusively, mode 0600, and returns a descriptor open for
    /// writing that the caller closes.
    public func createFile() throws(ToolError) -> Int32 {
        precondition(kind == .file, "createFile() is for file outputs")
        let descriptor = retryingOnInterrupt {
            open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        }
        guard descriptor >= 0 else { throw .failed("\(destination): cannot create \(temporaryPath): \(errnoText())") }
        return descriptor
    }

    /// Syncs the temporary, renames it to the destination (refusing to clobber what appeared meanwhile unless
    /// `overwrite`), and syncs the destination's directory. The writer must have closed its files (HDF5) or at
    /// least finished writing.
    public func commit() throws(ToolError) {
        precondition(!committed, "committed twice")
        try Self.checkDestination(destination, kind: kind, overwrite: overwrite)
        switch kind {
        case .file:
            try syncFile(temporaryPath, mode: Self.fileMode)
            try install(temporaryPath, isDirectory: false)
            TemporaryFiles.remove(privateDirectory)
        case .directory:
            let names = (try? FileManager.default.contentsOfDirectory(atPath: privateDirectory)) ?? []
            for name in names { try syncFile((privateDirectory as NSString).appendingPathComponent(name), mode: nil) }
            try syncFile(privateDirectory, mode: Self.directoryMode)
            try install(privateDirectory, isDirectory: true)
        }
        committed = true
        TemporaryFiles.unregister(privateDirectory)
        let parent = retryingOnInterrupt { open(Self.parentDirectory(of: destination), O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if parent >= 0 {
            fsync(parent)
            close(parent)
        }
    }

    /// `fsync`s `path` (not following a symbolic link) and sets its mode.
    private func syncFile(_ path: String, mode: mode_t?) throws(ToolError) {
        let descriptor = retryingOnInterrupt { open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard descriptor >= 0 else { throw .failed("\(destination): cannot open \(path) to sync it: \(errnoText())") }
        defer { close(descriptor) }
        if let mode, fchmod(descriptor, mode) != 0 {
            throw .failed("\(destination): cannot set the mode of \(path): \(errnoText())")
        }
        guard fsync(descriptor) == 0 else { throw .failed("\(destination): cannot sync \(path): \(errnoText())") }
    }

    /// Renames `source` to the destination.
    private func install(_ source: String, isDirectory: Bool) throws(ToolError) {
        var status = stat()
        let exists = lstat(destination, &status) == 0
        if !exists || !overwrite {
            // An empty directory left in place counts as absent (checked at the start): rename replaces it only
            // while it is still empty.
            let replacingEmpty = exists && isDirectory && status.st_mode & S_IFMT == S_IFDIR
            let result = replacingEmpty ? rename(source, destination) : Self.renameNoReplace(source, destination, isDirectory: isDirectory)
            guard result == 0 else {
                if errno == EEXIST || errno == ENOTEMPTY {
                    throw .input("\(destination): already exists (written meanwhile by another run? use --force to overwrite)")
                }
                throw .failed("\(destination): cannot rename \(source) into place: \(errnoText())")
            }
            return
        }
        if !isDirectory {
            guard rename(source, destination) == 0 else {
                throw .failed("\(destination): cannot rename \(source) into place: \(errnoText())")
            }
            return
        }
        // Replace a directory: swap the two atomically, then remove the old one (now at the staging name).
        if Self.renameat2(source, destination, flags: Self.renameExchange) == 0 {
            TemporaryFiles.remove(source)
            return
        }
        // No RENAME_EXCHANGE: move the old directory aside under a fresh temporary name, then rename.
        let aside = source + "-old"
        guard rename(destination, aside) == 0 else {
            throw .failed("\(destination): cannot move the old directory aside: \(errnoText())")
        }
        guard Self.renameNoReplace(source, destination, isDirectory: true) == 0 else {
            let reason = errnoText()
            _ = rename(aside, destination)
            throw .failed("\(destination): cannot rename \(source) into place: \(reason)")
        }
        try? FileManager.default.removeItem(atPath: aside)
    }

    // MARK: checks

    /// Refuses (input errors) a destination whose directory is missing, that is an input of this process or holds
    /// one, has the wrong kind, or exists without `overwrite`: for tools that check an output before a long job. ``init(destination:kind:overwrite:)``
    /// and ``commit()`` check again.
    public static func check(destination: String, kind: Kind, overwrite: Bool) throws(ToolError) {
        // "" or a path ending in "/" names no file: the temporary would be built under a name the final rename
        // cannot give it ("out.h5/" renames a file onto a directory path).
        let name = (destination as NSString).lastPathComponent
        guard !destination.isEmpty, kind == .directory || !(destination.hasSuffix("/") || name == "." || name == "..") else {
            throw .input("\"\(destination)\": not a \(kind == .file ? "file" : "directory") name to write")
        }
        let parent = parentDirectory(of: destination)
        var parentStatus = stat()
        guard stat(parent, &parentStatus) == 0 else {
            if errno == ELOOP { throw .input("\(destination): \(parent): too many levels of symbolic links (a symbolic link loop?)") }
            throw .input("\(destination): directory \(parent) does not exist")
        }
        guard parentStatus.st_mode & S_IFMT == S_IFDIR else { throw .input("\(destination): \(parent) is not a directory") }
        try checkDestination(destination, kind: kind, overwrite: overwrite)
    }

    static func checkDestination(_ destination: String, kind: Kind, overwrite: Bool) throws(ToolError) {
        var status = stat()
        guard stat(destination, &status) == 0 else {
            if errno == ELOOP { throw .input("\(destination): too many levels of symbolic links (a symbolic link loop?)") }
            var linkStatus = stat()
            if lstat(destination, &linkStatus) == 0 {
                throw .input("\(destination): is a dangling symbolic link; remove it or choose another output")
            }
            return
        }
        let identity = FileIdentity(status)
        if let input = OpenedInputs.input(sameAs: identity) {
            throw .input("\(destination): the output must differ from the input \(input) (it is the same file)")
        }
        let isDirectory = status.st_mode & S_IFMT == S_IFDIR
        switch kind {
        case .file:
            guard status.st_mode & S_IFMT == S_IFREG else {
                throw .input("\(destination): exists and is \(InputFile.nonRegularKind(status.st_mode) ?? "not a regular file"); the output must be a regular file")
            }
            if !overwrite { throw .input("\(destination): already exists (use --force to overwrite)") }
        case .directory:
            guard isDirectory else { throw .input("\(destination): exists and is not a directory") }
            if let input = OpenedInputs.input(inside: identity) {
                throw .input("\(destination): holds the input \(input); the output directory must not contain an input")
            }
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: destination)) ?? []
            if !contents.isEmpty && !overwrite {
                throw .input("\(destination): directory is not empty (use --force to replace it)")
            }
        }
    }

    /// Warns about temporaries in `destination`'s directory (for any output there) left by runs whose process
    /// is gone: `.NAME.prima-tmp-PID-RANDOM`, RANDOM 12 characters of [a-z0-9] (with `-old` for a directory moved
    /// aside).
    static func reportStaleTemporaries(for destination: String) {
        let parent = parentDirectory(of: destination)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        for name in names.sorted() {
            guard let (output, pid) = parseTemporaryName(name) else { continue }
            if kill(pid, 0) == 0 || errno != ESRCH { continue }  // running (or not ours to signal): in use
            let path = (parent as NSString).appendingPathComponent(name)
            warn("\(path): stale temporary of \((parent as NSString).appendingPathComponent(output)) from an interrupted run (process \(pid) is gone); remove it")
        }
    }

    /// The output name and the writer's process id of a temporary's name, or nil if `name` is not one.
    static func parseTemporaryName(_ name: String) -> (output: String, pid: pid_t)? {
        guard name.hasPrefix("."), let markerRange = name.range(of: marker, options: .backwards),
              markerRange.lowerBound > name.startIndex else { return nil }
        let output = String(name[name.index(after: name.startIndex)..<markerRange.lowerBound])
        var rest = name[markerRange.upperBound...]
        if rest.hasSuffix("-old") { rest = rest.dropLast(4) }
        let parts = rest.split(separator: "-", omittingEmptySubsequences: false)
        guard !output.isEmpty, parts.count == 2, let pid = pid_t(parts[0]), pid > 0, parts[1].count == 12,
              parts[1].allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber) }) else { return nil }
        return (output, pid)
    }

    // MARK: helpers

    /// The mode a committed file gets: 0666 less the process's umask (0644 under the usual 022), as a file
    /// created in place would have had; the temporary itself is 0600.
    public static var fileMode: mode_t { 0o666 & ~umaskValue }
    /// The mode a committed directory gets: 0777 less the umask (0755 under 022).
    public static var directoryMode: mode_t { 0o777 & ~umaskValue }

    /// The process's umask, read from /proc/self/status (setting it to read it would race with other threads
    /// creating files); 022 where that line is missing.
    static let umaskValue: mode_t = {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
              let value = mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8) else { return 0o022 }
        return value
    }()

    static func parentDirectory(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "." : parent
    }

    /// 12 characters from [a-z0-9], from the system's random generator (getrandom on Linux).
    static func randomSuffix() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<12).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }

    static let renameNoReplaceFlag: UInt32 = 1  // RENAME_NOREPLACE, <linux/fs.h>
    static let renameExchange: UInt32 = 2  // RENAME_EXCHANGE

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    /// glibc's renameat2 (2.28 and later), looked up at run time: Swift's Glibc module does not declare it.
    private static let renameat2Function: RenameAt2? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()

    /// renameat2(2) with `flags`; -1 with errno ENOSYS when the C library lacks it.
    static func renameat2(_ source: String, _ destination: String, flags: UInt32) -> Int32 {
        guard let function = renameat2Function else { errno = ENOSYS; return -1 }
        return function(AT_FDCWD, source, AT_FDCWD, destination, flags)
    }

    /// Renames `source` to `destination` only if nothing is there (0, or -1 with errno, EEXIST if something is).
    /// Without RENAME_NOREPLACE support (some network and FUSE file systems): `link` + `unlink` for a file, which
    /// is as exclusive; for a directory a plain `rename`, which still refuses a non-empty directory or a file.
    static func renameNoReplace(_ source: String, _ destination: String, isDirectory: Bool) -> Int32 {
        let result = renameat2(source, destination, flags: renameNoReplaceFlag)
        guard result != 0, errno == EINVAL || errno == ENOSYS || errno == ENOTSUP else { return result }
        if isDirectory {
            var status = stat()
            if lstat(destination, &status) == 0 { errno = EEXIST; return -1 }
            return rename(source, destination)
        }
        guard link(source, destination) == 0 else { return -1 }
        unlink(source)
        return 0
    }
}
