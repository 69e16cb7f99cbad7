import Testing
@testable import PrimaDiagnose

/// PAD-UFES-20's six classes, in the order the cases below use.
let padClasses = ["BCC", "SCC", "ACK", "SEK", "MEL", "NEV"]

/// Metrics are ratios of small integers; sums over six classes may differ from scikit-learn's in the last bit.
let metricTolerance = 1e-12

/// Scores space-separated truth and prediction lists over `padClasses`.
func score(_ truth: String, _ predicted: String) -> ClassificationMetrics {
    let pairs = zip(truth.split(separator: " "), predicted.split(separator: " ")).map { (truth: String($0), predicted: String($1)) }
    return ClassificationMetrics(classCodes: padClasses, pairs: pairs)
}

func expectClose(_ actual: [Double], _ expected: [Double], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
    #expect(worst <= metricTolerance, "\(what): \(actual), expected \(expected) (max difference \(worst))", sourceLocation: sourceLocation)
}

// Expected values are hand-computed; scikit-learn 1.9.1 (precision_recall_fscore_support / f1_score with
// labels=padClasses, zero_division=0; accuracy_score; balanced_accuracy_score) gives the same numbers.
@Suite struct Metrics {
    /// ACK is neither present nor predicted, MEL is present but never predicted, SEK is predicted but never present.
    @Test func absentAndNeverPredictedClasses() {
        let metrics = score("BCC BCC BCC SCC SCC MEL NEV NEV NEV", "BCC BCC SCC BCC SCC NEV NEV SEK NEV")
        #expect(metrics.confusion == [[2, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                      [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 0, 2]])
        expectClose(metrics.classes.map(\.precision), [2.0 / 3, 0.5, 0, 0, 0, 2.0 / 3], "precision")
        expectClose(metrics.classes.map(\.recall), [2.0 / 3, 0.5, 0, 0, 0, 2.0 / 3], "recall")
        expectClose(metrics.classes.map(\.f1), [2.0 / 3, 0.5, 0, 0, 0, 2.0 / 3], "F1")
        #expect(metrics.classes.map(\.support) == [3, 2, 0, 0, 1, 3])
        #expect(metrics.classes.map(\.code) == padClasses)
        #expect(metrics.count == 9 && metrics.correctCount == 5)
        // Macro F1 averages over all six classes, the three zero-F1 ones included: (2/3 + 1/2 + 2/3) / 6.
        expectClose([metrics.macroF1, metrics.accuracy], [11.0 / 36, 5.0 / 9], "macro F1, accuracy")
        // Balanced accuracy averages recall over the four classes with support (BCC, SCC, MEL, NEV).
        expectClose([metrics.balancedAccuracy], [11.0 / 24], "balanced accuracy")
    }

    @Test func perfectOverAllClasses() {
        let all = padClasses.joined(separator: " ")
        let metrics = score(all + " NEV", all + " NEV")
        expectClose(metrics.classes.map(\.f1), Array(repeating: 1, count: 6), "F1")
        expectClose([metrics.macroF1, metrics.accuracy, metrics.balancedAccuracy], [1, 1, 1], "overall")
    }

    /// Perfect on the classes present, but four classes never occur: macro F1 is 2/6, balanced accuracy 1.
    @Test func perfectOnTwoClasses() {
        let metrics = score("BCC SCC SCC", "BCC SCC SCC")
        expectClose(metrics.classes.map(\.f1), [1, 1, 0, 0, 0, 0], "F1")
        expectClose([metrics.macroF1, metrics.accuracy, metrics.balancedAccuracy], [1.0 / 3, 1, 1], "overall")
    }

    @Test func allWrong() {
        let metrics = score("BCC SCC ACK", "SCC ACK BCC")
        #expect(metrics.correctCount == 0)
        expectClose(metrics.classes.flatMap { [$0.precision, $0.recall, $0.f1] }, Array(repeating: 0, count: 18), "per class")
        expectClose([metrics.macroF1, metrics.accuracy, metrics.balancedAccuracy], [0, 0, 0], "overall")
        #expect(metrics.classes.map(\.support) == [1, 1, 1, 0, 0, 0])
    }

    /// Precision and recall differ: BCC over-predicted.
    @Test func precisionAndRecallDiffer() {
        let metrics = score("BCC SCC SCC SCC", "BCC BCC BCC SCC")
        expectClose(metrics.classes.map(\.precision), [1.0 / 3, 1, 0, 0, 0, 0], "precision")
        expectClose(metrics.classes.map(\.recall), [1, 1.0 / 3, 0, 0, 0, 0], "recall")
        expectClose(metrics.classes.map(\.f1), [0.5, 0.5, 0, 0, 0, 0], "F1")
        expectClose([metrics.macroF1, metrics.accuracy, metrics.balancedAccuracy], [1.0 / 6, 0.5, 2.0 / 3], "overall")
    }
}
