import Foundation
import PrimaEval
import PrimaImage
import PrimaIO
import PrimaJSON
import PrimaTestSupport
import Testing

@Suite struct EvaluationReportTests {
    /// Largest |Δ| accepted against scikit-learn's and numpy's numbers in Fixtures/eval/metrics.json: the same
    /// ratios of small integers and sums of at most 72 doubles, computed in another order. Measured worst: 2.2e-16.
    static let fixtureTolerance = 1e-14

    /// Two classes; fold 0 gets one A case wrong, fold 1 is all right. Confidences 0.7 (right), 0.75 (wrong), 0.95,
    /// 1.0 (right) and 0.55 (right) fall in bins 7, 7, 9, 9 and 5.
    static func handExample() throws -> [FoldPredictions] {
        [
            try FoldPredictions(system: "prima", fold: 0, classes: ["A", "B"], cases: ["a", "b", "c", "d"], labels: [0, 0, 1, 1],
                                probabilities: [[0.7, 0.3], [0.25, 0.75], [0.05, 0.95], [0, 1]]),
            try FoldPredictions(system: "prima", fold: 1, classes: ["A", "B"], cases: ["e", "f"], labels: [0, 1],
                                probabilities: [[0.55, 0.45], [0.05, 0.95]]),
            try FoldPredictions(system: "image-only", fold: 0, classes: ["A", "B"], cases: ["a", "b", "c", "d"], labels: [0, 0, 1, 1],
                                probabilities: [[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.4, 0.6]]),
        ]
    }

    @Test func spreadIsTheSampleSD() {
        let spread = EvaluationReport.Spread([1, 2, 3, 4])
        #expect(spread.mean == 2.5)
        #expect(abs(spread.sd! - (5.0 / 3).squareRoot()) < 1e-15)
        #expect(EvaluationReport.Spread([0.42]).sd == nil)
    }

    @Test func handComputedScores() throws {
        let report = try EvaluationReport(Self.handExample())
        #expect(report.classes == ["A", "B"])
        #expect(report.systems.map(\.name) == ["prima", "image-only"])
        let prima = report.systems[0]
        #expect(prima.folds == [0, 1] && prima.caseCount == 6)
        // Fold 0: confusion [[1, 1], [0, 2]]: precision (1, 2/3), recall (1/2, 1), F1 (2/3, 4/5), macro 11/15.
        let fold0 = prima.foldMetrics[0]
        #expect(fold0.confusion == [[1, 1], [0, 2]] && fold0.accuracy == 0.75 && fold0.balancedAccuracy == 0.75)
        #expect(abs(fold0.macroF1 - 11.0 / 15) < 1e-15)
        #expect(prima.foldMetrics[1].macroF1 == 1)
        #expect(abs(prima.macroF1.mean - 13.0 / 15) < 1e-15)
        #expect(abs(prima.macroF1.sd! - (4.0 / 15) / 2.0.squareRoot()) < 1e-15)
        #expect(prima.confusion == [[2, 1], [0, 3]])
        #expect(prima.classSummaries[0].support == 3 && prima.classSummaries[1].support == 3)
        #expect(abs(prima.classSummaries[0].f1.mean - (2.0 / 3 + 1) / 2) < 1e-15)
        // Calibration: bin 5 {0.55 right}, bin 7 {0.7 right, 0.75 wrong}, bin 9 {0.95, 1, 0.95 right}.
        let counts = prima.calibration.map(\.count)
        #expect(counts == [0, 0, 0, 0, 0, 1, 0, 2, 0, 3])
        #expect(prima.calibration[7].accuracy == 0.5 && abs(prima.calibration[7].meanConfidence! - 0.725) < 1e-15)
        #expect(prima.calibration[0].accuracy == nil && prima.calibration[0].meanConfidence == nil)
        #expect(prima.calibration[9].lower == 0.9 && prima.calibration[9].upper == 1)
        // ECE = 1/6·|1 − 0.55| + 2/6·|0.5 − 0.725| + 3/6·|1 − 0.9666…| = 0.075 + 0.075 + 0.01666…
        #expect(abs(prima.expectedCalibrationError - (0.45 + 0.45 + 0.1) / 6) < 1e-15)
        // One fold: no SD.
        #expect(report.systems[1].macroF1.sd == nil)
    }

