/// Everything that can go wrong loading or configuring a tokenizer. Each error prints as one line that names the
/// file and, where there is one, the place in it: `tokenizer.json: pre_tokenizer.pretokenizers[0]: ...`.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read.
    case cannotRead(String, String)
    /// The file is not valid JSON.
    case malformedJSON(String, String)
    /// The JSON is valid but a field is missing or has the wrong type or value.
    case invalid(String, String)
    /// A pipeline component whose `type` this implementation does not know: (file, where, type).
    case unsupportedComponent(String, String, String)
    /// A regular expression the matcher cannot compile: (pattern, what is wrong).
    case invalidRegex(String, String)
    /// Truncation or padding settings that cannot work.
    case invalidSettings(String)

    public var description: String {
        switch self {
        case let .cannotRead(file, reason): return "\(file): cannot read: \(reason)"
        case let .malformedJSON(file, detail): return "\(file): malformed JSON: \(detail)"
        case let .invalid(file, detail): return "\(file): \(detail)"
        case let .unsupportedComponent(file, place, type):
            return "\(file): \(place): unsupported type \"\(type)\""
        case let .invalidRegex(pattern, detail): return "regex \(Self.abbreviated(pattern)): \(detail)"
        case let .invalidSettings(detail): return detail
        }
    }

    /// A pattern quoted for a message, its first 60 scalars and its length if it is longer (a crafted pattern can
    /// be megabytes long).
    static func abbreviated(_ pattern: String) -> String {
        let scalars = pattern.unicodeScalars
        guard scalars.count > 80 else { return pattern.debugDescription }
        return String(String.UnicodeScalarView(scalars.prefix(60))).debugDescription
            + "… (\(scalars.count) characters)"
    }
}
