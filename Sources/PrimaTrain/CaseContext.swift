import PrimaCheckpoint
import PrimaIO
import PrimaImage
import PrimaMetadata
import PrimaModels
import PrimaTokenizers

/// What turns a case of the data into model inputs, all from the checkpoint (as `prima-diagnose` does): the image
/// encoder's preprocessing, the schema and text-encoder tokenizer that render and encode the metadata, and the
/// decoder's prompt and answer-prefix ids; plus the run's seed, which keys every augmentation draw.
public struct CaseContext: Sendable {
    public let preprocessing: ImagePreprocessing
    public let schema: MetadataSchema
    public let textTokenizer: Tokenizer
    /// The text encoder's position limit (longer text is truncated keeping [SEP]).
    public let maxLength: Int
    /// The id padded text rows carry (masked out).
    public let padId: Int
    public let promptIds: [Int]
    public let answerPrefixIds: [Int]
    public let seed: UInt64

    /// Reads the parts from a PRIMA checkpoint whose model is loaded.
    public init(checkpoint: Checkpoint, model: PrimaModel, seed: UInt64) throws {
        preprocessing = try StoredParts.preprocessing(try checkpoint.component(.imageEncoder))
        schema = try StoredParts.schema(checkpoint)
        textTokenizer = try StoredParts.tokenizer(try checkpoint.component(.textEncoder))
        maxLength = model.textEncoder.textConfig.maxPositionEmbeddings
        padId = textTokenizer.padding?.padId ?? 0
        let decoderTokenizer = try StoredParts.tokenizer(try checkpoint.component(.decoder))
        promptIds = try decoderTokenizer.encode(model.heads.prompt, addSpecialTokens: false).ids
        answerPrefixIds = try decoderTokenizer.encode(model.heads.answerPrefix, addSpecialTokens: false).ids
        self.seed = seed
    }

    /// The text-encoder ids of a case's metadata.
    public func textIds(_ item: TrainingCases.Case) throws -> [Int] {
        try Batching.textIds(item.record, schema: schema, tokenizer: textTokenizer, maxLength: maxLength, source: item.imagePath)
    }
}
