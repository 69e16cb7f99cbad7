import PrimaImage
import PrimaIO
import PrimaMetadata
import PrimaTensor
import PrimaTokenizers

/// Examples → the runtime's batch inputs (Formats/prima-training.md §3.9).
public enum Batching {
    /// Right-padded token ids and their attention mask, as the text encoders' `trainingForward(ids:mask:)` reads.
    public struct TextBatch: Sendable, Equatable {
        /// [B][T]: each sequence followed by `padId` up to the longest one, T.
        public let ids: [[Int]]
        /// [B][T]: 1 on real tokens, 0 on padding.
        public let mask: [[Int]]
        /// The unpadded lengths.
        public let lengths: [Int]
    }

    /// Pads `sequences` (each non-empty) on the right with `padId` (the text encoder's `pad_token_id`).
    public static func pad(_ sequences: [[Int]], padId: Int) -> TextBatch {
        precondition(sequences.allSatisfy { !$0.isEmpty }, "an empty token sequence")
        let length = sequences.map(\.count).max() ?? 0
        let ids = sequences.map { $0 + [Int](repeating: padId, count: length - $0.count) }
        let mask = sequences.map { [Int](repeating: 1, count: $0.count) + [Int](repeating: 0, count: length - $0.count) }
        return TextBatch(ids: ids, mask: mask, lengths: sequences.map(\.count))
    }

    /// The text-encoder ids of a case's metadata, as `prima-diagnose` computes them (Sources/PrimaDiagnose,
    /// `Diagnoser.textTokens`): the schema's text, encoded with special tokens, truncated to `maxLength` keeping
    /// the final [SEP]. Errors name the case.
    public static func textIds(_ record: MetadataRecord, schema: MetadataSchema, tokenizer: Tokenizer, maxLength: Int,
                               source: String) throws(ToolError) -> [Int] {
        var ids: [Int]
        do {
            ids = try tokenizer.encode(schema.text(for: record)).ids
        } catch {
            throw ToolError.input("\(source): cannot tokenize the metadata text: \(error)")
        }
        if ids.count > maxLength { ids = Array(ids.prefix(maxLength - 1)) + [ids[ids.count - 1]] }
        return ids
    }

    /// [B, 3, H, W] from B tensors [1, 3, H, W] of one size.
    public static func stackImages(_ images: [Tensor]) -> Tensor {
        precondition(!images.isEmpty, "an empty image batch")
        let shape = images[0].shape
        precondition(shape.count == 4 && shape[0] == 1 && images.allSatisfy { $0.shape == shape },
                     "images of different shapes: \(images.map(\.shape))")
        var values: [Float] = []
        values.reserveCapacity(images.count * shape[1] * shape[2] * shape[3])
        for image in images { values += image.float32Values() }
        return Tensor(shape: [images.count, shape[1], shape[2], shape[3]], float32: values)
    }

    /// The pixel values [1, 3, H, W] of a case's image without augmentation, as `prima-diagnose` computes them.
    public static func pixelValues(imagePath: String, preprocessing: ImagePreprocessing) throws(ToolError) -> Tensor {
        do {
            return try preprocessing.pixelValues(for: try PNGDecoder.decode(contentsOf: imagePath))
        } catch let error as ImageError {
            throw ToolError.input(error.description)
        } catch {
            throw ToolError.input("\(imagePath): \(error)")
        }
    }

    /// The pixel values [1, 3, H, W] of view `view` of the `index`-th example in `epoch` (§3.4), from the image at
    /// `imagePath`.
    public static func augmentedPixelValues(imagePath: String, preprocessing: ImagePreprocessing,
                                            settings: Augmentation.Settings = .standard, seed: UInt64, epoch: Int,
                                            index: Int, view: Int) throws(ToolError) -> Tensor {
        do {
            let image = try PNGDecoder.decode(contentsOf: imagePath)
            return try Augmentation.view(of: image, preprocessing: preprocessing, settings: settings, seed: seed, epoch: epoch,
                                         index: index, view: view)
        } catch let error as ImageError {
            throw ToolError.input(error.description)
        } catch {
            throw ToolError.input("\(imagePath): \(error)")
        }
    }

    // MARK: Whole batches

