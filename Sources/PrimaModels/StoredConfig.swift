import PrimaCheckpoint
import PrimaJSON
import PrimaTensor

/// A stored component whose configuration or tensors contradict each other or the format: one line naming the
/// file, the component and the object, as every tool reports it (exit status 2: the checkpoint is bad input).
public struct StoredComponentError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The one reader of a stored component's configuration (Formats/prima-checkpoint.md §3.3), used by the runtime,
/// `prima-verify` and the converters.
///
/// It lives beside the architectures because only they know which typed fields a configuration has. The typed
/// `config/` group is what other readers (h5py, the Python reference) trust, and `files/config.json` is what export
/// writes back; both must say the same thing. So the verbatim file is parsed with the architecture's rules
/// (defaults, the limits of `ConfigLimits`, refused configurations) and every typed field is then read from
/// `config/` with the type §3.3 gives it and compared: a missing, mistyped, extra or different attribute is an
/// error naming the key, both values and the file.
public enum StoredConfig {
    /// The component's architecture, from its `architecture` attribute.
    public static func architecture(of component: ComponentReader) throws -> Architecture {
        let name = try component.attribute("architecture")
        guard let architecture = Architecture(rawValue: name) else {
            throw StoredComponentError("\(origin(component)): unknown architecture \"\(name)\"")
        }
        return architecture
    }

    /// Reads and cross-checks the configuration of `component`.
    public static func read(_ component: ComponentReader) throws -> any ArchitectureConfig {
        let architecture = try architecture(of: component)
        let where_ = origin(component)
        let config: any ArchitectureConfig
        do {
            guard let json = try JSON.parse(try component.file("config.json")).object else {
                throw StoredComponentError("\(where_): files/config.json is not a JSON object")
            }
            config = try architecture.parseConfig(json)
        } catch let error as ModelConfigError {
            // ModelConfigError reads "config.json: field …"; the stored copy is files/config.json.
            throw StoredComponentError("\(where_): files/\(error.description)")
        } catch let error as JSONError {
            throw StoredComponentError("\(where_): files/config.json: \(error.description)")
        }
        let group = try component.subgroup("config")
        let known = Set(config.fields.map { $0.0 })
        for (key, expected) in config.fields {
            guard group.hasAttribute(key) else {
                throw StoredComponentError("\(where_): config/\(key) is missing (files/config.json gives \(describe(expected)))")
            }
            let stored: ConfigValue
            do {
                stored = try read(key, like: expected, from: group)
            } catch {
                throw StoredComponentError("\(where_): config/\(key) does not have the type §3.3 gives it (files/config.json gives \(describe(expected)))")
            }
            guard group.attribute(key, isStoredAs: storedType(of: expected)) else {
                throw StoredComponentError("\(where_): config/\(key) is stored as \(group.attributeTypeDescription(key)), not the \(storedType(of: expected)) §3.3 gives it")
            }
            guard stored == expected else {
                throw StoredComponentError("\(where_): config/\(key) is \(describe(stored)) but files/config.json gives \(describe(expected))")
            }
        }
        if let extra = try group.attributeNames().first(where: { !known.contains($0) }) {
            throw StoredComponentError("\(where_): config/\(extra) is not a \(architecture.rawValue) field (§3.3)")
        }
        return config
    }

    /// Reads attribute `key` with the type of `expected`.
    private static func read(_ key: String, like expected: ConfigValue, from group: HDF5Group) throws -> ConfigValue {
        switch expected {
        case .int: return .int(try group.intAttribute(key))
        case .double: return .double(try group.doubleAttribute(key))
        case .bool:
            let value = try group.intAttribute(key)
            guard value == 0 || value == 1 else { throw StoredComponentError("not 0 or 1") }
            return .bool(value == 1)
        case .string: return .string(try group.stringAttribute(key))
        case .doubles: return .doubles(try group.doublesAttribute(key))
        case .json: return .json(try group.stringAttribute(key))
        }
    }

    /// The file type §3.3 gives a field: integers and booleans int64, reals float64, lists of reals 1-D float64.
    private static func storedType(of value: ConfigValue) -> HDF5AttributeType {
        switch value {
        case .int, .bool: .int64
        case .double: .float64
        case .doubles: .float64List
        case .string, .json: .string
        }
    }

