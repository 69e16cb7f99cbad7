import PrimaJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sizes beyond which metadata input is refused (Formats/metadata-schema.md, "Limits"). Each is checked while
/// reading, before the text it limits is held in memory, so a huge or endless input fails fast with one line.
public enum MetadataLimits {
    /// Longest CSV field or JSON string value, in UTF-8 bytes: 1 MiB. PAD-UFES-20's longest value is a 20-byte
    /// image id; a free-text field of a page of notes is a few kB.
    public static let maxFieldBytes = 1 << 20
    /// Largest `metadata.csv`: 256 MiB. PAD-UFES-20's is 0.3 MB for 2,298 cases, so this is about two million
    /// cases, and the table built from it stays within a few times that size in memory.
    public static let maxCSVBytes = 256 << 20
    /// Largest patient-record JSON file (`prima-diagnose --metadata`): 4 MiB, a handful of fields each at most
    /// ``maxFieldBytes``.
    public static let maxRecordFileBytes = 4 << 20
    /// Longest rendered metadata text, in UTF-8 bytes: 1 MiB. The text encoder reads at most a few hundred tokens
    /// (a few kB) of it; a record whose text would be longer is refused at validation, so rendering never is.
    public static let maxTextBytes = 1 << 20
    /// Most columns in a CSV header: 1024 (PAD-UFES-20 has 26; every column must be a schema field or ignored).
    public static let maxColumns = 1024
    /// Largest metadata schema file (`prima-convert import --metadata-schema`, or stored in a checkpoint): 1 MiB.
    /// PAD-UFES-20's is 4 kB; a schema of ``maxColumns`` fields with a hundred categories each fits.
    public static let maxSchemaBytes = 1 << 20
}

/// A PAD-UFES-20-style `metadata.csv`: every row validated against the schema at load, looked up by `img_id`.
public struct MetadataTable: Sendable {
    public let schema: MetadataSchema
    /// Records in file order, with their image ids.
    public let rows: [(imageID: String, record: MetadataRecord)]
    private let positions: [String: Int]

    /// Reads and validates `csvPath`, row by row as the file is read: reading stops at the first error and at
    /// ``MetadataLimits/maxCSVBytes``. Errors name the file, the line and the field.
    public init(csvPath: String, schema: MetadataSchema = .padUfes20) throws(MetadataError) {
        var builder = Builder(schema: schema, source: csvPath)
        var parser = CSVParser()
        try readFile(csvPath, limit: MetadataLimits.maxCSVBytes, what: "metadata.csv") { (chunk) throws(MetadataError) in
            try parser.feed(chunk, source: csvPath) { (line, fields) throws(MetadataError) in
                try builder.add(line: line, fields: fields)
            }
        }
        try parser.finish(source: csvPath) { (line, fields) throws(MetadataError) in
            try builder.add(line: line, fields: fields)
        }
        try self.init(builder)
    }

    /// Parses CSV text; `source` names it in errors.
    public init(csvText: String, source: String, schema: MetadataSchema = .padUfes20) throws(MetadataError) {
        guard csvText.utf8.count <= MetadataLimits.maxCSVBytes else {
            throw MetadataError("\(source): larger than the limit of \(MetadataLimits.maxCSVBytes) bytes")
        }
        var builder = Builder(schema: schema, source: source)
        var parser = CSVParser()
        let bytes = Array(csvText.utf8)
        try bytes.withUnsafeBufferPointer { (buffer) throws(MetadataError) in
            try parser.feed(buffer, source: source) { (line, fields) throws(MetadataError) in
                try builder.add(line: line, fields: fields)
            }
        }
        try parser.finish(source: source) { (line, fields) throws(MetadataError) in
            try builder.add(line: line, fields: fields)
        }
        try self.init(builder)
    }

    private init(_ builder: Builder) throws(MetadataError) {
        guard builder.header != nil else { throw MetadataError("\(builder.source): empty file (a header row is required)") }
        schema = builder.schema
        rows = builder.rows
        positions = builder.positions
    }

    /// Validates records as the parser produces them: the header first, then each row against it.
    private struct Builder {
        let schema: MetadataSchema
        let source: String
        var header: [String]?
        var idColumn = 0
        var rows: [(imageID: String, record: MetadataRecord)] = []
        var positions: [String: Int] = [:]

        init(schema: MetadataSchema, source: String) {
            self.schema = schema
            self.source = source
        }

