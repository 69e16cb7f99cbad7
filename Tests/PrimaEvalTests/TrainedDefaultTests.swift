import Foundation
import PrimaCheckpoint
import PrimaCohort
import PrimaDiagnose
@testable import PrimaEval
import PrimaIO
import PrimaJSON
import PrimaQuantize
import PrimaTestSupport
@testable import PrimaTrain
import Testing

/// The trained default PRIMA (Fixtures/default/prima-default.h5, rebuilt by Fixtures/default/make_default.sh) on its
/// bundled held-out cases (Fixtures/default/heldout) and on new cases of the cohort's generator: the goals of
/// Docs/results.md, "The trained default", measured here rather than trusted — right on most cases, the issue's goal
/// of a held-out macro F1 of at least 0.80, above its own metadata-only baseline on the held-out cases and above its
/// image-only baseline on 1,000 new cases (on the 102 held-out ones the two tie: a known issue), an int8 copy within
/// 0.01 macro F1 of it and agreeing on at least 99% of top-1 answers — and the records that say the held-out cases
/// were never trained on.
@Suite(.serialized) struct TrainedDefaultTests {
    static let folder = TestProcess.repositoryRoot + "/Fixtures/default"
    static let checkpoint = folder + "/prima-default.h5"
    static let heldOut = folder + "/heldout"
    /// The cohort make_default.sh trains on (its prima-cohort flags).
    static let cohort = CohortOptions(cases: 2298, imageSize: 64, seed: 0)
    /// New cases of the same generator, never trained on: the larger test of the image-only comparison, and the
    /// least margin PRIMA must keep over image only there (about one standard error of the difference).
    static let newCases = CohortOptions(cases: 1000, imageSize: 64, seed: 1)
    static let newCasesMargin = 0.01

    /// The goals (issue: a held-out macro F1 of at least 0.80; the int8 copy within 0.01 and ≥ 99% top-1 agreement).
    static let minimumMacroF1 = 0.80
    static let int8MacroF1Slack = 0.01
    static let int8MinimumAgreement = 0.99

    /// The held-out cases with the class codes of `diagnoser`'s checkpoint.
    static func cases(_ diagnoser: Diagnoser) throws -> [CaseFolder.Case] {
        try CaseFolder(folder: heldOut, classCodes: diagnoser.labels.map(\.code), schema: diagnoser.schema).cases
    }

    /// Scores predicted codes against the held-out labels.
    static func metrics(_ codes: [String], truth: [String], predicted: [String]) -> ClassificationMetrics {
        ClassificationMetrics(classCodes: codes, pairs: Array(zip(truth, predicted)).map { (truth: $0.0, predicted: $0.1) })
    }