    /// A value as a message shows it.
    static func describe(_ value: ConfigValue) -> String {
        switch value {
        case .int(let int): "\(int)"
        case .double(let double): "\(double)"
        case .bool(let bool): bool ? "1 (true)" : "0 (false)"
        case .string(let string): JSONValue.string(string).serialized()
        case .doubles(let doubles): "\(doubles)"
        case .json(let json): json
        }
    }

    /// `FILE: ROLE`, the prefix of every message about a component.
    static func origin(_ component: ComponentReader) -> String { "\(component.checkpoint.path): \(component.name)" }
}

/// The one validation of a component's stored tensors against its configuration, run by every tool before a
/// model is built or a tensor is read (through `StoredValidation`): every tensor the configuration implies is present unless optional,
/// no tensor the configuration does not imply, every shape equal to the implied one, weights f32/f16/bf16 or
/// int8 with their quantisation attributes and a scales companion of the right shape (§7.1), and `tensor_count`
/// equal to the number of datasets.
public enum TensorValidation {
    /// Every problem found, one line each (`tensor NAME: …`), in name order; empty when the tensors fit.
    public static func problems(_ component: ComponentReader, config: any ArchitectureConfig) throws -> [String] {
        var problems: [String] = []
        let records = try component.tensorRecords()
        let stored = records.filter { $0.aliasOf == nil }
        let present = Dictionary(records.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let expected = config.expectedTensors
        var companions: Set<String> = []
        for record in stored where record.dtype == .i8 {
            let scalesName = QuantizedTensorInfo.scalesName(for: record.name)
            companions.insert(scalesName)
            guard let info = try QuantizedTensorInfo.read(try component.dataset(forTensor: record.name)) else {
                problems.append("tensor \(record.name): int8 without quantisation attributes (§7)")
                continue
            }
            guard record.shape.count == 2, let scales = present[scalesName], scales.aliasOf == nil else {
                problems.append("tensor \(record.name): int8 without its \(scalesName)")
                continue
            }
            let scalesShape = info.scheme.scalesShape(rows: record.shape[0], columns: record.shape[1])
            if scales.dtype != .f32 || scales.shape != scalesShape {
                problems.append("tensor \(scalesName): \(scales.dtype.rawValue) \(ShapeMath.describe(scales.shape)) but the config implies f32 \(ShapeMath.describe(scalesShape))")
            }
        }
        for (name, tensor) in expected.sorted(by: { $0.key < $1.key }) {
            if let record = present[name] {
                if record.shape != tensor.shape {
                    problems.append("tensor \(name): shape \(ShapeMath.describe(record.shape)) but the config implies \(ShapeMath.describe(tensor.shape))")
                } else if !(record.dtype.isWeightFloat || record.dtype == .i8) {
                    problems.append("tensor \(name): dtype \(record.dtype.rawValue) is not a weight type (f32, f16, bf16 or quantised i8)")
                }
            } else if tensor.required {
                problems.append("tensor \(name): missing (the config implies \(ShapeMath.describe(tensor.shape)))")
            }
        }
        for record in records.sorted(by: { $0.name < $1.name })
        where expected[record.name] == nil && !companions.contains(record.name) {
            problems.append("tensor \(record.name): not a tensor of this \(type(of: config).architecture.rawValue) configuration")
        }
        let declared = try? component.group.intAttribute("tensor_count")
        if declared != stored.count {
            problems.append("tensor_count says \(declared.map(String.init) ?? "nothing"), tensors/ holds \(stored.count) datasets")
        }
        for adapter in try component.loraAdapterNames() {
            problems += try loraProblems(component, adapter: adapter, base: present)
        }
        return problems
    }

    /// The problems of LoRA adapter `adapter` (§6), each as `lora/NAME: …`: its attributes, and for each target a
    /// rank-2 weight of the component [out, in] with `lora_a` [r, in] and `lora_b` [out, r] in a float dtype, and
    /// nothing else in its `tensors/`.
    static func loraProblems(_ component: ComponentReader, adapter: String, base: [String: TensorRecord]) throws -> [String] {
        let prefix = "lora/\(adapter)"
        let info: LoraAdapterInfo, reader: ComponentReader
        do {
            (info, reader) = try component.loraAdapter(adapter)
        } catch let error as CheckpointError {
            return [prefix + ": " + error.description.replacingOccurrences(of: "\(StoredConfig.origin(component))/\(prefix): ", with: "")]
        }
        var problems: [String] = []
        let records = try reader.tensorRecords()
        let present = Dictionary(records.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var expected: Set<String> = []
        for target in info.targets {
            guard let weight = base[target], weight.shape.count == 2, weight.dtype.isWeightFloat || weight.dtype == .i8 else {
                problems.append("\(prefix): target \(target) is not a rank-2 weight of this component")
                continue
            }
            let (out, input) = (weight.shape[0], weight.shape[1])
            for (name, shape) in [(LoraAdapterInfo.aName(for: target), [info.rank, input]),
                                  (LoraAdapterInfo.bName(for: target), [out, info.rank])] {
                expected.insert(name)
                guard let record = present[name], record.aliasOf == nil else {
                    problems.append("\(prefix): tensor \(name): missing (target \(target) implies \(ShapeMath.describe(shape)))")
                    continue
                }
                if record.shape != shape || !record.dtype.isWeightFloat {
                    problems.append("\(prefix): tensor \(name): \(record.dtype.rawValue) \(ShapeMath.describe(record.shape)) but rank \(info.rank) and \(target) \(ShapeMath.describe(weight.shape)) imply a float \(ShapeMath.describe(shape))")
                }
            }
        }
        for record in records where !expected.contains(record.name) {
            problems.append("\(prefix): tensor \(record.name): not the A or B matrix of a listed target")
        }
        return problems
    }
}

/// Counting NaN and Inf in stored weight bytes, for import (which records them) and verify (which reports them).
public enum NonFinite {
    /// The attribute import writes on a tensor that holds NaN or Inf values: their count (Formats/prima-checkpoint.md
    /// §5.1).
    public static let attribute = "non_finite"

    /// NaN and Inf values in raw little-endian f32/f16/bf16 bytes (an all-ones exponent field); 0 for other dtypes.
    public static func count(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> Int {
        var count = 0
        switch dtype {
        case .f32:
            for index in stride(from: 0, to: bytes.count - 3, by: 4)
            where bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self) & 0x7F80_0000 == 0x7F80_0000 { count += 1 }
        case .f16:
            for index in stride(from: 0, to: bytes.count - 1, by: 2)
            where bytes.loadUnaligned(fromByteOffset: index, as: UInt16.self) & 0x7C00 == 0x7C00 { count += 1 }
        case .bf16:
            for index in stride(from: 0, to: bytes.count - 1, by: 2)
            where bytes.loadUnaligned(fromByteOffset: index, as: UInt16.self) & 0x7F80 == 0x7F80 { count += 1 }
        default:
            break
        }
        return count
    }

    /// Counts NaN and Inf over a tensor's bytes fed in pieces that may split an element (import streams file
    /// blocks, whose edges fall anywhere).
    public struct Counter: Sendable {
        public let dtype: DType
        /// Values seen so far that are NaN or Inf.
        public private(set) var count = 0
        private var carry: [UInt8] = []

        public init(dtype: DType) { self.dtype = dtype }

        /// Feeds the next bytes of the tensor.
        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            guard dtype.isWeightFloat, !bytes.isEmpty else { return }
            let size = dtype.byteSize
            var rest = bytes
            if !carry.isEmpty {
                let take = min(size - carry.count, rest.count)
                carry += rest.prefix(take)
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(take))
                guard carry.count == size else { return }
                count += carry.withUnsafeBytes { NonFinite.count($0, dtype: dtype) }
                carry = []
            }
            let whole = rest.count / size * size
            count += NonFinite.count(UnsafeRawBufferPointer(rebasing: rest[0..<whole]), dtype: dtype)
            carry = Array(rest[whole...])
        }
    }
}
