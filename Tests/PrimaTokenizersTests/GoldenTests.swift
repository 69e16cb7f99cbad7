import Foundation
import PrimaJSON
import Testing
@testable import PrimaTokenizers

/// Exact equality with the Python `tokenizers` library (Fixtures/tokenizers/goldens.json, from make_goldens.py):
/// ids with and without special tokens, both decodes, pairs, padding and truncation, for the two fixture
/// tokenizers and the three variants; and component by component for normalizers, pre-tokenizers and decoders.
@Suite struct GoldenTests {
    /// At most this many mismatches are reported per test (each with its text), so one bug does not flood the log.
    static let reportedMismatches = 5

    @Test(arguments: ["modernbert", "qwen3", "bpe-suffix-whitespace", "bpe-metaspace", "bytelevel-llama3"])
    func encodingsMatchPython(_ name: String) throws {
        #expect(Goldens.tokenizerNames.contains(name))
        let tokenizer = try Goldens.load(name)
        let rows = Goldens.tokenizerEntry(name)["encodings"]!.array!
        #expect(rows.count > 150)
        var mismatches = 0
        for row in rows {
            let golden = row.object!
            let text = golden["text"]!.string!
            let withSpecial = try tokenizer.encode(text)
            let without = try tokenizer.encode(text, addSpecialTokens: false)
            var problems: [String] = []
            if withSpecial.ids != golden["ids"]!.ints {
                problems.append("ids: " + firstDifference(golden["ids"]!.ints, withSpecial.ids))
            }
            if without.ids != golden["ids_no_special"]!.ints {
                problems.append("ids without special tokens: " + firstDifference(golden["ids_no_special"]!.ints, without.ids))
            }
            if let mask = golden["attention_mask"], withSpecial.attentionMask != mask.ints {
                problems.append("attention mask: " + firstDifference(mask.ints, withSpecial.attentionMask))
            }
            let ids = golden["ids"]!.ints
            let decoded = try tokenizer.decode(ids)
            if decoded != golden["decoded"]!.string! {
                problems.append("decode: expected \(golden["decoded"]!.string!.debugDescription), got \(decoded.debugDescription)")
            }
            let skipped = try tokenizer.decode(ids, skipSpecialTokens: true)
            if skipped != golden["decoded_skip_special"]!.string! {
                problems.append("decode skipping special tokens: expected "
                                + "\(golden["decoded_skip_special"]!.string!.debugDescription), got \(skipped.debugDescription)")
            }
            if !problems.isEmpty {
                mismatches += 1
                if mismatches <= Self.reportedMismatches {
                    Issue.record("\(name): \(text.prefix(80).debugDescription): \(problems.joined(separator: "; "))")
                }
            }
        }
        #expect(mismatches == 0, "\(name): \(mismatches) of \(rows.count) texts differ from the Python tokenizer")
    }

    @Test(arguments: ["modernbert", "qwen3", "bpe-suffix-whitespace", "bpe-metaspace", "bytelevel-llama3"])
    func pairsMatchPython(_ name: String) throws {
        let tokenizer = try Goldens.load(name)
        for row in Goldens.tokenizerEntry(name)["pairs"]!.array! {
            let golden = row.object!
            let a = golden["a"]!.string!, b = golden["b"]!.string!
            let encoding = try tokenizer.encode(a, pair: b)
            let difference = firstDifference(golden["ids"]!.ints, encoding.ids)
            #expect(encoding.ids == golden["ids"]!.ints, "\(name) pair \(a.prefix(40).debugDescription): \(difference)")
            #expect(encoding.typeIds == golden["type_ids"]!.ints, "\(name) pair type ids")
            let plain = try tokenizer.encode(a, pair: b, addSpecialTokens: false)
            #expect(plain.ids == golden["ids_no_special"]!.ints, "\(name) pair without special tokens")
        }
    }