    /// Every case of `cases` through the whole pipeline of `diagnoser` and, if `imageOnly`, through its image-only
    /// classifier: the class codes, the true codes and the predicted ones (image only: empty unless asked for).
    static func predictions(_ diagnoser: Diagnoser, _ cases: [CaseFolder.Case], imageOnly: Bool = false)
        throws -> (codes: [String], truth: [String], prima: [String], imageOnly: [String]) {
        var truth: [String] = [], prima: [String] = [], image: [String] = []
        for item in cases {
            let path = try item.image.get()
            truth.append(try #require(item.label))
            prima.append(try diagnoser.diagnose(imagePath: path, record: item.record).diagnosis.predicted)
            if imageOnly { image.append(try diagnoser.classifyImage(imagePath: path).predicted) }
        }
        return (diagnoser.labels.map(\.code), truth, prima, image)
    }

    /// The stages the default's training record lists, each as its JSON object.
    static func completedStages() throws -> [JSONObject] {
        let record = try #require(try TrainingRecord.read(from: try Checkpoint(path: checkpoint), loadMoments: false))
        return try record.stages.map { try #require($0.object) }
    }

    /// The cohort's rows, in its metadata.csv order (the file rebuilt from the seed into a temporary folder; the
    /// images are not needed, so every case reports its image missing).
    static func cohortCases(_ diagnoser: Diagnoser) throws -> [CaseFolder.Case] {
        let directory = TestProcess.temporaryDirectory("prima-default-cohort")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Cohort(options: cohort).csvText().write(toFile: directory + "/metadata.csv", atomically: true, encoding: .utf8)
        return try CaseFolder(folder: directory, classCodes: diagnoser.labels.map(\.code), schema: diagnoser.schema).cases
    }

    @Test func theDefaultIsRecordedAsTrainedThroughEveryStage() throws {
        #expect(try Diagnoser(checkpoint: Self.checkpoint).headsTrained)
        #expect(try Self.completedStages().map { $0["stage"]?.string } == ["stage1", "stage2", "stage2b", "stage3"])
    }

    @Test func theHeldOutCasesWereNeverTrainedOn() throws {
        // Every image stage recorded the digest of its split file (Formats/prima-training.md §4.1): the cohort's
        // rows in order with exactly the bundled cases on the validation side.
        let diagnoser = try Diagnoser(checkpoint: Self.checkpoint)
        let heldOut = Set(try Self.cases(diagnoser).map(\.imageID))
        let ids = try Self.cohortCases(diagnoser).map(\.imageID)
        #expect(heldOut.count == 102 && Set(ids).isSuperset(of: heldOut))
        let splitFile = "img_id,split\n" + ids.map { "\($0),\(heldOut.contains($0) ? "val" : "train")\n" }.joined()
        for stage in try Self.completedStages() where stage["stage"]?.string != "stage1" {
            let split = try #require(stage["split"]?.object)
            #expect(split["mode"]?.string == "file" && split["validation"]?.int == heldOut.count)
            #expect(split["digest"]?.string == StageRunner.sha256(Array(splitFile.utf8)), "\(stage["stage"]?.string ?? "?")")
        }
    }

    @Test func stageOneReadTheRiskFactorsAndTheTrainingCasesOnly() throws {
        // make_default_models.py's stage-1 corpus: the cohort's risk-factor corpus as it is, then one "patient record"
        // per training case (its metadata text, no diagnosis) in the cohort's order. Rebuilt here, its digest must be
        // the one stage 1 recorded, so that no held-out case's record can have been in it.
        let diagnoser = try Diagnoser(checkpoint: Self.checkpoint)
        let heldOut = Set(try Self.cases(diagnoser).map(\.imageID))
        let records = try Self.cohortCases(diagnoser).filter { !heldOut.contains($0.imageID) }.map { item in
            "{\"name\": \"patient record\", \"summary\": \(JSON.quoted(diagnoser.schema.text(for: item.record))), \"details\": \"\"}\n"
        }
        let directory = TestProcess.temporaryDirectory("prima-default-corpus")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let corpus = directory + "/stage1-corpus.jsonl"
        try (CohortCorpus.jsonlText() + records.joined()).write(toFile: corpus, atomically: true, encoding: .utf8)
        let stage1 = try #require(try Self.completedStages().first { $0["stage"]?.string == "stage1" })
        let data = try #require(stage1["data"]?.object)
        let examples = try RiskFactorCorpus(path: corpus).records.count
        let digest = try StageRunner.digest(files: [(corpus, RiskFactorCorpus.maxFileBytes)])
        #expect(records.count == 2196 && data["examples"]?.int == examples)
        #expect(data["digest"]?.string == digest)
    }

    @Test func onTheHeldOutCasesItReachesTheGoalAndBeatsTheMetadataOnlyBaseline() throws {
        let diagnoser = try Diagnoser(checkpoint: Self.checkpoint)
        let testing = try Self.cases(diagnoser)
        // Image only: stage 2b's classifier (stage 3 leaves it and the image encoder as they were), same images.
        let run = try Self.predictions(diagnoser, testing, imageOnly: true)
        let primaMetrics = Self.metrics(run.codes, truth: run.truth, predicted: run.prima)
        let primaF1 = primaMetrics.macroF1
        let imageF1 = Self.metrics(run.codes, truth: run.truth, predicted: run.imageOnly).macroF1

        // Metadata only: prima-eval's logistic regression on the tabular fields, fitted on the training side.
        let held = Set(testing.map(\.imageID))
        let training = try Self.cohortCases(diagnoser).filter { !held.contains($0.imageID) }
        let table = TabularFeatures(fittingRecords: training.map(\.record), schema: diagnoser.schema)
        let labels = try training.map { item in try #require(item.label.flatMap { run.codes.firstIndex(of: $0) }) }
        let model = try LogisticRegression(features: training.map { table.row($0.record) }, labels: labels,
                                           classCount: run.codes.count, tolerance: EvaluationRunner.baselineTolerance)
        let metadataOnly = model.probabilities(testing.map { table.row($0.record) }).map { row in
            run.codes[row.indices.max { row[$0] < row[$1] } ?? 0]
        }
        let metadataF1 = Self.metrics(run.codes, truth: run.truth, predicted: metadataOnly).macroF1
        let measured = "macro F1 on the held-out cases: PRIMA \(primaF1), image only \(imageF1), metadata only \(metadataF1)"
        print("TrainedDefaultTests: \(measured), PRIMA accuracy \(primaMetrics.accuracy), balanced accuracy \(primaMetrics.balancedAccuracy)")
        // What the README's main command promises, and the issue's goal.
        #expect(primaMetrics.accuracy > 0.5)
        #expect(primaF1 >= Self.minimumMacroF1 && primaF1 > metadataF1, "\(measured)")
        // On these 102 cases PRIMA and its image-only classifier get the same 85 right (Docs/results.md, "The trained
        // default"); the margin over image only is measured on 1,000 new cases below. Intermittent: another CPU's
        // last bits may tip one case either way.
        withKnownIssue("\(measured): PRIMA not above image only on the 102 cases", isIntermittent: true) {
            #expect(primaF1 > imageF1)
        }
    }

    @Test func onNewCasesOfTheGeneratorItBeatsItsImageOnlyBaseline() throws {
        // A larger test than the 102: new cases of the cohort's generator (another seed), none seen in training.
        let directory = TestProcess.temporaryDirectory("prima-default-new-cases")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try CohortWriter.write(Cohort(options: Self.newCases), to: directory + "/cohort", overwrite: false)
        let diagnoser = try Diagnoser(checkpoint: Self.checkpoint)
        let cases = try CaseFolder(folder: directory + "/cohort", classCodes: diagnoser.labels.map(\.code), schema: diagnoser.schema).cases
        let run = try Self.predictions(diagnoser, cases, imageOnly: true)
        let primaF1 = Self.metrics(run.codes, truth: run.truth, predicted: run.prima).macroF1
        let imageF1 = Self.metrics(run.codes, truth: run.truth, predicted: run.imageOnly).macroF1
        let measured = "macro F1 on \(cases.count) new cases: PRIMA \(primaF1), image only \(imageF1)"
        print("TrainedDefaultTests: \(measured)")
        #expect(cases.count == Self.newCases.cases && primaF1 > imageF1 + Self.newCasesMargin, "\(measured)")
    }

    @Test func anInt8CopyKeepsItsAnswers() throws {
        let directory = TestProcess.temporaryDirectory("prima-default-int8")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let int8 = directory + "/prima-default-int8.h5"
        _ = try CheckpointQuantizer.run(input: Self.checkpoint, output: int8, options: .init(rules: try KeepFloatRules()), overwrite: false) { _ in }
        let fullDiagnoser = try Diagnoser(checkpoint: Self.checkpoint), int8Diagnoser = try Diagnoser(checkpoint: int8)
        let full = try Self.predictions(fullDiagnoser, try Self.cases(fullDiagnoser))
        let quantized = try Self.predictions(int8Diagnoser, try Self.cases(int8Diagnoser))
        let fullF1 = Self.metrics(full.codes, truth: full.truth, predicted: full.prima).macroF1
        let int8F1 = Self.metrics(full.codes, truth: full.truth, predicted: quantized.prima).macroF1
        let agreeing = zip(full.prima, quantized.prima).filter { $0.0 == $0.1 }.count
        #expect(abs(fullF1 - int8F1) <= Self.int8MacroF1Slack, "fp32 \(fullF1), int8 \(int8F1)")
        #expect(Double(agreeing) >= Self.int8MinimumAgreement * Double(full.prima.count), "\(agreeing) of \(full.prima.count) agree")
    }
}
