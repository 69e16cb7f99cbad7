import Foundation
import PrimaTestSupport
import PrimaTokenizers
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.6: the risk-factor corpus, read as hostile input, and its tokenized examples.
@Suite struct CorpusTests {
    static func corpus(_ text: String) throws -> RiskFactorCorpus {
        try RiskFactorCorpus(bytes: Array(text.utf8), source: "corpus.jsonl")
    }

    @Test func recordsAndTheirText() throws {
        let corpus = try Self.corpus("""
            \u{FEFF}{"name": "Smoking", "summary": "Raises SCC risk.", "details": "Dose-dependent.\\nStrongest for lip SCC."}

            {"details": "", "summary": "  ", "name": " UV exposure "}\r
            {"name": "Age", "summary": "Risk grows with age.", "details": ""}
            """)
        #expect(corpus.records.map(\.line) == [1, 3, 4])
        #expect(corpus.records[0].text == "Smoking: Raises SCC risk. Dose-dependent.\nStrongest for lip SCC.")
        #expect(corpus.records[1].text == "UV exposure:")
        #expect(corpus.records[2].text == "Age: Risk grows with age.")
    }

    @Test func hostileLines() throws {
        let good = #"{"name": "a", "summary": "b", "details": "c"}"#
        expectError("corpus.jsonl", "no records") { _ = try Self.corpus("\n  \n") }
        expectError("corpus.jsonl line 2", "malformed JSON") { _ = try Self.corpus(good + "\n{\"name\": \n") }
        expectError("corpus.jsonl line 1", "expected a JSON object, got array") { _ = try Self.corpus("[1]") }
        expectError("corpus.jsonl line 1", "unknown key \"sumary\"") {
            _ = try Self.corpus(#"{"name": "a", "sumary": "b", "details": "c"}"#)
        }
        expectError("corpus.jsonl line 1", "missing key \"details\"") { _ = try Self.corpus(#"{"name": "a", "summary": "b"}"#) }
        expectError("corpus.jsonl line 1", "\"summary\" must be a string, got number") {
            _ = try Self.corpus(#"{"name": "a", "summary": 3, "details": "c"}"#)
        }
        expectError("corpus.jsonl line 1", "\"name\" is empty") { _ = try Self.corpus(#"{"name": " ", "summary": "b", "details": "c"}"#) }
        expectError("corpus.jsonl line 1", "duplicate key") {
            _ = try Self.corpus(#"{"name": "a", "name": "b", "summary": "b", "details": "c"}"#)
        }
        expectError("corpus.jsonl line 3", "not UTF-8") {
            _ = try RiskFactorCorpus(bytes: Array((good + "\n" + good + "\n").utf8) + [0x7B, 0xFF, 0x7D], source: "corpus.jsonl")
        }
        let long = String(repeating: "x", count: RiskFactorCorpus.maxFieldBytes + 1)
        expectError("corpus.jsonl line 1", "\"details\" is \(long.utf8.count) bytes") {
            _ = try Self.corpus(#"{"name": "a", "summary": "b", "details": "\#(long)"}"#)
        }
        expectError("is a directory") { _ = try RiskFactorCorpus(path: TestProcess.temporaryDirectory()) }
        expectError("no such file") { _ = try RiskFactorCorpus(path: "/nonexistent/corpus.jsonl") }
    }

    /// Tokenized with the fixture BERT tokenizer: [CLS] … [SEP], specials marked, truncation keeps [SEP].
    @Test func examples() throws {
        let tokenizer = try Tokenizer(contentsOfFile: TestProcess.repositoryRoot + "/Fixtures/models/bert-mlm-f32/tokenizer.json")
        let corpus = try Self.corpus("""
            {"name": "Smoking", "summary": "The lesion has grown and bleeds.", "details": "Family history of skin cancer."}
            {"name": "[MASK]", "summary": "", "details": ""}
            """)
        let examples = try corpus.examples(tokenizer: tokenizer, maxLength: 64)
        let full = try tokenizer.encode(corpus.records[0].text).ids
        #expect(examples[0].ids == full)
        #expect(examples[0].ids.first == 508 && examples[0].ids.last == 509)
        #expect(examples[0].special.first == true && examples[0].special.last == true && examples[0].special.dropFirst().dropLast().allSatisfy { !$0 })
        // "[MASK]" in a name is the special token: not maskable, but ":" is.
        #expect(examples[1].ids.contains(511) && examples[1].special[examples[1].ids.firstIndex(of: 511)!])
        let short = try corpus.examples(tokenizer: tokenizer, maxLength: 5)
        #expect(short[0].ids == Array(full.prefix(4)) + [509])
        #expect(short[0].special == [true, false, false, false, true])
        let onlySpecial = try Self.corpus(#"{"name": "[MASK]", "summary": "[SEP]", "details": ""}"#)
        // "[MASK]: [SEP]" still has ":" to mask; a record of special tokens alone has nothing.
        #expect(try onlySpecial.examples(tokenizer: tokenizer, maxLength: 64).count == 1)
        expectError("corpus.jsonl line 1", "no token that masking could select") {
            _ = try onlySpecial.examples(tokenizer: tokenizer, maxLength: 3)
        }
    }
}

/// Mutated corpora: every outcome is a parse or a one-line error naming the file, never a crash.
@Suite struct CorpusMutationTests {
    /// 3,000 corpora from a valid one by seeded byte flips, insertions and deletions.
    @Test func mutatedCorpora() {
        let seed = Array(#"{"name": "Sun", "summary": "UV light.", "details": "Cumulative \u00e9."}"#.utf8 + [10] + #"{"name": "b", "summary": "", "details": ""}"#.utf8)
        var stream = TrainingRandom(seed: 17, purpose: .shuffle, epoch: 0, index: 0)
        var accepted = 0
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<(1 + stream.below(4)) {
                let at = stream.below(bytes.count)
                switch stream.below(3) {
                case 0: bytes[at] = UInt8(stream.below(256))
                case 1: bytes.insert(UInt8(stream.below(256)), at: at)
                default: bytes.remove(at: at)
                }
            }
            do {
                let corpus = try RiskFactorCorpus(bytes: bytes, source: "corpus.jsonl")
                #expect(!corpus.records.isEmpty)
                accepted += 1
            } catch {
                #expect(!"\(error)".contains("\n") && "\(error)".hasPrefix("corpus.jsonl"), "\(error)")
            }
        }
        #expect(accepted > 0 && accepted < 3000)
    }
}
