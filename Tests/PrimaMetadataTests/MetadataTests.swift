import Foundation
import PrimaJSON
import PrimaTestSupport
import Testing
@testable import PrimaMetadata

let header = "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed"

/// The metadata text of one CSV row under `header`.
func renderRow(_ row: String) throws -> String {
    let table = try MetadataTable(csvText: header + "\n" + row + "\n", source: "metadata.csv")
    return table.schema.text(for: table.rows[0].record)
}

@Suite struct Rendering {
    /// Numbers given as strings are decimal only (Formats/metadata-schema.md): Swift's Double(String) also reads
    /// hexadecimal, "nan", "inf" and "infinity", which a record must not smuggle in.
    @Test func numberStringsAreDecimalOnly() throws {
        for (text, value) in [("55", 55.0), ("-6.5", -6.5), ("+3", 3), (".5", 0.5), ("7.", 7), ("1e3", 1000), ("2.5E-1", 0.25)] {
            #expect(MetadataSchema.decimalNumber(text) == value, "\(text)")
        }
        for text in ["0x3d", "0X3D", "0x1p3", "nan", "inf", "-infinity", "", "-", ".", "1e", "1e+", "1_000", "١٢", "12a", "e5"] {
            #expect(MetadataSchema.decimalNumber(text) == nil, "\(text)")
        }
        let schema = MetadataSchema.padUfes20
        #expect(throws: MetadataError.self) { try schema.record(from: ["age": .string("0x3d")], source: "r.json") }
        #expect(throws: MetadataError.self) { try schema.record(from: ["fitspatrick": .string("0x3")], source: "r.json") }
        #expect(try schema.record(from: ["age": .string(" 61 ")], source: "r.json")["age"] == .number(61))
    }

    /// A record file that is not UTF-8 is refused naming the line of the first invalid byte and the field holding it.
    @Test func invalidUTF8InARecordNamesTheLineAndField() {
        func message(_ parts: [UInt8]...) -> String { MetadataSchema.notUTF8(Array(parts.joined()), source: "r.json").description }
        #expect(message(Array(#"{"age": 6,"#.utf8), [0x0A], Array(#" "region": "F"#.utf8), [0xC3, 0x28], Array(#""}"#.utf8))
                == "r.json line 2: field 'region': not UTF-8 text (byte 0xC3)")
        #expect(message(Array(#"{"ag"#.utf8), [0xE9], Array(#"": 1}"#.utf8)) == "r.json line 1: a field name: not UTF-8 text (byte 0xE9)")
        #expect(message(Array(#"{"a\"b": "x", "c": 1"#.utf8), [0xFF], Array("}".utf8)) == "r.json line 1: not UTF-8 text (byte 0xFF)")
    }

    @Test func briefExample() throws {
        let text = try MetadataSchema.padUfes20.text(
            for: ["age": 55, "gender": "FEMALE", "smoke": "False", "region": "FACE", "diameter_1": 6.0], source: "example")
        #expect(text == "smokes: no; age: 55 years; gender: female; region: face; diameter 1: 6 mm")
    }

    @Test func fullRow() throws {
        let text = try renderRow(
            "PAT_46,881,False,False,POMERANIA,POMERANIA,55,False,FEMALE,True,True,True,True,3.0,NECK,6.0,5.0,BCC,True,True,False,True,True,True,PAT_46_881_939.png,True")
        #expect(text == "smokes: no; drinks alcohol: no; father's background: POMERANIA; mother's background: POMERANIA; "
            + "age: 55 years; pesticide exposure: no; gender: female; skin cancer history: yes; cancer history: yes; "
            + "piped water: yes; sewage system: yes; Fitzpatrick skin type: 3; region: neck; diameter 1: 6 mm; "
            + "diameter 2: 5 mm; itches: yes; grew: yes; hurts: no; changed: yes; bleeds: yes; elevated: yes")
        #expect(!text.contains("biops"))
        #expect(!text.contains("BCC") && !text.contains("PAT_"))
    }

    @Test func allBlankRowRendersEmpty() throws {
        // PAD-UFES-20's blank rows: only identifiers, age, region, label, biopsed.
        let text = try renderRow("PAT_1516,1765,,,,,8,,,,,,,,ARM,,,NEV,False,False,False,False,False,False,PAT_1516_1765_530.png,False")
        #expect(text == "age: 8 years; region: arm; itches: no; grew: no; hurts: no; changed: no; bleeds: no; elevated: no")
        let blank = try renderRow("PAT_1,2,,,,,,,,,,,,,,,,,,,,,,,PAT_1_2_3.png,True")
        #expect(blank == "")
    }

    @Test func unknownValuesAreSkipped() throws {
        let text = try renderRow("PAT_9,10,UNK,True,UNK,,70.5,UNK,MALE,,False,UNK,UNK,UNK,FACE,UNK,,SCC,UNK,UNK,True,UNK,UNK,UNK,PAT_9_10_11.png,True")
        #expect(text == "drinks alcohol: yes; age: 70.5 years; gender: male; cancer history: no; region: face; hurts: yes")
    }

    @Test func biopsedNeverAppears() throws {
        for value in ["True", "False", ""] {
            let text = try renderRow("P,1,,,,,40,,,,,,,,,,,MEL,,,,,,,P_1.png,\(value)")
            #expect(text == "age: 40 years")
        }
        #expect(MetadataSchema.padUfes20.field("biopsed") == nil)
        #expect(MetadataSchema.padUfes20.fields.count + MetadataSchema.padUfes20.ignoredKeys.count == 26)
    }

    @Test func numbersWithoutTrailingZeros() {
        #expect(formatNumber(55) == "55")
        #expect(formatNumber(6.0) == "6")
        #expect(formatNumber(6.5) == "6.5")
        #expect(formatNumber(-2) == "-2")
    }

    @Test func categoryDisplayLabels() throws {
        let schema = MetadataSchema(fields: [
            .init(key: "site", displayName: "site", kind: .category(values: ["LIP", "EAR"], labels: ["LIP": "upper lip"])),
            .init(key: "id", displayName: "id", kind: .text, uses: .softTarget),
        ])
        #expect(try schema.text(for: ["site": "LIP", "id": "x"], source: "r") == "site: upper lip")
        #expect(try schema.text(for: ["site": "EAR"], source: "r") == "site: ear")
    }
}

