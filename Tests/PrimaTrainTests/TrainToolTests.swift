import Foundation
import PrimaCheckpoint
import PrimaImage
import PrimaJSON
import PrimaTestSupport
import PrimaTrain
import Testing

/// `prima-train` as a user runs it: a stage through the binary with its log and record; SIGINT saves and stops
/// (exit 130) and --resume finishes; runs killed with SIGKILL at seeded random moments and resumed from their last
/// save end bit for bit where an uninterrupted run ends; hostile data and checkpoints are one-line errors, exit 2,
/// nothing written.
@Suite(.serialized) struct TrainToolTests {
    static let tool = TestProcess.binary("prima-train")
    static let checkpoint = StageRunnerTests.checkpoint
    static let cases = StageRunnerTests.cases
    static let small = ["--epochs", "3", "--batch-size", "3", "--rank", "2", "--folds", "2", "--lr", "0.01", "--no-progress"]

    @Test func aStageThroughTheBinary() throws {
        let directory = TestProcess.temporaryDirectory("prima-train-tool")
        let result = try TestProcess.run(Self.tool, ["stage3", "--checkpoint", Self.checkpoint, "--data", Self.cases, "-o", directory + "/out.h5",
                                                     "--threads", "1"] + Self.small)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("stage3: epoch 3/3: train loss") && result.stdout.contains("macro F1"))
        let lines = try String(contentsOfFile: directory + "/out.jsonl", encoding: .utf8).split(separator: "\n")
        let events = lines.compactMap { try? JSON.parse(String($0)).object?["event"]?.string }
        #expect(events.count == lines.count && events.first == "start" && events.filter { $0 == "step" }.count == 6 && events.filter { $0 == "epoch" }.count == 3)
        let record = try #require(try TrainingRecord.read(from: try Checkpoint(path: directory + "/out.h5"), loadMoments: false))
        #expect(record.status == .complete && record.step == 6 && record.hyperparameters["lr"]?.double == 0.01 && record.threads == 1)
        #expect(FileManager.default.fileExists(atPath: directory + "/out-best.h5"))
        // The curves beside the output: a PNG the project's decoder reads.
        let curves = try PNGDecoder.decode(contentsOf: directory + "/out-curves.png")
        #expect(curves.width == 900 && curves.height == 540)
        let inspect = try TestProcess.run(TestProcess.binary("prima-convert"), ["inspect", directory + "/out.h5"])
        #expect(inspect.stdout.contains("training: stage3 complete, step 6 of 6"), "\(inspect.stdout)")
        let verify = try TestProcess.run(TestProcess.binary("prima-verify"), [directory + "/out.h5"])
        #expect(verify.status == 0 && verify.stdout.contains("training: stage3 complete, step 6 of 6"), "\(verify.stdout)")
        // A moment that is not finite: prima-verify names it and fails.
        let moment = try #require(try TrainingRecord.read(from: try Checkpoint(path: directory + "/out.h5"), loadMoments: true)?.moments.first)
        let file = try HDF5File.open(path: directory + "/out.h5", writable: true)
        var group = try file.root().group("training").group("optimizer").group("exp_avg")
        let parts = moment.path.split(separator: "/").map(String.init)
        for part in parts.dropLast() { group = try group.group(part) }
        let values = [Float](repeating: .nan, count: moment.expAvg.elementCount)
        try values.withUnsafeBytes { try group.dataset(parts.last!).writeAll($0) }
        try file.close()
        let broken = try TestProcess.run(TestProcess.binary("prima-verify"), [directory + "/out.h5"])
        #expect(broken.status != 0 && (broken.stdout + broken.stderr).contains("non-finite"), "\(broken.stdout)\(broken.stderr)")
    }

    /// `stage3 --no-metadata` writes the image-only decoder inputs; resuming its save without the flag is one line,
    /// exit 2, and leaves the save as it was.
    @Test func stage3WithoutMetadataThroughTheBinary() throws {
        let directory = TestProcess.temporaryDirectory("prima-train-tool")
        let output = directory + "/out.h5"
        let result = try TestProcess.run(Self.tool, ["stage3", "--checkpoint", Self.checkpoint, "--data", Self.cases, "-o", output,
                                                     "--no-metadata"] + Self.small)
        #expect(result.status == 0, "\(result.stderr)")
        let saved = try Checkpoint(path: output)
        #expect(try saved.group("prima").group.stringAttribute("decoder_inputs") == "image")
        #expect(try TrainingRecord.read(from: saved, loadMoments: false)?.hyperparameters["decoder_inputs"]?.string == "image")
        let diagnose = try TestProcess.run(TestProcess.binary("prima-diagnose"), ["--checkpoint", output, "--image", Self.cases + "/sample.png",
                                                                                   "--metadata", Self.cases + "/sample.json"])
        #expect(diagnose.status == 0 && diagnose.stdout.contains("(not read"), "\(diagnose.stderr)")
        let inspect = try TestProcess.run(TestProcess.binary("prima-convert"), ["inspect", output])
        #expect(inspect.stdout.contains("decoder reads the image only (decoder_inputs \"image\")"), "\(inspect.stdout)")

        // A resume reads a save of status running: the finished one, marked so.
        let running = directory + "/running.h5"
        try FileManager.default.copyItem(atPath: output, toPath: running)
        let file = try HDF5File.open(path: running, writable: true)
        try file.root().group("training").setAttribute("status", string: "running")
        try file.close()
        let before = FileManager.default.contents(atPath: running)
        let refused = try TestProcess.run(Self.tool, ["stage3", "--checkpoint", Self.checkpoint, "--data", Self.cases, "-o", running,
                                                      "--resume"] + Self.small)
        #expect(refused.status == 2 && refused.stderr.filter { $0 == "\n" }.count == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("\(running): was trained with decoder_inputs \"image\": resume with --no-metadata"), "\(refused.stderr)")
        #expect(FileManager.default.contents(atPath: running) == before)
    }

    /// `all` chains the four stages, each from the previous output, and the final checkpoint records all four;
    /// run again with --resume it finds every stage complete and changes nothing.
    @Test func allRunsTheFourStages() throws {
        let directory = TestProcess.temporaryDirectory("prima-train-tool")
        let arguments = ["all", "--checkpoint", Self.checkpoint, "--corpus", try StageRunnerTests.corpus(), "--data", Self.cases,
                         "-o", directory + "/prima.h5", "--epochs", "1", "--batch-size", "3", "--rank", "2", "--folds", "2", "--no-progress"]
        let result = try TestProcess.run(Self.tool, arguments)
        #expect(result.status == 0, "\(result.stderr)")
        let record = try #require(try TrainingRecord.read(from: try Checkpoint(path: directory + "/prima.h5"), loadMoments: false))
        #expect(record.stage == .stage3 && record.status == .complete)
        #expect(record.stages.compactMap { $0.object?["stage"]?.string } == ["stage1", "stage2", "stage2b", "stage3"])
        for file in ["prima-stage1.h5", "prima-stage2.h5", "prima-stage2b.h5"] { #expect(FileManager.default.fileExists(atPath: directory + "/" + file)) }
        let saved = try Checkpoint(path: directory + "/prima.h5")
        for role in [ComponentRole.textEncoder, .imageEncoder, .decoder] { #expect(try saved.component(role).loraAdapterNames() == ["prima"]) }
        let again = try TestProcess.run(Self.tool, arguments + ["--resume"])
        #expect(again.status == 0 && again.stderr.components(separatedBy: "is complete").count == 5, "\(again.stderr)")
    }

    /// The trained tensors and moments of a save, by gradient path.
    static func state(_ path: String) throws -> [String: [Float]] {
        let record = try #require(try TrainingRecord.read(from: try Checkpoint(path: path), loadMoments: true))
        var out: [String: [Float]] = [:]
        for entry in record.moments {
            out[entry.path] = try StageRunnerTests.tensor(entry.path, in: path)
            out[entry.path + "#m"] = entry.expAvg.float32Values()
            out[entry.path + "#v"] = entry.expAvgSq.float32Values()
        }
        out["#loss"] = record.history.loss
        return out
    }

    @Test func sigkillAtRandomMomentsThenResumeIsBitIdentical() throws {
        let directory = TestProcess.temporaryDirectory("prima-train-tool")
        let arguments = ["stage2b", "--checkpoint", Self.checkpoint, "--data", Self.cases] + Self.small + ["--epochs", "40", "--save-every", "1"]
        let whole = try TestProcess.run(Self.tool, arguments + ["-o", directory + "/whole.h5"])
        try #require(whole.status == 0, "\(whole.stderr)")
        let output = directory + "/killed.h5"
        var random = SplitMix64(seed: 11)
        var kills = 0, resumedKills = 0
        // Eight runs killed at random moments (each resuming the last save if there is one), then one to the end.
        for attempt in 0...8 {
            if FileManager.default.fileExists(atPath: output),
               try TrainingRecord.read(from: try Checkpoint(path: output), loadMoments: false)?.status == .complete { break }
            let resuming = FileManager.default.fileExists(atPath: output)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.tool)
            process.arguments = arguments + ["-o", output] + (resuming ? ["--resume"] : [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if attempt < 8 {
                // Until a first save has landed, the kill moment is drawn after it: on a loaded machine the start-up
                // alone can outlast every random delay, and then no run would resume.
                let deadline = Date().addingTimeInterval(120)
                while !resuming, !FileManager.default.fileExists(atPath: output), process.isRunning, Date() < deadline { usleep(20_000) }
                usleep(UInt32(300_000 + (random.next() % 1_700_000)))
                if process.isRunning {
                    kill(process.processIdentifier, SIGKILL)
                    kills += 1
                    if resuming { resumedKills += 1 }
                }
            }
            process.waitUntilExit()
        }
        let record = try #require(try TrainingRecord.read(from: try Checkpoint(path: output), loadMoments: false))
        #expect(record.status == .complete && kills >= 2 && resumedKills >= 1, "kills \(kills), of resumed runs \(resumedKills)")
        #expect(try Self.state(output) == Self.state(directory + "/whole.h5"))
    }

    @Test func sigintSavesAndResumeFinishes() throws {
        let directory = TestProcess.temporaryDirectory("prima-train-tool")
        let output = directory + "/out.h5"
        let arguments = ["stage3", "--checkpoint", Self.checkpoint, "--data", Self.cases, "-o", output] + Self.small + ["--epochs", "40"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait for the first steps in the log, then interrupt.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? String(contentsOfFile: directory + "/out.jsonl", encoding: .utf8)) ?? "").components(separatedBy: "\"step\"").count < 4 {
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        let record = try #require(try TrainingRecord.read(from: try Checkpoint(path: output), loadMoments: false))
        #expect(record.status == .running && record.step >= 1 && record.step < record.totalSteps)
        let resumed = try TestProcess.run(Self.tool, arguments + ["--resume", "--epochs", "40"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try TrainingRecord.read(from: try Checkpoint(path: output), loadMoments: false)?.status == .complete)
    }

    /// A copy of the bundled case folder in a new directory, changed by `edit`.
    static func folder(_ edit: (String) throws -> Void) throws -> String {
        let directory = TestProcess.temporaryDirectory("prima-train-tool") + "/cases"
        try FileManager.default.copyItem(atPath: Self.cases, toPath: directory)
        try edit(directory)
        return directory
    }

    @Test func hostileInputsAreOneLineErrors() throws {
        let corrupt = try Self.folder { directory in
            try Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3]).write(to: URL(fileURLWithPath: directory + "/imgs/PAT_46_881_939.png"))
        }
        // A corrupt image is skipped with a warning and counted; the run goes on.
        let skipped = try TestProcess.run(Self.tool, ["stage2b", "--checkpoint", Self.checkpoint, "--data", corrupt, "-o", corrupt + "/../out.h5"] + Self.small)
        #expect(skipped.status == 0 && skipped.stderr.contains("warning: skipped PAT_46_881_939.png"), "\(skipped.stderr)")
        let noCSV = try Self.folder { try FileManager.default.removeItem(atPath: $0 + "/metadata.csv") }
        let unknownLabel = try Self.folder { directory in
            let text = try String(contentsOfFile: directory + "/metadata.csv", encoding: .utf8)
            try text.replacingOccurrences(of: ",BCC,", with: ",XYZ,").write(toFile: directory + "/metadata.csv", atomically: true, encoding: .utf8)
        }
        let splitFile = TestProcess.temporaryDirectory("prima-train-tool") + "/split.csv"
        let ids = try String(contentsOfFile: Self.cases + "/metadata.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .compactMap { $0.split(separator: ",", omittingEmptySubsequences: false).dropLast().last.map(String.init) }
        try ("img_id,split\n" + ids.map { "\($0),train\n" }.joined()).write(toFile: splitFile, atomically: true, encoding: .utf8)
        let bareCheckpoint = try TestProcess.run(TestProcess.binary("prima-convert"),
                                                 ["import", TestProcess.repositoryRoot + "/Fixtures/models/bert-mlm-f32", "-o",
                                                  TestProcess.temporaryDirectory("prima-train-tool") + "/bert.h5"])
        try #require(bareCheckpoint.status == 0, "\(bareCheckpoint.stderr)")
        let badCorpus = TestProcess.temporaryDirectory("prima-train-tool") + "/corpus.jsonl"
        try "{\"name\": \"age\", \"summary\": 3}\n".write(toFile: badCorpus, atomically: true, encoding: .utf8)
        let out = TestProcess.temporaryDirectory("prima-train-tool")
        let cases: [([String], String)] = [
            (["stage2b", "--checkpoint", Self.checkpoint, "--data", noCSV], "metadata.csv"),
            (["stage2b", "--checkpoint", Self.checkpoint, "--data", unknownLabel], "XYZ"),
            (["stage3", "--checkpoint", Self.checkpoint, "--data", Self.cases, "--split", splitFile], "split"),
            (["stage2b", "--checkpoint", TestProcess.temporaryDirectory("prima-train-tool") + "/bert.h5", "--data", Self.cases], "prima"),
            (["stage1", "--checkpoint", Self.checkpoint, "--corpus", badCorpus], "corpus.jsonl"),
            (["stage2b", "--checkpoint", Self.checkpoint, "--data", Self.cases, "--resume"], "no saved run to resume"),
            (["stage2", "--checkpoint", Self.checkpoint, "--data", Self.cases, "--loss-weights", "1,2,3"], "--loss-weights"),
            (["stage2", "--checkpoint", Self.checkpoint, "--data", Self.cases, "--class-weights", "balanced"], "--class-weights"),
            (["stage3", "--checkpoint", Self.checkpoint, "--data", Self.cases, "--class-weights", "inverse"], "--class-weights"),
            (["stage2b", "--checkpoint", Self.checkpoint, "--data", Self.cases, "--log", Self.checkpoint], "the log must differ"),
        ]
        for (index, (arguments, mention)) in cases.enumerated() {
            let output = out + "/out\(index).h5"
            let result = try TestProcess.run(Self.tool, arguments + ["-o", output, "--no-progress"])
            let lines = result.stderr.split(separator: "\n")
            #expect(result.status == 2 && lines.count == 1 && result.stderr.contains(mention), "\(arguments): \(result.status): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output), "\(arguments) left \(output)")
        }
    }
}
