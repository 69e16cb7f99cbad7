import Foundation
import PrimaIO

/// A Hugging Face tokenizer read from its tokenizer.json, giving the ids the Python `tokenizers` library gives.
///
/// The pipeline is the file's: added tokens are found first, the text between them is normalized, pre-tokenized
/// and encoded by the model (BPE), then the post-processor adds special tokens; truncation comes before the
/// post-processor, padding after (tokenizers `TokenizerImpl::encode` and `post_process`). Each stage is built by a
/// factory keyed by the exact `type` strings of the file (Normalizer.swift, PreTokenizer.swift, BPE.swift,
/// PostProcessor.swift, Decoder.swift); an unknown type is an error naming it.
///
/// A `Tokenizer` is a value: copies share the loaded vocabulary, and changing `truncation` or `padding` on one copy
/// does not affect another. It is safe to use from several threads.
public struct Tokenizer: Sendable {
    /// The file it was read from (or the label given), for messages.
    public let source: String
    /// The file's added tokens, in file order.
    public var addedTokens: [AddedToken] { added.tokens }
    /// Truncation applied by `encode` (initially the file's `truncation` section).
    public var truncation: Truncation?
    /// Padding applied by `encode` (initially the file's `padding` section).
    public var padding: Padding?

    let normalizer: (any Normalizer)?
    let preTokenizer: (any PreTokenizer)?
    let model: BPEModel
    let added: AddedVocabulary
    let postProcessor: (any PostProcessor)?
    let decoder: (any Decoder)?

    /// Reads a tokenizer.json file.
    public init(contentsOfFile path: String) throws {
        // Only a regular file: a FIFO, device or directory is refused with a message saying what it is.
        let data: Data
        do { data = Data(try InputFile.read(path)) } catch { throw TokenizerError.cannotRead(path, error.reason(about: path)) }
        try self.init(jsonData: data, source: path)
    }

    /// Parses the text of a tokenizer.json; `source` names it in error messages.
    public init(jsonData: Data, source: String = "tokenizer.json") throws {
        let document = try jsonData.withUnsafeBytes { try JSONDocument(bytes: $0, source: source) }
        defer { document.freeInBackground() }
        try self.init(document.rootNode)
    }

    /// Parses the text of a tokenizer.json given as a string.
    public init(json: String, source: String = "tokenizer.json") throws {
        try self.init(jsonData: Data(json.utf8), source: source)
    }

    private init(_ root: JSONNode) throws {
        source = root.document.source
        guard root.isObject else { throw root.error("expected a JSON object at the top level") }
        normalizer = try root.member("normalizer").flatMap { try NormalizerFactory.make($0) }
        preTokenizer = try root.member("pre_tokenizer").flatMap { try PreTokenizerFactory.make($0) }
        let modelNode = try root.required("model")
        let modelType = try modelNode.optional("type")?.string() ?? (try modelNode.member("merges") != nil ? "BPE" : "")
        guard modelType == "BPE" else {
            throw TokenizerError.unsupportedComponent(source, "model", modelType.isEmpty ? "(no type)" : modelType)
        }
        model = try BPEModel.load(modelNode)
        // The normalized forms of the added tokens share one regex budget and one growth budget, as one text does.
        let addedNode = try root.optional("added_tokens")
        let normalizer = self.normalizer, normalizerPlace = "\(source): normalizer"
        added = try RegexBudget.sharing {
            try GrowthBudget.sharing {
                try AddedVocabulary(addedNode, normalizer: normalizer, normalizerPlace: normalizerPlace)
            }
        }
        postProcessor = try root.member("post_processor").flatMap { try PostProcessorFactory.make($0) }
        decoder = try root.member("decoder").flatMap { try DecoderFactory.make($0) }
        truncation = try root.optional("truncation").map(Self.readTruncation)
        padding = try root.optional("padding").map(Self.readPadding)
    }

    // MARK: Vocabulary

    /// The number of ids: the model's vocabulary plus added tokens it does not contain.
    public var vocabularySize: Int {
        model.vocabularySize + added.tokens.filter { model.tokenToId($0.content) == nil }.count
    }

    /// The id of a token (added tokens first, then the model's vocabulary).
    public func tokenToId(_ token: String) -> Int? { added.id(for: token) ?? model.tokenToId(token) }

    /// The token string of an id, as stored (byte-level tokens stay in their byte-level form).
    public func idToToken(_ id: Int) -> String? { added.token(for: id)?.content ?? model.idToToken(id) }

