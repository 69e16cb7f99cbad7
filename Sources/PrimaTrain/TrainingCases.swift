import Foundation
import PrimaDiagnose
import PrimaIO
import PrimaImage
import PrimaMetadata

/// The labelled cases of a PAD-UFES-20-style folder as training reads them (Formats/prima-training.md §3.1): the
/// rows of `metadata.csv` (read by ``CaseFolder`` against the checkpoint's schema and classes), each with its
/// patient and lesion, minus the rows whose image is missing or does not decode, which are skipped and reported.
///
/// A lesion is the pair (patient_id, lesion_id): PAD-UFES-20 reuses lesion ids across patients (1,641 distinct
/// `lesion_id` values, 1,891 lesions).
///
/// Errors (one line naming the file and the row): everything ``CaseFolder`` refuses (missing or malformed
/// `metadata.csv`, a label that is not one of the classes, …); a row without a label, a patient_id or a
/// lesion_id; a lesion whose rows disagree on the label; no usable case left after the skips.
public struct TrainingCases: Sendable {
    /// One usable row.
    public struct Case: Sendable, Equatable {
        /// 1-based position among the CSV's records after the header.
        public let row: Int
        public let imageID: String
        /// The image file's absolute path.
        public let imagePath: String
        /// The row's metadata against the checkpoint's schema (the label field included; identifiers are not).
        public let record: MetadataRecord
        /// The position of the row's label in ``TrainingCases/classCodes``.
        public let label: Int
        public let patientID: String
        public let lesionID: String

        /// The lesion as one string: patient_id, U+0000, lesion_id (U+0000 cannot occur in a CSV cell we accept
        /// as text, so two different pairs never give the same key).
        public var lesionKey: String { patientID + "\u{0}" + lesionID }
    }

    /// A row that is left out, with the one-line reason (its image file is missing or does not decode).
    public struct Skipped: Sendable, Equatable {
        public let row: Int
        public let imageID: String
        public let reason: String
    }

    /// The folder's `metadata.csv`, for messages.
    public let csvPath: String
    /// The checkpoint's classes; labels index them.
    public let classCodes: [String]
    /// The schema the records were checked against (the checkpoint's).
    public let schema: MetadataSchema
    /// The usable rows, in CSV order.
    public let cases: [Case]
    /// The rows left out, in CSV order: the caller warns about each and counts them.
    public let skipped: [Skipped]

    /// The CSV columns naming the patient and the lesion.
    public static let patientKey = "patient_id"
    public static let lesionKey = "lesion_id"