        mutating func add(line: Int, fields: [String]) throws(MetadataError) {
            guard let header else {
                var seen = Set<String>()
                for name in fields where !seen.insert(name).inserted {
                    throw MetadataError("\(source) line \(line): column '\(name)' appears more than once in the header")
                }
                // Every column is a schema field or ignored: named here, on the header's line, not on the first row.
                if let unknown = fields.first(where: { $0 != "img_id" && schema.field($0) == nil && !schema.ignoredKeys.contains($0) }) {
                    throw MetadataError("\(source) line \(line): unknown column '\(unknown)' in the header")
                }
                guard let id = fields.firstIndex(of: "img_id") else {
                    throw MetadataError("\(source): header has no img_id column")
                }
                idColumn = id
                self.header = fields
                return
            }
            let where_ = "\(source) line \(line)"
            guard fields.count == header.count else {
                throw MetadataError("\(where_): \(fields.count) columns, header has \(header.count)")
            }
            let object = JSONObject(zip(header, fields).map { ($0, JSONValue.string($1)) })
            let record = try schema.record(from: object, source: where_)
            let imageID = fields[idColumn]
            guard positions[imageID] == nil else { throw MetadataError("\(where_): field 'img_id': duplicate '\(imageID)'") }
            positions[imageID] = rows.count
            rows.append((imageID, record))
        }
    }

    /// The record of image `imageID`, or nil if the table has no such row.
    public subscript(imageID: String) -> MetadataRecord? { positions[imageID].map { rows[$0].record } }

    /// The metadata text of image `imageID`, or nil if the table has no such row.
    public func text(forImage imageID: String) -> String? { self[imageID].map(schema.text(for:)) }
}

/// RFC 4180 CSV: comma-separated, fields optionally in double quotes (which may hold commas, line breaks and
/// `""` for a quote), records ending in CRLF or LF. A final line break is optional; blank lines are skipped. Every
/// field must be UTF-8 text (a Latin-1 file is refused, naming the line and the field, rather than read as U+FFFD).
public enum CSVReader {
    /// Records with the 1-based line number each starts on.
    public static func parse(_ text: String, source: String) throws(MetadataError) -> [(line: Int, fields: [String])] {
        var records: [(line: Int, fields: [String])] = []
        var parser = CSVParser()
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBufferPointer { (buffer) throws(MetadataError) in
            try parser.feed(buffer, source: source) { line, fields in records.append((line, fields)) }
        }
        try parser.finish(source: source) { line, fields in records.append((line, fields)) }
        return records
    }
}

/// The CSV state machine of ``CSVReader``, fed a chunk at a time so that a file is never held whole. A field
/// longer than ``MetadataLimits/maxFieldBytes`` and a record with more than ``MetadataLimits/maxColumns`` fields
/// are refused as soon as they are seen.
struct CSVParser {
    private var fields: [String] = []
    private var field: [UInt8] = []
    private var line = 1
    private var recordLine = 1
    private var inQuotes = false
    /// A quote seen inside a quoted field: either the first of `""` or the closing quote (decided by the next byte).
    private var quotePending = false
    /// A CR seen outside quotes: dropped if an LF follows.
    private var crPending = false
    /// The current field was quoted; only a separator may follow the closing quote.
    private var quotedField = false
    private var atStart = true
    private var bomBytes = 0
    /// The first record (the header), which names the fields of the later ones in errors.
    private var header: [String]?

    mutating func feed(_ bytes: UnsafeBufferPointer<UInt8>, source: String,
                       _ emit: (Int, [String]) throws(MetadataError) -> Void) throws(MetadataError) {
        for byte in bytes {
            // A UTF-8 byte-order mark at the very start is skipped.
            if atStart {
                let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
                if byte == bom[bomBytes] {
                    bomBytes += 1
                    if bomBytes == 3 { atStart = false }
                    continue
                }
                atStart = false
                for skipped in bom.prefix(bomBytes) { try consume(skipped, source: source, emit) }
            }
            try consume(byte, source: source, emit)
        }
    }

