import PrimaIO
import PrimaMetadata

/// What may not straddle the training and validation sides of a split (Formats/prima-training.md §3.2).
public enum SplitGrouping: String, Sendable, CaseIterable {
    /// The lesion, (patient_id, lesion_id): the paper's PAD-UFES-20 protocol. A patient's other lesions may fall
    /// on the other side.
    case lesion
    /// The patient: all of a patient's images on one side.
    case patient

    /// The group of `item` under this grouping.
    func key(of item: TrainingCases.Case) -> String {
        switch self {
        case .lesion: item.lesionKey
        case .patient: item.patientID
        }
    }

    /// How a group is named in messages.
    func describe(_ item: TrainingCases.Case) -> String {
        switch self {
        case .lesion: "lesion (\(item.patientID), \(item.lesionID))"
        case .patient: "patient \(item.patientID)"
        }
    }
}

/// A training/validation split of ``TrainingCases``: positions into its `cases`, ascending, both sides non-empty,
/// no group on both sides.
public struct DataSplit: Sendable, Equatable {
    /// Positions of the training cases in ``TrainingCases/cases``, ascending.
    public let training: [Int]
    /// Positions of the validation cases, ascending.
    public let validation: [Int]
    public let grouping: SplitGrouping

    /// The split as a split file (§3.2): `img_id,split` then one line per case in CSV order, `train` or `val`;
    /// what the checkpoint records and what ``Splits/read(splitFile:cases:grouping:)`` reads back.
    public func csvText(_ data: TrainingCases) -> String {
        var side = [String?](repeating: nil, count: data.cases.count)
        for position in training { side[position] = "train" }
        for position in validation { side[position] = "val" }
        var lines = ["img_id,split"]
        for (position, item) in data.cases.enumerated() {
            guard let name = side[position] else { continue }
            lines.append("\(Self.csvField(item.imageID)),\(name)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A CSV field, quoted when it holds a comma, a quote or a line break.
    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// The two ways of splitting the cases (Formats/prima-training.md §3.2): seeded, stratified K-fold
/// cross-validation over groups, and a split file.
public enum Splits {
    /// Side names in a split file.
    public static let trainingName = "train"
    public static let validationName = "val"
    /// Largest split file: the size limit of a `metadata.csv`, which has one row per case too.
    public static let maxSplitFileBytes = MetadataLimits.maxCSVBytes

    /// The fold (0..<K) of every case: groups (lesions or patients) in order of first appearance are permuted
    /// by the stream (seed, split, 0, 0, 0), stably sorted by the label of their first case, and dealt
    /// round-robin: the k-th group of that order goes to fold k mod K. Each class's groups are so spread over the
    /// folds as evenly as they can be (stratified), and the folds differ in size by at most one group.
    /// Throws unless 2 ≤ K ≤ the number of groups.
    public static func folds(_ data: TrainingCases, count: Int, grouping: SplitGrouping, seed: UInt64) throws(ToolError) -> [Int] {
        var groupOf: [String: Int] = [:]
        var groupLabels: [Int] = []
        var caseGroups: [Int] = []
        for item in data.cases {
            let key = grouping.key(of: item)
            if let group = groupOf[key] {
                caseGroups.append(group)
            } else {
                groupOf[key] = groupLabels.count
                caseGroups.append(groupLabels.count)
                groupLabels.append(item.label)
            }
        }
        let groupCount = groupLabels.count
        guard count >= 2 else { throw ToolError.input("--folds \(count): cross-validation needs at least 2 folds") }
        guard count <= groupCount else {
            throw ToolError.input("--folds \(count): \(data.csvPath) has only \(groupCount) \(grouping.rawValue)s, fewer than the folds")
        }
        var stream = TrainingRandom(seed: seed, purpose: .split, epoch: 0, index: 0)
        let permuted = stream.permutation(groupCount)
        var foldOfGroup = [Int](repeating: 0, count: groupCount)
        var dealt = 0
        for label in data.classCodes.indices {
            for group in permuted where groupLabels[group] == label {
                foldOfGroup[group] = dealt % count
                dealt += 1
            }
        }
        return caseGroups.map { foldOfGroup[$0] }
    }

    /// Fold `fold` (0-based) of `count` as the validation side, the other folds as training (``folds(_:count:grouping:seed:)``).
    public static func crossValidation(_ data: TrainingCases, fold: Int, of count: Int, grouping: SplitGrouping,
                                       seed: UInt64) throws(ToolError) -> DataSplit {
        let folds = try folds(data, count: count, grouping: grouping, seed: seed)
        guard (0..<count).contains(fold) else {
            throw ToolError.input("--fold \(fold): not a fold of --folds \(count) (0 … \(count - 1))")
        }
        let validation = folds.indices.filter { folds[$0] == fold }
        let training = folds.indices.filter { folds[$0] != fold }
        return try checked(data, training: training, validation: validation, grouping: grouping, source: "fold \(fold) of \(count)")
    }

    /// Reads a split file (§3.2): CSV with the header `img_id,split` (either order), one row per case of
    /// `metadata.csv`, the side `train` or `val`. Hostile input: one-line errors naming the file and the line for
    /// a malformed file, an unknown or repeated img_id, an unknown side, a usable case without a line, a group on
    /// both sides, and an empty side. Rows of skipped cases may be listed and are ignored.
    public static func read(splitFile path: String, cases data: TrainingCases, grouping: SplitGrouping) throws(ToolError) -> DataSplit {
        try parse(splitText: try InputFile.readText(path, limit: maxSplitFileBytes), source: path, cases: data, grouping: grouping)
    }

    /// A split file's text (``read(splitFile:cases:grouping:)``'s rules; `source` names it in errors): for a split
    /// recorded in a checkpoint (``DataSplit/csvText(_:)``) and read back on resume.
    public static func parse(splitText text: String, source path: String, cases data: TrainingCases,
                             grouping: SplitGrouping) throws(ToolError) -> DataSplit {
        let records: [(line: Int, fields: [String])]
        do {
            records = try CSVReader.parse(text, source: path)
        } catch {
            throw ToolError.input(error.message)
        }
        guard let header = records.first else { throw ToolError.input("\(path): empty file (expected the header img_id,split)") }
        guard header.fields.count == 2, let idColumn = header.fields.firstIndex(of: "img_id"),
              let sideColumn = header.fields.firstIndex(of: "split") else {
            throw ToolError.input("\(path) line \(header.line): the header must be the two columns img_id and split, got \(header.fields.joined(separator: ","))")
        }
        var positions: [String: Int] = [:]
        for (position, item) in data.cases.enumerated() { positions[item.imageID] = position }
        let skippedIDs = Set(data.skipped.map(\.imageID))
        var sides = [Bool?](repeating: nil, count: data.cases.count)  // true: validation
        var lines = [Int](repeating: 0, count: data.cases.count)
        var seen: [String: Int] = [:]
        for record in records.dropFirst() {
            let place = "\(path) line \(record.line)"
            guard record.fields.count == 2 else {
                throw ToolError.input("\(place): \(record.fields.count) columns, the header has 2")
            }
            let imageID = record.fields[idColumn], side = record.fields[sideColumn]
            if let earlier = seen[imageID] {
                throw ToolError.input("\(place): img_id '\(imageID)' is listed again (first on line \(earlier))")
            }
            seen[imageID] = record.line
            let isValidation: Bool
            switch side {
            case trainingName: isValidation = false
            case validationName: isValidation = true
            default: throw ToolError.input("\(place): split '\(side)' is neither \(trainingName) nor \(validationName)")
            }
            guard let position = positions[imageID] else {
                if skippedIDs.contains(imageID) { continue }
                throw ToolError.input("\(place): img_id '\(imageID)' is not a row of \(data.csvPath)")
            }
            sides[position] = isValidation
            lines[position] = record.line
        }
        if let missing = sides.firstIndex(where: { $0 == nil }) {
            let item = data.cases[missing]
            throw ToolError.input("\(path): no line for img_id '\(item.imageID)' (\(data.csvPath) row \(item.row)); every case must be assigned to \(trainingName) or \(validationName)")
        }
        // A group on both sides: named with the lines that put it there.
        var firstSide: [String: (validation: Bool, line: Int)] = [:]
        for (position, item) in data.cases.enumerated() {
            let key = grouping.key(of: item), side = sides[position]!
            if let first = firstSide[key] {
                if first.validation != side {
                    let (trainLine, valLine) = side ? (first.line, lines[position]) : (lines[position], first.line)
                    throw ToolError.input("\(path): \(grouping.describe(item)) is in \(trainingName) (line \(trainLine)) and in \(validationName) (line \(valLine)); a \(grouping.rawValue) may not be on both sides")
                }
            } else {
                firstSide[key] = (side, lines[position])
            }
        }
        let validation = sides.indices.filter { sides[$0]! }
        let training = sides.indices.filter { !sides[$0]! }
        return try checked(data, training: training, validation: validation, grouping: grouping, source: path)
    }

    /// The split, after checking that neither side is empty (the caller already kept groups on one side).
    static func checked(_ data: TrainingCases, training: [Int], validation: [Int], grouping: SplitGrouping,
                        source: String) throws(ToolError) -> DataSplit {
        guard !training.isEmpty else { throw ToolError.input("\(source): the training side is empty") }
        guard !validation.isEmpty else { throw ToolError.input("\(source): the validation side is empty") }
        return DataSplit(training: training, validation: validation, grouping: grouping)
    }
}
