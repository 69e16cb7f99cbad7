import PrimaMetadata
import PrimaTestSupport
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.5: the soft-target vectors y_i.
@Suite struct SoftTargetsTests {
    typealias Support = TrainingDataSupport

    /// The reference schema's blocks: 13 booleans of 2, two text fields (values of the bundled folder), age and
    /// two diameters in 5 bins, gender 2, Fitzpatrick 6, region 14, then the diagnosis over the 6 classes.
    @Test func referenceSchemaLayout() throws {
        let data = try TrainingCases(folder: Support.casesFolder, classCodes: Support.classCodes, schema: .padUfes20)
        let encoder = try SoftTargetEncoder(schema: .padUfes20, classCodes: Support.classCodes, records: data.cases.map(\.record))
        #expect(encoder.blocks.map(\.key).last == "diagnostic")
        #expect(encoder.blocks.count == 22)
        let father = try #require(encoder.blocks.first { $0.key == "background_father" })
        #expect(father.kind == .text(["GERMANY", "ITALY", "NETHERLANDS", "POMERANIA"]))
        let mother = try #require(encoder.blocks.first { $0.key == "background_mother" })
        #expect(mother.kind == .text(["BRAZIL", "GERMANY", "ITALY", "POMERANIA"]))
        #expect(encoder.width == 13 * 2 + 4 + 4 + 3 * 5 + 2 + 6 + 14 + 6)

        // Row 1: PAT_46, age 55 → bin 2 ([45, 60)), diameters 6 and 5 → bin 1 ([5, 10)), BCC → 3 at class 0.
        let y = encoder.vector(data.cases[0].record)
        var offset = 0
        func block(_ key: String) -> ArraySlice<Float> {
            offset = 0
            for b in encoder.blocks {
                if b.key == key { return y[offset..<(offset + b.width)] }
                offset += b.width
            }
            return []
        }
        #expect(Array(block("smoke")) == [1, 0])
        #expect(Array(block("age")) == [0, 0, 1, 0, 0])
        #expect(Array(block("diameter_1")) == [0, 1, 0, 0, 0])
        #expect(Array(block("diameter_2")) == [0, 1, 0, 0, 0])
        #expect(Array(block("fitspatrick")) == [0, 0, 1, 0, 0, 0])
        #expect(Array(block("background_father")) == [0, 0, 0, 1])
        #expect(Array(block("diagnostic")) == [3, 0, 0, 0, 0, 0])
        // Row 2 has blanks and UNK: those blocks are all zero.
        let blank = encoder.vector(data.cases[1].record)
        let known: Float = 6 + 3  // age, region, itch, hurt, bleed, elevation, and ACK×3
        #expect(blank.reduce(0, +) == known)
        let targets = encoder.targets(data.cases.map(\.record))
        #expect(targets.shape == [10, encoder.width])
        #expect(Array(targets.float32Values().prefix(encoder.width)) == y)
    }

    /// The Python reference's vectors (Fixtures/train/draws.json, from prima_ref.metadata's parsing of the bundled
    /// metadata.csv), exactly.
    @Test func sameAsThePythonReference() throws {
        let data = try TrainingCases(folder: Support.casesFolder, classCodes: Support.classCodes, schema: .padUfes20)
        let reference = try #require(try MaskedLMMaskingTests.draws()["soft_targets"]?.object)
        for (name, labelsOnly) in [("full", false), ("labels_only", true)] {
            let encoder = try SoftTargetEncoder(schema: .padUfes20, classCodes: Support.classCodes, labelsOnly: labelsOnly,
                                                records: data.cases.map(\.record))
            let rows = try #require(reference[name]?.array)
            #expect(rows.count == data.cases.count)
            for (item, row) in zip(data.cases, rows) {
                let expected = (row.array ?? []).compactMap(\.double).map { Float($0) }
                #expect(encoder.vector(item.record) == expected, "\(name): row \(item.row)")
            }
        }
    }

    @Test func labelsOnly() throws {
        let encoder = try SoftTargetEncoder(schema: .padUfes20, classCodes: Support.classCodes, labelsOnly: true, records: [])
        #expect(encoder.width == 6)
        let record = MetadataRecord(values: [("age", .number(40)), ("diagnostic", .category("MEL"))])
        #expect(encoder.vector(record) == [0, 0, 0, 0, 3, 0])
    }

    @Test func numberBins() throws {
        let schema = MetadataSchema(fields: [MetadataSchema.Field(key: "size", displayName: "size", kind: .number(unit: "cm"))])
        expectError("field 'size'", "without bin edges") {
            _ = try SoftTargetEncoder(schema: schema, classCodes: ["A"], records: [])
        }
        expectError("strictly ascending") {
            _ = try SoftTargetEncoder(schema: schema, classCodes: ["A"], numberEdges: ["size": [2, 1]], records: [])
        }
        let encoder = try SoftTargetEncoder(schema: schema, classCodes: ["A"], numberEdges: ["size": [1, 2]], records: [])
        // Edges belong to the bin above them.
        for (value, bin) in [(0.5, 0), (1.0, 1), (1.5, 1), (2.0, 2), (9.0, 2)] {
            var expected: [Float] = [0, 0, 0, 0]
            expected[bin] = 1
            #expect(encoder.vector(MetadataRecord(values: [("size", .number(value))])) == expected, "\(value)")
        }
    }
}