    @Test func markdownTable() throws {
        let report = try EvaluationReport(Self.handExample())
        #expect(report.markdown == """
            # Evaluation report

            Scores in percent, mean ± SD over the held-out folds (sample SD, ddof = 1; the mean alone for a system with one fold).

            | system | macro F1 | Acc | BAcc | folds |
            |---|---:|---:|---:|---:|
            | prima | 86.67 ± 18.86 | 87.50 ± 17.68 | 87.50 ± 17.68 | 2 |
            | image-only | 73.33 | 75.00 | 75.00 | 1 |

            ## Per-class F1

            | system | A | B |
            |---|---:|---:|
            | prima | 83.33 ± 23.57 | 90.00 ± 14.14 |
            | image-only | 80.00 | 66.67 |

            ## Calibration

            Expected calibration error of the top-class probability over every held-out case, 10 equal-width bins, in percent.

            | system | cases | ECE |
            |---|---:|---:|
            | prima | 6 | 16.67 |
            | image-only | 4 | 15.00 |

            ## Confusion matrices

            Summed over the folds; rows are the true class, columns the predicted class.

            ### prima

            | true \\ predicted | A | B |
            |---|---:|---:|
            | A | 2 | 1 |
            | B | 0 | 3 |

            ### image-only

            | true \\ predicted | A | B |
            |---|---:|---:|
            | A | 2 | 0 |
            | B | 1 | 1 |

            """)
    }

    /// The fixture's two systems: per fold scikit-learn's scores, per system numpy's mean, SD (ddof 1) and calibration.
    @Test func matchesScikitLearnAndNumpy() throws {
        let path = TestProcess.repositoryRoot + "/Fixtures/eval/metrics.json"
        let root = try #require(try JSON.parse(String(contentsOfFile: path, encoding: .utf8)).object)
        let systemsJSON = try #require(root["systems"]?.array)
        var predictions: [FoldPredictions] = []
        for system in systemsJSON {
            for fold in try #require(system.object?["folds"]?.array) {
                predictions.append(try FoldPredictions(json: try #require(fold.object?["predictions"])))
            }
        }
        let report = try EvaluationReport(predictions)
        #expect(report.systems.map(\.name) == ["alpha", "beta"])
        var worst = 0.0
        func close(_ ours: Double, _ theirs: JSONValue?, _ what: String) throws {
            let value = try #require(theirs?.double, "\(what) missing")
            worst = max(worst, abs(ours - value))
            #expect(abs(ours - value) <= Self.fixtureTolerance, "\(what): \(ours) vs \(value)")
        }
        func numbers(_ value: JSONValue?) throws -> [JSONValue] { try #require(value?.array) }
        func counts(_ value: JSONValue?) throws -> [[Int]] { try numbers(value).map { try #require($0.array).map { try #require($0.int) } } }
        for (system, expected) in zip(report.systems, systemsJSON) {
            let object = try #require(expected.object)
            for (metrics, fold) in zip(system.foldMetrics, try numbers(object["folds"])) {
                let reference = try #require(fold.object)
                let place = "\(system.name) fold"
                try close(metrics.macroF1, reference["macro_f1"], "\(place) macro F1")
                try close(metrics.accuracy, reference["accuracy"], "\(place) accuracy")
                try close(metrics.balancedAccuracy, reference["balanced_accuracy"], "\(place) balanced accuracy")
                #expect(metrics.confusion == (try counts(reference["confusion"])))
                for (k, scores) in metrics.classes.enumerated() {
                    try close(scores.precision, try numbers(reference["precision"])[k], "\(place) precision \(k)")
                    try close(scores.recall, try numbers(reference["recall"])[k], "\(place) recall \(k)")
                    try close(scores.f1, try numbers(reference["f1"])[k], "\(place) F1 \(k)")
                    #expect(scores.support == (try numbers(reference["support"]))[k].int)
                }
            }
            let summary = try #require(object["summary"]?.object)
            for (spread, key) in [(system.macroF1, "macro_f1"), (system.accuracy, "accuracy"), (system.balancedAccuracy, "balanced_accuracy")] {
                let reference = try #require(summary[key]?.object)
                try close(spread.mean, reference["mean"], "\(system.name) \(key) mean")
                try close(try #require(spread.sd), reference["sd"], "\(system.name) \(key) sd")
            }
            for (k, classSummary) in system.classSummaries.enumerated() {
                for (spread, key) in [(classSummary.precision, "precision"), (classSummary.recall, "recall"), (classSummary.f1, "f1")] {
                    let reference = try #require(summary[key]?.object)
                    try close(spread.mean, try numbers(reference["mean"])[k], "\(system.name) \(key) mean \(k)")
                    try close(try #require(spread.sd), try numbers(reference["sd"])[k], "\(system.name) \(key) sd \(k)")
                }
            }
            #expect(system.confusion == (try counts(summary["confusion"])))
            for (bin, reference) in zip(system.calibration, try numbers(summary["bins"])) {
                let item = try #require(reference.object)
                #expect(bin.count == item["count"]?.int)
                if bin.count == 0 {
                    #expect(bin.accuracy == nil && item["accuracy"]?.isNull == true)
                } else {
                    try close(try #require(bin.accuracy), item["accuracy"], "\(system.name) bin accuracy")
                    try close(try #require(bin.meanConfidence), item["mean_confidence"], "\(system.name) bin confidence")
                }
            }
            try close(system.expectedCalibrationError, summary["ece"], "\(system.name) ECE")
        }
        // beta's fold 1 has no MEL case: MEL recall 0 there, left out of that fold's balanced accuracy.
        #expect(report.systems[1].foldMetrics[1].classes[2].support == 0)
        print("worst difference from scikit-learn/numpy: \(worst)")
    }

    @Test func refusesInconsistentPredictions() throws {
        let base = try Self.handExample()
        func make(_ system: String, _ fold: Int, classes: [String] = ["A", "B"], cases: [String] = ["x", "y"]) throws -> FoldPredictions {
            try FoldPredictions(system: system, fold: fold, classes: classes, cases: cases, labels: [0, 1], probabilities: [[1, 0], [0, 1]])
        }
        expectError("no fold predictions") { _ = try EvaluationReport([]) }
        expectError("image-only fold 1 has classes B,A", "prima fold 0 has A,B") {
            _ = try EvaluationReport(base + [try make("image-only", 1, classes: ["B", "A"])])
        }
        expectError("prima has fold 1 twice") { _ = try EvaluationReport(base + [try make("prima", 1)]) }
        expectError("lists case \"x\" twice") { _ = try EvaluationReport([try make("prima", 3, cases: ["x", "x"])]) }
        expectError("system name \"../x\"") { _ = try EvaluationReport([try make("../x", 0)]) }
        expectError("system name \".hidden\"") { _ = try EvaluationReport([try make(".hidden", 0)]) }
        expectError("class code \"A|B\"") { _ = try EvaluationReport([try make("s", 0, classes: ["A|B", "C"])]) }
    }

    /// The directory holds report.json (valid, with the format), report.md and a PNG per figure that decodes to the
    /// expected size with more than background and text in it.
    @Test func writesTheReportDirectory() throws {
        let report = try EvaluationReport(Self.handExample())
        let root = TestProcess.temporaryDirectory("eval-report")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = root + "/report"
        try report.write(to: directory)
        // An existing report is refused unless overwriting, and replaced whole when overwriting (before any file in
        // it is read: a directory holding an input of this process is never replaced).
        let again = root + "/again"
        try EvaluationReport([try Self.handExample()[2]]).write(to: again)
        expectError(again, "not empty") { try report.write(to: again) }
        try report.write(to: again, overwrite: true)
        #expect(FileManager.default.fileExists(atPath: again + "/confusion-prima.png"))
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(names == ["confusion-image-only.png", "confusion-prima.png", "metrics.png", "reliability-image-only.png",
                          "reliability-prima.png", "report.json", "report.md"])
        let json = try #require(try JSON.parse(String(contentsOfFile: directory + "/report.json", encoding: .utf8)).object)
        #expect(json["format"]?.string == EvaluationReport.formatName && json["systems"]?.array?.count == 2)
        #expect(try String(contentsOfFile: directory + "/report.md", encoding: .utf8) == report.markdown)
        let sizes = ["metrics.png": (900, 540), "confusion-prima.png": (640, 640), "reliability-prima.png": (900, 540)]
        for (name, size) in sizes {
            let image = try PNGDecoder.decode(contentsOf: directory + "/" + name)
            #expect(image.width == size.0 && image.height == size.1, "\(name): \(image.width)x\(image.height)")
            guard case .uint8(let samples) = image.samples else { Issue.record("\(name): not 8-bit"); continue }
            // Row by row until five colours are seen (a debug build is slow over every pixel of every figure).
            var colours = Set<Int>()
            for index in stride(from: 0, to: samples.count, by: 3) {
                colours.insert(Int(samples[index]) << 16 | Int(samples[index + 1]) << 8 | Int(samples[index + 2]))
                if colours.count > 4 { break }
            }
            #expect(colours.count > 4, "\(name): only \(colours.count) colours")
        }
    }

    /// Writes `predictions` as the runner does: OUT/folds/SYSTEM/fold-I.json.
    static func writeFolds(_ predictions: [FoldPredictions], under root: String) throws {
        for item in predictions {
            let directory = "\(root)/folds/\(item.system)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try item.json.serialized().write(toFile: "\(directory)/fold-\(item.fold).json", atomically: false, encoding: .utf8)
        }
    }

    @Test func loadsTheRunnersFoldFiles() throws {
        let root = TestProcess.temporaryDirectory("eval-load")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let predictions = try Self.handExample()
        try Self.writeFolds(predictions, under: root)
        // Other names are ignored: a temporary of a run in progress, notes.
        try "x".write(toFile: root + "/folds/prima/.fold-2.json.prima-tmp-1", atomically: false, encoding: .utf8)
        try "notes".write(toFile: root + "/folds/prima/README", atomically: false, encoding: .utf8)
        let loaded = try EvaluationReport.loadPredictions(directory: root)
        // Systems in name order, folds by index.
        #expect(loaded == [predictions[2], predictions[0], predictions[1]])
        let report = try EvaluationReport.load(directory: root)
        #expect(report.systems.map(\.name) == ["image-only", "prima"])
    }

    @Test func hostileFoldFilesAreOneLineErrorsNamingTheFile() throws {
        let root = TestProcess.temporaryDirectory("eval-hostile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        expectError("\(root)/folds: no such directory") { _ = try EvaluationReport.load(directory: root) }
        try FileManager.default.createDirectory(atPath: root + "/folds/prima", withIntermediateDirectories: true)
        expectError("\(root)/folds: no fold predictions") { _ = try EvaluationReport.load(directory: root) }

        let file = root + "/folds/prima/fold-0.json"
        let good = try Self.handExample()[0].json.serialized()
        let cases: [(String, [UInt8], [String])] = [
            ("malformed", Array("{\"system\": ".utf8), ["malformed JSON"]),
            ("not UTF-8", [0x7B, 0xFF, 0x7D], ["not valid UTF-8"]),
            ("array", Array("[1, 2]".utf8), ["not a JSON object"]),
            ("missing member", Array(good.replacingOccurrences(of: "\"labels\"", with: "\"label\"").utf8), ["member \"labels\""]),
            ("row sum", Array(good.replacingOccurrences(of: "[0.7,0.3]", with: "[0.7,0.4]").utf8), ["probabilities of case a"]),
            ("other system", Array(good.replacingOccurrences(of: "\"prima\"", with: "\"other\"").utf8), ["holds other fold 0", "says prima fold 0"]),
        ]
        for (what, bytes, fragments) in cases {
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            do {
                _ = try EvaluationReport.load(directory: root)
                Issue.record("\(what): accepted")
            } catch {
                let message = "\(error)"
                #expect(!message.contains("\n"), "\(what): multi-line error")
                for fragment in [file] + fragments { #expect(message.contains(fragment), "\(what): \(message) lacks \(fragment)") }
            }
        }
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.createDirectory(atPath: file, withIntermediateDirectories: false)
        expectError(file, "is a directory") { _ = try EvaluationReport.load(directory: root) }
        try FileManager.default.removeItem(atPath: file)
        try good.write(toFile: root + "/folds/prima/fold-x.json", atomically: false, encoding: .utf8)
        expectError(root + "/folds/prima/fold-x.json", "not a fold file name") { _ = try EvaluationReport.load(directory: root) }
    }
}
