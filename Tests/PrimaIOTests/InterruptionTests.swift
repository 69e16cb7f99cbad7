import Foundation
import PrimaTestSupport
import Testing

/// Temporaries under interruption: SIGINT and SIGTERM remove them (exit 128 + signal); after SIGKILL the next run
/// writing to the same place names the stale one; two runs racing for one output cannot both succeed.
@Suite(.serialized) struct InterruptionTests {
    /// Starts `tool`, waits until its temporary exists in `directory`, sends `signal`, and returns the outcome.
    static func interrupt(_ tool: String, _ arguments: [String], watching directory: String, with signal: Int32,
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> IOSupport.Outcome {
        let running = try IOSupport.Running(TestProcess.binary(tool), arguments)
        let caught = IOSupport.waitForTemporary(in: directory, of: running)
        #expect(caught, "\(tool) ended before its temporary was seen", sourceLocation: sourceLocation)
        if caught { kill(running.pid, signal) }
        let (result, timedOut) = running.finish(deadline: 60)
        #expect(!timedOut, sourceLocation: sourceLocation)
        return result
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func signalsDuringImportAndExportLeaveNothing(signal: Int32) throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try IOSupport.largeModel(in: work)
        let out = work + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)

        let imported = try Self.interrupt("prima-convert", ["import", model, "-o", out + "/m.h5", "--no-progress"], watching: out, with: signal)
        #expect(imported.status == 128 + signal, "import: status \(imported.status): \(imported.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == [])

        let checkpoint = work + "/m.h5"
        let full = try IOSupport.run("prima-convert", ["import", model, "-o", checkpoint, "--no-progress"], deadline: 120)
        try #require(full.status == 0, "\(full.stderr)")
        let exported = try Self.interrupt("prima-convert", ["export", checkpoint, "--component", "text_encoder", "-o", out + "/hf"],
                                          watching: out, with: signal)
        #expect(exported.status == 128 + signal, "export: status \(exported.status): \(exported.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == [])
    }

    @Test func staleTemporaryAfterSIGKILLIsReported() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try IOSupport.largeModel(in: work)
        let out = work + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let killed = try Self.interrupt("prima-convert", ["import", model, "-o", out + "/m.h5", "--no-progress"], watching: out, with: SIGKILL)
        #expect(killed.status == SIGKILL)  // terminated by the signal
        let stale = IOSupport.temporaries(in: out)
        try #require(stale.count == 1 && stale[0].hasPrefix(".m.h5.prima-tmp-"), "\(stale)")

        let next = try IOSupport.run("prima-convert", ["import", IOSupport.models + "/bert-pooler-f32", "-o", out + "/m.h5", "--no-progress"],
                                     deadline: 60)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stderr.contains("prima-convert: warning: \(out)/\(stale[0]): stale temporary of \(out)/m.h5"), "\(next.stderr)")
        // Reported, not removed (see Formats/prima-checkpoint.md, "Outputs").
        #expect(IOSupport.temporaries(in: out) == stale)
        // Any run writing in that directory reports it; one writing in another directory does not.
        let beside = try IOSupport.run("prima-convert", ["import", IOSupport.models + "/bert-pooler-f32", "-o", out + "/n.h5", "--no-progress"],
                                       deadline: 60)
        #expect(beside.status == 0 && beside.stderr.contains("\(out)/\(stale[0]): stale temporary of \(out)/m.h5"), "\(beside.stderr)")
        let elsewhere = try IOSupport.run("prima-convert", ["import", IOSupport.models + "/bert-pooler-f32", "-o", work + "/n.h5", "--no-progress"],
                                          deadline: 60)
        #expect(elsewhere.status == 0 && !elsewhere.stderr.contains("stale"), "\(elsewhere.stderr)")
    }

    @Test func concurrentImportsToOneOutput() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try IOSupport.largeModel(in: work)
        let output = work + "/m.h5"
        let runs = try (0..<2).map { _ in try IOSupport.Running(TestProcess.binary("prima-convert"), ["import", model, "-o", output, "--no-progress"]) }
        let results = runs.map { $0.finish(deadline: 120) }
        #expect(results.allSatisfy { !$0.timedOut })
        let statuses = results.map(\.result.status).sorted()
        #expect(statuses == [0, 2], "\(results.map(\.result.stderr))")
        if let loser = results.first(where: { $0.result.status == 2 }) {
            #expect(loser.result.stderr.contains(output + ": already exists"), "\(loser.result.stderr)")
        }
        #expect(IOSupport.temporaries(in: work).isEmpty)
        #expect(try IOSupport.run("prima-verify", [output], deadline: 60).status == 0)
    }
}
