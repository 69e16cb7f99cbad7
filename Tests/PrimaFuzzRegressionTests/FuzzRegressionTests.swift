import Foundation
import PrimaFuzzTargets
import PrimaTestSupport
import Testing

/// Replays every committed fuzzing input — the corpus libFuzzer grew (Tests/Fuzz/corpus/TARGET) and every input
/// that once crashed or hung (Tests/Fuzz/crashes/TARGET) — through the same entry points the fuzzer drives: each
/// must be accepted or refused with a message, quickly. (Messages may quote hostile names holding line breaks; the
/// tools escape those when printing, which HostileSmallInputTests checks through a binary.)
@Suite struct FuzzRegressionTests {
    static let fuzzDirectory = TestProcess.repositoryRoot + "/Tests/Fuzz"
    /// Longest time one input may take here (debug build, parallel tests): libFuzzer's time-out in run.sh is 10 s.
    static let maxSecondsPerInput = 10.0

    static func inputs(_ kind: String, _ target: FuzzTarget) -> [String] {
        let directory = fuzzDirectory + "/\(kind)/\(target.rawValue)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory + "/" + $0 }
    }

    @Test(arguments: FuzzTarget.allCases)
    func everyCommittedInputIsAcceptedOrRefused(_ target: FuzzTarget) throws {
        let corpus = Self.inputs("corpus", target), crashes = Self.inputs("crashes", target)
        #expect(corpus.count >= 5, "Tests/Fuzz/corpus/\(target.rawValue) holds \(corpus.count) inputs")
        let scratch = TestProcess.temporaryDirectory("prima-fuzz-replay")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var accepted = 0
        var firstRefusal: String?
        if target == .checkpoint {
            // libhdf5 may crash on these in-process before any check runs; a tool contains that with its probe child.
            for path in corpus + crashes {
                let result = try TestProcess.run(TestProcess.binary("prima-verify"), [path])
                #expect([0, 1, 2].contains(result.status), "\(path): status \(result.status) \(result.stderr)")
                if result.status == 2 {
                    #expect(result.stderr.split(separator: "\n").count == 1, "\(path): \(result.stderr)")
                } else {
                    accepted += 1
                }
            }
            #expect(accepted > 0, "no checkpoint input was opened")
            return
        }
        for path in corpus + crashes {
            let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let start = Date()
            let outcome = target.run(data, scratch: scratch)
            let seconds = Date().timeIntervalSince(start)
            #expect(seconds < Self.maxSecondsPerInput, "\(path) took \(seconds) s")
            switch outcome {
            case .accepted: accepted += 1
            case .refused(let message):
                firstRefusal = firstRefusal ?? "\(path): \(message)"
                #expect(!message.isEmpty, "\(path): refused without a message")
            }
        }
        // The corpus keeps inputs that reach past the first checks, so some of them parse.
        #expect(accepted > 0, "no input of \(target.rawValue) was accepted; the first refusal: \(firstRefusal ?? "-")")
    }
}
