import PrimaEval
import PrimaMetadata
@testable import PrimaTrain
import Testing

@Suite struct TabularFeaturesTests {
    /// A small schema with one field of each kind, the label, and `biopsed` listed as a field (it must still be left
    /// out).
    let schema = MetadataSchema(
        fields: [
            MetadataSchema.Field(key: "smoke", displayName: "smokes", kind: .boolean),
            MetadataSchema.Field(key: "age", displayName: "age", kind: .number(unit: "years")),
            MetadataSchema.Field(key: "region", displayName: "region", kind: .category(values: ["ARM", "FACE", "NECK"], labels: [:])),
            MetadataSchema.Field(key: "background_father", displayName: "father's background", kind: .text),
            MetadataSchema.Field(key: "diagnostic", displayName: "diagnosis", kind: .category(values: ["ACK", "BCC"], labels: [:]), uses: .softTarget),
            MetadataSchema.Field(key: "biopsed", displayName: "biopsed", kind: .boolean),
        ],
        ignoredKeys: ["patient_id", "lesion_id", "img_id"])

    func makeCase(_ values: [(key: String, value: MetadataValue)], row: Int = 1) -> TrainingCases.Case {
        TrainingCases.Case(row: row, imageID: "PAT_\(row)_1_1.png", imagePath: "/nonexistent/PAT_\(row)_1_1.png",
                           record: MetadataRecord(values: values), label: 0, patientID: "PAT_\(row)", lesionID: "1")
    }

    @Test func encodesAHandComputedFold() {
        let training = [
            makeCase([("smoke", .boolean(true)), ("age", .number(40)), ("region", .category("FACE")),
                      ("background_father", .text("ITALIA")), ("diagnostic", .category("BCC")), ("biopsed", .boolean(true))], row: 1),
            makeCase([("smoke", .boolean(false)), ("age", .number(60)), ("region", .category("ARM")),
                      ("diagnostic", .category("ACK")), ("biopsed", .boolean(false))], row: 2),
            makeCase([("region", .category("FACE")), ("background_father", .text("BRAZIL")), ("diagnostic", .category("ACK"))], row: 3),
        ]
        let features = TabularFeatures(fitting: training, schema: schema)
        #expect(features.names == ["smoke=no", "smoke=yes", "smoke missing", "age", "age missing", "region=ARM", "region=FACE",
                                   "background_father=BRAZIL", "background_father=ITALIA", "background_father missing"])
        // age: mean 50, population SD 10 over the two known values.
        #expect(features.rows(training) == [
            [0, 1, 0, -1, 0, 0, 1, 0, 1, 0],
            [1, 0, 0, 1, 0, 1, 0, 0, 0, 1],
            [0, 0, 1, 0, 1, 0, 1, 1, 0, 0],
        ])
        // Held out: NECK and POMERANIA were never seen in training, so their fields are all zero; age 75 → 2.5.
        let heldOut = [
            makeCase([("smoke", .boolean(true)), ("age", .number(75)), ("region", .category("NECK")),
                      ("background_father", .text("POMERANIA")), ("diagnostic", .category("BCC"))], row: 4),
            makeCase([], row: 5),
        ]
        #expect(features.rows(heldOut) == [
            [0, 1, 0, 2.5, 0, 0, 0, 0, 0, 0],
            [0, 0, 1, 0, 1, 0, 0, 0, 0, 1],
        ])
    }

    @Test func allMissingAndConstantColumns() {
        // No smoke value, no region value in training; every known age is 30 (SD 0 → scale 1); the text field never
        // misses, so it has no missing column and a held-out case without it is all zero there.
        let training = [
            makeCase([("age", .number(30)), ("background_father", .text("BRAZIL"))], row: 1),
            makeCase([("age", .number(30)), ("background_father", .text("BRAZIL"))], row: 2),
        ]
        let features = TabularFeatures(fitting: training, schema: schema)
        #expect(features.names == ["smoke missing", "age", "age missing", "region missing", "background_father=BRAZIL"])
        #expect(features.rows(training) == [[1, 0, 0, 1, 1], [1, 0, 0, 1, 1]])
        let heldOut = [makeCase([("smoke", .boolean(false)), ("age", .number(35)), ("region", .category("ARM"))], row: 3)]
        #expect(features.rows(heldOut) == [[0, 5, 0, 0, 0]])

        // A number field with no known value in training: its value column is 0 for every case.
        let noAges = TabularFeatures(fitting: [makeCase([], row: 1)], schema: schema)
        #expect(noAges.names == ["smoke missing", "age", "age missing", "region missing", "background_father missing"])
        #expect(noAges.rows(heldOut) == [[0, 0, 0, 0, 1]])
    }

    @Test func neverEncodesTheLabelIdentifiersOrBiopsed() {
        let features = TabularFeatures(fitting: [makeCase([("diagnostic", .category("BCC")), ("biopsed", .boolean(true))])],
                                       schema: .padUfes20)
        for name in features.names {
            for key in ["diagnostic", "biopsed", "patient_id", "lesion_id", "img_id"] {
                #expect(!name.hasPrefix(key), "column \(name) encodes \(key)")
            }
        }
        // Every other field of the PAD-UFES-20 schema is there: its missing column, and a value column for the three
        // numbers (age, diameter_1, diameter_2).
        #expect(features.names.count == (MetadataSchema.padUfes20.fields.count - 1) + 3)
        #expect(features.names.filter { $0.hasSuffix(" missing") }.count == MetadataSchema.padUfes20.fields.count - 1)
    }
}
