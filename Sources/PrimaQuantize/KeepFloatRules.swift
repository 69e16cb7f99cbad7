import Foundation
import PrimaIO
import PrimaTensor
import PrimaTokenizers

/// Which tensors of a component stay float when a checkpoint is quantised (Formats/prima-checkpoint.md §7.2).
///
/// Candidates are the rank-2 f32/f16/bf16 datasets of a component's `tensors/` group: in the four
/// architectures those are the Linear weights, the embedding tables (`embed.tokens`, `embed.positions`,
/// `embed.token_types`) and the output heads. A candidate is quantised unless a keep-float pattern matches
/// its canonical name, or it is the target of a tied alias whose own name a pattern matches (quantising it
/// would quantise the alias too). Patterns are searched anywhere in the name (anchor them with `^…$`). They are
/// regexes of the tokenizer's dialect (PrimaTokenizers.BoundedRegex), with its limits: a pattern nested too deep or
/// a loop that can match empty (`(.*)*`) is refused, and a search over its step budget stops with an error.
/// LoRA adapters and the `/prima` heads are never quantised; the tool does not look into them.
public struct KeepFloatRules: Sendable {
    /// One default rule: what it protects, its pattern, and the option that lifts it (nil: always on).
    public struct Rule: Sendable {
        public let label: String
        public let pattern: String
        public let liftedBy: String?
    }

    /// The default rules, in the order of the table in §7.2. The first five never match a rank-2 tensor of
    /// the four architectures (their tensors have other ranks); they are listed so that the rules stay right
    /// if a future architecture stores such a tensor as a matrix.
    public static let defaults: [Rule] = [
        Rule(label: "norms", pattern: #"(^|\.)[a-z_]*norm\.(weight|bias)$"#, liftedBy: nil),
        Rule(label: "biases", pattern: #"\.bias$"#, liftedBy: nil),
        Rule(label: "layer scales", pattern: #"^layers\.[0-9]+\.ls[12]$"#, liftedBy: nil),
        Rule(label: "CLS, register and mask tokens", pattern: #"^embed\.(cls_token|register_tokens|mask_token)$"#, liftedBy: nil),
        Rule(label: "patch embedding", pattern: #"^embed\.patch\."#, liftedBy: nil),
        Rule(label: "embeddings", pattern: #"^embed\."#, liftedBy: "--quantize-embeddings"),
        Rule(label: "output heads", pattern: #"^(lm_head|mlm|pooler)\."#, liftedBy: "--quantize-heads"),
    ]

    /// What decides a candidate's fate.
    public enum Decision: Sendable, Equatable {
        case quantize
        /// Kept float, with the reason for the report (`embeddings`, `--keep-float layers\.0\.`, `tied to lm_head.weight (output heads)`).
        case keepFloat(reason: String)
    }

    /// The patterns in force, defaults first (those not lifted), then the user's, in order.
    public let patterns: [String]
    public let quantizeEmbeddings: Bool
    public let quantizeHeads: Bool
    private let labels: [String]
    private let regexes: [BoundedRegex]

    /// The rules for these options; throws `ToolError.input` naming a user pattern that is not a valid
    /// regular expression or that the regex limits refuse.
    public init(userPatterns: [String] = [], quantizeEmbeddings: Bool = false, quantizeHeads: Bool = false) throws {
        var patterns: [String] = [], labels: [String] = []
        for rule in Self.defaults {
            if rule.liftedBy == "--quantize-embeddings" && quantizeEmbeddings { continue }
            if rule.liftedBy == "--quantize-heads" && quantizeHeads { continue }
            patterns.append(rule.pattern)
            labels.append(rule.label)
        }
        for pattern in userPatterns {
            patterns.append(pattern)
            labels.append("--keep-float \(pattern)")
        }
        var regexes: [BoundedRegex] = []
        for (pattern, label) in zip(patterns, labels) {
            do {
                regexes.append(try BoundedRegex(pattern, place: label))
            } catch let error as TokenizerError {
                if case let .invalidRegex(_, detail) = error {
                    throw ToolError.input("--keep-float: \"\(pattern)\" is not a valid regular expression: \(detail)")
                }
                throw ToolError.input(error.description)
            }
        }
        self.regexes = regexes
        self.patterns = patterns
        self.labels = labels
        self.quantizeEmbeddings = quantizeEmbeddings
        self.quantizeHeads = quantizeHeads
    }

    /// Whether a dataset of this dtype and shape is a candidate at all (rank 2, float).
    public static func isCandidate(dtype: DType, shape: [Int]) -> Bool {
        dtype.isWeightFloat && shape.count == 2
    }

    /// The label of the first rule matching `name`, nil if none. Throws `ToolError.input` when a pattern's search
    /// exceeds its step budget (catastrophic backtracking).
    public func keepReason(for name: String) throws -> String? {
        for (regex, label) in zip(regexes, labels) {
            do {
                if try regex.isFound(in: name) { return label }
            } catch {
                throw ToolError.input("\(error) (searching \(name.debugDescription))")
            }
        }
        return nil
    }

    /// The decision for candidate `name`, given the names of the tied aliases that point at it. Throws as
    /// ``keepReason(for:)`` does.
    public func decision(for name: String, aliases: [String] = []) throws -> Decision {
        if let reason = try keepReason(for: name) { return .keepFloat(reason: reason) }
        for alias in aliases {
            if let reason = try keepReason(for: alias) { return .keepFloat(reason: "tied to \(alias) (\(reason))") }
        }
        return .quantize
    }
}
