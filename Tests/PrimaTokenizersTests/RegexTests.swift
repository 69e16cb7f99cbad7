import PrimaTestSupport
import Testing
@testable import PrimaTokenizers

/// The shared seeded generator (PrimaTestSupport) for the standard library's random APIs.
private struct SeededGenerator: RandomNumberGenerator {
    var base: SplitMix64
    mutating func next() -> UInt64 { base.next() }
}

/// The regex matcher: constructs checked against what the Python library (Oniguruma) gives, the hand-written
/// GPT-2/Qwen2/Llama-3 matchers against the general matcher, and refusal of unsupported syntax.
@Suite struct RegexTests {
    /// Split(pattern, "isolated") pieces, as pre_tokenize_str returns them.
    private func pieces(_ pattern: String, _ text: String) throws -> [String] {
        let split = SplitPreTokenizer(pattern: .regex(try TokenizerRegex(pattern)), behavior: .isolated, invert: false)
        return try split.preTokenize([PreToken(text: scalars(text), atStart: true)]).map(\.text.string)
    }

    /// Each expectation was produced by tokenizers 0.23.3:
    /// pre_tokenizers.Split(Regex(pattern), behavior="isolated").pre_tokenize_str(text).
    @Test(arguments: [
        (#"a+?"#, "aaa", ["a", "a", "a"]),
        (#"a++a"#, "aaaa b aa", ["aaaa b aa"]),
        (#"(?>a+)b|a"#, "aaab aa", ["aaab", " ", "a", "a"]),
        (#"(?<=x)y+"#, "xyy yy xy", ["x", "yy", " yy x", "y"]),
        (#"(?<!x)y"#, "xy yy", ["xy ", "y", "y"]),
        (#"^\w+|\w+$"#, "ab cd\nef gh", ["ab", " ", "cd", "\n", "ef", " ", "gh"]),
        (#"\Aab|cd\z"#, "abcd ab cd", ["ab", "cd ab ", "cd"]),
        (#"x*"#, "axxb", ["a", "xx", "b"]),
        (#"[^\W\d]+"#, "ab12cd_e f", ["ab", "12", "cd_e", " ", "f"]),
        (#"(?i)[a-c]+"#, "ABCabcD", ["ABCabc", "D"]),
        (#"a{2,3}"#, "aaaaaaa", ["aaa", "aaa", "a"]),
        (#"a{2,}?"#, "aaaaa", ["aa", "aa", "a"]),
        (#"\p{Lu}\p{Ll}+"#, "HelloWorld ÉcoleΣοφία", ["Hello", "World", " ", "École", "Σοφία"]),
        (#"\d+(?=px)"#, "12px 34em 5px", ["12", "px 34em ", "5", "px"]),
        (#"(?:ab|a)(?:bc|c)"#, "abc", ["abc"]),
        (#"\bfoo\b"#, "foo foobar barfoo foo", ["foo", " foobar barfoo ", "foo"]),
        (#"[\u00e9-\u00ea\x41]"#, "éêëA", ["é", "ê", "ë", "A"]),
        (#"\x{1F600}|\u00e9"#, "😀é", ["😀", "é"]),
        (#"."#, "a\nb", ["a", "\n", "b"]),
        (#"(?m:.)+"#, "a\nb", ["a\nb"]),
        (#"a{,2}"#, "aaa", ["aa", "a"]),
        (#"a{x}"#, "a{x}", ["a{x}"]),
        (#"(a|ab)(c|bcd)(d*)"#, "abcd", ["abcd"]),
        (#"(?i)ſ"#, "s S ſ", ["s", " ", "S", " ", "ſ"]),
        (#"[[:alpha:]]+"#, "ab1 cd", ["ab", "1 ", "cd"]),
        (#"\h+"#, "0x1fG", ["0", "x", "1f", "G"]),
        (#"(?#comment)a"#, "ba", ["b", "a"]),
    ])
    func constructsMatchOniguruma(_ pattern: String, _ text: String, _ expected: [String]) throws {
        #expect(try pieces(pattern, text) == expected, "\(pattern) on \(text.debugDescription)")
    }

    @Test(arguments: [
        (#"(a)\1"#, "backreferences"), (#"\p{Han}"#, "unsupported property"), (#"[\p{N}&&\d]"#, "intersection"),
        (#"(?x) a"#, "extended mode"), (#"(?i:ß)"#, "multi-character case folding"), (#"\Qa\E"#, "unsupported escape"),
        (#"a)"#, "unbalanced"), (#"(a"#, "missing"), (#"[a"#, "unterminated"), (#"*a"#, "nothing to repeat"),
        (#"a{3,2}"#, "empty"),
    ])
    func unsupportedSyntaxIsRefused(_ pattern: String, _ message: String) {
        do {
            _ = try TokenizerRegex(pattern)
            Issue.record("\(pattern) compiled")
        } catch {
            #expect("\(error)".contains(message), "\(pattern): \(error)")
            #expect("\(error)".contains(pattern.debugDescription))
        }
    }

    /// The hand-written matchers give exactly the general matcher's matches, on the goldens' inputs and on seeded
    /// random strings over the characters the patterns distinguish.
    @Test(arguments: [KnownSplitPattern.gpt2Pattern, KnownSplitPattern.qwen2Pattern, KnownSplitPattern.llama3Pattern])
    func handWrittenMatchersAgreeWithTheGeneralMatcher(_ pattern: String) throws {
        let known = try #require(KnownSplitPattern(pattern: pattern))
        let general = try TokenizerRegex(pattern)
        var texts = Goldens.components["inputs"]!.object!["all"]!.strings
        let alphabet = scalars("aZéß中ſsStTlLdDmMrReEvV' '\t\n\r\u{0B}\u{85}\u{A0}\u{3000}09٣²½Ⅻ.,-!?()😀\u{301}\u{200D}'''")
        var generator = SeededGenerator(base: SplitMix64(seed: 42))
        for _ in 0..<2000 {
            let length = Int.random(in: 0...16, using: &generator)
            texts.append((0..<length).map { _ in alphabet.randomElement(using: &generator)! }.string)
        }
        for text in texts {
            let input = scalars(text)
            #expect(try known.matches(in: input) == general.matches(in: input), "\(text.debugDescription)")
        }
    }

    /// Scalars added to Unicode after 16.0 are unassigned for the reference library: not letters for the split.
    @Test func scalarsNewerThanUnicode16AreUnassigned() {
        // U+A7CE LATIN CAPITAL LETTER PHARYNGEAL VOICED FRICATIVE: Unicode 17.0.
        #expect(!UnicodeProperties.isLetter(0xA7CE))
        #expect(UnicodeProperties.isLetter(0x00E9))
        #expect(UnicodeProperties.category(0xA7CE) == .Cn)
    }
}