    // MARK: Encoding

    /// Encodes one text. With `addSpecialTokens`, the post-processor adds the model's special tokens (for example
    /// [CLS] … [SEP]). Throws only when the truncation settings cannot be met (only_first/only_second strategies).
    /// Throws for a text longer than ``TokenizerLimits/maxInputBytes``, when a regex of the file exceeds its step
    /// budget (``TokenizerLimits/regexStepsPerScalar``), and when the file's normalizers and pre-tokenizers would
    /// add more than ``TokenizerLimits/maxTextGrowth`` scalars to the text.
    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> Encoding {
        try RegexBudget.sharing {
            try GrowthBudget.sharing {
                try postProcess(encodeSequence(text, typeId: 0), nil, addSpecialTokens: addSpecialTokens)
            }
        }
    }

    /// Encodes a pair of texts (for example [CLS] A [SEP] B [SEP]).
    public func encode(_ text: String, pair: String, addSpecialTokens: Bool = true) throws -> Encoding {
        try RegexBudget.sharing {
            try GrowthBudget.sharing {
                try postProcess(try encodeSequence(text, typeId: 0), try encodeSequence(pair, typeId: 1),
                                addSpecialTokens: addSpecialTokens)
            }
        }
    }

    /// Encodes several texts; with batch-longest padding they are padded to the longest.
    public func encodeBatch(_ texts: [String], addSpecialTokens: Bool = true) throws -> [Encoding] {
        var encodings = try texts.map { try encode($0, addSpecialTokens: addSpecialTokens) }
        padding?.apply(&encodings)
        return encodings
    }

    /// Just the ids of one text, without truncation or padding. Throws as `encode` does for a text over the
    /// length limit or a regex over its step budget.
    public func ids(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
        var copy = self
        copy.truncation = nil
        copy.padding = nil
        return try copy.encode(text, addSpecialTokens: addSpecialTokens).ids
    }

    /// The ids of one text before post-processing (encode_single_sequence).
    func encodeSequence(_ text: String, typeId: Int) throws -> Encoding {
        let bytes = text.utf8.count
        guard bytes <= TokenizerLimits.maxInputBytes else {
            throw TokenizerError.invalid(source, "a text of \(bytes) bytes is longer than the limit of "
                                         + "\(TokenizerLimits.maxInputBytes) bytes")
        }
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        let preTokenizerPlace = "\(source): pre_tokenizer"
        for segment in try added.extract(scalars, normalizer: normalizer, normalizerPlace: "\(source): normalizer") {
            switch segment {
            case let .token(id):
                ids.append(id)
            case let .text(text, atStart):
                let piece = PreToken(text: text, atStart: atStart)
                for preToken in try preTokenizer?.preTokenize([piece], chargedTo: preTokenizerPlace) ?? [piece] {
                    model.tokenize(preToken.text, into: &ids)
                }
            }
        }
        return Encoding(sequence: ids, typeId: typeId)
    }

    /// Truncation, post-processor, padding (TokenizerImpl::post_process).
    func postProcess(_ first: Encoding, _ second: Encoding?, addSpecialTokens: Bool) throws -> Encoding {
        var first = first, second = second
        if let truncation {
            let added = addSpecialTokens ? (postProcessor?.addedTokens(isPair: second != nil) ?? 0) : 0
            try truncation.apply(&first, &second, maxLength: max(0, truncation.maxLength - added))
        }
        var encodings = [first]
        if let second { encodings.append(second) }
        var result: Encoding
        if let postProcessor {
            for i in encodings.indices { encodings[i].setTypeIds(i) }
            result = Encoding.merged(postProcessor.process(encodings, addSpecialTokens: addSpecialTokens))
        } else {
            result = Encoding.merged(encodings)
        }
        if let padding {
            var batch = [result]
            padding.apply(&batch)
            result = batch[0]
        }
        return result
    }

    // MARK: Decoding

