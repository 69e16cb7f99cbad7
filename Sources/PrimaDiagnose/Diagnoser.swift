import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaImage
import PrimaJSON
import PrimaMetadata
import PrimaModels
import PrimaTensor
import PrimaTokenizers

/// Runs PRIMA diagnoses from one checkpoint: PNG → pixel values by the image encoder's preprocessing, metadata →
/// text by the checkpoint's schema → text-encoder tokens, prompt and answer prefix → decoder tokens, then the
/// model (Docs/prima-model.md). Everything the pipeline needs comes from the checkpoint.
public final class Diagnoser: Sendable {
    public let checkpointPath: String
    public let model: PrimaModel
    public let schema: MetadataSchema
    public let preprocessing: ImagePreprocessing
    public let textTokenizer: Tokenizer
    /// The classes, in probability order.
    public var labels: [PrimaLabel] { model.heads.labels }
    /// False when the checkpoint's heads hold their seeded initialisation: the probabilities mean nothing.
    public var headsTrained: Bool { model.heads.trained }
    let promptIds: [Int]
    let answerPrefixIds: [Int]
    /// The text encoder's position limit: longer metadata text is truncated to it, keeping [SEP].
    var textMaxLength: Int { model.textEncoder.textConfig.maxPositionEmbeddings }

    /// Opens the checkpoint and loads everything; one-line errors name the file and what is wrong.
    public init(checkpoint path: String) throws {
        checkpointPath = path
        do {
            let checkpoint = try Checkpoint(path: path)
            model = try PrimaModel(checkpoint: checkpoint)
            schema = try StoredParts.schema(checkpoint)
            preprocessing = try StoredParts.preprocessing(try checkpoint.component(.imageEncoder))
            textTokenizer = try StoredParts.tokenizer(try checkpoint.component(.textEncoder))
            let decoderTokenizer = try StoredParts.tokenizer(try checkpoint.component(.decoder))
            promptIds = try decoderTokenizer.encode(model.heads.prompt, addSpecialTokens: false).ids
            answerPrefixIds = try decoderTokenizer.encode(model.heads.answerPrefix, addSpecialTokens: false).ids
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError.input("\(error)")
        }
    }

    /// One case's model inputs and the rendered text.
    public struct PreparedCase: Sendable {
        public let inputs: PrimaInputs
        public let text: String
    }

    /// Decodes and preprocesses the image and renders and tokenizes the record.
    public func prepare(imagePath: String, record: MetadataRecord) throws -> PreparedCase {
        let (text, ids) = try textTokens(record)
        return PreparedCase(inputs: PrimaInputs(pixelValues: try pixelValues(imagePath), textIds: ids, promptIds: promptIds,
                                                answerPrefixIds: answerPrefixIds), text: text)
    }

    /// The PNG at `path` as pixel values [1, 3, H, W].
    private func pixelValues(_ path: String) throws -> Tensor {
        do {
            let pixels = try preprocessing.pixelValues(for: try PNGDecoder.decode(contentsOf: path))
            // With do_resize 0 the image keeps its own size, which the image encoder's input limit bounds.
            if let problem = ImageEncoderLimits.problem(height: pixels.shape[2], width: pixels.shape[3],
                                                        patchSize: model.imageEncoder.config.patchSize) {
                throw ToolError.input("\(path): \(problem)")
            }
            return pixels
        } catch let error as ToolError {
            throw error
        } catch let error as ImageError {
            throw ToolError.input(error.description)
        } catch {
            throw ToolError.input("\(path): \(error)")
        }
    }

    /// The record rendered by the schema and its text-encoder tokens, truncated to the position limit (keeping
    /// the final [SEP]).
    private func textTokens(_ record: MetadataRecord) throws -> (text: String, ids: [Int]) {
        let text = schema.text(for: record)
        var ids = try textTokenizer.encode(text).ids
        if ids.count > textMaxLength { ids = Array(ids.prefix(textMaxLength - 1)) + [ids[ids.count - 1]] }
        return (text, ids)
    }

    /// The outcome of one diagnosis.
    public struct Result: Sendable {
        /// P(y = k | x) over the checkpoint's classes, ranked.
        public let diagnosis: Diagnosis
        /// The metadata as the text encoder read it (rendered but not read when the decoder inputs leave it out).
        public let text: String
        /// Seconds per stage, in order: image (decode + preprocess), text (render + tokenize), image_encoder,
        /// text_encoder (absent when the decoder does not read the metadata), fusion, decoder.
        public let timings: [(stage: String, seconds: Double)]
        public var totalSeconds: Double { timings.reduce(0) { $0 + $1.seconds } }
    }

