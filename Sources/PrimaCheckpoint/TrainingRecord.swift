import PrimaJSON
import PrimaTensor

/// The `/training` group of a checkpoint written by `prima-train` (Formats/prima-training.md §4): the record of
/// how the trained tensors came to be and the state that resumes the run exactly (AdamW moments, the step, the
/// epoch and its cursor, the loss history). Its presence makes a checkpoint `format_version` 2.
public struct TrainingRecord: Sendable {
    /// The training stages of Docs/prima-model.md.
    public enum Stage: String, Sendable, CaseIterable {
        case stage1, stage2, stage2b, stage3
    }

    /// `running`: a save during the stage; `complete`: the stage finished.
    public enum Status: String, Sendable {
        case running, complete
    }

    /// One AdamW state entry: the moments of one trainable tensor, by gradient path (Formats/prima-trace.md §11.6).
    public struct Moments: Sendable {
        public let path: String
        /// f32, the tensor's shape.
        public let expAvg, expAvgSq: Tensor

        public init(path: String, expAvg: Tensor, expAvgSq: Tensor) {
            self.path = path
            self.expAvg = expAvg
            self.expAvgSq = expAvgSq
        }
    }

    /// The curves of §4.2: per optimiser step and per finished epoch.
    public struct History: Sendable, Equatable {
        public var loss: [Float] = []
        public var lr: [Double] = []
        public var gradNorm: [Float] = []
        public var trainLoss: [Float] = []
        public var valLoss: [Float] = []
        public var valMacroF1: [Float] = []
        public var valAccuracy: [Float] = []
        public var valBalancedAccuracy: [Float] = []

        public init() {}

        /// The per-epoch curves by dataset name, in §4.2's order.
        var epochCurves: [(String, [Float])] {
            [("train_loss", trainLoss), ("val_loss", valLoss), ("val_macro_f1", valMacroF1), ("val_accuracy", valAccuracy),
             ("val_balanced_accuracy", valBalancedAccuracy)]
        }
    }

    public var stage: Stage
    public var status: Status
    public var step: Int
    public var totalSteps: Int
    public var epoch: Int
    public var cursor: Int
    public var seed: UInt64
    public var threads: Int
    public var tool: String
    /// The JSON attributes of §4.1, each an object.
    public var hyperparameters: JSONObject
    public var data: JSONObject
    public var split: JSONObject
    public var best: JSONObject
    /// The completed stages, in order.
    public var stages: [JSONValue]
    /// The class weights [K] of the stage's cross-entropy (attribute `class_weights`, §4.1; stages 2b and 3 with
    /// `--class-weights balanced`), nil when the loss is unweighted. Float32 values.
    public var classWeights: [Float]?
    /// AdamW's step count and moments (§4.2 `optimizer/`).
    public var optimizerStep: Int
    public var moments: [Moments]
    public var history: History

    public init(stage: Stage, status: Status, step: Int, totalSteps: Int, epoch: Int, cursor: Int, seed: UInt64, threads: Int,
                tool: String = CheckpointFormat.tool, hyperparameters: JSONObject, data: JSONObject, split: JSONObject,
                best: JSONObject = JSONObject([]), stages: [JSONValue] = [], classWeights: [Float]? = nil, optimizerStep: Int,
                moments: [Moments], history: History) {
        (self.stage, self.status, self.step, self.totalSteps, self.epoch, self.cursor) = (stage, status, step, totalSteps, epoch, cursor)
        (self.seed, self.threads, self.tool) = (seed, threads, tool)
        (self.hyperparameters, self.data, self.split, self.best, self.stages) = (hyperparameters, data, split, best, stages)
        (self.classWeights, self.optimizerStep, self.moments, self.history) = (classWeights, optimizerStep, moments, history)
    }

    /// The group's name under the root.
    public static let groupName = "training"
    /// The checkpoint format version a file with this group has.
    public static let formatVersion = 2
    /// The `training_version` this build reads and writes.
    public static let version = 1

    // MARK: - Writing

