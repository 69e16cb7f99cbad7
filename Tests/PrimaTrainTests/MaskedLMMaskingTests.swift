import Foundation
import PrimaJSON
import PrimaTestSupport
import PrimaTokenizers
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.7: transformers' masking with the run's streams.
@Suite struct MaskedLMMaskingTests {
    /// Fixtures/train/draws.json, written by Fixtures/make_train_data_fixtures.py from the numpy reference.
    static func draws() throws -> JSONObject {
        let path = TestProcess.repositoryRoot + "/Fixtures/train/draws.json"
        return try #require(try JSON.parse(String(contentsOfFile: path, encoding: .utf8)).object)
    }

    static func ints(_ value: JSONValue?) throws -> [Int] {
        let values = (value?.array ?? []).compactMap(\.int)
        try #require(!values.isEmpty && values.count == value?.array?.count)
        return values
    }

    static func bools(_ value: JSONValue?) throws -> [Bool] {
        let values = (value?.array ?? []).compactMap(\.bool)
        try #require(!values.isEmpty && values.count == value?.array?.count)
        return values
    }

    /// The masks of the Python reference, exactly (random replacements and kept tokens included).
    @Test func sameAsThePythonReference() throws {
        let draws = try Self.draws()
        let sequences = try #require(draws["sequences"]?.array).map { value in
            RiskFactorCorpus.Example(ids: try Self.ints(value.object?["ids"]), special: try Self.bools(value.object?["special"]))
        }
        let masks = try #require(draws["masks"]?.array)
        #expect(masks.count == 8)
        for mask in masks {
            let object = try #require(mask.object)
            let index = try #require(object["index"]?.int), epoch = try #require(object["epoch"]?.int)
            let masked = MaskedLMMasking.mask(sequences[index], maskTokenId: 4, vocabularySize: 50, seed: 5, epoch: epoch, index: index)
            #expect(masked.inputIds == (try Self.ints(object["input_ids"])), "example \(index) epoch \(epoch)")
            #expect(masked.labels == (try Self.ints(object["labels"])), "example \(index) epoch \(epoch)")
        }
    }

    /// Over 4,000 examples of 60 maskable tokens: the selection rate and the 80/10/10 split stay within 4.5
    /// binomial standard deviations (a false alarm about once in 150,000 runs), special tokens are never touched,
    /// labels hold the original ids exactly where selected, and every example has a masked position.
    @Test func statistics() {
        let length = 62
        let ids = [2] + (0..<60).map { 10 + $0 % 37 } + [3]
        let special = [true] + [Bool](repeating: false, count: 60) + [true]
        let example = RiskFactorCorpus.Example(ids: ids, special: special)
        var selected = 0, masked = 0, random = 0, unchanged = 0, eligible = 0
        for index in 0..<4000 {
            let out = MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 1000, seed: 9, epoch: 1, index: index)
            #expect(out.inputIds[0] == 2 && out.inputIds[length - 1] == 3)
            #expect(out.labels[0] == -100 && out.labels[length - 1] == -100)
            #expect(out.labels.contains { $0 != -100 })
            for t in 1..<(length - 1) {
                eligible += 1
                if out.labels[t] == -100 {
                    #expect(out.inputIds[t] == ids[t])
                    continue
                }
                #expect(out.labels[t] == ids[t])
                selected += 1
                if out.inputIds[t] == 4 { masked += 1 } else if out.inputIds[t] == ids[t] { unchanged += 1 } else { random += 1 }
            }
        }
        func within(_ count: Int, of n: Int, probability p: Double) -> Bool {
            abs(Double(count) - Double(n) * p) <= 4.5 * (Double(n) * p * (1 - p)).squareRoot()
        }
        #expect(within(selected, of: eligible, probability: 0.15), "selected \(selected) of \(eligible)")
        #expect(within(masked, of: selected, probability: 0.8), "[MASK] \(masked) of \(selected)")
        // A random token equal to the original (1 in 1000) counts as unchanged.
        #expect(within(random, of: selected, probability: 0.1 * 0.999), "random \(random) of \(selected)")
        #expect(within(unchanged, of: selected, probability: 0.1 + 0.1 * 0.001), "unchanged \(unchanged) of \(selected)")
    }

    @Test func deterministicPerSeedEpochAndIndex() {
        let example = RiskFactorCorpus.Example(ids: [2] + Array(10..<40) + [3], special: [true] + [Bool](repeating: false, count: 30) + [true])
        let a = MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 100, seed: 1, epoch: 2, index: 3)
        #expect(MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 100, seed: 1, epoch: 2, index: 3) == a)
        let others = [MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 100, seed: 2, epoch: 2, index: 3),
                      MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 100, seed: 1, epoch: 3, index: 3),
                      MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 100, seed: 1, epoch: 2, index: 4)]
        #expect(others.allSatisfy { $0 != a })
    }

    /// One maskable token: transformers would leave it unmasked 85% of the time; here it is always selected.
    @Test func atLeastOneMaskedPosition() {
        let example = RiskFactorCorpus.Example(ids: [2, 40, 3], special: [true, false, true])
        for index in 0..<200 {
            let out = MaskedLMMasking.mask(example, maskTokenId: 4, vocabularySize: 50, seed: 0, epoch: 0, index: index)
            #expect(out.labels == [-100, 40, -100])
        }
    }

    @Test func specialTokensOfTheFixtureTokenizer() throws {
        let tokenizer = try Tokenizer(contentsOfFile: TestProcess.repositoryRoot + "/Fixtures/models/bert-mlm-f32/tokenizer.json")
        #expect(try MaskedLMMasking.maskTokenId(tokenizer) == 511)
        #expect(MaskedLMMasking.specialIds(tokenizer) == [507, 508, 509, 510, 511])
    }
}
