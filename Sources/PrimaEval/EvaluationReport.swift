import Foundation
import PrimaDiagnose
import PrimaIO
import PrimaJSON

/// The evaluation protocol's report (Docs/evaluation.md): per system, the scores of every held-out fold, their
/// mean and SD over the folds, the confusion matrix summed over the folds, and the calibration of its top-class
/// probabilities; written as `report.json`, `report.md` and PNG figures (``write(to:overwrite:)``).
///
/// Systems may have different numbers of folds (a run in progress); each reports its own n. Systems appear in
/// the order of their first fold in the input, folds in ascending index.
public struct EvaluationReport: Sendable {
    /// The mean and the sample SD (ddof = 1, as the paper's tables and `numpy.std(ddof=1)`) of one score over the
    /// folds; `sd` is nil with a single fold.
    public struct Spread: Sendable, Equatable {
        public let mean: Double
        public let sd: Double?

        /// Precondition: `values` is non-empty.
        public init(_ values: [Double]) {
            precondition(!values.isEmpty, "a spread of no values")
            let n = Double(values.count)
            mean = values.reduce(0, +) / n
            let m = mean
            sd = values.count < 2 ? nil : (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1)).squareRoot()
        }
    }

    /// One equal-width bin of the top-class probability.
    public struct CalibrationBin: Sendable, Equatable {
        /// The bin covers confidences in `lower..<upper` (the last bin includes 1).
        public let lower, upper: Double
        /// Cases whose top-class probability falls in the bin.
        public let count: Int
        /// Mean top-class probability of those cases; nil when the bin is empty.
        public let meanConfidence: Double?
        /// Fraction of those cases whose top class is the true one; nil when the bin is empty.
        public let accuracy: Double?
    }

    /// One class's precision, recall and F1 over the folds, and its support summed over them.
    public struct ClassSummary: Sendable, Equatable {
        public let code: String
        public let precision, recall, f1: Spread
        public let support: Int
    }

    /// Everything reported about one system.
    public struct System: Sendable {
        public let name: String
        /// The fold indices, ascending.
        public let folds: [Int]
        /// Per fold (in ``folds`` order), its scores (scikit-learn's, see ``ClassificationMetrics``).
        public let foldMetrics: [ClassificationMetrics]
        public let macroF1, accuracy, balancedAccuracy: Spread
        /// Per class, in the report's class order.
        public let classSummaries: [ClassSummary]
        /// K×K counts summed over the folds, `confusion[t][p]` (true t, predicted p).
        public let confusion: [[Int]]
        /// ``EvaluationReport/calibrationBinCount`` bins over every held-out case of the system.
        public let calibration: [CalibrationBin]
        /// Expected calibration error: Σ_b (count_b / N) · |accuracy_b − meanConfidence_b|.
        public let expectedCalibrationError: Double
        /// Held-out cases over all folds.
        public var caseCount: Int { foldMetrics.reduce(0) { $0 + $1.count } }
    }

    /// The number of equal-width calibration bins.
    public static let calibrationBinCount = 10
    /// Format name and version of `report.json`.
    public static let formatName = "prima-eval-report"
    public static let formatVersion = 1
    /// The largest fold predictions file ``load(directory:)`` reads: 2,298 PAD-UFES-20 cases with six
    /// probabilities take about 0.4 MB.
    public static let maxPredictionFileBytes = 64 << 20

    /// The class codes, in column order (every system's).
    public let classes: [String]
    public let systems: [System]

    /// Scores `predictions`. Errors (one line): no predictions; class lists that differ; a system given the same
    /// fold twice; a case id repeated within a fold; a system name that is not a plain file name
    /// (`[A-Za-z0-9._-]`, not starting with `.`); a class code holding `|` or a control character (it would break
    /// the Markdown tables).
    public init(_ predictions: [FoldPredictions]) throws(ToolError) {
        guard let first = predictions.first else { throw .input("evaluation report: no fold predictions") }
        let classes = first.classes
        for code in classes where code.unicodeScalars.contains(where: { $0 == "|" || $0.properties.generalCategory == .control }) {
            throw .input("evaluation report: class code \(JSON.quoted(code)) holds '|' or a control character")
        }
        var order: [String] = []
        var bySystem: [String: [FoldPredictions]] = [:]
        for item in predictions {
            guard item.classes == classes else {
                throw .input("evaluation report: \(item.system) fold \(item.fold) has classes \(item.classes.joined(separator: ",")), \(first.system) fold \(first.fold) has \(classes.joined(separator: ","))")
            }
            guard Self.isPlainName(item.system) else {
                throw .input("evaluation report: system name \(JSON.quoted(item.system)) is not made of A-Z a-z 0-9 . _ - (or starts with '.')")
            }
            if bySystem[item.system] == nil { order.append(item.system) }
            guard !(bySystem[item.system] ?? []).contains(where: { $0.fold == item.fold }) else {
                throw .input("evaluation report: \(item.system) has fold \(item.fold) twice")
            }
            var seen = Set<String>()
            for id in item.cases where !seen.insert(id).inserted {
                throw .input("evaluation report: \(item.system) fold \(item.fold) lists case \(JSON.quoted(id)) twice")
            }
            bySystem[item.system, default: []].append(item)
        }
        self.classes = classes
        systems = order.map { Self.summarise(name: $0, folds: bySystem[$0]!.sorted { $0.fold < $1.fold }, classes: classes) }
    }

    /// Letters, digits, `.`, `_`, `-`, not starting with `.`: safe as a directory or file name.
    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && name.utf8.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z"))
                || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    static func summarise(name: String, folds: [FoldPredictions], classes: [String]) -> System {
        let metrics = folds.map { fold in
            ClassificationMetrics(classCodes: classes, pairs: zip(fold.labels, fold.predictions).map { (classes[$0], classes[$1]) })
        }
        let summaries = classes.indices.map { k in
            ClassSummary(code: classes[k], precision: Spread(metrics.map { $0.classes[k].precision }),
                         recall: Spread(metrics.map { $0.classes[k].recall }), f1: Spread(metrics.map { $0.classes[k].f1 }),
                         support: metrics.reduce(0) { $0 + $1.classes[k].support })
        }
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes.count), count: classes.count)
        for item in metrics {
            for t in classes.indices { for p in classes.indices { confusion[t][p] += item.confusion[t][p] } }
        }
        let cases = folds.flatMap { fold in
            zip(fold.probabilities, zip(fold.labels, fold.predictions)).map { (confidence: $0.0[$0.1.1], correct: $0.1.0 == $0.1.1) }
        }
        let (bins, ece) = calibration(cases)
        return System(name: name, folds: folds.map(\.fold), foldMetrics: metrics, macroF1: Spread(metrics.map(\.macroF1)),
                      accuracy: Spread(metrics.map(\.accuracy)), balancedAccuracy: Spread(metrics.map(\.balancedAccuracy)),
                      classSummaries: summaries, confusion: confusion, calibration: bins, expectedCalibrationError: ece)
    }

    /// The bins and ECE of (top-class probability, top class is right) pairs. Bin b (0-based) holds the
    /// confidences c with #{j ∈ 1…9 : c ≥ j/10} = b, i.e. [b/10, (b+1)/10) with 1 in the last bin, the edges being
    /// the doubles nearest j/10 (comparing, not multiplying by 10, so that 0.7 lands in bin 7).
    static func calibration(_ cases: [(confidence: Double, correct: Bool)]) -> ([CalibrationBin], Double) {
        let count = calibrationBinCount
        let edges = (1..<count).map { Double($0) / Double(count) }
        var members = [[(confidence: Double, correct: Bool)]](repeating: [], count: count)
        for item in cases { members[edges.reduce(0) { $0 + (item.confidence >= $1 ? 1 : 0) }].append(item) }
        var ece = 0.0
        let bins = members.enumerated().map { b, inside -> CalibrationBin in
            let lower = Double(b) / Double(count), upper = Double(b + 1) / Double(count)
            guard !inside.isEmpty else { return CalibrationBin(lower: lower, upper: upper, count: 0, meanConfidence: nil, accuracy: nil) }
            let confidence = inside.reduce(0) { $0 + $1.confidence } / Double(inside.count)
            let accuracy = Double(inside.count { $0.correct }) / Double(inside.count)
            ece += Double(inside.count) / Double(cases.count) * abs(accuracy - confidence)
            return CalibrationBin(lower: lower, upper: upper, count: inside.count, meanConfidence: confidence, accuracy: accuracy)
        }
        return (bins, ece)
    }
}

