import Foundation

/// Byte-count progress on stderr for long conversions: a self-overwriting line when stderr is a terminal,
/// nothing otherwise (logs get the final summary the tool prints instead).
public final class Progress: @unchecked Sendable {
    private let label: String
    private let total: Int
    private var done = 0
    private var lastDraw = Date.distantPast
    private let enabled: Bool
    private let start = Date()

    /// A reporter for `total` bytes, shown when `enabled` and stderr is a terminal.
    public init(label: String, total: Int, enabled: Bool = true) {
        self.label = label
        self.total = max(total, 1)
        self.enabled = enabled && isatty(STDERR_FILENO) != 0
    }

    /// Adds `bytes` to the count and redraws at most ten times a second.
    public func advance(_ bytes: Int) {
        done += bytes
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.1 || done >= total else { return }
        lastDraw = now
        let seconds = max(now.timeIntervalSince(start), 1e-3)
        let line = String(format: "\r%@: %5.1f%%  %@ of %@  %@/s", label, 100 * Double(done) / Double(total),
                          Self.format(done), Self.format(total), Self.format(Int(Double(done) / seconds)))
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Ends the progress line.
    public func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    /// Bytes in human units (decimal: kB, MB, GB).
    public static func format(_ bytes: Int) -> String {
        let value = Double(bytes)
        switch value {
        case ..<1e3: return "\(bytes) B"
        case ..<1e6: return String(format: "%.1f kB", value / 1e3)
        case ..<1e9: return String(format: "%.1f MB", value / 1e6)
        default: return String(format: "%.2f GB", value / 1e9)
        }
    }
}
