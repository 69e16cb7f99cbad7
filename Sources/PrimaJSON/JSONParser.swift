/// Reading and quoting JSON text.
///
/// The parser is strict RFC 8259: it rejects what lenient parsers silently accept, because every input here may be
/// hostile and because two readers must never disagree about what a file says. In particular it rejects repeated
/// object keys (Foundation and json-c keep one of them), invalid UTF-8, unescaped control characters, lone
/// surrogates, leading zeros, NaN and Infinity, a byte order mark, anything after the value except whitespace, and
/// nesting deeper than `maxDepth` (the parser recurses, so the limit also bounds its stack use).
public enum JSON {
    /// The default nesting limit: deeper than any real config or header, and a bound on the recursion.
    public static let defaultMaxDepth = 256

    /// Parses one JSON document from `bytes`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        let result: Result<JSONValue, JSONError> = bytes.withMemoryRebound(to: UInt8.self) { buffer in
            var parser = JSONParser(buffer, maxDepth: maxDepth)
            return Result { () throws(JSONError) in try parser.parseDocument() }
        }
        return try result.get()
    }

    /// Parses one JSON document from `bytes` (an array, a slice, `Data`, a string's `utf8`, …).
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        let contiguous = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(JSONError) in try parse(UnsafeRawBufferPointer(buffer), maxDepth: maxDepth) }
        }
        if let contiguous { return try contiguous.get() }
        return try Array(bytes).withUnsafeBytes { buffer in
            Result { () throws(JSONError) in try parse(buffer, maxDepth: maxDepth) }
        }.get()
    }

    /// Parses one JSON document from `text`.
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        var text = text
        return try text.withUTF8 { buffer in
            Result { () throws(JSONError) in try parse(UnsafeRawBufferPointer(buffer), maxDepth: maxDepth) }
        }.get()
    }

    /// `text` as a JSON string literal, quotes included (`a"b` → `"a\"b"`). Also the safe way to put a name
    /// taken from a file into a one-line message: control characters come out escaped.
    public static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        JSONWriter.appendString(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Why a JSON document was rejected, and where.
public struct JSONError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The class of problem, for callers that report some of them in their own terms.
    public enum Kind: Sendable, Equatable {
        /// No value at all (empty or whitespace-only input).
        case emptyInput
        /// The input starts with a UTF-8 byte order mark (RFC 8259 §8.1: writers must not add one; readers may
        /// reject it, and a BOM-prefixed safetensors header is rejected by the reference reader too).
        case byteOrderMark
        /// A grammar error: an unexpected character or the input ending early.
        case syntax
        /// Something other than whitespace after the document's value.
        case trailingData
        /// A byte sequence that is not UTF-8.
        case invalidUTF8
        /// A control character (U+0000–U+001F) written raw inside a string.
        case controlCharacter
        /// An unknown escape or a malformed `\u` escape.
        case invalidEscape
        /// A `\u` escape of half a surrogate pair without its other half.
        case loneSurrogate
        /// A number with a leading zero (`01`).
        case leadingZero
        /// `NaN` or `Infinity`, which JSON does not have.
        case nonFiniteNumber
        /// Arrays and objects nested deeper than the limit.
        case tooDeep
        /// An object key that repeats an earlier key of the same object.
        case duplicateKey(String)
    }

    /// The class of problem.
    public let kind: Kind
    /// What is wrong, e.g. `duplicate key "a"`.
    public let message: String
    /// The byte offset in the input where the problem was found.
    public let offset: Int
    /// How many arrays and objects enclose the problem: 1 inside the top-level container, 0 outside any.
    public let depth: Int

    /// An error of `kind` at `offset`.
    public init(_ kind: Kind, _ message: String, at offset: Int, depth: Int = 0) {
        self.kind = kind
        self.message = message
        self.offset = offset
        self.depth = depth
    }

    /// `<message> at byte <offset>`.
    public var description: String { "\(message) at byte \(offset)" }
}

