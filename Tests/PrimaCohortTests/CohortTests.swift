import Foundation
import PrimaCohort
import PrimaDiagnose
import PrimaImage
import PrimaMetadata
import PrimaTestSupport
import PrimaTrain
import Testing

let classCodes = ["BCC", "SCC", "ACK", "SEK", "MEL", "NEV"]

/// The rows of a metadata.csv the generator wrote (no field is quoted), keyed by column.
func csvRows(_ text: String) -> [[String: String]] {
    let lines = text.split(separator: "\n").map(String.init)
    let header = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    return lines.dropFirst().map { line in
        Dictionary(uniqueKeysWithValues: zip(header, line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
    }
}

/// Every regular file below `directory`, by relative path, with its bytes.
func contents(of directory: String) -> [String: Data] {
    var result: [String: Data] = [:]
    let enumerator = FileManager.default.enumerator(atPath: directory)
    while let path = enumerator?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isDirectory)
        if !isDirectory.boolValue { result[path] = FileManager.default.contents(atPath: directory + "/" + path) }
    }
    return result
}

@Suite struct ClassCountTests {
    @Test func fullSizeIsPadUfes20() {
        let counts = Cohort.classCounts(cases: 2298)
        #expect(counts.mapValues { $0 } == [.bcc: 845, .ack: 730, .nev: 244, .sek: 235, .scc: 192, .mel: 52])
    }

    @Test func everySizeSumsAndKeepsEveryClass() {
        for cases in 1...700 {
            let counts = Cohort.classCounts(cases: cases)
            #expect(counts.values.reduce(0, +) == cases, "cases \(cases)")
            if cases >= 6 { #expect(counts.values.allSatisfy { $0 >= 1 }, "cases \(cases): \(counts)") }
        }
        // Largest remainder: 600 images → 220.6 BCC, 190.6 ACK, 63.7 NEV, 61.4 SEK, 50.1 SCC, 13.6 MEL.
        #expect(Cohort.classCounts(cases: 600) == [.bcc: 221, .ack: 191, .nev: 64, .sek: 61, .scc: 50, .mel: 13])
        #expect(Cohort.classCounts(cases: 6) == [.bcc: 1, .ack: 1, .nev: 1, .sek: 1, .scc: 1, .mel: 1])
    }
}

@Suite struct CohortStructureTests {
    static let full = Cohort(options: CohortOptions())

