import Foundation
import PrimaJSON
import Testing

/// Every fixture trace through the `prima-verify` binary: each architecture and variant matches transformers
/// layer by layer within the default (fp32) tolerances, and integrity passes on every imported fixture.
@Suite struct AllTracesTests {
    /// The single-component traces (the `prima-*` pipeline traces are PrimaTraceTests').
    static let traceFiles = RuntimeTestSupport.traces(prefix: "").filter { !$0.hasPrefix("prima-") }

    @Test func everyFixtureHasATraceAndEveryTraceAFixture() throws {
        #expect(Self.traceFiles.count >= 14)
        let models = try FileManager.default.contentsOfDirectory(atPath: RuntimeTestSupport.models).filter { !$0.hasSuffix(".json") }
        let traced = Set(Self.traceFiles.compactMap { RuntimeTestSupport.fixture(forTrace: $0) })
        #expect(traced == Set(models))
    }

    @Test(arguments: traceFiles)
    func binaryPassesTheTrace(_ file: String) throws {
        let fixture = try #require(RuntimeTestSupport.fixture(forTrace: file))
        let checkpoint = try RuntimeTestSupport.importFixture(fixture)
        let verify = RuntimeTestSupport.binary("prima-verify")
        let integrity = try RuntimeTestSupport.run(verify, [checkpoint])
        #expect(integrity.status == 0, "\(fixture): \(integrity.stdout)")
        let result = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", RuntimeTestSupport.traces + "/" + file, "--json"])
        #expect(result.status == 0, "\(file): \(result.stdout) \(result.stderr)")
        let json = try #require(try JSON.parse(result.stdout).object)
        #expect(json["pass"]?.bool == true)
        let activations = json["activations"]?.array ?? []
        #expect(activations.count >= 4, "\(file): too few activations compared")
        for item in activations {
            let object = try #require(item.object)
            #expect((object["cosine"]?.double ?? 0) >= 0.99999, "\(file) \(object["name"]?.string ?? "?")")
        }
    }
}
