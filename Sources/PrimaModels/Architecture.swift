import PrimaCheckpoint
import PrimaJSON

/// The model architectures the toolkit stores and runs (Formats/prima-checkpoint.md §3).
public enum Architecture: String, Sendable, CaseIterable {
    case dinov3ViT = "dinov3_vit"
    case modernBERT = "modernbert"
    case bert = "bert"
    case qwen3 = "qwen3"

    /// The architecture for a config.json `model_type`, or nil if the toolkit does not support it.
    public init?(modelType: String) { self.init(rawValue: modelType) }

    /// The checkpoint role a component of this architecture takes by default.
    public var defaultRole: ComponentRole {
        switch self {
        case .dinov3ViT: .imageEncoder
        case .modernBERT, .bert: .textEncoder
        case .qwen3: .decoder
        }
    }

    /// The roles this architecture may fill.
    public var allowedRoles: [ComponentRole] { [defaultRole] }

    /// The architecture's Hugging Face ↔ canonical name table.
    public var names: NameTable {
        switch self {
        case .dinov3ViT: DINOv3ViTConfig.names
        case .modernBERT: ModernBERTConfig.names
        case .bert: BERTConfig.names
        case .qwen3: Qwen3Config.names
        }
    }

    /// Parses the architecture's configuration from a config.json object.
    public func parseConfig(_ json: JSONObject) throws(ModelConfigError) -> any ArchitectureConfig {
        switch self {
        case .dinov3ViT: try DINOv3ViTConfig(json: json)
        case .modernBERT: try ModernBERTConfig(json: json)
        case .bert: try BERTConfig(json: json)
        case .qwen3: try Qwen3Config(json: json)
        }
    }
}

/// A config.json problem, naming the field.
public struct ModelConfigError: Error, CustomStringConvertible, Sendable {
    /// What is wrong, starting with the field name.
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A typed configuration value as stored in a component's `config/` group (§3.3).
public enum ConfigValue: Sendable, Equatable {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    /// A list of reals, stored as a 1-D float64 attribute.
    case doubles([Double])
    /// A list or object, stored as JSON text.
    case json(String)
}

/// What the converter needs to know about one expected tensor.
public struct ExpectedTensor: Sendable, Equatable {
    /// The shape config.json implies.
    public let shape: [Int]
    /// Whether a checkpoint without it is refused.
    public let required: Bool
}

/// A tied pair: `alias` is the same parameter as `target` when the config ties them (§5.3).
public struct TiedPair: Sendable, Equatable {
    public let alias: String
    public let target: String
    /// A tensor whose presence says the alias's head exists (the MLM transform for an MLM decoder); nil when
    /// the alias always exists (a decoder's LM head). Without it, an absent alias is not recorded as tied.
    public let head: String?

    public init(alias: String, target: String, head: String? = nil) {
        self.alias = alias
        self.target = target
        self.head = head
    }
}

/// One architecture's parsed configuration and weight layout: the typed fields the runtime uses, the tensors
/// the config implies, and which of them are tied.
public protocol ArchitectureConfig: Sendable {
    /// The architecture.
    static var architecture: Architecture { get }
    /// The `config/` attributes (§3.3), defaults filled in, in a stable order.
    var fields: [(String, ConfigValue)] { get }
    /// Every tensor this configuration implies, by canonical name.
    var expectedTensors: [String: ExpectedTensor] { get }
    /// Tied aliases in force for this configuration.
    var tiedPairs: [TiedPair] { get }
}

/// What PRIMA needs of a text encoder's configuration, whichever architecture (BERT or ModernBERT) it is.
public protocol TextEncoderConfig: ArchitectureConfig {
    /// d_txt.
    var hiddenSize: Int { get }
    /// The longest token sequence the encoder takes.
    var maxPositionEmbeddings: Int { get }
}

/// How one Hugging Face tensor name maps into the checkpoint.
public enum NameMapping: Sendable, Equatable {
    /// Stored under this canonical name; `prefix` is the body prefix the name carried (`model.`, `bert.`, ""),
    /// nil for a head name (heads are never prefixed).
    case tensor(canonical: String, prefix: String?)
    /// Not stored, with the reason (§4.6).
    case dropped(reason: String)
    /// Not in the architecture's table: refused.
    case unknown
}

/// An architecture's name table (§4.2–4.5): body names (which may carry one of `bodyPrefixes`), head names
/// (never prefixed), and dropped names. `N` in a pattern stands for a layer index.
public struct NameTable: Sendable {
    /// Prefixes a body name may carry, most specific first; "" must be among them.
    public let bodyPrefixes: [String]
    /// Body patterns: Hugging Face → canonical.
    public let body: [(hf: String, canonical: String)]
    /// Head patterns (unprefixed): Hugging Face → canonical.
    public let heads: [(hf: String, canonical: String)]
    /// Hugging Face name prefixes that are dropped (after stripping a body prefix), with the reason.
    public let dropped: [(hfPrefix: String, reason: String)]
    /// Second Hugging Face names of one parameter (BERT's `cls.predictions.decoder.bias` is
    /// `cls.predictions.bias`): second name → first name, both unprefixed heads.
    public let duplicateNames: [String: String]

