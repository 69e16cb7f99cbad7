import PrimaJSON

/// ModernBERT's configuration (transformers `ModernBertConfig`, v4 and v5 spellings) and weight layout
/// (Formats/prima-checkpoint.md §4.3).
public struct ModernBERTConfig: TextEncoderConfig, Equatable {
    public static let architecture = Architecture.modernBERT

    public let vocabSize: Int
    public let hiddenSize: Int          // C
    public let intermediateSize: Int    // I (Wi produces 2·I)
    public let layerCount: Int
    public let headCount: Int
    public let hiddenActivation: String
    /// The masked-LM head's activation (`classifier_activation`).
    public let classifierActivation: String
    public let normEps: Double
    public let normBias, attentionBias, mlpBias, decoderBias, classifierBias: Bool
    /// `full_attention` or `sliding_attention` per layer.
    public let layerTypes: [String]
    /// Half the local window: a sliding layer lets query i see key j iff |i − j| ≤ slidingWindow.
    public let slidingWindow: Int
    public let globalRopeTheta: Double
    public let localRopeTheta: Double
    public let maxPositionEmbeddings: Int
    public let padTokenID: Int
    public let tieWordEmbeddings: Bool

    public init(json: JSONObject) throws(ModelConfigError) {
        let config = ConfigReader(json: json)
        vocabSize = try config.size("vocab_size")
        hiddenSize = try config.size("hidden_size")
        intermediateSize = try config.size("intermediate_size")
        layerCount = try config.size("num_hidden_layers")
        headCount = try config.size("num_attention_heads")
        try ConfigReader.requireDivisible(hiddenSize, by: headCount, "hidden_size must be a multiple of num_attention_heads")
        try config.requireDerivedHeadDim(hiddenSize: hiddenSize, headCount: headCount)
        // Rotate-half RoPE pairs dimension i with i + D/2.
        try ConfigReader.requireDivisible(hiddenSize / headCount, by: 2, "head size (hidden_size / num_attention_heads) must be even for rotary embeddings")
        hiddenActivation = try config.activation("hidden_activation", default: "gelu")
        classifierActivation = try config.activation("classifier_activation", default: "gelu")
        normEps = try config.epsilon("norm_eps", default: 1e-5)
        normBias = try config.bool("norm_bias", default: false)
        attentionBias = try config.bool("attention_bias", default: false)
        mlpBias = try config.bool("mlp_bias", default: false)
        decoderBias = try config.bool("decoder_bias", default: true)
        classifierBias = try config.bool("classifier_bias", default: false)
        maxPositionEmbeddings = try config.size("max_position_embeddings", default: 8192)
        padTokenID = try config.int("pad_token_id", default: 50283)
        tieWordEmbeddings = try config.bool("tie_word_embeddings", default: true)

        // Layer types: v5 writes `layer_types`; v4 derives them from global_attn_every_n_layers.
        if let types = json["layer_types"], !types.isNull {
            guard let list = types.array, list.count == layerCount,
                  let names = Optional(list.compactMap(\.string)), names.count == layerCount,
                  names.allSatisfy({ $0 == "full_attention" || $0 == "sliding_attention" }) else {
                throw ModelConfigError("config.json: layer_types must list full_attention/sliding_attention for each of the \(layerCount) layers")
            }
            layerTypes = names
        } else {
            let every = try config.size("global_attn_every_n_layers", default: 3)
            layerTypes = (0..<layerCount).map { $0 % every == 0 ? "full_attention" : "sliding_attention" }
        }
        if json["sliding_window"].map({ !$0.isNull }) ?? false {
            slidingWindow = try config.size("sliding_window")
        } else {
            slidingWindow = try config.size("local_attention", default: 128) / 2
        }
        guard slidingWindow >= 1 else {
            throw ModelConfigError("config.json: local_attention must be at least 2 (a sliding window of at least one token each side)")
        }
        var global = try config.ropeTheta("global_rope_theta", default: 160_000)
        var local = try config.ropeTheta("local_rope_theta", default: 10_000)
        if let rope = try config.object("rope_parameters") {
            for (key, value) in rope.entries {
                guard let parameters = value.object else { continue }
                let reader = ConfigReader(json: parameters)
                let type = try reader.string("rope_type", default: "default")
                guard type == "default" else { throw ModelConfigError("config.json: rope_parameters.\(key).rope_type \"\(type)\" is not supported") }
                if key == "full_attention" { global = try reader.ropeTheta("rope_theta", default: global) }
                if key == "sliding_attention" { local = try reader.ropeTheta("rope_theta", default: local) }
            }
        }
        globalRopeTheta = global
        localRopeTheta = local
    }

