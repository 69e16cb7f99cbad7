import Foundation
import PrimaTestSupport
import Testing
@testable import PrimaTokenizers

@Suite struct OnigurumaDifferential {
    /// The Split and Replace patterns of every tokenizer.json under Fixtures/ (read from the files, so a new fixture
    /// is covered), and the pre-tokenizer patterns of well-known tokenizers.
    static let patterns: [String] = {
        var found = Set<String>()
        func collect(_ value: Any) {
            if let object = value as? [String: Any] {
                if let pattern = object["Regex"] as? String { found.insert(pattern) }
                object.values.forEach(collect)
            } else if let array = value as? [Any] {
                array.forEach(collect)
            }
        }
        let root = TestProcess.repositoryRoot + "/Fixtures"
        let files = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
        for file in files where file.hasSuffix(".json") && !file.hasSuffix("goldens.json") {
            guard let data = FileManager.default.contents(atPath: root + "/" + file),
                  let json = try? JSONSerialization.jsonObject(with: data) else { continue }
            collect(json)
        }
        return found.sorted() + wellKnown
    }()

    static let wellKnown = [
        KnownSplitPattern.gpt2Pattern,
        KnownSplitPattern.qwen2Pattern,
        KnownSplitPattern.llama3Pattern,  // also GPT-4's cl100k_base
        // GPT-4o's o200k_base.
        #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        // DeepSeek-V3's Split sequence.
        #"\p{N}{1,3}"#,
        #"[一-龥぀-ゟ゠-ヿ]+"#,
        ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        // BLOOM.
        #" ?[^(\s|[.,!?…。，、।۔،])]+"#,
        // StarCoder2 / Falcon-style digit splitting, and a BERT-like word/punctuation split.
        #"\p{N}"#,
        #"\w+|[^\w\s]+"#,
        #"[\p{P}\p{S}]|\s+|[^\s\p{P}\p{S}]+"#,
        // Constructs real files use: look-behind, atomic groups, possessive and lazy quantifiers, anchors.
        #"(?<=\p{L})(?=\p{N})|(?<=\p{N})(?=\p{L})"#,
        #"(?>\s+)(?!\S)|\p{L}++|\p{N}+?|\b"#,
        #"^\s+|\s+$|(?m:.)"#,
    ]

    static let texts: [[Unicode.Scalar]] = {
        let corpus = (try? String(contentsOfFile: Goldens.directory + "/corpus.txt", encoding: .utf8)) ?? ""
        let lines = corpus.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.unicodeScalars) }
        return lines + DifferentialText.strings(count: 3000, seed: 20_260_901)
    }()

    /// Every pattern gives Oniguruma's matches on every text, through the general matcher and, for the three
    /// patterns that have one, through the hand-written matcher the tokenizer uses instead.
    @Test(arguments: patterns)
    func matchesOniguruma(_ pattern: String) throws {
        let ours = try TokenizerRegex(pattern)
        let reference = try OnigurumaRegex(pattern)
        let known = KnownSplitPattern(pattern: pattern)
        var differences = 0, matched = 0
        for text in Self.texts {
            let expected = reference.matches(in: text)
            matched += expected.count
            let general = try ours.matches(in: text)
            if general != expected {
                differences += 1
                if differences <= 3 {
                    let shown = String(String.UnicodeScalarView(text)).debugDescription
                    Issue.record(Comment(rawValue: "\(pattern.debugDescription) on \(shown): Oniguruma \(expected), ours \(general)"))
                }
            }
            if let known { #expect(known.matches(in: text) == expected, "\(pattern.debugDescription)") }
        }
        #expect(differences == 0, "\(differences) of \(Self.texts.count) texts differ for \(pattern.debugDescription)")
        #expect(Self.texts.count > 3000 && matched > 0)
    }

    /// Seeded random patterns over the constructs tokenizers use (classes, quantifiers of every kind, groups,
    /// look-arounds, atomic groups, alternation): every pattern Oniguruma refuses, we refuse; every pattern both
    /// accept matches alike on every text, unless our search stops at its step budget (Oniguruma has
    /// optimisations for some nested quantifiers that a plain backtracking matcher lacks; stopping is an error,
    /// never a different answer).
    @Test func randomPatternsMatchOniguruma() throws {
        var random = SplitMix64(seed: 20_261_203)
        func below(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        let atoms = ["a", "b", #"\s"#, #"\S"#, #"\p{L}"#, #"\p{N}"#, #"[^\s\p{L}]"#, "[a-c]", ".", "'", #"\w"#, #"\W"#,
                     #"\d"#, #"[\r\n]"#, " ", #"\p{Lu}"#, #"\p{Ll}"#, "(?i:s)", #"\h"#, #"\b"#, #"\p{P}"#]
        let quantifiers = ["*", "+", "?", "{1,3}", "*?", "++", "", "", ""]
        func pattern(_ depth: Int) -> String {
            (0..<(1 + below(3))).map { _ -> String in
                var atom = atoms[below(atoms.count)]
                if depth > 0 && below(3) == 0 {
                    let inner = pattern(depth - 1)
                    atom = ["(?:\(inner))", "(\(inner))", "(?=\(inner))", "(?!\(inner))", "(?>\(inner))",
                            "(?:\(inner)|\(pattern(depth - 1)))"][below(6)]
                }
                return atom + quantifiers[below(quantifiers.count)]
            }.joined()
        }
        let texts = DifferentialText.strings(count: 60, seed: 99)
        var compared = 0, stopped = 0
        for _ in 0..<600 {
            let candidate = below(4) == 0 ? pattern(2) + "|" + pattern(2) : pattern(2)
            let reference = try? OnigurumaRegex(candidate)
            let ours = try? TokenizerRegex(candidate)
            if reference == nil { #expect(ours == nil, "Oniguruma refuses \(candidate.debugDescription), we accept it") }
            guard let reference, let ours else { continue }
            compared += 1
            for text in texts {
                guard let found = try? ours.matches(in: text) else {
                    stopped += 1
                    break
                }
                let expected = reference.matches(in: text)
                if found != expected {
                    let shown = String(String.UnicodeScalarView(text)).debugDescription
                    Issue.record(Comment(rawValue: "\(candidate.debugDescription) on \(shown): Oniguruma \(expected), ours \(found)"))
                    break
                }
            }
        }
        #expect(compared > 300)
        #expect(stopped * 20 < compared, "\(stopped) of \(compared) patterns stopped at the step budget")
    }
}
