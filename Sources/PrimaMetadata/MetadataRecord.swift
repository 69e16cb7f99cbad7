import PrimaJSON

/// A validated value of one schema field.
public enum MetadataValue: Sendable, Equatable {
    case boolean(Bool)
    case number(Double)
    /// The matched entry of the field's `values`.
    case category(String)
    case text(String)
}

/// One patient/lesion record checked against a schema: the known values, in schema order.
/// Unknown values (UNK, empty, null, missing) are absent.
public struct MetadataRecord: Sendable, Equatable {
    public var values: [(key: String, value: MetadataValue)]

    public init(values: [(key: String, value: MetadataValue)]) { self.values = values }

    public subscript(key: String) -> MetadataValue? { values.first { $0.key == key }?.value }

    public static func == (lhs: MetadataRecord, rhs: MetadataRecord) -> Bool {
        lhs.values.count == rhs.values.count && zip(lhs.values, rhs.values).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

extension MetadataSchema {
    /// Checks a JSON object (values strings, numbers, booleans or null) against the schema.
    /// `source` names the record in errors, e.g. "patient.json" or "metadata.csv line 12".
    public func record(from object: JSONObject, source: String) throws(MetadataError) -> MetadataRecord {
        for key in object.keys where field(key) == nil && !ignoredKeys.contains(key) {
            throw MetadataError("\(source): unknown field '\(key)'")
        }
        var values: [(key: String, value: MetadataValue)] = []
        for field in fields {
            guard let raw = object[field.key] else { continue }
            if case .string(let string) = raw, string.utf8.count > MetadataLimits.maxFieldBytes {
                throw MetadataError("\(source): field '\(field.key)': \(string.utf8.count) bytes, longer than the limit "
                                    + "of \(MetadataLimits.maxFieldBytes) bytes")
            }
            if let value = try Self.parse(raw, for: field, source: source) { values.append((field.key, value)) }
        }
        let record = MetadataRecord(values: values)
        let textBytes = text(for: record).utf8.count
        guard textBytes <= MetadataLimits.maxTextBytes else {
            throw MetadataError("\(source): the metadata text would be \(textBytes) bytes, longer than the limit of "
                                + "\(MetadataLimits.maxTextBytes) bytes")
        }
        return record
    }

    /// Reads a file holding one JSON object (at most ``MetadataLimits/maxRecordFileBytes``, refused as soon as
    /// more has been read) and checks it against the schema; errors name the file.
    public func record(jsonFile path: String) throws(MetadataError) -> MetadataRecord {
        var bytes: [UInt8] = []
        try readFile(path, limit: MetadataLimits.maxRecordFileBytes, what: "a metadata record") { chunk in
            bytes.append(contentsOf: chunk)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Self.notUTF8(bytes, source: path) }
        return try record(jsonText: text, source: path)
    }

    /// The error for a JSON record file that is not UTF-8: it names the line of the first invalid byte and the
    /// field whose name or value holds it (a record is one flat object, so the last `"key":` before the byte is
    /// that field).
    static func notUTF8(_ bytes: [UInt8], source: String) -> MetadataError {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0
        decoding: while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .error, .emptyInput: break decoding
            }
        }
        let line = 1 + bytes[..<offset].count(where: { $0 == UInt8(ascii: "\n") })
        // A small scan of the bytes before the invalid one: strings, and the ":" that makes a string a key.
        var inString = false, escaped = false, stringStart = 0
        var lastString: ArraySlice<UInt8> = [], key: ArraySlice<UInt8>? = nil
        for index in 0..<offset {
            let byte = bytes[index]
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") {
                    inString = false
                    lastString = bytes[stringStart..<index]
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
                stringStart = index + 1
            } else if byte == UInt8(ascii: ":") {
                key = lastString
            } else if byte == UInt8(ascii: ",") || byte == UInt8(ascii: "{") {
                key = nil
            }
        }
        let byte = String(bytes[offset], radix: 16, uppercase: true)
        let what: String
        if inString, let key {
            what = "field '\(String(decoding: key, as: UTF8.self))': "
        } else if inString {
            what = "a field name: "
        } else {
            what = ""
        }
        return MetadataError("\(source) line \(line): \(what)not UTF-8 text (byte 0x\(byte))")
    }

    /// Parses the text of one JSON object; `source` names it in errors.
    public func record(jsonText: String, source: String) throws(MetadataError) -> MetadataRecord {
        let value: JSONValue
        do {
            value = try JSON.parse(jsonText)
        } catch {
            throw MetadataError("\(source): malformed JSON: \(error)")
        }
        guard let object = value.object else { throw MetadataError("\(source): expected a JSON object, got \(value.typeName)") }
        return try record(from: object, source: source)
    }

    /// The metadata text: `name: value` pairs of the `.text` fields joined by "; ", in schema order.
    public func text(for record: MetadataRecord) -> String {
        var parts: [String] = []
        for field in fields where field.uses.contains(.text) {
            guard let value = record[field.key] else { continue }
            parts.append("\(field.displayName): \(Self.render(value, kind: field.kind))")
        }
        return parts.joined(separator: "; ")
    }

    /// Validates and renders a JSON object in one step.
    public func text(for object: JSONObject, source: String) throws(MetadataError) -> String {
        text(for: try record(from: object, source: source))
    }

    // MARK: Values

    /// Markers PAD-UFES-20 uses for "not recorded" (besides empty cells).
    static let unknownMarkers: Set<String> = ["UNK", ""]

    static func parse(_ raw: JSONValue, for field: Field, source: String) throws(MetadataError) -> MetadataValue? {
        func wrong(_ expected: String) -> MetadataError {
            MetadataError("\(source): field '\(field.key)': expected \(expected), got \(raw.serialized())")
        }
        if case .null = raw { return nil }
        if case .string(let string) = raw, unknownMarkers.contains(string.trimmingSpaces) { return nil }
        switch field.kind {
        case .boolean:
            switch raw {
            case .bool(let flag): return .boolean(flag)
            case .string(let string):
                switch string.trimmingSpaces {
                case "True", "true": return .boolean(true)
                case "False", "false": return .boolean(false)
                default: throw wrong("True or False")
                }
            default: throw wrong("True or False")
            }
        case .number:
            guard let number = numberValue(raw) else { throw wrong("a number") }
            return .number(number)
        case .category(let values, _):
            let candidate: String
            switch raw {
            case .string(let string):
                let trimmed = string.trimmingSpaces
                // "3.0" for Fitzpatrick type 3: numbers are matched in their shortest form.
                if !values.contains(trimmed), let number = decimalNumber(trimmed), number.isFinite {
                    candidate = formatNumber(number)
                } else {
                    candidate = trimmed
                }
            case .number(let number): candidate = formatNumber(number.double)
            default: throw wrong("one of \(values.joined(separator: ", "))")
            }
            guard values.contains(candidate) else {
                throw MetadataError("\(source): field '\(field.key)': \(raw.serialized()) is not one of \(values.joined(separator: ", "))")
            }
            return .category(candidate)
        case .text:
            switch raw {
            case .string(let string): return .text(string.trimmingSpaces)
            case .number(let number): return .text(number.text)
            default: throw wrong("text")
            }
        }
    }

    static func numberValue(_ raw: JSONValue) -> Double? {
        let value: Double?
        switch raw {
        case .number(let number): value = number.double
        case .string(let string): value = decimalNumber(string.trimmingSpaces)
        default: value = nil
        }
        guard let value, value.isFinite else { return nil }
        return value
    }

    /// The value of a decimal number written as text: an optional sign, digits with an optional fraction, an optional
    /// exponent (`55`, `-6.5`, `.5`, `1e3`); nil for anything else. Swift's `Double("0x3d")` is 61 and
    /// `Double("nan")` is NaN; metadata numbers are JSON numbers or decimal strings only (Formats/metadata-schema.md).
    static func decimalNumber(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        var index = 0
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9") }
        func skipDigits() -> Int {
            let start = index
            while isDigit(index) { index += 1 }
            return index - start
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
        var digits = skipDigits()
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            digits += skipDigits()
        }
        guard digits > 0 else { return nil }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { return nil }
        }
        guard index == bytes.count else { return nil }
        return Double(text)
    }

    static func render(_ value: MetadataValue, kind: Field.Kind) -> String {
        switch value {
        case .boolean(let flag): return flag ? "yes" : "no"
        case .number(let number):
            if case .number(let unit?) = kind { return "\(formatNumber(number)) \(unit)" }
            return formatNumber(number)
        case .category(let name):
            if case .category(_, let labels) = kind, let label = labels[name] { return label }
            return name.lowercased()
        case .text(let text): return text
        }
    }
}

/// `55` for 55.0, `6.5` for 6.5: integers without a fraction, others in Swift's shortest round-trip form.
public func formatNumber(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return String(value)
}

extension String {
    /// Without leading and trailing spaces and tabs (CSV cells are sometimes padded).
    var trimmingSpaces: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(scalars[first...last])
    }
}