    public var fields: [(String, ConfigValue)] {
        let types = "[" + layerTypes.map { "\"\($0)\"" }.joined(separator: ",") + "]"
        return [("vocab_size", .int(vocabSize)), ("hidden_size", .int(hiddenSize)),
                ("intermediate_size", .int(intermediateSize)), ("num_hidden_layers", .int(layerCount)),
                ("num_attention_heads", .int(headCount)), ("hidden_activation", .string(hiddenActivation)),
                ("classifier_activation", .string(classifierActivation)),
                ("norm_eps", .double(normEps)), ("norm_bias", .bool(normBias)), ("attention_bias", .bool(attentionBias)),
                ("mlp_bias", .bool(mlpBias)), ("decoder_bias", .bool(decoderBias)), ("classifier_bias", .bool(classifierBias)),
                ("layer_types", .json(types)), ("sliding_window", .int(slidingWindow)),
                ("global_rope_theta", .double(globalRopeTheta)), ("local_rope_theta", .double(localRopeTheta)),
                ("max_position_embeddings", .int(maxPositionEmbeddings)), ("pad_token_id", .int(padTokenID)),
                ("tie_word_embeddings", .bool(tieWordEmbeddings))]
    }

    public var expectedTensors: [String: ExpectedTensor] {
        let c = hiddenSize
        var t = ExpectedTensorBuilder()
        t.require("embed.tokens", [vocabSize, c])
        t.norm("embed.norm", width: c, bias: normBias)
        for n in 0..<layerCount {
            let l = "layers.\(n)."
            if n > 0 { t.norm(l + "attn_norm", width: c, bias: normBias) }
            t.linear(l + "attn.qkv", out: 3 * c, in: c, bias: attentionBias)
            t.linear(l + "attn.o", out: c, in: c, bias: attentionBias)
            t.norm(l + "mlp_norm", width: c, bias: normBias)
            t.linear(l + "mlp.wi", out: 2 * intermediateSize, in: c, bias: mlpBias)
            t.linear(l + "mlp.down", out: c, in: intermediateSize, bias: mlpBias)
        }
        t.norm("final_norm", width: c, bias: normBias)
        t.linear("mlm.dense", out: c, in: c, bias: classifierBias, required: false)
        t.norm("mlm.norm", width: c, bias: normBias, required: false)
        t.linear("mlm.decoder", out: vocabSize, in: c, bias: decoderBias, required: false)
        return t.tensors
    }

    public var tiedPairs: [TiedPair] {
        tieWordEmbeddings ? [TiedPair(alias: "mlm.decoder.weight", target: "embed.tokens", head: "mlm.dense.weight")] : []
    }

    /// Hugging Face ↔ canonical names (§4.3).
    public static let names = NameTable(
        bodyPrefixes: ["model.", ""],
        body: [
            ("embeddings.tok_embeddings.weight", "embed.tokens"),
            ("embeddings.norm.weight", "embed.norm.weight"),
            ("embeddings.norm.bias", "embed.norm.bias"),
            ("layers.N.attn_norm.weight", "layers.N.attn_norm.weight"),
            ("layers.N.attn_norm.bias", "layers.N.attn_norm.bias"),
            ("layers.N.attn.Wqkv.weight", "layers.N.attn.qkv.weight"),
            ("layers.N.attn.Wqkv.bias", "layers.N.attn.qkv.bias"),
            ("layers.N.attn.Wo.weight", "layers.N.attn.o.weight"),
            ("layers.N.attn.Wo.bias", "layers.N.attn.o.bias"),
            ("layers.N.mlp_norm.weight", "layers.N.mlp_norm.weight"),
            ("layers.N.mlp_norm.bias", "layers.N.mlp_norm.bias"),
            ("layers.N.mlp.Wi.weight", "layers.N.mlp.wi.weight"),
            ("layers.N.mlp.Wi.bias", "layers.N.mlp.wi.bias"),
            ("layers.N.mlp.Wo.weight", "layers.N.mlp.down.weight"),
            ("layers.N.mlp.Wo.bias", "layers.N.mlp.down.bias"),
            ("final_norm.weight", "final_norm.weight"),
            ("final_norm.bias", "final_norm.bias"),
        ],
        heads: [
            ("head.dense.weight", "mlm.dense.weight"),
            ("head.dense.bias", "mlm.dense.bias"),
            ("head.norm.weight", "mlm.norm.weight"),
            ("head.norm.bias", "mlm.norm.bias"),
            ("decoder.weight", "mlm.decoder.weight"),
            ("decoder.bias", "mlm.decoder.bias"),
        ],
        dropped: [("classifier.", "sequence-classification head (not used by PRIMA)")])
}
