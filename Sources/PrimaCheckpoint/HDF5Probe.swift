import CHDF5
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// libhdf5 (1.10) trusts much of a file's metadata: on some corrupted files it reads out of bounds, segfaults
// or aborts, and no check in Swift can run before the library parses those bytes. The tools therefore walk
// every HDF5 file they are given in a CHILD process first (the tool re-executed with PRIMA_HDF5_PROBE=path):
// the child opens the file and runs the same walk `HDF5File.open` runs in-process (every group, link,
// attribute and dataset's metadata). Only if the child survives does the tool touch the file itself; a
// signal death or a timeout becomes one error line. Formats/prima-checkpoint.md, "Untrusted files".

/// Runs libhdf5 on untrusted files in a child process before the tool opens them (see the file comment).
public enum HDF5Probe {
    /// The environment variable that makes a tool started with no arguments a probe of the file it names.
    public static let environmentVariable = "PRIMA_HDF5_PROBE"
    /// How long the child may take before the file is called corrupted (the walk of a multi-gigabyte
    /// checkpoint takes well under a second: it reads metadata only).
    public static let timeoutSeconds = 60
    /// Overrides ``timeoutSeconds`` (whole seconds, 1 to 3600), e.g. for files on a slow network filesystem.
    public static let timeoutVariable = "PRIMA_HDF5_PROBE_TIMEOUT"

    /// The timeout in force: ``timeoutVariable`` if it holds a valid value, else ``timeoutSeconds``.
    static var timeout: Int {
        guard let value = getenv(timeoutVariable).flatMap({ Int(String(cString: $0)) }), (1...3600).contains(value) else {
            return timeoutSeconds
        }
        return value
    }
    /// The child's exit status when it walked the whole file and found it invalid (the tool then opens the file
    /// itself and reports the same problem: the walk in-process makes the same calls and stops at the same point).
    static let refusedStatus: Int32 = 3

    /// Guarded by the HDF5 lock.
    nonisolated(unsafe) private static var enabled = false
    /// Files already probed by this process (device, inode, size, modification time), guarded by the HDF5 lock.
    nonisolated(unsafe) private static var probed: Set<[Int]> = []

    /// The first thing a tool does. In a probe child (the environment names a file and there are no
    /// arguments) walks that file and exits: 0 valid, 3 invalid, anything else crashed. Otherwise turns on
    /// probing for every HDF5 file this process opens.
    public static func startTool() {
        if let value = getenv(environmentVariable), CommandLine.arguments.count == 1 { runChild(path: String(cString: value)) }
        HDF5.locked { enabled = true }
    }

    private static func runChild(path: String) -> Never {
        // A crash here is the expected outcome on a corrupted file: no core file, and never outliving the parent.
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        alarm(UInt32(timeout + 5))
        // Reads of uninitialised or out-of-bounds memory must fault here rather than find stale valid pointers:
        // HDF5's free lists are off (every block comes from malloc), malloc fills new blocks with a pattern and
        // keeps no slack at the top of the heap (MALLOC_PERTURB_ and GLIBC_TUNABLES, set by the parent).
        HDF5.locked { _ = H5set_free_list_limits(0, 0, 0, 0, 0, 0) }
        do {
            _ = try HDF5File.open(path: path)
            exit(0)
        } catch {
            exit(refusedStatus)
        }
    }

    /// Probes `path` in a child process if probing is on and this file was not probed yet. Throws the one-line
    /// error when libhdf5 crashed or hung on it. The caller holds the HDF5 lock.
    static func probeIfEnabled(_ path: String) throws {
        guard enabled else { return }
        // HDF5File.open has checked that `path` is a regular file (libhdf5 would block opening a FIFO).
        var status = stat()
        guard stat(path, &status) == 0 else { return }  // the open that follows reports it
        let stamp = [Int(status.st_dev), Int(status.st_ino), Int(status.st_size),
                     Int(status.st_mtim.tv_sec), Int(status.st_mtim.tv_nsec)]
        if probed.contains(stamp) { return }
        switch try runProbe(path) {
        case .survived: probed.insert(stamp)
        case .crashed:
            throw HDF5Error(file: path, message: "corrupted HDF5 metadata (the HDF5 library crashed reading it)")
        case .timedOut:
            throw HDF5Error(file: path, message: "corrupted HDF5 metadata (the HDF5 library timed out reading it)")
        }
    }

    private enum Outcome { case survived, crashed, timedOut }

    /// Starts this executable as a probe of `path` and waits for it, at most ``timeout`` seconds. The child's
    /// stdout is a pipe whose end of file tells the parent that the child is gone, however it ended.
    private static func runProbe(_ path: String) throws -> Outcome {
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            throw HDF5Error(file: path, message: "cannot start the HDF5 probe: \(String(cString: strerror(errno)))")
        }
        // Close-on-exec: only the child's stdout (a dup2 copy) keeps the write end open.
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)

        var environment = ProcessInfo.processInfo.environment
        environment[environmentVariable] = path
        environment["SWIFT_BACKTRACE"] = "enable=no"  // a crash should end the child at once, not symbolicate
        environment["MALLOC_PERTURB_"] = "165"  // new blocks filled with 0x5A, freed ones with 0xA5 (glibc)
        // No slack above the heap's last block: a read past the end of an HDF5 table there faults in the child.
        environment["GLIBC_TUNABLES"] = (environment["GLIBC_TUNABLES"].map { $0 + ":" } ?? "") + "glibc.malloc.top_pad=0"
        let executable = FileManager.default.fileExists(atPath: "/proc/self/exe") ? "/proc/self/exe" : CommandLine.arguments[0]
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(CommandLine.arguments.first ?? "prima-tool"), nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        // The tool blocks SIGINT/SIGTERM/SIGHUP in every thread (PrimaIO's TemporaryFiles takes them on a sigwait
        // thread), and a spawned child inherits the mask: the probe gets an empty mask and default dispositions, so
        // an interrupt from the terminal ends it with the tool.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t(), defaults = sigset_t()
        sigemptyset(&emptyMask)
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(pipeEnds[1])
        defer { close(pipeEnds[0]) }
        guard spawned == 0 else {
            throw HDF5Error(file: path, message: "cannot start the HDF5 probe: \(String(cString: strerror(spawned)))")
        }

        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeout) * 1_000_000_000
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { timedOut = true; break }
            var descriptor = pollfd(fd: pipeEnds[0], events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min((deadline - now) / 1_000_000 + 1, 1_000)))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let count = read(pipeEnds[0], &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }  // end of file: the child has exited or died
        }
        if timedOut { kill(pid, SIGKILL) }
        var waitStatus: Int32 = 0
        while waitpid(pid, &waitStatus, 0) < 0 && errno == EINTR {}
        if timedOut { return .timedOut }
        let signal = waitStatus & 0x7F, exitStatus = (waitStatus >> 8) & 0xFF
        return signal == 0 && (exitStatus == 0 || exitStatus == refusedStatus) ? .survived : .crashed
    }
}
