import Foundation
import PrimaMetadata
import PrimaTestSupport
import Testing
@testable import PrimaDiagnose

let padHeader = "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed"

/// A PAD-UFES-20 row for image `imageID` with diagnosis `label` ("" for none).
func padRow(_ imageID: String, _ label: String) -> String {
    "PAT_46,881,False,False,POMERANIA,POMERANIA,55,False,FEMALE,True,True,True,True,3.0,NECK,6.0,5.0,\(label),True,True,False,True,True,True,\(imageID),True"
}

/// A fresh temporary folder holding `files` (relative path → contents).
func makeFolder(_ files: [String: String]) throws -> String {
    let folder = TestProcess.temporaryDirectory("prima-diagnose")
    for (path, contents) in files {
        let full = (folder as NSString).appendingPathComponent(path)
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: URL(fileURLWithPath: full))
    }
    return folder
}

/// A folder with `metadata.csv` made of `padHeader` and `rows`, plus `images` (relative paths, empty files).
func makeCaseFolder(rows: [String], images: [String]) throws -> String {
    var files = ["metadata.csv": ([padHeader] + rows).joined(separator: "\n") + "\n"]
    for image in images { files[image] = "" }
    return try makeFolder(files)
}

@Suite struct CaseFolders {
    @Test func imagesInSubfoldersInCSVOrder() throws {
        let folder = try makeCaseFolder(
            rows: [padRow("b.png", "BCC"), padRow("a.png", "NEV"), padRow("c.png", "")],
            images: ["images/imgs_part_2/a.png", "images/imgs_part_1/b.png", "c.png", "images/imgs_part_3/unused.png"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cases = try CaseFolder(folder: folder, classCodes: padClasses)
        #expect(cases.csvPath == folder + "/metadata.csv")
        #expect(cases.cases.map(\.imageID) == ["b.png", "a.png", "c.png"])
        #expect(cases.cases.map(\.row) == [1, 2, 3])
        #expect(cases.cases.map(\.label) == ["BCC", "NEV", nil])
        #expect(cases.labelledCount == 2)
        let paths = try cases.cases.map { try $0.image.get() }
        let real = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
        #expect(paths.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }
            == [real + "/images/imgs_part_1/b.png", real + "/images/imgs_part_2/a.png", real + "/c.png"])
        #expect(cases.cases[0].record["age"] == .number(55))
        #expect(cases.cases[0].record["region"] == .category("NECK"))
    }

    @Test func noDiagnosticColumnMeansUnlabelled() throws {
        let header = "img_id,age,region"
        let folder = try makeFolder(["metadata.csv": "\(header)\nx.png,40,FACE\n", "x.png": ""])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cases = try CaseFolder(folder: folder, classCodes: padClasses)
        #expect(cases.cases.count == 1 && cases.cases[0].label == nil && cases.labelledCount == 0)
    }

    /// A missing image skips that case only; the message names the CSV, the row and the img_id.
    @Test func missingImageIsASkip() throws {
        let folder = try makeCaseFolder(rows: [padRow("here.png", "BCC"), padRow("gone.png", "SCC")], images: ["imgs/here.png"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cases = try CaseFolder(folder: folder, classCodes: padClasses)
        #expect((try? cases.cases[0].image.get()) != nil)
        #expect(cases.cases[1].label == "SCC")
        expectError(folder + "/metadata.csv: row 2 (img_id 'gone.png'): no image file of that name in " + folder) {
            _ = try cases.cases[1].image.get()
        }
    }

    @Test func hiddenFoldersAndDirectoriesAreNotImages() throws {
        let folder = try makeCaseFolder(rows: [padRow("a.png", "BCC"), padRow("b.png", "BCC")],
                                        images: [".cache/a.png", "b.png/readme.txt"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cases = try CaseFolder(folder: folder, classCodes: padClasses)
        for item in cases.cases {
            expectError("img_id '\(item.imageID)'", "no image file") { _ = try item.image.get() }
        }
    }

    @Test func sameNameInTwoSubfoldersIsAnError() throws {
        let folder = try makeCaseFolder(rows: [padRow("a.png", "BCC"), padRow("x.png", "MEL")],
                                        images: ["a.png", "imgs_part_1/x.png", "imgs_part_2/x.png"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        expectError("metadata.csv: row 2 (img_id 'x.png'): 2 files have that name: ", "imgs_part_1/x.png, ", "imgs_part_2/x.png") {
            _ = try CaseFolder(folder: folder, classCodes: padClasses)
        }
    }

    /// A repeated name that no row refers to does not matter.
    @Test func unreferencedDuplicateNamesAreIgnored() throws {
        let folder = try makeCaseFolder(rows: [padRow("a.png", "BCC")], images: ["a.png", "p1/z.png", "p2/z.png"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try CaseFolder(folder: folder, classCodes: padClasses).cases.count == 1)
    }

    @Test func labelOutsideTheModelsClassesIsAnError() throws {
        let folder = try makeCaseFolder(rows: [padRow("a.png", "BCC"), padRow("b.png", "MEL")], images: ["a.png", "b.png"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        expectError("metadata.csv: row 2 (img_id 'b.png'): field 'diagnostic': 'MEL' is not one of the model's classes (BCC, SCC, NEV)") {
            _ = try CaseFolder(folder: folder, classCodes: ["BCC", "SCC", "NEV"])
        }
    }

    @Test func labelOutsideTheSchemaIsMetadataTablesError() throws {
        let folder = try makeCaseFolder(rows: [padRow("a.png", "XYZ")], images: ["a.png"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        expectError("metadata.csv line 2: field 'diagnostic': \"XYZ\" is not one of") {
            _ = try CaseFolder(folder: folder, classCodes: padClasses)
        }
    }

    @Test func folderAndCSVProblems() throws {
        let parent = TestProcess.temporaryDirectory("prima-diagnose")
        defer { try? FileManager.default.removeItem(atPath: parent) }
        expectError(parent + "/absent: no such folder") { _ = try CaseFolder(folder: parent + "/absent", classCodes: padClasses) }

        let noCSV = try makeFolder(["a.png": ""])
        defer { try? FileManager.default.removeItem(atPath: noCSV) }
        expectError(noCSV + "/metadata.csv: not found") { _ = try CaseFolder(folder: noCSV, classCodes: padClasses) }
        expectError(noCSV + "/a.png: not a folder") {
            _ = try CaseFolder(folder: noCSV + "/a.png", classCodes: padClasses)
        }

        let headerOnly = try makeCaseFolder(rows: [], images: [])
        defer { try? FileManager.default.removeItem(atPath: headerOnly) }
        expectError(headerOnly + "/metadata.csv: no cases") { _ = try CaseFolder(folder: headerOnly, classCodes: padClasses) }

        let malformed = try makeFolder(["metadata.csv": "img_id,age\n\"a.png,40\n"])
        defer { try? FileManager.default.removeItem(atPath: malformed) }
        expectError(malformed + "/metadata.csv line 2: unterminated quoted field") {
            _ = try CaseFolder(folder: malformed, classCodes: padClasses)
        }
    }

    @Test func imageIDMustBeAFileName() throws {
        for (imageID, problem) in [("", "empty"), ("imgs/a.png", "'imgs/a.png' is a path; expected a file name"), ("..", "'..' is a path")] {
            let folder = try makeFolder(["metadata.csv": "img_id,age\nok.png,1\n\(imageID),2\n", "ok.png": ""])
            defer { try? FileManager.default.removeItem(atPath: folder) }
            expectError(folder + "/metadata.csv: row 2: field 'img_id': " + problem) {
                _ = try CaseFolder(folder: folder, classCodes: padClasses)
            }
        }
    }
}
