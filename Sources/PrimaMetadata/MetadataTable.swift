import PrimaJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A PAD-UFES-20-style `metadata.csv`: every row validated against the schema at load, looked up by `img_id`.
public struct MetadataTable: Sendable {
    public let schema: MetadataSchema
    /// Records in file order, with their image ids.
    public let rows: [(imageID: String, record: MetadataRecord)]
    private let positions: [String: Int]

    /// Reads and validates `csvPath`. Errors name the file, the line and the field.
    public init(csvPath: String, schema: MetadataSchema = .padUfes20) throws(MetadataError) {
        guard let bytes = readFile(csvPath) else { throw MetadataError("\(csvPath): cannot read file") }
        try self.init(csvText: String(decoding: bytes, as: UTF8.self), source: csvPath, schema: schema)
    }

    /// Parses CSV text; `source` names it in errors.
    public init(csvText: String, source: String, schema: MetadataSchema = .padUfes20) throws(MetadataError) {
        self.schema = schema
        let records = try CSVReader.parse(csvText, source: source)
        guard let header = records.first else { throw MetadataError("\(source): empty file (a header row is required)") }
        guard let idColumn = header.fields.firstIndex(of: "img_id") else {
            throw MetadataError("\(source): header has no img_id column")
        }
        var rows: [(imageID: String, record: MetadataRecord)] = []
        var positions: [String: Int] = [:]
        for row in records.dropFirst() {
            let where_ = "\(source) line \(row.line)"
            guard row.fields.count == header.fields.count else {
                throw MetadataError("\(where_): \(row.fields.count) columns, header has \(header.fields.count)")
            }
            let object = JSONObject(zip(header.fields, row.fields).map { ($0, JSONValue.string($1)) })
            let record = try schema.record(from: object, source: where_)
            let imageID = row.fields[idColumn]
            guard positions[imageID] == nil else { throw MetadataError("\(where_): field 'img_id': duplicate '\(imageID)'") }
            positions[imageID] = rows.count
            rows.append((imageID, record))
        }
        self.rows = rows
        self.positions = positions
    }

    /// The record of image `imageID`, or nil if the table has no such row.
    public subscript(imageID: String) -> MetadataRecord? { positions[imageID].map { rows[$0].record } }

    /// The metadata text of image `imageID`, or nil if the table has no such row.
    public func text(forImage imageID: String) -> String? { self[imageID].map(schema.text(for:)) }
}

/// RFC 4180 CSV: comma-separated, fields optionally in double quotes (which may hold commas, line breaks and
/// `""` for a quote), records ending in CRLF or LF. A final line break is optional; blank lines are skipped.
public enum CSVReader {
    /// Records with the 1-based line number each starts on.
    public static func parse(_ text: String, source: String) throws(MetadataError) -> [(line: Int, fields: [String])] {
        var records: [(line: Int, fields: [String])] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var line = 1
        var recordLine = 1
        var inQuotes = false
        var quotedField = false  // the current field was quoted; only a separator may follow the closing quote
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }

        func endField() {
            fields.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            quotedField = false
        }
        func endRecord() {
            endField()
            if !(fields.count == 1 && fields[0].isEmpty) { records.append((recordLine, fields)) }
            fields.removeAll()
        }

        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\"") {
                        field.append(byte)
                        i += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
            } else {
                switch byte {
                case UInt8(ascii: ","):
                    endField()
                case UInt8(ascii: "\r") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\n"):
                    break  // the LF ends the record
                case UInt8(ascii: "\n"):
                    endRecord()
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
                    field.append(byte)
                }
            }
            i += 1
        }
        if inQuotes { throw MetadataError("\(source) line \(recordLine): unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty || quotedField { endRecord() }
        return records
    }
}

/// The whole file, or nil if it cannot be opened or read.
private func readFile(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, 65536, file) }
        if count > 0 { bytes.append(contentsOf: buffer[0..<count]) }
        if count < 65536 {
            if ferror(file) != 0 { return nil }
            return bytes
        }
    }
}