    /// Decodes ids to text through the file's decoder (tokens joined with spaces if it has none). Ids that are not
    /// in the vocabulary are skipped; with `skipSpecialTokens`, so are special tokens.
    /// Throws only when a Replace decoder's regex exceeds its step budget (``TokenizerLimits/regexStepsPerScalar``)
    /// and when the decoders would add more than ``TokenizerLimits/maxTextGrowth`` scalars to the text.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = added.decodingString(for: id) ?? model.idToToken(id) else { continue }
            if skipSpecialTokens && added.isSpecial(token) { continue }
            tokens.append(token)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return try RegexBudget.sharing {
            try GrowthBudget.sharing { try decoder.decodeChain(tokens, chargedTo: "\(source): decoder").joined() }
        }
    }

    // MARK: Truncation and padding

    /// Truncates encodings to `maxLength` tokens, special tokens included.
    public mutating func enableTruncation(maxLength: Int, strategy: Truncation.Strategy = .longestFirst,
                                          direction: Truncation.Direction = .right) {
        precondition(maxLength >= 0 && maxLength <= TokenizerLimits.maxSequenceLength,
                     "maxLength must be in 0...TokenizerLimits.maxSequenceLength")
        truncation = Truncation(maxLength: maxLength, strategy: strategy, direction: direction)
    }

    /// Pads encodings to `length` tokens (nil: to the longest of a batch). The pad id is `padId` if given, else the
    /// one of the file's padding section; throws if there is neither.
    public mutating func enablePadding(length: Int?, padId: Int? = nil, direction: Padding.Direction = .right,
                                       padToMultipleOf: Int? = nil) throws {
        for value in [length, padToMultipleOf].compactMap({ $0 }) where value < 0 || value > TokenizerLimits.maxSequenceLength {
            throw TokenizerError.invalidSettings("\(source): padding to \(value) tokens is outside 0..."
                                                 + "\(TokenizerLimits.maxSequenceLength)")
        }
        guard let id = padId ?? padding?.padId else {
            throw TokenizerError.invalidSettings("\(source): padding needs a pad id (the file has no padding section)")
        }
        padding = Padding(strategy: length.map { .fixed($0) } ?? .batchLongest, direction: direction,
                          padToMultipleOf: padToMultipleOf, padId: id, padTypeId: padding?.padTypeId ?? 0,
                          padToken: idToToken(id) ?? padding?.padToken ?? "")
    }

    private static func readTruncation(_ node: JSONNode) throws -> Truncation {
        let direction = try node.optional("direction")?.string() ?? "Right"
        let strategy = try node.optional("strategy")?.string() ?? "LongestFirst"
        let strategies: [String: Truncation.Strategy] = ["LongestFirst": .longestFirst, "OnlyFirst": .onlyFirst,
                                                         "OnlySecond": .onlySecond]
        guard let parsedStrategy = strategies[strategy] else { throw node.error("unknown strategy \"\(strategy)\"") }
        guard direction == "Right" || direction == "Left" else { throw node.error("unknown direction \"\(direction)\"") }
        let maxLength = try node.required("max_length").int()
        guard maxLength >= 0, maxLength <= TokenizerLimits.maxSequenceLength else {
            throw node.error("max_length \(maxLength) is outside 0...\(TokenizerLimits.maxSequenceLength)")
        }
        return Truncation(maxLength: maxLength, strategy: parsedStrategy, direction: direction == "Left" ? .left : .right)
    }

    private static func readPadding(_ node: JSONNode) throws -> Padding {
        let strategyNode = try node.required("strategy")
        let strategy: Padding.Strategy
        if strategyNode.isString, try strategyNode.string() == "BatchLongest" {
            strategy = .batchLongest
        } else if let fixed = try? strategyNode.member("Fixed") {
            let length = try fixed.int()
            guard length >= 0, length <= TokenizerLimits.maxSequenceLength else {
                throw fixed.error("padding length \(length) is outside 0...\(TokenizerLimits.maxSequenceLength)")
            }
            strategy = .fixed(length)
        } else {
            throw strategyNode.error("expected \"BatchLongest\" or {\"Fixed\": n}")
        }
        let direction = try node.optional("direction")?.string() ?? "Right"
        guard direction == "Right" || direction == "Left" else { throw node.error("unknown direction \"\(direction)\"") }
        let multipleNode = try node.optional("pad_to_multiple_of")
        let multiple = try multipleNode?.int()
        if let multipleNode, let multiple, multiple < 0 || multiple > TokenizerLimits.maxSequenceLength {
            throw multipleNode.error("pad_to_multiple_of \(multiple) is outside 0...\(TokenizerLimits.maxSequenceLength)")
        }
        return Padding(strategy: strategy, direction: direction == "Left" ? .left : .right,
                       padToMultipleOf: multiple,
                       padId: try node.optional("pad_id")?.int() ?? 0,
                       padTypeId: try node.optional("pad_type_id")?.int() ?? 0,
                       padToken: try node.optional("pad_token")?.string() ?? "[PAD]")
    }
}