// MARK: - report.json

extension EvaluationReport {
    /// The `report.json` object (layout in Docs/evaluation.md, "report.json").
    public var json: JSONValue {
        func spread(_ value: Spread) -> JSONValue {
            .object(JSONObject([("mean", .double(value.mean)), ("sd", value.sd.map { .double($0) } ?? .null)]))
        }
        func optional(_ value: Double?) -> JSONValue { value.map { .double($0) } ?? .null }
        func matrix(_ rows: [[Int]]) -> JSONValue { .array(rows.map { .array($0.map { .int($0) }) }) }
        let systemsJSON: [JSONValue] = systems.map { system in
            let perClass: [JSONValue] = system.classSummaries.map { summary in
                .object(JSONObject([("class", .string(summary.code)), ("precision", spread(summary.precision)),
                                    ("recall", spread(summary.recall)), ("f1", spread(summary.f1)), ("support", .int(summary.support))]))
            }
            let perFold: [JSONValue] = zip(system.folds, system.foldMetrics).map { fold, metrics in
                .object(JSONObject([
                    ("fold", .int(fold)), ("cases", .int(metrics.count)), ("macro_f1", .double(metrics.macroF1)),
                    ("accuracy", .double(metrics.accuracy)), ("balanced_accuracy", .double(metrics.balancedAccuracy)),
                    ("per_class", .array(metrics.classes.map { scores in
                        .object(JSONObject([("class", .string(scores.code)), ("precision", .double(scores.precision)),
                                            ("recall", .double(scores.recall)), ("f1", .double(scores.f1)), ("support", .int(scores.support))]))
                    })),
                    ("confusion", matrix(metrics.confusion)),
                ]))
            }
            let bins: [JSONValue] = system.calibration.map { bin in
                .object(JSONObject([("lower", .double(bin.lower)), ("upper", .double(bin.upper)), ("count", .int(bin.count)),
                                    ("mean_confidence", optional(bin.meanConfidence)), ("accuracy", optional(bin.accuracy))]))
            }
            return .object(JSONObject([
                ("system", .string(system.name)), ("folds", .array(system.folds.map { .int($0) })), ("cases", .int(system.caseCount)),
                ("macro_f1", spread(system.macroF1)), ("accuracy", spread(system.accuracy)),
                ("balanced_accuracy", spread(system.balancedAccuracy)), ("per_class", .array(perClass)),
                ("confusion", matrix(system.confusion)),
                ("calibration", .object(JSONObject([("ece", .double(system.expectedCalibrationError)), ("bins", .array(bins))]))),
                ("per_fold", .array(perFold)),
            ]))
        }
        return .object(JSONObject([
            ("format", .string(Self.formatName)), ("version", .int(Self.formatVersion)),
            ("classes", .array(classes.map { .string($0) })), ("sd_ddof", .int(1)), ("systems", .array(systemsJSON)),
        ]))
    }
}

