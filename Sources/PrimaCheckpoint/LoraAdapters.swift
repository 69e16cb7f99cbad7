import Foundation
import PrimaJSON

/// The attributes of one LoRA adapter group `/ROLE/lora/NAME` (Formats/prima-checkpoint.md §6), each checked
/// against its range when read. Its tensors are read through the ``ComponentReader`` of the adapter group.
public struct LoraAdapterInfo: Sendable, Equatable {
    /// Largest accepted rank (§6).
    public static let maxRank = 4096
    /// The adapter's name (the group name under `lora/`).
    public let name: String
    /// r.
    public let rank: Int
    /// lora_alpha.
    public let alpha: Double
    /// Rank-stabilised LoRA: scale alpha/√r instead of alpha/r.
    public let useRSLoRA: Bool
    /// Dropout probability on the adapter's input during training.
    public let dropout: Double
    /// Canonical names of the adapted weights (`X.weight`), in storage order.
    public let targets: [String]
    /// Whether the update is already added to the base weights.
    public let merged: Bool

    public init(name: String, rank: Int, alpha: Double, useRSLoRA: Bool, dropout: Double, targets: [String], merged: Bool) {
        self.name = name
        self.rank = rank
        self.alpha = alpha
        self.useRSLoRA = useRSLoRA
        self.dropout = dropout
        self.targets = targets
        self.merged = merged
    }

    /// The factor on B·A·x, computed in double and rounded once to f32, as PEFT's `scaling` multiplies an f32
    /// tensor: alpha / r, or alpha / √r with rank-stabilised LoRA.
    public var scale: Float { Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }

    /// `X.lora_a` for target `X.weight`.
    public static func aName(for target: String) -> String { stem(target) + ".lora_a" }
    /// `X.lora_b` for target `X.weight`.
    public static func bName(for target: String) -> String { stem(target) + ".lora_b" }

    private static func stem(_ target: String) -> String {
        target.hasSuffix(".weight") ? String(target.dropLast(".weight".count)) : target
    }

    /// Whether `name` may name an adapter: 1-64 characters of `[A-Za-z0-9_.-]`, not starting with `.`.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), !name.hasPrefix(".") else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
        }
    }

    /// Writes the attributes onto an adapter group.
    public func write(to group: HDF5Group) throws {
        try group.setAttribute("rank", int: rank)
        try group.setAttribute("alpha", double: alpha)
        try group.setAttribute("use_rslora", int: useRSLoRA ? 1 : 0)
        try group.setAttribute("dropout", double: dropout)
        try group.setAttribute("targets", string: JSONValue.array(targets.map { .string($0) }).serialized())
        try group.setAttribute("merged", int: merged ? 1 : 0)
    }
}

extension ComponentReader {
    /// The names of the component's LoRA adapters (the groups under `lora/`), in storage order.
    public func loraAdapterNames() throws -> [String] {
        guard group.contains("lora") else { return [] }
        return try group.group("lora").linkNames()
    }

    /// Adapter `adapterName`: its checked attributes and a reader of its group (for `tensors/` and `files/`).
    public func loraAdapter(_ adapterName: String) throws -> (info: LoraAdapterInfo, reader: ComponentReader) {
        let where_ = "\(checkpoint.path): \(name)/lora/\(adapterName)"
        func fail(_ what: String) -> CheckpointError { CheckpointError("\(where_): \(what)") }
        guard LoraAdapterInfo.isValidName(adapterName) else { throw fail("not a valid adapter name (§6)") }
        let lora = try subgroup("lora")
        guard lora.contains(adapterName), case .group = try lora.linkKind(adapterName) else { throw fail("no such adapter") }
        let adapter = try lora.group(adapterName)
        func int(_ key: String) throws -> Int {
            guard adapter.hasAttribute(key) else { throw fail("missing attribute \(key)") }
            do { return try adapter.intAttribute(key) } catch { throw fail("attribute \(key) is not an int") }
        }
        func double(_ key: String) throws -> Double {
            guard adapter.hasAttribute(key) else { throw fail("missing attribute \(key)") }
            // §6 stores them as float64: an integer (PEFT's lora_alpha is often one) is converted on import, never read as is.
            guard adapter.attribute(key, isStoredAs: .float64), let value = try? adapter.doubleAttribute(key) else {
                throw fail("attribute \(key) is \(adapter.attributeTypeDescription(key)), not a float64")
            }
            return value
        }
        func flag(_ key: String) throws -> Bool {
            let value = try int(key)
            guard value == 0 || value == 1 else { throw fail("attribute \(key) is \(value), not 0 or 1") }
            return value == 1
        }
        let rank = try int("rank"), alpha = try double("alpha"), dropout = try double("dropout")
        guard (1...LoraAdapterInfo.maxRank).contains(rank) else { throw fail("rank \(rank) is outside 1...\(LoraAdapterInfo.maxRank)") }
        guard alpha.isFinite, alpha > 0 else { throw fail("alpha \(alpha) is not a finite positive number") }
        guard dropout >= 0, dropout < 1 else { throw fail("dropout \(dropout) is outside [0, 1)") }
        guard adapter.hasAttribute("targets") else { throw fail("missing attribute targets") }
        let targetsText: String
        do { targetsText = try adapter.stringAttribute("targets") } catch { throw fail("attribute targets is not a string") }
        guard let list = (try? JSON.parse(targetsText))?.array, !list.isEmpty,
              case let targets = list.compactMap(\.string), targets.count == list.count else {
            throw fail("attribute targets is not a non-empty JSON list of tensor names")
        }
        guard Set(targets).count == targets.count else { throw fail("attribute targets names a weight twice") }
        let info = LoraAdapterInfo(name: adapterName, rank: rank, alpha: alpha, useRSLoRA: try flag("use_rslora"),
                                   dropout: dropout, targets: targets, merged: try flag("merged"))
        if info.merged {
            let componentMerged = group.hasAttribute("lora_merged") ? try group.intAttribute("lora_merged") : 0
            guard componentMerged == 1 else { throw fail("merged = 1 but the component has no lora_merged = 1") }
        }
        return (info, try ComponentReader(checkpoint: checkpoint, group: adapter))
    }
}
