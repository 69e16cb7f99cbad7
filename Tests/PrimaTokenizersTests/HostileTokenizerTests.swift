import Foundation
import PrimaTestSupport
import Testing
@testable import PrimaTokenizers

/// `prima-convert tokenize` on hostile tokenizer.json files and inputs: catastrophic-backtracking regexes, huge
/// padding and truncation values and huge lines end in one line and exit status 2, in bounded time and memory
/// (TokenizerLimits, Formats/prima-checkpoint.md §10.3).
@Suite struct HostileTokenizerTests {
    private static let binary = TestProcess.binary("prima-convert")

    /// A small word-level BPE tokenizer.json whose pre-tokenizer is a Split on `pattern`, with `extra` members at
    /// the top level (padding, truncation).
    static func tokenizerJSON(pattern: String, extra: String = "") -> String {
        let escaped = pattern.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return """
            {"version": "1.0", \(extra)
             "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\(escaped)"}, "behavior": "Isolated", "invert": false},
             "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "aa": 2}, "merges": [["a", "a"]]}}
            """
    }

    static func write(_ text: String) throws -> String {
        let path = TestProcess.temporaryDirectory("prima-hostile-tokenizer") + "/tokenizer.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `tokenize` and checks the one-line refusal with exit status 2 within `seconds`.
    static func expectRefusal(_ path: String, input: String, contains parts: [String], seconds: Double = 20,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let start = Date()
        // timeout(1) kills a hang, so that it fails the test instead of stalling it.
        let result = try TestProcess.run("/usr/bin/timeout", ["\(Int(seconds) * 2)", binary, "tokenize", path],
                                         standardInput: input)
        let elapsed = Date().timeIntervalSince(start)
        #expect(result.status == 2, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(elapsed < seconds, "took \(elapsed) s", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        for part in parts { #expect(result.stderr.contains(part), "\(part) in \(result.stderr)", sourceLocation: sourceLocation) }
    }

    /// Exponential backtracking stops at the step budget with an error naming the file, the place and the pattern;
    /// a long line that is not hostile for the same pattern still encodes.
    @Test(arguments: ["(a+)+$", "(a|a)*b", "(a|aa)+c", "(?:a+a)+x"])
    func catastrophicBacktrackingIsStopped(_ pattern: String) throws {
        let path = try Self.write(Self.tokenizerJSON(pattern: pattern))
        try Self.expectRefusal(path, input: String(repeating: "a", count: 30_000) + "!\n",
                               contains: [path, "pre_tokenizer.pattern.Regex", pattern, "catastrophic backtracking"])
        // The budget is per scalar: the same pattern on ordinary text is not refused.
        let fine = try TestProcess.run(Self.binary, ["tokenize", path], standardInput: "ab ba\n")
        #expect(fine.status == 0, "\(fine.stderr)")
    }

    /// One budget per encode call: 4,000 short pieces, each just under the base budget on its own, are refused
    /// together instead of taking 4,000 times the base.
    @Test func theBudgetIsSharedByThePiecesOfOneText() throws {
        let path = try Self.write("""
            {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
               {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false}]},
             "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}}
            """)
        let piece = String(repeating: "a", count: 14) + "!"
        try Self.expectRefusal(path, input: Array(repeating: piece, count: 4000).joined(separator: " ") + "\n",
                               contains: [path, "(a+)+$", "catastrophic backtracking"], seconds: 15)
    }

    @Test(arguments: [
        (#""padding": {"strategy": {"Fixed": 1000000000}, "pad_id": 0},"#, "padding.strategy.Fixed: padding length 1000000000"),
        (#""padding": {"strategy": "BatchLongest", "pad_to_multiple_of": 1000000000, "pad_id": 0},"#,
         "padding.pad_to_multiple_of: pad_to_multiple_of 1000000000"),
        (#""truncation": {"max_length": 1000000000},"#, "truncation: max_length 1000000000"),
    ])
    func hugePaddingAndTruncationAreRefusedAtLoad(_ extra: String, _ message: String) throws {
        let path = try Self.write(Self.tokenizerJSON(pattern: "a", extra: extra))
        try Self.expectRefusal(path, input: "a\n", contains: [path, message, "outside 0...\(TokenizerLimits.maxSequenceLength)"],
                               seconds: 10)
    }

    @Test(arguments: [
        ("(?<=a+)b", "look-behind of unbounded length"),
        ("(?:a*)*x", "a repeated group that can match empty"),
        ("((a{1000}){1000}){1000}", "more than the limit of \(TokenizerLimits.maxRegexInstructions)"),
        ("(?<=((a{1000000}){1000000}){1000000})b", "more than the limit of \(TokenizerLimits.maxRegexInstructions)"),
    ])
    func unboundedPatternsAreRefusedAtLoad(_ pattern: String, _ message: String) throws {
        let path = try Self.write(Self.tokenizerJSON(pattern: pattern))
        try Self.expectRefusal(path, input: "ab\n", contains: [path, "pre_tokenizer.pattern.Regex", message], seconds: 10)
    }

    /// A 50 MB line is refused as soon as the limit is passed, under a 1 GB address-space limit (reading the whole
    /// line, then its scalars and pieces, would take several times 50 MB per copy).
    @Test func hugeLineIsRefusedWithBoundedMemory() throws {
        let tokenizer = Goldens.directory + "/qwen3/tokenizer.json"
        let directory = TestProcess.temporaryDirectory("prima-hostile-line")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let input = directory + "/line.txt"
        var line = Data(repeating: UInt8(ascii: "a"), count: 50_000_000)
        line.append(UInt8(ascii: "\n"))
        try line.write(to: URL(fileURLWithPath: input))
        let start = Date()
        let result = try TestProcess.run("/bin/sh", ["-c", "ulimit -v 1000000; exec timeout 60 \"$0\" tokenize \"$1\" < \"$2\"",
                                                     Self.binary, tokenizer, input])
        #expect(Date().timeIntervalSince(start) < 20)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("stdin line 1: longer than the limit of \(TokenizerLimits.maxInputBytes) bytes"))
        // Lines up to the limit are encoded, and a "\r\n" line end is not counted.
        let atLimit = String(repeating: "a", count: TokenizerLimits.maxInputBytes) + "\r\nb\n"
        let fine = try TestProcess.run(Self.binary, ["tokenize", tokenizer], standardInput: atLimit)
        #expect(fine.status == 0, "\(fine.stderr)")
        #expect(fine.stdout.split(separator: "\n").count == 2)
    }

    /// Patterns nested thousands deep (groups, non-capturing groups, look-aheads, classes, stacked quantifiers)
    /// overflowed the stack of the recursive parser; they are refused at load, naming the file and the place, and
    /// the message abbreviates the pattern. Nesting up to the limit is accepted.
    @Test(arguments: [
        String(repeating: "(", count: 5000) + "a" + String(repeating: ")", count: 5000),
        String(repeating: "(?:", count: 5000) + "a" + String(repeating: ")", count: 5000),
        String(repeating: "(?=", count: 2000) + "a" + String(repeating: ")", count: 2000),
        String(repeating: "[", count: 5000) + "a" + String(repeating: "]", count: 5000),
        "a" + String(repeating: "{1}", count: 5000),
        String(repeating: "(", count: TokenizerLimits.maxRegexNesting) + "a" + String(repeating: ")+", count: TokenizerLimits.maxRegexNesting),
        String(repeating: "(", count: TokenizerLimits.maxRegexNesting + 1) + "a" + String(repeating: ")", count: TokenizerLimits.maxRegexNesting + 1),
    ])
    func deeplyNestedPatternsAreRefusedAtLoad(_ pattern: String) throws {
        let path = try Self.write(Self.tokenizerJSON(pattern: pattern))
        try Self.expectRefusal(path, input: "ab\n", contains: [path, "pre_tokenizer.pattern.Regex",
                                                             "nest more than \(TokenizerLimits.maxRegexNesting) deep"]
                                   + (pattern.unicodeScalars.count > 80 ? ["… (\(pattern.unicodeScalars.count) characters)"] : []),
                               seconds: 10)
    }

    @Test func nestingUpToTheLimitIsAccepted() throws {
        let depth = TokenizerLimits.maxRegexNesting
        for pattern in [String(repeating: "(", count: depth) + "a" + String(repeating: ")", count: depth),
                        String(repeating: "(", count: depth / 2) + "a" + String(repeating: ")?", count: depth / 2),
                        String(repeating: "[", count: depth) + "a" + String(repeating: "]", count: depth)] {
            let path = try Self.write(Self.tokenizerJSON(pattern: pattern))
            let result = try TestProcess.run(Self.binary, ["tokenize", path], standardInput: "aab\n")
            #expect(result.status == 0, "\(pattern): \(result.stderr)")
        }
    }

    /// A BPE tokenizer.json with this normalizer, pre-tokenizer, added tokens and decoder (JSON texts).
    static func pipelineJSON(normalizer: String = "null", preTokenizer: String = "null", added: String = "[]",
                             decoder: String = "null") -> String {
        """
        {"added_tokens": \(added), "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer), "decoder": \(decoder),
         "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "n": 2, "t": 3}, "merges": []}}
        """
    }

    static func replace(_ from: String, _ to: String) -> String {
        #"{"type": "Replace", "pattern": {"String": "\#(from)"}, "content": "\#(to)"}"#
    }

    /// Runs `tokenize` under a 1 GB address-space limit and checks the one-line refusal (InputLimitTests does the
    /// same for the other tools): a text blown up to gigabytes would fail to allocate instead.
    static func expectBoundedRefusal(_ path: String, input: String, contains parts: [String],
                                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let directory = TestProcess.temporaryDirectory("prima-hostile-growth")
        let inputPath = directory + "/input.txt"
        try input.write(toFile: inputPath, atomically: true, encoding: .utf8)
        let start = Date()
        let result = try TestProcess.run("/bin/sh", ["-c", "ulimit -v 1000000; exec timeout 60 \"$0\" tokenize \"$1\" < \"$2\"",
                                                     Self.binary, path, inputPath])
        #expect(Date().timeIntervalSince(start) < 20, sourceLocation: sourceLocation)
        #expect(result.status == 2, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        for part in parts { #expect(result.stderr.contains(part), "\(part) in \(result.stderr)", sourceLocation: sourceLocation) }
    }

    /// The campaign's chained Replace normalizers (`a` → 1,000 `a`s, five times) would make a word gigabytes long;
    /// the third is refused before it allocates, naming its place in the file.
    @Test func chainedReplaceNormalizersAreBounded() throws {
        let grow = Self.replace("a", String(repeating: "a", count: 1000))
        let path = try Self.write(Self.pipelineJSON(
            normalizer: #"{"type": "Sequence", "normalizers": [\#(Array(repeating: grow, count: 5).joined(separator: ", "))]}"#))
        try Self.expectBoundedRefusal(path, input: "banana\n", contains: [
            path, "normalizer.normalizers[2]", "past the limit of \(TokenizerLimits.maxTextGrowth) characters"])
        // Text without the pattern is encoded as usual.
        let fine = try TestProcess.run(Self.binary, ["tokenize", path], standardInput: "bt\n")
        #expect(fine.status == 0 && fine.stdout == "[1, 3]\n", "\(fine.stdout)\(fine.stderr)")
    }

    /// Byte-level pre-tokenizers in a chain double every non-ASCII scalar each time.
    @Test func chainedPreTokenizersAreBounded() throws {
        let byteLevel = #"{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}"#
        let path = try Self.write(Self.pipelineJSON(
            preTokenizer: #"{"type": "Sequence", "pretokenizers": [\#(Array(repeating: byteLevel, count: 20).joined(separator: ", "))]}"#))
        try Self.expectBoundedRefusal(path, input: String(repeating: "é", count: 200_000) + "\n", contains: [
            path, "pre_tokenizer.pretokenizers[", "past the limit of \(TokenizerLimits.maxTextGrowth) characters"])
    }

    /// One growth budget per text: 5,000 pieces between added tokens, each grown 1,000 times (well under the
    /// limit on its own), are refused together.
    @Test func theGrowthBudgetIsSharedByThePiecesOfOneText() throws {
        let path = try Self.write(Self.pipelineJSON(
            normalizer: Self.replace("a", String(repeating: "a", count: 1000)),
            added: #"[{"id": 4, "content": "<t>", "special": true, "normalized": false}]"#))
        try Self.expectBoundedRefusal(path, input: String(repeating: "a<t>", count: 5000) + "\n",
                                      contains: [path + ": normalizer", "past the limit"])
        let fine = try TestProcess.run(Self.binary, ["tokenize", path], standardInput: String(repeating: "a<t>", count: 10) + "\n")
        #expect(fine.status == 0, "\(fine.stderr)")
    }

    /// Replace decoders are bounded the same way (decode is used by library callers).
    @Test func chainedReplaceDecodersAreBounded() throws {
        let grow = Self.replace("a", String(repeating: "a", count: 1000))
        let tokenizer = try Tokenizer(json: Self.pipelineJSON(decoder: #"{"type": "Sequence", "decoders": [\#(grow), \#(grow)]}"#),
                                      source: "t/tokenizer.json")
        expectError("t/tokenizer.json: decoder.decoders[1]", "past the limit") { _ = try tokenizer.decode(Array(repeating: 0, count: 10)) }
        #expect(try tokenizer.decode([0]).count == 1_000_000)
    }

    /// A line that is not UTF-8 is refused, naming the line, instead of being encoded as U+FFFD.
    @Test func invalidUTF8LinesAreRefused() throws {
        let tokenizer = Goldens.directory + "/qwen3/tokenizer.json"
        let directory = TestProcess.temporaryDirectory("prima-hostile-utf8")
        let input = directory + "/latin1.txt"
        try Data("ok\n".utf8 + [0x63, 0x61, 0x66, 0xE9, 0x0A] + "more\n".utf8).write(to: URL(fileURLWithPath: input))
        let result = try TestProcess.run("/bin/sh", ["-c", "exec \"$0\" tokenize \"$1\" < \"$2\"", Self.binary, tokenizer, input])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr == "prima-convert: error: stdin line 2: not UTF-8 text\n", "\(result.stderr)")
    }

    /// The library refuses texts over the limit (callers other than the tool).
    @Test func encodeRefusesTextsOverTheLimit() throws {
        let tokenizer = try Tokenizer(json: Self.tokenizerJSON(pattern: "a"), source: "t/tokenizer.json")
        let text = String(repeating: "b", count: TokenizerLimits.maxInputBytes + 1)
        expectError("t/tokenizer.json", "longer than the limit") { _ = try tokenizer.encode(text) }
    }
}
