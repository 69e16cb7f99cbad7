import Foundation
import PrimaCheckpoint
import PrimaDiagnose
import PrimaIO
import PrimaJSON
import PrimaMetadata
import PrimaModels
import PrimaTestSupport
import PrimaTrain
import Testing

/// Stage 3 without metadata in the decoder (Formats/prima-training.md §5, `--no-metadata`): the output says so in
/// `/prima` and in its record, the text projectors only decay (no gradient reaches them), a resume with the other
/// choice is refused, and the trained checkpoint's diagnosis does not depend on the metadata.
@Suite(.serialized) struct NoMetadataStageTests {
    static func options(output: String, withoutMetadata: Bool) -> StageOptions {
        var options = StageRunnerTests.options(.stage3, data: StageRunnerTests.cases, output: output)
        if withoutMetadata { options.decoderInputs = .image }
        return options
    }

    @Test func trainsTheImageOnlyDecoderAndRecordsIt() throws {
        let directory = TestProcess.temporaryDirectory("prima-nometa-tests")
        let output = directory + "/out.h5"
        #expect(try StageRunner(options: Self.options(output: output, withoutMetadata: true)).run() == .complete)
        let saved = try Checkpoint(path: output)
        try StoredValidation.validate(saved)
        #expect(try saved.group("prima").group.stringAttribute("decoder_inputs") == "image")
        let record = try #require(try TrainingRecord.read(from: saved, loadMoments: true))
        #expect(record.hyperparameters["decoder_inputs"]?.string == "image")
        // No gradient reaches the text projectors: their first and second moments stay exactly zero, while the
        // image projectors' do not.
        for moment in record.moments where moment.path.hasPrefix("prima/tensors/fusion.") {
            let touched = moment.expAvgSq.float32Values().contains { $0 != 0 }
            #expect(touched == !moment.path.contains("fusion.text_"), "\(moment.path)")
        }
        #expect(try PrimaModel(checkpoint: saved).decoderInputs == .image)

        // The default run writes no attribute and records the default.
        let plain = directory + "/plain.h5"
        #expect(try StageRunner(options: Self.options(output: plain, withoutMetadata: false)).run() == .complete)
        let plainSaved = try Checkpoint(path: plain)
        #expect(!(try plainSaved.group("prima").group.hasAttribute("decoder_inputs")))
        #expect(try TrainingRecord.read(from: plainSaved, loadMoments: false)?.hyperparameters["decoder_inputs"]?.string == "image+metadata")

        // An image-only checkpoint is not trained further as the full model by mistake.
        var again = Self.options(output: directory + "/again.h5", withoutMetadata: false)
        again.checkpoint = output
        let error = #expect(throws: ToolError.self) { try StageRunner(options: again).run() }
        #expect(error?.isInput == true && error?.description.contains("decoder_inputs \"image\"") == true, "\(error?.description ?? "")")
        #expect(!FileManager.default.fileExists(atPath: again.output))
    }

    /// A save of either choice resumed with the other is refused before anything is written; with its own it resumes.
    @Test(arguments: [true, false])
    func aResumeWithTheOtherChoiceIsRefused(savedWithoutMetadata: Bool) throws {
        let output = TestProcess.temporaryDirectory("prima-nometa-tests") + "/split.h5"
        var steps = 0
        let first = Self.options(output: output, withoutMetadata: savedWithoutMetadata)
        #expect(try StageRunner(options: first).run(report: { if case .step = $0 { steps += 1 } }, shouldStop: { steps >= 1 }) == .interrupted)
        let before = FileManager.default.contents(atPath: output)
        var other = Self.options(output: output, withoutMetadata: !savedWithoutMetadata)
        other.resume = true
        let error = #expect(throws: ToolError.self) { try StageRunner(options: other).run() }
        #expect(error?.isInput == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("\(output): was trained with decoder_inputs") == true, "\(error?.description ?? "")")
        #expect(FileManager.default.contents(atPath: output) == before)
        var same = first
        same.resume = true
        #expect(try StageRunner(options: same).run() == .complete)
    }

    /// The trained image-only checkpoint gives the same probabilities whatever the metadata says; the full model's
    /// trained from the same start do change (so the comparison can fail).
    @Test func theDiagnosisDoesNotReadTheMetadata() throws {
        let directory = TestProcess.temporaryDirectory("prima-nometa-tests")
        let imageOnly = directory + "/image.h5", full = directory + "/full.h5"
        _ = try StageRunner(options: Self.options(output: imageOnly, withoutMetadata: true)).run()
        _ = try StageRunner(options: Self.options(output: full, withoutMetadata: false)).run()
        let path = StageRunnerTests.cases + "/sample.png"
        let records = [MetadataRecord(values: [("smoke", .boolean(true)), ("age", .number(70)), ("bleed", .boolean(true))]),
                       MetadataRecord(values: [("smoke", .boolean(false)), ("age", .number(20)), ("itch", .boolean(false))])]
        func probabilities(_ checkpoint: String) throws -> [[Float]] {
            let diagnoser = try Diagnoser(checkpoint: checkpoint)
            return try records.map { try diagnoser.diagnose(imagePath: path, record: $0).diagnosis.probabilities }
        }
        let still = try probabilities(imageOnly)
        #expect(still[0] == still[1])
        let moved = try probabilities(full)
        #expect(moved[0] != moved[1])
        let result = try Diagnoser(checkpoint: imageOnly).diagnose(imagePath: path, record: records[0])
        #expect(!result.timings.map(\.stage).contains("text_encoder") && result.text.contains("age"))
    }
}
