import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaModels
import PrimaTensor
import PrimaTestSupport
import PrimaTrain
import Testing

/// Training saves (Formats/prima-training.md §4): a copy of the input with the trained tensors replaced, new
/// adapters added, the heads' record updated and `/training` written, read back exactly; and the refusals of a
/// `/training` group that does not fit its checkpoint.
@Suite struct TrainingSaveTests {
    static let bundled = TestProcess.repositoryRoot + "/Fixtures/prima/tiny-prima.h5"

    /// A record of stage 2 over the given moments, with a short history.
    static func record(moments: [TrainingRecord.Moments], step: Int = 3) -> TrainingRecord {
        var history = TrainingRecord.History()
        history.loss = [2.5, 2.25, 2.0].prefix(step).map { $0 }
        history.lr = [1e-5, 2e-5, 3e-5].prefix(step).map { $0 }
        history.gradNorm = [1, 0.5, 0.25].prefix(step).map { $0 }
        history.trainLoss = [2.25]
        history.valLoss = [2.4]
        history.valMacroF1 = [0.5]
        history.valAccuracy = [0.6]
        history.valBalancedAccuracy = [0.55]
        return TrainingRecord(stage: .stage2, status: .running, step: step, totalSteps: 10, epoch: 1, cursor: 4, seed: 42, threads: 2,
                              hyperparameters: JSONObject([("lr", .double(3e-5)), ("batch_size", .int(4))]),
                              data: JSONObject([("kind", "folder"), ("examples", .int(10))]),
                              split: JSONObject([("mode", "lesion"), ("folds", .int(5)), ("fold", .int(0))]),
                              stages: [.object(JSONObject([("stage", "stage1"), ("steps", .int(7))]))],
                              optimizerStep: step, moments: moments, history: history)
    }

    /// ``record(moments:step:)`` of `stage` without moments, with class weights `weights`.
    static func weighted(_ stage: TrainingRecord.Stage, _ weights: [Float]) -> TrainingRecord {
        var record = record(moments: [])
        record.stage = stage
        record.classWeights = weights
        return record
    }

    @Test func aSaveReadsBackExactly() throws {
        let output = TestProcess.temporaryDirectory("prima-train-tests") + "/save.h5"
        let input = try Checkpoint(path: Self.bundled)
        let proj = try input.group("prima").readTensor(try #require(try input.group("prima").tensorRecords().first { $0.name == "alignment.image_proj.weight" }))
        let updated = Tensor(shape: proj.shape, float32: proj.float32Values().map { $0 + 0.25 })
        // A rank-2 adapter on one image-encoder weight.
        let target = "layers.0.attn.q.weight"
        let weight = try input.component(.imageEncoder).tensorRecords().first { $0.name == target }!
        let a = Tensor(shape: [2, weight.shape[1]], float32: GradientCheck.random(2 * weight.shape[1], seed: 1))
        let b = Tensor(shape: [weight.shape[0], 2], float32: GradientCheck.random(2 * weight.shape[0], seed: 2))
        let info = LoraAdapterInfo(name: "prima", rank: 2, alpha: 4, useRSLoRA: false, dropout: 0, targets: [target], merged: false)
        let moments = [
            TrainingRecord.Moments(path: "prima/tensors/alignment.image_proj.weight", expAvg: updated, expAvgSq: Tensor(shape: proj.shape, float32: proj.float32Values().map { $0 * $0 })),
            TrainingRecord.Moments(path: "image_encoder/lora/prima/tensors/layers.0.attn.q.lora_a", expAvg: a, expAvgSq: Tensor(shape: a.shape, float32: a.float32Values().map { $0 * $0 })),
        ]
        try TrainingSave.write(input: Self.bundled, output: output,
                               trained: [(path: "prima/tensors/alignment.image_proj.weight", tensor: updated)],
                               adapters: [.init(role: .imageEncoder, info: info, tensors: [("layers.0.attn.q.lora_a", a), ("layers.0.attn.q.lora_b", b)])],
                               trainedHeads: ["alignment.image_proj.weight"], record: Self.record(moments: moments), overwrite: false)

        let saved = try Checkpoint(path: output)
        #expect(saved.formatVersion == 2 && saved.extraGroups.contains("training"))
        try StoredValidation.validate(saved)
        let heads = try saved.group("prima")
        #expect(try heads.readTensor(try heads.tensorRecords().first { $0.name == "alignment.image_proj.weight" }!).float32Values() == updated.float32Values())
        #expect(try heads.group.intAttribute("heads_trained") == 0)
        #expect(!(try heads.group.stringAttribute("initialised_tensors")).contains("alignment.image_proj.weight"))
        let (readInfo, reader) = try saved.component(.imageEncoder).loraAdapter("prima")
        #expect(readInfo == info)
        #expect(try reader.readTensor(try reader.tensorRecords().first { $0.name == "layers.0.attn.q.lora_b" }!).float32Values() == b.float32Values())

        let record = try #require(try TrainingRecord.read(from: saved, loadMoments: true))
        let expected = Self.record(moments: moments)
        #expect(record.stage == .stage2 && record.status == .running && record.step == 3 && record.totalSteps == 10)
        #expect(record.epoch == 1 && record.cursor == 4 && record.seed == 42 && record.threads == 2 && record.optimizerStep == 3)
        #expect(record.history == expected.history)
        #expect(JSONValue.object(record.hyperparameters).serialized() == JSONValue.object(expected.hyperparameters).serialized())
        #expect(record.stages.count == 1)
        #expect(record.moments.map(\.path) == moments.map(\.path).sorted())
        for entry in record.moments {
            let original = moments.first { $0.path == entry.path }!
            #expect(entry.expAvg.float32Values() == original.expAvg.float32Values() && entry.expAvgSq.float32Values() == original.expAvgSq.float32Values())
        }
        // The independent h5py reader of Formats/python reads the save, /training included, and its checksums.
        let python = try TestProcess.run("/usr/bin/python3", [TestProcess.repositoryRoot + "/Formats/python/prima_h5.py", output, "--verify"])
        #expect(python.status == 0 && python.stdout.contains("/training  stage2 running, step 3 of 10"), "\(python.stderr)")
        // Metadata-only validation returns no moments.
        #expect(try TrainingRecord.read(from: saved, loadMoments: false)?.moments.isEmpty == true)
        // A later save may replace it (the run's own output).
        try TrainingSave.write(input: output, output: output + ".next", trained: [], adapters: [], trainedHeads: [],
                               record: Self.record(moments: moments), overwrite: false)
        #expect(try TrainingRecord.read(from: try Checkpoint(path: output + ".next"), loadMoments: false)?.step == 3)
    }

    /// A weighted stage's class weights (§4.1 `class_weights`) read back exactly, in Swift and in the h5py reader.
    @Test func classWeightsReadBackExactly() throws {
        let output = TestProcess.temporaryDirectory("prima-train-tests") + "/weighted.h5"
        var record = Self.record(moments: [])
        record.stage = .stage2b
        record.classWeights = [1.75, 0.875, 0, Float(7) / 6, 0, 0.875]
        try TrainingSave.write(input: Self.bundled, output: output, trained: [], adapters: [], trainedHeads: [], record: record, overwrite: false)
        try StoredValidation.validate(try Checkpoint(path: output))
        #expect(try TrainingRecord.read(from: try Checkpoint(path: output), loadMoments: false)?.classWeights == record.classWeights)
        let python = try TestProcess.run("/usr/bin/python3", [TestProcess.repositoryRoot + "/Formats/python/prima_h5.py", output])
        #expect(python.status == 0 && python.stdout.contains("class weights [1.75, 0.875, 0.0, \(Double(Float(7) / 6)), 0.0, 0.875]"),
                "\(python.stdout)\(python.stderr)")
    }

