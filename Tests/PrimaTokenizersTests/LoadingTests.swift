import Foundation
import PrimaJSON
import PrimaTestSupport
import Testing
@testable import PrimaTokenizers

/// Loading: every error names the file and, where there is one, the place in it; unknown component types name the
/// type. The fixture JSON, in compact form, is edited in memory to make each bad file.
@Suite struct LoadingTests {
    private static let qwen3Path = Goldens.directory + "/qwen3/tokenizer.json"
    private static let qwen3Text: String = {
        let data = FileManager.default.contents(atPath: qwen3Path)!
        return try! JSON.parse([UInt8](data)).serialized()
    }()

    /// Loads `text` as if it were the file "bad/tokenizer.json" and returns the error's one-line description.
    private func loadError(_ text: String) -> String? {
        do {
            _ = try Tokenizer(json: text, source: "bad/tokenizer.json")
            return nil
        } catch {
            return "\(error)"
        }
    }

    private func replacing(_ old: String, _ new: String) -> String {
        let text = Self.qwen3Text
        precondition(text.contains(old), "fixture lacks \(old)")
        return text.replacingOccurrences(of: old, with: new)
    }

    @Test func unknownComponentTypesAreNamed() throws {
        let cases: [(String, String, String)] = [
            (#""normalizer":{"type":"NFC"}"#, #""normalizer":{"type":"Precompiled","precompiled_charsmap":""}"#,
             #"bad/tokenizer.json: normalizer: unsupported type "Precompiled""#),
            (#"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]"#,
             #"{"type":"UnicodeScripts"}]"#,
             #"bad/tokenizer.json: pre_tokenizer.pretokenizers[1]: unsupported type "UnicodeScripts""#),
            (#""type":"BPE""#, #""type":"Unigram""#, #"bad/tokenizer.json: model: unsupported type "Unigram""#),
            (#""decoder":{"type":"ByteLevel""#, #""decoder":{"type":"CTC""#,
             #"bad/tokenizer.json: decoder: unsupported type "CTC""#),
        ]
        for (old, new, expected) in cases {
            let message = try #require(loadError(replacing(old, new)), "\(new) loaded")
            #expect(message == expected)
        }
        let error = try #require(throws: TokenizerError.self) {
            try Tokenizer(json: replacing(#""type":"BPE""#, #""type":"WordPiece""#), source: "t.json")
        }
        #expect(error == .unsupportedComponent("t.json", "model", "WordPiece"))
    }

    @Test func malformedFilesNameTheFileAndThePlace() throws {
        let text = Self.qwen3Text
        let truncated = String(text.prefix(text.count / 2))
        #expect(loadError(truncated)?.hasPrefix("bad/tokenizer.json: malformed JSON: unexpected end of file") == true)
        #expect(loadError("{\"model\": [1, 2,]}")?.hasPrefix("bad/tokenizer.json: malformed JSON:") == true)
        #expect(loadError(text + " trailing")?.hasPrefix("bad/tokenizer.json: malformed JSON:") == true)
        #expect(loadError("") == "bad/tokenizer.json: malformed JSON: unexpected end of file (at byte 0)")
        #expect(loadError("[]") == "bad/tokenizer.json: expected a JSON object at the top level")
        #expect(loadError("{}") == "bad/tokenizer.json: missing \"model\"")
        #expect(loadError(replacing(#"["Ġ","a"]"#, #"["Ġ","not-a-token"]"#))
                == #"bad/tokenizer.json: model.merges[0]: merge token "not-a-token" is not in the vocabulary"#)
        #expect(loadError(replacing(#"["Ġ","a"]"#, #""Ġ a b""#))
                == #"bad/tokenizer.json: model.merges[0]: a merge must be "left right" with one space"#)
        #expect(loadError(replacing(#""!":0,"#, #""!":"zero","#))?
                .contains("model.vocab[\"!\"]: expected a non-negative integer id") == true)
        #expect(loadError(replacing(#""behavior":"Isolated""#, #""behavior":"Sideways""#))?
                .contains("pre_tokenizer.pretokenizers[0].behavior: unknown split behavior \"Sideways\"") == true)
        #expect(loadError(replacing(#"{"Regex":"(?i:"#, #"{"Regex":"(?<name"#))?
                .contains("pre_tokenizer.pretokenizers[0].pattern.Regex: regex") == true)
        #expect(loadError(replacing(#""id":597"#, #""id":"597""#))?
                .contains("added_tokens[2].id: expected an integer, found a string") == true)
    }

    @Test func missingFileIsNamed() {
        #expect(throws: TokenizerError.cannotRead("/nonexistent/tokenizer.json", "no such file")) {
            try Tokenizer(contentsOfFile: "/nonexistent/tokenizer.json")
        }
    }

    /// Both merge encodings give the same model: the pair form ["a", "b"] (fixtures) and the legacy "a b" string.
    @Test func legacyMergeStringsEqualPairs() throws {
        let pairs = try Tokenizer(contentsOfFile: Self.qwen3Path)
        var root = try #require(try JSON.parse(Self.qwen3Text).object)
        var model = try #require(root["model"]?.object)
        let merges = try #require(model["merges"]?.array)
        model["merges"] = .array(merges.map { .string($0.strings.joined(separator: " ")) })
        root["model"] = .object(model)
        let legacy = try Tokenizer(json: JSONValue.object(root).serialized())
        #expect(legacy.model.merges.count == pairs.model.merges.count)
        for line in try String(contentsOfFile: Goldens.directory + "/corpus.txt", encoding: .utf8).split(separator: "\n") {
            #expect(try legacy.encode(String(line)).ids == pairs.encode(String(line)).ids)
        }
    }

    /// Vocabulary keys are compared as bytes: "é" and "e" + U+0301 are canonically equivalent (equal as Swift
    /// Strings) but distinct tokens.
    @Test func canonicallyEquivalentTokensStayDistinct() throws {
        let json = #"{"model": {"type": "BPE", "vocab": {"e": 0, "\u0301": 1, "\u00e9": 2, "e\u0301": 3}, "#
            + #""merges": [["e", "\u0301"]]}, "added_tokens": [{"id": 4, "content": "\u00c5", "special": true}, "#
            + #"{"id": 5, "content": "A\u030a", "special": false}]}"#
        let tokenizer = try Tokenizer(json: json)
        #expect(try tokenizer.encode("\u{E9}").ids == [2])
        #expect(try tokenizer.encode("e\u{301}").ids == [3])
        #expect(tokenizer.tokenToId("\u{E9}") == 2 && tokenizer.tokenToId("e\u{301}") == 3)
        #expect(tokenizer.tokenToId("\u{C5}") == 4 && tokenizer.tokenToId("A\u{30A}") == 5)
        #expect(try tokenizer.decode([4, 5, 2], skipSpecialTokens: true) == "A\u{30A} \u{E9}")
    }

    @Test func vocabularyLookups() throws {
        let tokenizer = try Tokenizer(contentsOfFile: Self.qwen3Path)
        #expect(tokenizer.vocabularySize == 600)
        #expect(tokenizer.tokenToId("<|im_end|>") == 597)
        #expect(tokenizer.idToToken(597) == "<|im_end|>")
        #expect(tokenizer.tokenToId("!") == 0)
        #expect(tokenizer.idToToken(100_000) == nil)
        #expect(tokenizer.addedTokens.map(\.content) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"])
        #expect(tokenizer.addedTokens.filter(\.special).count == 3)
    }
}
