import PrimaJSON

/// The fields of a patient-metadata record, in the order they are rendered, with how each is read and shown.
///
/// The schema is stored in the checkpoint as `files/metadata_schema.json` (see ``jsonValue`` for the layout), so
/// it is built from and written to JSON with PrimaJSON rather than `Codable`: the key order of the file is the
/// field order, and a hand-written reader gives one-line errors that name the field.
public struct MetadataSchema: Sendable, Equatable {
    /// Format name written into the schema file.
    public static let formatName = "prima-metadata-schema"
    /// Integer version of the schema file layout.
    public static let formatVersion = 1

    /// One column of the metadata table.
    public struct Field: Sendable, Equatable {
        /// How values are parsed and rendered.
        public enum Kind: Sendable, Equatable {
            /// True/False; rendered as "yes"/"no".
            case boolean
            /// A number, rendered without trailing zeros and followed by `unit` if given.
            case number(unit: String?)
            /// One of `values`; rendered by `labels[value]`, else the value lower-cased.
            case category(values: [String], labels: [String: String])
            /// Free text, rendered as written.
            case text
        }

        /// What a field feeds: the rendered text, the soft-target codes (L_soft), or both.
        public struct Uses: OptionSet, Sendable, Hashable {
            public let rawValue: Int
            public init(rawValue: Int) { self.rawValue = rawValue }
            /// The field appears in the metadata text.
            public static let text = Uses(rawValue: 1)
            /// The field contributes a one-hot code to the soft targets.
            public static let softTarget = Uses(rawValue: 2)
        }

        /// CSV column name and JSON key.
        public var key: String
        /// Name shown before the value in the text.
        public var displayName: String
        public var kind: Kind
        public var uses: Uses

        public init(key: String, displayName: String, kind: Kind, uses: Uses = [.text, .softTarget]) {
            self.key = key
            self.displayName = displayName
            self.kind = kind
            self.uses = uses
        }
    }

    /// Fields in rendering order.
    public var fields: [Field]
    /// Columns that may appear in input but are neither rendered nor validated (identifiers, leaking columns).
    public var ignoredKeys: [String]

    /// Precondition: keys are unique across `fields` and `ignoredKeys`.
    public init(fields: [Field], ignoredKeys: [String] = []) {
        let keys = fields.map(\.key) + ignoredKeys
        precondition(Set(keys).count == keys.count, "duplicate metadata keys in \(keys)")
        self.fields = fields
        self.ignoredKeys = ignoredKeys
    }

    /// The field for `key`, if the schema has one.
    public func field(_ key: String) -> Field? { fields.first { $0.key == key } }
}

// MARK: - The default schema

