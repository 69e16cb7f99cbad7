import Foundation
import PrimaCohort
import PrimaDiagnose
import PrimaImage
import PrimaMetadata
import PrimaTestSupport
import PrimaTrain
import Testing

@Suite struct CohortFolderTests {
    @Test func sameSeedGivesTheSameBytes() throws {
        let directory = TestProcess.temporaryDirectory("prima-cohort")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let options = CohortOptions(cases: 24, imageSize: 40, seed: 7)
        try CohortWriter.write(Cohort(options: options), to: directory + "/a", overwrite: false)
        try CohortWriter.write(Cohort(options: options), to: directory + "/b", overwrite: false)
        var other = options
        other.seed = 8
        try CohortWriter.write(Cohort(options: other), to: directory + "/c", overwrite: false)
        let a = contents(of: directory + "/a"), b = contents(of: directory + "/b"), c = contents(of: directory + "/c")
        #expect(a.count == 24 + 3)
        #expect(a == b)
        #expect(a["metadata.csv"] != c["metadata.csv"])
        #expect(a.keys.filter { $0.hasSuffix(".png") }.allSatisfy { $0.hasPrefix("imgs_part_1/PAT_") })
    }

    @Test func toolkitReadsTheFolderWithoutSkipping() throws {
        let directory = TestProcess.temporaryDirectory("prima-cohort")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let folder = directory + "/cohort"
        let cohort = Cohort(options: CohortOptions(cases: 60, imageSize: 48, seed: 3))
        try CohortWriter.write(cohort, to: folder, overwrite: false)

        let cases = try TrainingCases(folder: folder, classCodes: classCodes, schema: .padUfes20)
        #expect(cases.skipped.isEmpty)
        #expect(cases.cases.count == 60)
        var perClass = [Int](repeating: 0, count: classCodes.count)
        for item in cases.cases { perClass[item.label] += 1 }
        let expected = Cohort.classCounts(cases: 60)
        for diagnosis in Diagnosis.allCases { #expect(perClass[classCodes.firstIndex(of: diagnosis.code)!] == expected[diagnosis]) }
        // prima-train keys a lesion by (patient_id, lesion_id): as many keys as the generator made lesions.
        #expect(Set(cases.cases.map(\.lesionKey)).count == cohort.lesions.count)

        let folderCases = try CaseFolder(folder: folder, classCodes: classCodes)
        #expect(folderCases.cases.allSatisfy { if case .success = $0.image { true } else { false } })
        let image = try PNGDecoder.decode(contentsOf: folder + "/" + CohortWriter.imagePath(cohort, position: 0))
        #expect(image.width == 48 && image.height == 48)
        #expect(image == LesionRenderer.render(cohort, position: 0))  // the level-1 PNG holds exactly the drawn pixels

        let corpus = try RiskFactorCorpus(path: folder + "/risk-factors.jsonl")
        #expect(corpus.records.count == CohortCorpus.records.count)
        #expect(corpus.records.count >= 15)
        let readme = try String(contentsOfFile: folder + "/README.txt", encoding: .utf8)
        #expect(readme.contains("SYNTHETIC DATA - NOT REAL PATIENTS"))
        #expect(readme.contains("--seed 3") && readme.contains("version \(CohortWriter.version)"))
        #expect(readme.contains("NOT vetted by a physician"))
    }

    @Test func toolWritesAndRefusesToClobber() throws {
        let directory = TestProcess.temporaryDirectory("prima-cohort")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tool = TestProcess.binary("prima-cohort")
        let out = directory + "/out"
        let first = try TestProcess.run(tool, ["-o", out, "--cases", "12", "--image-size", "32", "--seed", "5", "--no-progress"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("12 synthetic images"))
        #expect(contents(of: out).count == 12 + 3)
        let again = try TestProcess.run(tool, ["-o", out, "--cases", "12", "--image-size", "32", "--no-progress"])
        #expect(again.status == 2 && again.stderr.contains("--force"), "\(again.stderr)")
        let forced = try TestProcess.run(tool, ["-o", out, "--cases", "12", "--image-size", "32", "--seed", "5", "--force", "--no-progress"])
        #expect(forced.status == 0, "\(forced.stderr)")
        let bad = try TestProcess.run(tool, ["-o", directory + "/x", "--cases", "0"])
        #expect(bad.status == 2 && bad.stderr.hasPrefix("prima-cohort: error: "))
    }
}

@Suite struct SanityTests {
    /// Metadata alone and a trivial image feature alone are each informative but far from sufficient
    /// (Docs/cohort.md, "Sanity measure"); chance is 1/6 balanced accuracy.
    @Test func neitherModalityAloneSeparatesTheClasses() {
        let cohort = Cohort(options: CohortOptions(cases: 600, imageSize: 64, seed: 0))
        let scores = CohortSanity.scores(cohort)
        print("cohort sanity (600 cases, 64 px, nearest centroid, 5 patient folds): metadata \(scores.metadata); image \(scores.image); both \(scores.both)")
        #expect(scores.metadata.balancedAccuracy > 0.30 && scores.metadata.balancedAccuracy < 0.80)
        #expect(scores.image.balancedAccuracy > 0.30 && scores.image.balancedAccuracy < 0.80)
        #expect(scores.both.balancedAccuracy > max(scores.metadata.balancedAccuracy, scores.image.balancedAccuracy))
    }
}