    /// Moments of a tensor the checkpoint does not have, or of another shape, and histories of the wrong length
    /// are refused naming the object.
    @Test func aRecordThatDoesNotFitIsRefused() throws {
        let directory = TestProcess.temporaryDirectory("prima-train-tests")
        let stray = Tensor(shape: [3], float32: [1, 2, 3])
        let cases: [(TrainingRecord, String)] = [
            (Self.record(moments: [.init(path: "prima/tensors/no.such.weight", expAvg: stray, expAvgSq: stray)]), "no.such.weight"),
            (Self.record(moments: [.init(path: "prima/tensors/alignment.image_proj.weight", expAvg: stray, expAvgSq: stray)]), "shape"),
            (Self.weighted(.stage2, [1, 1, 1, 1, 1, 1]), "class_weights"),     // stage 2 has no cross-entropy
            (Self.weighted(.stage2b, [1, 1, 1, 1, 1]), "class_weights"),       // 5 weights for 6 classes
            (Self.weighted(.stage3, [1, -1, 1, 1, 1, 1]), "class_weights"),
            (Self.weighted(.stage3, [0, 0, 0, 0, 0, 0]), "class_weights"),
            (Self.weighted(.stage2b, [1, .infinity, 1, 1, 1, 1]), "class_weights"),
        ]
        for (index, (record, mention)) in cases.enumerated() {
            let output = directory + "/bad\(index).h5"
            try TrainingSave.write(input: Self.bundled, output: output, trained: [], adapters: [], trainedHeads: [], record: record, overwrite: false)
            let checkpoint = try Checkpoint(path: output)
            #expect(throws: (any Error).self) { try StoredValidation.validate(checkpoint) }
            do {
                try StoredValidation.validate(checkpoint)
            } catch {
                #expect("\(error)".contains(mention) && "\(error)".contains("training") && !"\(error)".contains("\n"), "\(error)")
            }
            let reader = try TestProcess.run("/usr/bin/python3", [TestProcess.repositoryRoot + "/Formats/python/prima_h5.py", output])
            #expect(reader.status == 2 && reader.stderr.contains("/training"), "\(reader.stdout)\(reader.stderr)")
        }
        var short = Self.record(moments: [])
        short.history.loss = [1]
        let output = directory + "/short.h5"
        try TrainingSave.write(input: Self.bundled, output: output, trained: [], adapters: [], trainedHeads: [], record: short, overwrite: false)
        do {
            try StoredValidation.validate(try Checkpoint(path: output))
            Issue.record("a loss history shorter than step was accepted")
        } catch {
            #expect("\(error)".contains("history/loss"), "\(error)")
        }
    }
}