    @Test func fullCohortHasPadUfes20Shape() {
        let cohort = Self.full
        let rows = csvRows(cohort.csvText())
        #expect(rows.count == 2298)
        #expect(cohort.csvText().hasPrefix(PadUfes20.columns.joined(separator: ",") + "\n"))
        #expect(PadUfes20.columns.count == 26)
        var perClass: [String: Int] = [:]
        for row in rows { perClass[row["diagnostic"]!, default: 0] += 1 }
        #expect(perClass == ["BCC": 845, "ACK": 730, "NEV": 244, "SEK": 235, "SCC": 192, "MEL": 52])
        #expect(abs(cohort.lesions.count - 1891) <= 3, "\(cohort.lesions.count) lesions")
        #expect(abs(cohort.patients.count - 1373) <= 3, "\(cohort.patients.count) patients")

        // Identifiers: unique img_ids of the form PAT_<patient>_<lesion>_<n>.png; a lesion (patient, lesion_id)
        // has one diagnosis and all its rows agree on everything but img_id; lesion numbers are reused across
        // patients as in PAD-UFES-20 (1,641 distinct values for 1,891 lesions).
        #expect(Set(rows.map { $0["img_id"]! }).count == rows.count)
        var lesionRows: [String: [String: String]] = [:]
        var imagesPerLesion: [String: Int] = [:]
        var lesionsPerPatient: [String: Set<String>] = [:]
        for row in rows {
            let patient = row["patient_id"]!, lesion = row["lesion_id"]!
            #expect(row["img_id"]!.hasPrefix("\(patient)_\(lesion)_") && row["img_id"]!.hasSuffix(".png"))
            var fields = row
            fields["img_id"] = nil
            let key = patient + "/" + lesion
            if let earlier = lesionRows[key] { #expect(earlier == fields, "lesion \(key)") }
            lesionRows[key] = fields
            imagesPerLesion[key, default: 0] += 1
            lesionsPerPatient[patient, default: []].insert(lesion)
        }
        #expect(lesionRows.count == cohort.lesions.count)
        // A patient's own fields are the same in every row of the patient.
        let patientKeys = ["age", "smoke", "drink", "background_father", "background_mother", "pesticide", "gender",
                           "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system", "fitspatrick"]
        var patientFields: [String: [String]] = [:]
        for row in rows {
            let fields = patientKeys.map { row[$0]! }
            if let earlier = patientFields[row["patient_id"]!] { #expect(earlier == fields, "patient \(row["patient_id"]!)") }
            patientFields[row["patient_id"]!] = fields
        }
        #expect(lesionsPerPatient.count == cohort.patients.count)
        #expect(imagesPerLesion.values.contains { $0 >= 2 })
        #expect(imagesPerLesion.values.allSatisfy { $0 <= 4 })
        #expect(lesionsPerPatient.values.contains { $0.count >= 2 })
        let distinctLesionIDs = Set(rows.map { $0["lesion_id"]! }).count
        #expect(abs(distinctLesionIDs - 1641) <= 40, "\(distinctLesionIDs) lesion_id values")

        // Value sets and the real file's blanks and UNK.
        let blank = rows.filter { $0["smoke"]!.isEmpty }
        #expect(blank.count > 500 && blank.count < 1100, "\(blank.count) blank rows")
        for row in blank {
            for key in ["drink", "background_father", "pesticide", "gender", "fitspatrick", "diameter_1", "diameter_2"] { #expect(row[key]!.isEmpty) }
        }
        #expect(rows.contains { $0["grew"] == "UNK" } && rows.contains { $0["changed"] == "UNK" } && rows.contains { $0["fitspatrick"] == "UNK" })
        for row in rows {
            #expect(["True", "False"].contains(row["biopsed"]!))
            #expect(PadUfes20.regions.contains(row["region"]!))
            #expect(["", "UNK", "1.0", "2.0", "3.0", "4.0", "5.0", "6.0"].contains(row["fitspatrick"]!))
            #expect(["", "MALE", "FEMALE"].contains(row["gender"]!))
            #expect(Int(row["age"]!) != nil)
            for key in ["itch", "grew", "hurt", "changed", "bleed", "elevation"] { #expect(["True", "False", "UNK"].contains(row[key]!)) }
            if ["BCC", "SCC", "MEL"].contains(row["diagnostic"]!) { #expect(row["biopsed"] == "True") }
        }
        // Every row is valid against the toolkit's PAD-UFES-20 schema.
        #expect(throws: Never.self) { try MetadataTable(csvText: cohort.csvText(), source: "metadata.csv") }
    }

    @Test func classesDifferWhereTheLiteratureSaysSo() {
        let rows = csvRows(Self.full.csvText())
        func meanAge(_ code: String) -> Double {
            let ages = rows.filter { $0["diagnostic"] == code }.map { Double($0["age"]!)! }
            return ages.reduce(0, +) / Double(ages.count)
        }
        #expect(meanAge("NEV") + 15 < meanAge("BCC"))
        #expect(meanAge("NEV") + 15 < meanAge("SCC"))
        func meanDiameter(_ code: String) -> Double {
            let values = rows.filter { $0["diagnostic"] == code }.compactMap { Double($0["diameter_1"]!) }
            return values.reduce(0, +) / Double(values.count)
        }
        #expect(meanDiameter("ACK") < meanDiameter("BCC") && meanDiameter("ACK") < meanDiameter("MEL"))
    }
}
