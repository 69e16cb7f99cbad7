import Foundation
import PrimaTestSupport
import Testing

/// No output replaces or contains an input, whatever path leads to it (`./`, `..`, a symbolic link to the directory,
/// a hard link): files are compared by device and inode. Each refusal exits 2 and leaves the input byte-identical.
@Suite struct OutputAliasingTests {
    /// `work/in/NAME` (a copy of `source`), `work/link` → `work/in`, and the hard link `work/in/hard-NAME`.
    static func aliases(of source: String, named name: String, in work: String) throws -> (input: String, paths: [String]) {
        try FileManager.default.createDirectory(atPath: work + "/in/sub", withIntermediateDirectories: true)
        let input = work + "/in/" + name
        try IOSupport.copy(source, input)
        IOSupport.symlink(work + "/in", work + "/link")
        IOSupport.hardLink(input, work + "/in/hard-" + name)
        return (input, [work + "/in/./" + name, work + "/in/sub/../" + name, work + "/link/" + name, work + "/in/hard-" + name])
    }

    @Test func quantizeOutputThatIsTheInput() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let (input, paths) = try Self.aliases(of: IOSupport.tinyPrima, named: "m.h5", in: work)
        let before = IOSupport.bytes(input)
        for output in paths {
            let result = try IOSupport.run("prima-quantize", ["--int8", input, "-o", output, "--force"], deadline: 60)
            IOSupport.expectRefusal(result, [output + ": the output must differ from the input"])
            #expect(IOSupport.bytes(input) == before, "\(output) changed the input")
        }
        #expect(IOSupport.temporaries(in: work + "/in").isEmpty)
    }

    @Test func exportIntoTheDirectoryHoldingTheInput() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let (input, _) = try Self.aliases(of: IOSupport.tinyPrima, named: "m.h5", in: work)
        let before = IOSupport.bytes(input)
        for output in [work + "/in", work + "/in/sub/..", work + "/link", work + "/link/", work, work + "/in/."] {
            let result = try IOSupport.run("prima-convert", ["export", input, "--component", "text_encoder", "-o", output, "--force"], deadline: 60)
            IOSupport.expectRefusal(result, [output + ": holds the input " + input])
            #expect(IOSupport.bytes(input) == before, "export to \(output) changed the input")
        }
        #expect(IOSupport.temporaries(in: work).isEmpty && IOSupport.temporaries(in: work + "/in").isEmpty)
    }

    @Test func importOutputThatIsASourceFile() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let source = work + "/src"
        try IOSupport.copy(IOSupport.models + "/bert-pooler-f32", source)
        IOSupport.hardLink(source + "/model.safetensors", work + "/hard.safetensors")
        IOSupport.symlink(source, work + "/link")
        let weights = IOSupport.bytes(source + "/model.safetensors"), config = IOSupport.bytes(source + "/config.json")
        for output in [source + "/model.safetensors", source + "/./model.safetensors", work + "/link/model.safetensors",
                       work + "/hard.safetensors", source + "/config.json"] {
            let result = try IOSupport.run("prima-convert", ["import", source, "-o", output, "--force", "--no-progress"], deadline: 60)
            IOSupport.expectRefusal(result, [output + ": the output must differ from the input"])
        }
        #expect(IOSupport.bytes(source + "/model.safetensors") == weights && IOSupport.bytes(source + "/config.json") == config)
        #expect(IOSupport.temporaries(in: source).isEmpty && IOSupport.temporaries(in: work).isEmpty)
    }

    @Test func verifyDumpNeedsForceAndNeverReplacesAnInput() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let checkpoint = work + "/m.h5", trace = work + "/trace.h5"
        let imported = try IOSupport.run("prima-convert", ["import", IOSupport.models + "/qwen3-untied-f32", "-o", checkpoint, "--no-progress"],
                                         deadline: 60)
        try #require(imported.status == 0, "\(imported.stderr)")
        try IOSupport.copy(IOSupport.traces + "/qwen3-untied-f32.h5", trace)
        let (checkpointBytes, traceBytes) = (IOSupport.bytes(checkpoint), IOSupport.bytes(trace))

        let existing = work + "/existing.h5"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: existing))
        IOSupport.expectRefusal(try IOSupport.run("prima-verify", [checkpoint, "--trace", trace, "--dump", existing], deadline: 60),
                                [existing + ": already exists (use --force to overwrite)"])
        #expect(IOSupport.bytes(existing) == Data("keep me".utf8))

        IOSupport.symlink(work, work + "/link")
        IOSupport.hardLink(trace, work + "/hard.h5")
        for output in [checkpoint, work + "/./trace.h5", work + "/link/m.h5", trace, work + "/hard.h5"] {
            let result = try IOSupport.run("prima-verify", [checkpoint, "--trace", trace, "--dump", output, "--force"], deadline: 60)
            IOSupport.expectRefusal(result, [output + ": the output must differ from the input"])
        }
        #expect(IOSupport.bytes(checkpoint) == checkpointBytes && IOSupport.bytes(trace) == traceBytes)

        IOSupport.expectRefusal(try IOSupport.run("prima-verify", [checkpoint, "--trace", trace, "--dump", work + "/absent/d.h5"], deadline: 60),
                                [work + "/absent/d.h5: directory " + work + "/absent does not exist"])
        let forced = try IOSupport.run("prima-verify", [checkpoint, "--trace", trace, "--dump", existing, "--force"], deadline: 60)
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(IOSupport.bytes(existing) != Data("keep me".utf8))
        #expect(IOSupport.temporaries(in: work).isEmpty)
    }

    @Test func diagnoseOutputsThatAreInputs() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let folder = work + "/cases", checkpoint = work + "/model.json"
        try IOSupport.copy(IOSupport.cases, folder)
        try IOSupport.copy(IOSupport.tinyPrima, checkpoint)  // a checkpoint may have any name, even one -o accepts
        IOSupport.hardLink(checkpoint, work + "/hard.json")
        let (csv, model) = (IOSupport.bytes(folder + "/metadata.csv"), IOSupport.bytes(checkpoint))
        let arguments = ["--checkpoint", checkpoint, "--folder", folder, "--no-progress", "--force"]
        for output in [folder + "/metadata.csv", folder + "/./metadata.csv", work + "/hard.json"] {
            IOSupport.expectRefusal(try IOSupport.run("prima-diagnose", arguments + ["-o", output], deadline: 60),
                                    [output + ": the output must differ from the input"])
            IOSupport.expectRefusal(try IOSupport.run("prima-diagnose", arguments + ["-o", work + "/r.csv", "--summary", output], deadline: 60),
                                    [output + ": the output must differ from the input"])
        }
        IOSupport.expectRefusal(try IOSupport.run("prima-diagnose", arguments + ["-o", work + "/r.json", "--summary", work + "/./r.json"],
                                                  deadline: 60),
                                [work + "/./r.json: -o and --summary name the same file"])
        #expect(IOSupport.bytes(folder + "/metadata.csv") == csv && IOSupport.bytes(checkpoint) == model)
        #expect(!FileManager.default.fileExists(atPath: work + "/r.csv") && !FileManager.default.fileExists(atPath: work + "/r.json"))
    }
}

