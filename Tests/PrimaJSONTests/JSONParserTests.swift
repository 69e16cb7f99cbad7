import Testing
@testable import PrimaJSON

/// The error `JSON.parse` throws for `bytes`, or nil if it parses.
func parseError(_ bytes: [UInt8], maxDepth: Int = JSON.defaultMaxDepth) -> JSONError? {
    do {
        _ = try JSON.parse(bytes, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

func parseError(_ text: String, maxDepth: Int = JSON.defaultMaxDepth) -> JSONError? {
    parseError(Array(text.utf8), maxDepth: maxDepth)
}

/// Expects `input` to be rejected with a description containing `fragment`.
func expectRejected(_ input: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectRejected(Array(input.utf8), fragment, sourceLocation: sourceLocation)
}

func expectRejected(_ input: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let error = parseError(input) else {
        Issue.record("accepted \(input.count) bytes that should fail with \"\(fragment)\"", sourceLocation: sourceLocation)
        return
    }
    #expect(error.description.contains(fragment), "\(error)", sourceLocation: sourceLocation)
}

@Suite struct JSONRejectionTests {
    @Test func trailingGarbage() {
        expectRejected(#"{"a":1} x"#, "unexpected data after the JSON value at byte 8")
        expectRejected("[1]]", "unexpected data after the JSON value at byte 3")
        expectRejected("1 2", "unexpected data after the JSON value at byte 2")
        #expect(parseError("[1] \n\t\r ") == nil)
        #expect(parseError("  \"x\"  ") == nil)
    }

    @Test func duplicateKeys() throws {
        expectRejected(#"{"a":1,"b":2,"a":3}"#, #"duplicate key "a" at byte 13"#)
        let error = try #require(parseError(#"{"a":1,"b":2,"a":3}"#))
        #expect(error.kind == .duplicateKey("a"))
        #expect(error.depth == 1)

        let nested = try #require(parseError(#"{"t":{"dtype":"F32","dtype":"F16"}}"#))
        #expect(nested.kind == .duplicateKey("dtype"))
        #expect(nested.depth == 2)
        #expect(nested.offset == 20)

        // Past the size where lookups go through the hash table: a repeat of a key from before that point, at it,
        // and after it.
        let keys = (0..<40).map { "\"key\($0)\":\($0)" }.joined(separator: ",")
        #expect(parseError("{\(keys)}") == nil)
        for repeated in [0, 5, 11, 12, 13, 17, 39] {
            expectRejected("{\(keys),\"key\(repeated)\":0}", #"duplicate key "key\#(repeated)""#)
        }
        for size in 11...14 {
            let prefix = (0..<size).map { "\"k\($0)\":0" }.joined(separator: ",")
            expectRejected("{\(prefix),\"k0\":1}", #"duplicate key "k0""#)
            expectRejected("{\(prefix),\"k\(size - 1)\":1}", #"duplicate key "k\#(size - 1)""#)
        }

        // Canonically equivalent spellings are the same key (precomposed é, and e + combining acute).
        expectRejected("{\"\u{E9}\":1,\"e\u{301}\":2}", "duplicate key")
        expectRejected(#"{"\u00e9":1,"e\u0301":2}"#, "duplicate key")
        // The same key in different objects is fine.
        #expect(parseError(#"{"a":{"a":1},"b":{"a":2}}"#) == nil)
    }

    @Test func invalidUTF8() {
        expectRejected([0x22, 0xC3, 0x28, 0x22], "invalid UTF-8 at byte 1")  // truncated 2-byte sequence
        expectRejected([0x22, 0xC0, 0xAF, 0x22], "invalid UTF-8 at byte 1")  // overlong "/"
        expectRejected([0x22, 0xE0, 0x80, 0xAF, 0x22], "invalid UTF-8 at byte 1")  // overlong 3-byte
        expectRejected([0x22, 0xED, 0xA0, 0x80, 0x22], "invalid UTF-8 at byte 1")  // encoded surrogate U+D800
        expectRejected([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "invalid UTF-8 at byte 1")  // above U+10FFFF
        expectRejected([0x22, 0x61, 0xFF, 0x22], "invalid UTF-8 at byte 2")
        expectRejected([0x22, 0xE2, 0x82], "invalid UTF-8 at byte 1")  // cut off by the end of input
        expectRejected([0x5B, 0xFF, 0x5D], "invalid UTF-8 at byte 1")  // outside a string
        // Invalid UTF-8 after an escape goes through the slow path.
        expectRejected([0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22], "invalid UTF-8 at byte 3")
        // Valid UTF-8 that is not JSON is a grammar error, named as a character.
        expectRejected("[é]", "unexpected character U+E9 (expected a value) at byte 1")
        #expect(parseError([0x22, 0xF0, 0x9F, 0x98, 0x80, 0x22]) == nil)
    }

    @Test func controlCharacters() {
        expectRejected("\"a\tb\"", "unescaped control character byte 0x09 in string at byte 2")
        expectRejected("\"a\nb\"", "unescaped control character byte 0x0A in string at byte 2")
        expectRejected([0x22, 0x00, 0x22], "unescaped control character byte 0x00 in string at byte 1")
        expectRejected(#""\n"# + "\u{1F}\"", "unescaped control character byte 0x1F in string at byte 3")
        #expect(parseError("\"a\u{7F}b\"") == nil)  // DEL is not a control character in JSON
    }

    @Test func badEscapes() {
        expectRejected(#""\x""#, "invalid escape (backslash followed by 'x') at byte 1")
        expectRejected(#""\'""#, "invalid escape (backslash followed by ''') at byte 1")
        expectRejected(#""\u12G4""#, #"invalid \u escape (expected 4 hex digits) at byte 1"#)
        expectRejected(#""\u12""#, #"invalid \u escape (expected 4 hex digits) at byte 1"#)
        expectRejected(#""abc\"#, "unterminated string")
        expectRejected(#""abc"#, "unterminated string at byte 0")
    }

    @Test func loneSurrogates() {
        expectRejected(#""\uD800""#, #"lone surrogate \uD800 in string at byte 1"#)
        expectRejected(#""x\ud83d\u0041""#, #"lone surrogate \uD83D in string at byte 2"#)
        expectRejected(#""\ud83dx""#, #"lone surrogate \uD83D"#)
        expectRejected(#""\uDC00""#, #"lone surrogate \uDC00 in string at byte 1"#)
        expectRejected(#""\uD800\uD800""#, #"lone surrogate \uD800"#)
    }

    @Test func numbers() {
        expectRejected("01", "leading zero in number at byte 1")
        expectRejected("[-01]", "leading zero in number at byte 3")
        expectRejected("00", "leading zero in number")
        expectRejected("NaN", "NaN and Infinity are not JSON numbers at byte 0")
        expectRejected("Infinity", "NaN and Infinity are not JSON numbers")
        expectRejected("[1,-Infinity]", "NaN and Infinity are not JSON numbers at byte 4")
        expectRejected("1.", "expected a digit after the decimal point at byte 2")
        expectRejected("1.e5", "expected a digit after the decimal point")
        expectRejected("1e", "expected a digit in the exponent at byte 2")
        expectRejected("1e+", "expected a digit in the exponent")
        expectRejected("-", "expected a digit at byte 1")
        expectRejected("-a", "expected a digit at byte 1")
        expectRejected(".5", "unexpected '.' (expected a value) at byte 0")
        expectRejected("+1", "unexpected '+' (expected a value)")
        #expect(parseError("[0, -0, 0.5, -1.25e-3, 1E+9, 10]") == nil)
    }

    @Test func depthLimit() throws {
        let deepest = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        #expect(parseError(deepest) == nil)
        let tooDeep = String(repeating: "[", count: 257) + String(repeating: "]", count: 257)
        expectRejected(tooDeep, "nesting deeper than 256 levels at byte 256")
        #expect(parseError(tooDeep)?.kind == .tooDeep)
        // Unclosed nesting far past the limit fails on depth, not on the stack.
        expectRejected(String(repeating: "[", count: 1_000_000), "nesting deeper than 256 levels")
        #expect(parseError(#"{"a":{"b":1}}"#, maxDepth: 1)?.kind == .tooDeep)
        #expect(parseError(#"{"a":[{}]}"#, maxDepth: 3) == nil)
    }

    @Test func emptyInputAndBOM() {
        expectRejected("", "empty input at byte 0")
        expectRejected(" \n ", "empty input at byte 3")
        expectRejected([0xEF, 0xBB, 0xBF, 0x7B, 0x7D], "UTF-8 byte order mark is not allowed at byte 0")
    }

    @Test func grammar() {
        expectRejected(#"{"a" 1}"#, "unexpected '1' (expected ':') at byte 5")
        expectRejected("[1 2]", "unexpected '2' (expected ',' or ']') at byte 3")
        expectRejected(#"{"a":1 "b":2}"#, #"unexpected '"' (expected ',' or '}') at byte 7"#)
        expectRejected(#"{"a":1,}"#, "unexpected '}' (expected a string key) at byte 7")
        expectRejected("[1,]", "unexpected ']' (expected a value) at byte 3")
        expectRejected("{1:2}", "unexpected '1' (expected a string key) at byte 1")
        expectRejected("[", "unexpected end of input (expected a value) at byte 1")
        expectRejected(#"{"a":1"#, "unexpected end of input (expected ',' or '}') at byte 6")
        expectRejected("tru", "invalid literal (expected true) at byte 0")
        expectRejected("nul", "invalid literal (expected null)")
        expectRejected("[True]", "unexpected 'T' (expected a value)")
        expectRejected("/* c */ 1", "unexpected '/'")
        expectRejected("\u{0B}1", "unexpected byte 0x0B")  // vertical tab is not JSON whitespace
    }
}

@Suite struct JSONValueTests {
    @Test func parsesEveryKind() throws {
        let value = try JSON.parse(#"{"s":"x","i":-5,"d":0.5,"t":true,"f":false,"n":null,"a":[1,"2"],"o":{"k":[]}}"#)
        let object = try #require(value.object)
        #expect(object.keys == ["s", "i", "d", "t", "f", "n", "a", "o"])
        #expect(value.object?["s"]?.string == "x")
        #expect(object["i"]?.int == -5)
        #expect(object["i"]?.double == -5)
        #expect(object["d"]?.double == 0.5)
        #expect(object["d"]?.int == nil)
        #expect(object["t"]?.bool == true)
        #expect(object["f"]?.bool == false)
        #expect(object["n"]?.isNull == true)
        #expect(object["s"]?.isNull == false)
        #expect(object["a"]?.array == [.int(1), .string("2")])
        #expect(object["o"]?.object?["k"]?.array?.isEmpty == true)
        #expect(object["missing"] == nil)
        #expect(object["s"]?.int == nil)
        #expect(value.string == nil)
    }

    @Test func bigIntegersStayExact() throws {
        let twoTo63 = try #require(JSON.parse("9223372036854775808").number)
        #expect(twoTo63.int64 == nil)
        #expect(twoTo63.uint64 == 1 << 63)

        let maxU64 = try #require(JSON.parse("18446744073709551615").number)
        #expect(maxU64.uint64 == UInt64.max)
        #expect(maxU64.int64 == nil)

        let twoTo64 = try #require(JSON.parse("18446744073709551616").number)
        #expect(twoTo64.uint64 == nil)
        #expect(twoTo64.int64 == nil)
        #expect(twoTo64.double == 18446744073709551616.0)
        #expect(JSONValue.number(twoTo64).serialized() == "18446744073709551616")

        #expect(try JSON.parse("-9223372036854775808").number?.int64 == Int64.min)
        #expect(try JSON.parse("9223372036854775807").int == Int.max)
        #expect(try JSON.parse("-9223372036854775809").number?.int64 == nil)
        #expect(try JSON.parse("-1").number?.uint64 == nil)
        #expect(try JSON.parse("-0").number?.uint64 == 0)
        #expect(try JSON.parse("-0").number?.int64 == 0)
        #expect(try JSON.parse("1.0").number?.int64 == nil)
        #expect(try JSON.parse("1e2").number?.uint64 == nil)
        #expect(try JSON.parse("1e2").double == 100)
        #expect(try JSON.parse("1e400").double == .infinity)
        #expect(try JSON.parse("-1e400").double == -.infinity)
    }

    @Test func unicodeEscapes() throws {
        #expect(try JSON.parse(#""\u00e9\u4E2D\ud83d\ude00""#).string == "é中😀")
        #expect(try JSON.parse(#""\u0000""#).string == "\u{0}")
        #expect(try JSON.parse(#""\"\\\/\b\f\n\r\t""#).string == "\"\\/\u{8}\u{C}\n\r\t")
        #expect(try JSON.parse(#""a\u0041é\n😀b""#).string == "aAé\n😀b")
        #expect(try JSON.parse("\"é中😀\"").string == "é中😀")
    }

    @Test func keyOrderIsKept() throws {
        let text = #"{"z":1,"a":2,"m":{"y":[],"b":null}}"#
        let value = try JSON.parse(text)
        #expect(value.object?.keys == ["z", "a", "m"])
        #expect(value.object?["m"]?.object?.keys == ["y", "b"])
        #expect(value.serialized() == text)
        #expect(value.object?.map(\.key) == ["z", "a", "m"])
    }

    @Test func acceptsEveryByteContainer() throws {
        let text = #"{"k":[1,2.5,"x"]}"#
        let expected = try JSON.parse(text)
        let bytes = Array(text.utf8)
        #expect(try JSON.parse(bytes) == expected)
        #expect(try JSON.parse(bytes[...]) == expected)
        #expect(try JSON.parse(text.utf8) == expected)
        #expect(try JSON.parse(bytes.lazy.map { $0 }) == expected)  // not contiguous: copied first
        #expect(try bytes.withUnsafeBytes { buffer throws(JSONError) in try JSON.parse(buffer) } == expected)
    }

    @Test func roundTrip() throws {
        let text = #"""
        { "name" : "tensor\twith \"quotes\" and \\ and \/",
          "shape": [ 1, 2 , 3 ], "nested": { "deep": [ [ [ ] ], { } ], "x": -0.0e-5 },
          "unicode": "é\u4e2d\ud83d\ude00\u0001", "flags": [true, false, null], "big": 18446744073709551615 }
        """#
        let first = try JSON.parse(text)
        let compact = first.serialized()
        let second = try JSON.parse(compact)
        #expect(first == second)
        #expect(second.serialized() == compact)
        #expect(compact.hasPrefix(#"{"name":"tensor\twith \"quotes\" and \\ and /","shape":[1,2,3],"#))
        #expect(compact.contains(#""unicode":"é中😀\u0001""#))
        #expect(compact.contains(#""x":-0.0e-5"#))
    }

    @Test func roundTripOfALargeDocument() throws {
        var entries: [(String, JSONValue)] = []
        for index in 0..<5000 {
            entries.append(("layer.\(index).weight", [
                "dtype": "F32", "shape": [.int(index), 3], "data_offsets": [.int(index * 12), .int(index * 12 + 12)],
            ]))
        }
        let value = JSONValue.object(JSONObject(entries))
        let text = value.serialized()
        let parsed = try JSON.parse(text)
        #expect(parsed == value)
        #expect(parsed.object?["layer.4321.weight"]?.object?["shape"]?.array?.first?.int == 4321)
        // Every key is found where it is, in the parsed object and the built one, before and after the point
        // where lookups switch to the hash table.
        for index in 0..<5000 {
            #expect(parsed.object?.index(forKey: "layer.\(index).weight") == index)
            #expect(value.object?.index(forKey: "layer.\(index).weight") == index)
        }
        #expect(parsed.object?.index(forKey: "layer.5000.weight") == nil)
    }
}

@Suite struct JSONBuilderTests {
    @Test func buildersAndLiterals() {
        let built = JSONValue.object([("a", .string("x")), ("n", .int(5)), ("d", .double(0.25)), ("z", .null)])
        let literal: JSONValue = ["a": "x", "n": 5, "d": 0.25, "z": nil]
        #expect(built == literal)
        #expect(built.serialized() == #"{"a":"x","n":5,"d":0.25,"z":null}"#)
        let array: JSONValue = [true, 1, "s", [], [:]]
        #expect(array.serialized() == #"[true,1,"s",[],{}]"#)
        #expect(JSONValue.double(1e-5).serialized() == "1e-05")
        #expect(JSONValue.number(JSONNumber(Float(0.1))).serialized() == "0.1")
        #expect(JSONValue.number(JSONNumber(UInt64.max)).serialized() == "18446744073709551615")
    }

    @Test func writerEscapesStrings() {
        #expect(JSONValue.string("a\u{1}b\n\"\\\t\u{8}\u{C}\r\u{1F}").serialized() == #""a\u0001b\n\"\\\t\b\f\r\u001f""#)
        #expect(JSONValue.string("é中😀/\u{7F}").serialized() == "\"é中😀/\u{7F}\"")
        #expect(JSON.quoted("line\nbreak") == #""line\nbreak""#)
        let object: JSONValue = ["k\"ey\n": "v"]
        #expect(object.serialized() == #"{"k\"ey\n":"v"}"#)
    }

    @Test func indentedLayoutMatchesPython() throws {
        // Python: json.dumps({"a": [1, [], {}, {"b": None}], "c": {"d": [True, "x\ny"]}, "e": {}}, indent=2).
        let value: JSONValue = ["a": [1, [], [:], ["b": nil]], "c": ["d": [true, "x\ny"]], "e": [:]]
        let python = "{\n  \"a\": [\n    1,\n    [],\n    {},\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {\n    \"d\": [\n      true,\n      \"x\\ny\"\n    ]\n  },\n  \"e\": {}\n}"
        #expect(value.serialized(indent: 2) == python)
        #expect(try JSON.parse(python) == value)
        #expect(JSONValue.array([]).serialized(indent: 2) == "[]")
        #expect(JSONValue.int(5).serialized(indent: 2) == "5")
        #expect(value.serialized(indent: 0).hasPrefix("{\n\"a\": [\n1,\n[],"))
    }

    @Test func numberLiteralsAreValidated() {
        #expect(JSONNumber("12")?.int64 == 12)
        #expect(JSONNumber("-1.5e3")?.double == -1500)
        #expect(JSONNumber("1.50")?.text == "1.50")
        for invalid in ["", "01", "+1", "1.", " 1", "1 ", "NaN", "0x10", "1e", "--1"] {
            #expect(JSONNumber(invalid) == nil, "\(invalid)")
        }
        #expect(JSONNumber("1.0") != JSONNumber("1"))  // equality is on the literal text
    }

    @Test func objectEditing() {
        var object: JSONObject = ["b": 1, "a": 2]
        object["b"] = "changed"
        object["c"] = 3
        #expect(object.keys == ["b", "a", "c"])
        #expect(object["b"] == "changed")
        object["a"] = nil
        #expect(object.keys == ["b", "c"])
        #expect(object.values == ["changed", 3])
        object["missing"] = nil
        #expect(object.count == 2)

        // Past the hash-table threshold, lookups, replacement and removal keep working.
        var large = JSONObject()
        for index in 0..<30 { large["k\(index)"] = .int(index) }
        for index in 0..<30 { #expect(large["k\(index)"] == .int(index)) }
        #expect(large["k29"] == 29)
        #expect(large.index(forKey: "k13") == 13)
        large["k13"] = nil
        #expect(large["k13"] == nil)
        #expect(large["k14"] == 14)
        #expect(large.index(forKey: "k14") == 13)
        large["k14"] = "x"
        #expect(large.index(forKey: "k14") == 13)
        #expect(large.count == 29)
        // Back under the threshold (12 keys), lookups scan again; passing it once more rebuilds the table.
        for index in [0, 1, 2] + Array(15...28) { large["k\(index)"] = nil }
        #expect(large.keys == (3...12).map { "k\($0)" } + ["k14", "k29"])
        #expect(large["k3"] == 3 && large["k14"] == "x" && large["k29"] == 29 && large["k0"] == nil)
        large["k13"] = 13
        #expect(large.count == 13)
        #expect(large.index(forKey: "k3") == 0 && large.index(forKey: "k29") == 11 && large.index(forKey: "k13") == 12)
        // Canonically equivalent spellings address the same entry.
        large["\u{E9}"] = 1
        #expect(large["e\u{301}"] == 1)
    }

    @Test func errorDescription() {
        let error = JSONError(.syntax, "something odd", at: 17)
        #expect(error.description == "something odd at byte 17")
        #expect(error.depth == 0)
    }
}