    /// Reads `folder` against the checkpoint's `schema` and `classCodes`. With `checkImages`, every image is
    /// decoded once (PNG, within `imageLimits`) and a row whose image does not decode is skipped; without it only
    /// a missing file is skipped (a corrupt one then fails where it is first read).
    public init(folder: String, classCodes: [String], schema: MetadataSchema, checkImages: Bool = true,
                imageLimits: ImageLimits = .standard) throws(ToolError) {
        let readSchema = Self.schemaReadingIdentifiers(schema)
        let caseFolder = try CaseFolder(folder: folder, classCodes: classCodes, schema: readSchema)
        var cases: [Case] = []
        var skipped: [Skipped] = []
        var lesionLabels: [String: (label: Int, row: Int)] = [:]
        for item in caseFolder.cases {
            let place = "\(caseFolder.csvPath): row \(item.row) (img_id '\(item.imageID)')"
            guard let code = item.label, let label = classCodes.firstIndex(of: code) else {
                throw ToolError.input("\(place): no label (field '\(CaseFolder.labelKey)' is empty or UNK); training needs every row labelled")
            }
            let patient = try Self.identifier(Self.patientKey, of: item.record, place: place)
            let lesion = try Self.identifier(Self.lesionKey, of: item.record, place: place)
            let lesionKey = patient + "\u{0}" + lesion
            if let earlier = lesionLabels[lesionKey], earlier.label != label {
                throw ToolError.input("\(place): lesion (\(patient), \(lesion)) is \(code) here but \(classCodes[earlier.label]) in row \(earlier.row); a lesion has one diagnosis")
            }
            lesionLabels[lesionKey] = lesionLabels[lesionKey] ?? (label, item.row)
            switch item.image {
            case .failure(let error):
                skipped.append(Skipped(row: item.row, imageID: item.imageID, reason: error.description))
            case .success(let path):
                // The identifiers were read only to group the rows: the record keeps the checkpoint's fields alone.
                let record = MetadataRecord(values: item.record.values.filter { schema.field($0.key) != nil })
                cases.append(Case(row: item.row, imageID: item.imageID, imagePath: path, record: record, label: label,
                                  patientID: patient, lesionID: lesion))
            }
        }
        if checkImages {
            let problems = Self.undecodable(cases.map(\.imagePath), limits: imageLimits)
            for (position, problem) in zip(cases.indices, problems) {
                guard let problem else { continue }
                skipped.append(Skipped(row: cases[position].row, imageID: cases[position].imageID, reason: problem))
            }
            cases = zip(cases, problems).filter { $1 == nil }.map(\.0)
            skipped.sort { $0.row < $1.row }
        }
        guard !cases.isEmpty else {
            throw ToolError.input("\(caseFolder.csvPath): no usable case (all \(skipped.count) rows skipped: missing or corrupt images)")
        }
        self.init(csvPath: caseFolder.csvPath, classCodes: classCodes, schema: schema, cases: cases, skipped: skipped)
    }

    /// Cases given directly (tests, and callers that build their own tables). Precondition: every label indexes
    /// `classCodes`.
    public init(csvPath: String, classCodes: [String], schema: MetadataSchema, cases: [Case], skipped: [Skipped] = []) {
        precondition(cases.allSatisfy { classCodes.indices.contains($0.label) }, "a case's label is not a class index")
        self.csvPath = csvPath
        self.classCodes = classCodes
        self.schema = schema
        self.cases = cases
        self.skipped = skipped
    }

    /// For each path, nil if the PNG decodes within `limits`, else the one-line reason; decoded on every core
    /// (each result lands at its own index, so the outcome does not depend on the threads).
    static func undecodable(_ paths: [String], limits: ImageLimits) -> [String?] {
        final class Results: @unchecked Sendable {
            var values: [String?]
            let lock = NSLock()
            init(count: Int) { values = [String?](repeating: nil, count: count) }
        }
        let results = Results(count: paths.count)
        DispatchQueue.concurrentPerform(iterations: paths.count) { index in
            var problem: String?
            do throws(ImageError) {
                _ = try PNGDecoder.decode(contentsOf: paths[index], limits: limits)
            } catch {
                problem = error.description
            }
            results.lock.lock()
            results.values[index] = problem
            results.lock.unlock()
        }
        return results.values
    }

    /// `schema` with patient_id and lesion_id read as text fields that feed neither the text nor the soft targets
    /// (the reference schema only ignores them), so that the records carry them for grouping.
    static func schemaReadingIdentifiers(_ schema: MetadataSchema) -> MetadataSchema {
        var fields = schema.fields
        var ignored = schema.ignoredKeys
        for key in [patientKey, lesionKey] where schema.field(key) == nil {
            ignored.removeAll { $0 == key }
            fields.append(MetadataSchema.Field(key: key, displayName: key, kind: .text, uses: []))
        }
        return MetadataSchema(fields: fields, ignoredKeys: ignored)
    }

    /// The identifier `key` of a row as text; an error if it is absent, empty or UNK.
    static func identifier(_ key: String, of record: MetadataRecord, place: String) throws(ToolError) -> String {
        switch record[key] {
        case .text(let value)?, .category(let value)?: return value
        case .number(let value)?: return formatNumber(value)
        case .boolean(let flag)?: return flag ? "True" : "False"
        case nil: throw ToolError.input("\(place): no \(key) (training groups the rows by patient and lesion)")
        }
    }
}
