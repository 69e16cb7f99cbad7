import Foundation
import PrimaMetadata
import PrimaTestSupport
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.1: a case folder as training reads it; corrupt and missing images are skipped and
/// reported, everything else that is wrong is a one-line error.
@Suite struct TrainingCasesTests {
    typealias Support = TrainingDataSupport

    static let header = "patient_id,lesion_id,age,diagnostic,img_id"

    /// A folder with `rows` as metadata.csv and a copy of a fixture PNG for every name in `images`.
    static func folder(_ rows: [String], images: [String], corrupt: [String] = []) -> String {
        let directory = TestProcess.temporaryDirectory("prima-train-cases")
        _ = FileManager.default.createFile(atPath: directory + "/metadata.csv", contents: Data(([header] + rows).joined(separator: "\n").utf8))
        try? FileManager.default.createDirectory(atPath: directory + "/imgs", withIntermediateDirectories: true)
        let png = try! Data(contentsOf: URL(fileURLWithPath: Support.casesFolder + "/imgs/PAT_46_881_939.png"))
        for name in images { _ = FileManager.default.createFile(atPath: directory + "/imgs/" + name, contents: png) }
        for name in corrupt { _ = FileManager.default.createFile(atPath: directory + "/imgs/" + name, contents: png.prefix(100)) }
        return directory
    }

    @Test func bundledFolder() throws {
        let data = try TrainingCases(folder: Support.casesFolder, classCodes: Support.classCodes, schema: .padUfes20)
        #expect(data.cases.count == 10 && data.skipped.isEmpty)
        let first = data.cases[0]
        #expect(first.patientID == "PAT_46" && first.lesionID == "881" && first.label == 0 && first.imageID == "PAT_46_881_939.png")
        // The identifiers are read for grouping only: the record holds the schema's fields alone.
        #expect(first.record[TrainingCases.patientKey] == nil && first.record["age"] == .number(55))
    }

    @Test func missingAndCorruptImagesAreSkippedAndCounted() throws {
        let directory = Self.folder(["P1,1,50,BCC,a.png", "P1,1,50,BCC,b.png", "P2,1,60,NEV,c.png", "P3,2,70,SEK,d.png"],
                                    images: ["a.png", "c.png"], corrupt: ["d.png"])
        let data = try TrainingCases(folder: directory, classCodes: Support.classCodes, schema: .padUfes20)
        #expect(data.cases.map(\.imageID) == ["a.png", "c.png"])
        #expect(data.skipped.map(\.imageID) == ["b.png", "d.png"])
        #expect(data.skipped[0].reason.contains("no image file"))
        #expect(data.skipped[1].reason.contains("d.png") && !data.skipped[1].reason.contains("\n"))
        // Without decoding, only the missing file is skipped.
        let unchecked = try TrainingCases(folder: directory, classCodes: Support.classCodes, schema: .padUfes20, checkImages: false)
        #expect(unchecked.cases.count == 3 && unchecked.skipped.count == 1)
    }

    @Test func errors() {
        let codes = Support.classCodes
        expectError("no such folder") { _ = try TrainingCases(folder: "/nonexistent/cases", classCodes: codes, schema: .padUfes20) }
        let empty = TestProcess.temporaryDirectory("prima-train-cases")
        expectError("metadata.csv: not found") { _ = try TrainingCases(folder: empty, classCodes: codes, schema: .padUfes20) }
        expectError("metadata.csv line 3", "field 'diagnostic'", "\"XYZ\" is not one of") {
            _ = try TrainingCases(folder: Self.folder(["P1,1,50,BCC,a.png", "P1,2,50,XYZ,b.png"], images: ["a.png", "b.png"]),
                                  classCodes: codes, schema: .padUfes20)
        }
        // The schema knows a class the checkpoint does not.
        expectError("row 1", "'MEL' is not one of the model's classes") {
            _ = try TrainingCases(folder: Self.folder(["P1,1,50,MEL,a.png"], images: ["a.png"]), classCodes: ["BCC", "SCC"], schema: .padUfes20)
        }
        expectError("row 1", "no label") {
            _ = try TrainingCases(folder: Self.folder(["P1,1,50,UNK,a.png"], images: ["a.png"]), classCodes: codes, schema: .padUfes20)
        }
        expectError("row 1", "no patient_id") {
            _ = try TrainingCases(folder: Self.folder([",1,50,BCC,a.png"], images: ["a.png"]), classCodes: codes, schema: .padUfes20)
        }
        expectError("row 2", "lesion (P1, 1) is SCC here but BCC in row 1") {
            _ = try TrainingCases(folder: Self.folder(["P1,1,50,BCC,a.png", "P1,1,50,SCC,b.png"], images: ["a.png", "b.png"]),
                                  classCodes: codes, schema: .padUfes20)
        }
        expectError("no usable case", "all 1 rows skipped") {
            _ = try TrainingCases(folder: Self.folder(["P1,1,50,BCC,a.png"], images: []), classCodes: codes, schema: .padUfes20)
        }
        expectError("metadata.csv line 2", "field 'age'") {
            _ = try TrainingCases(folder: Self.folder(["P1,1,old,BCC,a.png"], images: ["a.png"]), classCodes: codes, schema: .padUfes20)
        }
    }
}
