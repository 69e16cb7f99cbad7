import Foundation
import PrimaCheckpoint
import PrimaCohort
import PrimaEval
import PrimaIO
import PrimaJSON
import PrimaTestSupport
import PrimaTrain
import Testing

/// `prima-eval run` end to end on the bundled tiny PRIMA checkpoint and a small synthetic cohort: every system's
/// fold files hold exactly the cases its fold holds out, a deleted fold file is recomputed alone and byte for byte,
/// a killed run resumes to the same files, other settings are refused, and hostile flags exit 2 writing nothing.
@Suite(.serialized) struct EvaluationRunnerTests {
    static let checkpoint = TestProcess.repositoryRoot + "/Fixtures/prima/tiny-prima.h5"
    /// The tiny checkpoint's image encoder reads 32 × 32 images.
    static let imageSize = 32
    /// 100 cases give MEL two lesions, the fewest that two folds can stratify.
    static let cases = 100
    static let folds = 2

    /// The cohort (written once per test process) and its corpus.
    static let cohort: String = {
        let folder = TestProcess.temporaryDirectory("prima-eval-cohort") + "/cohort"
        try! CohortWriter.write(Cohort(options: CohortOptions(cases: cases, imageSize: imageSize, seed: 11)), to: folder, overwrite: false)
        return folder
    }()
    static var corpus: String { cohort + "/risk-factors.jsonl" }

    /// One epoch per stage over a few batches: enough for every path to run, fast enough for CI.
    static func settings(output: String, systems: [EvaluationSystem] = EvaluationSystem.allCases) -> EvaluationSettings {
        var settings = EvaluationSettings(checkpoint: checkpoint, data: cohort, corpus: corpus, output: output)
        settings.folds = folds
        settings.systems = systems
        settings.seed = 3
        for stage in TrainingRecord.Stage.allCases {
            settings.overrides[stage] = EvaluationSettings.StageOverride(epochs: 1, learningRate: 1e-3, batchSize: 16)
        }
        return settings
    }

    /// The same settings as command-line flags.
    static func flags(output: String, systems: [EvaluationSystem]) -> [String] {
        var flags = ["run", "--checkpoint", checkpoint, "--data", cohort, "--corpus", corpus, "-o", output, "--folds", "\(folds)", "--seed", "3",
                     "--systems", systems.map(\.rawValue).joined(separator: ","), "--no-progress"]
        for stage in TrainingRecord.Stage.allCases {
            flags += ["--\(stage.rawValue)-epochs", "1", "--\(stage.rawValue)-lr", "1e-3", "--\(stage.rawValue)-batch-size", "16"]
        }
        return flags
    }

    /// Every fold file of the run in `directory`, by relative path.
    static func foldFiles(_ directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let folds = directory + "/folds"
        for system in try FileManager.default.contentsOfDirectory(atPath: folds) {
            for name in try FileManager.default.contentsOfDirectory(atPath: folds + "/" + system) {
                files[system + "/" + name] = FileManager.default.contents(atPath: "\(folds)/\(system)/\(name)")
            }
        }
        return files
    }

    /// One complete run of every system, shared by the tests that read or resume it.
    static let complete: (output: String, events: [EvaluationRunner.Event]) = {
        let output = TestProcess.temporaryDirectory("prima-eval") + "/out"
        var events: [EvaluationRunner.Event] = []
        let outcome = try! EvaluationRunner(settings: settings(output: output)).run(report: { events.append($0) })
        precondition(outcome == .complete)
        return (output, events)
    }()

