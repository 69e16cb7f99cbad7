import Foundation
import PrimaCheckpoint
import PrimaModels
import PrimaTensor

/// The LoRA adapter a stage trains on a component (Docs/prima-model.md; Formats/prima-training.md §5): named
/// `prima`, rank r and alpha (default 2r), on every attention and MLP projection unless targets are given,
/// initialised as PEFT's default (`init_lora_weights=True`): A uniform in ±1/√in (`kaiming_uniform_(a=√5)`), B zero,
/// so the adapted model starts equal to the base.
public enum StageAdapters {
    /// The adapter's name in every component.
    public static let name = "prima"

    /// The projections a default adapter targets: `layers.N.attn.{q,k,v,o,qkv}.weight` and
    /// `layers.N.mlp.{up,gate,wi,down}.weight` (Formats/prima-checkpoint.md §4 canonical names).
    public static let projections: Set<String> = ["attn.q", "attn.k", "attn.v", "attn.o", "attn.qkv", "mlp.up", "mlp.gate", "mlp.wi", "mlp.down"]

    /// Whether canonical weight `name` is one of the default targets.
    public static func isDefaultTarget(_ name: String) -> Bool {
        let parts = name.split(separator: ".")
        guard parts.count == 5, parts[0] == "layers", Int(parts[1]) != nil, parts[4] == "weight" else { return false }
        return projections.contains("\(parts[2]).\(parts[3])")
    }

    /// A new adapter on `component`: its attributes and its matrices, A drawn from the stream
    /// (seed, initialisation, epoch 0, index = the target's position in `targets`, part = `streamPart`) row by row as
    /// `(2·unit() − 1) / √in` rounded to f32, B zero. `targets` nil: every default target the component stores, in
    /// storage order. Throws naming a target that is not a rank-2 weight of the component.
    public static func create(for component: ComponentReader, rank: Int, alpha: Double, targets: [String]? = nil, seed: UInt64,
                              streamPart: Int) throws -> (info: LoraAdapterInfo, adapter: TrainingAdapter) {
        guard (1...LoraAdapterInfo.maxRank).contains(rank), alpha.isFinite, alpha > 0 else {
            throw OptimizerError("LoRA rank must be 1...\(LoraAdapterInfo.maxRank) and alpha positive, got \(rank) and \(alpha)")
        }
        let records = try component.tensorRecords()
        let weights = Dictionary(records.filter { $0.shape.count == 2 }.map { ($0.name, $0.shape) }, uniquingKeysWith: { first, _ in first })
        let chosen = targets ?? records.map(\.name).filter(isDefaultTarget)
        guard !chosen.isEmpty else { throw OptimizerError("\(component.name): no weight to adapt") }
        let info = LoraAdapterInfo(name: name, rank: rank, alpha: alpha, useRSLoRA: false, dropout: 0, targets: chosen, merged: false)
        let pairs = try chosen.enumerated().map { index, target -> (target: String, lora: Linear.LoRA) in
            guard let shape = weights[target] else { throw OptimizerError("\(component.name): \(target) is not a rank-2 weight of the component") }
            let (out, inputs) = (shape[0], shape[1])
            var random = TrainingRandom(seed: seed, purpose: .initialisation, epoch: 0, index: index, part: streamPart)
            let bound = 1 / Double(inputs).squareRoot()
            let a = Tensor(shape: [rank, inputs], float32: (0..<(rank * inputs)).map { _ in Float((2 * random.unit() - 1) * bound) })
            return (target, Linear.LoRA(a: a, b: Tensor(zeros: [out, rank], dtype: .f32), scaling: info.scale))
        }
        return (info, TrainingAdapter(name: name, targets: pairs))
    }

    /// The adapter's gradient paths and live matrices (`ROLE/lora/prima/tensors/X.lora_a`, `…lora_b`).
    public static func parameters(of adapter: TrainingAdapter, role: ComponentRole) -> [(path: String, value: Tensor)] {
        adapter.targets.flatMap { target, lora -> [(path: String, value: Tensor)] in
            let stem = String(target.dropLast(".weight".count))
            return [(GradientStore.path(role: role.rawValue, adapter: name, stem: stem, matrix: "lora_a"), lora.a),
                    (GradientStore.path(role: role.rawValue, adapter: name, stem: stem, matrix: "lora_b"), lora.b)]
        }
    }

    /// The adapter's matrices as a save writes them (``TrainingSave/NewAdapter``), in target order.
    public static func tensors(of adapter: TrainingAdapter) -> [(name: String, tensor: Tensor)] {
        adapter.targets.flatMap { target, lora in
            [(LoraAdapterInfo.aName(for: target), lora.a), (LoraAdapterInfo.bName(for: target), lora.b)]
        }
    }
}