    /// Writes the group under `root` (which must not have one yet).
    public func write(to root: HDF5Group) throws {
        let group = try root.createGroup(Self.groupName)
        try group.setAttribute("training_version", int: Self.version)
        try group.setAttribute("stage", string: stage.rawValue)
        try group.setAttribute("status", string: status.rawValue)
        for (name, value) in [("step", step), ("total_steps", totalSteps), ("epoch", epoch), ("cursor", cursor),
                              ("seed", Int(seed)), ("threads", threads)] {
            try group.setAttribute(name, int: value)
        }
        try group.setAttribute("tool", string: tool)
        for (name, object) in [("hyperparameters", hyperparameters), ("data", data), ("split", split), ("best", best)] {
            try group.setAttribute(name, string: JSONValue.object(object).serialized())
        }
        try group.setAttribute("stages", string: JSONValue.array(stages).serialized())
        if let classWeights { try group.setAttribute("class_weights", doubles: classWeights.map(Double.init)) }

        let optimizer = try group.createGroup("optimizer")
        try optimizer.setAttribute("step", int: optimizerStep)
        let first = try optimizer.createGroup("exp_avg"), second = try optimizer.createGroup("exp_avg_sq")
        for entry in moments {
            try Self.writeNested(first, path: entry.path, entry.expAvg)
            try Self.writeNested(second, path: entry.path, entry.expAvgSq)
        }
        let curves = try group.createGroup("history")
        try Self.write(curves, "loss", Tensor(shape: [history.loss.count], float32: history.loss))
        try Self.write(curves, "lr", history.lr)
        try Self.write(curves, "grad_norm", Tensor(shape: [history.gradNorm.count], float32: history.gradNorm))
        for (name, values) in history.epochCurves { try Self.write(curves, name, Tensor(shape: [values.count], float32: values)) }
    }

    private static func writeNested(_ group: HDF5Group, path: String, _ tensor: Tensor) throws {
        var parts = path.split(separator: "/").map(String.init)
        let name = parts.removeLast()
        var current = group
        for part in parts { current = current.contains(part) ? try current.group(part) : try current.createGroup(part) }
        try write(current, name, tensor.toFloat32())
    }

    private static func write(_ group: HDF5Group, _ name: String, _ tensor: Tensor) throws {
        let dataset = try group.createDataset(name, dtype: .f32, shape: tensor.shape)
        if tensor.elementCount > 0 { try tensor.withUnsafeBytes { try dataset.writeAll($0) } }
    }

    private static func write(_ group: HDF5Group, _ name: String, _ values: [Double]) throws {
        let dataset = try group.createDataset(name, dtype: .f64, shape: [values.count])
        if !values.isEmpty { try values.withUnsafeBytes { try dataset.writeAll($0) } }
    }

    // MARK: - Reading