extension MetadataSchema {
    /// PAD-UFES-20's `metadata.csv` (Pacheco et al. 2020), 26 columns.
    ///
    /// - `patient_id`, `lesion_id`, `img_id` are identifiers: accepted and ignored.
    /// - `biopsed` is left out of the schema (only ignored): in PAD-UFES-20 every cancer (BCC, SCC, MEL) is
    ///   biopsied, so the column leaks the label (Docs/prima-model.md).
    /// - `diagnostic` is the label: validated and used for the soft targets, never rendered.
    /// - `background_father`/`background_mother` are free text (country or region names whose set is not closed).
    /// - `fitspatrick` (sic) is the Fitzpatrick skin type, a category "1"…"6"; "3.0" is read as "3".
    public static let padUfes20: MetadataSchema = {
        let both: Field.Uses = [.text, .softTarget]
        func yesNo(_ key: String, _ name: String) -> Field { Field(key: key, displayName: name, kind: .boolean, uses: both) }
        let regions = ["ARM", "NECK", "FACE", "HAND", "FOREARM", "CHEST", "NOSE", "THIGH", "SCALP", "EAR", "BACK", "FOOT", "ABDOMEN", "LIP"]
        return MetadataSchema(
            fields: [
                yesNo("smoke", "smokes"),
                yesNo("drink", "drinks alcohol"),
                Field(key: "background_father", displayName: "father's background", kind: .text),
                Field(key: "background_mother", displayName: "mother's background", kind: .text),
                Field(key: "age", displayName: "age", kind: .number(unit: "years")),
                yesNo("pesticide", "pesticide exposure"),
                Field(key: "gender", displayName: "gender", kind: .category(values: ["FEMALE", "MALE"], labels: [:])),
                yesNo("skin_cancer_history", "skin cancer history"),
                yesNo("cancer_history", "cancer history"),
                yesNo("has_piped_water", "piped water"),
                yesNo("has_sewage_system", "sewage system"),
                Field(key: "fitspatrick", displayName: "Fitzpatrick skin type",
                      kind: .category(values: ["1", "2", "3", "4", "5", "6"], labels: [:])),
                Field(key: "region", displayName: "region", kind: .category(values: regions, labels: [:])),
                Field(key: "diameter_1", displayName: "diameter 1", kind: .number(unit: "mm")),
                Field(key: "diameter_2", displayName: "diameter 2", kind: .number(unit: "mm")),
                Field(key: "diagnostic", displayName: "diagnosis",
                      kind: .category(values: ["BCC", "SCC", "ACK", "SEK", "MEL", "NEV"], labels: [:]), uses: .softTarget),
                yesNo("itch", "itches"),
                yesNo("grew", "grew"),
                yesNo("hurt", "hurts"),
                yesNo("changed", "changed"),
                yesNo("bleed", "bleeds"),
                yesNo("elevation", "elevated"),
            ],
            ignoredKeys: ["patient_id", "lesion_id", "img_id", "biopsed"])
    }()
}

// MARK: - JSON form

extension MetadataSchema {
    /// The schema file:
    /// ```
    /// {"format": "prima-metadata-schema", "version": 1,
    ///  "fields": [{"key": "age", "name": "age", "kind": "number", "unit": "years", "text": true, "soft_target": true},
    ///             {"key": "region", "name": "region", "kind": "category", "values": ["ARM", ...],
    ///              "labels": {"ARM": "arm"}, "text": true, "soft_target": true}, ...],
    ///  "ignored": ["patient_id", ...]}
    /// ```
    /// `unit` and `labels` are omitted when absent/empty; labels are written in `values` order.
    public var jsonValue: JSONValue {
        var list: [JSONValue] = []
        for field in fields {
            var object = JSONObject()
            object["key"] = .string(field.key)
            object["name"] = .string(field.displayName)
            switch field.kind {
            case .boolean:
                object["kind"] = "boolean"
            case .number(let unit):
                object["kind"] = "number"
                if let unit { object["unit"] = .string(unit) }
            case .category(let values, let labels):
                object["kind"] = "category"
                object["values"] = .array(values.map { .string($0) })
                if !labels.isEmpty {
                    object["labels"] = .object(JSONObject(values.compactMap { value in labels[value].map { (value, .string($0)) } }))
                }
            case .text:
                object["kind"] = "text"
            }
            object["text"] = .bool(field.uses.contains(.text))
            object["soft_target"] = .bool(field.uses.contains(.softTarget))
            list.append(.object(object))
        }
        return .object(JSONObject([
            ("format", .string(Self.formatName)),
            ("version", .int(Self.formatVersion)),
            ("fields", .array(list)),
            ("ignored", .array(ignoredKeys.map { .string($0) })),
        ]))
    }

    /// Indented JSON text of ``jsonValue``.
    public func serialized() -> String { jsonValue.serialized(indent: 2) }

