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

    @Test func maskedLMBatch() {
        let examples = [RiskFactorCorpus.Example(ids: [2, 10, 11, 12, 3], special: [true, false, false, false, true]),
                        RiskFactorCorpus.Example(ids: [2, 40, 3], special: [true, false, true])]
        let batch = Batching.maskedLMBatch(examples, indices: [1, 0], maskTokenId: 4, vocabularySize: 50, padId: 0, seed: 3, epoch: 2)
        let second = MaskedLMMasking.mask(examples[1], maskTokenId: 4, vocabularySize: 50, seed: 3, epoch: 2, index: 1)
        #expect(batch.ids[0] == second.inputIds + [0, 0] && batch.labels[0] == second.labels + [-100, -100])
        #expect(batch.mask == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        #expect(batch.ids[1].count == 5 && batch.labels[1].count == 5)
    }

    /// A two-example stage-2 batch from a folder whose first lesion has two images: view 0s then view 1s, each the
    /// keyed augmentation of the picked image.
    @Test func alignmentBatch() throws {
        let directory = TrainingCasesTests.folder(["P1,1,50,BCC,a.png", "P1,1,50,BCC,b.png", "P2,1,60,NEV,c.png"], images: ["a.png", "b.png", "c.png"])
        let data = try TrainingCases(folder: directory, classCodes: TrainingDataSupport.classCodes, schema: .padUfes20)
        let examples = Views.alignmentExamples(data, positions: Array(data.cases.indices))
        #expect(examples == [AlignmentExample(images: [0, 1]), AlignmentExample(images: [2])])
        var preprocessing = ImagePreprocessing.dinov3
        preprocessing.height = 8
        preprocessing.width = 8
        let batch = try Batching.alignmentBatch(data, examples: examples, indices: [1, 0], preprocessing: preprocessing, seed: 4, epoch: 1)
        #expect(batch.pixelValues.shape == [4, 3, 8, 8])
        #expect(batch.representatives == [2, 0])
        #expect(batch.views[0] == (2, 2) && batch.views[1].0 != batch.views[1].1)
        let values = batch.pixelValues.float32Values(), plane = 3 * 8 * 8
        let image = try PNGDecoder.decode(contentsOf: data.cases[batch.views[1].1].imagePath)
        let expected = try Augmentation.view(of: image, preprocessing: preprocessing, seed: 4, epoch: 1, index: 0, view: 1)
        #expect(Array(values[(3 * plane)..<(4 * plane)]) == expected.float32Values())
        let plain = try Batching.caseImages(data, positions: [0, 2], indices: [1], preprocessing: preprocessing, seed: 4, epoch: 1)
        #expect(plain.float32Values() == (try Batching.pixelValues(imagePath: data.cases[2].imagePath, preprocessing: preprocessing)).float32Values())
    }
}
