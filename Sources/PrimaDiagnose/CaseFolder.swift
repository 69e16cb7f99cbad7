import Foundation
import PrimaIO
import PrimaMetadata

/// A PAD-UFES-20-style folder of cases: `metadata.csv` at the top, and image files anywhere below it
/// (PAD-UFES-20 ships them in `images/imgs_part_1/`, `imgs_part_2/`, `imgs_part_3/`), each named by a row's `img_id`.
///
/// Errors and skips. Everything that makes the whole batch doubtful is an error thrown by ``init(folder:classCodes:schema:)``,
/// before any case runs:
/// - the folder is missing or not a folder, `metadata.csv` is missing or unreadable, or a subfolder cannot be listed;
/// - the CSV is malformed, a value does not fit the schema, or an `img_id` repeats (``MetadataTable``'s errors);
/// - the CSV has no rows;
/// - an `img_id` is empty or is a path rather than a file name;
/// - two or more files below the folder have a row's `img_id` as their name (which one is meant is unknown);
/// - a row's true label (its `diagnostic` value) is not one of the checkpoint's class codes: the folder and the
///   model do not belong together, and the metrics would be meaningless.
///
/// A row whose image file does not exist is a per-case skip: the case is listed with ``Case/image`` holding the
/// error, so the batch reports it as a failed case (and leaves it out of the metrics) while the other cases run.
///
/// Hidden files and folders (names starting with ".") are not searched. File names match exactly (case-sensitive).
public struct CaseFolder: Sendable {
    /// The CSV column that holds the true class code. It is read as the schema's field of that name (a category
    /// in ``MetadataSchema/padUfes20``), so a schema without that field gives no labels.
    public static let labelKey = "diagnostic"

    /// One row of `metadata.csv`.
    public struct Case: Sendable {
        /// 1-based position among the CSV's records after the header.
        public let row: Int
        /// The `img_id` cell: the image's file name.
        public let imageID: String
        /// The absolute path of the image file, or the one-line reason there is none (the case is skipped).
        public let image: Result<String, ToolError>
        /// The row's metadata, validated against the schema. It holds the label field too, which the schema never
        /// renders into the metadata text.
        public let record: MetadataRecord
        /// The true class code, or nil if the row has none (no `diagnostic` column, or an empty or UNK cell).
        public let label: String?
    }

    /// The folder as given.
    public let folder: String
    /// Its `metadata.csv`.
    public let csvPath: String
    /// Every row, in CSV order.
    public let cases: [Case]

    /// Reads `folder/metadata.csv` against `schema`, finds each row's image, and checks each label against
    /// `classCodes` (the checkpoint's classes). Throws the errors listed on ``CaseFolder``.
    public init(folder: String, classCodes: [String], schema: MetadataSchema = .padUfes20) throws(ToolError) {
        var status = stat()
        if stat(folder, &status) != 0 && errno == ELOOP {
            throw ToolError.input("\(folder): too many levels of symbolic links (a symbolic link loop?)")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else {
            throw ToolError.input("\(folder): no such folder")
        }
        guard isDirectory.boolValue else { throw ToolError.input("\(folder): not a folder (expected metadata.csv and images)") }
        let csvPath = (folder as NSString).appendingPathComponent("metadata.csv")
        guard FileManager.default.fileExists(atPath: csvPath) else {
            throw ToolError.input("\(csvPath): not found (a case folder holds metadata.csv and the images)")
        }
        // Only a regular file: a FIFO or a device (/dev/zero) would hang or never end.
        try InputFile.check(csvPath)
        let table: MetadataTable
        do {
            table = try MetadataTable(csvPath: csvPath, schema: schema)
        } catch {
            throw ToolError.input(error.message)
        }
        guard !table.rows.isEmpty else { throw ToolError.input("\(csvPath): no cases (only a header)") }

        var wanted = Set<String>()
        for (position, row) in table.rows.enumerated() {
            let place = "\(csvPath): row \(position + 1): field 'img_id'"
            guard !row.imageID.isEmpty else { throw ToolError.input("\(place): empty") }
            guard !row.imageID.contains("/"), row.imageID != ".", row.imageID != ".." else {
                throw ToolError.input("\(place): '\(row.imageID)' is a path; expected a file name")
            }
            wanted.insert(row.imageID)
        }
        let found = try Self.findFiles(named: wanted, below: folder)

        var cases: [Case] = []
        for (position, row) in table.rows.enumerated() {
            let place = "\(csvPath): row \(position + 1) (img_id '\(row.imageID)')"
            let label = try Self.label(of: row.record, classCodes: classCodes, place: place)
            let paths = found[row.imageID] ?? []
            guard paths.count <= 1 else {
                throw ToolError.input("\(place): \(paths.count) files have that name: \(paths.joined(separator: ", "))")
            }
            let image: Result<String, ToolError> = paths.first.map { .success($0) }
                ?? .failure(ToolError.input("\(place): no image file of that name in \(folder) or its subfolders"))
            cases.append(Case(row: position + 1, imageID: row.imageID, image: image, record: row.record, label: label))
        }
        self.folder = folder
        self.csvPath = csvPath
        self.cases = cases
    }

    /// The number of cases with a true label.
    public var labelledCount: Int { cases.reduce(0) { $0 + ($1.label == nil ? 0 : 1) } }

    /// The label field of `record` as a class code; an error if it is not one of `classCodes`.
    private static func label(of record: MetadataRecord, classCodes: [String], place: String) throws(ToolError) -> String? {
        let code: String
        switch record[labelKey] {
        case nil: return nil
        case .category(let value)?, .text(let value)?: code = value
        case .number(let value)?: code = formatNumber(value)
        case .boolean(let flag)?: code = flag ? "True" : "False"
        }
        guard classCodes.contains(code) else {
            throw ToolError.input("\(place): field '\(labelKey)': '\(code)' is not one of the model's classes (\(classCodes.joined(separator: ", ")))")
        }
        return code
    }

    /// Absolute paths (sorted) of the non-directory entries below `folder` whose names are in `names`, by name;
    /// hidden entries are skipped.
    private static func findFiles(named names: Set<String>, below folder: String) throws(ToolError) -> [String: [String]] {
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        var listingError: (url: URL, error: Error)?
        guard let walk = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isDirectoryKey], options: [.skipsHiddenFiles],
            errorHandler: { url, error in
                listingError = (url, error)
                return false
            }) else {
            throw ToolError.input("\(folder): cannot list the folder")
        }
        var found: [String: [String]] = [:]
        while let url = walk.nextObject() as? URL {
            let name = url.lastPathComponent
            guard names.contains(name), (try? url.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) != true else { continue }
            found[name, default: []].append(url.path)
        }
        if let listingError {
            throw ToolError.input("\(listingError.url.path): cannot list the folder: \(listingError.error.localizedDescription)")
        }
        return found.mapValues { $0.sorted() }
    }
}