    @Test func everySystemHoldsOutExactlyItsFold() throws {
        let output = Self.complete.output
        let runner = try EvaluationRunner(settings: Self.settings(output: output))
        let data = runner.data
        for system in EvaluationSystem.allCases {
            var seen: [String: Int] = [:]
            for fold in 0..<Self.folds {
                let text = try InputFile.readText(runner.foldPath(system: system, fold: fold))
                let predictions = try FoldPredictions(json: try JSON.parse(text))
                #expect(predictions.system == system.rawValue && predictions.fold == fold && predictions.classes == data.classCodes)
                // prima-train's split of the same fold, seed and grouping: its validation side is the held-out fold.
                let split = try Splits.crossValidation(data, fold: fold, of: Self.folds, grouping: .lesion, seed: 3)
                #expect(predictions.cases == split.validation.map { data.cases[$0].imageID }, "\(system.rawValue) fold \(fold)")
                #expect(predictions.labels == split.validation.map { data.cases[$0].label })
                for id in predictions.cases { seen[id, default: 0] += 1 }
            }
            // Every case in exactly one fold.
            #expect(seen.count == data.cases.count && seen.values.allSatisfy { $0 == 1 }, "\(system.rawValue)")
        }
        // Shared training: one stage-1 checkpoint for every fold and system; per fold one stage-2 checkpoint serves
        // prima and image-only, and no model chosen on the held-out fold is kept.
        let work = try FileManager.default.subpathsOfDirectory(atPath: output + "/work").filter { $0.hasSuffix(".h5") }.sorted()
        #expect(work.filter { $0.hasSuffix("stage1.h5") } == ["stage1.h5"])
        #expect(work.filter { $0.hasPrefix("fold-0/") } == [
            "fold-0/stage1+stage2+stage2b.h5", "fold-0/stage1+stage2+stage3-no-metadata.h5", "fold-0/stage1+stage2+stage3.h5", "fold-0/stage1+stage2-no-glo+stage3.h5",
            "fold-0/stage1+stage2-no-glo.h5", "fold-0/stage1+stage2-no-img+stage3.h5", "fold-0/stage1+stage2-no-img.h5",
            "fold-0/stage1+stage2-no-loc+stage3.h5", "fold-0/stage1+stage2-no-loc.h5", "fold-0/stage1+stage2-no-soft+stage3.h5",
            "fold-0/stage1+stage2-no-soft.h5", "fold-0/stage1+stage2.h5", "fold-0/stage1+stage3.h5", "fold-0/stage2+stage3.h5",
            "fold-0/stage2.h5",
        ])
        // The decoder without metadata: its stage 3 wrote the image-only decoder inputs, the others the default.
        let heads = { (name: String) in try Checkpoint(path: output + "/work/fold-0/" + name).group("prima").group }
        #expect(try heads("stage1+stage2+stage3-no-metadata.h5").stringAttribute("decoder_inputs") == "image")
        #expect(try !heads("stage1+stage2+stage3.h5").hasAttribute("decoder_inputs"))
        let trained = Self.complete.events.filter { if case .stageFinished = $0 { true } else { false } }.count
        #expect(trained == 1 + Self.folds * 15)
    }

    @Test func aDeletedFoldFileIsRecomputedAloneAndIdentical() throws {
        let output = TestProcess.temporaryDirectory("prima-eval") + "/copy"
        try FileManager.default.copyItem(atPath: Self.complete.output, toPath: output)
        let before = try Self.foldFiles(output)
        try FileManager.default.removeItem(atPath: output + "/folds/no-loc-loss/fold-1.json")
        var written: [String] = [], trained = 0
        let outcome = try EvaluationRunner(settings: Self.settings(output: output)).run(report: { event in
            switch event {
            case .foldWritten(let fold, let system, _): written.append("\(system.rawValue)/fold-\(fold).json")
            case .stageStarted: trained += 1
            default: break
            }
        })
        #expect(outcome == .complete && written == ["no-loc-loss/fold-1.json"] && trained == 0)
        #expect(try Self.foldFiles(output) == before)
    }

    @Test func otherSettingsAreRefused() throws {
        var seed = Self.settings(output: Self.complete.output)
        seed.seed = 4
        #expect(throws: ToolError.self) { try EvaluationRunner(settings: seed) }
        var epochs = Self.settings(output: Self.complete.output)
        epochs.overrides[.stage3]?.epochs = 2
        let error = #expect(throws: ToolError.self) { try EvaluationRunner(settings: epochs) }
        #expect(error?.description.contains("made with other settings (stages:") == true)
        #expect(error?.isInput == true)
        let systems = Self.settings(output: Self.complete.output, systems: [.prima])
        #expect(throws: ToolError.self) { try EvaluationRunner(settings: systems) }
        var weighted = Self.settings(output: Self.complete.output)
        weighted.classWeighting = .balanced
        #expect(throws: ToolError.self) { try EvaluationRunner(settings: weighted) }
    }

    @Test func classWeightsReachStages2bAnd3Only() {
        var settings = Self.settings(output: "unused")
        settings.classWeighting = .balanced
        for step in [TrainingStep.stage1, .stage2(), .stage2b, .stage3, .stage3WithoutMetadata] {
            let options = settings.stageOptions(step, fold: 0, input: "in.h5", output: "out.h5")
            #expect(options.classWeighting == (step.stage == .stage2b || step.stage == .stage3 ? .balanced : .none), "\(step.name)")
        }
    }

    /// Against an uninterrupted run of the tool, and the tool's files against the library's run in this process.
    @Test func aKilledRunResumesToTheSameFiles() throws {
        let systems: [EvaluationSystem] = [.prima, .noStage2]
        let tool = TestProcess.binary("prima-eval")
        let whole = TestProcess.temporaryDirectory("prima-eval") + "/whole"
        let uninterrupted = try TestProcess.run(tool, Self.flags(output: whole, systems: systems))
        try #require(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        let output = TestProcess.temporaryDirectory("prima-eval") + "/killed"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = Self.flags(output: output, systems: systems)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Killed once the first fold's stage 2 is saved: stage 1 and part of fold 0 are done, the rest is not.
        let deadline = Date().addingTimeInterval(300)
        while !FileManager.default.fileExists(atPath: output + "/work/fold-0/stage1+stage2.h5") && process.isRunning && Date() < deadline {
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(!FileManager.default.fileExists(atPath: output + "/folds/no-stage2/fold-1.json"))

        let resumed = try TestProcess.run(tool, Self.flags(output: output, systems: systems))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let reference = try Self.foldFiles(whole)
        #expect(reference.count == systems.count * Self.folds)
        #expect(try Self.foldFiles(output) == reference)
        let library = try Self.foldFiles(Self.complete.output).filter { file, _ in systems.contains { file.hasPrefix($0.rawValue + "/") } }
        #expect(library == reference)
        // A complete run ends with the report of its fold files; `prima-eval report` writes the same one again.
        let markdown = try String(contentsOfFile: output + "/report/report.md", encoding: .utf8)
        #expect(systems.allSatisfy { markdown.contains($0.rawValue) })
        let again = try TestProcess.run(TestProcess.binary("prima-eval"), ["report", output, "-o", output + "/again"])
        #expect(again.status == 0 && again.stdout == markdown, "\(again.stderr)")
        #expect(FileManager.default.contents(atPath: output + "/again/report.json") == FileManager.default.contents(atPath: output + "/report/report.json"))
    }

    @Test func hostileFlagsExitTwoWritingNothing() throws {
        let directory = TestProcess.temporaryDirectory("prima-eval")
        let output = directory + "/out"
        let tool = TestProcess.binary("prima-eval")
        func refused(_ flags: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let result = try TestProcess.run(tool, flags)
            #expect(result.status == 2, "\(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stderr.hasPrefix("prima-eval: error: ") && result.stderr.contains(message), "\(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stderr.filter { $0 == "\n" }.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: output), sourceLocation: sourceLocation)
        }
        let good = Self.flags(output: output, systems: [.prima])
        func with(_ flag: String, _ value: String) -> [String] {
            var flags = good
            if let place = flags.firstIndex(of: flag) { flags[place + 1] = value } else { flags += [flag, value] }
            return flags
        }
        try refused(with("--data", directory + "/absent"), "\(directory)/absent: no such folder")
        try refused(with("--corpus", directory + "/absent.jsonl"), "absent.jsonl")
        try refused(with("--checkpoint", directory + "/absent.h5"), "absent.h5")
        try refused(with("--folds", "3"), "fewer than the folds")
        try refused(with("--systems", "prima,image-only,nonsense"), "unknown system 'nonsense'")
        try refused(with("--grouping", "hospital"), "--grouping must be lesion or patient")
        try refused(with("--class-weights", "heavy"), "--class-weights must be none or balanced")
        try refused(with("--stage2-epochs", "0"), "--stage2-epochs must be in")
        // A folder that is not a prima-eval output is not written into.
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
        FileManager.default.createFile(atPath: output + "/notes.txt", contents: Data("mine".utf8))
        let foreign = try TestProcess.run(tool, good)
        #expect(foreign.status == 2 && foreign.stderr.contains("has no manifest.json"), "\(foreign.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: output) == ["notes.txt"])
    }
}
