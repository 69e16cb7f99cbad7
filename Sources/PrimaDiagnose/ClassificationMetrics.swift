/// Scores of (true label, predicted label) pairs over a fixed list of classes, as the paper reports them
/// (per-class F1, macro F1, accuracy, balanced accuracy; Docs/prima-model.md, "Training stages").
///
/// Every number matches scikit-learn 1.x called with all classes and `zero_division=0`:
/// - `precision_recall_fscore_support(y_true, y_pred, labels=classCodes, zero_division=0)` per class: a class
///   never predicted has precision 0, a class never present has recall 0, and a class neither present nor
///   predicted has F1 0 (F1 = 2·TP / (2·TP + FP + FN), 0 when that denominator is 0).
/// - `f1_score(..., labels=classCodes, average="macro", zero_division=0)`: the unweighted mean of the per-class F1
///   over **all** given classes, so a class absent from the batch and never predicted counts as F1 0 and pulls
///   the mean down (scikit-learn does the same when `labels` lists it).
/// - `balanced_accuracy_score(y_true, y_pred)`: the mean recall over the classes that occur in `y_true` only;
///   classes with no support are left out, not counted as 0.
/// - `accuracy_score`: correct pairs over all pairs.
public struct ClassificationMetrics: Sendable, Equatable {
    /// One class's scores.
    public struct ClassScores: Sendable, Equatable {
        public let code: String
        /// TP / (TP + FP); 0 if the class was never predicted.
        public let precision: Double
        /// TP / (TP + FN); 0 if the class has no support.
        public let recall: Double
        /// 2·TP / (2·TP + FP + FN); 0 if the class was neither present nor predicted.
        public let f1: Double
        /// Number of pairs whose true label is this class.
        public let support: Int
    }

    /// The classes, in the order given (rows and columns of ``confusion``).
    public let classCodes: [String]
    /// K×K counts, `confusion[t][p]` = pairs with true class t predicted as p (scikit-learn's layout).
    public let confusion: [[Int]]
    /// Per-class scores in class order.
    public let classes: [ClassScores]
    /// Number of pairs scored.
    public let count: Int
    /// Pairs whose prediction is the true label.
    public let correctCount: Int
    /// Correct pairs / all pairs.
    public let accuracy: Double
    /// Mean recall over the classes with support.
    public let balancedAccuracy: Double
    /// Mean F1 over all classes.
    public let macroF1: Double

    /// Scores `pairs`. Preconditions: `classCodes` is non-empty without repeats, `pairs` is non-empty, and every
    /// label in it is one of `classCodes` (``CaseFolder`` refuses other true labels; predictions come from the
    /// same class list).
    public init(classCodes: [String], pairs: [(truth: String, predicted: String)]) {
        precondition(!classCodes.isEmpty && Set(classCodes).count == classCodes.count, "class codes must be unique: \(classCodes)")
        precondition(!pairs.isEmpty, "no pairs to score")
        let index = Dictionary(uniqueKeysWithValues: classCodes.enumerated().map { ($1, $0) })
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classCodes.count), count: classCodes.count)
        for (truth, predicted) in pairs {
            guard let t = index[truth], let p = index[predicted] else {
                preconditionFailure("label outside the class list: \(truth) → \(predicted)")
            }
            confusion[t][p] += 1
        }
        func ratio(_ numerator: Int, _ denominator: Int) -> Double { denominator == 0 ? 0 : Double(numerator) / Double(denominator) }
        var classes: [ClassScores] = []
        for (k, code) in classCodes.enumerated() {
            let tp = confusion[k][k]
            let support = confusion[k].reduce(0, +)
            let predictedCount = confusion.reduce(0) { $0 + $1[k] }
            let fp = predictedCount - tp, fn = support - tp
            classes.append(ClassScores(code: code, precision: ratio(tp, predictedCount), recall: ratio(tp, support),
                                       f1: ratio(2 * tp, 2 * tp + fp + fn), support: support))
        }
        let correct = classCodes.indices.reduce(0) { $0 + confusion[$1][$1] }
        let present = classes.filter { $0.support > 0 }
        self.classCodes = classCodes
        self.confusion = confusion
        self.classes = classes
        count = pairs.count
        correctCount = correct
        accuracy = ratio(correct, pairs.count)
        balancedAccuracy = present.reduce(0) { $0 + $1.recall } / Double(present.count)
        macroF1 = classes.reduce(0) { $0 + $1.f1 } / Double(classes.count)
    }
}
