import PrimaIO
import PrimaJSON
import PrimaTokenizers

/// Stage 1's risk-factor corpus (Formats/prima-training.md §3.6): a JSON Lines file, one object per risk factor,
/// `{"name": "...", "summary": "...", "details": "..."}`, read as hostile input.
///
/// Rules: UTF-8 (a byte-order mark at the start is skipped); lines end in LF or CRLF; a line of only spaces, tabs
/// and CR is skipped; every other line is one JSON object with exactly the keys `name`, `summary` and `details`,
/// each a string (`name` not empty after trimming spaces and tabs), each at most ``maxFieldBytes`` UTF-8 bytes; at
/// most ``maxRecords`` records in a file of at most ``maxFileBytes``. Errors are one line: `FILE line N: what`.
public struct RiskFactorCorpus: Sendable {
    /// One record.
    public struct Record: Sendable, Equatable {
        public let name: String
        public let summary: String
        public let details: String
        /// The record's line in the file (1-based).
        public let line: Int

        /// The text the masked LM reads: `name: summary details`, the three trimmed of spaces and tabs, an empty
        /// summary or details left out with its separating space (`name:` alone if both are empty).
        public var text: String {
            let body = [summary, details].map(\.trimmingSpacesAndTabs).filter { !$0.isEmpty }.joined(separator: " ")
            return body.isEmpty ? name.trimmingSpacesAndTabs + ":" : name.trimmingSpacesAndTabs + ": " + body
        }
    }

    /// Largest corpus file: 64 MiB (the paper's corpus is a few hundred records of a few kB).
    public static let maxFileBytes = 64 << 20
    /// Longest name, summary or details, in UTF-8 bytes: 256 KiB (the text encoder reads at most a few kB).
    public static let maxFieldBytes = 256 << 10
    /// Most records: 1,000,000.
    public static let maxRecords = 1_000_000
    /// The keys of a record, all required.
    public static let keys = ["name", "summary", "details"]

    /// The file, for messages.
    public let path: String
    public let records: [Record]

    /// Reads and checks the corpus at `path`; at least one record.
    public init(path: String) throws(ToolError) {
        let bytes = try InputFile.read(path, limit: Self.maxFileBytes)
        try self.init(bytes: bytes, source: path)
    }

    /// Parses corpus bytes; `source` names them in errors.
    public init(bytes: [UInt8], source: String) throws(ToolError) {
        var records: [Record] = []
        var start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        while start <= bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            var content = bytes[start..<end]
            if content.last == UInt8(ascii: "\r") { content = content.dropLast() }
            if content.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") }) {
                guard records.count < Self.maxRecords else {
                    throw ToolError.input("\(source) line \(line): more than the limit of \(Self.maxRecords) records")
                }
                records.append(try Self.record(content, line: line, source: source))
            }
            start = end + 1
            line += 1
        }
        guard !records.isEmpty else { throw ToolError.input("\(source): no records (expected one JSON object per line)") }
        path = source
        self.records = records
    }

    static func record(_ bytes: ArraySlice<UInt8>, line: Int, source: String) throws(ToolError) -> Record {
        let place = "\(source) line \(line)"
        guard String(validating: bytes, as: UTF8.self) != nil else { throw ToolError.input("\(place): not UTF-8 text") }
        let value: JSONValue
        do {
            value = try JSON.parse(bytes)
        } catch {
            throw ToolError.input("\(place): malformed JSON: \(error)")
        }
        guard let object = value.object else { throw ToolError.input("\(place): expected a JSON object, got \(value.typeName)") }
        if let unknown = object.keys.first(where: { !keys.contains($0) }) {
            throw ToolError.input("\(place): unknown key \(JSON.quoted(unknown)) (a record has name, summary and details)")
        }
        var fields: [String] = []
        for key in keys {
            guard let member = object[key] else { throw ToolError.input("\(place): missing key \"\(key)\"") }
            guard let text = member.string else { throw ToolError.input("\(place): \"\(key)\" must be a string, got \(member.typeName)") }
            guard text.utf8.count <= maxFieldBytes else {
                throw ToolError.input("\(place): \"\(key)\" is \(text.utf8.count) bytes, longer than the limit of \(maxFieldBytes)")
            }
            fields.append(text)
        }
        guard !fields[0].trimmingSpacesAndTabs.isEmpty else { throw ToolError.input("\(place): \"name\" is empty") }
        return Record(name: fields[0], summary: fields[1], details: fields[2], line: line)
    }

    /// One tokenized record: the masked LM's input before masking.
    public struct Example: Sendable, Equatable {
        /// [CLS] … [SEP] ids, at most the text encoder's positions.
        public let ids: [Int]
        /// true where masking may never select: tokens the post-processor added, and special added tokens.
        public let special: [Bool]
    }

    /// Every record tokenized with the text encoder's tokenizer (special tokens added; its own padding setting
    /// ignored) and truncated to
    /// `maxLength` tokens keeping the final token ([SEP]), as the metadata text is (Sources/PrimaDiagnose).
    /// Throws naming the line for a record whose text cannot be encoded or has no token masking could select.
    public func examples(tokenizer: Tokenizer, maxLength: Int) throws(ToolError) -> [Example] {
        precondition(maxLength >= 3, "a masked-LM example needs room for [CLS], a token and [SEP]")
        let specialIds = MaskedLMMasking.specialIds(tokenizer)
        // Examples are padded per batch (Batching.maskedLMBatch), never by the file's own padding setting.
        var tokenizer = tokenizer
        tokenizer.padding = nil
        var examples: [Example] = []
        examples.reserveCapacity(records.count)
        for record in records {
            let encoding: Encoding
            do {
                encoding = try tokenizer.encode(record.text)
            } catch {
                throw ToolError.input("\(path) line \(record.line): cannot tokenize: \(error)")
            }
            var ids = encoding.ids
            var special = zip(encoding.ids, encoding.specialTokensMask).map { specialIds.contains($0) || $1 == 1 }
            if ids.count > maxLength {
                ids = Array(ids.prefix(maxLength - 1)) + [ids[ids.count - 1]]
                special = Array(special.prefix(maxLength - 1)) + [special[special.count - 1]]
            }
            guard special.contains(false) else {
                throw ToolError.input("\(path) line \(record.line): the text has no token that masking could select")
            }
            examples.append(Example(ids: ids, special: special))
        }
        return examples
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpacesAndTabs: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(scalars[first...last])
    }
}
