import Foundation
import PrimaMetadata
import PrimaTestSupport
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.2: seeded, stratified K-fold splits by lesion or patient, and split files.
@Suite struct SplitsTests {
    typealias Support = TrainingDataSupport

    /// Every case is validated in exactly one fold, no group straddles a split, the folds are balanced in groups
    /// and, per class, within one group of each other.
    func checkFolds(_ data: TrainingCases, count: Int, grouping: SplitGrouping, seed: UInt64) throws {
        let folds = try Splits.folds(data, count: count, grouping: grouping, seed: seed)
        var groupFold: [String: Int] = [:]
        for (item, fold) in zip(data.cases, folds) {
            let key = grouping.key(of: item)
            #expect(groupFold[key, default: fold] == fold, "\(grouping.describe(item)) in two folds")
            groupFold[key] = fold
        }
        var groupsPerFold = [Int](repeating: 0, count: count)
        for fold in groupFold.values { groupsPerFold[fold] += 1 }
        #expect(groupsPerFold.max()! - groupsPerFold.min()! <= 1, "groups per fold \(groupsPerFold)")
        // Stratification: each class's groups (labelled by their first case) spread within one of each other.
        var firstLabel: [String: Int] = [:]
        for item in data.cases where firstLabel[grouping.key(of: item)] == nil { firstLabel[grouping.key(of: item)] = item.label }
        for label in data.classCodes.indices {
            var perFold = [Int](repeating: 0, count: count)
            for (key, fold) in groupFold where firstLabel[key] == label { perFold[fold] += 1 }
            #expect(perFold.max()! - perFold.min()! <= 1, "class \(label): \(perFold)")
        }
        var validatedIn = [Int](repeating: 0, count: data.cases.count)
        for fold in 0..<count {
            let split = try Splits.crossValidation(data, fold: fold, of: count, grouping: grouping, seed: seed)
            #expect(Set(split.training).isDisjoint(with: split.validation))
            #expect(split.training.count + split.validation.count == data.cases.count)
            let trainingGroups = Set(split.training.map { grouping.key(of: data.cases[$0]) })
            #expect(split.validation.allSatisfy { !trainingGroups.contains(grouping.key(of: data.cases[$0])) })
            for position in split.validation { validatedIn[position] += 1 }
        }
        #expect(validatedIn.allSatisfy { $0 == 1 })
    }

    @Test func bundledCaseFolder() throws {
        let data = try TrainingCases(folder: Support.casesFolder, classCodes: Support.classCodes, schema: .padUfes20)
        #expect(data.cases.count == 10 && data.skipped.isEmpty)
        try checkFolds(data, count: 5, grouping: .lesion, seed: 0)
        try checkFolds(data, count: 2, grouping: .patient, seed: 3)
    }

    @Test func generatedTableWithMultiImageLesionsAndMultiLesionPatients() throws {
        let data = Support.generated(patients: 300)
        // The table has what the test is about: lesions with several images, patients with several lesions, and
        // lesion ids shared between patients.
        let lesions = Dictionary(grouping: data.cases, by: \.lesionKey)
        #expect(lesions.values.contains { $0.count >= 3 })
        #expect(Dictionary(grouping: lesions.keys, by: { $0.split(separator: "\u{0}")[0] }).values.contains { $0.count >= 3 })
        for seed: UInt64 in [0, 1, 12345] {
            try checkFolds(data, count: 5, grouping: .lesion, seed: seed)
            try checkFolds(data, count: 5, grouping: .patient, seed: seed)
        }
        try checkFolds(data, count: 7, grouping: .lesion, seed: 2)
    }

    @Test func deterministicFromTheSeed() throws {
        let data = Support.generated(patients: 100)
        let a = try Splits.folds(data, count: 5, grouping: .lesion, seed: 11)
        #expect(try Splits.folds(data, count: 5, grouping: .lesion, seed: 11) == a)
        #expect(try Splits.folds(data, count: 5, grouping: .lesion, seed: 12) != a)
    }

    /// The fold assignment of the Python reference (Formats/python/prima_ref/train_data.py, `folds`), recorded
    /// for the bundled case folder.
    @Test func bundledFoldsAsThePythonReference() throws {
        let data = try TrainingCases(folder: Support.casesFolder, classCodes: Support.classCodes, schema: .padUfes20)
        #expect(try Splits.folds(data, count: 5, grouping: .lesion, seed: 0) == Self.pythonFoldsSeed0)
    }

    static let pythonFoldsSeed0 = [0, 4, 2, 1, 2, 3, 1, 3, 4, 0]

    @Test func badFoldArguments() {
        let data = Support.generated(patients: 3)
        expectError("--folds 1", "at least 2") { _ = try Splits.folds(data, count: 1, grouping: .lesion, seed: 0) }
        expectError("--folds 50", "only", "patients") { _ = try Splits.folds(data, count: 50, grouping: .patient, seed: 0) }
        expectError("--fold 3", "0 … 2") { _ = try Splits.crossValidation(data, fold: 3, of: 3, grouping: .patient, seed: 0) }
    }

    // MARK: Split files

    func bundled() throws -> TrainingCases {
        try TrainingCases(folder: Support.casesFolder, classCodes: Support.classCodes, schema: .padUfes20)
    }