    /// Throws naming `stage` if any of its outputs holds NaN or Inf. The inputs are bounded (pixels preprocessed
    /// from 8-bit values, token ids checked), so non-finite values come from the checkpoint's weights (finite
    /// but huge ones overflow float32): bad input, exit status 2, and in a batch a failed case
    /// (Docs/prima-model.md, "Errors").
    private func requireFinite(_ stage: String, _ outputs: [Float]...) throws {
        let bad = outputs.reduce(0) { count, values in count + values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
        guard bad == 0 else {
            if let tensor = storedNonFinite(stage) {
                throw ToolError.input("\(checkpointPath): \(tensor) holds NaN or Inf, so \(stage) computes \(bad) non-finite values")
            }
            throw ToolError.input("\(checkpointPath): \(stage): \(bad) non-finite values (NaN or Inf); the checkpoint's weights overflow float32 on this input")
        }
    }

    /// The first stored tensor (or LoRA matrix) of the group behind `stage` that holds NaN or Inf, as
    /// `GROUP: tensor NAME`; nil when every one is finite (then finite but huge weights overflowed). Read only on
    /// this error path.
    private func storedNonFinite(_ stage: String) -> String? {
        guard let checkpoint = try? Checkpoint(path: checkpointPath) else { return nil }
        let group = stage == "fusion" || stage == "image_classifier" ? "prima" : stage
        guard let reader = (try? ComponentRole(rawValue: group).map { try checkpoint.component($0) }) ?? (try? checkpoint.group(group)) else { return nil }
        var readers = [(reader, "")]
        for adapter in (try? reader.loraAdapterNames()) ?? [] {
            if let adapterReader = try? reader.loraAdapter(adapter).reader { readers.append((adapterReader, "lora/\(adapter): ")) }
        }
        for (component, prefix) in readers {
            for record in (try? component.tensorRecords()) ?? [] where record.aliasOf == nil && record.dtype.isWeightFloat {
                var counter = NonFinite.Counter(dtype: record.dtype)
                guard (try? component.streamTensor(record) { counter.update($0) }) != nil else { continue }
                if counter.count > 0 { return "\(group): \(prefix)tensor \(record.name)" }
            }
        }
        return nil
    }

    /// Stage 2b's image-only answer for the image at `imagePath`: the softmax of the image classifier's logits
    /// on the image encoder's CLS (the image preprocessed as ``diagnose(imagePath:record:)`` does).
    public func classifyImage(imagePath: String) throws -> Diagnosis {
        let pixels = try pixelValues(imagePath)
        let probabilities: [Float]
        do {
            let image = try model.encodeImage(pixels)
            try requireFinite("image_encoder", image.cls.float32Values())
            probabilities = PrimaModel.softmax(model.heads.classifyImage(image.cls).float32Values())
            try requireFinite("image_classifier", probabilities)
        } catch let error as RuntimeError {
            throw ToolError.failed("\(checkpointPath): \(error.description)")
        }
        return Diagnosis(classCodes: labels.map(\.code), probabilities: probabilities)
    }

    /// The text encoder's CLS feature [d_txt] of `record`'s metadata text, rendered and tokenized as
    /// ``diagnose(imagePath:record:)`` does: the input of the metadata-only linear probe.
    public func textFeatures(record: MetadataRecord) throws -> [Float] {
        let (_, ids) = try textTokens(record)
        do {
            let cls = try model.encodeText(ids).cls.float32Values()
            try requireFinite("text_encoder", cls)
            return cls
        } catch let error as RuntimeError {
            throw ToolError.failed("\(checkpointPath): \(error.description)")
        }
    }

    /// Diagnoses one case.
    public func diagnose(imagePath: String, record: MetadataRecord) throws -> Result {
        var timings: [(String, Double)] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            let value = try body()
            timings.append((stage, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
            return value
        }
        let pixels = try timed("image") { try pixelValues(imagePath) }
        let (text, ids) = try timed("text") { try textTokens(record) }
        let probabilities: [Float]
        do {
            let image = try timed("image_encoder") { try model.encodeImage(pixels) }
            try requireFinite("image_encoder", image.cls.float32Values(), image.patches.float32Values())
            // An image-only decoder (decoder_inputs "image") does not read the metadata: the text encoder does not run.
            var encoded: PrimaModel.EncodedText?
            if model.decoderInputs.usesMetadata {
                let textEncoding = try timed("text_encoder") { try model.encodeText(ids) }
                try requireFinite("text_encoder", textEncoding.cls.float32Values(), textEncoding.sequence.float32Values())
                encoded = textEncoding
            }
            let embeddings = try timed("fusion") {
                try model.fuse(image, encoded, promptIds: promptIds, answerPrefixIds: answerPrefixIds)
            }
            try requireFinite("fusion", embeddings.float32Values())
            let logits = try timed("decoder") { try model.decode(embeddings) }
            try requireFinite("decoder", logits)
            probabilities = PrimaModel.softmax(logits)
            try requireFinite("class_probs", probabilities)
        } catch let error as RuntimeError {
            throw ToolError.failed("\(checkpointPath): \(error.description)")
        }
        return Result(diagnosis: Diagnosis(classCodes: labels.map(\.code), probabilities: probabilities), text: text, timings: timings)
    }
}
