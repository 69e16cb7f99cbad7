import Foundation

/// Why a file could not be used as an input or written as an output: one line naming the file.
public struct FileError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The line to show the user (`<file>: <what is wrong>`).
    public let description: String
    /// True for bad input or usage (exit status 2), false for a job that failed on a good request (exit status 1).
    public let isInput: Bool

    /// An error the user's request caused (exit status 2).
    public static func input(_ message: String) -> FileError { FileError(description: message, isInput: true) }
    /// A failure while doing a valid job (exit status 1).
    public static func failed(_ message: String) -> FileError { FileError(description: message, isInput: false) }

    /// The message without its leading `path: `, for callers that put the file name elsewhere.
    public func reason(about path: String) -> String {
        description.hasPrefix(path + ": ") ? String(description.dropFirst(path.count + 2)) : description
    }

    /// The toolkit's exit status for this error.
    public var exitCode: Int32 { isInput ? 2 : 1 }
}

/// `strerror(errno)` as a Swift string.
func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// Retries a system call interrupted by a signal.
@discardableResult
func retryingOnInterrupt(_ call: () -> Int32) -> Int32 {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}
