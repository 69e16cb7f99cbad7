import Foundation

/// Temporary files and directories to remove if the process is interrupted (SIGINT, SIGTERM, SIGHUP) or a
/// writer fails.
///
/// The signals are blocked in every thread and taken by one thread that waits for them with `sigwait`, so the
/// clean-up runs as ordinary code, not in a signal handler: it may take the lock and remove a whole staging
/// directory, which no async-signal-safe handler could do. Call ``installSignalHandlers()`` first thing in
/// `main`, before any other thread exists (threads inherit the blocked mask).
public enum TemporaryFiles {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: [String: Bool] = [:]

    /// Remembers `path` (a file, or a directory removed with everything in it) for removal on interruption.
    public static func register(_ path: String, isDirectory: Bool) {
        lock.lock(); defer { lock.unlock() }
        paths[path] = isDirectory
    }

    /// Runs `create` (which makes the temporary `path` and says whether it did) and registers `path` if it did,
    /// atomically with respect to the interruption clean-up: no temporary can be made but missed by it.
    public static func create(_ path: String, isDirectory: Bool, _ create: () -> Bool) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard create() else { return false }
        paths[path] = isDirectory
        return true
    }

    /// Forgets `path` (renamed into place, or removed).
    public static func unregister(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        paths[path] = nil
    }

    /// Removes `path` (with its contents, for a directory) and forgets it.
    public static func remove(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        removeLocked(path, isDirectory: paths.removeValue(forKey: path) ?? true)
    }

    private static func removeLocked(_ path: String, isDirectory: Bool) {
        guard isDirectory else { unlink(path); return }
        // A writer thread may still be creating files in it: try again if it was not empty yet.
        for _ in 0..<8 {
            try? FileManager.default.removeItem(atPath: path)
            var status = stat()
            if lstat(path, &status) != 0 { return }
        }
    }

    nonisolated(unsafe) private static var stopSignal: Int32 = 0

    /// The first SIGINT, SIGTERM or SIGHUP received when signals stop gracefully (0: none): a long job (training)
    /// polls it, saves its state and exits with 128 + it.
    public static var stopRequested: Int32 {
        lock.lock(); defer { lock.unlock() }
        return stopSignal
    }

    /// Blocks SIGINT, SIGTERM and SIGHUP and starts the thread that, on receiving one, removes every registered
    /// temporary and exits with status 128 + the signal number (130 for SIGINT, 143 for SIGTERM). With `graceful`,
    /// the first signal only sets ``stopRequested`` (the job stops at its next safe point); a second one exits.
    public static func installSignalHandlers(graceful: Bool = false) {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let waited = signals
        let waiter = Thread {
            var received: Int32 = 0
            while withUnsafePointer(to: waited, { sigwait($0, &received) }) != 0 {}
            if graceful {
                lock.lock()
                stopSignal = received
                lock.unlock()
                while withUnsafePointer(to: waited, { sigwait($0, &received) }) != 0 {}
            }
            lock.lock()
            for (path, isDirectory) in paths { removeLocked(path, isDirectory: isDirectory) }
            _exit(128 + received)
        }
        waiter.name = "prima-signals"
        waiter.start()
    }
}