@Suite struct JSONInput {
    let schema = MetadataSchema.padUfes20

    @Test func valueVariants() throws {
        let a = try schema.record(jsonText: #"{"smoke": false, "age": 55, "fitspatrick": 2, "region": "HAND", "itch": "true"}"#, source: "a.json")
        let b = try schema.record(jsonText: #"{"smoke": "False", "age": "55", "fitspatrick": "2.0", "region": "HAND", "itch": true}"#, source: "b.json")
        #expect(a == b)
        #expect(schema.text(for: a) == "smokes: no; age: 55 years; Fitzpatrick skin type: 2; region: hand; itches: yes")
    }

    @Test func nullAndUnknownAreSkipped() throws {
        let text = try schema.text(
            for: ["smoke": nil, "drink": "UNK", "age": "", "gender": "MALE", "img_id": "x.png", "patient_id": "P", "biopsed": true],
            source: "r")
        #expect(text == "gender: male")
    }

    @Test func emptyObject() throws {
        #expect(try schema.record(jsonText: "{}", source: "e.json").values.isEmpty)
    }
}

@Suite struct Errors {
    let schema = MetadataSchema.padUfes20

    @Test func unknownField() {
        expectError("p.json", "unknown field 'weight'") { _ = try schema.record(jsonText: #"{"weight": 70}"#, source: "p.json") }
    }

    @Test func wrongType() {
        expectError("p.json", "field 'age'", "expected a number", "\"old\"") {
            _ = try schema.record(jsonText: #"{"age": "old"}"#, source: "p.json")
        }
        expectError("field 'smoke'", "True or False") { _ = try schema.record(jsonText: #"{"smoke": "maybe"}"#, source: "p.json") }
        expectError("field 'smoke'", "True or False") { _ = try schema.record(jsonText: #"{"smoke": 1}"#, source: "p.json") }
        expectError("field 'region'") { _ = try schema.record(jsonText: #"{"region": true}"#, source: "p.json") }
    }

    @Test func categoryOutsideSet() {
        expectError("p.json", "field 'region'", "\"KNEE\" is not one of ARM") {
            _ = try schema.record(jsonText: #"{"region": "KNEE"}"#, source: "p.json")
        }
        expectError("field 'fitspatrick'", "7 is not one of") { _ = try schema.record(jsonText: #"{"fitspatrick": 7}"#, source: "p.json") }
        expectError("field 'diagnostic'", "\"XYZ\"") { _ = try schema.record(jsonText: #"{"diagnostic": "XYZ"}"#, source: "p.json") }
    }

    @Test func malformedJSON() {
        expectError("p.json", "malformed JSON") { _ = try schema.record(jsonText: #"{"age": 5"#, source: "p.json") }
        expectError("p.json", "expected a JSON object, got array") { _ = try schema.record(jsonText: "[1]", source: "p.json") }
    }

    @Test func csvColumnCount() {
        expectError("metadata.csv line 3", "25 columns, header has 26") {
            _ = try MetadataTable(csvText: header + "\n" + "P,1,,,,,,,,,,,,,,,,,,,,,,,a.png,\n" + "P,2,,,,,,,,,,,,,,,,,,,,,,b.png,\n",
                                  source: "metadata.csv")
        }
    }

    @Test func csvBadValueNamesLine() {
        expectError("metadata.csv line 2", "field 'age'", "\"old\"") {
            _ = try MetadataTable(csvText: header + "\nP,1,,,,,old,,,,,,,,,,,,,,,,,,a.png,\n", source: "metadata.csv")
        }
        // An unknown column is named on the header's line, before any row is read.
        expectError("metadata.csv line 1", "unknown column 'weight' in the header") {
            _ = try MetadataTable(csvText: "img_id,weight\na.png,70\n", source: "metadata.csv")
        }
        // CR-only line ends (old Mac) are named, not read as one long record.
        expectError("metadata.csv line 1", "a carriage return without a line feed") {
            _ = try MetadataTable(csvText: "img_id,age\ra.png,70\r", source: "metadata.csv")
        }
    }

    @Test func csvStructure() {
        expectError("m.csv line 2", "unterminated") { _ = try CSVReader.parse("a,b\n\"x,y\n", source: "m.csv") }
        expectError("m.csv line 1", "quote inside an unquoted field") { _ = try CSVReader.parse("a\"b\n", source: "m.csv") }
        expectError("m.csv", "header has no img_id") { _ = try MetadataTable(csvText: "age\n5\n", source: "m.csv") }
        expectError("m.csv line 3", "duplicate 'a.png'") { _ = try MetadataTable(csvText: "img_id\na.png\na.png\n", source: "m.csv") }
        expectError("/nonexistent/metadata.csv", "cannot read") { _ = try MetadataTable(csvPath: "/nonexistent/metadata.csv") }
    }
}

@Suite struct CSV {
    @Test func quotingAndLineEndings() throws {
        let records = try CSVReader.parse("a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\r\n\"multi\nline\",2,\"\"\r\nlast,row,end", source: "t.csv")
        #expect(records.map(\.line) == [1, 2, 3, 5])
        #expect(records[1].fields == ["x, y", "say \"hi\"", ""])
        #expect(records[2].fields == ["multi\nline", "2", ""])
        #expect(records[3].fields == ["last", "row", "end"])
    }

    @Test func tableFromFileByImageID() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("prima-metadata-\(UUID().uuidString).csv")
        defer { try? FileManager.default.removeItem(at: url) }
        let text = header + "\r\n"
            + "PAT_1,1,False,,\"GERMANY\",,60,,MALE,,,,,,\"BACK\",4.5,,SEK,,,,,,,PAT_1_1_1.png,False\r\n"
            + "PAT_2,2,,,,,30,,,,,,,,,,,ACK,,,,,,,PAT_2_2_2.png,True\r\n"
        try text.write(to: url, atomically: true, encoding: .utf8)
        let table = try MetadataTable(csvPath: url.path)
        #expect(table.rows.count == 2)
        #expect(table.text(forImage: "PAT_1_1_1.png") == "smokes: no; father's background: GERMANY; age: 60 years; gender: male; region: back; diameter 1: 4.5 mm")
        #expect(table.text(forImage: "PAT_2_2_2.png") == "age: 30 years")
        #expect(table["PAT_2_2_2.png"]?["diagnostic"] == .category("ACK"))
        #expect(table.text(forImage: "missing.png") == nil)
    }
}

@Suite struct SchemaJSON {
    @Test func roundTrip() throws {
        for schema in [MetadataSchema.padUfes20,
                       MetadataSchema(fields: [.init(key: "s", displayName: "site", kind: .category(values: ["A", "B"], labels: ["B": "bee"])),
                                               .init(key: "n", displayName: "n", kind: .number(unit: nil), uses: [])],
                                      ignoredKeys: ["id"])] {
            let text = schema.serialized()
            let parsed = try MetadataSchema(jsonText: text)
            #expect(parsed == schema)
            #expect(parsed.serialized() == text)
        }
    }

    @Test func layout() throws {
        let value = MetadataSchema.padUfes20.jsonValue
        #expect(value.object?["format"] == "prima-metadata-schema")
        let first = try #require(value.object?["fields"]?.array?.first?.object)
        #expect(first.keys == ["key", "name", "kind", "text", "soft_target"])
        #expect(first["key"] == "smoke")
    }

    @Test func rejectsBadSchemas() {
        expectError("s.json", "malformed JSON") { _ = try MetadataSchema(jsonText: "{", source: "s.json") }
        expectError("s.json", "unsupported version 2") {
            _ = try MetadataSchema(jsonText: #"{"format": "prima-metadata-schema", "version": 2, "fields": []}"#, source: "s.json")
        }
        expectError("field 'x'", "unknown kind \"date\"") {
            _ = try MetadataSchema(jsonText: #"{"format": "prima-metadata-schema", "version": 1, "fields": [{"key": "x", "name": "x", "kind": "date", "text": true, "soft_target": false}]}"#)
        }
        expectError("field 'x'", "duplicate key") {
            _ = try MetadataSchema(jsonText: #"{"format": "prima-metadata-schema", "version": 1, "fields": [{"key": "x", "name": "x", "kind": "text", "text": true, "soft_target": false}, {"key": "x", "name": "x", "kind": "text", "text": true, "soft_target": false}]}"#)
        }
    }
}

@Suite struct Limits {
    /// The streaming parser gives the same records whatever the chunk boundaries (BOM, CRLF and "" split across
    /// chunks), here one byte at a time against the whole text.
    @Test func chunkBoundariesDoNotMatter() throws {
        let text = "\u{FEFF}a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\r\n\"multi\nline\",2,\"\"\r\nlast,row,end\r"
        let whole = try CSVReader.parse(text, source: "t.csv")
        var parser = CSVParser()
        var records: [(line: Int, fields: [String])] = []
        for byte in Array(text.utf8) {
            try [byte].withUnsafeBufferPointer { (buffer) throws(MetadataError) in
                try parser.feed(buffer, source: "t.csv") { line, fields in records.append((line, fields)) }
            }
        }
        try parser.finish(source: "t.csv") { line, fields in records.append((line, fields)) }
        #expect(records.map(\.line) == whole.map(\.line))
        #expect(records.map(\.fields) == whole.map(\.fields))
        #expect(whole[0].fields == ["a", "b", "c"] && whole[3].fields == ["last", "row", "end\r"])
    }

    @Test func fieldAndColumnLimits() {
        let long = String(repeating: "x", count: MetadataLimits.maxFieldBytes + 1)
        expectError("m.csv line 2", "field 2", "longer than the limit") { _ = try CSVReader.parse("a,b\n1,\(long)\n", source: "m.csv") }
        expectError("m.csv line 2", "field 1", "longer than the limit") { _ = try CSVReader.parse("a\n\"\(long)\"\n", source: "m.csv") }
        let wide = String(repeating: ",", count: MetadataLimits.maxColumns)
        expectError("m.csv line 1", "more than the limit of \(MetadataLimits.maxColumns) columns") {
            _ = try CSVReader.parse(wide + "\n", source: "m.csv")
        }
        expectError("m.csv line 1", "column 'age' appears more than once") {
            _ = try MetadataTable(csvText: "img_id,age,age\na.png,5,6\n", source: "m.csv")
        }
    }

    /// A JSON field over the field limit, and a record whose rendered text would pass the text limit.
    @Test func recordLimits() {
        let long = String(repeating: "x", count: MetadataLimits.maxFieldBytes + 1)
        expectError("p.json", "field 'background_father'", "longer than the limit") {
            _ = try MetadataSchema.padUfes20.record(jsonText: #"{"background_father": "\#(long)"}"#, source: "p.json")
        }
        let half = String(repeating: "y", count: MetadataLimits.maxTextBytes / 2)
        expectError("p.json", "the metadata text would be", "limit of \(MetadataLimits.maxTextBytes) bytes") {
            _ = try MetadataSchema.padUfes20.record(
                jsonText: #"{"background_father": "\#(half)", "background_mother": "\#(half)"}"#, source: "p.json")
        }
    }

    /// An endless stream is not read to its end: /dev/zero is refused (by the field limit, or as not a regular
    /// file) at once.
    @Test func endlessStreamIsRefusedQuickly() {
        let start = Date()
        expectError("/dev/zero") { _ = try MetadataTable(csvPath: "/dev/zero") }
        #expect(Date().timeIntervalSince(start) < 5)
    }
}