/// A recursive-descent parser over a byte buffer. Strings without escapes are created straight from the input
/// bytes; only strings with escapes go through a scratch buffer.
struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var position = 0
    private var depth = 0
    /// Reused for strings with escapes, so each such string costs one allocation (its own), not two.
    private var scratch: [UInt8] = []
    /// The entries of the objects and the elements of the arrays being parsed, innermost last. A container's
    /// items collect here and are copied out once, at their final size, when it closes: one allocation per
    /// container instead of one per doubling.
    private var entryStack: [(key: String, value: JSONValue)] = []
    private var valueStack: [JSONValue] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONError) -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            throw JSONError(.byteOrderMark, "UTF-8 byte order mark is not allowed", at: 0)
        }
        skipWhitespace()
        guard position < bytes.count else { throw JSONError(.emptyInput, "empty input", at: position) }
        let value = try parseValue()
        skipWhitespace()
        guard position == bytes.count else {
            throw JSONError(.trailingData, "unexpected data after the JSON value", at: position)
        }
        return value
    }

    // MARK: Values

    private mutating func parseValue() throws(JSONError) -> JSONValue {
        guard position < bytes.count else { throw unexpectedEnd(expected: "a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return .object(try parseObject())
        case UInt8(ascii: "["): return .array(try parseArray())
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "N"), UInt8(ascii: "I"):
            return .number(try parseNumber())
        default: throw unexpectedCharacter(expected: "a value")
        }
    }

    private mutating func parseObject() throws(JSONError) -> JSONObject {
        try enterContainer()
        position += 1  // "{"
        let base = entryStack.count
        // Built once the object outgrows a linear scan, and handed to the object for its lookups.
        var positions = KeyPositions()
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return JSONObject()
        }
        while true {
            guard position < bytes.count else { throw unexpectedEnd(expected: "a string key") }
            guard bytes[position] == UInt8(ascii: "\"") else { throw unexpectedCharacter(expected: "a string key") }
            let keyOffset = position
            let key = try parseString()
            // Checked before the value is parsed, so a repeated key is reported where it is, not after its value.
            let count = entryStack.count - base
            let isDuplicate: Bool
            if count < JSONObject.hashedLookupThreshold {
                isDuplicate = entryStack[base...].contains { $0.key == key }
            } else {
                if count == JSONObject.hashedLookupThreshold { positions = JSONObject.positions(of: entryStack[base...]) }
                let hash = key.hashValue
                isDuplicate = positions.position(of: key, hash: hash) { entryStack[base + $0].key } != nil
                if !isDuplicate { positions.insert(hash: hash, position: count) }
            }
            if isDuplicate {
                throw JSONError(.duplicateKey(key), "duplicate key \(JSON.quoted(key))", at: keyOffset, depth: depth)
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            let value = try parseValue()
            entryStack.append((key, value))
            skipWhitespace()
            guard position < bytes.count else { throw unexpectedEnd(expected: "',' or '}'") }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                let entries = JSONParser.popItems(&entryStack, from: base, outermost: depth == 0)
                return JSONObject(parsedEntries: entries, positions: positions)
            default:
                throw unexpectedCharacter(expected: "',' or '}'")
            }
        }
    }

    private mutating func parseArray() throws(JSONError) -> [JSONValue] {
        try enterContainer()
        position += 1  // "["
        let base = valueStack.count
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return []
        }
        while true {
            skipWhitespace()
            valueStack.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw unexpectedEnd(expected: "',' or ']'") }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                return JSONParser.popItems(&valueStack, from: base, outermost: depth == 0)
            default:
                throw unexpectedCharacter(expected: "',' or ']'")
            }
        }
    }

    /// Removes and returns `stack[base...]`, the items of the container that just closed.
    private static func popItems<Item>(_ stack: inout [Item], from base: Int, outermost: Bool) -> [Item] {
        // The outermost container (a whole safetensors header) owns the entire stack, which is not needed again:
        // hand the storage over instead of copying, and retaining, every item.
        if outermost {
            defer { stack = [] }
            return stack
        }
        defer { stack.removeSubrange(base...) }
        return Array(stack[base...])
    }

    private mutating func enterContainer() throws(JSONError) {
        depth += 1
        guard depth <= maxDepth else {
            throw JSONError(.tooDeep, "nesting deeper than \(maxDepth) levels", at: position, depth: depth)
        }
    }

    private mutating func parseNumber() throws(JSONError) -> JSONNumber {
        switch JSONNumber.scan(bytes, from: position) {
        case .success(let length):
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[position..<position + length]), as: UTF8.self)
            position += length
            return JSONNumber(validatedText: text)
        case .failure(let error):
            throw JSONError(error.kind, error.message, at: error.offset, depth: depth)
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let start = position
        for index in 0..<literal.utf8CodeUnitCount {
            guard position < bytes.count, bytes[position] == literal.utf8Start[index] else {
                position = start
                throw JSONError(.syntax, "invalid literal (expected \(literal))", at: start, depth: depth)
            }
            position += 1
        }
    }

    // MARK: Strings

    /// Parses the string whose opening quote is at `position`.
    private mutating func parseString() throws(JSONError) -> String {
        let opening = position
        position += 1
        let start = position
        while position < bytes.count {
            let byte = bytes[position]
            if byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
                position += 1
            } else if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
                position += 1
                return text
            } else if byte == UInt8(ascii: "\\") {
                return try parseEscapedString(from: start, opening: opening)
            } else if byte >= 0x80 {
                try skipUTF8Sequence()
            } else {
                throw controlCharacterError(byte)
            }
        }
        throw JSONError(.syntax, "unterminated string", at: opening, depth: depth)
    }

    /// Continues a string from its first backslash, decoding into ``scratch``.
    private mutating func parseEscapedString(from start: Int, opening: Int) throws(JSONError) -> String {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return String(decoding: scratch, as: UTF8.self)
            } else if byte == UInt8(ascii: "\\") {
                try appendEscape()
            } else if byte >= 0x80 {
                let sequenceStart = position
                try skipUTF8Sequence()
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[sequenceStart..<position]))
            } else if byte >= 0x20 {
                scratch.append(byte)
                position += 1
            } else {
                throw controlCharacterError(byte)
            }
        }
        throw JSONError(.syntax, "unterminated string", at: opening, depth: depth)
    }

    /// Decodes the escape at `position` (a backslash) into ``scratch``.
    private mutating func appendEscape() throws(JSONError) {
        let escapeStart = position
        guard position + 1 < bytes.count else { throw JSONError(.syntax, "unterminated string", at: position, depth: depth) }
        let letter = bytes[position + 1]
        position += 2
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(letter)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try hex4(escapeStart: escapeStart)
            let scalarValue: UInt32
            switch unit {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed at once by an escaped low surrogate (RFC 8259 §7).
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                      bytes[position + 1] == UInt8(ascii: "u") else { throw loneSurrogate(unit, at: escapeStart) }
                let lowStart = position
                position += 2
                let low = try hex4(escapeStart: lowStart)
                guard (0xDC00...0xDFFF).contains(low) else { throw loneSurrogate(unit, at: escapeStart) }
                scalarValue = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            case 0xDC00...0xDFFF:
                throw loneSurrogate(unit, at: escapeStart)
            default:
                scalarValue = unit
            }
            appendUTF8(scalarValue)
        default:
            throw JSONError(.invalidEscape, "invalid escape (backslash followed by \(describe(byte: letter)))",
                            at: escapeStart, depth: depth)
        }
    }

    /// Appends the UTF-8 encoding of `value`, a Unicode scalar (surrogates were rejected before this point).
    private mutating func appendUTF8(_ value: UInt32) {
        switch value {
        case ..<0x80:
            scratch.append(UInt8(value))
        case ..<0x800:
            scratch.append(UInt8(0xC0 | value >> 6))
            scratch.append(UInt8(0x80 | value & 0x3F))
        case ..<0x10000:
            scratch.append(UInt8(0xE0 | value >> 12))
            scratch.append(UInt8(0x80 | value >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | value & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | value >> 18))
            scratch.append(UInt8(0x80 | value >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | value >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | value & 0x3F))
        }
    }

    /// Reads the four hex digits after a `\u`.
    private mutating func hex4(escapeStart: Int) throws(JSONError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard position < bytes.count, let digit = hexValue(bytes[position]) else {
                throw JSONError(.invalidEscape, "invalid \\u escape (expected 4 hex digits)", at: escapeStart, depth: depth)
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    private func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// Steps over the multi-byte UTF-8 sequence at `position`, or throws if it is not one.
    private mutating func skipUTF8Sequence() throws(JSONError) {
        guard let length = JSONParser.utf8SequenceLength(bytes, at: position) else {
            throw JSONError(.invalidUTF8, "invalid UTF-8", at: position, depth: depth)
        }
        position += length
    }

    /// The length of the well-formed UTF-8 sequence at `index` (Unicode §3.9 Table 3-7: no overlong forms, no
    /// surrogates, nothing above U+10FFFF), or nil.
    static func utf8SequenceLength(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        let lead = bytes[index]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: return nil
        }
        guard index + length <= bytes.count, secondRange.contains(bytes[index + 1]) else { return nil }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[index + offset]) { return nil }
        return length
    }

    // MARK: Helpers

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(JSONError) {
        guard position < bytes.count else { throw unexpectedEnd(expected: what) }
        guard bytes[position] == byte else { throw unexpectedCharacter(expected: what) }
        position += 1
    }

    private func unexpectedEnd(expected: String) -> JSONError {
        JSONError(.syntax, "unexpected end of input (expected \(expected))", at: position, depth: depth)
    }

    /// The error for the byte at `position`, which does not fit the grammar; invalid UTF-8 is reported as such.
    private func unexpectedCharacter(expected: String) -> JSONError {
        let byte = bytes[position]
        if byte < 0x80 {
            return JSONError(.syntax, "unexpected \(describe(byte: byte)) (expected \(expected))", at: position, depth: depth)
        }
        guard let length = JSONParser.utf8SequenceLength(bytes, at: position) else {
            return JSONError(.invalidUTF8, "invalid UTF-8", at: position, depth: depth)
        }
        let character = String(decoding: UnsafeBufferPointer(rebasing: bytes[position..<position + length]), as: UTF8.self)
        let scalar = character.unicodeScalars.first.map { "U+" + String($0.value, radix: 16, uppercase: true) } ?? "?"
        return JSONError(.syntax, "unexpected character \(scalar) (expected \(expected))", at: position, depth: depth)
    }

    private func controlCharacterError(_ byte: UInt8) -> JSONError {
        JSONError(.controlCharacter, "unescaped control character \(describe(byte: byte)) in string", at: position, depth: depth)
    }

    private func loneSurrogate(_ unit: UInt32, at offset: Int) -> JSONError {
        let hex = String(unit, radix: 16, uppercase: true)
        return JSONError(.loneSurrogate, "lone surrogate \\u\(hex) in string", at: offset, depth: depth)
    }

    /// A byte for a message: `'x'` if printable ASCII, else `byte 0x0A`.
    private func describe(byte: UInt8) -> String {
        if byte >= 0x21, byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        let hex = String(byte, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}