// MARK: - report.md

extension EvaluationReport {
    /// `value` in percent with two decimals.
    static func percent(_ value: Double) -> String { String(format: "%.2f", value * 100) }

    /// "mean ± SD" in percent, or the mean alone when there is one fold.
    static func percent(_ value: Spread) -> String {
        percent(value.mean) + (value.sd.map { " ± " + percent($0) } ?? "")
    }

    /// The `report.md` text (Docs/evaluation.md, "report.md").
    public var markdown: String {
        var lines = ["# Evaluation report", "",
                     "Scores in percent, mean ± SD over the held-out folds (sample SD, ddof = 1; the mean alone for a system with one fold).",
                     "", "| system | macro F1 | Acc | BAcc | folds |", "|---|---:|---:|---:|---:|"]
        for system in systems {
            lines.append("| \(system.name) | \(Self.percent(system.macroF1)) | \(Self.percent(system.accuracy)) | \(Self.percent(system.balancedAccuracy)) | \(system.folds.count) |")
        }
        lines += ["", "## Per-class F1", "", "| system | " + classes.joined(separator: " | ") + " |",
                  "|---|" + String(repeating: "---:|", count: classes.count)]
        for system in systems {
            lines.append("| \(system.name) | " + system.classSummaries.map { Self.percent($0.f1) }.joined(separator: " | ") + " |")
        }
        lines += ["", "## Calibration", "",
                  "Expected calibration error of the top-class probability over every held-out case, \(Self.calibrationBinCount) equal-width bins, in percent.",
                  "", "| system | cases | ECE |", "|---|---:|---:|"]
        for system in systems {
            lines.append("| \(system.name) | \(system.caseCount) | \(Self.percent(system.expectedCalibrationError)) |")
        }
        lines += ["", "## Confusion matrices", "", "Summed over the folds; rows are the true class, columns the predicted class."]
        for system in systems {
            lines += ["", "### \(system.name)", "", "| true \\ predicted | " + classes.joined(separator: " | ") + " |",
                      "|---|" + String(repeating: "---:|", count: classes.count)]
            for (code, row) in zip(classes, system.confusion) {
                lines.append("| \(code) | " + row.map(String.init).joined(separator: " | ") + " |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

// MARK: - Reading the runner's fold files

extension EvaluationReport {
    /// The fold predictions under `directory` (`prima-eval`'s output): every `folds/SYSTEM/fold-I.json`, systems in
    /// UTF-8 byte order of their names, folds by index; other names in those directories are ignored (the runner's
    /// temporaries start with `.`). Each file is read within ``maxPredictionFileBytes`` and must hold the
    /// ``FoldPredictions`` JSON of system SYSTEM and fold I. Errors (one line naming the file): a missing `folds`
    /// directory, no fold file at all, a `fold-*.json` name whose I is not a decimal index, a file that is not
    /// regular, too large, not UTF-8 or not JSON, a member missing or wrong, a system or fold that disagrees with
    /// the path; then whatever ``init(_:)`` refuses.
    public static func load(directory: String) throws(ToolError) -> EvaluationReport {
        try EvaluationReport(loadPredictions(directory: directory))
    }

    /// The ``FoldPredictions`` that ``load(directory:)`` reads.
    public static func loadPredictions(directory: String) throws(ToolError) -> [FoldPredictions] {
        let foldsDirectory = (directory as NSString).appendingPathComponent("folds")
        let systemNames = try directoryEntries(foldsDirectory).filter { !$0.hasPrefix(".") }
        var predictions: [FoldPredictions] = []
        for system in systemNames {
            let systemDirectory = (foldsDirectory as NSString).appendingPathComponent(system)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: systemDirectory, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            var files: [(fold: Int, path: String)] = []
            for name in try directoryEntries(systemDirectory) where name.hasPrefix("fold-") && name.hasSuffix(".json") {
                let path = (systemDirectory as NSString).appendingPathComponent(name)
                let digits = name.dropFirst("fold-".count).dropLast(".json".count)
                guard !digits.isEmpty, digits.count <= 9, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                      let fold = Int(digits) else {
                    throw ToolError.input("\(path): not a fold file name (fold-<index>.json)")
                }
                files.append((fold, path))
            }
            for (fold, path) in files.sorted(by: { $0.fold < $1.fold }) {
                let item = try readPredictions(path)
                guard item.system == system, item.fold == fold else {
                    throw ToolError.input("\(path): holds \(item.system) fold \(item.fold), but its path says \(system) fold \(fold)")
                }
                predictions.append(item)
            }
        }
        guard !predictions.isEmpty else { throw .input("\(foldsDirectory): no fold predictions (folds/SYSTEM/fold-I.json)") }
        return predictions
    }

    /// One fold file, every error prefixed with its path.
    static func readPredictions(_ path: String) throws(ToolError) -> FoldPredictions {
        let text = try InputFile.readText(path, limit: maxPredictionFileBytes)
        let value: JSONValue
        do { value = try JSON.parse(text) } catch { throw .input("\(path): malformed JSON: \(error)") }
        do { return try FoldPredictions(json: value) } catch { throw .input("\(path): \(error.description)") }
    }

    /// The names in `path`, sorted by their UTF-8 bytes.
    static func directoryEntries(_ path: String) throws(ToolError) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .input("\(path): no such directory") }
        guard isDirectory.boolValue else { throw .input("\(path): not a directory") }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { throw .input("\(path): cannot list the directory") }
        return names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }
}
