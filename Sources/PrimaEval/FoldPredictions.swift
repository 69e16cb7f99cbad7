import PrimaIO
import PrimaJSON

/// One system's class probabilities on the held-out cases of one cross-validation fold: what every evaluated
/// system (PRIMA, its ablations, the image-only and metadata-only baselines) hands to the report.
///
/// On disk it is one JSON object (`prima-eval`'s `folds/SYSTEM/fold-I.json`, Docs/evaluation.md):
/// `{"system": S, "fold": I, "classes": [K codes], "cases": [N img_ids], "labels": [N class indices],
///   "probabilities": [N rows of K numbers]}`.
public struct FoldPredictions: Sendable, Equatable {
    /// The system's name, e.g. `prima`, `image-only`, `metadata-cls`, `metadata-logreg`, `no-loc-loss`.
    public let system: String
    /// 0-based index of the held-out fold.
    public let fold: Int
    /// Class codes in column order (PAD-UFES-20 abbreviations in the checkpoint's class order).
    public let classes: [String]
    /// One case id (img_id) per row.
    public let cases: [String]
    /// True class index per row, in `0..<classes.count`.
    public let labels: [Int]
    /// [N][K] class probabilities per row: finite, non-negative, each row summing to 1 within 1e-4.
    public let probabilities: [[Double]]

    /// Largest |Σ row − 1| accepted: rows are softmax outputs computed in f32 and stored as decimal text.
    public static let rowSumTolerance = 1e-4

    /// Checks the shapes and values listed on the properties; the error names what is wrong.
    public init(system: String, fold: Int, classes: [String], cases: [String], labels: [Int], probabilities: [[Double]]) throws(ToolError) {
        guard !system.isEmpty else { throw .input("predictions without a system name") }
        guard fold >= 0 else { throw .input("\(system): negative fold \(fold)") }
        guard !classes.isEmpty, Set(classes).count == classes.count else {
            throw .input("\(system) fold \(fold): class list empty or with repeats: \(classes)")
        }
        guard !cases.isEmpty, labels.count == cases.count, probabilities.count == cases.count else {
            throw .input("\(system) fold \(fold): \(cases.count) cases, \(labels.count) labels, \(probabilities.count) probability rows (must be equal and non-zero)")
        }
        for (row, label) in labels.enumerated() where !(0..<classes.count).contains(label) {
            throw .input("\(system) fold \(fold): case \(cases[row]) has label \(label) outside 0..<\(classes.count)")
        }
        for (row, values) in probabilities.enumerated() {
            guard values.count == classes.count, values.allSatisfy({ $0.isFinite && $0 >= 0 }),
                  abs(values.reduce(0, +) - 1) <= Self.rowSumTolerance else {
                throw .input("\(system) fold \(fold): probabilities of case \(cases[row]) are not \(classes.count) non-negative numbers summing to 1")
            }
        }
        self.system = system
        self.fold = fold
        self.classes = classes
        self.cases = cases
        self.labels = labels
        self.probabilities = probabilities
    }

    /// Predicted class index per row: the most probable class, the lowest index on a tie.
    public var predictions: [Int] {
        probabilities.map { row in row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }! }
    }

    /// The on-disk JSON object (numbers as the shortest text that reads back to the same Double).
    public var json: JSONValue {
        .object(JSONObject([
            ("system", .string(system)),
            ("fold", .int(fold)),
            ("classes", .array(classes.map { .string($0) })),
            ("cases", .array(cases.map { .string($0) })),
            ("labels", .array(labels.map { .int($0) })),
            ("probabilities", .array(probabilities.map { .array($0.map { .double($0) }) })),
        ]))
    }

    /// Reads the on-disk object; every missing or mistyped member is a one-line error.
    public init(json: JSONValue) throws(ToolError) {
        guard let object = json.object else { throw .input("predictions are not a JSON object") }
        func member<T>(_ key: String, _ convert: (JSONValue) -> T?) throws(ToolError) -> T {
            guard let value = object[key], let converted = convert(value) else {
                throw .input("predictions: member \"\(key)\" missing or of the wrong type")
            }
            return converted
        }
        func strings(_ value: JSONValue) -> [String]? {
            guard let array = value.array else { return nil }
            let items = array.compactMap(\.string)
            return items.count == array.count ? items : nil
        }
        func ints(_ value: JSONValue) -> [Int]? {
            guard let array = value.array else { return nil }
            let items = array.compactMap(\.int)
            return items.count == array.count ? items : nil
        }
        func rows(_ value: JSONValue) -> [[Double]]? {
            guard let array = value.array else { return nil }
            var result: [[Double]] = []
            for row in array {
                guard let cells = row.array else { return nil }
                let numbers = cells.compactMap(\.double)
                guard numbers.count == cells.count else { return nil }
                result.append(numbers)
            }
            return result
        }
        try self.init(
            system: try member("system", \.string), fold: try member("fold", \.int), classes: try member("classes", strings),
            cases: try member("cases", strings), labels: try member("labels", ints), probabilities: try member("probabilities", rows))
    }
}
