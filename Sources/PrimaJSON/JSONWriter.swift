extension JSONValue {
    /// Compact JSON text: no whitespace, object keys in stored order, numbers as their literal text, strings
    /// escaped as RFC 8259 requires and otherwise left as UTF-8.
    ///
    /// Escapes follow serde_json and Python's `json` (the writers of the files this toolkit reads): `\"`, `\\`,
    /// the short forms `\b \f \n \r \t`, and `\u00XX` for the other control characters. Parsing the result gives
    /// back an equal value.
    public func serialized() -> String {
        var out: [UInt8] = []
        JSONWriter.append(self, to: &out, indent: nil, level: 0)
        return String(decoding: out, as: UTF8.self)
    }

    /// Indented JSON text in the layout of Python's `json.dumps(value, indent: spaces)`, which is how
    /// transformers writes `config.json` and `model.safetensors.index.json`: one item per line, `": "` after
    /// keys, empty containers as `{}` and `[]`. Keys stay in stored order (sort them first to match
    /// `sort_keys=True`), and non-ASCII text stays UTF-8 (Python's default would escape it).
    /// Precondition: `spaces >= 0`.
    public func serialized(indent spaces: Int) -> String {
        precondition(spaces >= 0, "negative indent \(spaces)")
        var out: [UInt8] = []
        JSONWriter.append(self, to: &out, indent: spaces, level: 0)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Serialisation into a byte buffer.
enum JSONWriter {
    /// Appends `value`; `indent` nil means compact, else spaces per nesting `level`.
    static func append(_ value: JSONValue, to out: inout [UInt8], indent: Int?, level: Int) {
        switch value {
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let flag):
            out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let number):
            out.append(contentsOf: number.text.utf8)
        case .string(let text):
            appendString(text, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                appendLineBreak(to: &out, indent: indent, level: level + 1)
                append(element, to: &out, indent: indent, level: level + 1)
            }
            if !elements.isEmpty { appendLineBreak(to: &out, indent: indent, level: level) }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            for (position, (key, element)) in object.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                appendLineBreak(to: &out, indent: indent, level: level + 1)
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                if indent != nil { out.append(UInt8(ascii: " ")) }
                append(element, to: &out, indent: indent, level: level + 1)
            }
            if !object.isEmpty { appendLineBreak(to: &out, indent: indent, level: level) }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// When indenting, a line break and the indentation of nesting `level`; nothing in compact output.
    private static func appendLineBreak(to out: inout [UInt8], indent: Int?, level: Int) {
        guard let indent else { return }
        out.append(UInt8(ascii: "\n"))
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent * level))
    }

    /// Appends `text` as a quoted JSON string, copying unescaped runs in one go.
    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    let hexDigits = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: "u00".utf8)
                    out.append(hexDigits[Int(byte >> 4)])
                    out.append(hexDigits[Int(byte & 0x0F)])
                }
                runStart = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }
}
