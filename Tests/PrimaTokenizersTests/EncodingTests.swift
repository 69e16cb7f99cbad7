import Foundation
import PrimaTestSupport
import Testing
@testable import PrimaTokenizers

/// The public encoding API beyond the goldens: padding and truncation settings, batches, pairs, concurrency, and
/// the `prima-convert tokenize` command run through the built binary.
@Suite struct EncodingTests {
    private static let modernbert = Goldens.directory + "/modernbert/tokenizer.json"
    private static let qwen3 = Goldens.directory + "/qwen3/tokenizer.json"

    @Test func rightPaddingToAGivenLength() throws {
        var tokenizer = try Tokenizer(contentsOfFile: Self.modernbert)
        let plain = try tokenizer.encode("Predict the [MASK] token.")
        let pad = try #require(tokenizer.tokenToId("[PAD]"))
        try tokenizer.enablePadding(length: 16, padId: pad)
        let padded = try tokenizer.encode("Predict the [MASK] token.")
        #expect(padded.ids == plain.ids + Array(repeating: pad, count: 16 - plain.count))
        #expect(padded.attentionMask == Array(repeating: 1, count: plain.count) + Array(repeating: 0, count: 16 - plain.count))
        #expect(padded.specialTokensMask.first == 1 && padded.specialTokensMask.last == 1)
        // Longer than the length: unchanged.
        try tokenizer.enablePadding(length: 2, padId: pad)
        #expect(try tokenizer.encode("Predict the [MASK] token.") == plain)
    }

    @Test func paddingIdComesFromTheFileWhenNotGiven() throws {
        var withSection = try Goldens.load("bpe-suffix-whitespace")  // padding: Fixed 40, [PAD]
        let filePad = try #require(withSection.padding?.padId)
        #expect(withSection.padding?.strategy == .fixed(40))
        #expect(withSection.truncation == Truncation(maxLength: 96))
        try withSection.enablePadding(length: 50)
        let encoding = try withSection.encode("a short text")
        #expect(encoding.count == 50 && encoding.ids.last == filePad)

        var without = try Tokenizer(contentsOfFile: Self.qwen3)
        #expect(without.padding == nil)
        #expect(throws: TokenizerError.self) { try without.enablePadding(length: 8) }
    }

    @Test func truncationLeavesRoomForSpecialTokens() throws {
        var tokenizer = try Tokenizer(contentsOfFile: Self.modernbert)
        let text = "Risk factors: Fitzpatrick skin type II, >50 naevi, history of blistering sunburns."
        let full = try tokenizer.encode(text, addSpecialTokens: false).ids
        tokenizer.enableTruncation(maxLength: 10)
        let cut = try tokenizer.encode(text)
        #expect(cut.count == 10)
        #expect(Array(cut.ids[1..<9]) == Array(full.prefix(8)))
        #expect(cut.ids.first == tokenizer.tokenToId("[CLS]") && cut.ids.last == tokenizer.tokenToId("[SEP]"))
        #expect(try tokenizer.encode(text, addSpecialTokens: false).ids == Array(full.prefix(10)))
        tokenizer.enableTruncation(maxLength: 10, direction: .left)
        #expect(Array(try tokenizer.encode(text).ids[1..<9]) == Array(full.suffix(8)))
    }

    @Test func pairTruncationStrategies() throws {
        var tokenizer = try Tokenizer(contentsOfFile: Self.modernbert)
        let a = "A 54-year-old woman presented with a 7 mm asymmetric pigmented lesion on the left forearm."
        let b = "Biopsy."
        let lengthA = try tokenizer.encode(a, addSpecialTokens: false).count
        let lengthB = try tokenizer.encode(b, addSpecialTokens: false).count
        tokenizer.enableTruncation(maxLength: 20)
        // longest_first: the longer text gives way; [CLS] A [SEP] B [SEP] is 20 tokens.
        let pair = try tokenizer.encode(a, pair: b)
        #expect(pair.count == 20)
        #expect(pair.typeIds.filter { $0 == 1 }.isEmpty)  // ModernBERT's template gives type 0 to both
        tokenizer.enableTruncation(maxLength: 20, strategy: .onlySecond)
        #expect(throws: TokenizerError.self) { try tokenizer.encode(a, pair: b) }  // B is too short to lose 3 + ...
        tokenizer.enableTruncation(maxLength: 20, strategy: .onlyFirst)
        let onlyFirst = try tokenizer.encode(a, pair: b)
        #expect(onlyFirst.count == 20 && lengthA + lengthB + 3 > 20)
    }