    private let bodyLookup: [String: String]
    private let headLookup: [String: String]
    private let reverseBody: [String: String]
    private let reverseHeads: [String: String]

    public init(bodyPrefixes: [String], body: [(hf: String, canonical: String)], heads: [(hf: String, canonical: String)],
                dropped: [(hfPrefix: String, reason: String)], duplicateNames: [String: String] = [:]) {
        self.bodyPrefixes = bodyPrefixes
        self.duplicateNames = duplicateNames
        self.body = body
        self.heads = heads
        self.dropped = dropped
        bodyLookup = Dictionary(body.map { ($0.hf, $0.canonical) }, uniquingKeysWith: { first, _ in first })
        headLookup = Dictionary(heads.map { ($0.hf, $0.canonical) }, uniquingKeysWith: { first, _ in first })
        reverseBody = Dictionary(body.map { ($0.canonical, $0.hf) }, uniquingKeysWith: { first, _ in first })
        reverseHeads = Dictionary(heads.map { ($0.canonical, $0.hf) }, uniquingKeysWith: { first, _ in first })
    }

    /// Replaces the first all-digit dot-separated component with `N`, returning the pattern and the index.
    static func pattern(of name: String) -> (String, String?) {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let position = parts.firstIndex(where: { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        else { return (name, nil) }
        let index = parts[position]
        parts[position] = "N"
        return (parts.joined(separator: "."), index)
    }

    static func substitute(_ pattern: String, index: String?) -> String {
        guard let index else { return pattern }
        return pattern.split(separator: ".", omittingEmptySubsequences: false)
            .map { $0 == "N" ? index : String($0) }.joined(separator: ".")
    }

    /// Maps a Hugging Face tensor name.
    public func map(_ hfName: String) -> NameMapping {
        if let first = duplicateNames[hfName], case .tensor(let canonical, _) = map(first) {
            return .tensor(canonical: canonical, prefix: nil)
        }
        let (headPattern, headIndex) = Self.pattern(of: hfName)
        if let canonical = headLookup[headPattern] {
            return .tensor(canonical: Self.substitute(canonical, index: headIndex), prefix: nil)
        }
        for prefix in bodyPrefixes where hfName.hasPrefix(prefix) {
            let stripped = String(hfName.dropFirst(prefix.count))
            let (pattern, index) = Self.pattern(of: stripped)
            if let canonical = bodyLookup[pattern] {
                return .tensor(canonical: Self.substitute(canonical, index: index), prefix: prefix)
            }
            if let drop = dropped.first(where: { stripped.hasPrefix($0.hfPrefix) }) {
                return .dropped(reason: drop.reason)
            }
        }
        return .unknown
    }

    /// The Hugging Face name for a canonical name, given the body prefix the component was imported with.
    public func hfName(forCanonical canonical: String, prefix: String) -> String? {
        let (pattern, index) = Self.pattern(of: canonical)
        if let hf = reverseHeads[pattern] { return Self.substitute(hf, index: index) }
        if let hf = reverseBody[pattern] { return prefix + Self.substitute(hf, index: index) }
        return nil
    }
}

/// The largest configuration values the toolkit accepts (Formats/prima-checkpoint.md §3.5). They are checked when
/// config.json is parsed, at import and at every load, before a tensor table or a buffer is sized by them: a
/// config.json that declares 10⁹ layers is a one-line error, not an allocation. Each limit is far above the
/// released models of the four architectures (Qwen3-8B: vocabulary 151,936, width 4096, MLP 12,288, 36 layers,
/// 40,960 positions; DINOv3 ViT-7B: width 4096, 40 layers).
public enum ConfigLimits {
    /// `vocab_size`.
    public static let maxVocabSize = 1 << 21
    /// `hidden_size`.
    public static let maxHiddenSize = 1 << 16
    /// `intermediate_size`.
    public static let maxIntermediateSize = 1 << 18
    /// `num_hidden_layers` (and ModernBERT's `global_attn_every_n_layers`).
    public static let maxLayers = 1024
    /// `num_attention_heads`, `num_key_value_heads`.
    public static let maxHeads = 1024
    /// `head_dim`.
    public static let maxHeadDim = 4096
    /// `max_position_embeddings`, ModernBERT's `local_attention` and `sliding_window`.
    public static let maxPositions = 1 << 20
    /// `type_vocab_size`.
    public static let maxTypeVocabSize = 1 << 16
    /// DINOv3's `image_size`.
    public static let maxImageSize = 1 << 14
    /// DINOv3's `patch_size`.
    public static let maxPatchSize = 1024
    /// DINOv3's `num_channels`.
    public static let maxChannels = 64
    /// DINOv3's `num_register_tokens`.
    public static let maxRegisterTokens = 1024
    /// Normalisation epsilons lie in (0, maxEpsilon]: zero or less divides by zero (or takes the root of a negative
    /// number) on a constant row, and no model uses one near 1.
    public static let maxEpsilon = 1.0
    /// RoPE bases lie in [minRopeTheta, maxRopeTheta]: below 1 the frequencies θ^(−2i/D) grow with i and overflow
    /// float32; released models use 100 to 10⁷.
    public static let minRopeTheta = 1.0
    public static let maxRopeTheta = 1e12

    /// The limit of an integer size field, by its config.json key.
    public static func maximum(for key: String) -> Int {
        switch key {
        case "vocab_size": maxVocabSize
        case "hidden_size": maxHiddenSize
        case "intermediate_size": maxIntermediateSize
        case "num_hidden_layers", "global_attn_every_n_layers": maxLayers
        case "num_attention_heads", "num_key_value_heads": maxHeads
        case "head_dim": maxHeadDim
        case "max_position_embeddings", "local_attention", "sliding_window": maxPositions
        case "type_vocab_size": maxTypeVocabSize
        case "image_size": maxImageSize
        case "patch_size": maxPatchSize
        case "num_channels": maxChannels
        case "num_register_tokens": maxRegisterTokens
        default: 1 << 20
        }
    }
}

/// Reads config.json fields with explicit defaults; every error names the field.
struct ConfigReader {
    let json: JSONObject

    private func value(_ key: String) -> JSONValue? {
        guard let value = json[key], !value.isNull else { return nil }
        return value
    }

    func int(_ key: String, default fallback: Int? = nil) throws(ModelConfigError) -> Int {
        guard let value = value(key) else {
            guard let fallback else { throw ModelConfigError("config.json: required field \(key) is missing") }
            return fallback
        }
        guard let int = value.int else { throw ModelConfigError("config.json: field \(key) must be an integer, got \(value.typeName)") }
        return int
    }

    /// A positive integer (a size or a count) no larger than `ConfigLimits.maximum(for: key)`, checked before
    /// anything is sized by it.
    func size(_ key: String, default fallback: Int? = nil) throws(ModelConfigError) -> Int {
        let result = try int(key, default: fallback)
        let limit = ConfigLimits.maximum(for: key)
        guard result > 0 else { throw ModelConfigError("config.json: field \(key) must be a positive size, got \(result)") }
        guard result <= limit else {
            throw ModelConfigError("config.json: field \(key) is \(result), above the limit of \(limit) (Formats/prima-checkpoint.md §3.5)")
        }
        return result
    }

    /// A normalisation epsilon: finite and in (0, `ConfigLimits.maxEpsilon`].
    func epsilon(_ key: String, default fallback: Double) throws(ModelConfigError) -> Double {
        let result = try double(key, default: fallback)
        guard result > 0, result <= ConfigLimits.maxEpsilon else {
            throw ModelConfigError("config.json: field \(key) must be in (0, \(ConfigLimits.maxEpsilon)], got \(result)")
        }
        return result
    }

    /// A RoPE base: finite and in [`ConfigLimits.minRopeTheta`, `ConfigLimits.maxRopeTheta`].
    func ropeTheta(_ key: String, default fallback: Double? = nil) throws(ModelConfigError) -> Double {
        let result = try double(key, default: fallback)
        try Self.requireRopeTheta(result, key)
        return result
    }

    /// Checks a RoPE base read under `key`.
    static func requireRopeTheta(_ theta: Double, _ key: String) throws(ModelConfigError) {
        guard theta >= ConfigLimits.minRopeTheta, theta <= ConfigLimits.maxRopeTheta else {
            throw ModelConfigError("config.json: field \(key) must be in [\(ConfigLimits.minRopeTheta), \(ConfigLimits.maxRopeTheta)], got \(theta)")
        }
    }

    func double(_ key: String, default fallback: Double? = nil) throws(ModelConfigError) -> Double {
        guard let value = value(key) else {
            guard let fallback else { throw ModelConfigError("config.json: required field \(key) is missing") }
            return fallback
        }
        guard let double = value.double else {
            throw ModelConfigError("config.json: field \(key) must be a number, got \(value.typeName)")
        }
        guard double.isFinite else { throw ModelConfigError("config.json: field \(key) must be finite, got \(double)") }
        return double
    }

    func bool(_ key: String, default fallback: Bool) throws(ModelConfigError) -> Bool {
        guard let value = value(key) else { return fallback }
        guard let bool = value.bool else { throw ModelConfigError("config.json: field \(key) must be true or false, got \(value.typeName)") }
        return bool
    }

    func string(_ key: String, default fallback: String) throws(ModelConfigError) -> String {
        guard let value = value(key) else { return fallback }
        guard let string = value.string else { throw ModelConfigError("config.json: field \(key) must be a string, got \(value.typeName)") }
        return string
    }

    func object(_ key: String) throws(ModelConfigError) -> JSONObject? {
        guard let value = value(key) else { return nil }
        guard let object = value.object else { throw ModelConfigError("config.json: field \(key) must be an object, got \(value.typeName)") }
        return object
    }

    /// An activation name the runtime implements.
    func activation(_ key: String, default fallback: String) throws(ModelConfigError) -> String {
        let name = try string(key, default: fallback)
        guard ["gelu", "gelu_pytorch_tanh", "gelu_new", "silu", "swish"].contains(name) else {
            throw ModelConfigError("config.json: field \(key): unsupported activation \"\(name)\"")
        }
        return name
    }

    /// A count that may be zero, no larger than `ConfigLimits.maximum(for: key)`.
    func count(_ key: String, default fallback: Int) throws(ModelConfigError) -> Int {
        let result = try int(key, default: fallback)
        let limit = ConfigLimits.maximum(for: key)
        guard result >= 0, result <= limit else {
            throw ModelConfigError("config.json: field \(key) must be in 0...\(limit), got \(result)")
        }
        return result
    }

    /// For an architecture whose head size is `hidden_size / num_attention_heads`: a `head_dim` field, if
    /// config.json has one, must say the same (transformers ignores it for these classes; a different value
    /// means the file was written for another model).
    func requireDerivedHeadDim(hiddenSize: Int, headCount: Int) throws(ModelConfigError) {
        guard let value = value("head_dim") else { return }
        guard value.int == hiddenSize / headCount else {
            throw ModelConfigError("config.json: head_dim \(value.serialized()) contradicts hidden_size / num_attention_heads = \(hiddenSize / headCount)")
        }
    }

    /// A divisibility check between two fields.
    static func requireDivisible(_ a: Int, by b: Int, _ what: String) throws(ModelConfigError) {
        guard b > 0, a % b == 0 else { throw ModelConfigError("config.json: \(what) (\(a) is not a multiple of \(b))") }
    }
}

/// Builds expected-tensor tables with layer loops and conditional biases.
struct ExpectedTensorBuilder {
    private(set) var tensors: [String: ExpectedTensor] = [:]

    /// A tensor that must be present.
    mutating func require(_ name: String, _ shape: [Int]) { tensors[name] = ExpectedTensor(shape: shape, required: true) }

    /// A tensor that may be present (heads, pooler).
    mutating func allow(_ name: String, _ shape: [Int]) { tensors[name] = ExpectedTensor(shape: shape, required: false) }

    /// A Linear's weight `[out, in]` and, if `bias`, its bias `[out]`; `required` false for optional heads.
    mutating func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool, required: Bool = true) {
        tensors[name + ".weight"] = ExpectedTensor(shape: [out, inFeatures], required: required)
        if bias { tensors[name + ".bias"] = ExpectedTensor(shape: [out], required: required) }
    }

    /// A norm's weight `[width]` and, if `bias`, its bias.
    mutating func norm(_ name: String, width: Int, bias: Bool, required: Bool = true) {
        tensors[name + ".weight"] = ExpectedTensor(shape: [width], required: required)
        if bias { tensors[name + ".bias"] = ExpectedTensor(shape: [width], required: required) }
    }
}
