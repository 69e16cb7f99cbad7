/// A failure of a quantisation job, as one line for the user, with the exit status it maps to
/// (2: bad input or usage, 1: the job failed while writing).
public struct QuantizeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// Process exit status: 2 for bad input, 1 for a failed job.
    public let exitCode: Int32

    /// A problem with what the user handed us (exit 2).
    public static func input(_ message: String) -> QuantizeError { QuantizeError(description: message, exitCode: 2) }
    /// A failure while doing the job (exit 1).
    public static func failed(_ message: String) -> QuantizeError { QuantizeError(description: message, exitCode: 1) }
}