    @Test(arguments: ["modernbert", "qwen3"])
    func paddingAndTruncationMatchPython(_ name: String) throws {
        let base = try Goldens.load(name)
        let cases = Goldens.tokenizerEntry(name)["padding_cases"]!.array!
        #expect(cases.count == 7)
        for item in cases {
            let setting = item.object!
            var tokenizer = base
            tokenizer.truncation = nil
            tokenizer.padding = nil
            if let truncation = setting["truncation"]?.object {
                tokenizer.enableTruncation(maxLength: truncation["max_length"]!.int!,
                                           direction: truncation["direction"]!.string! == "left" ? .left : .right)
            }
            if let padding = setting["padding"]?.object {
                try tokenizer.enablePadding(length: padding["length"]!.int!, padId: padding["pad_id"]!.int!,
                                            direction: padding["direction"]!.string! == "left" ? .left : .right,
                                            padToMultipleOf: padding["pad_to_multiple_of"]?.int)
            }
            for row in setting["encodings"]!.array! {
                let golden = row.object!
                let text = golden["text"]!.string!
                let encoding = try tokenizer.encode(text, addSpecialTokens: golden["add_special_tokens"]!.bool!)
                let label = "\(name) \(setting["truncation"]!.serialized()) \(setting["padding"]!.serialized()) "
                    + "\(text.prefix(30).debugDescription) special=\(golden["add_special_tokens"]!.bool!)"
                #expect(encoding.ids == golden["ids"]!.ints, "\(label): \(firstDifference(golden["ids"]!.ints, encoding.ids))")
                #expect(encoding.attentionMask == golden["attention_mask"]!.ints, "\(label): attention mask")
                #expect(encoding.typeIds == golden["type_ids"]!.ints, "\(label): type ids")
                #expect(encoding.specialTokensMask == golden["special_tokens_mask"]!.ints, "\(label): special tokens mask")
            }
        }
    }

    private func componentInputs(_ name: String) -> [String] {
        Goldens.components["inputs"]!.object![name]!.strings
    }

    private func componentCases(_ kind: String) -> [JSONObject] {
        Goldens.components["cases"]!.array!.compactMap(\.object).filter { $0["kind"]?.string == kind }
    }

    @Test func normalizersMatchPython() throws {
        let cases = componentCases("normalizer")
        #expect(cases.count >= 13)
        for item in cases {
            let config = item["config"]!.serialized()
            let normalizer = try #require(try NormalizerFactory.make(try jsonNode(config)))
            let inputs = componentInputs(item["inputs"]!.string!)
            var failures = 0
            for (input, output) in zip(inputs, item["outputs"]!.array!) {
                let expected = output.string ?? input
                let actual = try normalizer.normalize(scalars(input)).string
                if actual != expected {
                    failures += 1
                    if failures <= Self.reportedMismatches {
                        Issue.record("\(config) on \(input.debugDescription): expected \(expected.debugDescription), got \(actual.debugDescription)")
                    }
                }
            }
            #expect(failures == 0, "\(config): \(failures) of \(inputs.count) inputs differ")
        }
    }

    @Test func preTokenizersMatchPython() throws {
        let cases = componentCases("pre_tokenizer")
        #expect(cases.count >= 25)
        for item in cases {
            let config = item["config"]!.serialized()
            let preTokenizer = try #require(try PreTokenizerFactory.make(try jsonNode(config)))
            let inputs = componentInputs(item["inputs"]!.string!)
            var failures = 0
            for (input, output) in zip(inputs, item["outputs"]!.array!) {
                let expected = output.strings
                let actual = try preTokenizer.preTokenize([PreToken(text: scalars(input), atStart: true)]).map(\.text.string)
                if actual != expected {
                    failures += 1
                    if failures <= Self.reportedMismatches {
                        Issue.record("\(config) on \(input.debugDescription): expected \(expected), got \(actual)")
                    }
                }
            }
            #expect(failures == 0, "\(config): \(failures) of \(inputs.count) inputs differ")
        }
    }

    @Test func decodersMatchPython() throws {
        let cases = componentCases("decoder")
        #expect(cases.count >= 6)
        for item in cases {
            let config = item["config"]!.serialized()
            let decoder = try #require(try DecoderFactory.make(try jsonNode(config)))
            for pair in item["cases"]!.array! {
                let tokens = pair.array![0].strings, expected = pair.array![1].string!
                let actual = try decoder.decode(tokens)
                #expect(actual == expected, "\(config) on \(tokens): expected \(expected.debugDescription), got \(actual.debugDescription)")
            }
        }
    }

    /// Byte-level tokenizers give the (normalized) text back for any text without added-token strings in it.
    @Test(arguments: ["modernbert", "qwen3", "bytelevel-llama3"])
    func decodeRoundTrips(_ name: String) throws {
        let tokenizer = try Goldens.load(name)
        let contents = tokenizer.addedTokens.map(\.content)
        var checked = 0
        for row in Goldens.tokenizerEntry(name)["encodings"]!.array! {
            let text = row.object!["text"]!.string!
            if contents.contains(where: { text.contains($0) }) { continue }
            let normalized = name == "bytelevel-llama3" ? text : String(decoding: text._nfcCodeUnits, as: UTF8.self)
            let ids = try tokenizer.encode(text, addSpecialTokens: false).ids
            #expect(try tokenizer.decode(ids) == normalized, "\(name): \(text.prefix(60).debugDescription)")
            checked += 1
        }
        #expect(checked > 100)
    }
}
