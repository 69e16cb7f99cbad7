import PrimaDiagnose
import PrimaMetadata
import PrimaTrain

/// PAD-UFES-20 metadata as numeric feature rows for the metadata-only logistic-regression baseline
/// (Docs/evaluation.md), fitted on a training fold and applied unchanged to its held-out fold.
///
/// The fields are the checkpoint's schema fields in schema order — the records ``TrainingCases`` parsed against it —
/// minus the label (`diagnostic`) and the keys in ``excludedKeys`` (identifiers, and `biopsed`, which leaks the
/// label), even where a schema lists them as fields. Per field, as scikit-learn's `OneHotEncoder(handle_unknown=
/// "ignore")` and `StandardScaler` would be fitted on the training fold:
///
/// - boolean, category and text fields: one column per value the training fold has, the missing value (UNK, blank,
///   absent) counted as a value of its own. Order: `no`, `yes` for booleans; the schema's `values` order for
///   categories; UTF-8 byte order for text; missing last. A value the training fold never had (an unseen category,
///   or a missing value when no training case missed it) leaves every column of the field 0.
/// - number fields: two columns, the value standardised with the training fold's mean and population SD of the
///   known values ((v − mean) / SD; SD 1 where every known value is equal) and 0 where missing, then the missing
///   indicator (1 missing, 0 known). A number field with no known value in the training fold gives 0 in its value
///   column for every case.
///
/// Column names: `key=value` for one-hot columns (`region=FACE`, `smoke=no`), `key missing` for the missing value's
/// column of both kinds (`gender missing`, `age missing`) and the key for a number's value (`age`).
public struct TabularFeatures: Sendable {
    /// Keys that never become features: the identifiers and the label-leaking `biopsed` (Docs/prima-model.md).
    public static let excludedKeys: Set<String> = ["patient_id", "lesion_id", "img_id", "biopsed", CaseFolder.labelKey]

    /// One field's columns.
    enum Encoding: Sendable {
        /// One-hot over `values`, then a missing-value column if `missing`.
        case oneHot(key: String, values: [String], missing: Bool)
        /// Standardised value and missing indicator; `mean` nil when the training fold had no known value.
        case number(key: String, mean: Double?, scale: Double)
    }

    let encodings: [Encoding]
    /// One name per column, in column order.
    public let names: [String]

    /// Fits the encodings on the training fold's `cases` against the checkpoint's `schema`.
    public init(fitting cases: [TrainingCases.Case], schema: MetadataSchema) {
        self.init(fittingRecords: cases.map(\.record), schema: schema)
    }

    /// Fits the encodings on the training fold's metadata `records` against the checkpoint's `schema`.
    public init(fittingRecords records: [MetadataRecord], schema: MetadataSchema) {
        var encodings: [Encoding] = []
        for field in schema.fields where !Self.excludedKeys.contains(field.key) {
            let observed = records.map { $0[field.key] }
            switch field.kind {
            case .number:
                let known = observed.compactMap { value -> Double? in
                    if case .number(let number)? = value { return number }
                    return nil
                }
                guard !known.isEmpty else {
                    encodings.append(.number(key: field.key, mean: nil, scale: 1))
                    continue
                }
                let mean = known.reduce(0, +) / Double(known.count)
                let variance = known.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(known.count)
                let constant = known.allSatisfy { $0 == known[0] }
                encodings.append(.number(key: field.key, mean: mean, scale: constant ? 1 : variance.squareRoot()))
            case .boolean, .category, .text:
                let seen = Set(observed.map(Self.categoryName))
                let order: [String]
                switch field.kind {
                case .boolean: order = ["no", "yes"]
                case .category(let values, _): order = values
                default: order = seen.compactMap { $0 }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
                }
                encodings.append(.oneHot(key: field.key, values: order.filter { seen.contains($0) }, missing: seen.contains(nil)))
            }
        }
        self.encodings = encodings
        self.names = encodings.flatMap { encoding -> [String] in
            switch encoding {
            case .oneHot(let key, let values, let missing): values.map { "\(key)=\($0)" } + (missing ? ["\(key) missing"] : [])
            case .number(let key, _, _): [key, "\(key) missing"]
            }
        }
    }

    /// [N][names.count] feature rows of `cases` (a training or held-out fold).
    public func rows(_ cases: [TrainingCases.Case]) -> [[Double]] { cases.map { row($0.record) } }

    /// The feature row of one record.
    public func row(_ record: MetadataRecord) -> [Double] {
        var row: [Double] = []
        row.reserveCapacity(names.count)
        for encoding in encodings {
            switch encoding {
            case .oneHot(let key, let values, let missing):
                let name = Self.categoryName(record[key])
                row.append(contentsOf: values.map { $0 == name ? 1 : 0 })
                if missing { row.append(name == nil ? 1 : 0) }
            case .number(let key, let mean, let scale):
                if case .number(let value)? = record[key] {
                    row.append(mean.map { (value - $0) / scale } ?? 0)
                    row.append(0)
                } else {
                    row.append(contentsOf: [0, 1])
                }
            }
        }
        return row
    }

    /// The one-hot value name of a boolean, category or text value; nil when missing.
    static func categoryName(_ value: MetadataValue?) -> String? {
        switch value {
        case .boolean(let flag)?: flag ? "yes" : "no"
        case .category(let name)?, .text(let name)?: name
        case .number(let number)?: formatNumber(number)
        case nil: nil
        }
    }
}
