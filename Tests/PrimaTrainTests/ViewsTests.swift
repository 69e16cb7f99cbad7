import PrimaJSON
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.3: stage-2 examples are lesions, with two views picked per epoch.
@Suite struct ViewsTests {
    @Test func oneExamplePerLesion() {
        let data = TrainingDataSupport.generated(patients: 40)
        let positions = Array(data.cases.indices.reversed())  // the order given does not matter
        let examples = Views.alignmentExamples(data, positions: positions)
        #expect(examples.count == Set(data.cases.map(\.lesionKey)).count)
        #expect(examples.flatMap(\.images).sorted() == Array(data.cases.indices))
        for example in examples {
            #expect(example.images == example.images.sorted())
            #expect(Set(example.images.map { data.cases[$0].lesionKey }).count == 1)
        }
        #expect(examples.map(\.representative) == examples.map(\.representative).sorted())
    }

    @Test func pickedViews() throws {
        #expect(Views.pick(AlignmentExample(images: [7]), seed: 1, epoch: 0, index: 0) == (7, 7))
        // Two distinct images, every ordered pair of a four-image lesion over many epochs, about equally often.
        let example = AlignmentExample(images: [10, 11, 12, 13])
        var counts: [Int: Int] = [:]
        for epoch in 0..<1200 {
            let (a, b) = Views.pick(example, seed: 2, epoch: epoch, index: 5)
            #expect(a != b)
            counts[a * 100 + b, default: 0] += 1
        }
        #expect(counts.count == 12)
        // 1200 draws over 12 pairs: 100 expected each, 4.5 standard deviations ≈ 43.
        #expect(counts.values.allSatisfy { abs($0 - 100) <= 43 }, "\(counts)")
        for entry in try #require(try MaskedLMMaskingTests.draws()["view_picks"]?.array) {
            let object = try #require(entry.object)
            let pick = Views.pick(AlignmentExample(images: try MaskedLMMaskingTests.ints(object["images"])), seed: 5,
                                  epoch: try #require(object["epoch"]?.int), index: 3)
            #expect([pick.0, pick.1] == (try MaskedLMMaskingTests.ints(object["pick"])))
        }
    }
}
