/// A JSON number kept as its literal text, so integers up to 2^64-1 stay exact and a value written back out is
/// byte-for-byte what was read.
///
/// Equality compares the text: `1`, `1.0` and `1e0` are different numbers here, as they are different documents.
public struct JSONNumber: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The literal, e.g. `-12`, `0.5`, `1e-5`. Always valid RFC 8259 number syntax.
    public let text: String

    /// Wraps text the parser has already checked against the number grammar.
    init(validatedText: String) { text = validatedText }

    /// The number spelled by `text`, or nil if `text` is not exactly one RFC 8259 number
    /// (no sign `+`, no leading zeros, no NaN or Infinity, no surrounding spaces).
    public init?(_ text: String) {
        var copy = text
        let valid = copy.withUTF8 { utf8 in (try? JSONNumber.scan(utf8, from: 0).get()) == utf8.count }
        guard valid else { return nil }
        self.text = text
    }

    /// The integer `value`, exactly.
    public init(_ value: some BinaryInteger) { text = String(value) }

    /// `value` in Swift's shortest round-trip notation (`0.1`, `1e-05`), which is valid JSON number syntax.
    /// Precondition: `value` is finite (JSON has no NaN or Infinity).
    public init<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F) {
        precondition(value.isFinite, "JSON has no representation for \(value)")
        text = String(value)
    }

    /// The literal text.
    public var description: String { text }

    /// True if the literal is an integer: no fraction and no exponent.
    public var isInteger: Bool { !text.utf8.contains { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") } }

    /// The value if the literal is an integer in `Int64` range, else nil. `-0` is 0.
    public var int64: Int64? {
        guard isInteger else { return nil }
        let utf8 = text.utf8
        let negative = utf8.first == UInt8(ascii: "-")
        guard let magnitude = JSONNumber.parseDigits(utf8.dropFirst(negative ? 1 : 0)) else { return nil }
        if negative {
            // Int64.min's magnitude is one more than Int64.max, so negate in the unsigned domain.
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return Int64(exactly: magnitude)
    }

    /// The value if the literal is a non-negative integer up to 2^64-1, else nil. `-0` is 0.
    public var uint64: UInt64? {
        guard isInteger else { return nil }
        let utf8 = text.utf8
        if utf8.first == UInt8(ascii: "-") {
            return utf8.dropFirst().allSatisfy { $0 == UInt8(ascii: "0") } ? 0 : nil
        }
        return JSONNumber.parseDigits(utf8[...])
    }

    /// The nearest `Double`; magnitudes beyond `Double`'s range become ±infinity, as strtod rounds them.
    public var double: Double {
        if let value = Double(text) { return value }
        // Swift's parser already returns ±inf on overflow; this only covers a platform that declines instead.
        return text.hasPrefix("-") ? -.infinity : .infinity
    }

    /// Decimal digits as a `UInt64`, or nil on overflow.
    private static func parseDigits(_ digits: Substring.UTF8View) -> UInt64? {
        var value: UInt64 = 0
        for byte in digits {
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(UInt64(byte &- UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }

    /// The length of the number literal starting at `start`, checked against the RFC 8259 grammar
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; shared with the parser so there is one grammar.
    /// A failure says what is wrong and where, as the parser reports it.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Result<Int, JSONError> {
        var position = start
        func isDigit(_ index: Int) -> Bool { index < bytes.count && bytes[index] &- UInt8(ascii: "0") < 10 }
        func skipDigits() { while isDigit(position) { position += 1 } }
        func failure(_ kind: JSONError.Kind, _ message: String) -> Result<Int, JSONError> {
            .failure(JSONError(kind, message, at: position))
        }

        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        if position < bytes.count, bytes[position] == UInt8(ascii: "I") || bytes[position] == UInt8(ascii: "N") {
            return failure(.nonFiniteNumber, "NaN and Infinity are not JSON numbers")
        }
        guard isDigit(position) else { return failure(.syntax, "expected a digit") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if isDigit(position) { return failure(.leadingZero, "leading zero in number") }
        } else {
            skipDigits()
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard isDigit(position) else { return failure(.syntax, "expected a digit after the decimal point") }
            skipDigits()
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard isDigit(position) else { return failure(.syntax, "expected a digit in the exponent") }
            skipDigits()
        }
        return .success(position - start)
    }
}
