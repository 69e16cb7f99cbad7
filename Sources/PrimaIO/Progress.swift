import Foundation

/// Progress on stderr for long jobs (bytes converted, cases diagnosed): a self-overwriting line when stderr is a
/// terminal, nothing otherwise (logs get the final summary the tool prints instead).
public final class Progress: @unchecked Sendable {
    /// What is counted.
    public enum Unit: Sendable {
        /// Bytes, shown in decimal units (``Progress/format(_:)``).
        case bytes
        /// Items shown as plain counts followed by this noun, e.g. "cases".
        case items(String)
    }

    private let label: String
    private let total: Int
    private let unit: Unit
    private var done = 0
    private var lastDraw = Date.distantPast
    private let enabled: Bool
    private let start = Date()

    /// A reporter for `total` units, shown when `enabled` and stderr is a terminal.
    public init(label: String, total: Int, unit: Unit = .bytes, enabled: Bool = true) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.enabled = enabled && isatty(STDERR_FILENO) != 0
    }

    /// Adds `count` units to the count and redraws at most ten times a second.
    public func advance(_ count: Int) {
        done += count
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.1 || done >= total else { return }
        lastDraw = now
        let seconds = max(now.timeIntervalSince(start), 1e-3)
        let line: String
        switch unit {
        case .bytes:
            line = String(format: "\r%@: %5.1f%%  %@ of %@  %@/s", label, 100 * Double(done) / Double(total),
                          Self.format(done), Self.format(total), Self.format(Int(Double(done) / seconds)))
        case .items(let noun):
            line = String(format: "\r%@: %5.1f%%  %ld of %ld %@  %.1f/s", label, 100 * Double(done) / Double(total),
                          done, total, noun, Double(done) / seconds)
        }
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
