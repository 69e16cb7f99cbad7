import Foundation

/// The one error type of the tools' libraries: one line for the user (`<file>: [<object>: ]<what is wrong>`) and
/// whether it is bad input (exit status 2) or a job that failed on a good request (exit status 1). Errors of the
/// format readers (HDF5, safetensors, JSON, tokenizers, …) stay their own types and are classified into a
/// `ToolError` where a tool's library calls them (``classify(asInput:_:)``).
public struct ToolError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The line to show the user (`<file>: <what is wrong>`).
    public let description: String
    /// True for bad input or usage (exit status 2), false for a job that failed on a good request (exit status 1).
    public let isInput: Bool

    /// An error the user's request caused (exit status 2).
    public static func input(_ message: String) -> ToolError { ToolError(description: message, isInput: true) }
    /// A failure while doing a valid job (exit status 1).
    public static func failed(_ message: String) -> ToolError { ToolError(description: message, isInput: false) }

    /// The message without its leading `path: `, for callers that put the file name elsewhere.
    public func reason(about path: String) -> String {
        description.hasPrefix(path + ": ") ? String(description.dropFirst(path.count + 2)) : description
    }

    /// The toolkit's exit status for this error.
    public var exitCode: Int32 { isInput ? 2 : 1 }

    /// Runs `body`; a `ToolError` it throws passes unchanged, any other error becomes a `ToolError` with the same
    /// text, bad input when `asInput` is true, a failed job otherwise.
    public static func classify<R>(asInput: Bool, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let error as ToolError {
            throw error
        } catch {
            let message = String(describing: error)
            throw asInput ? ToolError.input(message) : ToolError.failed(message)
        }
    }
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
