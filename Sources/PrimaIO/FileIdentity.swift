import Foundation

/// A file's identity: the device and inode that `stat` reports. Two paths name the same file exactly when
/// their identities are equal, whatever `./`, `..`, symbolic links or hard links they go through; paths are
/// never compared as strings.
public struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    public let device: UInt64
    public let inode: UInt64

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }

    /// The identity of what `path` names (symbolic links followed), or nil if nothing is there.
    public init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        self.init(status)
    }

    /// The identity of an open descriptor, or nil if `fstat` fails.
    public init?(descriptor: Int32) {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        self.init(status)
    }

    public var description: String { "device \(device) inode \(inode)" }

    /// The identities of `path`'s directory and of every directory above it up to `/`, physically (symbolic
    /// links resolved, so `a/link/../b` climbs through where `link` really points).
    static func ancestors(of path: String) -> [FileIdentity] {
        let directory = (path as NSString).deletingLastPathComponent
        guard let resolved = realpath(directory.isEmpty ? "." : directory, nil) else { return [] }
        var current = String(cString: resolved)
        free(resolved)
        var result: [FileIdentity] = []
        while true {
            if let identity = FileIdentity(path: current) { result.append(identity) }
            if current == "/" || current.isEmpty { break }
            current = (current as NSString).deletingLastPathComponent
        }
        return result
    }
}

/// The inputs this process has opened (through ``InputFile``), so that no output replaces or contains one.
///
/// An input counts only while its path still names the file it named when opened: a long-lived process (the test
/// runner) may see an input deleted and its inode number reused by an unrelated new file.
public enum OpenedInputs {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var inputs: [FileIdentity: String] = [:]

    /// Records `identity` as an input named `path`.
    public static func record(_ identity: FileIdentity, path: String) {
        lock.lock(); defer { lock.unlock() }
        if inputs[identity] == nil { inputs[identity] = path }
    }

    /// Records the file open as `descriptor` as an input named `path`.
    public static func record(descriptor: Int32, path: String) {
        if let identity = FileIdentity(descriptor: descriptor) { record(identity, path: path) }
    }

    /// Stops counting the file at `path` as an input: only for a run that has read its own earlier output whole
    /// into memory and now replaces it (`prima-train --resume` continuing its save). Never for an input the user
    /// named as one.
    public static func release(path: String) {
        guard let identity = FileIdentity(path: path) else { return }
        lock.lock(); defer { lock.unlock() }
        inputs[identity] = nil
    }

    /// The path of the input that is the file `identity`, if any.
    public static func input(sameAs identity: FileIdentity) -> String? {
        lock.lock()
        let path = inputs[identity]
        lock.unlock()
        guard let path, FileIdentity(path: path) == identity else { return nil }
        return path
    }

    /// The path of an input that lies inside the directory `identity` (at any depth, or is it), if any.
    public static func input(inside identity: FileIdentity) -> String? {
        lock.lock()
        let all = inputs
        lock.unlock()
        for (input, path) in all.sorted(by: { $0.value < $1.value }) where FileIdentity(path: path) == input {
            if input == identity || FileIdentity.ancestors(of: path).contains(identity) { return path }
        }
        return nil
    }
}
