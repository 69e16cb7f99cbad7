/// Text from hostile files made safe to print.
public enum Terminal {
    /// `text` kept to one line and free of terminal control: names taken from hostile files (tensor names, labels,
    /// CSV fields, paths) may hold newlines or escape sequences that would forge further lines or drive the
    /// terminal. Every control character (C0, DEL, C1) becomes a visible escape: `\n`, `\r`, `\t`, or `\u{XX}`;
    /// with `keepNewlines`, line feeds stay (for text that is several lines on purpose).
    public static func escaped(_ text: String, keepNewlines: Bool = false) -> String {
        var result = ""
        result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A where keepNewlines: result.unicodeScalars.append(scalar)
            case 0x0A: result += "\\n"
            case 0x0D: result += "\\r"
            case 0x09: result += "\\t"
            case 0x00...0x1F, 0x7F...0x9F: result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Whether `text` holds a control character (C0, DEL, C1).
    public static func hasControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }
}
