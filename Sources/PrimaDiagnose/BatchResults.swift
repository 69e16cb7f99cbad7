import PrimaJSON

/// The per-case results of a batch over one model's classes, in CSV order, and their two file forms.
public struct BatchResults: Sendable {
    /// Format name written into the JSON form.
    public static let formatName = "prima-diagnose-results"
    /// Integer version of the JSON layout.
    public static let formatVersion = 1

    /// The checkpoint's class codes, in its order.
    public let classCodes: [String]
    /// One result per case.
    public let cases: [CaseResult]

    /// Precondition: every diagnosis is over `classCodes`, in that order.
    public init(classCodes: [String], cases: [CaseResult]) {
        for result in cases {
            if let diagnosis = result.diagnosis {
                precondition(diagnosis.classCodes == classCodes, "\(result.imageID): classes \(diagnosis.classCodes), expected \(classCodes)")
            }
        }
        self.classCodes = classCodes
        self.cases = cases
    }

    /// CSV text, RFC 4180 (CRLF line ends; fields with a comma, quote or line break quoted, quotes doubled):
    /// ```
    /// img_id,predicted,p_BCC,…,p_NEV,true_label,correct,error
    /// PAT_8_15_820.png,BCC,0.91,…,0.001,BCC,yes,
    /// PAT_9_17_80.png,,,…,,,,metadata.csv: row 2 (img_id 'PAT_9_17_80.png'): no image file …
    /// ```
    /// One `p_<code>` column per class in class order, probabilities in shortest round-trip float32 form.
    /// `true_label` and `correct` (yes/no) are empty for an unlabelled case, `correct` also for a failed one;
    /// `error` is empty unless the case failed, and then `predicted` and the probabilities are empty.
    /// Text taken from the input (image ids, labels, class codes, error messages) that starts with `=`, `+`, `-`, `@`,
    /// a tab or a carriage return gets a leading `'`, so that a spreadsheet shows it as text instead of running it
    /// as a formula (OWASP's CSV-injection rule); numbers are written as they are.
    public func csvText() -> String {
        var lines = [(["img_id", "predicted"] + classCodes.map { "p_\($0)" } + ["true_label", "correct", "error"]).map { csvField(inert($0)) }]
        for result in cases {
            var fields = [inert(result.imageID)]
            if let diagnosis = result.diagnosis {
                fields.append(inert(diagnosis.predicted))
                fields += diagnosis.probabilities.map { String($0) }
            } else {
                fields += Array(repeating: "", count: 1 + classCodes.count)
            }
            fields.append(inert(result.label ?? ""))
            fields.append(result.isCorrect.map { $0 ? "yes" : "no" } ?? "")
            fields.append(inert(result.error ?? ""))
            lines.append(fields.map(csvField))
        }
        return lines.map { $0.joined(separator: ",") + "\r\n" }.joined()
    }

    /// The JSON form:
    /// ```
    /// {"format": "prima-diagnose-results", "version": 1, "class_codes": ["BCC", …],
    ///  "cases": [{"img_id": "PAT_8_15_820.png", "predicted": "BCC", "probabilities": {"BCC": 0.91, …},
    ///             "true_label": "BCC", "correct": true, "error": null}, …]}
    /// ```
    /// Every case has every key: `predicted` and `probabilities` are null for a failed case, `true_label` and
    /// `correct` null for an unlabelled one (`correct` also for a failed one), `error` null unless it failed.
    /// Probabilities are keyed by class code in class order; a non-finite probability is written as null.
    public var jsonValue: JSONValue {
        let list: [JSONValue] = cases.map { result in
            let diagnosis = result.diagnosis
            return .object(JSONObject([
                ("img_id", .string(result.imageID)),
                ("predicted", diagnosis.map { .string($0.predicted) } ?? .null),
                ("probabilities", diagnosis.map { .object(JSONObject(zip($0.classCodes, $0.probabilities.map(jsonProbability)).map { ($0, $1) })) } ?? .null),
                ("true_label", result.label.map { .string($0) } ?? .null),
                ("correct", result.isCorrect.map { .bool($0) } ?? .null),
                ("error", result.error.map { .string($0) } ?? .null),
            ]))
        }
        return .object(JSONObject([
            ("format", .string(Self.formatName)),
            ("version", .int(Self.formatVersion)),
            ("class_codes", .array(classCodes.map { .string($0) })),
            ("cases", .array(list)),
        ]))
    }

    /// ``jsonValue`` as indented text (two spaces) with a final line break, as written to a file.
    public func jsonText() -> String { jsonValue.serialized(indent: 2) + "\n" }

    /// The summary of these results.
    public var summary: BatchSummary { BatchSummary(self) }
}

/// A probability as JSON: its shortest float32 form, or null if it is NaN or infinite (JSON has neither).
private func jsonProbability(_ value: Float) -> JSONValue { value.isFinite ? .number(JSONNumber(value)) : .null }

/// `text` with a leading `'` if a spreadsheet would read it as a formula (it starts with `=`, `+`, `-`, `@`, tab or CR).
private func inert(_ text: String) -> String {
    guard let first = text.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) else { return text }
    return "'" + text
}

/// One CSV field, quoted (RFC 4180) if it holds a comma, a double quote or a line break.
private func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return text }
    return "\"" + text.replacing("\"", with: "\"\"") + "\""
}
