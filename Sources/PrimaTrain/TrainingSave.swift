import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaModels
import PrimaTensor

/// Writes a training save (Formats/prima-training.md §4.3): a whole new checkpoint — the input's contents, the
/// trained tensors' current values, the adapters a stage created, the heads' record, and `/training` — through the
/// one temporary-file-and-rename writer, so that until the rename the previous save stays complete.
public enum TrainingSave {
    /// A LoRA adapter created by the stage (not in the input checkpoint): its attributes and its matrices'
    /// current values, `X.lora_a` [r, in] then `X.lora_b` [out, r] per target, in target order.
    public struct NewAdapter: Sendable {
        public let role: ComponentRole
        public let info: LoraAdapterInfo
        public let tensors: [(name: String, tensor: Tensor)]

        public init(role: ComponentRole, info: LoraAdapterInfo, tensors: [(name: String, tensor: Tensor)]) {
            self.role = role
            self.info = info
            self.tensors = tensors
        }
    }

    /// Writes `output` from the checkpoint at `input` (its own `/training`, if any, replaced by `record`):
    /// `trained` tensors (gradient paths of tensors stored in `input`, f32) take their new values, `adapters` are
    /// added, the heads named in `trainedHeads` leave `/prima`'s `initialised_tensors` (and `heads_trained` becomes 1
    /// when none is left), and `decoderInputs`, when given and not the default, becomes `/prima`'s `decoder_inputs`
    /// (stage 3 without the metadata). `overwrite` allows replacing an earlier save at `output`.
    public static func write(input: String, output: String, trained: [(path: String, tensor: Tensor)], adapters: [NewAdapter],
                             trainedHeads: Set<String>, decoderInputs: PrimaDecoderInputs? = nil, record: TrainingRecord, overwrite: Bool) throws {
        let writer = try ToolError.classify(asInput: false) { try CheckpointWriter(destination: output, overwrite: overwrite) }
        try ToolError.classify(asInput: false) {
            try writer.copyContents(of: input, excluding: [TrainingRecord.groupName])
            for adapter in adapters {
                let group = try writer.addAdapter(role: adapter.role, name: adapter.info.name)
                try adapter.info.write(to: group.group)
                for (name, tensor) in adapter.tensors {
                    let values = tensor.toFloat32()
                    try values.withUnsafeBytes { try group.writeTensor(name: name, dtype: .f32, shape: values.shape, hfName: nil, bytes: $0) }
                }
            }
            for (path, tensor) in trained { try writer.replaceTensor(at: path, with: tensor) }
            if !trainedHeads.isEmpty { try markTrained(trainedHeads, in: try writer.rootGroup().group("prima")) }
            if let decoderInputs { try decoderInputs.write(to: try writer.rootGroup().group("prima")) }
            try writer.addTrainingRecord(record)
        }
        try ToolError.classify(asInput: false) { try writer.commit() }
    }

    /// Removes `names` from `/prima`'s `initialised_tensors`; `heads_trained` = 1 once the list is empty
    /// (Formats/prima-checkpoint.md §8).
    static func markTrained(_ names: Set<String>, in heads: HDF5Group) throws {
        let listed = (try? JSON.parse(try heads.stringAttribute("initialised_tensors")).array) ?? []
        let remaining = listed.filter { !names.contains($0.string ?? "") }
        try heads.setAttribute("initialised_tensors", string: JSONValue.array(remaining).serialized())
        try heads.setAttribute("heads_trained", int: remaining.isEmpty ? 1 : 0)
    }
}
