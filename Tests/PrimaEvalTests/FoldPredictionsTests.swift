import PrimaEval
import PrimaIO
import PrimaJSON
import Testing

@Suite struct FoldPredictionsTests {
    let classes = ["ACK", "BCC", "MEL"]

    @Test func roundTripsThroughJSONText() throws {
        let original = try FoldPredictions(
            system: "prima", fold: 2, classes: classes, cases: ["a.png", "b.png"], labels: [1, 2],
            probabilities: [[0.1, 0.7, 0.2], [1.0 / 3, 1.0 / 3, 1.0 / 3]])
        let text = original.json.serialized()
        let read = try FoldPredictions(json: try JSON.parse(text))
        #expect(read == original)
        // A tie goes to the lowest class index.
        #expect(read.predictions == [1, 0])
    }

    @Test func refusesInconsistentPredictions() {
        func refused(_ labels: [Int], _ rows: [[Double]]) -> Bool {
            (try? FoldPredictions(system: "s", fold: 0, classes: classes, cases: ["x"], labels: labels, probabilities: rows)) == nil
        }
        #expect(refused([3], [[0.2, 0.3, 0.5]]))          // label out of range
        #expect(refused([0], [[0.2, 0.3]]))               // row too short
        #expect(refused([0], [[0.2, 0.3, 0.6]]))          // does not sum to 1
        #expect(refused([0], [[-0.1, 0.6, 0.5]]))         // negative
        #expect(refused([0], [[.nan, 0.5, 0.5]]))         // not finite
        #expect(refused([0, 1], [[0.2, 0.3, 0.5]]))       // count mismatch
        #expect(!refused([0], [[0.2, 0.3, 0.5]]))
    }

    @Test func namesTheMissingMember() throws {
        let text = #"{"system":"prima","fold":0,"classes":["ACK"],"cases":["a"],"labels":[0]}"#
        #expect(throws: ToolError.input("predictions: member \"probabilities\" missing or of the wrong type")) {
            try FoldPredictions(json: try JSON.parse(text))
        }
    }
}
