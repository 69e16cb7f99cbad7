import Foundation
import PrimaJSON

/// Counts and metrics of a batch. The metrics score the cases that are both labelled and diagnosed; failed cases
/// are counted (`failed`) but never scored, so a labelled case that failed is in `labelled` and not in `scored`.
public struct BatchSummary: Sendable {
    /// Format name written into the JSON form.
    public static let formatName = "prima-diagnose-summary"
    /// Integer version of the JSON layout.
    public static let formatVersion = 1

    /// The checkpoint's class codes, in its order.
    public let classCodes: [String]
    /// All cases.
    public let caseCount: Int
    /// Cases with a true label.
    public let labelledCount: Int
    /// Cases that failed (no image, an image that would not decode, …).
    public let failedCount: Int
    /// Metrics over the labelled, diagnosed cases; nil if there are none.
    public let metrics: ClassificationMetrics?

    /// Counts `results` and scores its labelled, diagnosed cases.
    public init(_ results: BatchResults) {
        classCodes = results.classCodes
        caseCount = results.cases.count
        labelledCount = results.cases.reduce(0) { $0 + ($1.label == nil ? 0 : 1) }
        failedCount = results.cases.reduce(0) { $0 + ($1.error == nil ? 0 : 1) }
        let pairs = results.cases.compactMap { result in
            result.label.flatMap { label in result.diagnosis.map { (truth: label, predicted: $0.predicted) } }
        }
        metrics = pairs.isEmpty ? nil : ClassificationMetrics(classCodes: classCodes, pairs: pairs)
    }

    /// Labelled, diagnosed cases: those the metrics score.
    public var scoredCount: Int { metrics?.count ?? 0 }

    /// The JSON form:
    /// ```
    /// {"format": "prima-diagnose-summary", "version": 1, "class_codes": ["BCC", …],
    ///  "cases": 200, "labelled": 198, "failed": 1, "scored": 197,
    ///  "metrics": {"accuracy": 0.81, "balanced_accuracy": 0.74, "macro_f1": 0.72,
    ///              "classes": [{"code": "BCC", "precision": 0.8, "recall": 0.9, "f1": 0.85, "support": 60}, …],
    ///              "confusion_matrix": [[54, 3, …], …]}}
    /// ```
    /// `metrics` is null when no case was scored. `confusion_matrix[t][p]` counts true class t predicted as p,
    /// both in `class_codes` order. The definitions are those of ``ClassificationMetrics``.
    public var jsonValue: JSONValue {
        var metricsValue = JSONValue.null
        if let metrics {
            let classes: [JSONValue] = metrics.classes.map { scores in
                ["code": .string(scores.code), "precision": .double(scores.precision), "recall": .double(scores.recall),
                 "f1": .double(scores.f1), "support": .int(scores.support)]
            }
            metricsValue = [
                "accuracy": .double(metrics.accuracy),
                "balanced_accuracy": .double(metrics.balancedAccuracy),
                "macro_f1": .double(metrics.macroF1),
                "classes": .array(classes),
                "confusion_matrix": .array(metrics.confusion.map { .array($0.map { .int($0) }) }),
            ]
        }
        return [
            "format": .string(Self.formatName),
            "version": .int(Self.formatVersion),
            "class_codes": .array(classCodes.map { .string($0) }),
            "cases": .int(caseCount),
            "labelled": .int(labelledCount),
            "failed": .int(failedCount),
            "scored": .int(scoredCount),
            "metrics": metricsValue,
        ]
    }

    /// ``jsonValue`` as indented text (two spaces) with a final line break, as written to a file.
    public func jsonText() -> String { jsonValue.serialized(indent: 2) + "\n" }

    /// A table for the terminal: per-class scores, the three overall scores, the confusion matrix, the counts.
    /// ```
    /// class  precision  recall     F1  support
    /// BCC        0.800   0.667  0.727        6
    /// …
    /// macro F1           0.543
    /// accuracy           0.714  (5 of 7)
    /// balanced accuracy  0.650
    ///
    /// confusion matrix (rows: true class, columns: predicted)
    ///      BCC  SCC  …
    /// BCC    4    2  …
    /// …
    ///
    /// cases 10, labelled 8, failed 1, scored 7
    /// ```
    public var table: String {
        let counts = "cases \(caseCount), labelled \(labelledCount), failed \(failedCount), scored \(scoredCount)"
        guard let metrics else { return "\(counts): no labelled case was diagnosed, so there are no metrics\n" }
        let width = max(classCodes.map(\.count).max() ?? 0, "class".count)
        func left(_ text: String) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        func right(_ text: String, _ columns: Int) -> String { String(repeating: " ", count: max(columns - text.count, 0)) + text }
        func score(_ value: Double) -> String { String(format: "%.3f", value) }

        var lines = [left("class") + "  precision  recall     F1  support"]
        for scores in metrics.classes {
            lines.append(left(scores.code) + right(score(scores.precision), 11) + right(score(scores.recall), 8)
                         + right(score(scores.f1), 7) + right(String(scores.support), 9))
        }
        lines += [
            "macro F1           " + score(metrics.macroF1),
            "accuracy           " + score(metrics.accuracy) + "  (\(metrics.correctCount) of \(metrics.count))",
            "balanced accuracy  " + score(metrics.balancedAccuracy),
            "",
            "confusion matrix (rows: true class, columns: predicted)",
        ]
        let cell = max(classCodes.map(\.count).max() ?? 0, String(metrics.count).count) + 2
        lines.append(left("") + classCodes.map { right($0, cell) }.joined())
        for (code, row) in zip(classCodes, metrics.confusion) {
            lines.append(left(code) + row.map { right(String($0), cell) }.joined())
        }
        lines += ["", counts]
        return lines.joined(separator: "\n") + "\n"
    }
}
