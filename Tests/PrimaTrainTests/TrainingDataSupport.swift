import Foundation
import PrimaMetadata
import PrimaTestSupport
@testable import PrimaTrain

/// Shared inputs of the data-pipeline tests.
enum TrainingDataSupport {
    /// PAD-UFES-20's classes, in the reference schema's order.
    static let classCodes = ["BCC", "SCC", "ACK", "SEK", "MEL", "NEV"]
    /// The bundled case folder: ten rows, ten patients, one image per lesion.
    static let casesFolder = TestProcess.repositoryRoot + "/Fixtures/prima/cases"

    /// A generated table of `patients` patients with 1…3 lesions each and 1…4 images per lesion, labels spread
    /// over the six classes (a seeded mix), lesion ids reused across patients as in PAD-UFES-20. No files.
    static func generated(patients: Int, seed: UInt64 = 99) -> TrainingCases {
        var stream = TrainingRandom(seed: seed, purpose: .initialisation, epoch: 0, index: 0)
        var cases: [TrainingCases.Case] = []
        for patient in 0..<patients {
            for lesion in 0..<(1 + stream.below(3)) {
                let label = stream.below(6)
                for image in 0..<(1 + stream.below(4)) {
                    let lesionID = String(100 + lesion)  // the same ids under every patient
                    let record = MetadataRecord(values: [("age", .number(Double(20 + stream.below(70)))),
                                                         ("diagnostic", .category(classCodes[label]))])
                    cases.append(TrainingCases.Case(row: cases.count + 1, imageID: "PAT_\(patient)_\(lesionID)_\(image).png",
                                                    imagePath: "/nonexistent/\(cases.count).png", record: record, label: label,
                                                    patientID: "PAT_\(patient)", lesionID: lesionID))
                }
            }
        }
        return TrainingCases(csvPath: "generated/metadata.csv", classCodes: classCodes, schema: .padUfes20, cases: cases)
    }

    /// Writes `text` to a fresh file named `name` in a temporary directory; returns its path.
    static func write(_ text: String, name: String) -> String {
        let path = TestProcess.temporaryDirectory("prima-train-data") + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }
}