    /// Ends the input: the last record (without a final line break) is emitted.
    mutating func finish(source: String, _ emit: (Int, [String]) throws(MetadataError) -> Void) throws(MetadataError) {
        if atStart {
            atStart = false
            for skipped in [UInt8]([0xEF, 0xBB, 0xBF]).prefix(bomBytes) { try consume(skipped, source: source, emit) }
        }
        if crPending {
            crPending = false
            try plain(UInt8(ascii: "\r"), source: source, emit)
        }
        if quotePending {
            quotePending = false
            inQuotes = false
        }
        if inQuotes { throw MetadataError("\(source) line \(recordLine): unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty || quotedField { try endRecord(source: source, emit) }
    }

    private mutating func consume(_ byte: UInt8, source: String,
                                  _ emit: (Int, [String]) throws(MetadataError) -> Void) throws(MetadataError) {
        if quotePending {
            quotePending = false
            if byte == UInt8(ascii: "\"") {
                try append(byte, source: source)
                return
            }
            inQuotes = false
        }
        if inQuotes {
            if byte == UInt8(ascii: "\"") {
                quotePending = true
            } else {
                if byte == UInt8(ascii: "\n") { line += 1 }
                try append(byte, source: source)
            }
            return
        }
        if crPending {
            crPending = false
            // A carriage return outside quotes ends a record only before a line feed: a file with CR-only line ends
            // (old Mac) would otherwise read as one long record.
            if byte != UInt8(ascii: "\n") {
                throw MetadataError("\(source) line \(line): a carriage return without a line feed (CR-only line ends are not CSV; save the file with LF or CRLF line ends)")
            }
        }
        if byte == UInt8(ascii: "\r") {
            crPending = true
            return
        }
        try plain(byte, source: source, emit)
    }

    /// A byte outside quotes.
    private mutating func plain(_ byte: UInt8, source: String,
                                _ emit: (Int, [String]) throws(MetadataError) -> Void) throws(MetadataError) {
        switch byte {
        case UInt8(ascii: ","):
            try endField(source: source)
        case UInt8(ascii: "\n"):
            try endRecord(source: source, emit)
            line += 1
            recordLine = line
        case UInt8(ascii: "\""):
            guard field.isEmpty, !quotedField else {
                throw MetadataError("\(source) line \(line): quote inside an unquoted field")
            }
            inQuotes = true
            quotedField = true
        default:
            if quotedField { throw MetadataError("\(source) line \(line): text after a closing quote") }
            try append(byte, source: source)
        }
    }

    private mutating func append(_ byte: UInt8, source: String) throws(MetadataError) {
        guard field.count < MetadataLimits.maxFieldBytes else {
            throw MetadataError("\(source) line \(recordLine): field \(fields.count + 1) is longer than the limit of "
                                + "\(MetadataLimits.maxFieldBytes) bytes")
        }
        field.append(byte)
    }

    private mutating func endField(source: String) throws(MetadataError) {
        guard fields.count < MetadataLimits.maxColumns else {
            throw MetadataError("\(source) line \(recordLine): more than the limit of \(MetadataLimits.maxColumns) columns")
        }
        guard let text = String(validating: field, as: UTF8.self) else {
            let column = fields.count
            let name = header.map { column < $0.count ? "field '\($0[column])'" : "field \(column + 1)" }
                ?? "header column \(column + 1)"
            throw MetadataError("\(source) line \(recordLine): \(name): not UTF-8 text")
        }
        fields.append(text)
        field.removeAll(keepingCapacity: true)
        quotedField = false
    }

    private mutating func endRecord(source: String,
                                    _ emit: (Int, [String]) throws(MetadataError) -> Void) throws(MetadataError) {
        try endField(source: source)
        let record = fields
        fields.removeAll(keepingCapacity: true)
        if !(record.count == 1 && record[0].isEmpty) {
            if header == nil { header = record }
            try emit(recordLine, record)
        }
    }
}

/// Reads `path` in chunks, handing each to `body`; refuses a file longer than `limit` bytes before reading it (a
/// regular file) or as soon as more than `limit` bytes have been read (a stream is not read to its end).
func readFile(_ path: String, limit: Int, what: String,
              _ body: (UnsafeBufferPointer<UInt8>) throws(MetadataError) -> Void) throws(MetadataError) {
    guard let file = fopen(path, "rb") else {
        throw MetadataError("\(path): cannot read file (\(String(cString: strerror(errno))))")
    }
    defer { fclose(file) }
    // A regular file's size is known up front: refuse before reading any of it.
    var status = stat()
    if fstat(fileno(file), &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, Int(status.st_size) > limit {
        throw MetadataError("\(path): \(status.st_size) bytes, larger than the limit of \(limit) bytes for \(what)")
    }
    let chunkSize = 1 << 16
    let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
    defer { buffer.deallocate() }
    var total = 0
    while true {
        let count = fread(buffer.baseAddress, 1, chunkSize, file)
        total += count
        if total > limit {
            throw MetadataError("\(path): larger than the limit of \(limit) bytes for \(what)")
        }
        if count > 0 { try body(UnsafeBufferPointer(rebasing: buffer[0..<count])) }
        if count < chunkSize {
            if ferror(file) != 0 { throw MetadataError("\(path): cannot read file (\(String(cString: strerror(errno))))") }
            return
        }
    }
}
