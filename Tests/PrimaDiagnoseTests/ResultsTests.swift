import Foundation
import PrimaJSON
import PrimaMetadata
import PrimaTestSupport
import Testing
@testable import PrimaDiagnose

let threeClasses = ["BCC", "SCC", "NEV"]

func diagnosed(_ imageID: String, _ label: String?, _ probabilities: [Float]) -> CaseResult {
    CaseResult(imageID: imageID, label: label, outcome: .diagnosed(Diagnosis(classCodes: threeClasses, probabilities: probabilities)))
}

/// Four cases: right, wrong, unlabelled, failed (labelled).
let sampleResults = BatchResults(classCodes: threeClasses, cases: [
    diagnosed("a.png", "BCC", [0.75, 0.125, 0.125]),
    diagnosed("b,\"odd\".png", "SCC", [0.5, 0.25, 0.25]),
    diagnosed("c.png", nil, [0.0, 0.25, 0.75]),
    CaseResult(imageID: "d.png", label: "NEV", outcome: .failed("metadata.csv: row 4 (img_id 'd.png'): no image file of that name in data, or its subfolders")),
])

@Suite struct Diagnoses {
    @Test func rankingIsByProbabilityThenClassOrder() {
        let diagnosis = Diagnosis(classCodes: ["A", "B", "C", "D"], probabilities: [0.25, .nan, 0.5, 0.25])
        #expect(diagnosis.ranked.map(\.code) == ["C", "A", "D", "B"])
        #expect(diagnosis.predicted == "C")
    }

    @Test func correctness() {
        #expect(sampleResults.cases.map(\.isCorrect) == [true, false, nil, nil])
        #expect(sampleResults.cases.map(\.error).map { $0 == nil } == [true, true, true, false])
    }
}

@Suite struct ResultFiles {
    @Test func csvText() throws {
        let text = sampleResults.csvText()
        #expect(text == [
            "img_id,predicted,p_BCC,p_SCC,p_NEV,true_label,correct,error",
            "a.png,BCC,0.75,0.125,0.125,BCC,yes,",
            "\"b,\"\"odd\"\".png\",BCC,0.5,0.25,0.25,SCC,no,",
            "c.png,NEV,0.0,0.25,0.75,,,",
            "d.png,,,,,NEV,,\"metadata.csv: row 4 (img_id 'd.png'): no image file of that name in data, or its subfolders\"",
        ].map { $0 + "\r\n" }.joined())
        // The toolkit's own RFC 4180 reader gets the fields back.
        let records = try CSVReader.parse(text, source: "results.csv")
        #expect(records.count == 5 && records.allSatisfy { $0.fields.count == 8 })
        #expect(records[2].fields[0] == "b,\"odd\".png")
        #expect(records[4].fields[7].hasSuffix("in data, or its subfolders"))
    }

    @Test func jsonText() throws {
        let parsed = try JSON.parse(sampleResults.jsonText())
        #expect(parsed == sampleResults.jsonValue)
        let root = try #require(parsed.object)
        #expect(root["format"] == "prima-diagnose-results" && root["version"] == 1)
        #expect(root["class_codes"] == ["BCC", "SCC", "NEV"])
        let cases = try #require(root["cases"]?.array)
        #expect(cases[0] == ["img_id": "a.png", "predicted": "BCC", "probabilities": ["BCC": 0.75, "SCC": 0.125, "NEV": 0.125],
                             "true_label": "BCC", "correct": true, "error": nil])
        #expect(cases[2].object?["true_label"] == .null && cases[2].object?["correct"] == .null)
        #expect(cases[3] == ["img_id": "d.png", "predicted": nil, "probabilities": nil, "true_label": "NEV", "correct": nil,
                             "error": "metadata.csv: row 4 (img_id 'd.png'): no image file of that name in data, or its subfolders"])
    }

    @Test func nonFiniteProbabilitiesAreNullInJSON() {
        let results = BatchResults(classCodes: threeClasses, cases: [diagnosed("x.png", nil, [.nan, 1, .infinity])])
        let probabilities = results.jsonValue.object?["cases"]?.array?[0].object?["probabilities"]
        #expect(probabilities == ["BCC": nil, "SCC": 1.0, "NEV": nil])
        #expect(results.csvText().hasSuffix("x.png,NEV,nan,1.0,inf,,,\r\n"))
    }
}

@Suite struct Summaries {
    @Test func countsAndMetrics() throws {
        let summary = sampleResults.summary
        #expect(summary.caseCount == 4 && summary.labelledCount == 3 && summary.failedCount == 1 && summary.scoredCount == 2)
        let metrics = try #require(summary.metrics)
        #expect(metrics.confusion == [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
        let json = try JSON.parse(summary.jsonText())
        #expect(json == [
            "format": "prima-diagnose-summary", "version": 1, "class_codes": ["BCC", "SCC", "NEV"],
            "cases": 4, "labelled": 3, "failed": 1, "scored": 2,
            "metrics": [
                "accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": .double(2.0 / 9),
                "classes": [
                    ["code": "BCC", "precision": 0.5, "recall": 1.0, "f1": .double(2.0 / 3), "support": 1],
                    ["code": "SCC", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1],
                    ["code": "NEV", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0],
                ],
                "confusion_matrix": [[1, 0, 0], [1, 0, 0], [0, 0, 0]],
            ],
        ])
    }

    @Test func table() {
        #expect(sampleResults.summary.table == """
            class  precision  recall     F1  support
            BCC        0.500   1.000  0.667        1
            SCC        0.000   0.000  0.000        1
            NEV        0.000   0.000  0.000        0
            macro F1           0.222
            accuracy           0.500  (1 of 2)
            balanced accuracy  0.500

            confusion matrix (rows: true class, columns: predicted)
                   BCC  SCC  NEV
            BCC      1    0    0
            SCC      1    0    0
            NEV      0    0    0

            cases 4, labelled 3, failed 1, scored 2

            """)
    }

    @Test func nothingScored() {
        let results = BatchResults(classCodes: threeClasses, cases: [
            diagnosed("c.png", nil, [0.0, 0.25, 0.75]),
            CaseResult(imageID: "d.png", label: "NEV", outcome: .failed("d.png: not a PNG file")),
        ])
        let summary = results.summary
        #expect(summary.metrics == nil)
        #expect(summary.jsonValue.object?["metrics"] == .null && summary.jsonValue.object?["scored"] == 0)
        #expect(summary.table == "cases 2, labelled 1, failed 1, scored 0: no labelled case was diagnosed, so there are no metrics\n")
    }
}

@Suite struct OutputFiles {
    @Test func writesAndReplacesWhole() throws {
        let folder = try makeFolder([:])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/results.csv"
        try OutputFile.write("first\n", to: path, overwrite: false)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "first\n")
        expectError(path + ": already exists (use --force to overwrite)") { try OutputFile.write("second\n", to: path, overwrite: false) }
        try OutputFile.write("second\n", to: path, overwrite: true)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["results.csv"])
    }

    @Test func missingDirectoryNamesTheFile() throws {
        let folder = try makeFolder([:])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/absent/summary.json"
        expectError(path + ": directory " + folder + "/absent does not exist") {
            try OutputFile.write("{}\n", to: path, overwrite: false)
        }
    }

    /// A directory in the way is refused before anything is written, and nothing is left behind.
    @Test func directoryInTheWayLeavesNoTemporary() throws {
        let folder = try makeFolder(["results.json/inside": ""])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/results.json"
        expectError(path + ": exists and is a directory; the output must be a regular file") {
            try OutputFile.write("{}\n", to: path, overwrite: true)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["results.json"])
    }
}
