import ArgumentParser

/// `--force`, spelled and explained once for every tool that writes an output. The rules it lifts are the ones of
/// Formats/prima-checkpoint.md §10.2: an existing output is replaced; an input of the same run never is.
public struct OverwriteOptions: ParsableArguments {
    @Flag(help: "Replace an existing output (never an input of the same run).")
    public var force = false

    public init() {}
}

/// `--no-progress`, for every tool that draws progress on a terminal.
public struct ProgressOptions: ParsableArguments {
    @Flag(name: .customLong("no-progress"), help: "Do not draw progress on stderr.")
    public var noProgress = false

    public init() {}

    /// Whether to draw progress (it is drawn only when stderr is a terminal as well).
    public var showProgress: Bool { !noProgress }
}

/// Bounds on numeric flags shared by the tools.
public enum FlagLimits {
    /// Largest `--repeat`: 10,000 timed runs (a benchmark needs tens; each run's timings are kept for the median).
    public static let maxRepeats = 10_000
}
