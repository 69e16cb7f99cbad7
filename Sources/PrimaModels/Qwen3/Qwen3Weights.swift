import PrimaJSON

/// Qwen3's configuration (transformers `Qwen3Config`) and its weight layout (Formats/prima-checkpoint.md §4.5).
public struct Qwen3Config: ArchitectureConfig, Equatable {
    public static let architecture = Architecture.qwen3

    public let vocabSize: Int
    public let hiddenSize: Int          // C
    public let intermediateSize: Int    // I
    public let layerCount: Int          // L
    public let headCount: Int           // H
    public let kvHeadCount: Int         // KV heads, H % KV == 0
    public let headDim: Int             // D, explicit in Qwen3 (H·D may differ from C)
    public let hiddenAct: String
    public let rmsNormEps: Double
    public let ropeTheta: Double
    public let maxPositionEmbeddings: Int
    public let attentionBias: Bool
    public let tieWordEmbeddings: Bool

    /// Parses config.json; refuses what the runtime would compute differently (rope scaling, sliding window).
    public init(json: JSONObject) throws(ModelConfigError) {
        let config = ConfigReader(json: json)
        vocabSize = try config.size("vocab_size")
        hiddenSize = try config.size("hidden_size")
        intermediateSize = try config.size("intermediate_size")
        layerCount = try config.size("num_hidden_layers")
        headCount = try config.size("num_attention_heads")
        kvHeadCount = try config.size("num_key_value_heads", default: headCount)
        try ConfigReader.requireDivisible(headCount, by: kvHeadCount, "num_attention_heads must be a multiple of num_key_value_heads")
        if json["head_dim"].map({ !$0.isNull }) ?? false {
            headDim = try config.size("head_dim")
        } else {
            try ConfigReader.requireDivisible(hiddenSize, by: headCount, "hidden_size must be a multiple of num_attention_heads when head_dim is absent")
            headDim = hiddenSize / headCount
        }
        guard headDim % 2 == 0 else { throw ModelConfigError("config.json: head_dim \(headDim) must be even for RoPE") }
        hiddenAct = try config.activation("hidden_act", default: "silu")
        rmsNormEps = try config.epsilon("rms_norm_eps", default: 1e-6)
        maxPositionEmbeddings = try config.size("max_position_embeddings", default: 32768)
        attentionBias = try config.bool("attention_bias", default: false)
        tieWordEmbeddings = try config.bool("tie_word_embeddings", default: false)
        if try config.bool("use_sliding_window", default: false) {
            throw ModelConfigError("config.json: use_sliding_window true is not supported")
        }
        // transformers v5 writes rope_parameters {rope_type, rope_theta}; v4 wrote rope_theta and rope_scaling.
        var theta = try config.ropeTheta("rope_theta", default: 10000)
        for key in ["rope_parameters", "rope_scaling"] {
            guard let rope = try config.object(key) else { continue }
            let ropeReader = ConfigReader(json: rope)
            let type = try ropeReader.string("rope_type", default: try ropeReader.string("type", default: "default"))
            guard type == "default" else { throw ModelConfigError("config.json: \(key).rope_type \"\(type)\" is not supported") }
            if rope["rope_theta"] != nil { theta = try ropeReader.ropeTheta("rope_theta") }
        }
        ropeTheta = theta
    }

    public var fields: [(String, ConfigValue)] {
        [("vocab_size", .int(vocabSize)), ("hidden_size", .int(hiddenSize)), ("intermediate_size", .int(intermediateSize)),
         ("num_hidden_layers", .int(layerCount)), ("num_attention_heads", .int(headCount)),
         ("num_key_value_heads", .int(kvHeadCount)), ("head_dim", .int(headDim)), ("hidden_act", .string(hiddenAct)),
         ("rms_norm_eps", .double(rmsNormEps)), ("rope_theta", .double(ropeTheta)),
         ("max_position_embeddings", .int(maxPositionEmbeddings)), ("attention_bias", .bool(attentionBias)),
         ("tie_word_embeddings", .bool(tieWordEmbeddings)), ("use_sliding_window", .bool(false))]
    }

    public var expectedTensors: [String: ExpectedTensor] {
        let c = hiddenSize, qWidth = headCount * headDim, kvWidth = kvHeadCount * headDim
        var t = ExpectedTensorBuilder()
        t.require("embed.tokens", [vocabSize, c])
        for n in 0..<layerCount {
            let l = "layers.\(n)."
            t.norm(l + "attn_norm", width: c, bias: false)
            t.linear(l + "attn.q", out: qWidth, in: c, bias: attentionBias)
            t.linear(l + "attn.k", out: kvWidth, in: c, bias: attentionBias)
            t.linear(l + "attn.v", out: kvWidth, in: c, bias: attentionBias)
            t.linear(l + "attn.o", out: c, in: qWidth, bias: attentionBias)
            t.norm(l + "attn.q_norm", width: headDim, bias: false)
            t.norm(l + "attn.k_norm", width: headDim, bias: false)
            t.norm(l + "mlp_norm", width: c, bias: false)
            t.linear(l + "mlp.gate", out: intermediateSize, in: c, bias: false)
            t.linear(l + "mlp.up", out: intermediateSize, in: c, bias: false)
            t.linear(l + "mlp.down", out: c, in: intermediateSize, bias: false)
        }
        t.norm("final_norm", width: c, bias: false)
        t.linear("lm_head", out: vocabSize, in: c, bias: false, required: !tieWordEmbeddings)
        return t.tensors
    }

    public var tiedPairs: [TiedPair] {
        tieWordEmbeddings ? [TiedPair(alias: "lm_head.weight", target: "embed.tokens")] : []
    }

    /// Hugging Face ↔ canonical names (§4.5).
    public static let names = NameTable(
        bodyPrefixes: ["model.", ""],
        body: [
            ("embed_tokens.weight", "embed.tokens"),
            ("layers.N.input_layernorm.weight", "layers.N.attn_norm.weight"),
            ("layers.N.self_attn.q_proj.weight", "layers.N.attn.q.weight"),
            ("layers.N.self_attn.q_proj.bias", "layers.N.attn.q.bias"),
            ("layers.N.self_attn.k_proj.weight", "layers.N.attn.k.weight"),
            ("layers.N.self_attn.k_proj.bias", "layers.N.attn.k.bias"),
            ("layers.N.self_attn.v_proj.weight", "layers.N.attn.v.weight"),
            ("layers.N.self_attn.v_proj.bias", "layers.N.attn.v.bias"),
            ("layers.N.self_attn.o_proj.weight", "layers.N.attn.o.weight"),
            ("layers.N.self_attn.o_proj.bias", "layers.N.attn.o.bias"),
            ("layers.N.self_attn.q_norm.weight", "layers.N.attn.q_norm.weight"),
            ("layers.N.self_attn.k_norm.weight", "layers.N.attn.k_norm.weight"),
            ("layers.N.post_attention_layernorm.weight", "layers.N.mlp_norm.weight"),
            ("layers.N.mlp.gate_proj.weight", "layers.N.mlp.gate.weight"),
            ("layers.N.mlp.up_proj.weight", "layers.N.mlp.up.weight"),
            ("layers.N.mlp.down_proj.weight", "layers.N.mlp.down.weight"),
            ("norm.weight", "final_norm.weight"),
        ],
        heads: [("lm_head.weight", "lm_head.weight")],
        dropped: [("score.", "sequence-classification head (not used by PRIMA)")])
}