    @Test func batchesPadToTheLongest() throws {
        var tokenizer = try Tokenizer(contentsOfFile: Self.qwen3)
        try tokenizer.enablePadding(length: nil, padId: try #require(tokenizer.tokenToId("<|endoftext|>")))
        let texts = ["short", "a somewhat longer text about a pigmented lesion", ""]
        let batch = try tokenizer.encodeBatch(texts)
        let longest = try texts.map { try tokenizer.encode($0).count }.max()!
        #expect(batch.allSatisfy { $0.count == longest })
        #expect(batch[2].attentionMask.allSatisfy { $0 == 0 })
        #expect(try tokenizer.ids("short") == Tokenizer(contentsOfFile: Self.qwen3).ids("short"))
    }

    /// The BPE cache is shared between threads; concurrent encodes must give the same ids as serial ones.
    @Test func concurrentEncodingIsConsistent() async throws {
        let tokenizer = try Tokenizer(contentsOfFile: Self.qwen3)
        let lines = try String(contentsOfFile: Goldens.directory + "/corpus.txt", encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let serial = try lines.map { try tokenizer.encode($0).ids }
        let results = try await withThrowingTaskGroup(of: [[Int]].self) { group in
            for _ in 0..<4 { group.addTask { try lines.map { try tokenizer.encode($0).ids } } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0 == serial })
    }

    // MARK: prima-convert tokenize

    private static let binary = TestProcess.binary("prima-convert")

    @Test func tokenizeCommandPrintsTheGoldenIds() throws {
        let corpus = try String(contentsOfFile: Goldens.directory + "/corpus.txt", encoding: .utf8)
        let lines = corpus.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        let rows = Goldens.tokenizerEntry("qwen3")["encodings"]!.array!.prefix(lines.count).map { $0.object! }
        #expect(rows.map { $0["text"]!.string! } == lines)
        for (flag, key) in [(nil, "ids"), ("--no-special", "ids_no_special")] as [(String?, String)] {
            let result = try TestProcess.run(Self.binary, ["tokenize", Self.qwen3] + (flag.map { [$0] } ?? []),
                                             standardInput: corpus)
            #expect(result.status == 0, "\(result.stderr)")
            let printed = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
            #expect(printed.count == lines.count)
            for (line, row) in zip(printed, rows) {
                let expected = "[" + row[key]!.ints.map(String.init).joined(separator: ", ") + "]"
                #expect(line == expected, "\(row["text"]!.string!.prefix(50).debugDescription)")
            }
        }
        // ModernBERT adds [CLS] … [SEP] unless --no-special.
        let modernbert = try TestProcess.run(Self.binary, ["tokenize", Self.modernbert], standardInput: "Hello World!\n")
        let golden = try Tokenizer(contentsOfFile: Self.modernbert).encode("Hello World!").ids
        #expect(modernbert.stdout == "[" + golden.map(String.init).joined(separator: ", ") + "]\n")
        let stats = try TestProcess.run(Self.binary, ["tokenize", Self.modernbert, "--stats"], standardInput: "x\n")
        #expect(stats.status == 0 && stats.stderr.contains("loaded") && stats.stderr.contains("tokens/s"))
    }

    @Test func tokenizeCommandRejectsBadFilesWithExitTwo() throws {
        let missing = try TestProcess.run(Self.binary, ["tokenize", "/nonexistent/tokenizer.json"], standardInput: "x\n")
        #expect(missing.status == 2)
        #expect(missing.stderr == "prima-convert: error: /nonexistent/tokenizer.json: cannot read: no such file\n")

        let directory = TestProcess.temporaryDirectory("prima-tokenizer-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let malformed = directory + "/tokenizer.json"
        try Data("{\"model\": {\"type\": \"BPE\", \"vocab\": {".utf8).write(to: URL(fileURLWithPath: malformed))
        let bad = try TestProcess.run(Self.binary, ["tokenize", malformed], standardInput: "x\n")
        #expect(bad.status == 2)
        #expect(bad.stderr.hasPrefix("prima-convert: error: \(malformed): malformed JSON:"))
        #expect(bad.stderr.split(separator: "\n").count == 1)
        #expect(bad.stdout.isEmpty)

        let unknown = directory + "/unknown.json"
        try Data(#"{"model": {"type": "WordLevel", "vocab": {}, "unk_token": "x"}}"#.utf8).write(to: URL(fileURLWithPath: unknown))
        let unsupported = try TestProcess.run(Self.binary, ["tokenize", unknown], standardInput: "x\n")
        #expect(unsupported.status == 2)
        #expect(unsupported.stderr == "prima-convert: error: \(unknown): model: unsupported type \"WordLevel\"\n")
    }
}
