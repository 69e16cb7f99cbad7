import Foundation
import PrimaImage
import PrimaJSON
import PrimaMetadata
import PrimaTensor
import PrimaTestSupport
import PrimaTokenizers
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.9: examples → the runtime's batch inputs.
@Suite struct BatchingTests {
    @Test func padding() {
        let batch = Batching.pad([[5, 6, 7], [8], [9, 10]], padId: 0)
        #expect(batch.ids == [[5, 6, 7], [8, 0, 0], [9, 10, 0]])
        #expect(batch.mask == [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
        #expect(batch.lengths == [3, 1, 2])
    }

    /// The metadata text of the bundled cases, as prima-diagnose renders it (Fixtures/prima/cases/rendered.json),
    /// tokenized with [CLS] … [SEP] and truncated keeping [SEP].
    @Test func textIdsFollowTheDiagnosisPath() throws {
        let data = try TrainingCases(folder: TrainingDataSupport.casesFolder, classCodes: TrainingDataSupport.classCodes, schema: .padUfes20)
        let tokenizer = try Tokenizer(contentsOfFile: TestProcess.repositoryRoot + "/Fixtures/models/bert-mlm-f32/tokenizer.json")
        let record = data.cases[0].record
        let ids = try Batching.textIds(record, schema: .padUfes20, tokenizer: tokenizer, maxLength: 64, source: "case 1")
        let full = try tokenizer.encode(MetadataSchema.padUfes20.text(for: record)).ids
        #expect(ids == (full.count > 64 ? Array(full.prefix(63)) + [full[full.count - 1]] : full))
        #expect(ids.first == 508 && ids.last == 509)
        let short = try Batching.textIds(record, schema: .padUfes20, tokenizer: tokenizer, maxLength: 6, source: "case 1")
        #expect(short == Array(ids.prefix(5)) + [509])
    }

    @Test func imageStacking() throws {
        let a = Tensor(shape: [1, 3, 2, 2], float32: (0..<12).map(Float.init))
        let b = Tensor(shape: [1, 3, 2, 2], float32: (12..<24).map(Float.init))
        let stacked = Batching.stackImages([a, b])
        #expect(stacked.shape == [2, 3, 2, 2] && stacked.float32Values() == (0..<24).map(Float.init))
        // Unaugmented pixels are prima-diagnose's.
        let path = TrainingDataSupport.casesFolder + "/imgs/PAT_46_881_939.png"
        let pixels = try Batching.pixelValues(imagePath: path, preprocessing: .dinov3)
        #expect(pixels.float32Values() == (try ImagePreprocessing.dinov3.pixelValues(for: try PNGDecoder.decode(contentsOf: path))).float32Values())
        expectError("no such file") { _ = try Batching.pixelValues(imagePath: "/nonexistent.png", preprocessing: .dinov3) }
        let view = try Batching.augmentedPixelValues(imagePath: path, preprocessing: .dinov3, seed: 1, epoch: 0, index: 0, view: 0)
        #expect(view.shape == [1, 3, 224, 224])
    }
}