    @Test func splitFileRoundTrip() throws {
        let data = try bundled()
        let split = try Splits.crossValidation(data, fold: 1, of: 5, grouping: .lesion, seed: 4)
        let path = Support.write(split.csvText(data), name: "split.csv")
        #expect(try Splits.read(splitFile: path, cases: data, grouping: .lesion) == split)
        #expect(try Splits.parse(splitText: split.csvText(data), source: "checkpoint", cases: data, grouping: .lesion) == split)
    }

    @Test func hostileSplitFiles() throws {
        let data = try bundled()
        let ids = data.cases.map(\.imageID)
        func file(_ lines: [String]) -> String { Support.write(lines.joined(separator: "\n") + "\n", name: "split.csv") }
        let good = ids.enumerated().map { "\($1),\($0 < 3 ? "val" : "train")" }
        expectError("split.csv", "empty file") { _ = try Splits.read(splitFile: file([]), cases: data, grouping: .lesion) }
        expectError("split.csv line 1", "img_id and split") {
            _ = try Splits.read(splitFile: file(["image,split"] + good), cases: data, grouping: .lesion)
        }
        expectError("split.csv line 3", "3 columns") {
            _ = try Splits.read(splitFile: file(["img_id,split", good[0], good[1] + ",x"] + good.dropFirst(2)), cases: data, grouping: .lesion)
        }
        expectError("split.csv line 3", "listed again", "line 2") {
            _ = try Splits.read(splitFile: file(["img_id,split", good[0], good[0]] + good.dropFirst()), cases: data, grouping: .lesion)
        }
        expectError("split.csv line 2", "'test' is neither train nor val") {
            _ = try Splits.read(splitFile: file(["img_id,split", "\(ids[0]),test"] + good.dropFirst()), cases: data, grouping: .lesion)
        }
        expectError("split.csv line 12", "'other.png' is not a row") {
            _ = try Splits.read(splitFile: file(["img_id,split"] + good + ["other.png,train"]), cases: data, grouping: .lesion)
        }
        expectError("split.csv", "no line for img_id '\(ids[9])'", "row 10") {
            _ = try Splits.read(splitFile: file(["img_id,split"] + good.dropLast()), cases: data, grouping: .lesion)
        }
        expectError("split.csv", "validation side is empty") {
            _ = try Splits.read(splitFile: file(["img_id,split"] + ids.map { "\($0),train" }), cases: data, grouping: .lesion)
        }
        expectError("split.csv", "training side is empty") {
            _ = try Splits.read(splitFile: file(["img_id,split"] + ids.map { "\($0),val" }), cases: data, grouping: .lesion)
        }
        expectError("split.csv line 2", "quote inside an unquoted field") {
            _ = try Splits.read(splitFile: file(["img_id,split", "a\"b,train"]), cases: data, grouping: .lesion)
        }
        expectError("is a directory") {
            _ = try Splits.read(splitFile: TestProcess.temporaryDirectory(), cases: data, grouping: .lesion)
        }
        expectError("no such file") { _ = try Splits.read(splitFile: "/nonexistent/split.csv", cases: data, grouping: .lesion) }
    }

    @Test func splitFileMayNotLeakALesionOrPatient() throws {
        let data = Support.generated(patients: 20)
        // The first lesion (in CSV order) with two images, outside patient PAT_19 (all in val): one image on each side.
        let first = data.cases.indices.first { i in
            data.cases[i].patientID != "PAT_19" && data.cases.indices.contains { $0 > i && data.cases[$0].lesionKey == data.cases[i].lesionKey }
        }!
        let lesion = data.cases.indices.filter { data.cases[$0].lesionKey == data.cases[first].lesionKey }
        var lines = ["img_id,split"]
        for (position, item) in data.cases.enumerated() {
            lines.append("\(item.imageID),\(position == lesion[1] || item.patientID == "PAT_19" ? "val" : "train")")
        }
        let path = Support.write(lines.joined(separator: "\n"), name: "split.csv")
        let item = data.cases[lesion[0]]
        expectError("split.csv", "lesion (\(item.patientID), \(item.lesionID))", "in train (line \(lesion[0] + 2))",
                    "in val (line \(lesion[1] + 2))") {
            _ = try Splits.read(splitFile: path, cases: data, grouping: .lesion)
        }
        // Patient mode: a patient whose lesions are split apart is refused too, lesion mode accepts it.
        var patientLines = ["img_id,split"]
        let patient = data.cases.first { item in data.cases.contains { $0.patientID == item.patientID && $0.lesionID != item.lesionID } }!
        let firstLesion = patient.lesionKey
        for item in data.cases {
            patientLines.append("\(item.imageID),\(item.patientID == patient.patientID && item.lesionKey != firstLesion ? "val" : "train")")
        }
        let patientPath = Support.write(patientLines.joined(separator: "\n"), name: "split.csv")
        _ = try Splits.read(splitFile: patientPath, cases: data, grouping: .lesion)
        expectError("patient \(patient.patientID)", "may not be on both sides") {
            _ = try Splits.read(splitFile: patientPath, cases: data, grouping: .patient)
        }
    }
}