    /// Reads and validates the `/training` group of `checkpoint` against its stored tensors
    /// (``Checkpoint/trainableShapes()``); nil when the checkpoint has none. Every problem is one error naming the
    /// file and the object. `loadMoments` false checks the moments' paths, types and shapes from the metadata only
    /// (what every tool's validation does) and returns no moments; a resume loads them (and checks their values).
    public static func read(from checkpoint: Checkpoint, loadMoments: Bool) throws -> TrainingRecord? {
        guard checkpoint.extraGroups.contains(groupName) else { return nil }
        let shapes = try checkpoint.trainableShapes()
        let group = try checkpoint.file.root().group(groupName)
        func fail(_ what: String) -> CheckpointError { CheckpointError("\(checkpoint.path): training: \(what)") }
        func int(_ name: String, _ range: ClosedRange<Int>) throws -> Int {
            guard group.hasAttribute(name), group.attribute(name, isStoredAs: .int64), let value = try? group.intAttribute(name) else {
                throw fail("attribute \(name) is missing or not an integer (Formats/prima-training.md §4.1)")
            }
            guard range.contains(value) else { throw fail("attribute \(name) is \(value), outside \(range.lowerBound)...\(range.upperBound)") }
            return value
        }
        func string(_ name: String) throws -> String {
            guard group.hasAttribute(name), let value = try? group.stringAttribute(name) else {
                throw fail("attribute \(name) is missing or not a string (Formats/prima-training.md §4.1)")
            }
            return value
        }
        func json(_ name: String) throws -> JSONValue {
            guard let value = try? JSON.parse(try string(name)) else { throw fail("attribute \(name) is not JSON") }
            return value
        }
        func object(_ name: String) throws -> JSONObject {
            guard let value = try json(name).object else { throw fail("attribute \(name) is not a JSON object") }
            return value
        }
        let version = try int("training_version", 1...Int.max)
        guard version <= Self.version else { throw fail("training_version \(version) was written by a newer toolkit; this build reads \(Self.version)") }
        let stageName = try string("stage"), statusName = try string("status")
        guard let stage = Stage(rawValue: stageName) else { throw fail("stage \"\(stageName)\" is not stage1, stage2, stage2b or stage3") }
        guard let status = Status(rawValue: statusName) else { throw fail("status \"\(statusName)\" is not running or complete") }
        let totalSteps = try int("total_steps", 1...Int(Int32.max))
        let step = try int("step", 0...totalSteps)
        let epoch = try int("epoch", 0...Int(Int32.max)), cursor = try int("cursor", 0...Int(Int32.max))
        let seed = try int("seed", 0...Int.max), threads = try int("threads", 1...4096)
        guard let stages = try json("stages").array else { throw fail("attribute stages is not a JSON array") }
        let classWeights = try Self.classWeights(group, stage: stage, classes: shapes["prima/tensors/task.class_token_ids"]?.first, fail: fail)
        let known: Set<String> = ["optimizer", "history"]
        let children = try group.linkNames()
        if let extra = children.first(where: { !known.contains($0) }) { throw fail("\(extra) is not part of the training group (§4.2)") }
        for name in known where !group.contains(name) { throw fail("\(name)/ is missing (§4.2)") }

        let optimizer = try group.group("optimizer")
        guard optimizer.hasAttribute("step"), let optimizerStep = try? optimizer.intAttribute("step"), optimizerStep >= 0 else {
            throw fail("optimizer: attribute step is missing or negative")
        }
        if let extra = try optimizer.linkNames().first(where: { $0 != "exp_avg" && $0 != "exp_avg_sq" }) {
            throw fail("optimizer/\(extra) is not part of AdamW's state (exp_avg, exp_avg_sq)")
        }
        var first: [String: Tensor?] = [:], second: [String: Tensor?] = [:]
        for (name, into) in [("exp_avg", 0), ("exp_avg_sq", 1)] {
            guard optimizer.contains(name) else { throw fail("optimizer/\(name) is missing") }
            var found: [(String, [Int], Tensor?)] = []
            try collect(try optimizer.group(name), prefix: "", depth: 0, load: loadMoments, into: &found, fail: { fail("optimizer/\(name)/\($0)") })
            for (path, storedShape, tensor) in found {
                guard let shape = shapes[path] else { throw fail("optimizer/\(name)/\(path) names no trainable tensor of the checkpoint") }
                guard shape == storedShape else {
                    throw fail("optimizer/\(name)/\(path) has shape \(ShapeMath.describe(storedShape)); the tensor is \(ShapeMath.describe(shape))")
                }
                if into == 0 { first[path] = tensor } else { second[path] = tensor }
            }
        }
        guard Set(first.keys) == Set(second.keys) else { throw fail("optimizer: exp_avg and exp_avg_sq hold different tensors") }
        if let negative = second.first(where: { $0.value?.float32Values().contains { $0 < 0 } ?? false }) {
            throw fail("optimizer/exp_avg_sq/\(negative.key) holds a negative value")
        }
        let moments = loadMoments ? first.keys.sorted().map { Moments(path: $0, expAvg: first[$0]!!, expAvgSq: second[$0]!!) } : []

        let curves = try group.group("history")
        var history = History()
        let expected = ["loss", "lr", "grad_norm"] + history.epochCurves.map(\.0)
        if let extra = try curves.linkNames().first(where: { !expected.contains($0) }) { throw fail("history/\(extra) is not a curve of §4.2") }
        func curve(_ name: String, _ dtype: DType, count: Int?) throws -> [UInt8] {
            guard curves.contains(name) else { throw fail("history/\(name) is missing") }
            let dataset = try curves.dataset(name)
            guard dataset.storedTypeMatches(dtype), dataset.shape.count == 1, count.map({ dataset.shape[0] == $0 }) ?? true,
                  dataset.shape[0] <= Int(Int32.max) else {
                throw fail("history/\(name) must be \(dtype.rawValue) of shape (\(count.map(String.init) ?? "epochs"),), found \(ShapeMath.describe(dataset.shape))")
            }
            return try dataset.readAllBytes()
        }
        func floats(_ bytes: [UInt8]) -> [Float] { bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
        history.loss = floats(try curve("loss", .f32, count: step))
        history.lr = try curve("lr", .f64, count: step).withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        history.gradNorm = floats(try curve("grad_norm", .f32, count: step))
        let epochs = try curves.dataset("train_loss").shape.first ?? 0
        history.trainLoss = floats(try curve("train_loss", .f32, count: nil))
        history.valLoss = floats(try curve("val_loss", .f32, count: epochs))
        history.valMacroF1 = floats(try curve("val_macro_f1", .f32, count: epochs))
        history.valAccuracy = floats(try curve("val_accuracy", .f32, count: epochs))
        history.valBalancedAccuracy = floats(try curve("val_balanced_accuracy", .f32, count: epochs))

        return TrainingRecord(stage: stage, status: status, step: step, totalSteps: totalSteps, epoch: epoch, cursor: cursor,
                              seed: UInt64(seed), threads: threads, tool: try string("tool"), hyperparameters: try object("hyperparameters"),
                              data: try object("data"), split: try object("split"), best: try object("best"), stages: stages,
                              classWeights: classWeights, optimizerStep: optimizerStep, moments: moments, history: history)
    }

    /// The optional `class_weights` attribute (§4.1): a float64 list of K float32 values (K the checkpoint's classes),
    /// each finite and ≥ 0, one at least positive, on a stage2b or stage3 record.
    private static func classWeights(_ group: HDF5Group, stage: Stage, classes: Int?, fail: (String) -> CheckpointError) throws -> [Float]? {
        guard group.hasAttribute("class_weights") else { return nil }
        guard stage == .stage2b || stage == .stage3 else { throw fail("attribute class_weights belongs to stage2b or stage3, not \(stage.rawValue)") }
        guard group.attribute("class_weights", isStoredAs: .float64List), let values = try? group.doublesAttribute("class_weights") else {
            throw fail("attribute class_weights is not a float64 list (Formats/prima-training.md §4.1)")
        }
        guard let classes, values.count == classes else {
            throw fail("attribute class_weights has \(values.count) values for \(classes.map(String.init) ?? "no") classes")
        }
        guard values.allSatisfy({ $0.isFinite && $0 >= 0 && Double(Float($0)) == $0 }), values.contains(where: { $0 > 0 }) else {
            throw fail("attribute class_weights must hold float32 values, each finite and ≥ 0, one at least positive")
        }
        return values.map { Float($0) }
    }

    /// The float32 datasets below `group`, by path (at most six levels: `ROLE/lora/NAME/tensors/X`), finite.
    /// Without `load`, only the paths and shapes (nothing read).
    private static func collect(_ group: HDF5Group, prefix: String, depth: Int, load: Bool, into found: inout [(String, [Int], Tensor?)],
                                fail: (String) -> CheckpointError) throws {
        guard depth < 6 else { throw fail("\(prefix) is nested too deeply for a tensor path") }
        for name in try group.linkNames() {
            switch try group.linkKind(name) {
            case .dataset:
                let dataset = try group.dataset(name)
                guard dataset.storedTypeMatches(.f32), let bytes = ShapeMath.byteCount(dataset.shape, .f32), bytes <= 1 << 30 else {
                    throw fail("\(prefix)\(name) is not a float32 tensor within the size limit")
                }
                guard load else {
                    found.append((prefix + name, dataset.shape, nil))
                    continue
                }
                let tensor = Tensor(shape: dataset.shape, float32: try dataset.readAllBytes().withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
                if tensor.float32Values().contains(where: { !$0.isFinite }) { throw fail("\(prefix)\(name) holds a non-finite value") }
                found.append((prefix + name, dataset.shape, tensor))
            case .group:
                try collect(try group.group(name), prefix: prefix + name + "/", depth: depth + 1, load: load, into: &found, fail: fail)
            default:
                throw fail("\(prefix)\(name) is neither a group nor a dataset")
            }
        }
    }
}

extension Checkpoint {
    /// The shape of every tensor a run could train, by gradient path (Formats/prima-trace.md §11.6): the stored
    /// tensors of every component and of `/prima` (tied aliases left out: their gradient is their target's) and every
    /// matrix of every stored adapter.
    public func trainableShapes() throws -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        let readers = try roles.map { try component($0) } + (extraGroups.contains("prima") ? [try group("prima")] : [])
        for reader in readers {
            for record in try reader.tensorRecords() where record.aliasOf == nil {
                shapes["\(reader.name)/tensors/\(record.name)"] = record.shape
            }
            for adapter in try reader.loraAdapterNames() {
                for record in try reader.loraAdapter(adapter).reader.tensorRecords() {
                    shapes["\(reader.name)/lora/\(adapter)/tensors/\(record.name)"] = record.shape
                }
            }
        }
        return shapes
    }
}
