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

    /// The library refuses texts over the limit (callers other than the tool).
    @Test func encodeRefusesTextsOverTheLimit() throws {
        let tokenizer = try Tokenizer(json: Self.tokenizerJSON(pattern: "a"), source: "t/tokenizer.json")
        let text = String(repeating: "b", count: TokenizerLimits.maxInputBytes + 1)
        expectError("t/tokenizer.json", "longer than the limit") { _ = try tokenizer.encode(text) }
    }
}