    /// Parses schema-file text; `source` names the file in errors.
    public init(jsonText: String, source: String = "metadata_schema.json") throws(MetadataError) {
        guard jsonText.utf8.count <= MetadataLimits.maxSchemaBytes else {
            throw MetadataError("\(source): larger than the limit of \(MetadataLimits.maxSchemaBytes) bytes")
        }
        let value: JSONValue
        do {
            value = try JSON.parse(jsonText)
        } catch {
            throw MetadataError("\(source): malformed JSON: \(error)")
        }
        try self.init(json: value, source: source)
    }

    /// Reads the layout documented at ``jsonValue``; every missing or mistyped member is an error.
    public init(json: JSONValue, source: String = "metadata_schema.json") throws(MetadataError) {
        func fail(_ message: String) -> MetadataError { MetadataError("\(source): \(message)") }
        guard let root = json.object else { throw fail("expected a JSON object, got \(json.typeName)") }
        guard root["format"]?.string == Self.formatName else { throw fail("format is not \"\(Self.formatName)\"") }
        guard let version = root["version"]?.int else { throw fail("missing integer \"version\"") }
        guard version == Self.formatVersion else { throw fail("unsupported version \(version) (this reader knows \(Self.formatVersion))") }
        guard let list = root["fields"]?.array else { throw fail("missing array \"fields\"") }
        guard list.count <= MetadataLimits.maxColumns else {
            throw fail("\(list.count) fields; the limit is \(MetadataLimits.maxColumns)")
        }
        var fields: [Field] = []
        var seen = Set<String>()
        for (index, item) in list.enumerated() {
            guard let object = item.object else { throw fail("fields[\(index)] is not an object") }
            guard let key = object["key"]?.string else { throw fail("fields[\(index)] has no string \"key\"") }
            func fieldFail(_ message: String) -> MetadataError { fail("field '\(key)': \(message)") }
            guard seen.insert(key).inserted else { throw fieldFail("duplicate key") }
            guard let name = object["name"]?.string else { throw fieldFail("no string \"name\"") }
            guard let text = object["text"]?.bool, let soft = object["soft_target"]?.bool else {
                throw fieldFail("\"text\" and \"soft_target\" must be booleans")
            }
            let kind: Field.Kind
            switch object["kind"]?.string {
            case "boolean":
                kind = .boolean
            case "number":
                switch object["unit"] {
                case nil, .null?: kind = .number(unit: nil)
                case .string(let unit)?: kind = .number(unit: unit)
                default: throw fieldFail("\"unit\" must be a string")
                }
            case "category":
                guard let array = object["values"]?.array else { throw fieldFail("no array \"values\"") }
                var values: [String] = []
                for value in array {
                    guard let string = value.string else { throw fieldFail("\"values\" must hold strings") }
                    values.append(string)
                }
                var labels: [String: String] = [:]
                if let labelValue = object["labels"] {
                    guard let labelObject = labelValue.object else { throw fieldFail("\"labels\" must be an object") }
                    for (value, label) in labelObject.entries {
                        guard values.contains(value) else { throw fieldFail("label for '\(value)', which is not in \"values\"") }
                        guard let string = label.string else { throw fieldFail("label for '\(value)' is not a string") }
                        labels[value] = string
                    }
                }
                kind = .category(values: values, labels: labels)
            case "text":
                kind = .text
            case let other:
                throw fieldFail("unknown kind \(other.map { "\"\($0)\"" } ?? "(missing)")")
            }
            var uses: Field.Uses = []
            if text { uses.insert(.text) }
            if soft { uses.insert(.softTarget) }
            fields.append(Field(key: key, displayName: name, kind: kind, uses: uses))
        }
        var ignored: [String] = []
        for value in root["ignored"]?.array ?? [] {
            guard let key = value.string else { throw fail("\"ignored\" must hold strings") }
            guard seen.insert(key).inserted else { throw fail("key '\(key)' is both a field and ignored, or repeated") }
            ignored.append(key)
        }
        self.init(fields: fields, ignoredKeys: ignored)
    }
}

/// A one-line error naming the file or record and the field.
public struct MetadataError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