/// Temporary names are unpredictable and created exclusively: a symbolic link planted where the old scheme
/// (`DEST.tmp-PID`) wrote is never followed.
@Suite struct PlantedTemporaryTests {
    /// Runs `tool arguments` through `sh`, which first plants `DEST.tmp-$$` → `victim` and then execs the tool
    /// (same process id, so the planted name is exactly the old scheme's).
    static func runWithPlantedLink(destination: String, victim: String, _ tool: String, _ arguments: [String]) throws -> TestProcess.Result {
        let quoted = ([TestProcess.binary(tool)] + arguments).map { "'" + $0 + "'" }.joined(separator: " ")
        let script = "ln -s '\(victim)' '\(destination).tmp-'$$ && exec \(quoted)"
        return try TestProcess.run("/bin/sh", ["-c", script])
    }

    @Test func quantizeAndImportDoNotFollowAPlantedLink() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let victim = work + "/victim.txt"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let imported = try Self.runWithPlantedLink(destination: work + "/m.h5", victim: victim, "prima-convert",
                                                   ["import", IOSupport.models + "/bert-pooler-f32", "-o", work + "/m.h5", "--no-progress"])
        #expect(imported.status == 0, "\(imported.stderr)")
        let quantized = try Self.runWithPlantedLink(destination: work + "/q.h5", victim: victim, "prima-quantize",
                                                    ["--int8", work + "/m.h5", "-o", work + "/q.h5"])
        #expect(quantized.status == 0, "\(quantized.stderr)")
        #expect(IOSupport.bytes(victim) == Data("precious".utf8))
        // The planted links are still there, untouched, still pointing at the victim.
        let planted = try FileManager.default.contentsOfDirectory(atPath: work).filter { $0.contains(".h5.tmp-") }
        #expect(planted.count == 2)
        for name in planted { #expect(try FileManager.default.destinationOfSymbolicLink(atPath: work + "/" + name) == victim) }
        #expect(try IOSupport.run("prima-verify", [work + "/q.h5"], deadline: 60).status == 0)
    }

    @Test func exportDoesNotFollowAPlantedLink() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let victim = work + "/victim"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: false)
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim + "/config.json"))
        let result = try Self.runWithPlantedLink(destination: work + "/out", victim: victim, "prima-convert",
                                                 ["export", IOSupport.tinyPrima, "--component", "text_encoder", "-o", work + "/out"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim) == ["config.json"])
        #expect(IOSupport.bytes(victim + "/config.json") == Data("precious".utf8))
        #expect(FileManager.default.fileExists(atPath: work + "/out/model.safetensors"))
    }
}