    /// A stage-1 batch: masked inputs right-padded with `padId`, labels padded with −100.
    public struct MaskedLMBatch: Sendable, Equatable {
        /// [B][T]: the masked input ids.
        public let ids: [[Int]]
        /// [B][T]: 1 on tokens, 0 on padding.
        public let mask: [[Int]]
        /// [B][T]: the original id at masked positions, −100 elsewhere and on padding.
        public let labels: [[Int]]
    }

    /// The corpus examples `indices` (places in the corpus, which key their masks) masked for `epoch` and padded.
    public static func maskedLMBatch(_ examples: [RiskFactorCorpus.Example], indices: [Int], maskTokenId: Int, vocabularySize: Int,
                                     padId: Int, settings: MaskedLMMasking.Settings = .standard, seed: UInt64,
                                     epoch: Int) -> MaskedLMBatch {
        let masked = indices.map {
            MaskedLMMasking.mask(examples[$0], maskTokenId: maskTokenId, vocabularySize: vocabularySize, settings: settings,
                                 seed: seed, epoch: epoch, index: $0)
        }
        let text = pad(masked.map(\.inputIds), padId: padId)
        let length = text.ids.first?.count ?? 0
        let labels = masked.map { $0.labels + [Int](repeating: MaskedLMMasking.ignoreLabel, count: length - $0.labels.count) }
        return MaskedLMBatch(ids: text.ids, mask: text.mask, labels: labels)
    }

    /// A stage-2 batch's images and the cases behind them.
    public struct AlignmentBatch: Sendable {
        /// [2N, 3, H, W]: view 0 of the N examples, then view 1 of the same examples (`AlignmentLoss.Features` order).
        public let pixelValues: Tensor
        /// The case positions of view 0 and view 1 of each example.
        public let views: [(Int, Int)]
        /// The case position whose record gives each example's text and soft target (its first case).
        public let representatives: [Int]
    }

    /// The views of the stage-2 examples `indices` (places in `examples`, which key their draws) for `epoch`:
    /// the picks of §3.3, each view augmented (§3.4, part = the view) or, with `augmentation` nil, preprocessed
    /// plainly. Errors name the image file.
    public static func alignmentBatch(_ data: TrainingCases, examples: [AlignmentExample], indices: [Int], preprocessing: ImagePreprocessing,
                                      augmentation: Augmentation.Settings? = .standard, seed: UInt64,
                                      epoch: Int) throws(ToolError) -> AlignmentBatch {
        let views = indices.map { Views.pick(examples[$0], seed: seed, epoch: epoch, index: $0) }
        var images: [Tensor] = []
        for view in 0..<2 {
            for (index, pair) in zip(indices, views) {
                let path = data.cases[view == 0 ? pair.0 : pair.1].imagePath
                if let augmentation {
                    images.append(try augmentedPixelValues(imagePath: path, preprocessing: preprocessing, settings: augmentation,
                                                           seed: seed, epoch: epoch, index: index, view: view))
                } else {
                    images.append(try pixelValues(imagePath: path, preprocessing: preprocessing))
                }
            }
        }
        return AlignmentBatch(pixelValues: stackImages(images), views: views, representatives: indices.map { examples[$0].representative })
    }

    /// [B, 3, H, W]: the images of the stage-2b/3 examples `indices` (places in `positions`, the training side's
    /// case positions in ascending order, which key their draws), augmented as view 0 or, with `augmentation` nil,
    /// preprocessed plainly.
    public static func caseImages(_ data: TrainingCases, positions: [Int], indices: [Int], preprocessing: ImagePreprocessing,
                                  augmentation: Augmentation.Settings? = nil, seed: UInt64, epoch: Int) throws(ToolError) -> Tensor {
        var images: [Tensor] = []
        for index in indices {
            let path = data.cases[positions[index]].imagePath
            if let augmentation {
                images.append(try augmentedPixelValues(imagePath: path, preprocessing: preprocessing, settings: augmentation,
                                                       seed: seed, epoch: epoch, index: index, view: 0))
            } else {
                images.append(try pixelValues(imagePath: path, preprocessing: preprocessing))
            }
        }
        return stackImages(images)
    }
}
