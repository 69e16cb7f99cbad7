import PrimaDiagnose
import PrimaIO
import PrimaMetadata
import PrimaTensor

/// The metadata vectors y_i of L_soft (Docs/prima-model.md; Formats/prima-training.md §3.5): one one-hot block per
/// soft-target field of the checkpoint's schema, in schema order, then the diagnosis one-hot weighted ×3.
///
/// Blocks: a boolean field has the codes (no, yes); a category its `values`; a number its bins (value v falls in
/// bin #{edges e : v ≥ e}, so k edges give k + 1 bins); a text field the distinct values of the records it was
/// built from, sorted by their UTF-8 bytes. An unknown value (UNK, blank, absent, or a text value not in the
/// list) leaves its block all zero: two unknowns are not evidence of similarity. The diagnosis block has the
/// checkpoint's class codes, value 3 at the case's class. With `labelsOnly` (the `soft_labels_only` ablation)
/// only the diagnosis block remains, still weighted ×3.
public struct SoftTargetEncoder: Sendable {
    /// One block of y.
    public struct Block: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            case boolean
            case category([String])
            /// Ascending bin edges.
            case number(edges: [Double])
            case text([String])
            /// The label field, over the checkpoint's classes.
            case label([String])
        }

        public let key: String
        public let kind: Kind
        /// The block's width.
        public var width: Int {
            switch kind {
            case .boolean: 2
            case .category(let values), .text(let values), .label(let values): values.count
            case .number(let edges): edges.count + 1
            }
        }
    }

    /// The weight of the diagnosis one-hot (Docs/prima-model.md).
    public static let labelWeight: Float = 3

    /// Bin edges of number fields without explicit ones, by the field's unit: ages in years
    /// ([0, 30), [30, 45), [45, 60), [60, 75), [75, ∞): PAD-UFES-20's ages run 6–94, most 40–80) and lesion
    /// diameters in mm ([0, 5), [5, 10), [10, 15), [15, 20), [20, ∞): most are 3–20 mm).
    public static let defaultEdgesByUnit: [String: [Double]] = ["years": [30, 45, 60, 75], "mm": [5, 10, 15, 20]]

    public let blocks: [Block]
    /// D, the length of y.
    public var width: Int { blocks.reduce(0) { $0 + $1.width } }

    /// The blocks for `schema` (the checkpoint's) and `classCodes`. `numberEdges` gives bin edges by field key
    /// (ascending, finite); a soft-target number field with neither those nor a unit of ``defaultEdgesByUnit`` is
    /// an error. Text fields list the values found in `records` (the whole folder, so that D does not depend on
    /// the split).
    public init(schema: MetadataSchema, classCodes: [String], labelsOnly: Bool = false, numberEdges: [String: [Double]] = [:],
                records: [MetadataRecord]) throws(ToolError) {
        var blocks: [Block] = []
        if !labelsOnly {
            for field in schema.fields where field.uses.contains(.softTarget) && field.key != CaseFolder.labelKey {
                switch field.kind {
                case .boolean:
                    blocks.append(Block(key: field.key, kind: .boolean))
                case .category(let values, _):
                    blocks.append(Block(key: field.key, kind: .category(values)))
                case .number(let unit):
                    guard let edges = numberEdges[field.key] ?? unit.flatMap({ Self.defaultEdgesByUnit[$0] }) else {
                        throw ToolError.input("metadata schema: field '\(field.key)' is a soft-target number without bin edges (units with default edges: \(Self.defaultEdgesByUnit.keys.sorted().joined(separator: ", ")))")
                    }
                    guard edges.allSatisfy(\.isFinite), zip(edges, edges.dropFirst()).allSatisfy({ $0 < $1 }) else {
                        throw ToolError.input("soft targets: bin edges of field '\(field.key)' must be finite and strictly ascending, got \(edges)")
                    }
                    blocks.append(Block(key: field.key, kind: .number(edges: edges)))
                case .text:
                    var values = Set<String>()
                    for record in records {
                        if case .text(let value)? = record[field.key] { values.insert(value) }
                    }
                    blocks.append(Block(key: field.key, kind: .text(values.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })))
                }
            }
        }
        blocks.append(Block(key: CaseFolder.labelKey, kind: .label(classCodes)))
        self.blocks = blocks
    }

    /// y for one record: D floats.
    public func vector(_ record: MetadataRecord) -> [Float] {
        var y = [Float](repeating: 0, count: width)
        var offset = 0
        for block in blocks {
            if let code = Self.code(of: record[block.key], in: block) {
                if case .label = block.kind { y[offset + code] = Self.labelWeight } else { y[offset + code] = 1 }
            }
            offset += block.width
        }
        return y
    }

    /// [N, D]: the rows y_i of `records`.
    public func targets(_ records: [MetadataRecord]) -> Tensor {
        Tensor(shape: [records.count, width], float32: records.flatMap(vector))
    }

    /// The position of `value` in `block`, or nil for an unknown value.
    static func code(of value: MetadataValue?, in block: Block) -> Int? {
        guard let value else { return nil }
        switch (block.kind, value) {
        case (.boolean, .boolean(let flag)): return flag ? 1 : 0
        case (.category(let values), .category(let name)), (.label(let values), .category(let name)),
             (.text(let values), .text(let name)), (.label(let values), .text(let name)):
            return values.firstIndex(of: name)
        case (.label(let values), .number(let number)): return values.firstIndex(of: formatNumber(number))
        case (.number(let edges), .number(let number)): return edges.reduce(0) { $0 + (number >= $1 ? 1 : 0) }
        default: return nil
        }
    }
}
